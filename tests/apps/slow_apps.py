"""Apps for the slow-client tests (tests/slow_clients.rs), routed by path:

/                a short greeting with Content-Length (the "normal" request)
/big-generator   50 MiB as a generator of fresh 64 KiB bytes objects
/big-bytes       50 MiB as one bytes object, built once at import and shared
                 by every response (so any per-client copy is the server's)
/echo-length     reads the whole body and answers with its length
/file?path=P     the file at P through wsgi.file_wrapper, with Content-Length
"""

import os
from urllib.parse import parse_qs

GREETING = b"Hello, World!\n"
BIG_SIZE = 50 * 1024 * 1024
CHUNK_SIZE = 64 * 1024
BIG_BYTES = b"x" * BIG_SIZE


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(GREETING)))])
    return [GREETING]


def fresh_chunks():
    """A new object per chunk: a server that pulled the iterable ahead of
    the socket would hold all of them."""
    for _ in range(BIG_SIZE // CHUNK_SIZE):
        yield bytes(CHUNK_SIZE)


def big_generator(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(BIG_SIZE))])
    return fresh_chunks()


def big_bytes(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(BIG_SIZE))])
    return [BIG_BYTES]


def echo_length(environ, start_response):
    body = environ["wsgi.input"].read()
    answer = str(len(body)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]


def file(environ, start_response):
    path = parse_qs(environ.get("QUERY_STRING", ""))["path"][0]
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(os.path.getsize(path)))])
    return environ["wsgi.file_wrapper"](open(path, "rb"), 64 * 1024)


ROUTES = {
    "/big-generator": big_generator,
    "/big-bytes": big_bytes,
    "/echo-length": echo_length,
    "/file": file,
}


def application(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", "/"), hello)
    return route(environ, start_response)
