"""Imports a package that exists only in the test virtualenv and reports
what the interpreter sees."""

import importlib.util
import sys

import rg_tinypkg


def application(environ, start_response):
    lines = [
        f"greeting={rg_tinypkg.GREETING}",
        f"prefix={sys.prefix}",
        f"package={rg_tinypkg.__file__}",
        f"flask_visible={importlib.util.find_spec('flask') is not None}",
    ]
    body = ("\n".join(lines) + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
