"""The smallest apps: a fixed greeting with and without Content-Length."""

GREETING = b"Hello, World!\n"


def application(environ, start_response):
    """Answers with a Content-Length, so keep-alive works on any version."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(GREETING)))])
    return [GREETING]


def no_length(environ, start_response):
    """No Content-Length: the server must chunk (1.1) or close (1.0)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, ", b"", b"World!\n"]


def create_app(greeting, excited=False):
    """A factory, for `factory_app:create_app('x', excited=True)` specs."""
    body = (greeting + ("!" if excited else "")).encode()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app
