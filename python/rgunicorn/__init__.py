"""rgunicorn, a prefork WSGI HTTP server in Rust.

This package is the wheel's launcher: `rgunicorn` and `python -m rgunicorn`
run the server program under the libpython of the Python they run under
(see rgunicorn.launcher).
"""
