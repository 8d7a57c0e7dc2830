"""Learning-curve benchmark: both scripts over a list of environments and seeds, several runs at once, each run in its
own directory; then the results table and the learning-curve plot (benchmarks/aggregate.py).

    ./benchmark.sh learn [--preset quick|sac-budget|paper] [--algos lql,nclql] [--envs Hopper-v4,...] [--seeds 1,2,3]
                         [--total-timesteps N] [--workers N] [--variant NAME=ARGS ...] [--out DIR] [--dry-run]
                         [--slurm ...] [-- script args]

Layout: DIR/{algo}/{env}/seed{k}/ holds `log.txt` (the script's stdout and stderr), `runs/` (its TensorBoard logs: the
scripts write runs/ under their working directory, so each run starts in its own directory), `run_info.jsonl` (one
JSON line per attempt, written as it starts: the code's commit, the machine, the runner; a resume adds a line, a fresh
start begins a new file) and `DONE` (JSON: exit status, wall time, command), written only when the script exits with
status 0. Running the benchmark again skips runs with DONE; a run without DONE resumes from the checkpoint its last
attempt left (the scripts write one on Ctrl-C / SIGTERM and every --checkpoint-frequency env steps) with --resume, or
else starts afresh (the failed attempt's logs deleted first). A failed run does not stop the others; it is listed at
the end with its log, and the exit status is then 1. Each run gets
--threads and OMP_NUM_THREADS = max(1, cores // workers), unless its arguments give --threads (two invocations side by
side: `-- --threads 1` each). Arguments after `--` go to every script call and replace the preset's
flags of the same name (`--no-compile` drops `--compile`); --env-id, --seed, --total-timesteps and --exp-name belong
to the benchmark. `--variant NAME=ARGS` (repeatable) runs every algorithm once per variant with ARGS on top, as the
algorithm `{algo}-{NAME}` (its own directory, row and curve): a grid of settings in one table, e.g.
`--algos nclql --variant 'w0.1=--w 0.1' --variant 'w0.5=--w 0.5' --variant autotune=--autotune-w`.

Presets (updates = env steps after --learning-starts, divided by --num-envs; one update per vector step):
- quick: InvertedPendulum-v4 (20,000 env steps) and Hopper-v4 (40,000; also the budget of any other env given with
  --envs), seeds 1-3, both algorithms, the authors' --num-envs 5 (one update per 5 env steps), --learning-starts 2500
  --eval-frequency 2500 --eval-episodes 5 --compile, 2 workers: 12 runs, 3,500 and 7,500 updates each, 33,000 updates
  per worker. One run does about 14 updates/s while another shares this 2-core VM, so the preset takes about 45 min
  (43 min measured: docs/benchmarking.md). --num-envs 1 (one update per env step) would cost 5x more per env step.
- sac-budget: CleanRL SAC's protocol at a small budget, Hopper-v4, Walker2d-v4, HalfCheetah-v4,
  InvertedDoublePendulum-v4 and Ant-v4, 50,000 env steps, seeds 1-3, both algorithms, --num-envs 1 (one update per env
  step) --learning-starts 5000 --eval-frequency 5000 --eval-episodes 10 --checkpoint-frequency 5000 --compile, and one
  setting per algorithm for every task, frozen by docs/preregistration.md: SAC's critic learning rate and the
  plain-gradient sampler at --w 0.1, for NC-LQL --learning-rate 1e-3 --w 0.1 --step-size 1e-4, for LQL
  --learning-rate 1e-3 --w 0.1. 2 workers: 30 runs of 45,000 updates, 55-80 min each at the 11-15 env steps/s
  measured on the 2-vCPU VM with two runs sharing it, about 16 h. Compare with CleanRL SAC: `./benchmark.sh confirm
  DIR --sac SAC_DIR` (docs/preregistration.md).
- paper: the authors' protocol, HalfCheetah, Ant, Hopper, Humanoid, Walker2d, Swimmer (-v4), seeds 1-5, 5,000,000
  env steps, the scripts' defaults (the authors': --num-envs 5, 30k learning starts, evaluation of 20 episodes every
  125k steps) plus --compile, and for NC-LQL the authors' sampler, --grad-norm --w 0.01 --step-size 1e-4 (their
  update, update for update); add `-- --cuda --cudagraphs` on a GPU. 60 runs of (5e6 - 3e4) / 5 = 994,000 updates
  each. At the ~13 updates/s of a quick-preset run on this VM (one thread) that is 994,000 / 13 = 76,000 s = 21 h per
  run and 60 x 21 h = 1,270 run-hours (53 days) for the preset on one worker; docs/speed.md has GPU rates. --slurm
  spreads the runs over a cluster.

Slurm (--slurm): writes DIR/slurm_job.sh, a job array with one task per unfinished run (the same command, working
directory, log.txt, resume and DONE marker as the local runner), and submits it with sbatch when sbatch is on PATH;
otherwise it prints the script's path. A task cut by its time limit gets SIGTERM and checkpoints (if it can write the
checkpoint within the cluster's KillWait; otherwise the last periodic one is used): `--slurm` again submits the
unfinished runs, which resume. When the tasks are done, `./benchmark.sh aggregate DIR` makes the table.
"""

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aggregate  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = {"lql": REPO / "lql_continuous_action.py", "nclql": REPO / "nclql_continuous_action.py"}
# set per run by the benchmark (--resume when a run is retried); --eval-checkpoint would not train at all
RESERVED = ("--env-id", "--seed", "--total-timesteps", "--exp-name", "--resume", "--eval-checkpoint")


