#!/usr/bin/env bash
# CleanRL's SAC, its own script unmodified, for the sac-budget table's reference rows (docs/benchmarking.md):
#   benchmarks/reference/cleanrl_sac.sh setup DIR          a venv in DIR/venv: cleanrl 1.2.0's sac_continuous_action.py
#                                                          (the last release on PyPI) on our own stack (requirements.txt:
#                                                          gymnasium, MuJoCo, torch) through a gym 0.23 API shim
#   benchmarks/reference/cleanrl_sac.sh setup-old-stack DIR  the same script on the gym of its era instead (gym 0.24.1,
#                                                          mujoco 2.3.3), as the reference rows were first measured
#   benchmarks/reference/cleanrl_sac.sh run DIR ENV SEED   one run at its defaults, 50k env steps, CPU, one thread:
#                                                          DIR/ENV/seedSEED/ (an interrupted run starts again, a
#                                                          finished one, with DONE, is skipped), with
#                                                          run_info.jsonl: the script and its stack, the CPU, the start
#   benchmarks/reference/cleanrl_sac.sh table DIR [CSV]    the reference CSV on stdout: per env and 5k window, the mean
#                                                          training return over the finished seeds (and its std); with
#                                                          CSV (an earlier output), its rows for envs not in DIR kept
#   benchmarks/reference/cleanrl_sac.sh seeds DIR [CSV]    DIR/cleanrl_sac_seeds.csv: each seed's training return per
#                                                          5k window; with CSV (a table of another stack), DIR/stacks.md:
#                                                          the stacks' seeds compared (benchmarks/reference/sac_seeds.py)
# The script was written for gym 0.23. `setup` runs it on the gymnasium and MuJoCo that our scripts run on, so that both
# arms of the table share one simulator: benchmarks/reference/gym_shim/gym.py, installed as the venv's `gym`, gives the
# script gym 0.23's API on gymnasium (old reset and step, env.seed, same-step autoreset with "terminal_observation",
# per-env info dicts, "TimeLimit.truncated"), and stable-baselines3 2.9.2's ReplayBuffer (1.6.2's, which the script was
# released with, on gymnasium spaces) holds its transitions. `setup-old-stack` keeps gym 0.24.1, which has the v4 envs
# but returns a vector env's infos as one dict and checks observation dtypes; a sitecustomize.py there restores the
# 0.23 behaviour. Either way the algorithm and its settings are CleanRL's as released. DIR/venv/stack.txt names the
# stack, and `table` writes it into the source column.
set -euo pipefail
mode=${1:-}
dir=${2:-}
if [[ -z "$dir" || ! "$mode" =~ ^(setup|setup-old-stack|run|table|seeds)$ ]]; then
  echo "error: give a mode (setup, setup-old-stack, run, table or seeds) and a DIR" >&2
  sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0" | head -15 >&2
  exit 2
fi
dir=$(realpath -m "$dir")
venv=$dir/venv
script=$venv/cleanrl/sac_continuous_action.py
root=$(cd "$(dirname "$0")/../.." && pwd)
get_script() {  # cleanrl 1.2.0 asks for Python < 3.11: its wheel without its dependencies, for the script alone
  "$venv/bin/pip" download -q --no-deps --python-version 3.10 --only-binary=:all: cleanrl==1.2.0 -d "$venv/wheel"
  "$venv/bin/python" -m zipfile -e "$venv"/wheel/cleanrl-1.2.0-*.whl "$venv"
}
purelib() { "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
versions() {  # "name version, ..." of the packages named, as installed in the venv
  local code='import importlib.metadata as m, sys; print(", ".join(p + " " + m.version(p) for p in sys.argv[1:]))'
  "$venv/bin/python" -c "$code" "$@"
}
case "$mode" in
  setup)
    python3 -m venv "$venv"
    # requirements.txt's pins, which our scripts run on; stable-baselines3 2.9.2 asks for gymnasium < 2, numpy, torch
    # and cloudpickle, which they satisfy: one resolve, so that nothing of the stack moves
    "$venv/bin/pip" install -q -r "$root/requirements.txt" stable-baselines3==2.9.2
    get_script
    cp "$root/benchmarks/reference/gym_shim/gym.py" "$(purelib)/gym.py"
    echo "$(versions gymnasium mujoco torch stable-baselines3), gym 0.23's API by benchmarks/reference/gym_shim" \
      > "$venv/stack.txt"
    echo "ready: $script ($(cat "$venv/stack.txt"))"
    ;;
  setup-old-stack)
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch==2.13.0 numpy==1.23.5 mujoco==2.3.3 gym==0.24.1 pandas==2.0.3 matplotlib==3.7.5 \
      tensorboard cloudpickle psutil imageio "importlib-metadata~=4.13"
    # stable-baselines3 1.6.2 asks for gym 0.21: without its dependencies
    "$venv/bin/pip" install -q --no-deps stable-baselines3==1.6.2
    get_script
    cat > "$(purelib)/sitecustomize.py" <<'EOF'
"""gym 0.24.1 made to behave as gym 0.23, for CleanRL 1.2.0's unmodified sac_continuous_action.py."""

import functools

import gym

# the script sets the observation space's dtype to float32 after making the env; gym 0.24's checker then rejects
# the env's float64 observations (gym 0.23 had no checker)
gym.make = functools.partial(gym.make, disable_env_checker=True)


