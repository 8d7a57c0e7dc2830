"""The confirmatory analysis (benchmarks/confirm.py) on synthetic runs with known returns: the verdict rule, the
statistics and their bootstrap intervals, the collapse check, CleanRL SAC's runs and their record, the completeness
report and the whole command."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from torch.utils.tensorboard import SummaryWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import aggregate  # noqa: E402
import confirm  # noqa: E402

EPISODE_ENDS = np.arange(1000, confirm.TOTAL_STEPS + 1, 1000)  # one training episode ends every 1,000 env steps


def steady(value):
    """Episodes of a run whose every training episode returns value."""
    return [(int(end), float(value)) for end in EPISODE_ENDS]


def write_our_run(root, algo, env_id, seed, episodes, final_eval=0.0, done=True, total_steps=confirm.TOTAL_STEPS):
    """A `./benchmark.sh learn` run directory: training episodes (env step it ended at, return), one evaluation at the
    end; wall time 60 s."""
    run_dir = root / algo / env_id / f"seed{seed}"
    with SummaryWriter(str(run_dir / "runs" / f"{env_id}__{algo}__{seed}__1")) as writer:
        for step, value in episodes:
            writer.add_scalar("charts/episodic_return", value, step, walltime=1000.0)
        writer.add_scalar("eval/episodic_return", final_eval, total_steps, walltime=1060.0)
    if done:
        (run_dir / "DONE").write_text('{"exit_status": 0}\n')
    return run_dir


def write_sac_run(root, env_id, seed, episodes, done=True, run_info=None):
    """A cleanrl_sac.sh run directory: each episode (env step it ended at, return) logged as CleanRL does, at
    global_step = that step - 1; wall time 120 s."""
    run_dir = root / env_id / f"seed{seed}"
    with SummaryWriter(str(run_dir / "runs" / f"{env_id}__sac_continuous_action__{seed}__1")) as writer:
        for i, (end, value) in enumerate(episodes):
            writer.add_scalar("charts/episodic_return", value, end - 1, walltime=1000.0 + 120.0 * i / (len(episodes) - 1))
    if run_info is not None:
        (run_dir / "run_info.jsonl").write_text(json.dumps(run_info) + "\n")
    if done:
        (run_dir / "DONE").touch()
    return run_dir


def a_run(episodes, algo="nclql", env_id="Hopper-v4", seed=1):
    ends, values = zip(*episodes, strict=True)
    return aggregate.RunResult(
        algo=algo,
        env_id=env_id,
        seed=seed,
        steps=np.array([confirm.TOTAL_STEPS]),
        returns=np.array([0.0]),
        total_steps=confirm.TOTAL_STEPS,
        wall_time_s=1.0,
        train_steps=np.array(ends),
        train_returns=np.array(values),
        diagnostics={},
    )


def write_random_play(out, means):
    """A random_play.csv as confirm.py writes it, so that fake environments need no gymnasium."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [(env_id, confirm.RANDOM_EPISODES, mean, 1.0) for env_id, mean in means.items()]
    pd.DataFrame(rows, columns=confirm.RANDOM_PLAY_COLUMNS).to_csv(out / confirm.RANDOM_PLAY_CSV, index=False)


def test_the_docstring_states_every_constant_as_the_code_has_it():
    """The docstring is what gets pre-registered: its list of constants must be the code's values."""

    def shown(value):
        if isinstance(value, tuple):
            return ", ".join(shown(v) for v in value)
        return f"{value:,}" if isinstance(value, int) else f"{value:g}" if isinstance(value, float) else value

    names = "TASKS REFERENCE_ALGO TOTAL_STEPS SAC_STEP_SHIFT RECENT_STEPS WINDOW_STEPS WINDOWS_FROM COLLAPSE_FRACTION"
    names += " RANDOM_EPISODES BOOTSTRAP_RESAMPLES BOOTSTRAP_SEED CI_PERCENTILES LEVEL_BAND"
    for name in names.split():
        assert f"\n- {name} = {shown(getattr(confirm, name))}\n" in confirm.__doc__, name