@dataclass(frozen=True)
class Preset:
    budgets: dict[str, int]  # env id -> env steps
    default_steps: int  # for an environment given with --envs that the preset does not list
    seeds: tuple[int, ...]
    script_args: tuple[str, ...]
    workers: int
    slurm_time: str
    slurm_cpus: int
    algo_args: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per algorithm, after script_args


PAPER_ENVS = ("HalfCheetah-v4", "Ant-v4", "Hopper-v4", "Humanoid-v4", "Walker2d-v4", "Swimmer-v4")
SAC_BUDGET_ENVS = ("Hopper-v4", "Walker2d-v4", "HalfCheetah-v4", "InvertedDoublePendulum-v4", "Ant-v4")
PRESETS = {
    "quick": Preset(
        budgets={"InvertedPendulum-v4": 20_000, "Hopper-v4": 40_000},
        default_steps=40_000,
        seeds=(1, 2, 3),
        script_args=(
            *("--num-envs", "5", "--learning-starts", "2500", "--eval-frequency", "2500", "--eval-episodes", "5"),
            "--compile",
        ),
        workers=2,
        slurm_time="02:00:00",
        slurm_cpus=1,
    ),
    "paper": Preset(
        budgets=dict.fromkeys(PAPER_ENVS, 5_000_000),
        default_steps=5_000_000,
        seeds=(1, 2, 3, 4, 5),
        script_args=("--compile",),
        workers=1,
        slurm_time="3-00:00:00",
        slurm_cpus=2,
        # the authors' sampler, update for update (their 500 on a unit-normalised gradient is 1 / (w reward_scale) with
        # w = 0.01 in reward units; they released no LQL)
        algo_args={"nclql": ("--grad-norm", "--w", "0.01", "--step-size", "1e-4")},
    ),
    "sac-budget": Preset(
        budgets=dict.fromkeys(SAC_BUDGET_ENVS, 50_000),
        default_steps=50_000,
        seeds=(1, 2, 3),
        script_args=(
            *("--num-envs", "1", "--learning-starts", "5000", "--eval-frequency", "5000", "--eval-episodes", "10"),
            *("--checkpoint-frequency", "5000", "--compile"),
        ),
        workers=2,
        slurm_time="06:00:00",
        slurm_cpus=1,
        # one setting per algorithm for every task, frozen before the confirmatory runs (docs/preregistration.md): SAC's
        # critic learning rate and the user's --w 0.1; NC-LQL's step is its default, given so that a changed default
        # does not change the preset
        algo_args={
            "lql": ("--learning-rate", "1e-3", "--w", "0.1"),
            "nclql": ("--learning-rate", "1e-3", "--w", "0.1", "--step-size", "1e-4"),
        },
    ),
}


@dataclass(frozen=True)
class Job:
    algo: str
    env_id: str
    seed: int
    total_timesteps: int
    run_dir: Path
    command: tuple[str, ...] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.algo}/{self.env_id}/seed{self.seed}"

    @property
    def done(self) -> bool:
        return (self.run_dir / "DONE").exists()


