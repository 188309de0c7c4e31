"""Starts the rgunicorn program under the libpython of this Python.

The wheel's program (``rgunicorn-bin``) embeds CPython and links
``libpython3.X.so.1.0`` without saying where it is. This launcher runs
under the interpreter being served (a virtualenv's, or the system's), so it
is the one place that knows: it reads this interpreter's ``sysconfig``,
refuses with one line what cannot work (another CPython minor version than
the wheel's, no shared libpython), and replaces itself (``execve``, same
pid) with the program, with

* this interpreter's library directory first on ``LD_LIBRARY_PATH``;
* ``RGUNICORN_LAUNCH_*``: which executable, libpython and version the
  workers must run. Each worker checks that the libpython the loader gave
  it is that one, and takes these variables (and the launcher's
  ``LD_LIBRARY_PATH``) out of the environment the application sees
  (``src/worker/wsgi/expected_python.rs`` is the other side of this).
"""

import os
import sys
import sysconfig
from importlib import metadata

PROGRAM = "rgunicorn-bin"
LAUNCH_PYTHON = "RGUNICORN_LAUNCH_PYTHON"
LAUNCH_LIBPYTHON = "RGUNICORN_LAUNCH_LIBPYTHON"
LAUNCH_VERSION = "RGUNICORN_LAUNCH_VERSION"
LAUNCH_ORIGINAL_LD_LIBRARY_PATH = "RGUNICORN_LAUNCH_ORIGINAL_LD_LIBRARY_PATH"


class LaunchError(Exception):
    """A reason rgunicorn cannot run under this Python (one line)."""


def main():
    try:
        distribution = installed_distribution()
        check_python_version(distribution)
        libpython = shared_libpython()
        program = installed_program(distribution)
    except LaunchError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    os.execve(program, [program, *sys.argv[1:]], launch_environment(libpython))


def installed_distribution():
    """The installed rgunicorn distribution this package belongs to."""
    site = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for distribution in metadata.distributions(path=[site]):
        if distribution.metadata["Name"] == "rgunicorn":
            return distribution
    raise LaunchError(f"rgunicorn is not installed in {site} (no rgunicorn-*.dist-info)")


def wheel_python_tag(distribution):
    """The Python tag of the installed wheel, e.g. ``cp311``."""
    for line in (distribution.read_text("WHEEL") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Tag":
            return value.strip().split("-")[0]
    raise LaunchError(f"the rgunicorn {distribution.version} installation has no wheel tag")


def check_python_version(distribution):
    """Refuses another implementation or CPython minor than the wheel's."""
    tag = wheel_python_tag(distribution)
    running = "%d.%d" % sys.version_info[:2]
    here = f"{sys.implementation.name} {sys.version.split()[0]} ({sys.executable})"
    if not tag.startswith("cp") or not tag[2:].isdigit():
        raise LaunchError(f"the installed rgunicorn has an unexpected wheel tag {tag!r}")
    built = f"{tag[2]}.{tag[3:]}"
    if sys.implementation.name != "cpython" or built != running:
        raise LaunchError(
            f"this rgunicorn is built for CPython {built} (wheel tag {tag}), but runs "
            f"under {here}; reinstall it with this Python "
            f"({sys.executable} -m pip install --force-reinstall rgunicorn) "
            f"or run it with CPython {built}"
        )


def shared_libpython():
    """The path of this interpreter's ``libpython3.X.so.1.0``."""
    version = "%d.%d" % sys.version_info[:2]
    soname = f"libpython{version}{sys.abiflags}.so.1.0"
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    # Relocated builds (python-build-standalone, as uv installs) keep their
    # build-time LIBDIR in sysconfig: look under the real prefix too.
    candidates = [libdir, os.path.join(sys.base_prefix, "lib")]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        for directory in candidates:
            path = os.path.join(os.path.normpath(directory), soname)
            if directory and os.path.isfile(path):
                return path
    raise LaunchError(
        f"Python {sys.version.split()[0]} ({sys.executable}) has no shared libpython "
        f"({soname} is not in {libdir or sys.base_prefix + '/lib'}), which rgunicorn "
        f"embeds; {how_to_get_libpython(version)}"
    )


def how_to_get_libpython(version):
    """What to install for a shared libpython, for this kind of Python."""
    exact = sys.version.split()[0]
    if "/.pyenv/" in sys.base_prefix + "/":
        return f"rebuild it: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install --force {exact}"
    if sys.base_prefix in ("/usr", "/usr/local") and os.path.exists("/etc/debian_version"):
        return (
            f"install it: apt-get install libpython{version} "
            f"(or python{version}-dev), then run rgunicorn again"
        )
    return (
        f"install a Python built with a shared library (Debian/Ubuntu: libpython{version} "
        f"or python{version}-dev; pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared; "
        "from source: ./configure --enable-shared)"
    )


def installed_program(distribution):
    """The path of ``rgunicorn-bin`` as the installer recorded it."""
    for file in distribution.files or []:
        if file.name == PROGRAM:
            path = os.path.abspath(str(distribution.locate_file(file)))
            if os.access(path, os.X_OK):
                return path
    raise LaunchError(
        f"the rgunicorn {distribution.version} installation has no {PROGRAM} program; "
        f"reinstall it ({sys.executable} -m pip install --force-reinstall rgunicorn)"
    )


def launch_environment(libpython):
    """This environment plus the library path and the facts for the workers."""
    environment = dict(os.environ)
    original = environment.get("LD_LIBRARY_PATH")
    libdir = os.path.dirname(libpython)
    environment["LD_LIBRARY_PATH"] = f"{libdir}:{original}" if original else libdir
    if original is None:
        environment.pop(LAUNCH_ORIGINAL_LD_LIBRARY_PATH, None)
    else:
        environment[LAUNCH_ORIGINAL_LD_LIBRARY_PATH] = original
    environment[LAUNCH_PYTHON] = sys.executable
    environment[LAUNCH_LIBPYTHON] = libpython
    environment[LAUNCH_VERSION] = sys.version.split()[0]
    return environment
