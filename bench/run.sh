#!/usr/bin/env bash
# Benchmarks rgunicorn against gunicorn on the hello-world example and
# writes docs/benchmarks.md.
#
# Each server runs 2 workers on 127.0.0.1 (rgunicorn; gunicorn's sync worker;
# gunicorn's gthread worker with 4 threads); all are started first, then wrk
# drives them in turns for DURATION seconds each, with keep-alive and with
# `Connection: close` (a new connection per request). Recorded: requests/s,
# mean and p99 latency, and the peak RSS (VmHWM) of the worker processes.
# Ratios are rgunicorn / gunicorn-sync measured in the same run.
#
# Each figure is the median (by requests/s) of REPEAT runs.
#
# Usage: bench/run.sh [DURATION_SECONDS]   (default 10; env CONNECTIONS=64,
#        WRK_THREADS=2, REPEAT=3)
# Needs: wrk (apt), gunicorn (pip, into target/bench-venv). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${1:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${WRK_THREADS:-2}
REPEAT=${REPEAT:-3}
PYTHON=${PYO3_PYTHON:-python3}
APP=examples.hello:application
OUT=${BENCH_OUT:-docs/benchmarks.md}
VENV=target/bench-venv
LOGDIR=target/bench-logs
mkdir -p "$LOGDIR"

if ! command -v wrk >/dev/null 2>&1; then
    as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq wrk >/dev/null
fi
if [ ! -x "$VENV/bin/gunicorn" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check gunicorn
fi
cargo build --release --quiet
RGUNICORN=$ROOT/target/release/rgunicorn

free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The servers under test, all started before the first measurement and
# measured in turns, so a change in the machine's other load during the run
# hits all of them alike.
SERVERS=(rgunicorn gunicorn-sync gunicorn-gthread)
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
}
trap stop_all EXIT

# start_server NAME COMMAND...: runs it in the background on a free port,
# waits until both workers booted and the port answers.
start_server() {
    local name=$1 port
    shift
    port=$(free_port)
    "$@" --bind "127.0.0.1:$port" "$APP" >"$LOGDIR/$name.log" 2>&1 &
    PID[$name]=$!
    PORT[$name]=$port
    for _ in $(seq 300); do
        if [ "$(grep -c 'Booting worker with pid' "$LOGDIR/$name.log" || true)" -ge 2 ] &&
            curl_ok "$port"; then
            return 0
        fi
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "error: $name did not start; log:" >&2
    cat "$LOGDIR/$name.log" >&2
    exit 1
}

curl_ok() {
    "$PYTHON" - "$1" <<'PY'
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

worker_pids() { ps -o pid= --ppid "${PID[$1]}" | tr -d ' '; }

# peak_rss NAME -> "max|sum" of the workers' VmHWM in MiB.
peak_rss() {
    local max=0 sum=0 kb
    for pid in $(worker_pids "$1"); do
        kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        sum=$((sum + kb))
        [ "$kb" -gt "$max" ] && max=$kb
    done
    awk -v m="$max" -v s="$sum" 'BEGIN { printf "%.1f|%.1f", m/1024, s/1024 }'
}

# to_ms "1.23ms" | "850.00us" | "1.2s" -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v/1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v*1000 }
        else printf "%s", v }'
}

# run_wrk PORT MODE -> "reqs|avg_ms|p99_ms|errors"
run_wrk() {
    local port=$1 mode=$2 out
    local header=()
    [ "$mode" = close ] && header=(-H "Connection: close")
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "${header[@]}" "http://127.0.0.1:$port/" 2>&1)
    echo "$out" >>"$LOGDIR/wrk.log"
    local reqs avg p99 errors
    reqs=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
    avg=$(to_ms "$(echo "$out" | awk '$1 == "Latency" {print $2; exit}')")
    p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
    errors=$(echo "$out" | awk '/Socket errors|Non-2xx/ {printf "%s ", $0}')
    echo "${reqs:-0}|${avg}|${p99}|${errors:-none}"
}

# median LINES...: the "reqs|..." line with the median requests/s.
median() {
    printf '%s\n' "$@" | sort -t'|' -k1,1 -g | sed -n "$((($# + 1) / 2))p"
}

declare -A RESULT RUNS
: >"$LOGDIR/wrk.log"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

start_server rgunicorn "$RGUNICORN" --workers 2 --chdir "$ROOT" --log-level info
start_server gunicorn-sync "$VENV/bin/gunicorn" --workers 2 --worker-class sync --chdir "$ROOT" --log-level info
start_server gunicorn-gthread "$VENV/bin/gunicorn" --workers 2 --worker-class gthread --threads 4 --chdir "$ROOT" --log-level info