def test_verdict_takes_each_branch_of_the_rule():
    assert confirm.verdict(1.01, 3.0, 10) == "ahead"
    assert confirm.verdict(0.2, 0.99, 10) == "behind"
    assert confirm.verdict(0.8, 1.25, 10) == "level"  # the band's ends belong to it
    assert confirm.verdict(0.95, 1.1, 10) == "level"
    assert confirm.verdict(1.0, 1.3, 7) == "not distinguishable with 7 seeds"  # low = 1 is not ahead; 1.3 leaves the band
    assert confirm.verdict(0.79, 1.1, 5) == "not distinguishable with 5 seeds"
    assert confirm.verdict(math.nan, math.nan, 5) == "undefined"


def test_normalised_score_ratio_and_improvement_on_hand_computed_numbers():
    assert confirm.normalised_score(150.0, 110.0, 10.0) == pytest.approx(1.4)  # (150 - 10) / (110 - 10)
    assert confirm.normalised_score(-50.0, 150.0, -250.0) == pytest.approx(0.5)  # a negative random play
    assert np.isnan(confirm.normalised_score(150.0, 10.0, 10.0))  # the reference no better than random: no scale
    # ours 300 and 500, SAC 200 twice, random 100: ratio 400 / 200, score (400 - 100) / (200 - 100), every pair ahead
    c = confirm.compare_task([300.0, 500.0], [200.0, 200.0], 100.0)
    assert (c["ratio"], c["normalised_score"], c["p_improvement"]) == (2.0, 3.0, 1.0)
    assert 1.5 <= c["ratio_ci_low"] < 2.0 < c["ratio_ci_high"] <= 2.5  # resampled means lie between 300 and 500
    assert 2.0 <= c["normalised_score_ci_low"] < 3.0 < c["normalised_score_ci_high"] <= 4.0
    assert (c["p_improvement_ci_low"], c["p_improvement_ci_high"]) == (1.0, 1.0)
    assert (c["train_return_mean"], c["reference_mean"], c["reference_std"]) == (400.0, 200.0, 0.0)
    # the vectorised probability of improvement is aggregate's (rliable's) on every resample, ties counted half
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 4, (50, 6)).astype(float), rng.integers(0, 4, (50, 9)).astype(float)
    expected = [aggregate.probability_of_improvement(a, b) for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(confirm.improvement_probabilities(x, y), expected)


def test_over_the_tasks_the_scores_are_the_mean_of_the_tasks_and_the_iqm_of_the_runs():
    tasks = [([300.0, 500.0], [200.0, 200.0], 100.0), ([10.0, 20.0, 30.0, 40.0], [20.0, 40.0], 0.0)]
    o = confirm.compare_over_tasks(tasks)
    assert o["mean_score"] == pytest.approx((3.0 + 25.0 / 30.0) / 2)
    # per-run scores: (300 - 100) / 100, (500 - 100) / 100, then 10/30, 20/30, 30/30, 40/30: IQM cuts one from each end
    assert o["iqm_score"] == pytest.approx(np.mean([2.0, 4.0 / 3.0, 1.0, 2.0 / 3.0]))
    assert o["mean_p_improvement"] == pytest.approx((1.0 + aggregate.probability_of_improvement(*tasks[1][:2])) / 2)
    assert (o["tasks"], o["seeds"]) == (2, 2)
    # SAC's mean, the normaliser, is resampled too: ours alike on every seed still leaves an interval around 1
    o = confirm.compare_over_tasks([([500.0] * 4, [100.0, 900.0, 300.0, 700.0], 0.0)])
    assert o["mean_score"] == o["iqm_score"] == 1.0
    assert o["mean_score_ci_low"] < 0.8 and o["iqm_score_ci_low"] < 0.8 and 1.25 < o["iqm_score_ci_high"]


def seeds_of(rng, n, mean, spread):
    return rng.normal(mean, spread, n)


def test_bootstrap_intervals_contain_the_estimate_shrink_with_more_seeds_and_are_reproducible():
    rng = np.random.default_rng(7)
    widths = {}
    for n in (5, 40):
        x, y = seeds_of(rng, n, 1200.0, 300.0), seeds_of(rng, n, 1000.0, 300.0)
        task = confirm.compare_task(x, y, 100.0)
        assert task == confirm.compare_task(x, y, 100.0)  # one RNG seed: same data, same interval
        over = confirm.compare_over_tasks([(x, y, 100.0), (y, x, 0.0)])
        assert over == confirm.compare_over_tasks([(x, y, 100.0), (y, x, 0.0)])
        low, high = confirm.iqm_interval(x)
        assert low <= aggregate.iqm(x) <= high and (low, high) == confirm.iqm_interval(x)
        for stats, names in ((task, ("ratio", "normalised_score", "p_improvement")), (over, ("mean_score", "iqm_score"))):
            for name in names:
                assert stats[f"{name}_ci_low"] <= stats[name] <= stats[f"{name}_ci_high"], (n, name)
                widths.setdefault(name, []).append(stats[f"{name}_ci_high"] - stats[f"{name}_ci_low"])
        widths.setdefault("iqm", []).append(high - low)
    for name, (few, many) in widths.items():
        assert many < few / 1.5, name  # 8 times the seeds: about a third of the width


def test_collapse_flags_a_run_that_fell_below_half_its_best_window_and_not_a_steady_one():
    # best window 20-25k at 1,000, then 300 over the last 10k
    falling = a_run([(end, 1000.0 if 20000 < end <= 25000 else 300.0 if end > 40000 else 600.0) for end in EPISODE_ENDS])
    ends, windows = confirm.window_returns(falling)
    assert list(ends) == list(range(10000, 50001, 5000))  # (5-10k], ..., (45-50k]: the warm-up is no window
    assert windows[np.argmax(windows)] == 1000.0 and confirm.last_10k(falling) == 300.0
    (line,) = confirm.collapse_list([falling])
    assert line.startswith("nclql/Hopper-v4/seed1:") and "(20-25k)" in line
    steady_run = a_run(steady(1000.0))
    slight_dip = a_run([(end, 1000.0 if end <= 40000 else 501.0) for end in EPISODE_ENDS])  # above half: no collapse
    negative = a_run([(end, -100.0 if end <= 40000 else -900.0) for end in EPISODE_ENDS])  # a negative best: never
    assert confirm.collapse_list([steady_run, slight_dip, negative]) == []
    table = confirm.per_seed_table([falling, steady_run])
    assert list(table.collapsed) == [True, False] and list(table.best_5k_window) == [1000.0, 1000.0]
    # the warm-up's episodes (before 5k) are in no window, however high
    warm_up = a_run([(end, 5000.0 if end <= 5000 else 400.0) for end in EPISODE_ENDS])
    assert confirm.collapse_list([warm_up]) == []


def test_sac_runs_are_read_at_global_step_plus_one_need_done_and_are_kept_for_a_later_session(tmp_path):
    sac, out = tmp_path / "sac", tmp_path / "out"
    out.mkdir()
    # logged at 39999 (ended at 40,000: outside the last 10k), 40000 (ended at 40,001: inside) and 49999 (50,000)
    info = {"commit": "cleanrl 1.2.0 sac_continuous_action.py (stack)", "machine": "Some CPU", "started": "now"}
    write_sac_run(sac, "Hopper-v4", 1, [(20000, 5.0), (40000, 1000.0), (40001, 10.0), (50000, 20.0)], run_info=info)
    write_sac_run(sac, "Hopper-v4", 2, steady(1.0), done=False)
    runs, problems, notes = confirm.find_sac_runs(sac, out, ["Hopper-v4"], "cleanrl-sac")
    (run,) = runs
    assert list(run.train_steps) == [20000, 40000, 40001, 50000] and run.total_steps == 50000
    assert confirm.last_10k(run) == 15.0  # without the shift: 20.0 (40,000 is outside the window (40k, 50k])
    assert (run.commit, run.machine) == (info["commit"], "Some CPU") and run.wall_time_s == pytest.approx(120.0)
    assert problems == {("cleanrl-sac", "Hopper-v4", 2): "unfinished: no DONE"} and notes == []
    # without the directory, the record stands in: the same run
    (kept,), problems, _ = confirm.find_sac_runs(None, out, ["Hopper-v4"], "cleanrl-sac")
    assert problems == {} and len(kept.steps) == 0 and math.isnan(confirm.per_seed_table([kept]).final_eval[0])
    for name in ("train_steps", "train_returns"):
        np.testing.assert_array_equal(getattr(kept, name), getattr(run, name))
    assert (kept.total_steps, kept.commit, kept.machine) == (50000, run.commit, run.machine)
    # a finished directory replaces its record; an unfinished one (a rerun under way) leaves the record in use
    write_sac_run(tmp_path / "rerun", "Hopper-v4", 1, steady(700.0))
    (rerun,), _, _ = confirm.find_sac_runs(tmp_path / "rerun", out, ["Hopper-v4"], "cleanrl-sac")
    assert confirm.last_10k(rerun) == 700.0
    write_sac_run(tmp_path / "going", "Hopper-v4", 1, steady(3.0), done=False)
    (used,), problems, (note,) = confirm.find_sac_runs(tmp_path / "going", out, ["Hopper-v4"], "cleanrl-sac")
    assert confirm.last_10k(used) == 700.0 and problems == {} and "sac_runs.csv is used" in note


def test_random_play_is_finite_and_computed_once(tmp_path):
    mean, std = confirm.random_play("InvertedPendulum-v4", 2)
    assert math.isfinite(mean) and math.isfinite(std) and (mean, std) == confirm.random_play("InvertedPendulum-v4", 2)
    assert confirm.random_play_references(["InvertedPendulum-v4"], tmp_path, episodes=2) == {"InvertedPendulum-v4": mean}
    cached = pd.read_csv(tmp_path / confirm.RANDOM_PLAY_CSV)
    assert list(cached.columns) == confirm.RANDOM_PLAY_COLUMNS and list(cached.episodes) == [2]
    cached["mean"] = 12345.0  # a value random play cannot give: only the cache can
    cached.to_csv(tmp_path / confirm.RANDOM_PLAY_CSV, index=False)
    assert confirm.random_play_references(["InvertedPendulum-v4"], tmp_path, episodes=2) == {"InvertedPendulum-v4": 12345.0}


# last-10k training returns per task: ours (nclql) and SAC's, random play 0; one task per verdict
TASKS = {
    "TaskAhead-v0": ([2000.0, 2100.0, 1900.0, 2050.0], [1000.0, 1050.0, 950.0, 1000.0]),
    "TaskBehind-v0": ([500.0, 520.0, 480.0, 510.0], [1000.0, 1050.0, 950.0, 1000.0]),
    "TaskLevel-v0": ([1000.0, 1010.0, 990.0, 1005.0], [1000.0, 995.0, 1005.0, 1000.0]),
    "TaskWide-v0": ([100.0, 1900.0, 500.0, 1500.0], [1000.0, 200.0, 1800.0, 1000.0]),
}
SEEDS = [101, 102, 103, 104]


def write_experiment(tmp_path):
    ours, sac = tmp_path / "ours", tmp_path / "sac"
    for env_id, (mine, theirs) in TASKS.items():
        for seed, a, b in zip(SEEDS, mine, theirs, strict=True):
            write_our_run(ours, "nclql", env_id, seed, steady(a), final_eval=a + 1.0)
            write_sac_run(sac, env_id, seed, steady(b))
    write_random_play(tmp_path / "out", dict.fromkeys(TASKS, 0.0))
    return ours, sac, tmp_path / "out"


def test_the_command_writes_every_table_with_one_verdict_per_task_and_over_the_tasks(tmp_path):
    ours, sac, out = write_experiment(tmp_path)
    argv = [str(ours), "--sac", str(sac), "--out", str(out), "--tasks", ",".join(TASKS)]
    assert confirm.main(argv) == 0
    text = (out / "results.md").read_text()
    rows = pd.read_csv(out / "results.csv")
    assert list(rows.columns) == confirm.COMPARISON_COLUMNS and list(rows.env) == list(TASKS)
    words = ["ahead", "behind", "level", "not distinguishable with 4 seeds"]
    assert list(rows.verdict) == words
    for env_id, word in zip(TASKS, words, strict=True):
        assert f"- nclql against cleanrl-sac on {env_id}: **{word}**" in text
    assert "over 4 of the 4 tasks, mean normalised score (primary): **" in text
    for env_id, (mine, theirs) in TASKS.items():
        row = rows[rows.env == env_id].iloc[0]
        assert row.normalised_score == pytest.approx(np.mean(mine) / np.mean(theirs))  # random play 0: the ratio
        assert row.verdict == confirm.verdict(row.normalised_score_ci_low, row.normalised_score_ci_high, 4)
    per_seed = pd.read_csv(out / "per_seed.csv")
    assert list(per_seed.columns) == confirm.PER_SEED_COLUMNS and len(per_seed) == 2 * len(TASKS) * len(SEEDS)
    sac_rows = per_seed[per_seed.algo == "cleanrl-sac"]
    assert sac_rows.final_eval.isna().all() and not per_seed.collapsed.any()
    assert list(per_seed[per_seed.algo == "nclql"].final_eval) == [a + 1.0 for mine, _ in TASKS.values() for a in mine]
    assert "cleanrl-sac has no evaluation" in text and "## Missing or unfinished\n\n- none" in text
    assert (out / "training_curves.png").stat().st_size > 0 and (out / confirm.SAC_RUNS_CSV).exists()
    assert "## Definitions" in text and "## Collapse check\n\n- none" in text and "2.0 min" in text  # SAC's 120 s


def test_missing_unfinished_and_unshared_seeds_are_listed_by_name(tmp_path):
    ours, sac, out = tmp_path / "ours", tmp_path / "sac", tmp_path / "out"
    write_random_play(out, {"TaskA-v0": 0.0, "TaskB-v0": 0.0})
    for seed in (1, 2):
        write_our_run(ours, "nclql", "TaskA-v0", seed, steady(900.0))
        write_sac_run(sac, "TaskA-v0", seed, steady(1000.0))
    write_our_run(ours, "nclql", "TaskB-v0", 1, steady(900.0))
    write_our_run(ours, "nclql", "TaskA-v0", 3, steady(900.0), done=False)
    write_our_run(ours, "lql", "TaskA-v0", 1, [(end, 1000.0 if end <= 20000 else 100.0) for end in EPISODE_ENDS])
    write_our_run(ours, "lql", "TaskA-v0", 2, [(e, v) for e, v in steady(100.0) if e <= 40000], total_steps=40000)
    write_sac_run(sac, "TaskB-v0", 2, steady(1000.0), done=False)
    confirm.main([str(ours), "--sac", str(sac), "--out", str(out), "--tasks", "TaskA-v0,TaskB-v0"])
    text = (out / "results.md").read_text()
    missing = text.split("## Missing or unfinished")[1].split("## Provenance")[0]
    for line in (
        "- nclql/TaskA-v0/seed3 (unfinished: no DONE, logged up to env step 50,000)",
        "- nclql/TaskB-v0/seed2 (missing: no run directory or record)",
        "- nclql/TaskB-v0/seed3 (missing: no run directory or record)",
        "- lql/TaskB-v0/seed1 (missing: no run directory or record)",
        "- cleanrl-sac/TaskB-v0/seed1 (missing: no run directory or record)",
        "- cleanrl-sac/TaskB-v0/seed2 (unfinished: no DONE)",
        "- cleanrl-sac has no run of nclql's seeds 3",
        "- lql/TaskA-v0/seed2: 40,000 env steps, not 50,000",
    ):
        assert line in missing, line
    assert "- lql/TaskA-v0/seed1: last 10k 100.0 < 0.5 x its best 5k window 1,000.0 (5-10k)" in text
    assert "nclql against cleanrl-sac on TaskB-v0" not in text  # no SAC run there: no comparison
    assert "over 1 of the 2 tasks" in text


def test_benchmark_sh_dispatches_confirm_and_refuses_a_missing_directory_in_one_line(tmp_path):
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "benchmark.sh"), "confirm", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert proc.returncode != 0 and proc.stderr == f"error: {tmp_path / 'nope'} is not a directory\n"
