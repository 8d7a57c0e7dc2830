"""Results table and learning curves of a learning benchmark (`./benchmark.sh learn`), from its TensorBoard logs.

    ./benchmark.sh aggregate benchmark_results/quick        (or: python benchmarks/aggregate.py DIR)
    ./benchmark.sh aggregate DIR --select-seeds 1,2,3,4,5     (also: tuned against fixed w on held-out seeds)
    ./benchmark.sh aggregate DIR --reference benchmarks/reference/cleanrl_sac.csv   (training returns beside CleanRL SAC's)

Reads every finished run, `DIR/{algo}/{env}/seed{k}/` with a `DONE` marker (written by the local runner and by the
Slurm job alike; with `--unfinished`, also the runs without one, up to their last logged step, marked as such in the
table), and writes into DIR:

- `results.csv` and `results.md`: one row per (algorithm, environment). Definitions:
  - first return: a run's first `eval/episodic_return`, mean over seeds; in the quick preset it comes at
    --learning-starts, before any update (the untrained critic's sampler): a random-play reference for the final return;
  - curve mean: the mean of a run's evaluation returns over the whole run (the area under its learning curve divided
    by its length, when evaluations are evenly spaced), mean over seeds: less noisy than one final evaluation and
    sensitive to how early a run learns;
  - training return, last 10k steps: a run's mean `charts/episodic_return` over the training episodes that ended in its
    last 10,000 env steps, mean ± std over the seeds that ran longest (with --unfinished, the count shows when fewer);
  - final return: a run's last `eval/episodic_return` (the final evaluation, itself a mean over its episodes);
    mean ± sample std (ddof 1) over seeds, no std with one seed;
  - IQM: the interquartile mean over seeds, scipy.stats.trim_mean(x, 0.25) as rliable computes it: floor(n / 4)
    values are cut from each end, no fractional weights (so with 3 seeds nothing is cut and IQM = mean; 5 seeds cut
    1 each side); 95% CI by the percentile bootstrap over seeds, scipy.stats.bootstrap(method="percentile"): 2000
    resamples with replacement, RNG np.random.default_rng(0); one seed gives the degenerate interval [x, x];
  - env steps/s: a run's last logged env step divided by its wall time (end to end: acting, updates, evaluations,
    compilation), median over the seeds that ran on the CPU, and apart, median over those that ran on a GPU (their
    command, in log.txt, has --cuda); wall time: from the run's first to its last logged scalar (event wall-times;
    interpreter start-up and environment construction, seconds, are not in it; for a resumed run, summed over its
    sessions, so the pause between an interruption and the resume is not in it), median over the CPU seeds;
  - final w: the last `losses/w` of an `--autotune-w` run (the tuned temperature), mean over seeds; empty for a fixed
    `--w` (the Markdown table shows the column only when some row tuned w);
  - critic params: parameters of the online critic ensemble (both critics), without the target copies and the
    optimizer state, counted by building the script's `CriticEnsemble` for the environment's sizes.
- in `results.md`, when some cells tuned w (`--autotune-w`) and others of the same algorithm ran fixed values of `--w`
  (a temperature grid): one row per (environment, tuned cell) against the fixed-w cell with the best mean final return
  there, and against the one with the best curve mean (the question "does one tuned setting match the best hand-tuned
  w of each environment?"):
  - difference of means, tuned minus best fixed, with a 95% percentile-bootstrap interval (scipy.stats.bootstrap, the
    seeds of each cell resampled independently, 2000 resamples, RNG seed 0);
  - probability of improvement, as rliable for one task: P(X > Y) + P(X = Y) / 2 over every pair of a tuned seed X and
    a fixed seed Y (0.5: neither ahead), the Mann-Whitney U statistic (scipy.stats.mannwhitneyu) over the pairs;
  - the best fixed cell is picked by its own sample mean, which favours it (the winner's curse of a grid): with few
    seeds a tuned cell that truly matches the best w comes out slightly behind on average;
  - with `--select-seeds 1,2,3`, a second section without that bias: the best fixed cell is picked on those seeds and
    both cells are compared on the other seeds (held out), as one would tune w by hand on some seeds and report others.
- in `results.md`, the training return per window of `--window` env steps (default 5,000): each seed's mean over the
  episodes that ended in the window, mean ± std over seeds; with `--reference CSV`, the rows measured elsewhere for
  the same environments beside ours (see `read_reference`), and `training_curves.png`, the same as curves; then
  also a compact table for the README: the last-10k training return beside the reference's figure for the same env
  steps, their ratio, the final evaluation and env steps/s.
- in `results.md`, each seed's last-10k training return and final evaluation (`seeds_table`).
- in `results.md`, the sampler and the critics over each run's last 10k env steps (`diagnostics_table`): the std of
  the sampled actions over states, the share of clipped coordinates, the action-gradient's norm and the mean Q, from
  the scripts' `sampler/*` and `losses/qf*_values` logs: whether a setting explores hot or cold.
- `learning_curves.png`: evaluation return against env steps, one panel per environment, the mean over seeds with a
  band of ± one std (seeds interpolated onto the union of their evaluation steps inside their common range).
- `runs.csv`: every run's series behind these (evaluation and training returns, wall time, diagnostics), finished or
  not, with the code's commit and the machine each run ran on (columns `commit` and `machine`, from the runner's
  `run_info.jsonl`; a run resumed on another commit or machine lists each, joined with "; "; empty for runs made before
  they were recorded). Kept beside the tables, it stands in for run directories deleted since: copied into a later
  output directory, its runs are aggregated with the new ones there (a run directory replaces the record of the same
  run). `results.md` names the commits and machines of the runs in its tables in one line under the first table.
"""

import argparse
import importlib
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
EVAL_TAG = "eval/episodic_return"
TRAIN_TAG = "charts/episodic_return"  # every training episode, at the env step it ended
RECENT_STEPS = 10_000  # the training-return column: episodes that ended in a run's last 10k env steps
TUNED_W_TAG = "losses/w"  # logged by --autotune-w runs only
# how hot the sampler acts and what the critics believe, over a run's last 10k env steps (the diagnostics table)
DIAGNOSTICS = {  # column: (its tags, averaged together; digits shown)
    "action std": (("sampler/action_std",), 3),
    "clipped coords": (("sampler/clip_fraction",), 3),
    "grad norm": (("sampler/grad_norm",), 2),
    "mean Q": (("losses/qf1_values", "losses/qf2_values"), 1),
}
BOOTSTRAP_RESAMPLES = 2000
COLUMNS = [
    "algorithm",
    "env",
    "seeds",
    "env_steps",
    "first_return_mean",
    "curve_mean",
    "train_return_recent",
    "train_return_recent_std",
    "train_return_recent_seeds",
    "final_return_mean",
    "final_return_std",
    "iqm",
    "iqm_ci_low",
    "iqm_ci_high",
    "final_w",
    "env_steps_per_s",
    "gpu_env_steps_per_s",
    "gpu_seeds",
    "wall_time_s",
    "critic_params",
]


