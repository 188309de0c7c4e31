"""A minimal WSGI app for the master lifecycle tests: answers with its pid."""

import os


def application(environ, start_response):
    body = b"hello from pid %d\n" % os.getpid()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
