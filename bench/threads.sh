#!/usr/bin/env bash
# Benchmarks --threads and writes the "App threads" section of
# docs/benchmarks.md (between its markers; bench/compare.py writes the
# rest of the file and keeps this section).
#
# 1. I/O-bound: bench/sleepy.py:/sleep (20 ms time.sleep), 2 workers × 8
#    threads, 64 keep-alive connections: rgunicorn --threads 8, gunicorn
#    gthread --threads 8, Granian --blocking-threads 8 (WSGI). The ceiling is
#    2 × 8 / 0.02 s = 800 requests/s.
# 2. CPU per request: hello (/) on 2 workers, --threads 4 against --threads 1,
#    the workers' CPU time (utime + stime) divided by the requests served.
# 3. Mixed load: -w 1 --threads 4, 8 connections to /slow (1 s) and 32 to /
#    at the same time; the fast requests' p99.
#
# Each figure is the median of REPEAT interleaved rounds (the servers take
# turns, so other load on the machine hits all of them alike).
#
# Usage: bench/threads.sh [DURATION_SECONDS]   (default 10; env REPEAT=3)
# Needs: wrk (apt), gunicorn and granian (pip, pinned, into
# target/bench-threads-venv). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${1:-10}
REPEAT=${REPEAT:-3}
PYTHON=${PYO3_PYTHON:-python3}
GUNICORN_VERSION=27.0.1
GRANIAN_VERSION=2.8.7
OUT=docs/benchmarks.md
VENV=target/bench-threads-venv
LOGDIR=target/bench-logs
mkdir -p "$LOGDIR"

if ! command -v wrk >/dev/null 2>&1; then
    as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq wrk >/dev/null
fi
if [ ! -x "$VENV/bin/granian" ] || [ ! -x "$VENV/bin/gunicorn" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "gunicorn==$GUNICORN_VERSION" "granian==$GRANIAN_VERSION"
fi
cargo build --release --quiet
RGUNICORN=$ROOT/target/release/rgunicorn
APP=sleepy:application

free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

declare -A PID PORT
stop_pid() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        wait "$pid" 2>/dev/null || true
    fi
}
stop_all() {
    for name in "${!PID[@]}"; do stop_pid "${PID[$name]}"; done
    PID=()
}
trap stop_all EXIT

answers() {
    "$PYTHON" - "$1" <<'PY'
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

# start NAME WORKERS COMMAND...: runs the command from bench/ with a free
# port as its last argument (a `bash -c` command reads it as $0), waits
# until WORKERS workers run and the port answers.
start() {
    local name=$1 workers=$2
    shift 2
    port=$(free_port)
    (cd bench && exec "$@" "$port") >"$LOGDIR/threads-$name.log" 2>&1 &
    PID[$name]=$!
    PORT[$name]=$port
    for _ in $(seq 300); do
        if [ "$(ps -o pid= --ppid "${PID[$name]}" | wc -l)" -ge "$workers" ] && answers "$port"; then
            return 0
        fi
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "error: $name did not start; log:" >&2
    cat "$LOGDIR/threads-$name.log" >&2
    exit 1
}
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v/1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v*1000 }
        else printf "%s", v }'
}
# wrk_run PORT PATH CONNECTIONS -> "reqs/s|p99_ms|requests|errors"
wrk_run() {
    local out
    out=$(wrk -t2 -c"$3" -d"${DURATION}s" --latency "http://127.0.0.1:$1$2" 2>&1)
    echo "$out" >>"$LOGDIR/threads-wrk.log"
    local rps p99 total errors
    rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
    p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
    total=$(echo "$out" | awk '/requests in/ {print $1}')
    errors=$(echo "$out" | awk '/Socket errors|Non-2xx/ {printf "%s ", $0}')
    echo "${rps:-0}|${p99}|${total:-0}|${errors:-none}"
}
median() { printf '%s\n' "$@" | sort -t'|' -k1,1 -g | sed -n "$((($# + 1) / 2))p"; }
median_of_field() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
field() { echo "$1" | cut -d'|' -f"$2"; }
# cpu_ticks NAME: utime + stime of the server's workers, in clock ticks
cpu_ticks() {
    local sum=0 pid t
    for pid in $(ps -o pid= --ppid "${PID[$1]}"); do
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        sum=$((sum + t))
    done
    echo "$sum"
}

