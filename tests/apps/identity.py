"""Reports the identity the worker runs as, for tests/process_settings.rs:
`uid=U gid=G euid=E groups=A,B`."""

import os


def application(environ, start_response):
    groups = ",".join(str(g) for g in sorted(set(os.getgroups())))
    body = (
        f"uid={os.getuid()} gid={os.getgid()} euid={os.geteuid()} groups={groups}"
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
