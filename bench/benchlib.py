"""What the benchmark drivers (bench/compare.py, bench/preload.py) share:
the bench virtualenv and the tools it needs, the release binary, the
process tree and its CPU and memory from /proc, free ports, a server under
test, wrk's output, and the facts of a run (machine, commit, versions).
"""

import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "target", "bench-venv")
LOGDIR = os.path.join(ROOT, "target", "bench-logs")
REQUIREMENTS = os.path.join(ROOT, "bench", "requirements.txt")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def venv_bin(name):
    return os.path.join(VENV, "bin", name)


# ---------------------------------------------------------------- setup


def ensure_tools():
    """Installs wrk, libev-dev (bjoern), python3-dev (uWSGI) and openssl (--tls)
    when missing."""
    missing = []
    if not shutil.which("wrk"):
        missing.append("wrk")
    if not os.path.exists("/usr/include/ev.h"):
        missing.append("libev-dev")
    if not shutil.which("gcc"):
        missing.append("gcc")
    if not shutil.which("openssl"):
        missing.append("openssl")  # --tls makes its certificate with it
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        missing.append("python3-dev")
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                       stdout=subprocess.DEVNULL)


def ensure_venv():
    """Creates target/bench-venv with the pinned requirements (once)."""
    stamp = os.path.join(VENV, ".requirements")
    wanted = open(REQUIREMENTS).read()
    if os.path.exists(stamp) and open(stamp).read() == wanted:
        return
    if not os.path.exists(venv_bin("python")):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    print("bench: installing the peers into target/bench-venv (uWSGI and bjoern build from source)",
          file=sys.stderr)
    subprocess.run([venv_bin("pip"), "install", "--quiet", "--disable-pip-version-check",
                    "-r", REQUIREMENTS], check=True)
    with open(stamp, "w") as f:
        f.write(wanted)


def reexec_in_venv(script):
    """Sets up the tools and the virtualenv, then re-runs `script` with the
    virtualenv's Python (returns only when already running in it)."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    ensure_tools()
    ensure_venv()
    os.execv(venv_bin("python"), [venv_bin("python"), os.path.abspath(script), *sys.argv[1:]])


def build_rgunicorn():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "rgunicorn")


# ---------------------------------------------------------------- processes


def proc_table():
    """pid -> (ppid, cpu ticks including reaped children)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is state (field 3): ppid is field 4, utime..cstime 14..17.
        ppid = int(fields[1])
        ticks = sum(int(x) for x in fields[11:15])
        table[int(entry)] = (ppid, ticks)
    return table


def tree(root, table=None):
    """The pids of `root` and all its descendants."""
    table = table or proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            pids.append(pid)
            todo.extend(children.get(pid, []))
    return pids


def tree_cpu_seconds(root):
    table = proc_table()
    return sum(table[pid][1] for pid in tree(root, table)) / CLK_TCK


def smaps_rollup(pid):
    """The fields of /proc/PID/smaps_rollup in KiB (Rss, Pss, Pss_Anon,
    Shared_Dirty, Private_Dirty, ...); empty when the process is gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    values[parts[0][:-1]] = int(parts[1])
    except OSError:
        pass
    return values


def memory_kib(pid):
    """(Rss, Pss) in KiB from smaps_rollup."""
    values = smaps_rollup(pid)
    return (values.get("Rss", 0), values.get("Pss", 0))


def workers(root):
    """The processes that serve: the root's descendants, or the root alone."""
    pids = tree(root)
    return [p for p in pids if p != root] or [root]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server under test in its own session, its output in
    LOGDIR/NAME.log. `argv_for(app_target, port)` gives its command line;
    `procs` is its process count when booted; `cafile` makes it HTTPS."""

    def __init__(self, name, argv_for, procs, app_target, path, cafile=None, env=None):
        self.name = name
        self.port = free_port()
        self.path = path
        self.cafile = cafile
        self.log_path = os.path.join(LOGDIR, f"{name}.log")
        argv = argv_for(app_target, self.port)
        self.log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
        env.pop("VIRTUAL_ENV", None)
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        self.procs = procs

    def url(self, path=None):
        return f"{'https' if self.cafile else 'http'}://127.0.0.1:{self.port}{path or self.path}"

    def wait_ready(self, timeout=60):
        """Whether the server came up (all its processes, and an answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if len(tree(self.proc.pid)) >= self.procs and self.answers():
                return True
            time.sleep(0.1)
        self.stop()
        print(f"bench: {self.name} did not start, left out; its log:\n{open(self.log_path).read()}",
              file=sys.stderr)
        return False

    def get(self, path=None, timeout=2):
        """The body of a GET, or None."""
        try:
            context = None
            if self.cafile:
                import ssl
                context = ssl.create_default_context(cafile=self.cafile)
            with urllib.request.urlopen(self.url(path), timeout=timeout, context=context) as r:
                return r.read() if r.status == 200 else None
        except Exception:
            return None

    def answers(self):
        return self.get() is not None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------- load


def to_ms(text):
    for suffix, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


def parse_wrk(out):
    result = {"rps": 0.0, "p50": None, "p99": None, "errors": 0, "requests": 0}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(words[1])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            result["p" + words[0][:-1]] = to_ms(words[1])
        elif "requests in" in line:
            result["requests"] = int(words[0])
        elif line.strip().startswith("Socket errors:"):
            result["errors"] += sum(int(n) for n in re.findall(r"\d+", line))
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            result["errors"] += int(words[-1])
    return result


# ---------------------------------------------------------------- the run's facts


def machine():
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) / 1048576
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}"


def pip_versions():
    """package name (lower case) -> version, of the bench virtualenv."""
    out = subprocess.run([venv_bin("pip"), "list", "--format=json", "--disable-pip-version-check"],
                         capture_output=True, text=True).stdout
    return {p["name"].lower(): p["version"] for p in json.loads(out or "[]")}


def tool_versions(rgunicorn):
    """rgunicorn --version, the Python and wrk versions."""
    rg = subprocess.run([rgunicorn, "--version"], capture_output=True, text=True).stdout.strip()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split()
    return {
        "rgunicorn": rg or "unknown",
        "python": platform.python_version(),
        "wrk": wrk[1] if len(wrk) > 1 else "unknown",
    }


def git_commit():
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def kept_sections(path):
    """The sections other scripts keep in a generated file, between their
    markers (`<!-- bench/threads.sh: begin -->` ... `end -->`), to be
    written back."""
    try:
        text = open(path).read()
    except OSError:
        return []
    found = re.finditer(r"<!-- (\S+): begin -->.*?<!-- \1: end -->", text, flags=re.S)
    return [part for m in found for part in (m.group(0), "")]
