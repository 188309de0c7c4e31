#!/usr/bin/env bash
# Benchmarks rgunicorn against bjoern, Granian, gunicorn, uWSGI and waitress
# and writes docs/benchmarks.md; see bench/compare.py for what it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" bench/compare.py "$@"