def _flag_name(token: str) -> str:
    """'--no-compile' and '--compile=x' -> '--compile': the flag a token sets."""
    name = token.split("=", 1)[0]
    return "--" + name[len("--no-") :] if name.startswith("--no-") else name


def merge_args(preset_args, extra_args) -> list[str]:
    """The preset's script arguments with every flag that extra_args also sets removed, then extra_args."""
    overridden = {_flag_name(t) for t in extra_args if t.startswith("--")}
    merged, skipping = [], False
    for token in preset_args:
        if token.startswith("--"):
            skipping = _flag_name(token) in overridden
        if not skipping:
            merged.append(token)
    return merged + list(extra_args)


def build_jobs(
    out,
    algos,
    budgets: dict[str, int],
    seeds,
    script_args=(),
    extra_args=(),
    scripts=None,
    python=None,
    variants=None,
    algo_args=None,
):
    """One job per (environment, seed, algorithm, variant), in that order: the algorithms alternate, so partial results
    compare. `variants` maps a name to script arguments: each algorithm runs once per variant, labelled `{algo}-{name}`
    (default: one unnamed variant, labelled `{algo}`). Arguments: the preset's (`script_args`, then `algo_args[algo]`),
    replaced by `extra_args`, then by the variant's (the most specific wins)."""
    scripts, python = scripts or SCRIPTS, python or sys.executable
    jobs = []
    for env_id, steps in budgets.items():
        for seed in seeds:
            for algo in algos:
                preset_args = merge_args(script_args, (algo_args or {}).get(algo, ()))
                for variant, variant_args in (variants or {"": ()}).items():
                    label = f"{algo}-{variant}" if variant else algo
                    command = (
                        python,
                        str(Path(scripts[algo]).resolve()),
                        *("--env-id", env_id, "--seed", str(seed), "--total-timesteps", str(steps), "--exp-name", label),
                        *merge_args(merge_args(preset_args, extra_args), variant_args),
                    )
                    jobs.append(Job(label, env_id, seed, steps, Path(out).resolve() / label / env_id / f"seed{seed}", command))
    return jobs


def compiles(command) -> bool:
    """Whether the run uses torch.compile: the last of --compile and --no-compile wins."""
    flags = [token for token in command if token in ("--compile", "--no-compile")]
    return bool(flags) and flags[-1] == "--compile"


def threads_of(command: list[str]) -> int:
    """The run's last --threads value, also its OMP_NUM_THREADS (at least 1: 0 means torch's default; a value that is
    not a number gives 1 here and the script's own one-line error in the run's log)."""
    values = [command[i + 1] for i, token in enumerate(command[:-1]) if token == "--threads"]
    return max(1, int(values[-1])) if values and values[-1].lstrip("-").isdigit() else 1


def latest_checkpoint(run_dir: Path) -> str | None:
    """The newest runs/*/checkpoint.pt an interrupted attempt left (relative to run_dir), or None."""
    found = sorted((run_dir / "runs").glob("*/checkpoint.pt"), key=lambda p: p.stat().st_mtime)
    return str(found[-1].relative_to(run_dir)) if found else None


def code_commit(script) -> str:
    """`git rev-parse HEAD` of the repository holding the script, with "+dirty" when tracked files differ from that
    commit (untracked ones do not count); "unknown" outside a git checkout or without git."""
    git = ["git", "-C", str(Path(script).resolve().parent)]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=60)
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        status = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def uses_cuda(command) -> bool:
    """Whether the run asks for the GPU: the last of --cuda and --no-cuda wins."""
    flags = [token for token in command if token in ("--cuda", "--no-cuda")]
    return bool(flags) and flags[-1] == "--cuda"


