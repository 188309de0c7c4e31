"""Renders the WSGI environ as an HTML table. Every value is escaped, so a
request header cannot inject markup.

    rgunicorn examples.showenv:application
"""

import html


def application(environ, start_response):
    rows = "\n".join(
        f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(repr(value) if not isinstance(value, str) else value)}</td></tr>"
        for key, value in sorted(environ.items())
    )
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>WSGI environ</title></head>\n"
        "<body><h1>WSGI environ</h1>\n<table border=\"1\">\n"
        "<tr><th>Key</th><th>Value</th></tr>\n"
        f"{rows}\n</table></body></html>\n"
    ).encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))])
    return [page]
