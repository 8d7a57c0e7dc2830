"""The pre-registered confirmatory analysis: our algorithms against CleanRL's SAC, fixed in code before the runs.

    ./benchmark.sh confirm OURS_DIR --sac SAC_DIR [--out DIR] [--reference-algo cleanrl-sac] [--tasks A-v4,B-v4]
    (or: python benchmarks/confirm.py ...)

Inputs:
- OURS_DIR: a `./benchmark.sh learn` output directory, OURS_DIR/{algo}/{env}/seed{k}/ with DONE, read by
  `aggregate.find_runs` (its runs.csv too: a run kept there counts when its directory is gone). Every algorithm found
  there is one arm (the experiment: nclql over seeds 101-110 and lql over seeds 101-105, `TOTAL_STEPS` env steps).
- SAC_DIR: `benchmarks/reference/cleanrl_sac.sh run`'s directory, SAC_DIR/{env}/seed{k}/ with DONE, the reference
  arm, named by --reference-algo (default `REFERENCE_ALGO`). Each run is kept in DIR/sac_runs.csv (rows as
  `aggregate.write_runs` writes them, training episodes at the env step they ended), and read back from there when
  SAC_DIR lacks the run (a readable finished directory replaces its record; an unfinished or unreadable one leaves the
  record in use, which results.md says): a later session without SAC_DIR still gets the same tables (--sac may then be
  left out). Commit and machine: each run's run_info.jsonl, which cleanrl_sac.sh's `run` writes (empty without one).
- --tasks: the environments analysed, default `TASKS`. Runs of other environments are not read.
- --out DIR: where everything is written, default OURS_DIR/confirm (not OURS_DIR itself: `./benchmark.sh aggregate`
  writes results.md, results.csv and training_curves.png there).

Per run, over its training episodes (`charts/episodic_return`, at the env step each ended; CleanRL logs an episode at
global_step counted from 0, so SAC's steps are shifted by `SAC_STEP_SHIFT`):
- training return, last 10k: the mean return of the training episodes that ended in (total - `RECENT_STEPS`, total]
  env steps, total being the run's env steps (`RunResult.train_return`); ours: the last logged step; SAC:
  `TOTAL_STEPS` (cleanrl_sac.sh's `run` fixes --total-timesteps). The only metric compared with SAC.
- final evaluation: our runs' last `eval/episodic_return` (the final evaluation, a mean over its episodes). SAC has
  none (CleanRL's script does not evaluate): reported for ours only.
- best 5k window: the highest mean training return over the windows (s, s + `WINDOW_STEPS`] for s = `WINDOWS_FROM`,
  `WINDOWS_FROM` + `WINDOW_STEPS`, ... up to the run's total (5-10k, ..., 45-50k; both arms act at random before 5k).
- collapsed: training return, last 10k < `COLLAPSE_FRACTION` x best 5k window. A run whose best window is not positive
  is never flagged (half of a negative best lies above it).
- wall time: `aggregate.active_time` of its event directory (first to last logged scalar).

Random play, per task: the mean undiscounted return of `RANDOM_EPISODES` episodes of uniform random actions (episode
i: env.reset(seed=i), env.action_space.seed(i)), by gymnasium; computed once and cached in DIR/random_play.csv (env,
episodes, mean, std); a cached row of another episode count is computed again.

Per task and arm: seeds, mean ± sample std (ddof 1) of the training return, last 10k (and of the final evaluation,
ours), the IQM (`aggregate.iqm`, floor(n/4) cut from each end) with its 95% interval.

Per task, each algorithm of ours against SAC, on the training return, last 10k (x: ours' seeds, y: SAC's, r: random
play):
- ratio: mean(x) / mean(y);
- normalised score: (mean(x) - r) / (mean(y) - r): 1 is SAC's level, 0 random play's; undefined (nan) where mean(y)
  is not above r;
- probability of improvement: P(X > Y) + P(X = Y) / 2 over every pair of a seed of x and one of y
  (`aggregate.probability_of_improvement`, rliable's).
Over the tasks where both arms have runs:
- mean normalised score: the mean over tasks of the per-task normalised scores (the primary endpoint);
- IQM normalised score: the IQM over all of ours' runs of per-run scores (x_i - r) / (mean(y) - r) of their task;
- mean probability of improvement: the mean over tasks of the per-task ones.

Intervals: 95% percentile bootstrap (`CI_PERCENTILES`), `BOOTSTRAP_RESAMPLES` resamples, each interval (each IQM, each
task's comparison, each algorithm's over-the-tasks figures) from its own np.random.default_rng(`BOOTSTRAP_SEED`): same
data, same interval. The seeds of each arm are resampled with replacement independently of the other arm's, and a
task's three statistics share one set of resamples. Over the tasks the bootstrap is stratified as in rliable: within
each task, both arms' seeds are resampled and every statistic recomputed (SAC's mean, the normaliser, included).

Verdict (`verdict`), on each task's normalised-score interval [low, high] and on the over-the-tasks ones: "ahead" if
low > 1; "behind" if high < 1; else "level" if the interval lies within `LEVEL_BAND`; else "not distinguishable with N
seeds", N the smaller seed count of the two arms (over the tasks: the smallest over its tasks); "undefined" where the
interval is nan (SAC's mean, or a resample's, not above random play). results.md's sentences are generated from it.

Completeness: each arm's seeds are those it has in any task; every (arm, task, seed) among them that has no finished
run is listed in results.md under "Missing or unfinished" with its reason, as are the seeds one arm has and the other
lacks, and runs whose length is not `TOTAL_STEPS`. An algorithm with no run at all is unknown to the analysis.

Constants, the pre-registered values (tests/test_confirm.py checks this list against the code):
- TASKS = Hopper-v4, Walker2d-v4, HalfCheetah-v4, InvertedDoublePendulum-v4, Ant-v4
- REFERENCE_ALGO = cleanrl-sac
- TOTAL_STEPS = 50,000
- SAC_STEP_SHIFT = 1
- RECENT_STEPS = 10,000
- WINDOW_STEPS = 5,000
- WINDOWS_FROM = 5,000
- COLLAPSE_FRACTION = 0.5
- RANDOM_EPISODES = 100
- BOOTSTRAP_RESAMPLES = 10,000
- BOOTSTRAP_SEED = 0
- CI_PERCENTILES = 2.5, 97.5
- LEVEL_BAND = 0.8, 1.25

Outputs in DIR: results.md (the tables, the verdicts, the collapse list, wall clock, missing runs, provenance,
definitions), results.csv (the per-task comparison rows, `COMPARISON_COLUMNS`), per_seed.csv (`PER_SEED_COLUMNS`),
training_curves.png (per task, mean ± std over seeds of the training return per 5k window, one line per arm),
random_play.csv and sac_runs.csv.
"""

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aggregate  # noqa: E402

