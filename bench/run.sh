#!/usr/bin/env bash
# The benchmark: `bench/run.sh [--quick|--full|--tiny] [options]` (quick by default).
# Needs the local cluster (make cluster) and the project's .venv (make install).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || { echo "no .venv: run make install first" >&2; exit 1; }
exec .venv/bin/python -m bench "$@"
