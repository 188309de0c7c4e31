"""The apps bench/threads.sh drives, routed by path:

/sleep   waits 20 ms (time.sleep releases the GIL, like a database call)
/slow    waits 1 s
/        answers at once (hello world)
"""

import time

BODY = b"Hello, World!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(0.02)
    elif path == "/slow":
        time.sleep(1.0)
    start_response("200 OK", HEADERS)
    return [BODY]
