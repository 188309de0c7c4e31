"""For the settings tests: `/env?NAME` answers os.environ[NAME] (or `-`),
`/print` prints a marker to stdout and to stderr, `/file?PATH` returns
PATH through wsgi.file_wrapper wrapped in a file object that counts its
read() calls, and `/reads` answers that count (0 means the server used
sendfile, which never calls read()). With RG_ATEXIT_FILE set, each worker
appends its pid to that file from an atexit handler."""

import atexit
import io
import os
import sys

READS = 0

if os.environ.get("RG_ATEXIT_FILE"):
    # Written when the worker exits, as a Python program's atexit handlers.
    atexit.register(lambda: open(os.environ["RG_ATEXIT_FILE"], "a").write(f"{os.getpid()}\n"))


class CountingFile(io.FileIO):
    def read(self, size=-1):
        global READS
        READS += 1
        return super().read(size)


def respond(start_response, text):
    body = text.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    if path == "/env":
        return respond(start_response, os.environ.get(query, "-"))
    if path == "/print":
        print("stdout-marker from the app")
        print("stderr-marker from the app", file=sys.stderr)
        return respond(start_response, "printed")
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](CountingFile(query, "r"), 4096)
    if path == "/reads":
        return respond(start_response, str(READS))
    return respond(start_response, "ok")
