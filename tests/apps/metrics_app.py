"""An app for the metrics tests: `/` greets, `/missing` is the app's own
404, `/sleep?seconds=N` keeps the worker busy inside the app."""

import time
from urllib.parse import parse_qs

GREETING = b"Hello, World!\n"


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not found\n"]
    if path == "/sleep":
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("seconds", ["5"])[0])
        time.sleep(seconds)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(GREETING)))])
    return [GREETING]
