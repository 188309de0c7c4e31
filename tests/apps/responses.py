"""Apps that exercise response framing: Content-Length shorter and longer
than the body, write(), hop-by-hop headers, file_wrapper."""

import io
from urllib.parse import parse_qs


def short_body(environ, start_response):
    """Promises 100 bytes, gives 10: the server must close the connection."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
    return [b"0123456789"]


def long_body(environ, start_response):
    """Promises 5 bytes, gives 10: only 5 may reach the wire."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"01234", b"56789"]


def write_callable(environ, start_response):
    """Uses the legacy write() callable, then returns the rest."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"Hello, ")
    write(b"write() ")
    return [b"world\n"]


def hop_by_hop(environ, start_response):
    """Sets headers only the server may set; they must not pass through."""
    body = b"hop"
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("Keep-Alive", "timeout=999"),
            ("Proxy-Authenticate", "Basic realm=x"),
            ("TE", "trailers"),
            ("Trailer", "X-Trailer"),
            ("Upgrade", "h2c"),
            ("X-End-To-End", "kept"),
        ],
    )
    return [body]


def many_chunks(environ, start_response):
    """No Content-Length, many small items: chunked on HTTP/1.1."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return (f"line {i}\n".encode() for i in range(1000))


class RecordingFile(io.FileIO):
    """A real file (so sendfile can use its fd) whose close is recorded."""

    def __init__(self, path, log_path):
        super().__init__(path, "r")
        self.log_path = log_path

    def close(self):
        if not self.closed and self.log_path:
            with open(self.log_path, "a") as log:
                log.write("file closed\n")
        super().close()


def file_wrapper(environ, start_response):
    """Serves `?path=` through wsgi.file_wrapper; `length=1` adds a
    Content-Length; `log=` records the file's close()."""
    import os

    query = parse_qs(environ.get("QUERY_STRING", ""))
    path = query["path"][0]
    headers = [("Content-Type", "application/octet-stream")]
    if query.get("length") == ["1"]:
        headers.append(("Content-Length", str(os.path.getsize(path))))
    start_response("200 OK", headers)
    handle = RecordingFile(path, query.get("log", [None])[0])
    return environ["wsgi.file_wrapper"](handle, 32768)


def file_wrapper_bytesio(environ, start_response):
    """file_wrapper over an object with no fileno(): must fall back to
    reading blocks."""
    data = b"".join(b"block %d\n" % i for i in range(500))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return environ["wsgi.file_wrapper"](io.BytesIO(data), 64)


def status_from_query(environ, start_response):
    """Answers with the status line in `?status=` (e.g. `204 No Content`)
    and, unless it is 204 or 304, a short body without Content-Length."""
    status = parse_qs(environ.get("QUERY_STRING", ""))["status"][0]
    start_response(status, [("Content-Type", "text/plain")])
    return [] if status[:3] in ("204", "304") else [b"status body"]


def latin1_header(environ, start_response):
    """A header value outside ASCII but inside latin-1 (PEP 3333 allows it)."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2"), ("X-Latin", "caf\xe9")])
    return [b"ok"]


def non_latin1_header(environ, start_response):
    """A header value that latin-1 cannot encode: the app is wrong."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Euro", "\u20ac")])
    return [b"should never be sent"]


def connection_close(environ, start_response):
    """The app asks for the connection to be closed after this response."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3"), ("Connection", "close")])
    return [b"bye"]