@dataclass
class RunResult:
    algo: str
    env_id: str
    seed: int
    steps: np.ndarray  # evaluation steps, increasing, one value per step
    returns: np.ndarray  # evaluation returns at those steps
    total_steps: int
    wall_time_s: float
    train_steps: np.ndarray  # env steps at which training episodes ended, in order
    train_returns: np.ndarray  # their returns
    diagnostics: dict[str, float]  # DIAGNOSTICS' means over the last 10k env steps; nan where not logged
    final_w: float = math.nan  # the last tuned w (--autotune-w); nan for a fixed w
    finished: bool = True  # the run's directory has DONE (it ran to its end)
    on_gpu: bool = False  # it ran with --cuda: its speed is summarised apart from the CPU runs'
    commit: str = ""  # the code's commit(s) of its attempts, "; "-joined (run_info.jsonl); "" when not recorded
    machine: str = ""  # the GPU or CPU model(s) of its attempts, likewise

    def train_return(self, start, end) -> float:
        """Mean return of the training episodes that ended in (start, end] env steps; nan when none did."""
        inside = (self.train_steps > start) & (self.train_steps <= end)
        return float(self.train_returns[inside].mean()) if inside.any() else math.nan

    @property
    def first_return(self) -> float:
        return float(self.returns[0])

    @property
    def curve_mean(self) -> float:
        return float(self.returns.mean())

    @property
    def final_return(self) -> float:
        return float(self.returns[-1])


def iqm(x) -> float:
    """Interquartile mean: scipy.stats.trim_mean(x, 0.25), the function rliable's aggregate_iqm calls (int(0.25 n)
    values cut from each end of the sorted sample, the rest averaged: no fractional weights)."""
    return float(stats.trim_mean(x, 0.25))


