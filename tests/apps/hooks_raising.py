"""Every hook raises: the worker must log each and keep serving."""


def post_fork(server, worker):
    raise RuntimeError("post_fork failed on purpose")


def post_worker_init(worker):
    raise RuntimeError("post_worker_init failed on purpose")


def pre_request(worker, req):
    raise RuntimeError("pre_request failed on purpose")


def post_request(worker, req, environ, resp):
    raise RuntimeError("post_request failed on purpose")
