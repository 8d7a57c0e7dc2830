#!/usr/bin/env bash
# Benchmarks (never tests): measured numbers for the README.
#   ./benchmark.sh speed  [--env-id Hopper-v4] [--compile] [--threads N]   one iteration split into parts, the compute
#                                                                           floor and a SAC update as yardstick
#   ./benchmark.sh bandit [args of benchmarks/bandit_2d.py]                 the paper's 2-D multimodal bandit (PNG + table)
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-}
[ $# -gt 0 ] && shift
case "$mode" in
  speed) exec python benchmarks/speed.py "$@" ;;
  bandit) exec python benchmarks/bandit_2d.py "$@" ;;
  *) echo "usage: ./benchmark.sh speed|bandit [args]  (see the header of benchmark.sh)" >&2; exit 2 ;;
esac