def percentile_bootstrap(samples, statistic) -> tuple[float, float]:
    """95% percentile-bootstrap interval of statistic(*samples, axis) by scipy.stats.bootstrap: each sample resampled
    independently with replacement, BOOTSTRAP_RESAMPLES times, RNG seed 0 (same data, same interval). scipy needs two
    values per sample: a single value is passed twice, which leaves every resample (all that value) as it was."""
    samples = [np.resize(np.asarray(x, dtype=np.float64), max(len(x), 2)) for x in samples]
    rng = np.random.default_rng(0)
    ci = stats.bootstrap(samples, statistic, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile", rng=rng)
    return float(ci.confidence_interval.low), float(ci.confidence_interval.high)


def bootstrap_ci(x) -> tuple[float, float]:
    """Percentile bootstrap interval of the IQM over the seeds x; with one value it is [x, x]."""
    return percentile_bootstrap([x], lambda x, axis: stats.trim_mean(x, 0.25, axis=axis))


def difference_ci(x, y) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(x) - mean(y), the seeds of x and of y resampled independently."""
    return percentile_bootstrap([x, y], lambda x, y, axis: x.mean(axis) - y.mean(axis))


def probability_of_improvement(x, y) -> float:
    """rliable's probability of improvement on one task: P(X > Y) + P(X = Y) / 2 over all pairs of a value of x and
    one of y, the Mann-Whitney U statistic of x divided by the number of pairs."""
    return float(stats.mannwhitneyu(x, y).statistic / (len(x) * len(y)))


def load_scalars(event_dir) -> pd.DataFrame:
    """The scalars as columns tag, step, value, in the order they were written, every event kept except what a resumed
    run's purge_step hides (what the interrupted session logged after its checkpoint). TensorBoard's EventAccumulator
    over the whole directory does that; tbparse does not: it reads each event file with its own accumulator, so a later
    session's purge_step never reaches the earlier session's file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(event_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    events = [(tag, e.step, e.value) for tag in accumulator.Tags()["scalars"] for e in accumulator.Scalars(tag)]
    return pd.DataFrame(events, columns=["tag", "step", "value"])


def active_time(event_dir) -> float:
    """Seconds from the first to the last logged scalar of each event file (one per session: a resumed run adds
    one), summed: the time between an interruption and its resume is not counted."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    total = 0.0
    for path in sorted(Path(event_dir).glob("events.out.tfevents.*")):
        wall_times = [e.wall_time for e in EventFileLoader(str(path)).Load() if e.HasField("summary")]
        total += max(wall_times) - min(wall_times) if wall_times else 0.0
    return total


def ran_on_gpu(run_dir: Path) -> bool:
    """Whether a command the runner logged for this run (its `$ ...` lines in log.txt) has --cuda."""
    log = run_dir / "log.txt"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return any("--cuda" in line.split() for line in lines if line.startswith("$ "))  # Slurm's lines are not quoted


def run_info(run_dir: Path) -> tuple[str, str]:
    """(commit, machine) of a run: the distinct values of its attempts' lines in run_info.jsonl (the runners write one per
    attempt since the run last started afresh), in order, joined with "; "; empty when there is no such file (runs made
    before it was written)."""
    path, commits, machines = run_dir / "run_info.jsonl", {}, {}
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            attempt = json.loads(line)
        except ValueError:
            continue  # a line cut short (a full disk, a kill while writing): the others still count
        if isinstance(attempt, dict):
            commits[str(attempt.get("commit") or "unknown")] = None
            machines[str(attempt.get("machine") or "unknown")] = None
    return "; ".join(commits), "; ".join(machines)


def run_result(run_dir: Path, algo: str, env_id: str, seed: int, finished: bool) -> RunResult | None:
    """The evaluation curve, step count and wall time of one run directory; None when it logged no evaluation."""
    event_dirs = [d for d in (run_dir / "runs").glob("*") if d.is_dir() and any(d.glob("events.out.tfevents.*"))]
    if not event_dirs:
        return None
    event_dir = max(event_dirs, key=lambda d: d.stat().st_mtime)  # the runners leave one; take the newest
    scalars = load_scalars(event_dir)
    # the final evaluation can share its step with a periodic one: it is written last
    evals = scalars[scalars.tag == EVAL_TAG].drop_duplicates("step", keep="last").sort_values("step")
    if evals.empty:
        return None
    train, tuned_w = scalars[scalars.tag == TRAIN_TAG], scalars[scalars.tag == TUNED_W_TAG]
    commit, machine = run_info(run_dir)
    return RunResult(
        algo=algo,
        env_id=env_id,
        seed=seed,
        steps=evals.step.to_numpy(np.int64),
        returns=evals.value.to_numpy(np.float64),
        total_steps=int(scalars.step.max()),
        wall_time_s=active_time(event_dir),
        train_steps=train.step.to_numpy(np.int64),
        train_returns=train.value.to_numpy(np.float64),
        diagnostics=recent_diagnostics(scalars),
        final_w=float(tuned_w.value.iloc[-1]) if len(tuned_w) else math.nan,  # written in step order: the last step's
        finished=finished,
        on_gpu=ran_on_gpu(run_dir),
        commit=commit,
        machine=machine,
    )


def recent_diagnostics(scalars: pd.DataFrame) -> dict[str, float]:
    """Each DIAGNOSTICS column: the mean of its tags' values logged in the run's last 10k env steps (nan if none)."""
    recent = scalars[scalars.step > scalars.step.max() - RECENT_STEPS]
    return {name: float(recent[recent.tag.isin(tags)].value.mean()) for name, (tags, _) in DIAGNOSTICS.items()}


def find_runs(out: Path, unfinished=False) -> tuple[list[RunResult], list[str], list[RunResult]]:
    """The runs to tabulate: the finished runs under out/{algo}/{env}/seed{k}/ and those kept in out/runs.csv (see
    `write_runs`) without a directory here, a directory replacing its run's record; with `unfinished`, also runs still
    going or interrupted, up to their last logged step. Also returns the relative paths of the runs left out or taken
    unfinished (and why), and every run read, finished or not (what runs.csv keeps)."""
    runs = {(r.algo, r.env_id, r.seed): r for r in read_runs(out / RUNS_CSV)}
    left_out = {}  # (algo, env, seed): why
    for run_dir in sorted(out.glob("*/*/seed*")):
        algo, env_id, seed_name = run_dir.relative_to(out).parts
        if not (run_dir.is_dir() and seed_name[4:].isdigit()):
            continue
        finished, key = (run_dir / "DONE").exists(), (algo, env_id, int(seed_name[4:]))
        result = run_result(run_dir, *key, finished)
        if result is not None:
            runs[key] = result
        elif finished or unfinished:
            left_out[key] = f"{'finished' if finished else 'unfinished'}, but no {EVAL_TAG} in its logs"
        else:
            left_out[key] = "not finished"
    results = []
    for key, result in sorted(runs.items()):
        if result.finished or unfinished:
            results.append(result)
        if not result.finished:
            left_out[key] = f"unfinished: taken up to env step {result.total_steps:,}" if unfinished else "not finished"
    left_out = [f"{algo}/{env_id}/seed{seed} ({why})" for (algo, env_id, seed), why in sorted(left_out.items())]
    return results, left_out, list(runs.values())


RUNS_CSV = "runs.csv"  # every run's series behind the tables, kept beside them: a later session adds seeds to it
RUN_COLUMNS = ["algorithm", "env", "seed", "finished", "commit", "machine", "series", "step", "value"]
OLD_RUN_COLUMNS = ["algorithm", "env", "seed", "finished", "series", "step", "value"]  # before commit and machine


def write_runs(runs: list[RunResult], path: Path) -> None:
    """One row per logged value the tables use: series `eval` and `train` (evaluation and training returns at their env
    steps), and at the run's last env step its `wall_time_s`, `on_gpu`, `final_w` and `diagnostics/{column}`. The run's
    `commit` and `machine` are on these last rows only (the eval and train rows leave them empty: the strings on every
    one would make the file several times larger). Run directories are deleted between sessions; this file, next to
    results.md, lets `find_runs` rebuild the same tables with more seeds."""
    rows = []
    for r in runs:
        run = (r.algo, r.env_id, r.seed, r.finished)
        rows += [(*run, "", "", "eval", step, value) for step, value in zip(r.steps, r.returns, strict=True)]
        rows += [(*run, "", "", "train", step, value) for step, value in zip(r.train_steps, r.train_returns, strict=True)]
        last = {
            "wall_time_s": r.wall_time_s,
            "on_gpu": float(r.on_gpu),
            "final_w": r.final_w,
            **{f"diagnostics/{k}": v for k, v in r.diagnostics.items()},
        }
        rows += [(*run, r.commit, r.machine, name, r.total_steps, value) for name, value in last.items()]
    pd.DataFrame(rows, columns=RUN_COLUMNS).to_csv(path, index=False)


def read_runs(path: Path) -> list[RunResult]:
    """The runs `write_runs` kept in path; none when there is no such file. A run without evaluations (CleanRL's SAC,
    kept by benchmarks/confirm.py) gets empty steps and returns."""
    if not path.exists():
        return []
    try:  # commit and machine as text: a commit of digits and one "e" is no number
        table = pd.read_csv(path, dtype={"commit": str, "machine": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        table = pd.DataFrame()
    if list(table.columns) == OLD_RUN_COLUMNS:  # written before commit and machine were recorded
        table = table.assign(commit="", machine="")[RUN_COLUMNS]
    if list(table.columns) != RUN_COLUMNS or "wall_time_s" not in set(table.series):
        raise SystemExit(f"error: {path} is not a runs file of this aggregator (columns: {', '.join(RUN_COLUMNS)})")
    table = table.fillna({"commit": "", "machine": ""})
    runs = []
    for (algo, env_id, seed, finished), rows in table.groupby(["algorithm", "env", "seed", "finished"]):
        series = {name: part for name, part in rows.groupby("series")}  # each in the order it was written
        last = {name: float(part.value.iloc[0]) for name, part in series.items()}  # the one-value series
        evals, train = series.get("eval", rows.iloc[:0]), series.get("train", rows.iloc[:0])
        runs.append(
            RunResult(
                algo=algo,
                env_id=env_id,
                seed=int(seed),
                steps=evals.step.to_numpy(np.int64),
                returns=evals.value.to_numpy(np.float64),
                total_steps=int(series["wall_time_s"].step.iloc[0]),
                wall_time_s=last["wall_time_s"],
                train_steps=train.step.to_numpy(np.int64),
                train_returns=train.value.to_numpy(np.float64),
                diagnostics={name: last.get(f"diagnostics/{name}", math.nan) for name in DIAGNOSTICS},
                final_w=last.get("final_w", math.nan),
                finished=bool(finished),
                on_gpu=bool(last.get("on_gpu", 0.0)),  # written since GPU runs were added; every earlier one ran on a CPU
                commit=next((v for v in rows.commit if v), ""),  # on the run's last rows only
                machine=next((v for v in rows.machine if v), ""),
            )
        )
    return runs


_params_cache = {}


def critic_params(algo: str, env_id: str) -> int | None:
    """Parameters of the script's online critic ensemble for the env's sizes; None when that cannot be built here."""
    key = (algo, env_id)
    if key not in _params_cache:
        try:
            import gymnasium as gym

            if str(REPO) not in sys.path:
                sys.path.insert(0, str(REPO))
            script = algo.split("-", 1)[0]  # a benchmark variant `{algo}-{name}` uses its algorithm's critics
            module = importlib.import_module(f"{script}_continuous_action")
            with warnings.catch_warnings():  # gymnasium's "v4 is out of date": only the sizes are needed here
                warnings.simplefilter("ignore")
                env = gym.make(env_id)
            obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
            env.close()
            _params_cache[key] = sum(p.numel() for p in module.CriticEnsemble(obs_dim, act_dim).parameters())
        except Exception as e:  # a secondary column: say why it is missing, keep the table
            print(f"warning: no parameter count for {algo} on {env_id}: {type(e).__name__}: {e}", file=sys.stderr)
            _params_cache[key] = None
    return _params_cache[key]


def summarize(results: list[RunResult]) -> list[dict]:
    """One row per (algorithm, environment), environments then algorithms in name order."""
    runs = pd.DataFrame(
        {
            "env": r.env_id,
            "algorithm": r.algo,
            "steps": r.total_steps,
            "first": r.first_return,
            "curve": r.curve_mean,
            "recent": r.train_return(r.total_steps - RECENT_STEPS, r.total_steps),
            "final": r.final_return,
            "final_w": r.final_w,
            # speed is the hardware's: CPU and GPU runs apart
            "cpu_steps_per_s": math.nan if r.on_gpu else r.total_steps / max(r.wall_time_s, 1e-9),
            "gpu_steps_per_s": r.total_steps / max(r.wall_time_s, 1e-9) if r.on_gpu else math.nan,
            "cpu_wall": math.nan if r.on_gpu else r.wall_time_s,
        }
        for r in results
    )
    # the last 10k of the longest seeds only: an unfinished seed's last 10k are other env steps
    runs.loc[runs.steps < runs.groupby(["env", "algorithm"]).steps.transform("max"), "recent"] = math.nan
    groups = runs.groupby(["env", "algorithm"])  # sorted by environment, then algorithm
    mean = lambda x: x.mean(skipna=False)  # nan when a seed has none (final w: unless every seed tuned w)
    table = groups.agg(
        seeds=("final", "size"),
        env_steps=("steps", "max"),
        first_return_mean=("first", "mean"),
        curve_mean=("curve", "mean"),
        train_return_recent=("recent", "mean"),
        train_return_recent_std=("recent", "std"),  # ddof 1: nan with one seed
        train_return_recent_seeds=("recent", "count"),
        final_return_mean=("final", "mean"),
        final_return_std=("final", "std"),  # ddof 1: nan with one seed
        iqm=("final", iqm),
        final_w=("final_w", mean),
        env_steps_per_s=("cpu_steps_per_s", "median"),  # medians skip nan: over the seeds of that hardware
        gpu_env_steps_per_s=("gpu_steps_per_s", "median"),
        gpu_seeds=("gpu_steps_per_s", "count"),
        wall_time_s=("cpu_wall", "median"),
    ).reset_index()
    table["iqm_ci_low"], table["iqm_ci_high"] = zip(*groups.final.apply(bootstrap_ci), strict=True)
    table = table.astype({"env_steps": int})[COLUMNS[:-1]]
    return [{**row, "critic_params": critic_params(row["algorithm"], row["env"])} for row in table.to_dict("records")]


def tuned_against_fixed(results: list[RunResult], select_seeds=None) -> list[dict]:
    """One row per (environment, cell that tuned w): its final return and curve mean against the fixed-w cells of the
    same algorithm (the label before the first '-': `nclql-w0.02` and `nclql-autotune` are both nclql) in that
    environment, each metric against the cell that is best at it. Empty when no such pair exists.

    With `select_seeds` (a set of seeds) the best fixed cell is picked by its mean over those seeds only, and both
    cells are then compared over the other seeds (held out): a choice of w that does not see the seeds it is judged
    on, so the grid's winner's curse does not favour it. Fixed cells without held-out seeds are no candidates (they
    could not be judged); a tuned cell without held-out seeds gets no row."""
    groups = {}
    for r in results:
        groups.setdefault((r.env_id, r.algo), []).append(r)
    tuned = {key: g for key, g in groups.items() if all(not math.isnan(r.final_w) for r in g)}
    fixed = {key: g for key, g in groups.items() if all(math.isnan(r.final_w) for r in g)}
    rows = []
    for (env_id, algo), group in sorted(tuned.items()):
        rivals = {a: g for (e, a), g in fixed.items() if e == env_id and a.split("-")[0] == algo.split("-")[0]}
        if not rivals:
            continue
        # the seeds that pick the best fixed cell, and the seeds both sides are judged on (the same without select_seeds)
        picking = rivals
        if select_seeds is not None:
            held_out = {a: [r for r in g if r.seed not in select_seeds] for a, g in rivals.items()}
            # a cell without held-out seeds cannot be judged, so it is no candidate
            picking = {a: [r for r in g if r.seed in select_seeds] for a, g in rivals.items() if held_out[a]}
            rivals = held_out
            group = [r for r in group if r.seed not in select_seeds]
        picking = {a: g for a, g in picking.items() if g}
        if not group or not picking:
            continue  # nothing held out to judge on, or nothing to pick with
        row = {"env": env_id, "tuned": algo, "seeds": len(group)}
        for metric in ("final_return", "curve_mean"):
            picked_means = {a: np.mean([getattr(r, metric) for r in g]) for a, g in picking.items()}
            best = max(picked_means, key=picked_means.get)
            mine = [getattr(r, metric) for r in group]
            theirs = [getattr(r, metric) for r in rivals[best]]
            row[metric] = {
                "best_fixed": best,
                "best_fixed_seeds": len(theirs),
                "tuned_mean": float(np.mean(mine)),
                "best_fixed_mean": float(np.mean(theirs)),
                "difference": float(np.mean(mine) - np.mean(theirs)),
                "ci": difference_ci(mine, theirs),
                "p_improvement": probability_of_improvement(mine, theirs),
            }
        rows.append(row)
    return rows


def comparison_table(rows: list[dict], select_seeds=None) -> str:
    """The Markdown section of `tuned_against_fixed`'s rows ('' when there are none); `select_seeds` as given to it."""
    if not rows:
        return ""
    if select_seeds is None:
        title = "## Tuned w against the best fixed w of each environment"
        best_note = (
            "- Best fixed: the fixed-`--w` cell of the same algorithm with the highest mean of that metric in that "
            "environment, picked by its own sample mean (which favours it: a tuned cell that truly matches it comes out "
            "slightly behind)."
        )
    else:
        selection = ", ".join(str(s) for s in sorted(select_seeds))
        title = f"## Tuned w against the best fixed w of each environment, picked on seeds {selection}, compared on the others"
        best_note = (
            f"- Best fixed: the fixed-`--w` cell of the same algorithm with the highest mean of that metric in that "
            f"environment over seeds {selection} (the selection); both cells are then compared over their other seeds "
            "only (held out), so the choice of w does not see the seeds it is judged on. Candidates: the fixed cells "
            "with held-out seeds. Seeds: the held-out ones."
        )

    def cell(c):
        return (
            f"{_fmt(c['tuned_mean'])} vs {_fmt(c['best_fixed_mean'])} ({c['best_fixed']}, {c['best_fixed_seeds']}) | "
            f"{c['difference']:+,.1f} [{c['ci'][0]:+,.1f}, {c['ci'][1]:+,.1f}] | {c['p_improvement']:.2f}"
        )

    lines = [
        "",
        title,
        "",
        "| env | tuned | seeds | final return: tuned vs best fixed (cell, seeds) | difference [95% CI] | P(tuned > fixed) "
        "| curve mean: tuned vs best fixed (cell, seeds) | difference [95% CI] | P(tuned > fixed) |",
        "|-|-|-|-|-|-|-|-|-|",
    ]
    for r in rows:
        lines.append(f"| {r['env']} | {r['tuned']} | {r['seeds']} | {cell(r['final_return'])} | {cell(r['curve_mean'])} |")
    lines += [
        "",
        best_note,
        f"- Difference: tuned mean minus best fixed mean; 95% CI: percentile bootstrap, the seeds of each cell resampled "
        f"independently, {BOOTSTRAP_RESAMPLES} resamples, RNG seed 0.",
        "- P(tuned > fixed): over every pair of a tuned seed and a fixed seed, the share where the tuned one is higher "
        "(ties count half), rliable's probability of improvement: 0.5 when neither is ahead.",
    ]
    return "\n".join(lines) + "\n"


def learning_curves(results: list[RunResult]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]]:
    """{env: {algo: (steps, mean, std, n_seeds)}}: seeds interpolated onto the union of their evaluation steps inside
    the range they all cover (the identity when they share their steps); std is ddof 1, zero with one seed."""
    curves = {}
    for env_id, algo in sorted({(r.env_id, r.algo) for r in results}):
        group = [r for r in results if (r.algo, r.env_id) == (algo, env_id)]
        start, end = max(r.steps[0] for r in group), min(r.steps[-1] for r in group)
        grid = np.unique(np.concatenate([r.steps for r in group]))
        grid = grid[(grid >= start) & (grid <= end)]
        values = np.stack([np.interp(grid, r.steps, r.returns) for r in group])
        std = values.std(axis=0, ddof=1) if len(group) > 1 else np.zeros(len(grid))
        curves.setdefault(env_id, {})[algo] = (grid, values.mean(axis=0), std, len(group))
    return curves