def gpu_name() -> str | None:
    """nvidia-smi's name of the GPU a CUDA run uses (its device 0: the first of CUDA_VISIBLE_DEVICES when that is set),
    or of the first GPU when that one cannot be queried; None without nvidia-smi or a GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
    for command in ([*query, "-i", visible], query) if visible else (query,):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        names = result.stdout.strip().splitlines() if result.returncode == 0 else []
        if names and names[0].strip():
            return names[0].strip()
    return None


def cpu_model() -> str:
    """The first "model name" of /proc/cpuinfo, else platform.machine() (e.g. on ARM, where cpuinfo has none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line and line.split(":", 1)[1].strip():
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def machine_name(command) -> str:
    """The machine a run's attempt runs on: the GPU's name when its command has --cuda and nvidia-smi names one, else
    the CPU model."""
    return (uses_cuda(command) and gpu_name()) or cpu_model()


RUN_INFO = "run_info.jsonl"  # one JSON line per attempt since the run last started afresh


def record_attempt(job: Job, resumed_from: str | None) -> None:
    """Adds this attempt's line to the run's run_info.jsonl (a fresh start replaces the file, as it does log.txt): when
    it started, the runner, the code's commit and the machine. The Slurm job script writes the same line in bash."""
    record = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runner": "local",
        "commit": code_commit(job.command[1]),
        "machine": machine_name(job.command),
        "resumed_from": resumed_from,
    }
    with open(job.run_dir / RUN_INFO, "a" if resumed_from else "w") as f:
        f.write(json.dumps(record) + "\n")


def run_job(job: Job, omp_threads: int) -> int:
    """Runs one job in its directory, resuming from the checkpoint of an interrupted attempt if there is one (the
    scripts write one on SIGINT/SIGTERM and every --checkpoint-frequency steps); writes DONE only on success."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = latest_checkpoint(job.run_dir)
    if checkpoint is None:
        shutil.rmtree(job.run_dir / "runs", ignore_errors=True)  # a failed attempt's logs would be read as results
    command = [*job.command, "--resume", checkpoint] if checkpoint else list(job.command)
    if "--threads" not in command:  # the scripts default to one thread: give each run its share of the cores
        command += ["--threads", str(omp_threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_of(command)), "PYTHONUNBUFFERED": "1"}
    record_attempt(job, checkpoint)
    start = time.time()
    with open(job.run_dir / "log.txt", "a" if checkpoint else "w") as log:  # a resume keeps the earlier output
        log.write("$ " + shlex.join(command) + "\n")
        log.flush()
        try:
            status = subprocess.run(command, cwd=job.run_dir, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        except OSError as e:  # the interpreter or the script cannot be started
            log.write(f"error: cannot start the run: {e}\n")
            status = 127
    if status == 0:
        record = {
            "exit_status": 0,
            "wall_time_s": round(time.time() - start, 1),  # of this attempt
            "runner": "local",
            "command": job.command,
            "resumed_from": checkpoint,
        }
        (job.run_dir / "DONE").write_text(json.dumps(record) + "\n")
    return status


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _warn_changed(finished: list[Job]) -> None:
    """Finished runs are kept even when their command differs from this invocation's: say so, once."""
    changed = []
    for job in finished:
        try:
            recorded = json.loads((job.run_dir / "DONE").read_text()).get("command", [])[2:]
        except (OSError, ValueError):
            continue
        if recorded and list(recorded) != list(job.command[2:]):
            changed.append(job)
    if changed:
        print(
            f"warning: {len(changed)} finished run(s) were made with other script arguments (e.g. {changed[0].run_dir}); "
            "they are kept: use another --out, or delete their directories to redo them",
            file=sys.stderr,
        )


