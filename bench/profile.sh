#!/usr/bin/env bash
# Profiles one rgunicorn worker under wrk and draws a flame graph.
#
# Starts `rgunicorn --workers 1` on APP (default examples.hello:application),
# warms it up, then records the worker with `perf record -g --call-graph
# dwarf` for 5 s while `wrk -t1 -c50` drives it (add CLOSE=1 for
# `Connection: close`), and folds the stacks with inferno into an SVG.
#
# Usage: bench/profile.sh [OUT.svg] [APP] [PATH]
#        (default docs/flamegraph-hello.svg; env RGUNICORN=binary)
# Needs: perf (Debian's linux-perf), wrk, and inferno (`cargo install inferno`).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/flamegraph-hello.svg}
APP=${2:-examples.hello:application}
URL_PATH=${3:-/}
WORK=target/profile
mkdir -p "$WORK"
for tool in perf wrk inferno-collapse-perf inferno-flamegraph; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed (see the header of $0)" >&2; exit 1; }
done
if [ -z "${RGUNICORN:-}" ]; then
    cargo build --release --quiet
    RGUNICORN=target/release/rgunicorn
fi
WRK_ARGS=(-t1 -c50)
[ -n "${CLOSE:-}" ] && WRK_ARGS+=(-H "Connection: close")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$RGUNICORN" --workers 1 --bind "127.0.0.1:$PORT" --chdir "$PWD" --log-level warning "$APP" >"$WORK/server.log" 2>&1 &
MASTER=$!
trap 'kill -TERM $MASTER 2>/dev/null; wait $MASTER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    WORKER=$(ps -o pid= --ppid "$MASTER" | tr -d ' ' | head -1)
    [ -n "$WORKER" ] && python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT$URL_PATH', timeout=1)" 2>/dev/null && break
    sleep 0.1
done
wrk "${WRK_ARGS[@]}" -d2s "http://127.0.0.1:$PORT$URL_PATH" >/dev/null
wrk "${WRK_ARGS[@]}" -d8s "http://127.0.0.1:$PORT$URL_PATH" >"$WORK/wrk.txt" &
WRK=$!
sleep 1
perf record -F 1999 -g --call-graph dwarf,32768 -p "$WORKER" -o "$WORK/perf.data" -- sleep 5 2>"$WORK/perf.log"
wait $WRK
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf >"$WORK/stacks.folded"
inferno-flamegraph --title "rgunicorn -w 1 worker, $APP, wrk ${WRK_ARGS[*]} (perf record -g --call-graph dwarf)" \
    --minwidth 0.2 "$WORK/stacks.folded" >"$OUT"
echo "profile: wrote $OUT (stacks in $WORK/stacks.folded; wrk: $(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt") req/s under perf)" >&2