TASKS = ("Hopper-v4", "Walker2d-v4", "HalfCheetah-v4", "InvertedDoublePendulum-v4", "Ant-v4")
REFERENCE_ALGO = "cleanrl-sac"
TOTAL_STEPS = 50_000  # env steps of every run of the experiment (SAC's: fixed by cleanrl_sac.sh's run mode)
SAC_STEP_SHIFT = 1  # CleanRL logs an episode at global_step, counted from 0: it ended at env step global_step + 1
RECENT_STEPS = aggregate.RECENT_STEPS  # 10,000: the training return's window, a run's last env steps
WINDOW_STEPS = 5_000  # the collapse check's and the curves' windows
WINDOWS_FROM = 5_000  # both arms act at random up to here (learning starts): no window of the collapse check before it
COLLAPSE_FRACTION = 0.5
RANDOM_EPISODES = 100
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CI_PERCENTILES = (2.5, 97.5)
LEVEL_BAND = (0.8, 1.25)  # within a quarter either way: 0.8 = 1 / 1.25, symmetric for a ratio
RANDOM_PLAY_CSV = "random_play.csv"
SAC_RUNS_CSV = "sac_runs.csv"
RANDOM_PLAY_COLUMNS = ["env", "episodes", "mean", "std"]
PER_SEED_COLUMNS = [
    "algo",
    "env",
    "seed",
    "train_last10k",
    "final_eval",
    "best_5k_window",
    "collapsed",
    "wall_time_s",
    "commit",
    "machine",
]
COMPARISON_COLUMNS = [
    "algorithm",
    "reference",
    "env",
    "seeds",
    "reference_seeds",
    "random_play",
    "train_return_mean",
    "train_return_std",
    "reference_mean",
    "reference_std",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "normalised_score",
    "normalised_score_ci_low",
    "normalised_score_ci_high",
    "p_improvement",
    "p_improvement_ci_low",
    "p_improvement_ci_high",
    "verdict",
]


def random_play(env_id: str, episodes: int = RANDOM_EPISODES) -> tuple[float, float]:
    """Mean and sample std (nan for one episode) of the undiscounted return of `episodes` episodes of uniform random
    actions; episode i resets the env and seeds the action space with i, so the figure is reproducible."""
    import gymnasium as gym

    with warnings.catch_warnings():  # gymnasium's "v4 is out of date": the experiment's tasks are v4
        warnings.simplefilter("ignore")
        env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        env.reset(seed=i)
        env.action_space.seed(i)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns)), float(np.std(returns, ddof=1)) if episodes > 1 else math.nan


def random_play_references(tasks, out: Path, episodes: int = RANDOM_EPISODES) -> dict[str, float]:
    """{env: random play's mean return} for the tasks, from out/random_play.csv where it has the env at this episode
    count, else computed (up to 1,000 env steps an episode) and added to the file; its other rows are kept."""
    path = out / RANDOM_PLAY_CSV
    rows = {row["env"]: row for row in pd.read_csv(path).to_dict("records")} if path.exists() else {}
    for env_id in tasks:
        if env_id not in rows or rows[env_id]["episodes"] != episodes:
            print(f"random play on {env_id}: {episodes} episodes", flush=True)
            mean, std = random_play(env_id, episodes)
            rows[env_id] = {"env": env_id, "episodes": episodes, "mean": mean, "std": std}
            pd.DataFrame(list(rows.values()), columns=RANDOM_PLAY_COLUMNS).to_csv(path, index=False)  # each as it comes
    return {env_id: float(rows[env_id]["mean"]) for env_id in tasks}


