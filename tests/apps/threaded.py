"""Apps for the app-thread tests (tests/threads.rs), routed by path:

/sleep?s=0.5   sleeps (time.sleep releases the GIL), then answers; with
               `&announce` it first prints "threaded: sleeping"
/flags         wsgi.multithread and wsgi.multiprocess, e.g. "True False"
/local?id=X    stores X in a threading.local, sleeps 50 ms, answers what
               the local holds then and which thread served it
/stuck         sleeps for an hour inside `stuck_here` (for --timeout)
/stream?n=N    yields N lines, 100 ms apart (a slow stream)
/pid           the serving worker's pid
/big           32 MiB as a list of one bytes object (built once)
/big-stream    32 MiB as a generator of 64 KiB parts
/thread        the identity of the serving thread
/              a greeting
"""

import os
import threading
import time
from urllib.parse import parse_qs

GREETING = b"Hello, World!\n"
BIG = b"x" * (32 * 1024 * 1024)
LOCAL = threading.local()


def _answer(start_response, body, status="200 OK"):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _query(environ, name, default):
    return parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0]


def stuck_here():
    time.sleep(3600)


def stream(n):
    for i in range(n):
        yield b"line %d\n" % i
        time.sleep(0.1)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        if "announce" in environ.get("QUERY_STRING", ""):
            print("threaded: sleeping", flush=True)
        time.sleep(float(_query(environ, "s", "0.5")))
        return _answer(start_response, b"slept\n")
    if path == "/flags":
        body = "%s %s" % (environ["wsgi.multithread"], environ["wsgi.multiprocess"])
        return _answer(start_response, body.encode())
    if path == "/local":
        mine = _query(environ, "id", "")
        LOCAL.value = mine
        time.sleep(0.05)
        body = "%s %s" % (LOCAL.value, threading.current_thread().ident)
        return _answer(start_response, body.encode())
    if path == "/stuck":
        print("threaded: stuck", flush=True)
        stuck_here()
        return _answer(start_response, b"unstuck\n")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream(int(_query(environ, "n", "5")))
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(len(BIG)))])
        return [BIG]
    if path == "/big-stream":
        start_response("200 OK", [("Content-Length", str(len(BIG)))])
        return (BIG[i : i + 65536] for i in range(0, len(BIG), 65536))
    if path == "/pid":
        return _answer(start_response, str(os.getpid()).encode())
    if path == "/thread":
        return _answer(start_response, str(threading.get_ident()).encode())
    return _answer(start_response, GREETING)