def plot_curves(curves, path: Path, ylabel="eval return (mean ± std over seeds)", dashed=None) -> None:
    """One panel per environment: each algorithm's mean with a ± std band; `dashed` ({env: {name: [(step, value)]}})
    adds reference lines."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    n = len(curves)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    algos = list(dict.fromkeys(algo for by_algo in curves.values() for algo in by_algo))
    colors = {algo: f"C{i % 10}" if len(algos) <= 10 else plt.cm.tab20(i % 20) for i, algo in enumerate(algos)}
    seeds = {algo: sorted({by_algo[algo][3] for by_algo in curves.values() if algo in by_algo}) for algo in algos}
    entries = len(algos) + len({name for lines in (dashed or {}).values() for name in lines})
    legend_columns = min(entries, 3, ncols)  # one legend for all panels, below them, no wider than they are
    legend_rows = -(-entries // legend_columns)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows + 0.3 * legend_rows), squeeze=False)
    handles, labels_extra = {}, {}
    for ax, (env_id, by_algo) in zip(axes.flat, curves.items(), strict=False):
        for algo, (steps, mean, std, _) in by_algo.items():
            (handles[algo],) = ax.plot(steps, mean, marker=".", color=colors[algo])
            ax.fill_between(steps, mean - std, mean + std, color=colors[algo], alpha=0.2, linewidth=0)
        for name, points in (dashed or {}).get(env_id, {}).items():
            (handles[name],) = ax.plot(*zip(*sorted(points), strict=True), linestyle="--", color="black", marker=".")
            labels_extra[name] = name
        ax.set_title(env_id)
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    labels = []
    for algo in algos:
        low, high = seeds[algo][0], seeds[algo][-1]  # seeds per env: the fewest and the most
        labels.append(f"{algo} ({low if low == high else f'{low}-{high}'} seed{'s' if high > 1 else ''})")
    fig.legend(
        [handles[a] for a in [*algos, *labels_extra]],
        [*labels, *labels_extra.values()],
        loc="lower center",
        ncol=legend_columns,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.3 * legend_rows / fig.get_figheight() + 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _speed(row) -> str:
    """env steps/s on the CPU, then on the GPU with its seed count, for the seeds that ran on each."""
    gpu = f"GPU {_fmt(row['gpu_env_steps_per_s'])} ({row['gpu_seeds']} of {row['seeds']})" if row["gpu_seeds"] else ""
    if math.isnan(row["env_steps_per_s"]):
        return gpu
    return _fmt(row["env_steps_per_s"]) + (f"; {gpu}" if gpu else "")


def _fmt(x, digits=1):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def run_counts(values) -> str:
    """'a (3 runs), b (1 run)': each distinct commit or machine of the runs with its count (a run resumed on another
    commit or machine, "; "-joined, counts under each)."""
    seen = {}
    for value in values:
        for part in value.split("; ") if value else ["not recorded"]:
            seen[part] = seen.get(part, 0) + 1
    return ", ".join(f"{name} ({n} run{'s' if n > 1 else ''})" for name, n in seen.items())


def provenance(results: list[RunResult]) -> str:
    """One line naming the commits and the machines of the runs, each with its count of runs."""
    return (
        f"- Commits: {run_counts(r.commit for r in results)}; machines: {run_counts(r.machine for r in results)} (per run in "
        "runs.csv, columns `commit` and `machine`)."
    )


def markdown_table(rows: list[dict], left_out: list[str], made_with: str = "") -> str:
    tuned = any(not math.isnan(r["final_w"]) for r in rows)
    lines = [
        "| algorithm | env | seeds | env steps | first eval return | curve mean | training return, last 10k steps | "
        + "final eval return, mean ± std | "
        + "IQM [95% CI] | "
        + ("final w | " if tuned else "")
        + "env steps/s | wall time / run | critic params |",
        "|-|-|-|-|-|-|-|-|-|" + ("-|" if tuned else "") + "-|-|-|",
    ]
    for r in rows:
        recent = _recent(r)
        final = _fmt(r["final_return_mean"]) + _pm(r["final_return_std"])
        final_w = (("-" if math.isnan(r["final_w"]) else f"{r['final_w']:.3g}") + " | ") if tuned else ""
        wall = "n/a" if math.isnan(r["wall_time_s"]) else f"{r['wall_time_s'] / 60:.1f} min"  # n/a: GPU seeds only
        lines.append(
            f"| {r['algorithm']} | {r['env']} | {r['seeds']} | {r['env_steps']:,} | {_fmt(r['first_return_mean'])} | "
            f"{_fmt(r['curve_mean'])} | {recent} | {final} | "
            f"{_fmt(r['iqm'])} [{_fmt(r['iqm_ci_low'])}, {_fmt(r['iqm_ci_high'])}] | "
            f"{final_w}{_speed(r)} | {wall} | {_fmt(r['critic_params'], 0)} |"
        )
    notes = [
        "",
        "- First eval return: each run's first evaluation, mean over seeds (in the quick preset: before any update, the "
        "untrained sampler — a random-play reference).",
        "- Curve mean: each run's mean evaluation return over all its evaluations (area under the learning curve), "
        "mean over seeds.",
        "- Training return, last 10k steps: each run's mean `charts/episodic_return` over the training episodes that ended "
        "in its last 10,000 env steps (exploring with the training sampler), mean ± sample std over the seeds that ran "
        "longest (an unfinished seed's last 10k are other env steps).",
        "- Final eval return: each run's last `eval/episodic_return` (the final evaluation); mean ± sample std over seeds.",
        "- IQM: scipy.stats.trim_mean(x, 0.25) over seeds as in rliable (floor(n/4) cut from each end: with 3 seeds it is "
        f"the mean); 95% CI: percentile bootstrap over seeds, {BOOTSTRAP_RESAMPLES} resamples, RNG seed 0.",
        "- env steps/s: last logged env step / wall time, end to end (evaluations and compilation included), median over "
        "the seeds run on the CPU; GPU: median over the seeds run with `--cuda` (how many in brackets). Wall time: first to "
        "last logged scalar (summed over the sessions of a resumed run), median over the CPU seeds.",
        *(
            ["- final w: the temperature `--autotune-w` reached (last `losses/w`), mean over seeds; - for a fixed `--w`."]
            if tuned
            else []
        ),
        "- critic params: the online critic ensemble (both critics), not the target copies.",
    ]
    if made_with:
        notes.append(made_with)
    if left_out:
        notes.append("- Left out or unfinished: " + ", ".join(left_out) + ".")
    return "\n".join(["# Learning benchmark", "", *lines, *notes]) + "\n"


def headline_table(rows: list[dict], reference: list[dict]) -> str:
    """The README's table: per algorithm and environment, the training return over the last 10k env steps (mean ± std
    over seeds) beside the reference's over the same steps and their ratio, the final evaluation and env steps/s."""
    lines = [
        "",
        "## Against the reference",
        "",
        "| algorithm | env | seeds | training return, last 10k steps | reference, same steps | ratio | "
        "final eval return | env steps/s |",
        "|-|-|-|-|-|-|-|-|",
    ]
    for row in rows:
        start = max(row["env_steps"] - RECENT_STEPS, 0)
        same_steps = [
            r for r in reference if (r["env"], r["steps_from"], r["steps_to"]) == (row["env"], start, row["env_steps"])
        ]
        mine = _recent(row)
        theirs, ratio = "", ""
        if same_steps:
            ref = same_steps[0]
            seeds = f"{ref['seeds']} seed{'s' if ref['seeds'] > 1 else ''}"
            theirs = f"{_fmt(ref['training_return'])}{_pm(ref['training_return_std'])} ({ref['algorithm']}, {seeds})"
            ratio = f"{row['train_return_recent'] / ref['training_return']:.2f}x" if ref["training_return"] else ""
        final = _fmt(row["final_return_mean"]) + _pm(row["final_return_std"])
        lines.append(
            f"| {row['algorithm']} | {row['env']} | {row['seeds']} | {mine} | {theirs} | {ratio} | {final} | {_speed(row)} |"
        )
    lines += [
        "",
        "- Training return: each run's mean `charts/episodic_return` over the training episodes that ended in its last "
        "10,000 env steps; mean ± sample std over seeds. Reference: its figure for the same env steps (see below); "
        "ratio: ours / reference. Final eval return: the last evaluation, mean ± std over seeds. env steps/s: median over "
        "the seeds run on the CPU; GPU: over those run with `--cuda` (how many in brackets).",
    ]
    return "\n".join(lines) + "\n"