def find_our_runs(ours: Path, tasks) -> tuple[list[aggregate.RunResult], dict[tuple, str]]:
    """The finished runs of the tasks under ours (directories and runs.csv, by `aggregate.find_runs`), and {(algo,
    env, seed): why} for the others there: unfinished, or finished without an evaluation."""
    results, _, every_run = aggregate.find_runs(ours)
    runs = [r for r in results if r.env_id in tasks]
    finished = {(r.algo, r.env_id, r.seed) for r in runs}
    problems = {
        (r.algo, r.env_id, r.seed): f"unfinished: no DONE, logged up to env step {r.total_steps:,}"
        for r in every_run
        if not r.finished and r.env_id in tasks
    }
    for run_dir in ours.glob("*/*/seed*"):
        algo, env_id, seed_name = run_dir.relative_to(ours).parts
        key = (algo, env_id, int(seed_name[4:])) if seed_name[4:].isdigit() else None
        if key and env_id in tasks and key not in finished and key not in problems:  # find_runs read nothing of it
            has_done = (run_dir / "DONE").exists()
            problems[key] = f"finished, but no {aggregate.EVAL_TAG} in its logs" if has_done else "unfinished: no DONE"
    return runs, problems


def load_sac_run(run_dir: Path, env_id: str, seed: int, algo: str) -> aggregate.RunResult | None:
    """One finished cleanrl_sac.sh run as a RunResult without evaluations, its episodes at the env step they ended;
    None when it logged no training episode."""
    event_dirs = [d for d in (run_dir / "runs").glob("*") if d.is_dir() and any(d.glob("events.out.tfevents.*"))]
    if not event_dirs:
        return None
    event_dir = max(event_dirs, key=lambda d: d.stat().st_mtime)  # cleanrl_sac.sh leaves one; take the newest
    scalars = aggregate.load_scalars(event_dir)
    train = scalars[scalars.tag == aggregate.TRAIN_TAG]
    if train.empty:
        return None
    commit, machine = aggregate.run_info(run_dir)
    return aggregate.RunResult(
        algo=algo,
        env_id=env_id,
        seed=seed,
        steps=np.empty(0, np.int64),
        returns=np.empty(0, np.float64),
        total_steps=TOTAL_STEPS,
        wall_time_s=aggregate.active_time(event_dir),
        train_steps=train.step.to_numpy(np.int64) + SAC_STEP_SHIFT,
        train_returns=train.value.to_numpy(np.float64),
        diagnostics={name: math.nan for name in aggregate.DIAGNOSTICS},
        commit=commit,
        machine=machine,
    )


def find_sac_runs(sac: Path | None, out: Path, tasks, algo: str) -> tuple[list[aggregate.RunResult], dict, list[str]]:
    """SAC's runs of the tasks: out/sac_runs.csv's records, each replaced by its readable finished directory under sac
    (None: the records alone); writes every run back into sac_runs.csv. Also returns {(algo, env, seed): why} for the
    directories that gave no run and no record stands in for, and a note for each whose record stands in."""
    records = {(r.algo, r.env_id, r.seed): r for r in aggregate.read_runs(out / SAC_RUNS_CSV)}
    problems, notes = {}, []
    for env_id in tasks:
        run_dirs = (sac / env_id).glob("seed*") if sac is not None else []
        for run_dir in sorted(d for d in run_dirs if d.name[4:].isdigit()):
            key = (algo, env_id, int(run_dir.name[4:]))
            finished = (run_dir / "DONE").exists()
            run = load_sac_run(run_dir, *key[1:], algo) if finished else None
            why = f"finished, but no {aggregate.TRAIN_TAG} in its logs" if finished else "unfinished: no DONE"
            if run is not None:
                records[key] = run
            elif key in records:
                notes.append(f"{algo}/{env_id}/{run_dir.name}: its directory is {why}; the run kept in {SAC_RUNS_CSV} is used")
            else:
                problems[key] = why
    if records:
        aggregate.write_runs(list(records.values()), out / SAC_RUNS_CSV)
    runs = [r for key, r in sorted(records.items()) if r.algo == algo and r.env_id in tasks]
    return runs, problems, notes


def window_returns(run: aggregate.RunResult) -> tuple[np.ndarray, np.ndarray]:
    """(window ends, mean training return per window): the windows (s, s + WINDOW_STEPS] from WINDOWS_FROM up to the
    run's total env steps; nan where no episode ended."""
    ends = np.arange(WINDOWS_FROM + WINDOW_STEPS, run.total_steps + 1, WINDOW_STEPS)
    return ends, np.array([run.train_return(end - WINDOW_STEPS, end) for end in ends])