def run_jobs(jobs: list[Job], workers: int, cores: int | None = None) -> list[tuple[Job, int]]:
    """Runs the unfinished jobs, `workers` at a time; returns the failed ones with their exit status."""
    finished = [job for job in jobs if job.done]
    todo = [job for job in jobs if not job.done]
    _warn_changed(finished)
    omp = max(1, (cores or available_cores()) // workers)
    print(
        f"{len(jobs)} runs: {len(finished)} finished earlier (skipped), {len(todo)} to do, {workers} at a time, "
        f"each on {omp} thread(s) unless its arguments give --threads",
        flush=True,
    )
    failed, lock, stop = [], threading.Lock(), threading.Event()
    counter = iter(range(1, len(todo) + 1))

    def work(job):
        if stop.is_set():
            return None
        with lock:
            resume = latest_checkpoint(job.run_dir)
            print(
                f"[{next(counter)}/{len(todo)}] start {job.name}"
                + (f", resuming {resume}" if resume else "")
                + (" (compiles first: a few minutes)" if compiles(job.command) else ""),
                flush=True,
            )
        start = time.time()
        status = run_job(job, omp)
        with lock:
            if status == 0:
                print(f"done {job.name} in {(time.time() - start) / 60:.1f} min", flush=True)
            else:
                checkpoint = latest_checkpoint(job.run_dir)
                then = f"; the next run resumes from {checkpoint}" if checkpoint else ""
                print(f"FAILED {job.name} (exit status {status}): see {job.run_dir / 'log.txt'}{then}", flush=True)
        return status

    pool = ThreadPoolExecutor(max_workers=workers)
    futures = {pool.submit(work, job): job for job in todo}
    try:
        for future in as_completed(futures):
            status = future.result()
            if status:
                failed.append((futures[future], status))
    except KeyboardInterrupt:
        stop.set()  # the runs in progress got the terminal's SIGINT too; start no new ones
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    order = {job: i for i, job in enumerate(jobs)}
    return sorted(failed, key=lambda item: order[item[0]])


# The part of the Slurm script after the task's dir, cmd and command_json are set: what run_job does, in bash.
SLURM_TASK = r"""  *) echo "error: no run for array task $task" >&2; exit 2 ;;
esac
mkdir -p "$dir" && cd "$dir"
if [ -e DONE ]; then echo "already finished: $dir"; exit 0; fi
# an interrupted attempt (time limit, pre-emption: the scripts checkpoint on SIGTERM) resumes from its checkpoint
checkpoint=$(ls -t runs/*/checkpoint.pt 2>/dev/null | head -n 1 || true)
if [ -n "$checkpoint" ]; then
  cmd+=(--resume "$checkpoint")
  resumed_from="\"$checkpoint\""
else
  rm -rf runs log.txt run_info.jsonl  # a failed attempt's logs would be read as results
  resumed_from=null
fi
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1} PYTHONUNBUFFERED=1
[[ " ${cmd[*]} " == *" --threads "* ]] || cmd+=(--threads "$OMP_NUM_THREADS")
# this attempt's line in run_info.jsonl, as the local runner writes it: the commit of the repository holding the script
# ("+dirty": tracked files changed) and the machine (the GPU's name for a --cuda run, else the CPU model)
commit=$(git -C "$(dirname "${cmd[1]}")" rev-parse HEAD 2>/dev/null || true)
if [ -z "$commit" ]; then
  commit=unknown
elif [ -n "$(git -C "$(dirname "${cmd[1]}")" status --porcelain --untracked-files=no 2>/dev/null || true)" ]; then
  commit+="+dirty"
fi
cuda=no
for token in "${cmd[@]}"; do case "$token" in --cuda) cuda=yes ;; --no-cuda) cuda=no ;; esac; done
machine=
gpu_query=(nvidia-smi --query-gpu=name --format=csv,noheader)
if [ "$cuda" = yes ]; then  # the run's device 0: the first of CUDA_VISIBLE_DEVICES when set
  visible=${CUDA_VISIBLE_DEVICES:-}
  visible=${visible%%,*}
  [ -z "$visible" ] || machine=$("${gpu_query[@]}" -i "$visible" 2>/dev/null) || machine=
  [ -n "$machine" ] || machine=$("${gpu_query[@]}" 2>/dev/null) || machine=
  machine=${machine%%$'\n'*}  # the first line
fi
cpu_model='s/^model name[[:space:]]*:[[:space:]]*//p'
[ -n "$machine" ] || machine=$(sed -n "$cpu_model" /proc/cpuinfo 2>/dev/null | head -n 1 || true)
machine=$(printf '%s' "$machine" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
[ -n "$machine" ] || machine=$(uname -m)
machine=${machine//\\/\\\\}
machine=${machine//\"/\\\"}
printf '{"started": "%s", "runner": "slurm", "commit": "%s", "machine": "%s", "resumed_from": %s}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$machine" "$resumed_from" >> run_info.jsonl
start=$(date +%s)
status=0
{ printf '$ %s\n' "${cmd[*]}"; "${cmd[@]}"; } >> log.txt 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  echo "error: $dir failed with exit status $status: see $dir/log.txt" >&2
  exit "$status"
fi
printf '{"exit_status": 0, "wall_time_s": %s, "runner": "slurm", "command": %s, "resumed_from": %s}\n' \
  "$(( $(date +%s) - start ))" "$command_json" "$resumed_from" > DONE
"""


def write_slurm_script(jobs: list[Job], out, time_limit: str, cpus: int, sbatch_options=(), job_name="lql-bench") -> Path:
    """A job array with one task per job: task i runs jobs[i] in its directory, as run_job does (log.txt, DONE)."""
    out = Path(out).resolve()
    (out / "slurm_logs").mkdir(parents=True, exist_ok=True)
    lines = [
        "#!/usr/bin/env bash",
        "# Written by benchmarks/learning.py (./benchmark.sh learn --slurm): one array task per unfinished run.",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --array=0-{len(jobs) - 1}",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --time={time_limit}",
        f"#SBATCH --output={out}/slurm_logs/%A_%a.out",
        *(f"#SBATCH {option}" for option in sbatch_options),
        "set -euo pipefail",
        'task=${SLURM_ARRAY_TASK_ID:?"submit this script with sbatch: it is a job array"}',
        'case "$task" in',
    ]
    for i, job in enumerate(jobs):
        lines += [
            f"  {i})  # {job.name}",
            f"    dir={shlex.quote(str(job.run_dir))}",
            f"    cmd=({' '.join(shlex.quote(token) for token in job.command)})",
            f"    command_json={shlex.quote(json.dumps(list(job.command)))} ;;",
        ]
    lines.append(SLURM_TASK)
    path = out / "slurm_job.sh"
    path.write_text("\n".join(lines))
    path.chmod(0o755)
    return path


def parse_variants(specs) -> dict[str, tuple[str, ...]]:
    """['w0.05=--w 0.05', ...] -> {'w0.05': ('--w', '0.05')}; names become directory names, so they stay plain."""
    variants = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9._]+", name):
            raise SystemExit(f"error: --variant must be NAME=ARGS with NAME of letters, digits, '.' or '_', got {spec!r}")
        if name in variants:
            raise SystemExit(f"error: --variant {name} is given twice")
        try:
            variants[name] = tuple(shlex.split(text))
        except ValueError as e:
            raise SystemExit(f"error: --variant {name}: cannot split its arguments: {e}") from None
    return variants


