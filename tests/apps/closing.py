"""A response iterable with a close() that records each call.

Query: `log=PATH` (the file close() appends `closed` to), `mode=`:
ok (three chunks), raise (raises after the first chunk), raise_first
(raises before yielding), str_item (yields a str), big (64 MiB in 64 KiB
chunks, for client-disconnect tests), length (ok with Content-Length).
"""

from urllib.parse import parse_qs

CHUNK = b"x" * 65536


class ClosingBody:
    def __init__(self, mode, log_path):
        self.mode = mode
        self.log_path = log_path

    def __iter__(self):
        if self.mode == "raise_first":
            raise ValueError("boom before the first chunk")
        if self.mode == "str_item":
            yield "not bytes"
            return
        if self.mode == "big":
            for _ in range(1024):
                yield CHUNK
            return
        yield b"one,"
        if self.mode == "raise":
            raise ValueError("boom after the first chunk")
        yield b"two,"
        yield b"three"

    def close(self):
        with open(self.log_path, "a") as log:
            log.write("closed\n")


def application(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    mode = query.get("mode", ["ok"])[0]
    headers = [("Content-Type", "text/plain")]
    if mode == "length":
        headers.append(("Content-Length", str(len(b"one,two,three"))))
    start_response("200 OK", headers)
    return ClosingBody(mode, query["log"][0])
