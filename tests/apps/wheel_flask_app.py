"""The Flask example (examples/flask_app.py) with one more route that reports
what the interpreter and the server look like from inside the app, for the
wheel test (tests/wheel.rs). Serve from the repository root."""

import os
import sys

import flask

from examples.flask_app import app


@app.get("/_report")
def report():
    environ = flask.request.environ
    return flask.jsonify(
        prefix=sys.prefix,
        flask_file=flask.__file__,
        multiprocess=environ["wsgi.multiprocess"],
        pid=os.getpid(),
        ld_library_path=os.environ.get("LD_LIBRARY_PATH"),
        launch_variables=sorted(k for k in os.environ if k.startswith("RGUNICORN_LAUNCH_")),
    )
