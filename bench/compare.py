#!/usr/bin/env python3
"""Benchmarks rgunicorn against the other WSGI servers and writes
docs/benchmarks.md with its chart.

The servers (all on 127.0.0.1, each with its own free port):

    rgunicorn-w1      rgunicorn --workers 1 (against bjoern's single process)
    rgunicorn-w2      rgunicorn --workers 2
    bjoern            one process
    granian           --interface wsgi --workers 1
    gunicorn-sync     --workers 2
    gunicorn-gthread  --workers 2 --threads 4
    uwsgi             --master --processes 2 --http-socket
    waitress          one process, 4 threads

The scenarios: hello (examples/hello.py) and Flask /json
(examples/flask_app.py), each with keep-alive and with `Connection: close`;
a 1 MiB response and a 1 MiB upload (bench/apps.py) with keep-alive.

All servers of one app run at once; wrk drives them one at a time in rounds,
the order rotating each round, so a change in the machine's other load hits
every server alike. For each run: requests/s, p50/p99 latency and errors
from wrk; server CPU per request from utime+stime (+ the reaped children's
cutime+cstime) of every process in the server's tree, read from
/proc/PID/stat before and after; fairness from the server side's sockets
(`ss -ti`, bytes received per connection a little before the run ends, as a
share of the mean: a server that serves a few connections while others
starve shows a low minimum). A figure is the median over the rounds.
Memory (RSS and PSS from /proc/PID/smaps_rollup) is read per worker after
the last round of each app.

The script installs what it needs itself: wrk, libev-dev and python3-dev
from apt when missing, and the pinned peers of bench/requirements.txt into
target/bench-venv; it then re-runs itself with that virtualenv's Python.

With --tls every server serves HTTPS with one self-signed P-256 certificate
made with `openssl` in target/bench-logs (rgunicorn and gunicorn with
--certfile/--keyfile, Granian with --ssl-certificate/--ssl-keyfile, at two
workers like the rest; bjoern, uWSGI and waitress are left out), wrk
requests https://, and the report goes to docs/benchmarks-tls.md. Its
`Connection: close` scenario is one full TLS 1.3 handshake per request.

Usage: bench/compare.sh [options]   (see --help; a smoke run:
       bench/compare.sh --duration 2 --rounds 1 --out /tmp/bench.md)
Raw results go to target/bench-logs/results.json (--render re-renders them).
Sections that other scripts keep in the output between `<!-- NAME: begin -->`
and `<!-- NAME: end -->` (bench/threads.sh's, bench/preload.sh's) are written back unchanged.
"""

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

from benchlib import (LOGDIR, ROOT, VENV, Server, build_rgunicorn, git_commit, kept_sections, loadavg,
                      machine, median, memory_kib, parse_wrk, pip_versions, reexec_in_venv, tool_versions,
                      tree_cpu_seconds, venv_bin, workers)

# app name -> (WSGI target, path probed and requested)
APPS = {
    "hello": ("examples.hello:application", "/"),
    "flask": ("examples.flask_app:app", "/json"),
    "big": ("bench.apps:big", "/"),
    "upload": ("bench.apps:upload", "/"),
}

# scenario name -> (app, connection mode, wrk Lua script or None)
SCENARIOS = {
    "hello": ("hello", "keepalive", None),
    "hello-close": ("hello", "close", None),
    "flask": ("flask", "keepalive", None),
    "flask-close": ("flask", "close", None),
    "1mib-response": ("big", "keepalive", None),
    "1mib-upload": ("upload", "keepalive", "upload.lua"),
}

UPLOAD_LUA = """wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
"""

BJOERN_RUNNER = """import importlib, sys
module, name = sys.argv[1].split(":")
app = getattr(importlib.import_module(module), name)
import bjoern
bjoern.run(app, sys.argv[2], int(sys.argv[3]))
"""


# With --tls: (certificate, key) paths, made by make_certificate().
TLS = None
# The servers --tls measures (the others have no TLS of their own here).
TLS_PEERS = ("granian", "gunicorn-sync", "gunicorn-gthread")


