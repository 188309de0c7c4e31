"""An app wrapped in `wsgiref.validate.validator`: any PEP 3333 violation
by the server (environ types, missing keys, wsgi.input or start_response
misbehaving) raises AssertionError inside the app, so the answer is 500."""

from wsgiref.validate import validator


def _app(environ, start_response):
    stream = environ["wsgi.input"]
    chunks = []
    while True:
        chunk = stream.read(8192)
        if not chunk:
            break
        chunks.append(chunk)
    body = b"".join(chunks)
    text = f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')} {len(body)}\n".encode() + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


application = validator(_app)
