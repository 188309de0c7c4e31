"""Apps for the serving tests (tests/response_integrity.rs,
tests/worker_recycling.rs, tests/connection_pressure.rs), routed by path:

/bytes?n=N   N bytes of the repeating pattern 0, 1, ..., 255 with
             Content-Length: one large bytes object, then a tail of up to
             60,000 bytes in 1,000-byte items. The server copies small
             items into its out queue and pulls the next items only when
             the queue is nearly empty, so when the app is done the whole
             tail may still be queued in the worker: the state in which
             closing the connection would cut the response short
/pid         the worker's pid
/argv        sys.argv, one argument per line
/            a short greeting
"""

import os
import sys
from urllib.parse import parse_qs

PATTERN = bytes(range(256))


def pattern(n):
    """The first n bytes of PATTERN repeated."""
    whole, part = divmod(n, len(PATTERN))
    return PATTERN * whole + PATTERN[:part]


TAIL = 60_000
TAIL_ITEM = 1000


def respond(start_response, body):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


def with_small_tail(start_response, body):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    split = max(0, len(body) - TAIL)
    items = [body[:split]] if split else []
    items += [body[i : i + TAIL_ITEM] for i in range(split, len(body), TAIL_ITEM)]
    return items


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/bytes":
        n = int(parse_qs(environ.get("QUERY_STRING", ""))["n"][0])
        return with_small_tail(start_response, pattern(n))
    if path == "/pid":
        return respond(start_response, str(os.getpid()).encode())
    if path == "/argv":
        return respond(start_response, "\n".join(sys.argv).encode())
    return respond(start_response, b"Hello, World!\n")
