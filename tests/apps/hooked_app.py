"""The app served in tests/hooks.rs."""

import time


def application(environ, start_response):
    """Echoes the path; /raise raises; /sleep blocks (for worker_abort)."""
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise RuntimeError("the app failed on purpose")
    if path == "/sleep":
        time.sleep(30)
    body = ("path=" + path + "\n").encode()
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-Hooked", "yes"), ("Content-Length", str(len(body)))])
    return [body]