def _pm(std, digits=1) -> str:
    return "" if math.isnan(std) else f" ± {_fmt(std, digits)}"


def _recent(row) -> str:
    """The last-10k training return, mean ± std, with the count of seeds behind it when an unfinished one is not."""
    fewer = row["train_return_recent_seeds"] < row["seeds"]
    return (
        _fmt(row["train_return_recent"])
        + _pm(row["train_return_recent_std"])
        + (f" ({row['train_return_recent_seeds']} of {row['seeds']} seeds)" if fewer else "")
    )


def diagnostics_table(results: list[RunResult]) -> str:
    """The sampler and the critics over each run's last 10k env steps, mean ± std over the seeds that ran longest: how
    much of the action is pinned to the box (clipped), how steep the critics are where the sampler acts, how large Q is."""
    rows = []
    for env_id, algo in sorted({(r.env_id, r.algo) for r in results}):
        group = [r for r in results if (r.algo, r.env_id) == (algo, env_id)]
        longest = [r for r in group if r.total_steps == max(g.total_steps for g in group)]
        values = pd.DataFrame([r.diagnostics for r in longest], columns=list(DIAGNOSTICS))
        if values.isna().all().all():
            continue
        cells = [
            _fmt(values[name].mean(), digits) + _pm(values[name].std(), digits) for name, (_, digits) in DIAGNOSTICS.items()
        ]
        seeds = f"{len(longest)}" + (f" of {len(group)}" if len(longest) < len(group) else "")
        rows.append(f"| {algo} | {env_id} | {seeds} | " + " | ".join(cells) + " |")
    if not rows:
        return ""
    lines = [
        "",
        "## Sampler and critics, last 10k steps",
        "",
        "| algorithm | env | seeds | " + " | ".join(DIAGNOSTICS) + " |",
        "|-|-|-|" + "-|" * len(DIAGNOSTICS),
        *rows,
        "",
        "- Each cell: a run's mean over what it logged in its last 10,000 env steps (every `--log-frequency` updates, on "
        "the TD target's sampled actions), then mean ± sample std over the seeds that ran longest. Action std: "
        "`sampler/action_std`, the std of the sampled actions in [-1, 1]^d over the batch's states, per coordinate, "
        "averaged: the policy's own spread and how its action varies between states together (uniform actions give "
        "0.577, bang-bang control near 1; the spread per state is the `spread` benchmark's); clipped "
        "coords: `sampler/clip_fraction`, the share of coordinates on the box's faces; grad norm: `sampler/grad_norm`, "
        "the clean critics' action-gradient norm there; mean Q: `losses/qf1_values` and `losses/qf2_values`.",
    ]
    return "\n".join(lines) + "\n"


