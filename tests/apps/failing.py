"""Apps that break the rules, one way each. The server must answer 500 (or
close the connection once headers are out), log the error, and go on
serving."""

import sys


class NotBytesMarker:
    """A body item of a type the log must name."""


def raise_before_headers(environ, start_response):
    raise ValueError("boom before headers")


def raise_after_start_response(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise ValueError("boom after start_response")


def raise_in_iteration(environ, start_response):
    """Headers go out with the first chunk; then the iterator raises."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first chunk\n"
        raise ValueError("boom mid-body")

    return body()


def bad_header_value(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bad", "a\r\nX-Injected: yes")])
    return [b"should never be sent"]


def bad_header_name(environ, start_response):
    start_response("200 OK", [("X Bad:", "value")])
    return [b"should never be sent"]


def bytes_status(environ, start_response):
    start_response(b"200 OK", [("Content-Type", "text/plain")])
    return [b"should never be sent"]


def str_item(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["a str is not bytes"]


def marker_item(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [NotBytesMarker()]


def start_response_twice(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"should never be sent"]


def exc_info_replaces_headers(environ, start_response):
    """PEP 3333: before output, start_response(..., exc_info) replaces the
    headers set earlier."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Original", "yes")])
    try:
        raise KeyError("handled")
    except KeyError:
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "text/plain"), ("X-Replaced", "yes"), ("Content-Length", "8")],
            sys.exc_info(),
        )
    return [b"replaced"]


def exc_info_after_output(environ, start_response):
    """After output, start_response(..., exc_info) must re-raise: the server
    can only close the connection."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"partial output\n"
        try:
            raise KeyError("too late")
        except KeyError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"must not be reached\n"

    return body()


def returns_bytes(environ, start_response):
    """A common mistake: iterating bytes yields ints."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return b"not a list of bytes"


def returns_none(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])


def never_starts_response(environ, start_response):
    return [b"no start_response call"]
