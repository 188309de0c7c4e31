"""Echoes the WSGI environ, one `KEY<TAB>TYPE<TAB>ascii(value)` line per key.

`ascii()` keeps the output 7-bit and unambiguous, so the tests can check
latin-1 decoding exactly (`'/caf\\xc3\\xa9'`). Extra lines: `PID` (the
worker), `BODY` (the request body read with `wsgi.input.read()`).
Query `errors=TEXT` writes TEXT to `wsgi.errors` (first, so a test can
wait for it in the log); `sleep=SECONDS` then makes the app sleep.
"""

import os
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "errors" in query:
        environ["wsgi.errors"].write(query["errors"][0] + "\n")
        environ["wsgi.errors"].flush()
    if "sleep" in query:
        time.sleep(float(query["sleep"][0]))
    body = environ["wsgi.input"].read()
    lines = [f"{key}\t{type(value).__name__}\t{ascii(value)}" for key, value in sorted(environ.items())]
    lines.append(f"PID\tint\t{os.getpid()}")
    lines.append(f"BODY\tbytes\t{ascii(body)}")
    payload = ("\n".join(lines) + "\n").encode("ascii")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))])
    return [payload]
