"""The classic: a plain function is a WSGI application.

    rgunicorn examples.hello:application
"""


def application(environ, start_response):
    body = b"Hello, World!\n"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
