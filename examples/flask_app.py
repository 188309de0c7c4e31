"""A small Flask application (needs `pip install -r examples/requirements.txt`).

    rgunicorn examples.flask_app:app
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return "Hello from Flask on rgunicorn!\n"


@app.get("/hello/<name>")
def hello(name):
    return f"Hello, {name}!\n"


@app.get("/json")
def json_hello():
    """A small JSON document (the benchmark's Flask case)."""
    return jsonify(message="Hello, World!")


@app.post("/api/echo")
def echo():
    """Echoes a JSON object back with the number of keys it had."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return jsonify(error="send a JSON object"), 400
    return jsonify(received=payload, keys=len(payload))