def make_certificate():
    """A self-signed P-256 certificate for 127.0.0.1, for --tls."""
    cert, key = os.path.join(LOGDIR, "bench-cert.pem"), os.path.join(LOGDIR, "bench-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def tls_args(name):
    """The TLS flags of server `name` under --tls."""
    if TLS is None:
        return []
    cert, key = TLS
    if name == "granian":
        return ["--ssl-certificate", cert, "--ssl-keyfile", key]
    return ["--certfile", cert, "--keyfile", key]


def server_commands(rgunicorn_bins):
    """name -> (function(app, port) -> argv, process count when booted)."""
    servers = {}
    granian_workers = "2" if TLS else "1"
    for label, binary in rgunicorn_bins:
        for workers in (1, 2):
            servers[f"{label}-w{workers}"] = (
                lambda app, port, b=binary, w=workers: [
                    b, "--workers", str(w), "--bind", f"127.0.0.1:{port}", "--virtualenv", VENV,
                    "--chdir", ROOT, "--log-level", "warning", *tls_args("rgunicorn"), app,
                ],
                1 + workers,
            )
    servers.update({
        "bjoern": (lambda app, port: [venv_bin("python"), "-c", BJOERN_RUNNER, app, "127.0.0.1", str(port)], 1),
        "granian": (lambda app, port: [
            venv_bin("granian"), "--interface", "wsgi", "--workers", granian_workers, "--host", "127.0.0.1",
            "--port", str(port), "--no-ws", "--log-level", "warning", *tls_args("granian"), app,
        ], 1 + int(granian_workers)),
        "gunicorn-sync": (lambda app, port: [
            venv_bin("gunicorn"), "--workers", "2", "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}", "--chdir", ROOT, "--log-level", "warning",
            *tls_args("gunicorn"), app,
        ], 3),
        "gunicorn-gthread": (lambda app, port: [
            venv_bin("gunicorn"), "--workers", "2", "--worker-class", "gthread", "--threads", "4",
            "--bind", f"127.0.0.1:{port}", "--chdir", ROOT, "--log-level", "warning",
            *tls_args("gunicorn"), app,
        ], 3),
        "uwsgi": (lambda app, port: [
            venv_bin("uwsgi"), "--master", "--processes", "2", "--http11-socket", f"127.0.0.1:{port}",
            "--chdir", ROOT, "--module", app, "--disable-logging",
            "--die-on-term", "--need-app", "--buffer-size", "32768",
        ], 3),
        "waitress": (lambda app, port: [
            venv_bin("waitress-serve"), "--listen", f"127.0.0.1:{port}", "--threads", "4", app,
        ], 1),
    })
    return servers


# ---------------------------------------------------------------- load


def connection_shares(port):
    """Bytes received by each server-side connection, as shares of the mean."""
    out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    counts = [int(n) for n in re.findall(r"bytes_received:(\d+)", out)]
    if len(counts) < 2:
        return None
    mean = statistics.mean(counts)
    return min(counts) / mean if mean else None


def run_wrk(server, scenario, args):
    _, mode, lua = SCENARIOS[scenario]
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if mode == "close":
        argv += ["-H", "Connection: close"]
    if lua:
        argv += ["-s", os.path.join(LOGDIR, lua)]
    argv.append(server.url())
    shares = {}
    timer = None
    if mode == "keepalive":
        timer = threading.Timer(args.duration * 0.85,
                                lambda: shares.setdefault("min", connection_shares(server.port)))
        timer.start()
    cpu_before = tree_cpu_seconds(server.proc.pid)
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    cpu = tree_cpu_seconds(server.proc.pid) - cpu_before
    if timer:
        timer.join()
    with open(os.path.join(LOGDIR, "wrk.log"), "a") as log:
        log.write(f"== {server.name} {scenario}\n{out}\n")
    result = parse_wrk(out)
    result["cpu_us"] = cpu / result["requests"] * 1e6 if result["requests"] else None
    result["fair"] = shares.get("min")
    return result


# ---------------------------------------------------------------- the run


def run(args):
    os.makedirs(LOGDIR, exist_ok=True)
    with open(os.path.join(LOGDIR, "upload.lua"), "w") as f:
        f.write(UPLOAD_LUA)
    open(os.path.join(LOGDIR, "wrk.log"), "w").close()
    bins = [("rgunicorn", args.rgunicorn or build_rgunicorn())]
    for extra in args.also or []:
        label, _, path = extra.partition("=")
        bins.append((label, os.path.abspath(path)))
    commands = server_commands(bins)
    names = [n for n in commands if not args.servers or n in args.servers
             or n.rsplit("-w", 1)[0] in args.servers]
    if TLS:
        names = [n for n in names if n in TLS_PEERS or n.rsplit("-w", 1)[0] in [b[0] for b in bins]]
    scenarios = [s for s in SCENARIOS if not args.scenarios or s in args.scenarios]
    runs = {}  # (server, scenario) -> [result]
    memory = {}  # (server, app) -> [(rss, pss)] per worker
    load_before = loadavg()
    started = time.monotonic()
    estimate = len(names) * (len(scenarios) * args.rounds * (args.duration + 0.3)
                             + len({SCENARIOS[s][0] for s in scenarios}) * 4)
    print(f"bench: {len(names)} servers, {len(scenarios)} scenarios, {args.rounds} rounds: "
          f"about {estimate / 60:.0f} min", file=sys.stderr)
    for app in APPS:
        app_scenarios = [s for s in scenarios if SCENARIOS[s][0] == app]
        if not app_scenarios:
            continue
        target, path = APPS[app]
        servers = []
        try:
            for name in names:
                argv_for, procs = commands[name]
                servers.append(Server(name, argv_for, procs, target, path, cafile=TLS[0] if TLS else None))
            servers = [server for server in servers if server.wait_ready()]
            for server in servers:  # warm-up, not recorded
                run_wrk(server, app_scenarios[0], argparse.Namespace(**{**vars(args), "duration": 1}))
            for round_no in range(args.rounds):
                for scenario in app_scenarios:
                    for i in range(len(servers)):
                        server = servers[(i + round_no) % len(servers)]
                        result = run_wrk(server, scenario, args)
                        runs.setdefault((server.name, scenario), []).append(result)
                print(f"bench: {app}: round {round_no + 1} of {args.rounds} done "
                      f"({time.monotonic() - started:.0f}s)", file=sys.stderr)
            for server in servers:
                memory[(server.name, app)] = [memory_kib(p) for p in workers(server.proc.pid)]
        finally:
            for server in servers:
                server.stop()
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.monotonic() - started),
        "load_before": load_before,
        "load_after": loadavg(),
        "machine": machine(),
        "versions": versions(bins[0][1]),
        "commit": git_commit(),
        "settings": {k: getattr(args, k) for k in ("duration", "rounds", "connections", "threads")},
        "servers": names,
        "scenarios": scenarios,
        "tls": bool(TLS),
        "runs": {f"{s}|{c}": r for (s, c), r in runs.items()},
        "memory": {f"{s}|{a}": m for (s, a), m in memory.items()},
    }
    with open(os.path.join(LOGDIR, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


def versions(rgunicorn):
    pins = pip_versions()
    return tool_versions(rgunicorn) | {
        k: pins.get(k, "?") for k in ("bjoern", "granian", "gunicorn", "uwsgi", "waitress", "flask")}


# ---------------------------------------------------------------- report


def summary(results):
    """(server, scenario) -> medians of each figure over the rounds."""
    table = {}
    for key, rounds in results["runs"].items():
        server, scenario = key.split("|")
        table[(server, scenario)] = {
            field: median([r[field] for r in rounds])
            for field in ("rps", "cpu_us", "p50", "p99", "fair")
        } | {"errors": sum(r["errors"] for r in rounds), "n": len(rounds)}
    return table


def fmt(value, digits=1):
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}"


DESCRIPTIONS = {
    "hello": "hello (examples/hello.py, 14-byte body), keep-alive",
    "hello-close": "hello, `Connection: close` (a new connection per request)",
    "flask": "Flask `GET /json` (examples/flask_app.py), keep-alive",
    "flask-close": "Flask `GET /json`, `Connection: close`",
    "1mib-response": "a 1 MiB response (bench/apps.py `big`), keep-alive",
    "1mib-upload": "a 1 MiB upload read in full (bench/apps.py `upload`), keep-alive",
}

CONFIGS = {
    "bjoern": "one process",
    "granian": "`--interface wsgi --workers 1`",
    "gunicorn-sync": "`--workers 2 --worker-class sync`",
    "gunicorn-gthread": "`--workers 2 --worker-class gthread --threads 4`",
    "uwsgi": "`--master --processes 2 --http11-socket`",
    "waitress": "one process, `--threads 4`",
}


def goals(table, memory, rg="rgunicorn"):
    """The issue's goals, checked against this run: (goal, figures, met)."""
    def get(server, scenario, field):
        return table.get((server, scenario), {}).get(field)

    w1, w2 = f"{rg}-w1", f"{rg}-w2"
    out = []

    def check(text, a, b, limit):
        if a is None or b is None or not b:
            return
        out.append((text, f"{a:.3g} / {b:.3g} = {a / b:.2f} (goal ≤ {limit})", a / b <= limit))

    check("hello keep-alive `-w 1`: CPU per request vs bjoern",
          get(w1, "hello", "cpu_us"), get("bjoern", "hello", "cpu_us"), 0.8)
    check("hello keep-alive `-w 1`: p99 vs bjoern", get(w1, "hello", "p99"), get("bjoern", "hello", "p99"), 1.0)
    check("Flask keep-alive `-w 1`: CPU per request vs bjoern",
          get(w1, "flask", "cpu_us"), get("bjoern", "flask", "cpu_us"), 0.9)
    check("Flask keep-alive `-w 1`: p99 vs bjoern", get(w1, "flask", "p99"), get("bjoern", "flask", "p99"), 1.0)
    for scenario in ("hello", "flask"):
        check(f"{scenario} `-w 2`: p99 vs `-w 1`", get(w2, scenario, "p99"), get(w1, scenario, "p99"), 2.0)
        check(f"{scenario} `-w 2`: CPU per request vs `-w 1`",
              get(w2, scenario, "cpu_us"), get(w1, scenario, "cpu_us"), 1.1)
    for scenario in ("hello-close", "flask-close"):
        check(f"{scenario} `-w 1`: CPU per request vs bjoern",
              get(w1, scenario, "cpu_us"), get("bjoern", scenario, "cpu_us"), 1.0)
    for scenario in ("1mib-response",):
        # Against a peer of one process `-w 1`, of two `-w 2`.
        for peer, mine in (("bjoern", w1), ("granian", w1), ("waitress", w1), ("gunicorn-sync", w2),
                           ("gunicorn-gthread", w2), ("uwsgi", w2)):
            a, b = get(mine, scenario, "rps"), get(peer, scenario, "rps")
            if a and b:
                flag = mine[len(rg) + 1:].replace("w", "-w ")
                out.append((f"1 MiB response `{flag}`: req/s vs {peer}",
                            f"{a:.0f} / {b:.0f} = {a / b:.2f} (goal ≥ 1)", a >= b))
    worker = memory.get(f"{w1}|hello")
    if worker:
        rss = max(x[0] for x in worker) / 1024
        out.append(("worker RSS after the hello rounds (far more than 100k requests)",
                    f"{rss:.1f} MiB (goal ≤ 12, in the issue's unit: bjoern's 10.6 is MiB)", rss <= 12.0))
    return out


def render(results, out_path, chart_path):
    table = summary(results)
    servers, scenarios, s = results["servers"], results["scenarios"], results["settings"]
    v = results["versions"]
    rg = next((n[:-3] for n in servers if n.endswith("-w1")), "rgunicorn")
    tls = results.get("tls", False)
    intro = [
        "# Benchmarks",
        "",
        "rgunicorn against bjoern, Granian, gunicorn (sync and gthread), uWSGI and",
        "waitress, measured in one run of `bench/compare.sh` (bench/compare.py) on",
        "127.0.0.1. Compare the ratios, which come from one run on one machine.",
        "",
    ]
    if tls:
        intro = [
            "# Benchmarks over TLS",
            "",
            "HTTPS: rgunicorn (rustls) against Granian (`--ssl-certificate`) and gunicorn",
            "(`--certfile`, sync and gthread), measured in one run of `bench/compare.sh --tls`",
            "(bench/compare.py) on 127.0.0.1 with one self-signed P-256 certificate. wrk's",
            "OpenSSL negotiates TLS 1.3 with every server; with `Connection: close` each",
            "request is a full handshake (wrk does not resume sessions), so its req/s are",
            "handshakes per second. Granian runs `--workers 2` here, like the others.",
            "",
        ]
    lines = intro + [
        f"* date: {results['date']}; the run took {results['seconds'] // 60} min",
        f"* machine: {results['machine']}; load average before / after: "
        f"{' '.join(results['load_before'])} / {' '.join(results['load_after'])}",
        f"* rgunicorn: {v['rgunicorn']}, commit {results['commit']}, release build",
        f"* peers: bjoern {v['bjoern']}, Granian {v['granian']}, gunicorn {v['gunicorn']}, "
        f"uWSGI {v['uwsgi']}, waitress {v['waitress']}; Flask {v['flask']}; Python {v['python']}",
        f"* load: `wrk -t{s['threads']} -c{s['connections']} -d{s['duration']}s --latency` "
        f"(wrk {v['wrk']}), {s['rounds']} rounds, the servers in turns (the order rotating "
        "each round) after a 1 s warm-up each; every figure is the median over the rounds. "
        "wrk shares the 2 cores with the server.",
        "* servers: `rgunicorn-w1` is `--workers 1`, "
        "`rgunicorn-w2` is `--workers 2`, both with `--virtualenv` set to the bench virtualenv, "
        "from which every peer runs too; "
        + "; ".join(f"{name} {CONFIGS[name]}".replace("--workers 1", "--workers 2" if tls else "--workers 1")
                    for name in servers if name in CONFIGS)
        + ("; each with the certificate flags above" if tls else ""),
        "",
        "Columns: **CPU µs/req** is the server's CPU time (user + system, all its processes, "
        "from `/proc/PID/stat`) divided by the requests served: on this machine, where wrk "
        "takes a core, it is the figure that decides throughput. **fairness** is the "
        "connection that received the fewest bytes as a share of the mean over all 50 "
        "(server-side sockets, `ss -ti`, near the end of each keep-alive run): 1.00 is "
        "perfectly even, a low figure means some connections starve; wrk's latencies cover only "
        "the requests that were answered, so a server that leaves most connections waiting "
        "shows the low latencies of the few it serves. **errors** are "
        "wrk's socket errors and non-2xx responses, summed over the rounds.",
        "",
    ]
    for scenario in scenarios:
        lines += [f"## {DESCRIPTIONS[scenario]}", "",
                  "| server | req/s | CPU µs/req | p50 ms | p99 ms | fairness | errors |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for server in servers:
            r = table.get((server, scenario))
            if not r:
                continue
            lines.append(f"| {server} | {fmt(r['rps'], 0)} | {fmt(r['cpu_us'])} | {fmt(r['p50'], 2)} "
                         f"| {fmt(r['p99'], 2)} | {fmt(r['fair'], 2)} | {r['errors']} |")
        lines.append("")
    w1 = f"{rg}-w2" if tls else f"{rg}-w1"
    lines += [f"## Ratios, rgunicorn `-w {w1[-1]}` / peer (same run)", "",
              "Below 1 is better for CPU and p99, above 1 for req/s.", "",
              "| scenario | peer | req/s | CPU µs/req | p99 |", "| --- | --- | ---: | ---: | ---: |"]
    for scenario in scenarios:
        mine = table.get((w1, scenario))
        if not mine:
            continue
        for server in servers:
            if server.startswith(rg):
                continue
            peer = table.get((server, scenario))
            if peer:
                lines.append(f"| {scenario} | {server} | {ratio(mine['rps'], peer['rps'])} "
                             f"| {ratio(mine['cpu_us'], peer['cpu_us'])} | {ratio(mine['p99'], peer['p99'])} |")
    lines += ["", "## Memory per worker", "",
              "RSS and PSS (`/proc/PID/smaps_rollup`) of each serving process after the last "
              "round of the app (for hello, hundreds of thousands of requests); the largest "
              "worker, and the sum over workers. rgunicorn's and gunicorn's masters are not "
              "counted (Granian's and uWSGI's neither); bjoern and waitress are one process.", "",
              "| server | app | workers | RSS MiB, largest | PSS MiB, largest | PSS MiB, all workers |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for app in APPS:
        for server in servers:
            m = results["memory"].get(f"{server}|{app}")
            if not m:
                continue
            lines.append(f"| {server} | {app} | {len(m)} | {max(x[0] for x in m) / 1024:.1f} "
                         f"| {max(x[1] for x in m) / 1024:.1f} | {sum(x[1] for x in m) / 1024:.1f} |")
    checked = [] if tls else goals(table, results["memory"], rg)
    if checked:
        lines += ["", "## The goals of issue 14, checked in this run", "",
                  "| goal | figures (rgunicorn / reference) | met |", "| --- | --- | --- |"]
        lines += [f"| {text} | {figures} | {'yes' if met else '**no**'} |" for text, figures, met in checked]
    if chart_path:
        rel = os.path.relpath(chart_path, os.path.dirname(out_path))
        lines += ["", "## Chart", "", f"![CPU per request and p99 latency per server]({rel})"]
    lines += ["", "Where the time of a request goes, with flame graphs: [profile.md](profile.md).",
              "", "Reproduce: `bench/compare.sh` (installs the peers itself; a full run takes "
              "about 20 minutes). Raw wrk output of the last run is in "
              "`target/bench-logs/wrk.log`, the figures in `target/bench-logs/results.json`.", ""]
    lines += kept_sections(out_path)
    with open(out_path, "w") as f:
        f.write("\n".join(lines))
    if chart_path:
        chart(table, servers, scenarios, chart_path, results)


def chart(table, servers, scenarios, path, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in ("hello", "flask", "hello-close", "1mib-response") if s in scenarios]
    fig, axes = plt.subplots(2, len(shown), figsize=(4.2 * len(shown), 7.5), squeeze=False)
    for col, scenario in enumerate(shown):
        names = [n for n in servers if (n, scenario) in table]
        for row, (field, label) in enumerate((("cpu_us", "server CPU µs per request"),
                                              ("p99", "p99 latency, ms"))):
            ax = axes[row][col]
            values = [table[(n, scenario)][field] or 0 for n in names]
            colors = ["#c0392b" if n.startswith("rgunicorn") else "#7f8c8d" for n in names]
            ax.barh(names, values, color=colors)
            ax.invert_yaxis()
            ax.set_title(f"{scenario}: {label}", fontsize=10)
            ax.tick_params(labelsize=8)
            for y, value in enumerate(values):
                fair = table[(names[y], scenario)]["fair"]
                starving = field == "p99" and fair is not None and fair < 0.5
                note = f" (fairness {fair:.2f})" if starving else ""
                ax.text(value, y, f" {value:.3g}{note}", va="center", fontsize=7)
            if field == "p99":
                ax.set_xscale("log")
            ax.margins(x=0.25)
    fig.suptitle(f"rgunicorn and its peers, lower is better ({results['date']}, commit {results['commit']})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; figures are medians (default 3)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--servers", nargs="*", help="only these servers (names as in the table)")
    parser.add_argument("--scenarios", nargs="*", choices=list(SCENARIOS), help="only these scenarios")
    parser.add_argument("--rgunicorn", help="the rgunicorn binary (default: cargo build --release)")
    parser.add_argument("--also", action="append", metavar="LABEL=BINARY",
                        help="another rgunicorn build to measure alongside (e.g. base=/tmp/rg-main), "
                             "as LABEL-w1 and LABEL-w2")
    parser.add_argument("--tls", action="store_true",
                        help="HTTPS: rgunicorn, Granian and gunicorn with one self-signed certificate "
                             "(default --out docs/benchmarks-tls.md, no chart)")
    parser.add_argument("--out", default=None, help="default docs/benchmarks.md")
    parser.add_argument("--chart", default=None,
                        help="the PNG chart (default: benchmarks.png beside --out; 'none' for no chart)")
    parser.add_argument("--render", action="store_true",
                        help="only re-render target/bench-logs/results.json")
    args = parser.parse_args()
    reexec_in_venv(__file__)
    global TLS
    if args.tls:
        os.makedirs(LOGDIR, exist_ok=True)
        TLS = make_certificate()
        args.chart = args.chart or "none"
    args.out = args.out or os.path.join(ROOT, "docs", "benchmarks-tls.md" if args.tls else "benchmarks.md")
    chart_path = None if args.chart == "none" else (
        args.chart or os.path.join(os.path.dirname(os.path.abspath(args.out)), "benchmarks.png"))
    if args.render:
        results = json.load(open(os.path.join(LOGDIR, "results.json")))
    else:
        results = run(args)
    render(results, args.out, chart_path)
    print(f"bench: wrote {args.out}" + (f" and {chart_path}" if chart_path else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