def _split_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise SystemExit(f"error: --{what} is empty")
    if len(set(items)) != len(items):
        raise SystemExit(f"error: --{what} lists an item twice: {text}")
    return items


def check_envs(env_ids) -> None:
    import gymnasium as gym

    for env_id in env_ids:
        try:
            gym.spec(env_id)
        except gym.error.Error as e:
            raise SystemExit(f"error: unknown environment {env_id!r} ({e})") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SystemExit(f"error: {message} (see --help)")


def parse(argv):
    """(options, extra script arguments): what follows the first `--` goes to the scripts untouched."""
    argv = list(argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = _Parser(
        prog="./benchmark.sh learn",
        description="Runs LQL and NC-LQL over environments and seeds, then writes the results table and plot.",
        epilog="Arguments after -- are passed to every script call. See the header of benchmarks/learning.py.",
    )
    p.add_argument(
        "--preset",
        default="quick",
        choices=sorted(PRESETS),
        help="quick (~45 min, 2 cores), sac-budget (~16 h, 2 cores) or paper (GPUs, days)",
    )
    p.add_argument("--algos", default=",".join(SCRIPTS), help="comma-separated, from: " + ", ".join(SCRIPTS))
    p.add_argument("--envs", help="comma-separated env ids (default: the preset's)")
    p.add_argument("--seeds", help="comma-separated integers (default: the preset's)")
    p.add_argument("--total-timesteps", type=int, help="env steps of every run (default: the preset's, per env)")
    p.add_argument("--workers", type=int, help="runs at once (default: the preset's)")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="run every algorithm also with these script arguments, labelled ALGO-NAME; repeatable, e.g. "
        "--variant 'w0.05=--w 0.05' --variant autotune=--autotune-w",
    )
    p.add_argument("--out", help="output directory (default: benchmark_results/{preset})")
    p.add_argument("--dry-run", action="store_true", help="print the unfinished runs' commands and stop")
    p.add_argument("--slurm", action="store_true", help="write a Slurm job array for the unfinished runs and submit it")
    p.add_argument("--slurm-time", help="time limit per array task (default: the preset's)")
    p.add_argument("--slurm-cpus", type=int, help="--cpus-per-task (default: the preset's)")
    p.add_argument(
        "--sbatch", action="append", default=[], metavar="OPTION", help="extra #SBATCH line, e.g. --sbatch=--gres=gpu:1"
    )
    return p.parse_args(argv), extra