def seeds_table(results: list[RunResult]) -> str:
    """Each seed's last-10k training return and final evaluation: the numbers behind the means, to cite seed by seed."""
    rows = []
    for env_id, algo in sorted({(r.env_id, r.algo) for r in results}):
        group = sorted((r for r in results if (r.algo, r.env_id) == (algo, env_id)), key=lambda r: r.seed)
        end = max(r.total_steps for r in group)  # an unfinished seed's last 10k are other env steps: "-"
        recent = [_fmt(r.train_return(end - RECENT_STEPS, end)) if r.total_steps == end else "-" for r in group]
        recent = ", ".join(f"{r.seed}{'*' if r.on_gpu else ''}: {value}" for r, value in zip(group, recent, strict=True))
        final = ", ".join(f"{r.seed}: {_fmt(r.final_return)}" for r in group)
        rows.append(f"| {algo} | {env_id} | {recent} | {final} |")
    lines = [
        "",
        "## Each seed",
        "",
        "| algorithm | env | training return, last 10k steps (seed: return) | final eval return (seed: return) |",
        "|-|-|-|-|",
        *rows,
        "",
        "- The per-seed values behind the first table's means; -: a seed that stopped before the others' last 10k; "
        "*: a seed run on a GPU (`--cuda`).",
    ]
    return "\n".join(lines) + "\n"


