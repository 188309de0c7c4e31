"""A class as the application (PEP 3333's second example): calling the
class creates an instance, and the instance is the response iterable.

    rgunicorn examples.app_class:AppClass
"""


class AppClass:
    """Each request makes one instance; iterating it produces the body."""

    def __init__(self, environ, start_response):
        self.environ = environ
        self.start = start_response

    def __iter__(self):
        self.start("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        yield b"Hello from a class instance!\n"
        yield f"You asked for {self.environ.get('PATH_INFO', '/')}\n".encode("latin-1")

    def close(self):
        """Called by the server once the response is done."""
        self.environ = None


application = AppClass