def last_10k(run: aggregate.RunResult) -> float:
    """The training return over the run's last RECENT_STEPS env steps (nan if no episode ended there)."""
    return run.train_return(run.total_steps - RECENT_STEPS, run.total_steps)


def collapsed(recent: float, best_window: float) -> bool:
    """Whether a run's last-10k training return fell below COLLAPSE_FRACTION of its best window; never for a best
    window that is not positive (a fraction of a negative best lies above it) or a missing value."""
    return bool(best_window > 0 and recent < COLLAPSE_FRACTION * best_window)


def per_seed_table(runs: list[aggregate.RunResult]) -> pd.DataFrame:
    """One row per run, PER_SEED_COLUMNS: the values every table is computed from."""
    rows = []
    for r in runs:
        recent, windows = last_10k(r), window_returns(r)[1]
        best = float(np.nanmax(windows)) if np.isfinite(windows).any() else math.nan
        final = r.final_return if len(r.returns) else math.nan  # SAC: no evaluation
        rows.append(
            (r.algo, r.env_id, r.seed, recent, final, best, collapsed(recent, best), r.wall_time_s, r.commit, r.machine)
        )
    return pd.DataFrame(rows, columns=PER_SEED_COLUMNS)


def resample(rng: np.random.Generator, values) -> np.ndarray:
    """BOOTSTRAP_RESAMPLES resamples of values with replacement, one per row."""
    values = np.asarray(values, dtype=np.float64)
    return values[rng.integers(0, len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))]


def interval(replicates) -> tuple[float, float]:
    """The percentile interval of the bootstrap replicates; nan when a replicate is nan (an undefined statistic)."""
    low, high = np.percentile(replicates, CI_PERCENTILES)
    return float(low), float(high)


def iqm_interval(values) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the IQM over the seeds."""
    return interval(stats.trim_mean(resample(np.random.default_rng(BOOTSTRAP_SEED), values), 0.25, axis=1))


def normalised_score(mean, reference_mean, random_mean):
    """(mean - random) / (reference mean - random), elementwise: 1 at the reference's level, 0 at random play's; nan
    where the reference's mean is not above random play's (the scale has no meaning there)."""
    reference_gain = np.asarray(reference_mean, dtype=np.float64) - random_mean
    safe_gain = np.where(reference_gain > 0, reference_gain, np.nan)
    return (np.asarray(mean, dtype=np.float64) - random_mean) / safe_gain


def improvement_probabilities(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row of the resamples x (R, n) and y (R, m): P(X > Y) + P(X = Y) / 2 over the n x m pairs."""
    above = (x[:, :, None] > y[:, None, :]).mean(axis=(1, 2))
    ties = (x[:, :, None] == y[:, None, :]).mean(axis=(1, 2))
    return above + ties / 2


def verdict(low: float, high: float, seeds: int) -> str:
    """The word for a normalised-score interval [low, high] (1: the reference's level), N = seeds."""
    if math.isnan(low) or math.isnan(high):
        return "undefined"
    if low > 1:
        return "ahead"
    if high < 1:
        return "behind"
    if LEVEL_BAND[0] <= low and high <= LEVEL_BAND[1]:
        return "level"
    return f"not distinguishable with {seeds} seeds"