: >"$LOGDIR/threads-wrk.log"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. I/O-bound, 2 × 8 threads, 64 connections.
start rgunicorn 2 bash -c "exec $RGUNICORN --workers 2 --threads 8 --log-level warning --bind 127.0.0.1:\$0 $APP"
start gthread 2 bash -c "exec $ROOT/$VENV/bin/gunicorn --workers 2 --worker-class gthread --threads 8 --log-level warning --bind 127.0.0.1:\$0 $APP"
start granian 2 bash -c "exec $ROOT/$VENV/bin/granian --interface wsgi --workers 2 --blocking-threads 8 --log-level warning --host 127.0.0.1 --port \$0 $APP"
IO_SERVERS=(rgunicorn gthread granian)
declare -A RUNS RESULT
for name in "${IO_SERVERS[@]}"; do wrk_run "${PORT[$name]}" /sleep 64 >/dev/null; done # warm-up
for round in $(seq "$REPEAT"); do
    for i in "${!IO_SERVERS[@]}"; do
        name=${IO_SERVERS[$(((i + round) % ${#IO_SERVERS[@]}))]}
        RUNS[$name]+="$(wrk_run "${PORT[$name]}" /sleep 64);"
    done
    echo "bench: I/O round $round of $REPEAT done" >&2
done
for name in "${IO_SERVERS[@]}"; do
    IFS=';' read -r -a runs <<<"${RUNS[$name]}"
    RESULT[$name]=$(median "${runs[@]}")
    echo "bench: $name /sleep: ${RESULT[$name]}" >&2
done
stop_all

# 2. CPU per request on hello: --threads 4 against --threads 1.
start t1 2 bash -c "exec $RGUNICORN --workers 2 --threads 1 --log-level warning --bind 127.0.0.1:\$0 $APP"
start t4 2 bash -c "exec $RGUNICORN --workers 2 --threads 4 --log-level warning --bind 127.0.0.1:\$0 $APP"
declare -A CPU
for name in t1 t4; do wrk_run "${PORT[$name]}" / 64 >/dev/null; done
for round in $(seq "$REPEAT"); do
    for name in t1 t4; do
        before=$(cpu_ticks "$name")
        r=$(wrk_run "${PORT[$name]}" / 64)
        after=$(cpu_ticks "$name")
        us=$(awk -v t=$((after - before)) -v n="$(field "$r" 3)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
        CPU[$name]+="$us "
        RUNS[cpu-$name]+="$r;"
    done
    echo "bench: CPU round $round of $REPEAT done" >&2
done
for name in t1 t4; do
    # shellcheck disable=SC2086
    RESULT[cpu-$name]=$(median_of_field ${CPU[$name]})
    IFS=';' read -r -a runs <<<"${RUNS[cpu-$name]}"
    RESULT[rps-$name]=$(field "$(median "${runs[@]}")" 1)
    echo "bench: hello --threads ${name#t}: ${RESULT[cpu-$name]} us CPU per request, ${RESULT[rps-$name]} req/s" >&2
done
stop_all

# 3. Mixed: 8 connections to /slow and 32 to / on -w 1 --threads 4.
start mixed 1 bash -c "exec $RGUNICORN --workers 1 --threads 4 --log-level warning --bind 127.0.0.1:\$0 $APP"
MIXED=()
for round in $(seq "$REPEAT"); do
    # The slow load runs 3 s first: the worker learns that /slow is long.
    wrk -t1 -c8 -d"$((DURATION + 4))s" "http://127.0.0.1:${PORT[mixed]}/slow" >>"$LOGDIR/threads-wrk.log" 2>&1 &
    slow=$!
    sleep 3
    MIXED+=("$(wrk_run "${PORT[mixed]}" / 32)")
    wait "$slow"
    echo "bench: mixed round $round of $REPEAT done" >&2
done
RESULT[mixed]=$(median "${MIXED[@]}")
echo "bench: mixed, fast endpoint: ${RESULT[mixed]}" >&2
stop_all
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
section=$(
    echo "<!-- bench/threads.sh: begin -->"
    echo "## App threads (\`--threads\`)"
    echo
    echo "Written by \`bench/threads.sh\` (median of $REPEAT interleaved rounds of ${DURATION} s, \`wrk -t2 --latency\`)."
    echo
    echo "* date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), release build"
    echo "* load average before / after (other work on the machine): $LOAD_BEFORE / $LOAD_AFTER"
    echo "* machine: $(nproc) cores; wrk shares them with the servers"
    echo "* gunicorn $GUNICORN_VERSION (gthread), Granian $GRANIAN_VERSION (\`--interface wsgi --blocking-threads\`), Python $("$PYTHON" -c 'import platform; print(platform.python_version())')"
    echo
    echo "I/O-bound app (\`bench/sleepy.py\`, \`/sleep\`: \`time.sleep(0.02)\`), 2 workers × 8 threads,"
    echo "64 keep-alive connections; the ceiling is 2 × 8 / 0.02 s = 800 requests/s:"
    echo
    echo "| server | requests/s | of the ceiling | p99 (ms) | errors |"
    echo "| --- | ---: | ---: | ---: | --- |"
    for name in rgunicorn gthread granian; do
        r=${RESULT[$name]}
        echo "| $name | $(field "$r" 1) | $(ratio "$(field "$r" 1)" 800) | $(field "$r" 2) | $(field "$r" 4) |"
    done
    echo
    echo "Threads when they are not needed: hello world (\`/\`), 2 workers, 64 connections,"
    echo "the workers' CPU time per request:"
    echo
    echo "| rgunicorn | CPU per request (µs) | requests/s |"
    echo "| --- | ---: | ---: |"
    echo "| --threads 1 | ${RESULT[cpu-t1]} | ${RESULT[rps-t1]} |"
    echo "| --threads 4 | ${RESULT[cpu-t4]} | ${RESULT[rps-t4]} |"
    echo
    echo "--threads 4 / --threads 1 CPU per request: $(ratio "${RESULT[cpu-t4]}" "${RESULT[cpu-t1]}")."
    echo
    echo "Mixed load on \`-w 1 --threads 4\`: 8 connections to \`/slow\` (1 s) and, at the same"
    echo "time (the slow load starts 3 s earlier), 32 to \`/\`: the fast requests' p99 is $(field "${RESULT[mixed]}" 2) ms at $(field "${RESULT[mixed]}" 1) requests/s ($(field "${RESULT[mixed]}" 4))."
    echo "<!-- bench/threads.sh: end -->"
)
if grep -q '<!-- bench/threads.sh: begin -->' "$OUT" 2>/dev/null; then
    "$PYTHON" - "$OUT" "$section" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r"<!-- bench/threads.sh: begin -->.*<!-- bench/threads.sh: end -->", lambda m: section, text, flags=re.S)
open(path, "w").write(text)
PY
else
    printf '\n%s\n' "$section" >>"$OUT"
fi
echo "bench: wrote the threads section of $OUT" >&2