def read_reference(path) -> list[dict]:
    """Training returns measured elsewhere (e.g. CleanRL's SAC) to show beside ours: a CSV with the columns algorithm,
    env, seeds, steps_from, steps_to, training_return (mean training episodic return of the episodes that ended in
    (steps_from, steps_to] env steps, mean over seeds) and source; optionally training_return_std (over seeds)."""
    needed = {"algorithm", "env", "seeds", "steps_from", "steps_to", "training_return", "source"}
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        table = pd.DataFrame()
    if table.empty or not needed <= set(table.columns):
        raise SystemExit(f"error: {path} needs the CSV columns {', '.join(sorted(needed))}")
    if "training_return_std" not in table.columns:
        table["training_return_std"] = math.nan
    types = {"seeds": int, "steps_from": int, "steps_to": int, "training_return": float, "training_return_std": float}
    return table.astype(types).to_dict("records")


def training_windows(results: list[RunResult], width: int) -> dict[tuple[str, str], tuple[np.ndarray, ...]]:
    """{(env, algo): (window ends, mean, std, seeds)}: each seed's mean training return per window (start, end] of
    `width` env steps that it ran to the end of (an unfinished seed stops early), up to the longest seed's length; then
    the mean and std (ddof 1, 0 for one seed) over the seeds that had an episode end in that window, and their count."""
    windows = {}
    for env_id, algo in sorted({(r.env_id, r.algo) for r in results}):
        group = [r for r in results if (r.algo, r.env_id) == (algo, env_id)]
        ends = np.arange(width, max(r.total_steps for r in group) + 1, width)
        per_seed = pd.DataFrame(
            [[r.train_return(end - width, end) if end <= r.total_steps else math.nan for end in ends] for r in group],
            columns=ends,
        )
        mean, std, count = per_seed.mean().to_numpy(), per_seed.std().fillna(0.0).to_numpy(), per_seed.count().to_numpy()
        windows[(env_id, algo)] = (ends, mean, std, count)
    return windows