def compare_task(x, y, random_mean: float) -> dict:
    """Ours (x) against the reference (y) on one task: ratio of means, normalised score and probability of
    improvement, each with its interval from one set of resamples (each arm resampled on its own)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    xs, ys = resample(rng, x), resample(rng, y)
    score = float(normalised_score(x.mean(), y.mean(), random_mean))
    return {
        "seeds": len(x),
        "reference_seeds": len(y),
        "random_play": random_mean,
        "train_return_mean": float(x.mean()),
        "train_return_std": _std(x),
        "reference_mean": float(y.mean()),
        "reference_std": _std(y),
        "ratio": float(x.mean() / y.mean()),
        **_ci("ratio", xs.mean(axis=1) / ys.mean(axis=1)),
        "normalised_score": score,
        **_ci("normalised_score", normalised_score(xs.mean(axis=1), ys.mean(axis=1), random_mean)),
        "p_improvement": aggregate.probability_of_improvement(x, y),
        **_ci("p_improvement", improvement_probabilities(xs, ys)),
    }


def compare_over_tasks(tasks: list[tuple]) -> dict:
    """Over tasks given as (x, y, random mean): the mean of the per-task normalised scores, the IQM of ours' per-run
    normalised scores, the mean probability of improvement, each with its stratified-bootstrap interval (within each
    task, in order, both arms resampled on their own; every statistic recomputed on each replicate)."""
    tasks = [(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), r) for x, y, r in tasks]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    scores, run_scores, improvements = [], [], []  # per task: the replicates
    for x, y, random_mean in tasks:
        xs, ys = resample(rng, x), resample(rng, y)
        scores.append(normalised_score(xs.mean(axis=1), ys.mean(axis=1), random_mean))
        run_scores.append(normalised_score(xs, ys.mean(axis=1, keepdims=True), random_mean))
        improvements.append(improvement_probabilities(xs, ys))
    per_run = np.concatenate([normalised_score(x, y.mean(), r) for x, y, r in tasks])
    return {
        "tasks": len(tasks),
        "seeds": min(min(len(x), len(y)) for x, y, _ in tasks),
        "mean_score": float(np.mean([normalised_score(x.mean(), y.mean(), r) for x, y, r in tasks])),
        **_ci("mean_score", np.mean(scores, axis=0)),
        "iqm_score": aggregate.iqm(per_run),
        **_ci("iqm_score", stats.trim_mean(np.concatenate(run_scores, axis=1), 0.25, axis=1)),
        "mean_p_improvement": float(np.mean([aggregate.probability_of_improvement(x, y) for x, y, _ in tasks])),
        **_ci("mean_p_improvement", np.mean(improvements, axis=0)),
    }


def _ci(name: str, replicates) -> dict:
    low, high = interval(replicates)
    return {f"{name}_ci_low": low, f"{name}_ci_high": high}


def _std(values) -> float:
    """Sample std (ddof 1); nan for one value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def completeness(seen: dict[str, set], finished: set, problems: dict, arms: list[str], tasks) -> list[str]:
    """Every (arm, task, seed) among the seeds the arm has in any task ({arm: seeds} in seen) without a finished run:
    'arm/env/seedK (why)'."""
    lines = []
    for arm in arms:
        for env_id in tasks:
            for seed in sorted(seen.get(arm, set())):
                key = (arm, env_id, seed)
                if key not in finished:
                    why = problems.get(key, "missing: no run directory or record")
                    lines.append(f"{arm}/{env_id}/seed{seed} ({why})")
    return lines


def seed_gaps(seen: dict[str, set], ours: list[str], reference: str) -> list[str]:
    """The seeds an algorithm of ours and the reference do not share (the arms' designs may differ: lql's 5 seeds)."""
    lines = []
    for algo in ours:
        for this, other in ((algo, reference), (reference, algo)):
            lacking = seen.get(other, set()) - seen.get(this, set())
            if lacking:
                lines.append(f"{this} has no run of {other}'s seeds {_seed_list(lacking)}")
    return lines


def _seed_list(seeds) -> str:
    """'101-105, 107': runs of consecutive seeds joined."""
    seeds, spans = sorted(seeds), []
    for seed in seeds:
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def collapse_list(runs: list[aggregate.RunResult]) -> list[str]:
    """Each collapsed run, with its last-10k return and its best window's."""
    lines = []
    for r in runs:
        ends, windows = window_returns(r)
        if not np.isfinite(windows).any():
            continue
        best = int(np.nanargmax(windows))
        if collapsed(last_10k(r), windows[best]):
            lines.append(
                f"{r.algo}/{r.env_id}/seed{r.seed}: last 10k {aggregate._fmt(last_10k(r))} < {COLLAPSE_FRACTION:g} x its "
                f"best 5k window {aggregate._fmt(windows[best])} ({_span(ends[best] - WINDOW_STEPS, ends[best])})"
            )
    return lines


def _span(start, end) -> str:
    return f"{start / 1000:g}-{end / 1000:g}k"


def _with_ci(point, low, high, digits=2) -> str:
    return f"{aggregate._fmt(point, digits)} [{aggregate._fmt(low, digits)}, {aggregate._fmt(high, digits)}]"


def _mean_std(values) -> str:
    return aggregate._fmt(float(np.mean(values))) + aggregate._pm(_std(values))


def summary_table(per_seed: pd.DataFrame, arms: list[str], reference: str, tasks) -> list[str]:
    lines = [
        "## Per task and algorithm",
        "",
        "| algorithm | env | seeds | training return, last 10k: mean ± std | IQM [95% CI] | final eval: mean ± std "
        "| IQM [95% CI] |",
        "|-|-|-|-|-|-|-|",
    ]
    for env_id in tasks:
        for arm in arms:
            group = per_seed[(per_seed.algo == arm) & (per_seed.env == env_id)]
            if group.empty:
                continue
            recent, final = group.train_last10k.to_numpy(), group.final_eval.to_numpy()
            cells = [_mean_std(recent), _with_ci(aggregate.iqm(recent), *iqm_interval(recent), digits=1)]
            if arm == reference:
                cells += ["no evaluation", ""]
            else:
                cells += [_mean_std(final), _with_ci(aggregate.iqm(final), *iqm_interval(final), digits=1)]
            lines.append(f"| {arm} | {env_id} | {len(group)} | " + " | ".join(cells) + " |")
    return lines


