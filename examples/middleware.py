"""Two stacked WSGI middlewares around a small app.

* `SearchEngineTagger` looks at the Referer: a visitor coming from a search
  engine gets `environ["example.search_engine"]` (e.g. "google") and the
  response an `X-Search-Engine` header.
* `GzipMiddleware` compresses the response when the client sends
  `Accept-Encoding: gzip`, and adds `Vary: Accept-Encoding` either way.

    rgunicorn examples.middleware:application
"""

import gzip
from urllib.parse import urlsplit

SEARCH_ENGINES = {
    "google": ("google.",),
    "bing": ("bing.com",),
    "duckduckgo": ("duckduckgo.com",),
    "yahoo": ("search.yahoo.",),
}


def search_engine_of(referer):
    """The search engine a Referer URL belongs to, or None."""
    host = (urlsplit(referer).hostname or "").lower()
    for engine, markers in SEARCH_ENGINES.items():
        if any(marker in host for marker in markers):
            return engine
    return None


class SearchEngineTagger:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        engine = search_engine_of(environ.get("HTTP_REFERER", ""))
        if engine is None:
            return self.app(environ, start_response)
        environ["example.search_engine"] = engine

        def tagging_start_response(status, headers, exc_info=None):
            return start_response(status, headers + [("X-Search-Engine", engine)], exc_info)

        return self.app(environ, tagging_start_response)


class GzipMiddleware:
    """Buffers and gzips the whole response; fine for small pages."""

    def __init__(self, app, level=6):
        self.app = app
        self.level = level

    def __call__(self, environ, start_response):
        accepts_gzip = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "").lower()
        if not accepts_gzip:

            def vary_start_response(status, headers, exc_info=None):
                return start_response(status, headers + [("Vary", "Accept-Encoding")], exc_info)

            return self.app(environ, vary_start_response)

        captured = {}

        def capturing_start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return captured.setdefault("chunks", []).append

        result = self.app(environ, capturing_start_response)
        try:
            body = b"".join(captured.get("chunks", [])) + b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        compressed = gzip.compress(body, self.level)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding"), ("Content-Length", str(len(compressed)))]
        start_response(captured["status"], headers)
        return [compressed]


def page(environ, start_response):
    engine = environ.get("example.search_engine")
    greeting = f"Welcome, visitor from {engine}!" if engine else "Welcome!"
    body = (greeting + "\n" + "This page is long enough to be worth compressing. " * 20 + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


application = GzipMiddleware(SearchEngineTagger(page))
