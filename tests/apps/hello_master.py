"""A minimal WSGI app for the master life-cycle tests: answers with the pid
of the worker that served the request.

`GET /sleep?SECONDS` says so on stderr, then sleeps that long (a request
still in flight when the master stops). With HELLO_MASTER_EXIT_AT_IMPORT=N in the environment,
the worker process exits with code N while importing this module (a
crash-looping worker).
"""

import os
import sys
import time

_exit_code = os.environ.get("HELLO_MASTER_EXIT_AT_IMPORT")
if _exit_code:
    os._exit(int(_exit_code))


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        print("hello_master: sleeping in pid %d" % os.getpid(), file=sys.stderr, flush=True)
        time.sleep(float(environ.get("QUERY_STRING") or "5"))
    body = b"hello from pid %d\n" % os.getpid()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