def comparison_table(rows: list[dict], reference: str) -> list[str]:
    lines = [
        f"## Against {reference}, per task: training return, last 10k env steps",
        "",
        f"| algorithm | env | seeds (ours, {reference}) | random play | ours: mean ± std | {reference}: mean ± std | "
        f"ratio [95% CI] | normalised score [95% CI] | P(ours > {reference}) [95% CI] | verdict |",
        "|-|-|-|-|-|-|-|-|-|-|",
    ]
    for c in rows:
        lines.append(
            f"| {c['algorithm']} | {c['env']} | {c['seeds']}, {c['reference_seeds']} | {aggregate._fmt(c['random_play'])} | "
            f"{aggregate._fmt(c['train_return_mean'])}{aggregate._pm(c['train_return_std'])} | "
            f"{aggregate._fmt(c['reference_mean'])}{aggregate._pm(c['reference_std'])} | "
            f"{_with_ci(c['ratio'], c['ratio_ci_low'], c['ratio_ci_high'])} | "
            f"{_with_ci(c['normalised_score'], c['normalised_score_ci_low'], c['normalised_score_ci_high'])} | "
            f"{_with_ci(c['p_improvement'], c['p_improvement_ci_low'], c['p_improvement_ci_high'])} | {c['verdict']} |"
        )
    return lines


def over_tasks_table(overall: dict[str, dict], reference: str, n_tasks: int) -> list[str]:
    lines = [
        "## Over the tasks",
        "",
        "| algorithm | tasks | fewest seeds | mean normalised score [95% CI] | verdict | IQM normalised score [95% CI] "
        f"| verdict | mean P(ours > {reference}) [95% CI] |",
        "|-|-|-|-|-|-|-|-|",
    ]
    for algo, o in overall.items():
        lines.append(
            f"| {algo} | {o['tasks']} of {n_tasks} | {o['seeds']} | "
            f"{_with_ci(o['mean_score'], o['mean_score_ci_low'], o['mean_score_ci_high'])} | {o['mean_verdict']} | "
            f"{_with_ci(o['iqm_score'], o['iqm_score_ci_low'], o['iqm_score_ci_high'])} | {o['iqm_verdict']} | "
            f"{_with_ci(o['mean_p_improvement'], o['mean_p_improvement_ci_low'], o['mean_p_improvement_ci_high'])} |"
        )
    return lines


def verdict_sentences(rows: list[dict], overall: dict[str, dict], reference: str, n_tasks: int) -> list[str]:
    """One sentence per verdict, its word from `verdict`: over the tasks first (the primary endpoint), then per task."""
    lines = []
    for algo, o in overall.items():
        where = f"over {o['tasks']} of the {n_tasks} tasks"
        lines += [
            f"- {algo} against {reference} {where}, mean normalised score (primary): **{o['mean_verdict']}**, "
            f"{_with_ci(o['mean_score'], o['mean_score_ci_low'], o['mean_score_ci_high'])}.",
            f"- {algo} against {reference} {where}, IQM of per-run normalised scores: **{o['iqm_verdict']}**, "
            f"{_with_ci(o['iqm_score'], o['iqm_score_ci_low'], o['iqm_score_ci_high'])}.",
        ]
    for c in rows:
        lines.append(
            f"- {c['algorithm']} against {reference} on {c['env']}: **{c['verdict']}**, normalised score "
            f"{_with_ci(c['normalised_score'], c['normalised_score_ci_low'], c['normalised_score_ci_high'])} "
            f"({c['seeds']} and {c['reference_seeds']} seeds)."
        )
    return lines


def wall_clock_table(per_seed: pd.DataFrame, arms: list[str], tasks) -> list[str]:
    lines = [
        "## Wall clock per run",
        "",
        "| algorithm | env | seeds | median | min-max | machines |",
        "|-|-|-|-|-|-|",
    ]
    for env_id in tasks:
        for arm in arms:
            group = per_seed[(per_seed.algo == arm) & (per_seed.env == env_id)]
            if group.empty:
                continue
            minutes = group.wall_time_s / 60
            lines.append(
                f"| {arm} | {env_id} | {len(group)} | {minutes.median():.1f} min | "
                f"{minutes.min():.1f}-{minutes.max():.1f} min | {aggregate.run_counts(group.machine)} |"
            )
    return lines


