"""A minimal WSGI app for the master life-cycle tests: answers with the pid
of the worker that served the request.

With HELLO_MASTER_EXIT_AT_IMPORT=N in the environment, the worker process
exits with code N while importing this module (a crash-looping worker).
"""

import os

_exit_code = os.environ.get("HELLO_MASTER_EXIT_AT_IMPORT")
if _exit_code:
    os._exit(int(_exit_code))


def application(environ, start_response):
    body = b"hello from pid %d\n" % os.getpid()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
