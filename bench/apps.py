"""The benchmark's own WSGI apps (hello and Flask /json come from examples/).

    big:    GET answers a 1 MiB body with its Content-Length.
    upload: reads the whole request body and answers its length.
"""

BIG_BODY = b"x" * (1 << 20)


def big(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG_BODY)))])
    return [BIG_BODY]


def upload(environ, start_response):
    stream = environ["wsgi.input"]
    left = int(environ.get("CONTENT_LENGTH") or 0)
    received = 0
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        received += len(chunk)
        left -= len(chunk)
    body = b"%d\n" % received
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