def definitions(reference: str) -> list[str]:
    return [
        "## Definitions",
        "",
        "- Training return, last 10k: a run's mean `charts/episodic_return` over the training episodes that ended in "
        f"its last {RECENT_STEPS:,} env steps ({_span(TOTAL_STEPS - RECENT_STEPS, TOTAL_STEPS)} of a "
        f"{TOTAL_STEPS:,}-step run); {reference}'s episodes are counted at CleanRL's global_step + {SAC_STEP_SHIFT}, "
        "the env step they ended at. Mean ± sample std (ddof 1) over seeds.",
        f"- Final eval: a run of ours' last `eval/episodic_return`; {reference} has no evaluation (CleanRL's "
        "sac_continuous_action.py does none): it is compared on the training return only.",
        "- IQM: the interquartile mean over seeds, scipy.stats.trim_mean(x, 0.25) as rliable (floor(n/4) cut from each end).",
        f"- [95% CI]: percentile bootstrap ({CI_PERCENTILES[0]:g}th and {CI_PERCENTILES[1]:g}th percentiles), "
        f"{BOOTSTRAP_RESAMPLES:,} resamples, each interval from np.random.default_rng({BOOTSTRAP_SEED}); the seeds of "
        "each arm resampled with replacement on their own; a task's three statistics share one set of resamples.",
        f"- Random play: the mean undiscounted return of {RANDOM_EPISODES} episodes of uniform random actions (episode i: "
        f"env.reset(seed=i), env.action_space.seed(i)), gymnasium, cached in {RANDOM_PLAY_CSV}.",
        f"- Ratio: mean(ours) / mean({reference}).",
        f"- Normalised score: (mean(ours) - random play) / (mean({reference}) - random play): 1 is {reference}'s level, "
        f"0 random play's; n/a where {reference}'s mean (in the point estimate or any resample) is not above random "
        "play.",
        f"- P(ours > {reference}): over every pair of a seed of ours and one of {reference}'s, the share where ours is "
        "higher, ties counted half (rliable's probability of improvement; 0.5: neither ahead).",
        "- Over the tasks, the tasks where both arms have runs: mean normalised score (the primary endpoint), the mean "
        "of the per-task normalised scores; IQM normalised score, the IQM over all of ours' runs of (run's return - "
        f"random play) / (mean({reference}) - random play) of its task; mean P(ours > {reference}), the mean over tasks. "
        "Intervals: stratified bootstrap, each task's seeds of each arm resampled on their own and every statistic "
        "recomputed (the normaliser too). Fewest seeds: the smallest seed count of either arm over those tasks.",
        f"- Verdict, on a normalised-score interval [low, high]: ahead if low > 1; behind if high < 1; level if it lies "
        f"within [{LEVEL_BAND[0]:g}, {LEVEL_BAND[1]:g}]; else not distinguishable with N seeds (N: the smaller seed count "
        "of the two arms; over the tasks, the fewest); undefined where the interval is n/a.",
        f"- Collapse: last-10k training return below {COLLAPSE_FRACTION:g} x the run's best mean training return over "
        f"the windows ({WINDOWS_FROM // 1000}-{(WINDOWS_FROM + WINDOW_STEPS) // 1000}k, ..., up to its end] of "
        f"{WINDOW_STEPS:,} env steps (runs whose best window is not positive are not flagged).",
        "- Wall clock: a run's first to last logged scalar (aggregate.active_time), in minutes.",
        "- Written by benchmarks/confirm.py (`./benchmark.sh confirm`): per_seed.csv holds each run's values, "
        "results.csv the per-task comparison rows.",
    ]


def plot(runs: list[aggregate.RunResult], tasks, path: Path) -> None:
    """Training return per WINDOW_STEPS window, mean ± std over seeds, one panel per task, one line per arm."""
    curves = {}
    for (env_id, algo), (ends, mean, std, _) in aggregate.training_windows(runs, WINDOW_STEPS).items():
        seeds = sum(r.env_id == env_id and r.algo == algo for r in runs)
        curves.setdefault(env_id, {})[algo] = (ends, mean, std, seeds)
    curves = {env_id: curves[env_id] for env_id in tasks if env_id in curves}
    aggregate.plot_curves(curves, path, ylabel=f"training return per {WINDOW_STEPS:,} steps\n(mean ± std over seeds)")


