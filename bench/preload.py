#!/usr/bin/env python3
"""Measures `--preload` (issue 10): memory shared by the workers, worker
spawn time and HUP under load, for rgunicorn and gunicorn, and writes the
"Preload" section of docs/benchmarks.md with its chart.

The app is bench/big_import.py (about 200 MiB of Python objects built at
import; a request touches a small hot part of them), served from a copy in
target/bench-logs/preload-app so the HUP phase can edit it. The servers, one
at a time, each with 4 sync workers on 127.0.0.1, `--timeout 120` (so a
slow import is not a timeout) and an access log of one `%(p)s` (the pid) per
request:

    rgunicorn           rgunicorn --workers 4
    rgunicorn-preload   rgunicorn --workers 4 --preload   (zygote, gc.freeze)
    gunicorn            gunicorn --workers 4 --worker-class sync
    gunicorn-preload    the same with --preload           (no gc.freeze)

For each server, in this order:

1. Memory. wrk (`Connection: close`, so every request is a new accept and
   the kernel spreads them over the workers) runs in bursts of a few seconds
   until every worker has served --requests (10,000) requests, counted per
   pid in the access log. Then the Pss (and Rss, Private_Dirty, ...) of
   every process of the server is read from /proc/PID/smaps_rollup: the
   workers (the pids of the access log), the master, and the zygote
   (rgunicorn --preload: the process that is neither). The figure is the
   sum of the workers' Pss; the issue's ratio is preload / no preload.
   GET /stats (gc counters) is asked of every worker afterwards.
2. Spawn time, --spawn-rounds times: the serving workers are stopped
   (SIGSTOP), one request is sent (its connection waits in the listen
   backlog, where only a new worker can accept it), the master gets TTIN,
   and the time until the answer comes (from the new pid) is taken: TTIN to
   first served request, an upper bound on fork to first request. The time
   until the new pid shows in /proc is taken too. Then SIGCONT, TTOU, and
   the server is back at 4 workers. The figure is the median.
3. HUP under load: wrk (keep-alive, 16 connections) runs; the copy of the
   app is edited (VERSION v1 -> v2) and the master gets HUP. A probe asks
   GET / every 50 ms until it answers v2 and every process of the old
   generation is gone (or 90 s pass), then wrk stops. Failed requests are
   wrk's socket errors and non-2xx answers, plus failed probes.

Usage: bench/preload.sh [options] (see --help; a smoke run:
       bench/preload.sh --requests 500 --spawn-rounds 1 --mb 20 --out /tmp/p.md)
Raw results: target/bench-logs/preload-results.json (--render re-renders).
"""

import argparse
import datetime
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

from benchlib import (LOGDIR, ROOT, VENV, Server, build_rgunicorn, git_commit, loadavg, machine, median,
                      pip_versions, reexec_in_venv, smaps_rollup, tool_versions, venv_bin)

APP_DIR = os.path.join(LOGDIR, "preload-app")
APP_SOURCE = os.path.join(ROOT, "bench", "big_import.py")
APP = "big_import:application"
WORKERS = 4
SECTION = "bench/preload.sh"
SERVERS = ("rgunicorn", "rgunicorn-preload", "gunicorn", "gunicorn-preload")


def server_argv(name, rgunicorn, access_log):
    """name -> function(app, port) -> argv."""
    common = ["--workers", str(WORKERS), "--chdir", APP_DIR, "--timeout", "120", "--log-level", "info",
              "--access-logfile", access_log, "--access-logformat", "%(p)s"]
    preload = ["--preload"] if name.endswith("-preload") else []
    if name.startswith("rgunicorn"):
        return lambda app, port: [rgunicorn, *common, *preload, "--virtualenv", VENV,
                                  "--bind", f"127.0.0.1:{port}", app]
    return lambda app, port: [venv_bin("gunicorn"), *common, *preload, "--worker-class", "sync",
                              "--bind", f"127.0.0.1:{port}", app]


def write_app(version):
    os.makedirs(APP_DIR, exist_ok=True)
    source = open(APP_SOURCE).read()
    edited = re.sub(r'^VERSION = "v1"', f'VERSION = "{version}"', source, count=1, flags=re.M)
    assert edited != source or version == "v1", "bench/big_import.py has no VERSION line"
    with open(os.path.join(APP_DIR, "big_import.py"), "w") as f:
        f.write(edited)


