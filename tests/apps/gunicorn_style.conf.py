"""A gunicorn-style config file used as --hooks: its settings are ignored,
its worker hooks run, its master hooks are reported as not called."""

bind = "0.0.0.0:9999"
workers = 3


def on_starting(server):
    server.log.info("never called")


def when_ready(server):
    server.log.info("never called either")


def post_fork(server, worker):
    server.log.info("Worker spawned (pid: %s) from a config file", worker.pid)


def pre_request(worker, req):
    worker.log.info("config-file hook saw %s %s", req.method, req.path)