def windows_table(results: list[RunResult], width: int, reference: list[dict]) -> str:
    """The Markdown section of mean training return per window of env steps, ours (mean ± std over seeds) and the
    reference's rows for the same environments and windows, with each one's last-10k figure."""
    windows = training_windows(results, width)
    longest = max(len(ends) for ends, *_ in windows.values())
    ends = np.arange(width, (longest + 1) * width, width)
    span = lambda start, end: f"{round(start / 1000, 1):g}-{round(end / 1000, 1):g}k"
    label = lambda end: span(end - width, end)
    figure = lambda r: _fmt(r["training_return"]) + _pm(r["training_return_std"])  # a reference row's mean ± std
    lines = [
        "",
        f"## Training return per {width:,} env steps",
        "",
        "| algorithm | env | seeds | " + " | ".join(label(e) for e in ends) + " | last 10k |",
        "|-|-|-|" + "-|" * len(ends) + "-|",
    ]
    recent = {(row["env"], row["algorithm"]): row for row in summarize(results)}
    for env_id in sorted({env for env, _ in windows}):
        for (env, algo), (mine, mean, std, count) in windows.items():
            if env != env_id:
                continue
            row = recent[(env, algo)]
            cells = [
                ""
                if i >= len(mine) or math.isnan(mean[i])
                else _fmt(mean[i])
                + (f" ± {_fmt(std[i])}" if std[i] else "")
                + (f" ({count[i]})" if count[i] < row["seeds"] else "")
                for i in range(len(ends))
            ]
            n_recent, steps = row["train_return_recent_seeds"], row["env_steps"]
            fewer = f"{n_recent} of {row['seeds']} seeds, " if n_recent < row["seeds"] else ""
            last = f"{_fmt(row['train_return_recent'])} ({fewer}{span(max(steps - RECENT_STEPS, 0), steps)})"
            lines.append(f"| {algo} | {env} | {row['seeds']} | " + " | ".join(cells) + f" | {last} |")
        for name in sorted({r["algorithm"] for r in reference if r["env"] == env_id}):
            mine = {(r["steps_from"], r["steps_to"]): r for r in reference if (r["algorithm"], r["env"]) == (name, env_id)}
            cells = [figure(mine[(e - width, e)]) if (e - width, e) in mine else "" for e in ends]
            last = [r for (start, end), r in mine.items() if end - start == RECENT_STEPS and end == max(e for _, e in mine)]
            last = f"{figure(last[0])} ({span(last[0]['steps_from'], last[0]['steps_to'])})" if last else ""
            seeds = next(iter(mine.values()))["seeds"]
            lines.append(f"| {name} (reference) | {env_id} | {seeds} | " + " | ".join(cells) + f" | {last} |")
    lines += [
        "",
        "- Each cell: the mean `charts/episodic_return` of the training episodes that ended in that window of env steps, "
        "per seed, then mean ± std over seeds (a count in brackets: the seeds that ran that far, when fewer). Last 10k: "
        "as in the table above, over the env steps in brackets (a run's last 10k; compare a reference's only where they "
        "are the same steps).",
    ]
    for source in dict.fromkeys(r["source"] for r in reference if r["env"] in {env for env, _ in windows}):
        names = sorted({r["algorithm"] for r in reference if r["source"] == source})
        lines.append(f"- {', '.join(names)} (reference): {source}")
    return "\n".join(lines) + "\n"


def plot_training_windows(results, width: int, reference: list[dict], path: Path) -> None:
    """Training return per window, mean ± std over seeds, one panel per environment; reference rows dashed."""
    curves = {}
    for (env_id, algo), (ends, mean, std, _) in training_windows(results, width).items():
        curves.setdefault(env_id, {})[algo] = (ends, mean, std, sum(r.env_id == env_id and r.algo == algo for r in results))
    extra = {}
    for r in reference:
        if r["env"] in curves and r["steps_to"] - r["steps_from"] == width:
            extra.setdefault(r["env"], {}).setdefault(f"{r['algorithm']} (reference)", []).append(
                (r["steps_to"], r["training_return"])
            )
    plot_curves(curves, path, ylabel=f"training return per {width:,} steps\n(mean ± std over seeds)", dashed=extra)


def aggregate(out, select_seeds=None, window=5000, reference=None, unfinished=False) -> list[dict]:
    """Writes results.csv, results.md, learning_curves.png, training_curves.png and runs.csv into out; returns the
    table's rows.
    results.md also holds the training return per `window` env steps, beside the `reference` CSV's rows when given
    (see read_reference). With `select_seeds`, it also compares tuned and fixed w on held-out seeds (see
    `tuned_against_fixed`)."""
    reference = read_reference(reference) if reference else []
    out = Path(out)
    if not out.is_dir():
        raise SystemExit(f"error: {out} is not a directory")
    results, left_out, every_run = find_runs(out, unfinished)
    for item in left_out:
        print(f"left out: {item}")
    if every_run:
        write_runs(every_run, out / RUNS_CSV)
    if not results:
        print(f"no finished run with an evaluation under {out}: no table written")
        return []
    rows = summarize(results)
    # nan and a missing parameter count (Int64: the others stay integers) as empty cells; CRLF lines, as csv writes them
    table = pd.DataFrame(rows, columns=COLUMNS).astype({"critic_params": "Int64"})
    table.to_csv(out / "results.csv", index=False, lineterminator="\r\n")
    table = markdown_table(rows, left_out, provenance(results)) + (headline_table(rows, reference) if reference else "")
    table += windows_table(results, window, reference)
    table += seeds_table(results)
    table += diagnostics_table(results)
    table += comparison_table(tuned_against_fixed(results))
    if select_seeds is not None:
        table += comparison_table(tuned_against_fixed(results, select_seeds), select_seeds)
    (out / "results.md").write_text(table)
    plot_curves(learning_curves(results), out / "learning_curves.png")
    plot_training_windows(results, window, reference, out / "training_curves.png")
    print(table)
    written = ", ".join(
        str(out / name) for name in ("results.csv", "results.md", "learning_curves.png", "training_curves.png")
    )
    print(f"wrote {written}, {out / RUNS_CSV}")
    return rows


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SystemExit(f"error: {message} (see --help)")


def main(argv=None) -> int:
    parser = _Parser(description="Results table (CSV, Markdown) and learning-curve PNG of a learning benchmark.")
    parser.add_argument("out", help="the benchmark's output directory (the learn mode's --out)")
    parser.add_argument(
        "--select-seeds",
        metavar="SEEDS",
        help="comma-separated seeds: also compare tuned and fixed w with the best fixed w picked on these seeds and "
        "both judged on the other seeds (held out)",
    )
    parser.add_argument("--window", type=int, default=5000, help="env steps per window of the training-return table")
    parser.add_argument(
        "--reference",
        metavar="CSV",
        help="training returns measured elsewhere to show beside ours, e.g. benchmarks/reference/cleanrl_sac.csv",
    )
    parser.add_argument(
        "--unfinished",
        action="store_true",
        help="also take runs without DONE (running or interrupted) up to their last logged step, marked in the table",
    )
    args = parser.parse_args(argv)
    if args.window < 1:
        raise SystemExit(f"error: --window must be >= 1, got {args.window}")
    select_seeds = None
    if args.select_seeds is not None:
        try:
            select_seeds = {int(s) for s in args.select_seeds.split(",")}
        except ValueError:
            raise SystemExit(f"error: --select-seeds must be comma-separated integers, got {args.select_seeds!r}") from None
    aggregate(args.out, select_seeds, args.window, args.reference, args.unfinished)
    return 0


if __name__ == "__main__":
    sys.exit(main())