def children(pid):
    """The direct children of `pid` (all its threads), from /proc."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return found


def descendants(root):
    out, todo = [], [root]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def state(pid):
    """The process state letter from /proc/PID/stat (R, S, T, Z, ...), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def stop(pids, timeout=10):
    """SIGSTOPs `pids` and waits until each is stopped (kill returns before)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(state(pid) not in ("T", None) for pid in pids):
        time.sleep(0.001)


def resume(pids):
    for pid in pids:
        os.kill(pid, signal.SIGCONT)


def schedstat(pid):
    """(seconds on a CPU, seconds runnable but waiting for one) of `pid`
    since it began, from /proc/PID/schedstat; (None, None) when gone."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            on_cpu, waiting = f.read().split()[:2]
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return None, None


def alive(pid):
    return state(pid) not in ("Z", "X", None)


class PreloadServer(Server):
    """A server of this benchmark: its access log tells which pids serve."""

    def __init__(self, name, rgunicorn, label, env):
        self.access_log = os.path.join(LOGDIR, f"preload-{label}-access.log")
        open(self.access_log, "w").close()
        self.read_upto = 0
        self.counts = {}
        procs = 2 + WORKERS if name == "rgunicorn-preload" else 1 + WORKERS
        super().__init__(f"preload-{label}", server_argv(name, rgunicorn, self.access_log), procs, APP, "/",
                         env={"PYTHONDONTWRITEBYTECODE": "1", **env})
        self.label = label
        self.preload_zygote = name == "rgunicorn-preload"

    def served(self):
        """pid -> requests in the access log so far."""
        with open(self.access_log, "rb") as f:
            f.seek(self.read_upto)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.read_upto += end
        for pid in re.findall(rb"<(\d+)>", data[:end]):
            self.counts[int(pid)] = self.counts.get(int(pid), 0) + 1
        return self.counts

    def serving(self):
        """The live pids that have served."""
        return [pid for pid in self.served() if alive(pid)]

    def others(self):
        """The live processes below the master that have not served (the zygote)."""
        serving = set(self.serving())
        return [pid for pid in descendants(self.proc.pid) if pid not in serving and alive(pid)]


# ---------------------------------------------------------------- phases


def wrk(url, seconds, connections, close):
    # A request waits up to 30 s (a new generation may be importing) before
    # wrk counts it as a timeout.
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s"]
    if close:
        argv += ["-H", "Connection: close"]
    return argv + [url]


def parse_wrk_errors(out):
    requests = int(m.group(1)) if (m := re.search(r"(\d+) requests in", out)) else 0
    errors = 0
    if m := re.search(r"Socket errors:(.*)", out):
        errors += sum(int(n) for n in re.findall(r"\d+", m.group(1)))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    return requests, errors


def wrk_socket_errors(out):
    """wrk's `Socket errors:` line as it stands, or None."""
    m = re.search(r"Socket errors: (.*)", out)
    return m.group(1).strip() if m else None


