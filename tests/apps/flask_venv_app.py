"""A Flask app that reports where Flask was imported from and which worker
answered, for the test that serves it from a virtualenv with several workers."""
import os

import flask

app = flask.Flask(__name__)


@app.route("/")
def where():
    return flask.jsonify(flask_file=flask.__file__, pid=os.getpid())


@app.post("/echo")
def echo():
    return flask.jsonify(received=flask.request.get_json())
