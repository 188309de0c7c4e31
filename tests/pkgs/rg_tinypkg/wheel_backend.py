"""A minimal PEP 517 build backend: packs `rg_tinypkg/` into a pure-Python wheel.

Only what pip needs to install this one package offline; not a general tool.
"""

import base64
import hashlib
import os
import zipfile

NAME = "rg_tinypkg"
VERSION = "1.0.0"
DIST_INFO = f"{NAME}-{VERSION}.dist-info"
WHEEL_NAME = f"{NAME}-{VERSION}-py3-none-any.whl"

METADATA = f"Metadata-Version: 2.1\nName: rg-tinypkg\nVersion: {VERSION}\n"
WHEEL = "Wheel-Version: 1.0\nGenerator: rg_tinypkg-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _package_files():
    here = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(os.path.join(here, NAME))):
        if name.endswith(".py"):
            with open(os.path.join(here, NAME, name), "rb") as source:
                yield f"{NAME}/{name}", source.read()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    entries = list(_package_files())
    entries.append((f"{DIST_INFO}/METADATA", METADATA.encode()))
    entries.append((f"{DIST_INFO}/WHEEL", WHEEL.encode()))
    record = [_record_line(path, data) for path, data in entries]
    record.append(f"{DIST_INFO}/RECORD,,")
    entries.append((f"{DIST_INFO}/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(wheel_directory, WHEEL_NAME), "w") as wheel:
        for path, data in entries:
            wheel.writestr(path, data)
    return WHEEL_NAME
