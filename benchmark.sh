#!/usr/bin/env bash
# Benchmarks (never tests): measured numbers for the README.
#   ./benchmark.sh speed  [--env-id Hopper-v4] [--compile] [--threads N]   one iteration split into parts, the compute
#                         [--cuda [--cudagraphs]]                           floor and a SAC update as yardstick (--cuda:
#                         [--checkpoint CK [--keep-denormals]]              on the GPU, each timing waits for it; CK: a
#                                                                           trained NC-LQL critic's checkpoint)
#   ./benchmark.sh bandit [args of benchmarks/bandit_2d.py]                 the paper's 2-D multimodal bandit (PNG + table)
#   ./benchmark.sh learn  [--preset quick|sac-budget|paper] [--envs ..]     learning curves of both scripts over envs and
#                         [--seeds ..] [--workers N] [--slurm] [-- args]    seeds, then the table and plot (see
#                                                                           benchmarks/learning.py and docs/benchmarking.md)
#   ./benchmark.sh aggregate DIR                                            results.csv, results.md, learning_curves.png
#                                                                           of a learn run's output directory
#   ./benchmark.sh aggregate DIR --select-seeds 1,2,3                       ... and tuned vs fixed w on held-out seeds
#   ./benchmark.sh aggregate DIR --reference CSV [--unfinished]             ... training returns beside CSV's (CleanRL SAC)
#   ./benchmark.sh confirm OURS_DIR --sac SAC_DIR [--out DIR]               the pre-registered comparison with CleanRL SAC
#                      [--reference-algo cleanrl-sac] [--tasks A-v4,..]     (cleanrl_sac.sh run's DIR): verdicts per task
#                                                                           and over the tasks (benchmarks/confirm.py)
#   ./benchmark.sh spread CHECKPOINT [--setting NAME=ARGS ...]              the sampler's per-state spread on a trained
#                                                                           critic, under other settings too
#   ./benchmark.sh spread CHECKPOINT CHECKPOINT ...                         Q against returns over one run's copies
set -euo pipefail
cd "$(dirname "$0")"
usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$(basename "$0")"; }  # the comment header above: one text, no copy
mode=${1:-}
case "$mode" in
  -h | --help | help) usage; exit 0 ;;
  speed | bandit | learn | aggregate | confirm | spread) ;;
  "") { echo "error: no mode given"; usage; } >&2; exit 2 ;;
  *) { echo "error: unknown mode '$mode'"; usage; } >&2; exit 2 ;;
esac
if ! python -c "import torch, gymnasium, mujoco, tyro" 2>/dev/null; then  # the venv is not active
  echo "error: python ($(command -v python || echo none)) lacks the requirements: run 'python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt' (see README.md)" >&2
  exit 2
fi
shift
case "$mode" in
  speed) exec python benchmarks/speed.py "$@" ;;
  bandit) exec python benchmarks/bandit_2d.py "$@" ;;
  learn) exec python benchmarks/learning.py "$@" ;;
  aggregate) exec python benchmarks/aggregate.py "$@" ;;
  confirm) exec python benchmarks/confirm.py "$@" ;;
  spread) exec python benchmarks/sampler_spread.py "$@" ;;
esac