def drive_until_served(server, per_worker, deadline_s):
    """Runs wrk bursts until every one of the WORKERS workers has served
    `per_worker` requests; returns pid -> requests served and the seconds."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        counts = {pid: n for pid, n in server.served().items() if alive(pid)}
        if len(counts) >= WORKERS and min(sorted(counts.values())[-WORKERS:]) >= per_worker:
            break
        done = sum(min(n, per_worker) for n in sorted(counts.values())[-WORKERS:])
        left = WORKERS * per_worker - done
        seconds = max(2, min(10, left // 3000 + 1))
        out = subprocess.run(wrk(server.url(), seconds, 16, close=True), capture_output=True, text=True).stdout
        log(server, "load", out)
    time.sleep(0.5)  # the workers flush their access log between polls
    counts = {pid: n for pid, n in server.served().items() if alive(pid)}
    return counts, time.monotonic() - started


def read_memory(server):
    serving = set(server.serving())
    rows = []
    for pid in [server.proc.pid] + descendants(server.proc.pid):
        role = "worker" if pid in serving else ("master" if pid == server.proc.pid else "zygote")
        m = smaps_rollup(pid)
        if m:
            rows.append({"pid": pid, "role": role, "served": server.counts.get(pid, 0),
                         **{k: m.get(k, 0) for k in ("Rss", "Pss", "Pss_Anon", "Shared_Clean",
                                                      "Shared_Dirty", "Private_Clean", "Private_Dirty")}})
    return rows


def worker_stats(server, only=None):
    """GET /stats of each serving worker (or of those in `only`), the others
    stopped meanwhile so that only it can accept: pid -> stats."""
    found = {}
    pids = server.serving()
    for pid in only or pids:
        others = [p for p in pids if p != pid]
        stop(others)
        try:
            for _ in range(3):
                body = server.get("/stats", timeout=30)
                if body and json.loads(body)["pid"] == pid:
                    found[pid] = json.loads(body)
                    break
        finally:
            resume(others)
    return found


def http_get_raw(port, path):
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    return sock


def spawn_round(server):
    """One TTIN with every serving worker stopped: (seconds until the new
    pid is seen, seconds until it answered, its pid) or None."""
    master = server.proc.pid
    stopped = server.serving()
    before = set(descendants(master))
    stop(stopped)
    try:
        sock = http_get_raw(server.port, "/pid")
        started = time.monotonic()
        os.kill(master, signal.SIGTTIN)
        seen = {}  # new pid -> seconds after TTIN it showed in /proc
        reply = b""
        deadline = started + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 0.002)
            if ready:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
                continue
            for pid in set(descendants(master)) - before - set(seen):
                seen[pid] = time.monotonic() - started
        answered = time.monotonic() - started
        sock.close()
    finally:
        resume(stopped)
    body = reply.split(b"\r\n\r\n", 1)[-1]
    if not reply.startswith(b"HTTP/1.1 200") or not body.strip().isdigit():
        print(f"bench: {server.label}: spawn round got {reply[:200]!r}", file=sys.stderr)
        return None
    new_pid = int(body)
    if new_pid in stopped:
        print(f"bench: {server.label}: a stopped worker answered", file=sys.stderr)
        return None
    on_cpu, waiting = schedstat(new_pid)
    stats = worker_stats(server, only=[new_pid]).get(new_pid, {})
    return {"seen": min(seen.values(), default=None), "worker_seen": seen.get(new_pid), "answered": answered, "pid": new_pid, "import_seconds": stats.get("import_seconds"),
            "on_cpu": on_cpu, "waiting": waiting, "load": loadavg()[0]}


def back_to_workers(server, count, timeout=60):
    """TTOU, then wait until `count` workers run."""
    os.kill(server.proc.pid, signal.SIGTTOU)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [p for p in descendants(server.proc.pid) if alive(p)]
        zygotes = 1 if server.preload_zygote else 0
        if len(workers) == count + zygotes:
            return True
        time.sleep(0.05)
    return False


def hup_under_load(server, version, close, timeout=90):
    """HUP with the app edited to `version` while wrk runs (with
    `Connection: close` or keep-alive)."""
    old = [p for p in descendants(server.proc.pid) if alive(p)]
    write_app(version)
    load = subprocess.Popen(wrk(server.url(), timeout + 30, 16, close=close), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    probes = failed_probes = 0
    new_code_s = old_gone_s = None
    try:
        time.sleep(2)
        started = time.monotonic()
        os.kill(server.proc.pid, signal.SIGHUP)
        while time.monotonic() - started < timeout:
            body = server.get("/", timeout=30)
            probes += 1
            if body is None:
                failed_probes += 1
            elif new_code_s is None and json.loads(body).get("version") == version:
                new_code_s = time.monotonic() - started
            if old_gone_s is None and not any(alive(p) for p in old):
                old_gone_s = time.monotonic() - started
            if old_gone_s is not None and (new_code_s is not None or time.monotonic() - started > old_gone_s + 3):
                break
            time.sleep(0.05)
        time.sleep(1)
    finally:
        load.send_signal(signal.SIGINT)
        try:
            out = load.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            load.kill()
            out = load.communicate()[0]
    log(server, f"hup {version} {'close' if close else 'keep-alive'}", out)
    requests, errors = parse_wrk_errors(out)
    body = server.get("/")
    return {"version": version, "close": close, "requests": requests, "socket_errors": wrk_socket_errors(out), "wrk_errors": errors, "probes": probes, "failed_probes": failed_probes,
            "new_code_s": new_code_s, "old_gone_s": old_gone_s,
            "version_after": json.loads(body).get("version") if body else None}


def log(server, phase, text):
    with open(os.path.join(LOGDIR, "preload-wrk.log"), "a") as f:
        f.write(f"== {server.label} {phase}\n{text}\n")


def measure(name, rgunicorn, args, full_gc_after=0):
    """The three phases on server `name`; with `full_gc_after`, only memory,
    each worker running one full collection at that request."""
    write_app("v1")
    label = f"{name}-full-gc" if full_gc_after else name
    server = PreloadServer(name, rgunicorn, label, {"BIG_IMPORT_FULL_GC_AFTER": str(full_gc_after)})
    result = {"server": name, "full_gc_after": full_gc_after}
    try:
        if not server.wait_ready(timeout=180):
            result["error"] = open(server.log_path).read()[-2000:]
            return result
        counts, seconds = drive_until_served(server, args.requests, args.load_deadline)
        result["served"] = counts
        result["load_seconds"] = round(seconds, 1)
        result["memory"] = read_memory(server)
        stats = worker_stats(server)
        result["stats"] = list(stats.values())
        print(f"bench: {name}: workers' Pss "
              f"{sum(r['Pss'] for r in result['memory'] if r['role'] == 'worker') / 1024:.0f} MiB "
              f"after {min(counts.values())}+ requests each ({seconds:.0f} s)", file=sys.stderr)
        if full_gc_after:
            return result
        spawns = []
        for _ in range(args.spawn_rounds):
            spawn = spawn_round(server)
            if spawn:
                spawns.append(spawn)
            if not back_to_workers(server, WORKERS):
                print(f"bench: {name}: did not return to {WORKERS} workers after TTOU", file=sys.stderr)
                break
        result["spawns"] = spawns
        if spawns:
            print(f"bench: {name}: spawn (TTIN to first answer) median "
                  f"{median([s['answered'] for s in spawns]) * 1000:.0f} ms", file=sys.stderr)
        if not args.no_hup:
            result["hups"] = []
            for version, close in (("v2", True), ("v3", False)):
                hup = hup_under_load(server, version, close)
                result["hups"].append(hup)
                print(f"bench: {name}: HUP {hup}", file=sys.stderr)
    finally:
        server.stop()
        result["log_tail"] = open(server.log_path).read()[-3000:]
    return result


def run(args):
    os.makedirs(LOGDIR, exist_ok=True)
    open(os.path.join(LOGDIR, "preload-wrk.log"), "w").close()
    rgunicorn = args.rgunicorn or build_rgunicorn()
    os.environ["BIG_IMPORT_MB"] = str(args.mb)
    load_before = loadavg()
    started = time.monotonic()
    results = []
    for name in args.servers or SERVERS:
        results.append(measure(name, rgunicorn, args))
    gc_after = args.requests // 2
    full_gc = [measure(name, rgunicorn, args, gc_after) for name in args.servers or SERVERS
               if args.full_gc and name.endswith("-preload")]
    pins = pip_versions()
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.monotonic() - started),
        "load_before": load_before,
        "load_after": loadavg(),
        "machine": machine(),
        "versions": tool_versions(rgunicorn) | {"gunicorn": pins.get("gunicorn", "?")},
        "commit": args.rgunicorn_commit or git_commit(),
        "settings": {"requests": args.requests, "spawn_rounds": args.spawn_rounds, "mb": args.mb,
                     "workers": WORKERS, "full_gc_after": gc_after},
        "results": results,
        "full_gc": full_gc,
    }
    with open(os.path.join(LOGDIR, "preload-results.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


# ---------------------------------------------------------------- report


def mib(kib):
    return kib / 1024


def summarize(result):
    """The figures of one server's run, or None when it did not run."""
    if "memory" not in result:
        return None
    rows = result["memory"]
    workers = [r for r in rows if r["role"] == "worker"]
    rest = [r for r in rows if r["role"] != "worker"]
    spawns = result.get("spawns") or []
    stats = result.get("stats") or []
    return {
        "workers": len(workers),
        "pss": sum(r["Pss"] for r in workers),
        "rss": sum(r["Rss"] for r in workers),
        "private_dirty": sum(r["Private_Dirty"] for r in workers),
        "others": {r["role"]: r["Pss"] for r in rest},
        "min_served": min(result["served"].values()) if result.get("served") else 0,
        "spawn_ms": median([s["answered"] * 1000 for s in spawns]),
        "spawn_min_ms": min([s["answered"] * 1000 for s in spawns], default=None),
        "on_cpu_ms": median([s["on_cpu"] * 1000 for s in spawns if s.get("on_cpu") is not None]),
        "waiting_ms": median([s["waiting"] * 1000 for s in spawns if s.get("waiting") is not None]),
        "spawn_load": median([float(s["load"]) for s in spawns if s.get("load")]),
        "seen_ms": median([s["seen"] * 1000 for s in spawns if s["seen"] is not None]),
        "worker_seen_ms": median([s["worker_seen"] * 1000 for s in spawns if s.get("worker_seen") is not None]),
        "spawn_n": len(spawns),
        "import_s": median([s["import_seconds"] for s in stats]),
        "spawn_import_s": median([s.get("import_seconds") for s in spawns]),
        "full_gcs": sorted(s["full_gcs_serving"] for s in stats),
        "frozen": median([s["gc_frozen"] for s in stats]),
        "models": stats[0]["models"] if stats else None,
        "hot": stats[0]["hot"] if stats else None,
    }


