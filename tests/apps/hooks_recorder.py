"""Worker hooks for tests/hooks.rs: each hook appends one JSON line saying
what it was given to the file named by $HOOKS_RECORD, and logs through
worker.log / server.log. A request to /raise-in-hooks makes pre_request and
post_request raise."""

import json
import os
import time

RECORD = os.environ["HOOKS_RECORD"]


def record(hook, **facts):
    line = json.dumps(dict(hook=hook, pid=os.getpid(), **facts)) + "\n"
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def cfg_facts(cfg):
    return dict(
        workers=cfg.workers,
        bind=list(cfg.bind),
        timeout=cfg.timeout,
        wsgi_app=cfg.wsgi_app,
        hooks=cfg.hooks,
    )


def post_fork(server, worker):
    import sys

    record(
        "post_fork",
        worker_pid=worker.pid,
        ppid=worker.ppid,
        server_pid=server.pid,
        age=worker.age,
        alive=worker.alive,
        app_is_none=worker.app is None,
        app_imported="hooked_app" in sys.modules,
        log_name=worker.log.name,
        cfg=cfg_facts(server.cfg),
        same_cfg=server.cfg is worker.cfg,
    )
    server.log.info("post_fork says hello from %s", worker.pid)


def post_worker_init(worker):
    record(
        "post_worker_init",
        app_name=getattr(worker.app, "__name__", None),
        app_callable=callable(worker.app),
    )
    worker.log.warning("post_worker_init warns")


def pre_request(worker, req):
    req.marker = "set-in-pre-request"
    record(
        "pre_request",
        method=req.method,
        path=req.path,
        query=req.query,
        uri=req.uri,
        version=list(req.version),
        headers=[list(h) for h in req.headers],
        remote_addr=list(req.remote_addr) if isinstance(req.remote_addr, tuple) else req.remote_addr,
    )
    if req.path == "/raise-in-hooks":
        raise RuntimeError("pre_request hook failed on purpose")


def post_request(worker, req, environ, resp):
    record(
        "post_request",
        path=req.path,
        marker=getattr(req, "marker", None),
        path_info=environ.get("PATH_INFO"),
        status=resp.status,
        status_code=resp.status_code,
        headers=[list(h) for h in resp.headers],
        sent=resp.sent,
    )
    if req.path == "/raise-in-hooks":
        raise ValueError("post_request hook failed on purpose")


def worker_int(worker):
    record("worker_int", alive=worker.alive)


def worker_abort(worker):
    record("worker_abort", alive=worker.alive)


def worker_exit(server, worker):
    record("worker_exit", alive=worker.alive, server_pid=server.pid)
