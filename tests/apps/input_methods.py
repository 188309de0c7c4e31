"""Reads the request body with the `wsgi.input` method named by `?method=`
and answers with the bytes read, in order, and `X-Pieces: N` (how many
non-empty pieces the method returned). Any broken promise of the stream
(a piece longer than asked, data after EOF) raises, so the answer is 500.

Methods: read, read_n (read(n) until b""), readline, readline_n,
readlines, iter, mixed (readline + read(n) + read()), and the io-style
calls read_minus_one, read_none, readline_minus_one, readlines_hint.
"""

from urllib.parse import parse_qs


def read_all(stream, n):
    data = stream.read()
    return [data] if data else []


def read_n(stream, n):
    pieces = []
    while True:
        piece = stream.read(n)
        if not piece:
            return pieces
        assert len(piece) <= n, f"read({n}) returned {len(piece)} bytes"
        pieces.append(piece)


def readline(stream, n):
    pieces = []
    while True:
        line = stream.readline()
        if not line:
            return pieces
        assert line.endswith(b"\n") or b"\n" not in line, f"bad line {line!r}"
        assert line.count(b"\n") <= 1, f"more than one line: {line!r}"
        pieces.append(line)


def readline_n(stream, n):
    pieces = []
    while True:
        line = stream.readline(n)
        if not line:
            return pieces
        assert len(line) <= n, f"readline({n}) returned {len(line)} bytes"
        assert line.count(b"\n") <= 1 and (b"\n" not in line or line.endswith(b"\n")), f"bad line {line!r}"
        pieces.append(line)


def readlines(stream, n):
    return stream.readlines()


def iterate(stream, n):
    return list(stream)


def read_minus_one(stream, n):
    data = stream.read(-1)
    return [data] if data else []


def read_none(stream, n):
    data = stream.read(None)
    return [data] if data else []


def readline_minus_one(stream, n):
    return list(iter(lambda: stream.readline(-1), b""))


def readlines_hint(stream, n):
    """The hint may be honoured or ignored; the rest is read after it."""
    return stream.readlines(n) + stream.readlines()


def mixed(stream, n):
    return [piece for piece in (stream.readline(), stream.read(n), stream.read()) if piece]


METHODS = {
    "read": read_all,
    "read_n": read_n,
    "readline": readline,
    "readline_n": readline_n,
    "readlines": readlines,
    "iter": iterate,
    "mixed": mixed,
    "read_minus_one": read_minus_one,
    "read_none": read_none,
    "readline_minus_one": readline_minus_one,
    "readlines_hint": readlines_hint,
}


def application(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    method = METHODS[query.get("method", ["read"])[0]]
    n = int(query.get("n", ["7"])[0])
    stream = environ["wsgi.input"]
    pieces = method(stream, n)
    assert all(isinstance(p, bytes) for p in pieces), "wsgi.input returned non-bytes"
    assert stream.read() == b"" and stream.read(5) == b"" and stream.readline() == b"", "data after EOF"
    body = b"".join(pieces)
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body))), ("X-Pieces", str(len(pieces)))],
    )
    return [body]


def digest(environ, start_response):
    """Reads the body in 64 KiB pieces; answers `LENGTH SHA256`."""
    import hashlib

    hasher = hashlib.sha256()
    length = 0
    stream = environ["wsgi.input"]
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        hasher.update(piece)
        length += len(piece)
    body = f"{length} {hasher.hexdigest()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def ignore_body(environ, start_response):
    """Never reads the body: the server must still frame the next request."""
    body = b"ignored"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