def confirm(ours: Path, sac: Path | None, out: Path, reference: str = REFERENCE_ALGO, tasks=TASKS) -> list[dict]:
    """Writes results.md, results.csv, per_seed.csv, training_curves.png, random_play.csv and sac_runs.csv into out;
    returns the per-task comparison rows."""
    out.mkdir(parents=True, exist_ok=True)
    our_runs, problems = find_our_runs(ours, tasks)
    sac_runs, sac_problems, notes = find_sac_runs(sac, out, tasks, reference)
    problems.update(sac_problems)
    if not our_runs or not sac_runs:
        arm = f"of ours under {ours}" if not our_runs else f"of {reference} (--sac, {out / SAC_RUNS_CSV})"
        raise SystemExit(f"error: no finished run {arm} for the tasks {', '.join(tasks)}")
    runs = our_runs + sac_runs
    ours_algos = sorted({r.algo for r in our_runs} | {algo for algo, _, _ in problems if algo != reference})
    arms = [*ours_algos, reference]
    per_seed = per_seed_table(runs)
    no_recent = per_seed.train_last10k.isna()  # no episode ended in the last 10k: nothing to compare
    for row in per_seed[no_recent].itertuples():
        problems[(row.algo, row.env, row.seed)] = "finished, but no training episode ended in its last 10k env steps"
    usable = per_seed[~no_recent]
    random = random_play_references(tasks, out)

    rows, over = [], {}  # over: {algo: [(x, y, random)]} of the tasks where both arms have runs
    for algo in ours_algos:
        for env_id in tasks:
            x = usable[(usable.algo == algo) & (usable.env == env_id)].train_last10k.to_numpy()
            y = usable[(usable.algo == reference) & (usable.env == env_id)].train_last10k.to_numpy()
            if len(x) and len(y):
                row = {"algorithm": algo, "reference": reference, "env": env_id, **compare_task(x, y, random[env_id])}
                row["verdict"] = verdict(row["normalised_score_ci_low"], row["normalised_score_ci_high"], min(len(x), len(y)))
                rows.append(row)
                over.setdefault(algo, []).append((x, y, random[env_id]))
    overall = {}
    for algo, task_values in over.items():
        o = compare_over_tasks(task_values)
        o["mean_verdict"] = verdict(o["mean_score_ci_low"], o["mean_score_ci_high"], o["seeds"])
        o["iqm_verdict"] = verdict(o["iqm_score_ci_low"], o["iqm_score_ci_high"], o["seeds"])
        overall[algo] = o

    seen = {}  # each arm's seeds in any task, finished or not
    for algo, _, seed in {(r.algo, r.env_id, r.seed) for r in runs} | problems.keys():
        seen.setdefault(algo, set()).add(seed)
    finished = {(row.algo, row.env, row.seed) for row in usable.itertuples()}
    missing = completeness(seen, finished, problems, arms, tasks)
    gaps = seed_gaps(seen, ours_algos, reference)
    other_length = [
        f"{r.algo}/{r.env_id}/seed{r.seed}: {r.total_steps:,} env steps, not {TOTAL_STEPS:,}"
        for r in runs
        if r.total_steps != TOTAL_STEPS
    ]
    collapses = collapse_list(runs)
    source = f"{sac} and {out / SAC_RUNS_CSV}" if sac is not None else str(out / SAC_RUNS_CSV)
    listed = lambda items: [f"- {item}" for item in items] or ["- none"]
    lines = [
        f"# Confirmatory comparison against {reference}",
        "",
        f"Ours: {ours}; {reference}: {source}; tasks: {', '.join(tasks)}. Every term is defined at the end.",
        "",
        "## Verdicts",
        "",
        *verdict_sentences(rows, overall, reference, len(tasks)),
        "",
        *summary_table(per_seed[~no_recent], arms, reference, tasks),
        "",
        *comparison_table(rows, reference),
        "",
        f"- {reference} has no evaluation (CleanRL's sac_continuous_action.py does none): the comparison is on the "
        "training return only; the final evaluation above is ours alone.",
        "",
        *over_tasks_table(overall, reference, len(tasks)),
        "",
        "## Collapse check",
        "",
        *listed(collapses),
        "",
        *wall_clock_table(per_seed, arms, tasks),
        "",
        "## Missing or unfinished",
        "",
        *listed(missing),
        *(["", "Seeds not shared:", "", *listed(gaps)] if gaps else []),
        *(["", f"Runs kept in {SAC_RUNS_CSV} in place of their directories:", "", *listed(notes)] if notes else []),
        *(["", "Runs of another length than the protocol's:", "", *listed(other_length)] if other_length else []),
        "",
        "## Provenance",
        "",
        *[
            f"- {arm}: commits {aggregate.run_counts(per_seed[per_seed.algo == arm].commit)}; machines "
            f"{aggregate.run_counts(per_seed[per_seed.algo == arm].machine)} (per run in per_seed.csv)."
            for arm in arms
            if (per_seed.algo == arm).any()
        ],
        "",
        *definitions(reference),
    ]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    pd.DataFrame(rows, columns=COMPARISON_COLUMNS).to_csv(out / "results.csv", index=False)
    per_seed.to_csv(out / "per_seed.csv", index=False)
    plot(runs, tasks, out / "training_curves.png")
    print(text)
    written = ", ".join(str(out / name) for name in ("results.md", "results.csv", "per_seed.csv", "training_curves.png"))
    print(f"wrote {written}, {out / RANDOM_PLAY_CSV}, {out / SAC_RUNS_CSV}")
    return rows


def main(argv=None) -> int:
    parser = aggregate._Parser(description="The pre-registered comparison of our runs with CleanRL SAC's (see the docstring).")
    parser.add_argument("ours", type=Path, help="a `./benchmark.sh learn` output directory: {algo}/{env}/seed{k}/")
    parser.add_argument(
        "--sac",
        type=Path,
        help=f"cleanrl_sac.sh's run directory, {{env}}/seed{{k}}/; without it, the runs kept in OUT/{SAC_RUNS_CSV}",
    )
    parser.add_argument("--out", type=Path, help="where to write (default: OURS/confirm)")
    parser.add_argument("--reference-algo", default=REFERENCE_ALGO, help="the name of SAC's arm in the tables")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated environments (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.ours.is_dir():
        raise SystemExit(f"error: {args.ours} is not a directory")
    if args.sac is not None and not args.sac.is_dir():
        raise SystemExit(f"error: --sac {args.sac} is not a directory")
    tasks = tuple(t for t in args.tasks.split(",") if t)
    if not tasks:
        raise SystemExit("error: --tasks names no environment")
    confirm(args.ours, args.sac, args.out or args.ours / "confirm", args.reference_algo, tasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