def plan(argv):
    """Checks the command line; returns (options, preset, jobs, workers, output directory)."""
    args, extra = parse(argv)
    preset = PRESETS[args.preset]
    algos = _split_list(args.algos, "algos")
    unknown = [a for a in algos if a not in SCRIPTS]
    if unknown:
        raise SystemExit(f"error: unknown algorithm {unknown[0]!r} (choose from {', '.join(SCRIPTS)})")
    workers = preset.workers if args.workers is None else args.workers
    if workers < 1:
        raise SystemExit(f"error: --workers must be >= 1, got {workers}")
    if args.total_timesteps is not None and args.total_timesteps < 1:
        raise SystemExit(f"error: --total-timesteps must be >= 1, got {args.total_timesteps}")
    if args.slurm_cpus is not None and args.slurm_cpus < 1:
        raise SystemExit(f"error: --slurm-cpus must be >= 1, got {args.slurm_cpus}")
    try:
        seeds = [int(s) for s in _split_list(args.seeds, "seeds")] if args.seeds else list(preset.seeds)
    except ValueError:
        raise SystemExit(f"error: --seeds must be comma-separated integers, got {args.seeds!r}") from None
    variants = parse_variants(args.variant)
    for script_args in (extra, *variants.values()):
        reserved = sorted({_flag_name(t) for t in script_args} & set(RESERVED))
        if reserved:
            raise SystemExit(
                f"error: {reserved[0]} cannot be passed to the scripts here: the benchmark sets --env-id, --seed, "
                "--total-timesteps, --exp-name and --resume per run (use --envs, --seeds, --total-timesteps)"
            )
    env_ids = _split_list(args.envs, "envs") if args.envs else list(preset.budgets)
    check_envs(env_ids)
    budgets = {e: args.total_timesteps or preset.budgets.get(e, preset.default_steps) for e in env_ids}
    out = Path(args.out or f"benchmark_results/{args.preset}").resolve()
    jobs = build_jobs(
        out,
        algos,
        budgets,
        seeds,
        preset.script_args,
        extra,
        variants=variants,
        algo_args=preset.algo_args,
    )
    return args, preset, jobs, workers, out


def main(argv=None) -> int:
    args, preset, jobs, workers, out = plan(sys.argv[1:] if argv is None else argv)
    todo = [job for job in jobs if not job.done]

    if args.dry_run:
        for job in todo:
            print(f"cd {shlex.quote(str(job.run_dir))} && {shlex.join(job.command)} > log.txt 2>&1")
        print(f"{len(todo)} of {len(jobs)} runs to do")
        return 0
    if args.slurm:
        if not todo:
            print(f"all {len(jobs)} runs are finished: nothing to submit; ./benchmark.sh aggregate {out}")
            return 0
        path = write_slurm_script(
            todo,
            out,
            args.slurm_time or preset.slurm_time,
            args.slurm_cpus or preset.slurm_cpus,
            args.sbatch,
            job_name=f"lql-{args.preset}",
        )
        if shutil.which("sbatch") is None:
            print(f"sbatch not found: wrote {path} ({len(todo)} array tasks); submit it with: sbatch {path}")
            print(f"then, when the tasks are done: ./benchmark.sh aggregate {out}")
            return 0
        print(f"submitting {path} ({len(todo)} array tasks)", flush=True)
        status = subprocess.run(["sbatch", str(path)]).returncode
        if status == 0:
            print(f"when the tasks are done: ./benchmark.sh aggregate {out}")
        return status

    try:
        failed = run_jobs(jobs, workers)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished runs are kept, interrupted ones resume from their checkpoints: run the same command "
            "again to go on",
            file=sys.stderr,
        )
        return 130
    aggregate.aggregate(out)
    if failed:
        print(f"error: {len(failed)} of {len(todo)} runs failed (re-running the benchmark retries them):", file=sys.stderr)
        for job, status in failed:
            print(f"  {job.name} (exit status {status}): {job.run_dir / 'log.txt'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