for name in "${SERVERS[@]}"; do
    run_wrk "${PORT[$name]}" keepalive >/dev/null # warm-up, not recorded
done
for round in $(seq "$REPEAT"); do
    for mode in keepalive close; do
        for i in "${!SERVERS[@]}"; do
            # Rotate the order each round.
            name=${SERVERS[$(((i + round) % ${#SERVERS[@]}))]}
            RUNS[$name,$mode]+="$(run_wrk "${PORT[$name]}" "$mode");"
        done
    done
    echo "bench: round $round of $REPEAT done" >&2
done
for name in "${SERVERS[@]}"; do
    for mode in keepalive close; do
        IFS=';' read -r -a runs <<<"${RUNS[$name,$mode]}"
        RESULT[$name,$mode]=$(median "${runs[@]}")
    done
    RESULT[$name,rss]=$(peak_rss "$name")
    echo "bench: $name: ${RESULT[$name,keepalive]} / ${RESULT[$name,close]} / rss ${RESULT[$name,rss]}" >&2
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
stop_all
PID=()

field() { echo "$1" | cut -d'|' -f"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }

{
    echo "# Benchmarks"
    echo
    echo "rgunicorn against gunicorn on \`$APP\` (a 14-byte response), 2 workers each,"
    echo "measured one at a time on 127.0.0.1 by \`bench/run.sh\` in one run."
    echo
    echo "* date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "* load average before / after the run (other work on the machine): $LOAD_BEFORE / $LOAD_AFTER"
    echo "* machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
    echo "* rgunicorn: $("$RGUNICORN" --version 2>/dev/null || echo unknown), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), release build"
    echo "* gunicorn: $("$VENV/bin/gunicorn" --version 2>/dev/null), Python $("$PYTHON" -c 'import platform; print(platform.python_version())')"
    echo "* load: \`wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency\` (plus \`-H 'Connection: close'\` for the close rows), median of $REPEAT runs each, the servers measured in turns (rotating order) after a ${DURATION}s warm-up each; wrk shares the 2 cores with the server"
    echo
    echo "| server | connection | requests/s | mean latency (ms) | p99 latency (ms) | errors |"
    echo "| --- | --- | ---: | ---: | ---: | --- |"
    for name in rgunicorn gunicorn-sync gunicorn-gthread; do
        for mode in keepalive close; do
            r=${RESULT[$name,$mode]}
            echo "| $name | $mode | $(field "$r" 1) | $(field "$r" 2) | $(field "$r" 3) | $(field "$r" 4) |"
        done
    done
    echo
    echo "Peak RSS is VmHWM after all runs; for rgunicorn it is set by the bursts of"
    echo "new connections in the close runs (its steady RSS stays near the idle size)."
    echo
    echo "| server | peak RSS, largest worker (MiB) | peak RSS, all workers (MiB) |"
    echo "| --- | ---: | ---: |"
    for name in rgunicorn gunicorn-sync gunicorn-gthread; do
        r=${RESULT[$name,rss]}
        echo "| $name | $(field "$r" 1) | $(field "$r" 2) |"
    done
    echo
    echo "Ratios (rgunicorn / gunicorn, same run):"
    echo
    echo "| against | keep-alive requests/s | close requests/s | p99 keep-alive | worker peak RSS |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for name in gunicorn-sync gunicorn-gthread; do
        echo "| $name | $(ratio "$(field "${RESULT[rgunicorn,keepalive]}" 1)" "$(field "${RESULT[$name,keepalive]}" 1)") | $(ratio "$(field "${RESULT[rgunicorn,close]}" 1)" "$(field "${RESULT[$name,close]}" 1)") | $(ratio "$(field "${RESULT[rgunicorn,keepalive]}" 3)" "$(field "${RESULT[$name,keepalive]}" 3)") | $(ratio "$(field "${RESULT[rgunicorn,rss]}" 1)" "$(field "${RESULT[$name,rss]}" 1)") |"
    done
    echo
    echo "gunicorn's sync worker closes every connection, so its keep-alive rows"
    echo "measure new connections too. wrk runs on the same 2 cores as the server,"
    echo "and the machine may be shared: expect run-to-run variation of tens of"
    echo "percent, and compare ratios from one run. Raw wrk output of the last run"
    echo "is in \`target/bench-logs/wrk.log\`."
} >"$OUT"
echo "bench: wrote $OUT" >&2
