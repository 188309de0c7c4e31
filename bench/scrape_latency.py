#!/usr/bin/env python3
"""How fast the master answers a scrape while the machine is at 100% CPU
(issue 11: under 50 ms): a server with --metrics-bind and one worker is
driven by wrk, one CPU burner per core runs beside it, and /metrics is
fetched SCRAPES times, 0.1 s apart; the median, p99 and worst are printed.

(CPU per request with --metrics-bind on and off is measured by the shared
harness, bench/compare.sh with --also: see docs/metrics.md.)

Usage: bench/scrape_latency.py [--scrapes 200] [--connections 32]
       [--rgunicorn target/release/rgunicorn]
Needs wrk (apt) and a release build. Loopback only; every process it starts
is stopped by pid.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, port, metrics_port):
    args = [binary, "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--chdir", ROOT, "--log-level", "warning",
            "--metrics-bind", f"127.0.0.1:{metrics_port}", "examples.hello:application"]
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
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--rgunicorn", default=os.path.join(ROOT, "target", "release", "rgunicorn"))
    args = parser.parse_args()

    port, metrics_port = free_port(), free_port()
    server = start(args.rgunicorn, port, metrics_port)
    burners, load = [], None
    try:
        # Scrape latency at 100% CPU: wrk on the server, plus a burner per core.
        burners = [burner() for _ in range(os.cpu_count() or 2)]
        load = subprocess.Popen(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{max(30, args.scrapes // 5 + 10)}s",
             f"http://127.0.0.1:{port}/"],
            stdout=subprocess.DEVNULL)
        time.sleep(2)
        latencies = []
        for _ in range(args.scrapes):
            latencies.append(scrape(metrics_port) * 1000)
            time.sleep(0.1)
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"scrape at 100% CPU ({args.scrapes} scrapes, wrk + {len(burners)} burners): "
              f"median {statistics.median(latencies):.2f} ms, p99 {p99:.2f} ms, "
              f"max {latencies[-1]:.2f} ms")
    finally:
        if load is not None:
            load.send_signal(signal.SIGINT)
            load.wait()
        for b in burners:
            b.kill()
            b.wait()
        stop(server)


if __name__ == "__main__":
    main()