def fmt(value, digits=0, unit=""):
    return "–" if value is None else f"{value:,.{digits}f}{unit}"


def render(data, out_path, chart_path):
    by_name = {r["server"]: r for r in data["results"]}
    fig = {name: summarize(by_name[name]) if name in by_name else None for name in SERVERS}
    s, v = data["settings"], data["versions"]
    missing = [name for name in SERVERS if fig[name] is None]
    app = next((f for f in fig.values() if f and f["models"]), {"models": "?", "hot": "?"})
    lines = [f"<!-- {SECTION}: begin -->", "## Preload: memory and spawn time", ""]
    if missing:
        lines += [f"**Partial result: {', '.join(missing)} not measured in this run** "
                  "(see the notes below the tables).", ""]
    lines += [
        f"Written by `bench/preload.sh` (bench/preload.py), issue 10. The app is "
        f"`bench/big_import.py`: about {s['mb']} MiB of Python objects built at import (model "
        f"classes with field dicts, a translation catalog, a routing cache); a request renders one "
        f"of its {app['hot']} hot models (every 50th of {app['models']}, in turn) field by field, so those objects' "
        "refcounts are written, and leaves the rest untouched. Every server runs "
        f"`--workers {s['workers']}` (sync) on 127.0.0.1 with `--timeout 120`, one at a time.",
        "",
        f"* date: {data['date']}; the run took {data['seconds'] // 60} min",
        f"* machine: {data['machine']}; load average before / after: "
        f"{' '.join(data['load_before'])} / {' '.join(data['load_after'])} (other work shares it)",
        f"* rgunicorn: {v['rgunicorn']}, commit {data['commit']}, release build; gunicorn "
        f"{v['gunicorn']}; Python {v['python']}; wrk {v['wrk']}",
        "",
        f"Memory: wrk (`Connection: close`, 16 connections) until every worker has served at least "
        f"{s['requests']:,} requests (counted per pid in the access log), then `Pss` from "
        "`/proc/PID/smaps_rollup`. The master's (and the zygote's) own Pss is beside it, not in "
        "the sum.",
        "",
        "| server | workers' Pss, MiB (sum) | workers' Private_Dirty, MiB | master Pss, MiB "
        "| zygote Pss, MiB | fewest requests of a worker | full GCs per worker while serving "
        "| objects frozen (gc.freeze) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    gc_fig = {r["server"]: summarize(r) for r in data.get("full_gc", [])}
    rows = [(name, fig[name]) for name in SERVERS]
    rows += [(f"{name}, one full GC at request {s['full_gc_after']:,}", f) for name, f in gc_fig.items()]
    for label, f in rows:
        if f is None:
            lines.append(f"| {label} | not measured | | | | | | |")
            continue
        lines.append(f"| {label} | {mib(f['pss']):,.0f} | {mib(f['private_dirty']):,.0f} "
                     f"| {mib(f['others'].get('master', 0)):,.1f} "
                     f"| {fmt(mib(f['others']['zygote']) if 'zygote' in f['others'] else None, 1)} "
                     f"| {f['min_served']:,} | {', '.join(map(str, f['full_gcs'])) or '–'} "
                     f"| {fmt(f['frozen'])} |")
    lines += ["", "| | preload / no preload, workers' Pss | with one full GC per worker | goal |",
              "| --- | ---: | ---: | --- |"]
    for rg, goal in (("rgunicorn", "≤ 0.4"), ("gunicorn", "(reported beside it)")):
        base, a, g = fig[rg], fig[f"{rg}-preload"], gc_fig.get(f"{rg}-preload")
        value = f"{a['pss'] / base['pss']:.2f}" if a and base else "–"
        with_gc = f"{g['pss'] / base['pss']:.2f}" if g and base else "–"
        met = ""
        if rg == "rgunicorn" and a and base:
            met = " (met)" if a["pss"] / base["pss"] <= 0.4 else " (**not met**)"
        lines.append(f"| {rg} | {value} | {with_gc} | {goal}{met} |")
    if gc_fig:
        lines += ["", f"The second rows run the same app with `BIG_IMPORT_FULL_GC_AFTER={s['full_gc_after']}`: "
                      "each worker runs one `gc.collect()` at that request, standing in for the full "
                      "collections that a worker's own long-lived allocations trigger (CPython 3.11 runs "
                      "one when the objects promoted to the oldest generation since the last one reach a "
                      "quarter of it; this app's requests allocate nothing that lives, so none ran on "
                      "their own). A full collection writes to the header of every object it visits; "
                      "`gc.freeze()` in the zygote moves the imported objects where it does not look."]
    lines += [
        "",
        f"Spawn time: with the serving workers stopped (SIGSTOP), one request waits in the listen "
        "backlog; the master gets TTIN; the time until that request is answered (by the new pid) is "
        "TTIN → first served request, an upper bound on fork → first request. \"a new pid seen\" is "
        "when the first new process shows in `/proc` (polled every 2 ms; with rgunicorn `--preload` "
        "the worker itself, which the zygote clones as the master's child, unless a zygote with "
        "threads forks twice: then its intermediate child), \"the worker's pid seen\" when "
        "the worker itself does. \"on a CPU\" and \"waiting for a CPU\" are the new "
        "process's own times from its fork (with preload, the zygote's fork of it) to its "
        "first answer, from `/proc/PID/schedstat`: what is left of the wall time is the master's and "
        "the zygote's part and sleeping. The load average is the machine's (1 min) during the "
        "rounds: on 2 cores shared with other work, the wait for a CPU is most of the spread. Median of "
        f"{s['spawn_rounds']} rounds. The import times are the app's own (`time.perf_counter()` "
        "around its module body): in the new worker (without preload it imports the app itself, "
        "alone on the machine's share left by the others), and at boot (with preload once, in the "
        "zygote or gunicorn's master; without it in each of the 4 workers at once).",
        "",
        "| server | TTIN → first served request, ms (median) | fastest round, ms "
        "| TTIN → a new pid seen, ms | TTIN → the worker's pid seen, ms | new worker on a CPU, ms "
        "| new worker waiting for a CPU, ms | rounds | load average | the new worker's app import, s "
        "| app import at boot, s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in SERVERS:
        f = fig[name]
        if f is None:
            lines.append(f"| {name} | not measured | | | | | | | | | |")
            continue
        inherited = " (none: forked after it)" if name.endswith("-preload") else ""
        lines.append(f"| {name} | {fmt(f['spawn_ms'], 1)} | {fmt(f['spawn_min_ms'], 1)} | {fmt(f['seen_ms'], 1)} "
                     f"| {fmt(f['worker_seen_ms'], 1)} "
                     f"| {fmt(f['on_cpu_ms'], 1)} | {fmt(f['waiting_ms'], 1)} | {f['spawn_n']} "
                     f"| {fmt(f['spawn_load'], 1)} "
                     f"| {fmt(None if inherited else f['spawn_import_s'], 2)}{inherited} "
                     f"| {fmt(f['import_s'], 2)} |")
    goal = fig["rgunicorn-preload"]
    if goal and goal["spawn_ms"] is not None:
        lines += ["", f"Goal: spawn with `--preload` below 50 ms: median {goal['spawn_ms']:.1f} ms "
                      f"({'met' if goal['spawn_ms'] < 50 else '**not met**'}), fastest round "
                      f"{goal['spawn_min_ms']:.1f} ms, of which the new worker spent {fmt(goal['on_cpu_ms'], 1)} ms "
                      "on a CPU (medians)."]
    lines += [
        "",
        "HUP under load, twice: wrk (16 connections) runs, first with `Connection: close`, then "
        "keep-alive; the app's module is edited (`VERSION` v1 → v2, then → v3) and the master gets "
        "HUP; a probe asks `GET /` every 50 ms on a new connection. Failed requests are wrk's socket "
        "errors and non-2xx answers, plus failed probes.",
        "",
        "| server | wrk connections | requests during the run | failed | wrk's socket errors "
        "| new code served after, s | old generation gone after, s | version served after (edited to) |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for name in SERVERS:
        hups = by_name.get(name, {}).get("hups")
        if not hups:
            lines.append(f"| {name} | not measured | | | | | | |")
            continue
        for h in hups:
            lines.append(f"| {name} | {'close' if h['close'] else 'keep-alive'} | {h['requests']:,} "
                         f"| {h['wrk_errors'] + h['failed_probes']} | {h['socket_errors'] or 'none'} "
                         f"| {fmt(h['new_code_s'], 1)} | {fmt(h['old_gone_s'], 1)} "
                         f"| {h['version_after']} ({h['version']}) |")
    hups = {(name, h["close"]): h for name in SERVERS for h in by_name.get(name, {}).get("hups", [])}
    if any(h["wrk_errors"] for (name, close), h in hups.items() if name.startswith("rgunicorn") and not close):
        lines += ["", "rgunicorn's keep-alive failures are wrk read errors, about one per connection, with "
                      "and without `--preload`: at the measured commit a retiring worker closed its idle "
                      "keep-alive connections at once, and a request wrk sent on one at that instant met "
                      "the closed socket (a client may retry an idempotent request then, RFC 9112 §9.3.1; "
                      "wrk does not). With `Connection: close` no request fails. Since then a stopping "
                      "worker answers one more request on each waiting connection (docs/signals.md); "
                      "rerun `bench/preload.sh` for this table."]
    gunicorn_close = hups.get(("gunicorn", True))
    if gunicorn_close and gunicorn_close["wrk_errors"]:
        lines += ["", "gunicorn without preload stops its old workers as soon as the new ones are forked, "
                      "before they have imported the app, so requests wait for the import (wrk's timeouts "
                      "are requests unanswered after 30 s). gunicorn `--preload` re-forks from the "
                      "master's old image: the edited module is never served."]
    notes = []
    for name in SERVERS:
        r = by_name.get(name)
        if r is None:
            notes.append(f"* {name}: not run.")
        elif "error" in r:
            first = next((line for line in r["error"].splitlines() if "rror" in line), r["error"][-200:])
            notes.append(f"* {name}: did not start: `{first.strip()[:200]}`")
    if notes:
        lines += ["", "Notes:", ""] + notes
    if chart_path:
        rel = os.path.relpath(chart_path, os.path.dirname(out_path))
        lines += ["", f"![workers' Pss and spawn time, with and without --preload]({rel})"]
    lines += ["", "Reproduce: `bench/preload.sh` (about 10 minutes). Raw figures: "
                  "`target/bench-logs/preload-results.json`.", f"<!-- {SECTION}: end -->"]
    write_section(out_path, "\n".join(lines))
    if chart_path:
        chart(fig, gc_fig, chart_path, data)


def write_section(path, section):
    """Puts the section between its markers in `path` (bench/compare.py keeps
    it there when it rewrites the file), or appends it."""
    try:
        text = open(path).read()
    except OSError:
        text = ""
    pattern = re.compile(rf"<!-- {re.escape(SECTION)}: begin -->.*?<!-- {re.escape(SECTION)}: end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    with open(path, "w") as f:
        f.write(text)


def chart(fig, gc_fig, path, data):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = [n for n in SERVERS if fig[n]]
    plot, (mem, spawn) = plt.subplots(1, 2, figsize=(11, 4.2))
    bars = [(n, fig[n], "") for n in names] + [(f"{n}, 1 full GC", f, "//") for n, f in gc_fig.items() if f]
    values = [mib(f["pss"]) for _, f, _ in bars]
    mem.barh([label for label, _, _ in bars], values,
             color=["#c0392b" if label.startswith("rgunicorn") else "#7f8c8d" for label, _, _ in bars],
             hatch=[hatch for _, _, hatch in bars], edgecolor="white")
    for y, value in enumerate(values):
        mem.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    mem.set_title(f"workers' Pss after {data['settings']['requests']:,} requests each, MiB", fontsize=10)
    spawn_names = [n for n in names if fig[n]["spawn_ms"] is not None]
    values = [fig[n]["spawn_ms"] for n in spawn_names]
    spawn.barh(spawn_names, values,
               color=["#c0392b" if n.startswith("rgunicorn") else "#7f8c8d" for n in spawn_names])
    for y, value in enumerate(values):
        spawn.text(value, y, f" {value:,.0f} ms", va="center", fontsize=8)
    spawn.set_xscale("log")
    spawn.set_xlim(1, max(values + [10]) * 8)
    spawn.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    spawn.set_title("TTIN → first served request, ms (log)", fontsize=10)
    mem.margins(x=0.25)
    for ax in (mem, spawn):
        ax.invert_yaxis()
        ax.tick_params(labelsize=8)
    plot.suptitle(f"--preload, 4 workers, a {data['settings']['mb']} MiB import; lower is better\n"
                  f"{data['date']}, commit {data['commit']}", fontsize=9)
    plot.tight_layout()
    plot.savefig(path, dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", nargs="*", choices=SERVERS, help="only these servers")
    parser.add_argument("--requests", type=int, default=10000,
                        help="requests each worker serves before memory is read (default 10000)")
    parser.add_argument("--load-deadline", type=int, default=300,
                        help="seconds of load at most per server (default 300)")
    parser.add_argument("--spawn-rounds", type=int, default=9, help="TTIN rounds (default 9)")
    parser.add_argument("--mb", type=int, default=200, help="MiB the app builds at import (default 200)")
    parser.add_argument("--no-hup", action="store_true", help="leave out the HUP phase")
    parser.add_argument("--no-full-gc", dest="full_gc", action="store_false",
                        help="leave out the second memory run of the preload servers, in which each "
                             "worker runs one full collection halfway")
    parser.add_argument("--rgunicorn", help="the rgunicorn binary (default: cargo build --release)")
    parser.add_argument("--rgunicorn-commit", help="the commit --rgunicorn was built from, for the report "
                                                   "(default: this checkout's)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--chart", default=None,
                        help="the PNG (default: benchmarks-preload.png beside --out; 'none' for none)")
    parser.add_argument("--render", action="store_true",
                        help="only re-render target/bench-logs/preload-results.json")
    args = parser.parse_args()
    reexec_in_venv(__file__)
    chart_path = None if args.chart == "none" else (
        args.chart or os.path.join(os.path.dirname(os.path.abspath(args.out)), "benchmarks-preload.png"))
    if args.render:
        data = json.load(open(os.path.join(LOGDIR, "preload-results.json")))
    else:
        data = run(args)
    render(data, args.out, chart_path)
    print(f"bench: wrote the preload section of {args.out}" + (f" and {chart_path}" if chart_path else ""),
          file=sys.stderr)


if __name__ == "__main__":
    main()
