#!/usr/bin/env python3
"""What --metrics-bind costs, measured (issue 11):

1. CPU per request of the hello app with --metrics-bind on and off, in one
   run: two servers (one worker each) started together and driven by wrk in
   interleaved rounds (order alternating), so the machine's other load hits
   both alike. CPU is utime+stime of the server's process tree from
   /proc/PID/stat before and after each run, divided by the requests wrk
   counted. Figures are medians over the rounds.
2. Scrape latency while the machine is at 100% CPU: wrk drives the server
   with metrics on, one CPU burner per core runs beside it, and /metrics is
   fetched SCRAPES times; the median, p99 and worst are reported.

Usage: bench/metrics_overhead.py [--rounds 7] [--duration 5]
       [--connections 32] [--scrapes 200] [--rgunicorn target/release/rgunicorn]
Needs wrk (apt) and a release build. Loopback only; every process it starts
is stopped by pid.
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu_seconds(root_pid):
    """utime+stime of root_pid and every descendant (and what they reaped)."""
    children = {}
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        ppid = int(fields[1])
        children.setdefault(ppid, []).append(int(entry))
        stats[int(entry)] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / TICKS


def start(binary, port, metrics_port):
    args = [binary, "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--chdir", ROOT, "--log-level", "warning"]
    if metrics_port:
        args += ["--metrics-bind", f"127.0.0.1:{metrics_port}"]
    args.append("examples.hello:application")
    proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            time.sleep(0.2)
    stop(proc)
    sys.exit(f"{binary} did not start on port {port}")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(port, duration, connections):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return requests, errors.group(0) if errors else None


def scrape(port):
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    elapsed = time.perf_counter() - started
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    return elapsed


def burner():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--rgunicorn", default=os.path.join(ROOT, "target", "release", "rgunicorn"))
    args = parser.parse_args()

    ports = {"off": free_port(), "on": free_port()}
    metrics_port = free_port()
    servers = {"off": start(args.rgunicorn, ports["off"], None),
               "on": start(args.rgunicorn, ports["on"], metrics_port)}
    burners = []
    try:
        per_request = {"off": [], "on": []}
        rps = {"off": [], "on": []}
        for round_ in range(args.rounds):
            order = ["off", "on"] if round_ % 2 == 0 else ["on", "off"]
            for name in order:
                before = tree_cpu_seconds(servers[name].pid)
                requests, errors = wrk(ports[name], args.duration, args.connections)
                cpu = tree_cpu_seconds(servers[name].pid) - before
                per_request[name].append(cpu / requests * 1e6)
                rps[name].append(requests / args.duration)
                print(f"round {round_ + 1} {name:>3}: {requests / args.duration:8.0f} req/s "
                      f"{cpu / requests * 1e6:6.1f} us CPU/request" + (f" ({errors})" if errors else ""),
                      flush=True)
        off, on = statistics.median(per_request["off"]), statistics.median(per_request["on"])
        print(f"\nCPU per request, median of {args.rounds} rounds: metrics off {off:.1f} us, "
              f"on {on:.1f} us: {100 * (on - off) / off:+.1f}%")
        print(f"req/s, median: off {statistics.median(rps['off']):.0f}, on {statistics.median(rps['on']):.0f}")

        # Scrape latency at 100% CPU: wrk on the server, plus a burner per core.
        burners = [burner() for _ in range(os.cpu_count() or 2)]
        load = subprocess.Popen(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{max(30, args.scrapes // 5 + 10)}s",
             f"http://127.0.0.1:{ports['on']}/"],
            stdout=subprocess.DEVNULL)
        time.sleep(2)
        latencies = []
        for _ in range(args.scrapes):
            latencies.append(scrape(metrics_port) * 1000)
            time.sleep(0.1)
        load.send_signal(signal.SIGINT)
        load.wait()
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"scrape at 100% CPU ({args.scrapes} scrapes, wrk + {len(burners)} burners): "
              f"median {statistics.median(latencies):.2f} ms, p99 {p99:.2f} ms, "
              f"max {latencies[-1]:.2f} ms")
    finally:
        for b in burners:
            b.kill()
            b.wait()
        for proc in servers.values():
            stop(proc)


if __name__ == "__main__":
    main()
