"""A WSGI app for the --preload tests (tests/preload.rs).

At import it appends `imported in PID` to the file named by
$PRELOAD_IMPORT_LOG (so a test can count imports), reads its version from
the file named by $PRELOAD_VERSION_FILE (`v1` when unset) and raises if
that version is `broken` (a deploy that cannot be imported). With
$PRELOAD_START_THREAD set it starts a thread at import (which preload
forbids, but must survive: the zygote then forks with glibc's fork). It registers
an `os.register_at_fork` child handler, which records the pid it ran in.

Routes:
- `GET /`: `pid N` (the load generator of tests/support/load.rs reads it),
  with the version in an `X-Version` header.
- `GET /facts`: one `key=value` line each: pid, ppid, sys.argv (as JSON),
  the pid that imported the module, the pids the at-fork handler ran in,
  gc's frozen count, the first `random` draw this process made (taken
  on its first request), and `tid_clock_is_own`: whether the CPU clock
  glibc names for this thread (from its cached tid) is the one of this
  process's own tid.
- `GET /facts?sleep=S`: the same after saying `preload_app: sleeping in pid
  N` on stderr and sleeping S seconds (keeps this worker busy).
"""

import gc
import json
import os
import random
import sys
import time

IMPORTED_IN = os.getpid()

_log = os.environ.get("PRELOAD_IMPORT_LOG")
if _log:
    with open(_log, "a") as f:
        f.write(f"imported in {IMPORTED_IN}\n")

_version_file = os.environ.get("PRELOAD_VERSION_FILE")
VERSION = open(_version_file).read().strip() if _version_file else "v1"
if VERSION == "broken":
    raise RuntimeError("preload_app: broken on purpose")

AFTER_FORK_IN = []
os.register_at_fork(after_in_child=lambda: AFTER_FORK_IN.append(os.getpid()))

if os.environ.get("PRELOAD_START_THREAD"):
    import threading

    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()

_first_draw = None


def _tid_clock_is_own():
    """glibc makes pthread_getcpuclockid's id from the tid it caches in the
    thread's descriptor (CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD, ~tid << 3)."""
    import threading

    clock = time.pthread_getcpuclockid(threading.get_ident())
    return clock == ((~threading.get_native_id()) << 3) | 6


def application(environ, start_response):
    global _first_draw
    if _first_draw is None:
        _first_draw = random.getrandbits(64)
    if environ["PATH_INFO"] == "/facts":
        query = environ.get("QUERY_STRING", "")
        if query.startswith("sleep="):
            print(f"preload_app: sleeping in pid {os.getpid()}", file=sys.stderr, flush=True)
            time.sleep(float(query[len("sleep="):]))
        facts = dict(
            pid=os.getpid(),
            ppid=os.getppid(),
            argv=json.dumps(sys.argv),
            imported_in=IMPORTED_IN,
            after_fork_in=",".join(map(str, AFTER_FORK_IN)),
            freeze_count=gc.get_freeze_count(),
            first_draw=_first_draw,
            version=VERSION,
            tid_clock_is_own=_tid_clock_is_own(),
        )
        body = "".join(f"{key}={value}\n" for key, value in facts.items()).encode()
    else:
        body = f"pid {os.getpid()}".encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-Version", VERSION),
        ],
    )
    return [body]
