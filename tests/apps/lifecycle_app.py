"""A WSGI app for the signal and supervision tests (tests/signals.rs).

Every response body is `pid N` (the worker that served it), so a test can
tell which workers serve. Routes:

- `GET /sleep?SECONDS`: says `lifecycle_app: sleeping in pid N` on stderr,
  then sleeps that long before answering (a request in flight).
- `GET /stuck`: never returns; `stuck_forever` is the frame the worker's
  traceback must name when the master aborts it for `--timeout`.
- `GET /raise`: raises `RuntimeError("lifecycle_app: raised on purpose")`
  (a line the worker logs to the error log).

With LIFECYCLE_IMPORT_SLEEP=SECONDS in the environment, importing this
module takes that long (a slow-booting app).
"""

import os
import sys
import time

_import_sleep = os.environ.get("LIFECYCLE_IMPORT_SLEEP")
if _import_sleep:
    time.sleep(float(_import_sleep))


def stuck_forever():
    while True:
        time.sleep(0.1)


def application(environ, start_response):
    path = environ.get("PATH_INFO")
    if path == "/sleep":
        print("lifecycle_app: sleeping in pid %d" % os.getpid(), file=sys.stderr, flush=True)
        time.sleep(float(environ.get("QUERY_STRING") or "2"))
    elif path == "/stuck":
        print("lifecycle_app: stuck in pid %d" % os.getpid(), file=sys.stderr, flush=True)
        stuck_forever()
    elif path == "/raise":
        raise RuntimeError("lifecycle_app: raised on purpose")
    body = b"pid %d" % os.getpid()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
