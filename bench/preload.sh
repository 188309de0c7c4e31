#!/usr/bin/env bash
# Measures --preload (memory shared by the workers, spawn time, HUP under
# load) for rgunicorn and gunicorn and writes the "Preload" section of
# docs/benchmarks.md; see bench/preload.py for what it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" bench/preload.py "$@"