def _per_env(infos, i):
    """Env i's info dict out of gym 0.24's dict of arrays with "_key" masks (nested dicts too)."""
    return {
        key: _per_env(value, i) if isinstance(value, dict) else value[i]
        for key, value in infos.items()
        if not key.startswith("_") and infos.get("_" + key, [True] * (i + 1))[i]
    }


class _ListInfos(gym.Wrapper):
    """gym 0.23's vector infos: a list of per-env dicts, which the script reads."""

    def step(self, actions):
        obs, rewards, dones, infos = self.env.step(actions)
        return obs, rewards, dones, [_per_env(infos, i) for i in range(self.env.num_envs)]


_SyncVectorEnv = gym.vector.SyncVectorEnv
gym.vector.SyncVectorEnv = lambda env_fns, **kwargs: _ListInfos(_SyncVectorEnv(env_fns, **kwargs))
EOF
    echo "$(versions gym mujoco torch stable-baselines3), gym 0.23's behaviour by a sitecustomize.py" > "$venv/stack.txt"
    echo "ready: $script ($(cat "$venv/stack.txt"))"
    ;;
  run)
    env_id=${3:?env id}
    seed=${4:?seed}
    [[ -f "$script" ]] || { echo "error: no $script: run '$0 setup $dir' first" >&2; exit 2; }
    run_dir=$dir/$env_id/seed$seed
    # a finished run is never run again (a pre-registered set reports every run once); an unfinished one starts afresh
    [[ -f "$run_dir/DONE" ]] && { echo "$run_dir: finished earlier, skipped"; exit 0; }
    rm -rf "$run_dir" && mkdir -p "$run_dir" && cd "$run_dir"
    # the run's provenance for benchmarks/confirm.py, in the keys of our runner's run_info.jsonl (benchmarks/learning.py):
    # "commit" names CleanRL's script and the stack it runs on, "machine" the CPU model
    "$venv/bin/python" - "$venv/stack.txt" > run_info.jsonl <<'EOF'
import json
import platform
import sys
import time
from pathlib import Path

stack = Path(sys.argv[1])  # absent in a venv set up before setup wrote it
stack = stack.read_text().strip() if stack.exists() else "stack not recorded"
cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
record = {
    "commit": f"cleanrl 1.2.0 sac_continuous_action.py ({stack})",
    "machine": models[0] if models and models[0] else platform.machine(),  # ARM's cpuinfo names no model
    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
}
print(json.dumps(record))
EOF
    OMP_NUM_THREADS=1 "$venv/bin/python" "$script" --env-id "$env_id" --seed "$seed" \
      --total-timesteps 50000 --cuda False > log.txt 2>&1
    touch DONE
    ;;
  seeds)
    exec "$venv/bin/python" "$root/benchmarks/reference/sac_seeds.py" "$dir" ${3:+"$3"}
    ;;
  table)
    earlier=${3:-}
    [[ -z "$earlier" || -f "$earlier" ]] || { echo "error: no such CSV: $earlier" >&2; exit 2; }
    "$venv/bin/python" - "$dir" "$earlier" <<'EOF'
import csv
import glob
import statistics
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

root = Path(sys.argv[1])
stack = root / "venv" / "stack.txt"  # setup's record of the venv's stack; absent in a venv set up before it was written
stack = f" ({stack.read_text().strip()})" if stack.exists() else ""
windows = [(start, start + 5000) for start in range(5000, 50000, 5000)] + [(40000, 50000)]  # then the last 10k
writer = csv.writer(sys.stdout, lineterminator="\n")
header = ["algorithm", "env", "seeds", "steps_from", "steps_to", "training_return", "training_return_std", "source"]
writer.writerow(header)
env_dirs = sorted(p for p in root.iterdir() if p.name != "venv" and p.is_dir())
for env_dir in env_dirs:
    runs = sorted((p for p in env_dir.glob("seed*") if (p / "DONE").exists()), key=lambda p: int(p.name[4:]))
    per_seed = []  # each finished seed's mean training return per window
    for run_dir in runs:
        events = EventAccumulator(glob.glob(str(run_dir / "runs" / "*"))[0], size_guidance={"scalars": 0})
        events.Reload()
        # CleanRL counts steps from 0: the episode logged at global_step ended at env step global_step + 1
        ends = [(e.step + 1, e.value) for e in events.Scalars("charts/episodic_return")]
        per_seed.append([statistics.mean(r for s, r in ends if a < s <= b) for a, b in windows])
    last_10k = ", ".join(f"{p.name[4:]}: {seed[-1]:.0f}" for p, seed in zip(runs, per_seed))
    source = (
        "CleanRL's sac_continuous_action.py as released in cleanrl 1.2.0, unmodified, its defaults (5k random warm-up, "
        f"critic lr 1e-3, one update per env step), on CPU, run by benchmarks/reference/cleanrl_sac.sh{stack}; mean training "
        f"episodic return per window, mean and sample std over seeds (per seed over 40-50k: {last_10k})"
    )
    for k, (start, end) in enumerate(windows):
        values = [seed[k] for seed in per_seed]
        std = round(statistics.stdev(values), 1) if len(values) > 1 else ""
        writer.writerow(["cleanrl-sac", env_dir.name, len(values), start, end, round(statistics.mean(values), 1), std, source])
if sys.argv[2]:  # the earlier table's rows for the envs not run here (their run directories are gone), in its order
    with open(sys.argv[2], newline="") as f:
        run_here = {p.name for p in env_dirs}
        kept = [row for row in csv.DictReader(f) if row["algorithm"] != "cleanrl-sac" or row["env"] not in run_here]
    writer.writerows([row[column] for column in header] for row in kept)
EOF
    ;;
esac
