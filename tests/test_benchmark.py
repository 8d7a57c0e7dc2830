"""The learning benchmark (benchmarks/learning.py, benchmarks/aggregate.py) without any training: synthetic event files
with known numbers for the table and the plot, and a stand-in script for the runner and the Slurm job array."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import tiny_run_args
from torch.utils.tensorboard import SummaryWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import aggregate  # noqa: E402
import learning  # noqa: E402

# Critic ensembles by hand (two critics, 3 x 256 mish): LQL per critic (obs + act) * 256 + 256 (first layer),
# 2 * (256 * 256 + 256) (hidden), 256 + 1 (out); NC-LQL adds the level MLP 16 * 32 + 32 + 32 * 16 + 16 and the level's
# 16 * 256 share of the first layer. InvertedPendulum-v4: obs 4, act 1; Hopper-v4: obs 11, act 3.
PARAMS = {
    ("lql", "InvertedPendulum-v4"): 2 * (5 * 256 + 256 + 2 * (256 * 256 + 256) + 257),
    ("nclql", "InvertedPendulum-v4"): 2 * (5 * 256 + 256 + 2 * (256 * 256 + 256) + 257 + 544 + 528 + 16 * 256),
    ("lql", "Hopper-v4"): 2 * (14 * 256 + 256 + 2 * (256 * 256 + 256) + 257),
    ("nclql", "Hopper-v4"): 2 * (14 * 256 + 256 + 2 * (256 * 256 + 256) + 257 + 544 + 528 + 16 * 256),
}
# final evaluation return of seeds 1, 2, 3; the periodic evaluations are at steps 2500 (FIRST) and 5000
FINALS = {
    ("lql", "InvertedPendulum-v4"): [100.0, 200.0, 600.0],
    ("nclql", "InvertedPendulum-v4"): [1000.0, 1000.0, 1000.0],
    ("lql", "Hopper-v4"): [300.0, 500.0, 400.0],
    ("nclql", "Hopper-v4"): [50.0, 250.0, 900.0],
}
FIRST = [10.0, 20.0, 30.0]


def write_run(out, algo, env_id, seed, evals, wall_time, done=True, total_steps=5000, tuned_w=()):
    """A run directory as the runner leaves it: runs/{name}/events..., DONE. The first scalar is logged at wall time
    1000 and the last at 1000 + wall_time; evals and tuned_w (an --autotune-w run's losses/w) are (step, value) pairs
    in order."""
    run_dir = out / algo / env_id / f"seed{seed}"
    writer = SummaryWriter(str(run_dir / "runs" / f"{env_id}__{algo}__{seed}__1"))
    writer.add_scalar("charts/episodic_return", 12.0, 20, walltime=1000.0)
    for step, value in tuned_w:
        writer.add_scalar("losses/w", value, step, walltime=1000.5)
    for i, (step, value) in enumerate(evals):
        writer.add_scalar("eval/episodic_return", value, step, walltime=1000.0 + i + 1)
    writer.add_scalar("charts/SPS", 7.0, total_steps, walltime=1000.0 + wall_time)
    writer.close()
    if done:
        (run_dir / "DONE").write_text('{"exit_status": 0}\n')
    return run_dir


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """2 algorithms x 2 envs x 3 seeds with known returns and wall times 100, 200, 300 s; plus an unfinished run and
    a finished one that logged no evaluation (both must be left out). Aggregated once for the tests below."""
    out = tmp_path_factory.mktemp("bench")
    for (algo, env_id), finals in FINALS.items():
        for seed, (first, final) in enumerate(zip(FIRST, finals, strict=True), start=1):
            # the periodic evaluation at 5000 shares its step with the final one: the final one is written last
            write_run(out, algo, env_id, seed, [(2500, first), (5000, -1.0), (5000, final)], wall_time=100.0 * seed)
    write_run(out, "lql", "Hopper-v4", 4, [(2500, 1e6), (5000, 1e6)], wall_time=5.0, done=False)
    write_run(out, "nclql", "Hopper-v4", 5, [], wall_time=5.0)
    rows = aggregate.aggregate(out)
    return out, rows


def test_iqm_follows_scipy_trim_mean_and_the_bootstrap_interval_is_a_percentile_interval_over_seeds():
    assert aggregate.iqm([3.0, 1.0, 2.0]) == 2.0  # int(0.75) = 0 values cut: the mean
    # int(1.5) = 1 cut from each end: mean of 2, 3, 10, 20 (fractional weights 0.5 on 2 and 20 would give 8.0)
    assert aggregate.iqm([1.0, 2.0, 3.0, 10.0, 20.0, 30.0]) == 8.75
    assert aggregate.bootstrap_ci([7.0]) == (7.0, 7.0)  # one seed: degenerate
    sample = [1.0, 2.0, 3.0, 4.0, 100.0]
    low, high = aggregate.bootstrap_ci(sample)
    assert (low, high) == aggregate.bootstrap_ci(sample)  # a fixed RNG: same data, same interval
    assert 1.0 <= low < aggregate.iqm(sample) < high < 100.0  # IQM resists the outlier: 4 of 5 draws would be needed
    # with 3 seeds the resample's mean is the smallest (largest) value with probability 1/27 > 2.5%: [min, max]
    assert aggregate.bootstrap_ci([5.0, 1.0, 9.0]) == (1.0, 9.0)


def test_table_has_the_known_numbers(results):
    out, rows = results
    by_key = {(r["algorithm"], r["env"]): r for r in rows}
    assert [(r["env"], r["algorithm"]) for r in rows] == [
        ("Hopper-v4", "lql"),
        ("Hopper-v4", "nclql"),
        ("InvertedPendulum-v4", "lql"),
        ("InvertedPendulum-v4", "nclql"),
    ]
    for key, finals in FINALS.items():
        row = by_key[key]
        assert row["seeds"] == 3  # the unfinished seed 4 and the evaluation-less seed 5 are not counted
        assert row["first_return_mean"] == pytest.approx(np.mean(FIRST))  # the evaluation at 2500, not the -1.0 at 5000
        assert row["final_return_mean"] == pytest.approx(np.mean(finals))
        assert row["curve_mean"] == pytest.approx(np.mean([(a + b) / 2 for a, b in zip(FIRST, finals, strict=True)]))
        assert math.isnan(row["final_w"])  # fixed w: nothing tuned
        assert row["final_return_std"] == pytest.approx(np.std(finals, ddof=1))
        assert row["iqm"] == pytest.approx(np.mean(finals))  # 3 seeds: nothing trimmed
        assert (row["iqm_ci_low"], row["iqm_ci_high"]) == (min(finals), max(finals))
        assert row["env_steps"] == 5000
        assert row["wall_time_s"] == pytest.approx(200.0)  # median of 100, 200, 300
        assert row["env_steps_per_s"] == pytest.approx(25.0)  # median of 5000/100, 5000/200, 5000/300
        assert row["critic_params"] == PARAMS[key]
    assert by_key[("lql", "InvertedPendulum-v4")]["final_return_std"] == pytest.approx(math.sqrt(70_000))

    with open(out / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert list(csv_rows[0]) == aggregate.COLUMNS
    lql_ip = next(r for r in csv_rows if (r["algorithm"], r["env"]) == ("lql", "InvertedPendulum-v4"))
    assert float(lql_ip["final_return_mean"]) == 300.0 and float(lql_ip["iqm_ci_high"]) == 600.0
    assert int(lql_ip["critic_params"]) == PARAMS[("lql", "InvertedPendulum-v4")] == 266_754
    assert float(lql_ip["wall_time_s"]) == 200.0 and int(lql_ip["env_steps"]) == 5000

    markdown = (out / "results.md").read_text()
    assert (
        "| lql | InvertedPendulum-v4 | 3 | 5,000 | 20.0 | 160.0 | 12.0 ± 0.0 | 300.0 ± 264.6 | 300.0 [100.0, 600.0] | 25.0 "
        "| 3.3 min | 266,754 |" in (markdown.splitlines())
    )
    assert (
        "| nclql | Hopper-v4 | 3 | 5,000 | 20.0 | 210.0 | 12.0 ± 0.0 | 400.0 ± 444.4 | 400.0 [50.0, 900.0] | 25.0 | 3.3 min "
        "| 281,698 |" in (markdown.splitlines())
    )
    assert "final w" not in markdown  # no run tuned w: no column
    assert (
        "Left out or unfinished: lql/Hopper-v4/seed4 (not finished), "
        "nclql/Hopper-v4/seed5 (finished, but no eval/episodic_return in its logs)." in markdown
    )


def test_learning_curves_are_the_mean_and_std_over_seeds_and_the_png_is_written(results):
    out, _ = results
    curves = aggregate.learning_curves(aggregate.find_runs(out)[0])
    assert sorted(curves) == ["Hopper-v4", "InvertedPendulum-v4"]
    steps, mean, std, n = curves["InvertedPendulum-v4"]["lql"]
    assert n == 3 and steps.tolist() == [2500, 5000]
    assert mean.tolist() == pytest.approx([20.0, 300.0])  # the final evaluation, not the periodic -1 at 5000
    assert std.tolist() == pytest.approx([10.0, math.sqrt(70_000)])

    png = out / "learning_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width, channels = matplotlib.image.imread(png).shape
    assert width > height > 100 and channels in (3, 4)  # two panels side by side


def test_training_return_per_window_and_over_the_last_10k_steps_beside_a_reference(tmp_path):
    """Training episodes with known returns and end steps: the last-10k column, the per-window table (mean ± std over
    seeds), each seed's values, the reference rows of the same environment beside them, and the training-return plot."""
    for seed, offset in ((1, 0.0), (2, 100.0)):
        run_dir = write_run(
            tmp_path, "nclql", "Hopper-v4", seed, [(5000, 1.0), (20_000, 2.0)], wall_time=10.0, total_steps=20_000
        )
        writer = SummaryWriter(str(next((run_dir / "runs").iterdir())))
        for step, value in ((4000, 10.0), (6000, 20.0), (9000, 40.0), (12_000, 100.0), (19_000, 300.0)):
            writer.add_scalar("charts/episodic_return", value + offset, step)
        writer.close()
    reference = tmp_path / "reference.csv"
    reference.write_text(
        "algorithm,env,seeds,steps_from,steps_to,training_return,source\n"
        "sac,Hopper-v4,1,5000,10000,77,measured elsewhere\nsac,Hopper-v4,1,10000,20000,555,measured elsewhere\n"
        "sac,Walker2d-v4,1,5000,10000,66,measured elsewhere\n"
    )
    (row,) = aggregate.aggregate(tmp_path, window=5000, reference=reference)
    assert row["train_return_recent"] == pytest.approx(np.mean([200.0, 300.0]))  # (100 + 300) / 2 and (200 + 400) / 2
    (result,) = [r for r in aggregate.find_runs(tmp_path)[0] if r.seed == 1]
    assert result.train_return(0, 5000) == pytest.approx(np.mean([12.0, 10.0]))  # the fixture's episode at step 20 too
    ends, mean, std, count = aggregate.training_windows(aggregate.find_runs(tmp_path)[0], 5000)[("Hopper-v4", "nclql")]
    assert count.tolist() == [2, 2, 2, 2]
    assert ends.tolist() == [5000, 10000, 15000, 20000]
    assert mean.tolist() == pytest.approx([36.0, 80.0, 150.0, 350.0])  # seed 1: 11, 30, 100, 300; seed 2: 61, 130, ...
    assert std.tolist() == pytest.approx([math.sqrt(1250)] + [math.sqrt(5000)] * 3)  # seeds 50, then 100 apart
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert "| algorithm | env | seeds | 0-5k | 5-10k | 10-15k | 15-20k | last 10k |" in lines
    assert "| nclql | Hopper-v4 | 2 | 36.0 ± 35.4 | 80.0 ± 70.7 | 150.0 ± 70.7 | 350.0 ± 70.7 | 250.0 (10-20k) |" in lines
    assert "| sac (reference) | Hopper-v4 | 1 |  | 77.0 |  |  | 555.0 (10-20k) |" in lines  # its 10-20k figure is the last 10k
    assert "- sac (reference): measured elsewhere" in lines and not any("Walker2d" in line for line in lines)
    # the README's table: the last 10k beside the reference's figure for the same steps, their ratio; final eval 2 ± 0
    headline = "| nclql | Hopper-v4 | 2 | 250.0 ± 70.7 | 555.0 (sac, 1 seed) | 0.45x | 2.0 ± 0.0 | "  # then steps/s
    assert any(line.startswith(headline) for line in lines)
    assert "| nclql | Hopper-v4 | 1: 200.0, 2: 300.0 | 1: 2.0, 2: 2.0 |" in lines  # each seed behind the means
    # an unfinished third seed (to 15k) counts in the windows it reached, not in the last 10k of the others
    run_dir = write_run(tmp_path, "nclql", "Hopper-v4", 3, [(5000, 1.0), (15_000, 2.0)], 10.0, done=False, total_steps=15_000)
    writer = SummaryWriter(str(next((run_dir / "runs").iterdir())))
    writer.add_scalar("charts/episodic_return", 999.0, 14_000)
    writer.close()
    (row,) = aggregate.aggregate(tmp_path, window=5000, reference=reference, unfinished=True)
    assert (row["seeds"], row["env_steps"], row["train_return_recent_seeds"]) == (3, 20_000, 2)
    assert row["train_return_recent"] == pytest.approx(250.0)
    lines = (tmp_path / "results.md").read_text().splitlines()
    headline = "| nclql | Hopper-v4 | 3 | 250.0 ± 70.7 (2 of 3 seeds) | 555.0 (sac, 1 seed) | 0.45x | 2.0 ± 0.0 | "
    assert any(line.startswith(headline) for line in lines)
    assert "| nclql | Hopper-v4 | 1: 200.0, 2: 300.0, 3: - | 1: 2.0, 2: 2.0, 3: 2.0 |" in lines
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a reference over several seeds: its std beside its mean, in the README's table and per window
    reference.write_text(
        "algorithm,env,seeds,steps_from,steps_to,training_return,training_return_std,source\n"
        "sac,Hopper-v4,3,5000,10000,77,7.5,measured elsewhere\nsac,Hopper-v4,3,10000,20000,555,50,measured elsewhere\n"
    )
    aggregate.aggregate(tmp_path, window=5000, reference=reference, unfinished=True)
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert "| sac (reference) | Hopper-v4 | 3 |  | 77.0 ± 7.5 |  |  | 555.0 ± 50.0 (10-20k) |" in lines
    headline = "| nclql | Hopper-v4 | 3 | 250.0 ± 70.7 (2 of 3 seeds) | 555.0 ± 50.0 (sac, 3 seeds) | 0.45x | 2.0 ± 0.0 | "
    assert any(line.startswith(headline) for line in lines)
    (tmp_path / "bad.csv").write_text("algorithm,env\nsac,Hopper-v4\n")
    with pytest.raises(SystemExit, match="^error: .*bad.csv needs the CSV columns"):
        aggregate.main([str(tmp_path), "--reference", str(tmp_path / "bad.csv")])


def test_sampler_and_critic_diagnostics_are_means_over_each_runs_last_10k_steps_then_over_the_longest_seeds(tmp_path):
    """Known sampler/* and Q logs: a value logged before the last 10k steps is left out, the two critics' Q are averaged,
    and an unfinished seed (other steps) is not mixed into the finished seeds' figure."""
    for seed, offset in ((1, 0.0), (2, 0.2)):
        run_dir = write_run(tmp_path, "nclql", "Hopper-v4", seed, [(20_000, 1.0)], wall_time=10.0, total_steps=20_000)
        with SummaryWriter(str(next((run_dir / "runs").iterdir()))) as writer:
            for step, std, clipped in ((5000, 9.0, 9.0), (12_000, 0.3, 0.1), (18_000, 0.5, 0.3)):  # 5000: before 10k
                writer.add_scalar("sampler/action_std", std + offset, step)
                writer.add_scalar("sampler/clip_fraction", clipped, step)
                writer.add_scalar("sampler/grad_norm", 2.0, step)
                writer.add_scalar("losses/qf1_values", 10.0 + seed, step)
                writer.add_scalar("losses/qf2_values", 20.0 + seed, step)
    run_dir = write_run(tmp_path, "nclql", "Hopper-v4", 3, [(10_000, 1.0)], wall_time=10.0, done=False, total_steps=10_000)
    with SummaryWriter(str(next((run_dir / "runs").iterdir()))) as writer:
        writer.add_scalar("sampler/action_std", 100.0, 9000)
    write_run(tmp_path, "lql", "Hopper-v4", 1, [(20_000, 1.0)], wall_time=10.0, total_steps=20_000)  # logged none
    results = aggregate.find_runs(tmp_path, unfinished=True)[0]
    (seed1,) = [r for r in results if (r.algo, r.seed) == ("nclql", 1)]
    assert seed1.diagnostics == pytest.approx({"action std": 0.4, "clipped coords": 0.2, "grad norm": 2.0, "mean Q": 16.0})
    aggregate.aggregate(tmp_path, unfinished=True)
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert "| algorithm | env | seeds | action std | clipped coords | grad norm | mean Q |" in lines
    # seeds 1 and 2: action std 0.4 and 0.6, mean Q 16 and 17; seed 3 (to 10k) left out
    assert "| nclql | Hopper-v4 | 2 of 3 | 0.500 ± 0.141 | 0.200 ± 0.000 | 2.00 ± 0.00 | 16.5 ± 0.7 |" in lines
    section = lines[lines.index("## Sampler and critics, last 10k steps") :]
    assert not any(line.startswith("| lql |") for line in section)  # a run without these logs: no row
    shutil.rmtree(tmp_path / "nclql")
    (tmp_path / "runs.csv").unlink()  # its record of the nclql runs would stand in for their deleted directories
    aggregate.aggregate(tmp_path)
    assert "## Sampler and critics, last 10k steps" not in (tmp_path / "results.md").read_text()


def test_unfinished_runs_are_taken_up_to_their_last_step_only_when_asked(tmp_path):
    run_dir = write_run(tmp_path, "lql", "Hopper-v4", 1, [(2500, 10.0), (5000, 30.0)], wall_time=10.0)
    with SummaryWriter(str(next((run_dir / "runs").iterdir()))) as writer:
        writer.add_scalar("charts/episodic_return", 40.0, 4000)  # in a window the unfinished seed 2 did not reach
    write_run(tmp_path, "lql", "Hopper-v4", 2, [(2500, 50.0)], wall_time=10.0, done=False, total_steps=3000)
    (row,) = aggregate.aggregate(tmp_path)
    assert row["seeds"] == 1
    (row,) = aggregate.aggregate(tmp_path, unfinished=True)
    assert row["seeds"] == 2 and row["final_return_mean"] == pytest.approx(40.0)  # 30 and the unfinished run's last 50
    # windows run to the longest seed; one the unfinished seed did not reach has the finished seed's value and count 1
    ends, mean, _, count = aggregate.training_windows(aggregate.find_runs(tmp_path, unfinished=True)[0], 2500)[
        ("Hopper-v4", "lql")
    ]
    assert ends.tolist() == [2500, 5000] and count.tolist() == [2, 1] and mean.tolist() == [12.0, 40.0]
    assert (
        "| lql | Hopper-v4 | 2 | 26.0 (1) | 26.0 (1 of 2 seeds, 0-5k) |" in (tmp_path / "results.md").read_text().splitlines()
    )
    assert (
        "- Left out or unfinished: lql/Hopper-v4/seed2 (unfinished: taken up to env step 3,000)."
        in (tmp_path / "results.md").read_text().splitlines()
    )


def test_runs_csv_rebuilds_the_same_tables_after_the_run_directories_are_gone_and_takes_new_seeds_beside_them(tmp_path):
    """runs.csv keeps every run's series: copied into an empty directory it gives the same tables; new run directories
    add seeds, and a directory replaces the record of its own run."""
    first, later = tmp_path / "first", tmp_path / "later"
    for seed, tuned in ((1, [(3000, 0.05)]), (2, [])):
        run_dir = write_run(first, "nclql", "Hopper-v4", seed, [(2500, 5.0 * seed), (5000, 50.0 * seed)], 10.0, tuned_w=tuned)
        with SummaryWriter(str(next((run_dir / "runs").iterdir()))) as writer:
            writer.add_scalar("charts/episodic_return", 30.0 + seed, 4000)
            writer.add_scalar("sampler/action_std", 0.25 * seed, 4500)
            writer.add_scalar("losses/qf1_values", 7.0, 4500)
    write_run(first, "nclql", "Hopper-v4", 3, [(2500, 1000.0)], 10.0, done=False, total_steps=3000)
    aggregate.aggregate(first, unfinished=True)
    tables = {name: (first / name).read_text() for name in ("results.md", "results.csv")}
    later.mkdir()
    shutil.copy(first / "runs.csv", later / "runs.csv")
    kept, left_out, every_run = aggregate.find_runs(later, unfinished=True)
    for mine, theirs in zip(kept, aggregate.find_runs(first, unfinished=True)[0], strict=True):
        for field in ("steps", "returns", "train_steps", "train_returns"):
            assert getattr(mine, field).tolist() == getattr(theirs, field).tolist()
        assert (mine.total_steps, mine.wall_time_s, mine.finished) == (theirs.total_steps, theirs.wall_time_s, theirs.finished)
        assert str(mine.diagnostics) == str(theirs.diagnostics) and str(mine.final_w) == str(theirs.final_w)  # nan alike
    assert left_out == ["nclql/Hopper-v4/seed3 (unfinished: taken up to env step 3,000)"] and len(every_run) == 3
    aggregate.aggregate(later, unfinished=True)
    assert {name: (later / name).read_text() for name in tables} == tables
    (row,) = aggregate.aggregate(later)  # the kept unfinished run stays out unless asked for
    assert row["seeds"] == 2 and row["final_return_mean"] == pytest.approx(75.0)
    # seed 4 is new; seed 2 ran again: its directory replaces its record (final 50 x 2 -> 300)
    write_run(later, "nclql", "Hopper-v4", 4, [(2500, 1.0), (5000, 400.0)], 10.0)
    write_run(later, "nclql", "Hopper-v4", 2, [(2500, 1.0), (5000, 300.0)], 10.0)
    (row,) = aggregate.aggregate(later)
    assert row["seeds"] == 3 and row["final_return_mean"] == pytest.approx((50.0 + 300.0 + 400.0) / 3)
    assert len(aggregate.read_runs(later / "runs.csv")) == 4  # the unfinished seed 3 is still kept
    for text in ("algorithm,env\nnclql,Hopper-v4\n", "", ",".join(aggregate.RUN_COLUMNS) + "\n"):
        (later / "runs.csv").write_text(text)
        with pytest.raises(SystemExit, match="^error: .*runs.csv is not a runs file of this aggregator"):
            aggregate.main([str(later)])


@pytest.mark.parametrize("script", ["lql", "nclql"])
def test_sampler_spread_compares_settings_on_a_trained_critic(capsys, trained_run, script):
    import sampler_spread

    module = __import__(f"{script}_continuous_action")
    checkpoint = f"{trained_run(module)}/checkpoint.pt"
    capsys.readouterr()  # the training run's output, when this test made it
    assert sampler_spread.main([checkpoint, "--states", "4", "--chains", "64", "--transitions", "64", "--draws", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index("| sampler | action std per state | clipped | Q of the actions | TD-target noise |")
    rows = [line.strip("| ").split(" | ") for line in lines[header + 2 :] if line.startswith("| ")]
    stds = {name: float(std) for name, std, *_ in rows}
    noise = {name: float(row[-1]) for name, *row in rows}
    defaults = sampler_spread.DEFAULT_SETTINGS["LQL" if script == "lql" else "NC-LQL"]
    assert list(stds) == ["the run's own", *defaults]
    assert all(0 <= std < 1 for std in stds.values()) and stds["the run's own"] > 0.1
    greedy = next(name for name in defaults if "--grad-norm" in name)  # a drift of fixed length: far narrower
    assert stds[greedy] < 0.5 * stds["the run's own"]
    assert noise["the run's own"] > 0  # a sampler that draws: its a' move the target,
    assert noise[greedy] < noise["the run's own"]  # less when it is narrower (here all at one corner of the box: 0)
    assert sampler_spread.main([checkpoint, "--states", "2", "--chains", "8", "--setting", "hot=--w 10"]) == 0
    assert "| hot | " in capsys.readouterr().out
    with pytest.raises(SystemExit, match="^error: --setting must be NAME=ARGS"):
        sampler_spread.main([checkpoint, "--setting", "--w 1"])


def test_spread_over_training_prints_one_estimation_row_per_checkpoint_in_env_step_order(
    tmp_path, monkeypatch, capsys, trained_run
):
    import sampler_spread

    nclql = __import__("nclql_continuous_action")
    monkeypatch.chdir(tmp_path)
    checkpoints = {}
    for steps in (90, 60):  # two one-env runs, given out of order
        _, run_dir = nclql.train(tiny_run_args(nclql, num_envs=1, total_timesteps=steps, checkpoint_frequency=30, seed=steps))
        checkpoints[steps] = f"{run_dir}/checkpoint.pt"
    assert sampler_spread.main([*checkpoints.values(), "--last", "20", "--last-falls", "90"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "-|" not in line]
    assert [row[0] for row in rows] == ["| env step", "| 60", "| 90"]
    for steps, row in zip((60, 90), rows[1:], strict=True):
        module, args, qf, checkpoint, _ = sampler_spread.load(checkpoints[steps])
        q, g, r, _ = sampler_spread.q_against_returns(module, qf, args, checkpoint["rb"], 20)
        assert [float(x) for x in row[2:6]] == pytest.approx([q, g, q - g, r], abs=0.006)
    two_envs = f"{trained_run(nclql)}/checkpoint.pt"  # two envs: the buffer interleaves them
    with pytest.raises(SystemExit, match="^error: .* is a run with 2 envs"):
        sampler_spread.main([two_envs, two_envs])


@pytest.mark.parametrize("script", ["lql", "nclql"])
def test_sampler_spread_refuses_a_file_without_a_replay_buffer_in_one_line(tmp_path, trained_run, script):
    """A checkpoint written with --no-checkpoint-buffer (no "rb" key), a --save-model file, a missing, a foreign or an
    unsafe file: one error line each, before any module is imported or critic built."""
    import sampler_spread

    run_dir = trained_run(__import__(f"{script}_continuous_action"))
    checkpoint = torch.load(f"{run_dir}/checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["rb"]["size"] == 60  # 60 env steps: every transition kept
    del checkpoint["rb"]
    torch.save(checkpoint, tmp_path / "no_buffer.pt")
    torch.save({"qf": checkpoint["qf"]}, tmp_path / "foreign.pt")
    torch.save({**checkpoint, "extra": tmp_path}, tmp_path / "unsafe.pt")  # a pickled object: not tensors
    refusals = {
        str(tmp_path / "no_buffer.pt"): "holds no replay buffer",
        f"{run_dir}/trained.cleanrl_model": "holds no replay buffer",
        str(tmp_path / "missing.pt"): "no checkpoint at",
        str(tmp_path / "foreign.pt"): "is not a checkpoint of this project's scripts",
        str(tmp_path / "unsafe.pt"): "holds more than tensors and plain values",
    }
    for path, message in refusals.items():
        with pytest.raises(SystemExit, match=f"^error: .*{message}") as refused:
            sampler_spread.load(path)
        assert "\n" not in str(refused.value)


def test_q_against_discounted_returns_cuts_episodes_where_s_prime_is_not_the_next_s():
    import types

    import sampler_spread

    # two episodes: t = 0, 1, 2 (ends: s' of t = 2 is not s of t = 3), then t = 3, 4 unfinished (no full return yet)
    obs = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    next_obs = torch.tensor([[1.0], [2.0], [99.0], [11.0], [12.0]])
    buffer = {"size": 5, "obs": obs, "next_obs": next_obs, "actions": torch.zeros(5, 1), "rewards": torch.ones(5)}
    args = types.SimpleNamespace(reward_scale=2.0, gamma=0.5)
    returns = {0.0: 2 * 1.75, 1.0: 2 * 1.5, 2.0: 2 * 1.0}  # 2 * (1 + 0.5 + 0.25), ...
    critic = lambda o, a: torch.stack([o[:, 0], o[:, 0]]) * 0 + torch.tensor([returns[x] + 1 for x in o[:, 0].tolist()])
    q, g, correlation, n = sampler_spread.q_against_returns(types.SimpleNamespace(), critic, args, buffer, last=10)
    assert n == 3 and g == pytest.approx(np.mean(list(returns.values()))) and q == pytest.approx(g + 1)
    assert correlation == pytest.approx(1.0)


def test_q_before_a_termination_is_taken_k_steps_back_inside_the_same_episode():
    import types

    import sampler_spread

    # episodes: t = 0..3 terminates at 3; t = 4..5 is truncated (s' of 5 is not s of 6); t = 6..7 terminates at 7
    obs = torch.arange(8.0)[:, None]
    next_obs = torch.tensor([[1.0], [2.0], [3.0], [50.0], [5.0], [60.0], [7.0], [70.0]])
    terminations = torch.tensor([0.0, 0, 0, 1, 0, 0, 0, 1])
    buffer = {"size": 8, "obs": obs, "next_obs": next_obs, "actions": torch.zeros(8, 1), "rewards": torch.ones(8)}
    buffer["terminations"] = terminations
    args = types.SimpleNamespace(reward_scale=1.0, gamma=0.5)
    critic = lambda o, a: torch.stack([o[:, 0], o[:, 0] + 2])  # mean over the two critics: t + 1
    table = sampler_spread.q_before_falls(types.SimpleNamespace(), critic, args, buffer, last=8, steps=(1, 2, 4))
    # k = 1: t = 3 and 7 (return 1 each); k = 2: t = 2 and 6 (1.5 each); k = 4: only t = 0 (episode 2 is 2 steps long)
    assert table[1] == pytest.approx((np.mean([4.0, 8.0]), 1.0, 2))
    assert table[2] == pytest.approx((np.mean([3.0, 7.0]), 1.5, 2))
    assert table[4] == pytest.approx((1.0, 1.875, 1))
    assert 3 not in sampler_spread.q_before_falls(types.SimpleNamespace(), critic, args, buffer, last=1, steps=(3,))


def test_curves_of_seeds_with_different_evaluation_steps_are_interpolated_inside_their_common_range(tmp_path):
    write_run(tmp_path, "lql", "Hopper-v4", 1, [(1000, 0.0), (3000, 20.0)], wall_time=10.0)
    write_run(tmp_path, "lql", "Hopper-v4", 2, [(2000, 10.0), (4000, 30.0)], wall_time=10.0)
    steps, mean, std, n = aggregate.learning_curves(aggregate.find_runs(tmp_path)[0])["Hopper-v4"]["lql"]
    assert steps.tolist() == [2000, 3000] and mean.tolist() == pytest.approx([10.0, 20.0]) and std.tolist() == [0, 0]


# A stand-in for the training scripts: records its arguments, its environment and its run time in its working
# directory. When "{exp_name}/seed{seed}" is listed in fail.txt it fails (exit 3) leaving partial logs in runs/; when it
# is listed in interrupt.txt it is "interrupted" (exit 143) after writing runs/r1/checkpoint.pt, as the real scripts do
# on SIGTERM. A fresh start must find no runs/ left; a resume (--resume PATH) must find its checkpoint.
FAKE_SCRIPT = """
import json, os, pathlib, sys, time
args, here = sys.argv[1:], pathlib.Path.cwd()
start = time.time()
attempts = here / "attempts"
attempts.write_text(str(int(attempts.read_text()) + 1 if attempts.exists() else 1))
if "--resume" in args:
    assert (here / args[args.index("--resume") + 1]).is_file(), "resumed from a checkpoint that is not there"
else:
    assert not (here / "runs").exists(), "a fresh start found the previous attempt's logs"
print("fake run", " ".join(args))
key = args[args.index("--exp-name") + 1] + "/seed" + args[args.index("--seed") + 1]
lists = {name: pathlib.Path(__file__).with_name(name) for name in ("fail.txt", "interrupt.txt")}
listed = lambda name: lists[name].exists() and key in lists[name].read_text().split()
time.sleep(0.3)
(here / "call.json").write_text(json.dumps({"args": args, "omp": os.environ["OMP_NUM_THREADS"], "t": [start, time.time()]}))
if listed("fail.txt"):
    (here / "runs" / "partial").mkdir(parents=True)
    print("boom", file=sys.stderr)
    sys.exit(3)
if listed("interrupt.txt") and "--resume" not in args:
    (here / "runs" / "r1").mkdir(parents=True)
    (here / "runs" / "r1" / "checkpoint.pt").write_text("state")
    print("SIGTERM: checkpoint written", file=sys.stderr)
    sys.exit(143)
"""


@pytest.fixture
def fake_script(tmp_path):
    path = tmp_path / "fake_script.py"
    path.write_text(FAKE_SCRIPT)
    return path


def test_job_list_is_algos_x_envs_x_seeds_with_the_presets_budgets_and_extra_arguments(tmp_path):
    args, preset, jobs, workers, out = learning.plan(["--out", str(tmp_path), "--", "--eval-episodes", "3", "--w", "0.2"])
    assert workers == 2 and out == tmp_path.resolve()
    assert {(j.algo, j.env_id, j.seed) for j in jobs} == {
        (a, e, s) for a in ("lql", "nclql") for e in ("InvertedPendulum-v4", "Hopper-v4") for s in (1, 2, 3)
    }
    assert len(jobs) == 12 and [j.algo for j in jobs[:2]] == ["lql", "nclql"]  # the algorithms alternate
    for job in jobs:
        assert job.total_timesteps == {"InvertedPendulum-v4": 20_000, "Hopper-v4": 40_000}[job.env_id]
        assert job.run_dir == tmp_path.resolve() / job.algo / job.env_id / f"seed{job.seed}"
        assert job.command[:2] == (sys.executable, os.path.join(ROOT, f"{job.algo}_continuous_action.py"))
        assert list(job.command[2:]) == [
            *("--env-id", job.env_id, "--seed", str(job.seed), "--total-timesteps", str(job.total_timesteps)),
            *("--exp-name", job.algo, "--num-envs", "5", "--learning-starts", "2500", "--eval-frequency", "2500"),
            *("--compile", "--eval-episodes", "3", "--w", "0.2"),  # the preset's --eval-episodes 5 is replaced
        ]

    *_, jobs, _, _ = learning.plan(
        ["--out", str(tmp_path), "--algos", "nclql", "--envs", "Walker2d-v4", "--seeds", "7", "--total-timesteps", "123"]
        + ["--", "--no-compile"]
    )
    assert [(j.algo, j.env_id, j.seed, j.total_timesteps) for j in jobs] == [("nclql", "Walker2d-v4", 7, 123)]
    assert "--compile" not in jobs[0].command and jobs[0].command[-1] == "--no-compile"
    *_, jobs, _, _ = learning.plan(["--out", str(tmp_path), "--algos", "nclql", "--envs", "Walker2d-v4"])
    assert {j.total_timesteps for j in jobs} == {40_000}  # an env the preset does not list gets its default budget
    *_, jobs, _, _ = learning.plan(["--preset", "paper", "--out", str(tmp_path)])
    assert len(jobs) == 2 * 6 * 5 and {j.total_timesteps for j in jobs} == {5_000_000}
    authors_sampler = ["--grad-norm", "--w", "0.01", "--step-size", "1e-4"]  # their 500 = 1 / (0.01 * 0.2), update for update
    for job in jobs:
        assert (
            list(job.command[-len(authors_sampler) :]) == authors_sampler if job.algo == "nclql" else "--w" not in job.command
        )


def test_sac_budget_preset_is_sacs_protocol_with_one_setting_for_every_task(tmp_path):
    *_, jobs, workers, _ = learning.plan(["--preset", "sac-budget", "--out", str(tmp_path)])
    tasks = ("Hopper-v4", "Walker2d-v4", "HalfCheetah-v4", "InvertedDoublePendulum-v4", "Ant-v4")  # the pre-registered five
    assert workers == 2 and len(jobs) == 2 * 5 * 3
    assert {(j.algo, j.env_id, j.seed, j.total_timesteps) for j in jobs} == {
        (a, e, s, 50_000) for a in ("lql", "nclql") for e in tasks for s in (1, 2, 3)
    }
    frozen = {  # docs/preregistration.md: no per-task values
        "nclql": {"--learning-rate": "1e-3", "--w": "0.1", "--step-size": "1e-4"},
        "lql": {"--learning-rate": "1e-3", "--w": "0.1"},
    }
    for job in jobs:  # one env, one update per env step, 5k random warm-up, evaluation every 5k
        flags = dict(zip(job.command[2:], job.command[3:], strict=False))  # each flag -> the token after it
        assert (flags["--num-envs"], flags["--learning-starts"], flags["--eval-frequency"]) == ("1", "5000", "5000")
        assert job.command.count("--learning-rate") == 1
        for flag, value in frozen[job.algo].items():
            assert flag in job.command and (value is None or flags[flag] == value), (job.algo, job.env_id, flag)
        assert ("--step-size" in flags) == (job.algo == "nclql")  # LQL keeps its own step
    settings = {(j.algo, tuple(j.command[j.command.index("--exp-name") + 2 :])) for j in jobs}  # after env, seed, budget
    assert len(settings) == 2  # one setting per algorithm, whatever the task
    *_, overridden, _, _ = learning.plan(["--preset", "sac-budget", "--out", str(tmp_path), "--", "--learning-rate", "5e-4"])
    assert all(j.command.count("--learning-rate") == 1 and "5e-4" in j.command for j in overridden)  # -- args win


def test_variants_run_each_algorithm_once_per_setting_in_their_own_directories(tmp_path):
    argv = ["--out", str(tmp_path), "--algos", "nclql", "--envs", "Hopper-v4", "--seeds", "1,2"]
    variants = ["--variant", "w0.02=--w 0.02 --eval-episodes 7", "--variant", "auto=--autotune-w"]
    *_, jobs, _, _ = learning.plan([*argv, *variants, "--", "--w", "0.3", "--eval-episodes", "9"])
    assert [(j.algo, j.seed) for j in jobs] == [("nclql-w0.02", 1), ("nclql-auto", 1), ("nclql-w0.02", 2), ("nclql-auto", 2)]
    for job in jobs:
        assert job.run_dir == tmp_path.resolve() / job.algo / "Hopper-v4" / f"seed{job.seed}"
        assert job.command[1] == os.path.join(ROOT, "nclql_continuous_action.py")
        assert job.command[job.command.index("--exp-name") + 1] == job.algo
    first, second = (list(j.command) for j in jobs[:2])
    assert first[first.index("--total-timesteps") + 4 :] == [  # the preset's, then -- arguments, then the variant's
        *("--num-envs", "5", "--learning-starts", "2500", "--eval-frequency", "2500", "--compile"),
        *("--w", "0.02", "--eval-episodes", "7"),
    ]
    assert second[second.index("--total-timesteps") + 4 :] == [
        *("--num-envs", "5", "--learning-starts", "2500", "--eval-frequency", "2500", "--compile"),
        *("--w", "0.3", "--eval-episodes", "9", "--autotune-w"),
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "fast"], "error: argument --preset: invalid choice"),
        (["--algos", "lql,sac"], "error: unknown algorithm 'sac'"),
        (["--workers", "0"], "error: --workers must be >= 1"),
        (["--envs", "NoSuchEnv-v0"], "error: unknown environment 'NoSuchEnv-v0'"),
        (["--seeds", "1,x"], "error: --seeds must be comma-separated integers"),
        (["--", "--seed", "3"], "error: --seed cannot be passed to the scripts here"),
        (["--", "--resume=runs/x/checkpoint.pt"], "error: --resume cannot be passed to the scripts here"),
        (["--variant", "w 0.1=--w 0.1"], "error: --variant must be NAME=ARGS"),
        (["--variant", "--w 0.1"], "error: --variant must be NAME=ARGS"),
        (["--variant", "a=--w 0.1", "--variant", "a=--w 0.2"], "error: --variant a is given twice"),
        (["--variant", "s=--seed 2"], "error: --seed cannot be passed to the scripts here"),
        (["--variant", "q=--w '0.1"], "error: --variant q: cannot split its arguments"),
    ],
)
def test_bad_input_is_refused_with_one_error_line(argv, message, tmp_path):
    with pytest.raises(SystemExit) as e:
        learning.plan(["--out", str(tmp_path), *argv])
    assert str(e.value.code).startswith(message) and "\n" not in str(e.value.code)


def test_benchmark_sh_refuses_bad_input_without_a_traceback(tmp_path):
    for argv in (["learn", "--workers", "0"], ["learn", "--envs", "NoSuchEnv-v0", "--dry-run"], ["aggregate", "nope"]):
        proc = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), *argv], capture_output=True, text=True)
        assert proc.returncode != 0, argv
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_speed_benchmark_times_a_trained_critic_from_its_checkpoint(tmp_path, capsys, trained_run):
    import speed

    nclql, lql = __import__("nclql_continuous_action"), __import__("lql_continuous_action")
    run_dir = trained_run(nclql)
    checkpoint = torch.load(f"{run_dir}/checkpoint.pt", map_location="cpu", weights_only=True)
    args = speed.Args(checkpoint=f"{run_dir}/checkpoint.pt", batch_size=8, num_envs=2, repeats=1, keep_denormals=True)
    env_id, nc_args, qf, qf_target, optimizer, batch = speed.critics_and_batch(args, torch.device("cpu"))
    assert env_id == "InvertedPendulum-v4" and (nc_args.num_levels, nc_args.steps_per_level) == (3, 1)
    for net, saved in ((qf, checkpoint["qf"]), (qf_target, checkpoint["qf_target"])):
        assert all(torch.equal(value, net.state_dict()[key]) for key, value in saved.items())
    assert optimizer.state_dict()["state"][0]["step"] == checkpoint["optimizer"]["state"][0]["step"] > 0
    buffer = checkpoint["rb"]
    obs, actions = batch[0], batch[1]
    assert obs.shape == (8, 4) and all((buffer["obs"] == row).all(1).any() for row in obs)  # rows of its replay buffer
    assert all((buffer["actions"] == row).all(1).any() for row in actions)
    capsys.readouterr()  # the training run's output
    speed.main(args)
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("# InvertedPendulum-v4, batch 8, CPU") and header.endswith(
        f"the trained critics of {run_dir}/checkpoint.pt, denormal floats kept"
    )
    torch.set_flush_denormal(False)
    del checkpoint["rb"]  # as written with --no-checkpoint-buffer: the key is absent
    torch.save(checkpoint, tmp_path / "no_buffer.pt")
    with pytest.raises(SystemExit, match="^error: .*no_buffer.pt holds no replay buffer"):
        speed.critics_and_batch(speed.Args(checkpoint=str(tmp_path / "no_buffer.pt")), torch.device("cpu"))
    with pytest.raises(SystemExit, match="^error: .*trained.cleanrl_model holds no replay buffer"):  # a saved model
        speed.critics_and_batch(speed.Args(checkpoint=f"{run_dir}/trained.cleanrl_model"), torch.device("cpu"))
    with pytest.raises(SystemExit, match="^error: .* is a LQL checkpoint; this script is NC-LQL"):
        speed.critics_and_batch(speed.Args(checkpoint=f"{trained_run(lql)}/checkpoint.pt"), torch.device("cpu"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--env-id", "NoSuchEnv-v0"], "error: --env-id NoSuchEnv-v0 has no known sizes here"),
        (["--cudagraphs"], "error: --cudagraphs needs --cuda"),
        pytest.param(
            ["--cuda"],
            "error: --cuda was given but torch sees no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: --cuda is valid"),
        ),
    ],
)
def test_speed_benchmark_refuses_bad_input_with_one_line(argv, message):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "speed.py"), *argv], capture_output=True, text=True
    )
    assert proc.returncode == 1 and proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr


def test_benchmark_sh_without_the_requirements_says_how_to_install_them(tmp_path):
    (tmp_path / "python").write_text("#!/bin/sh\nexit 1\n")  # a python that lacks the packages (no venv active)
    (tmp_path / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    proc = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "learn"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "pip install -r requirements.txt" in proc.stderr


def test_benchmark_sh_help_prints_the_usage_with_or_without_the_requirements(tmp_path):
    no_torch = tmp_path / "python"  # a real python without the packages: no site-packages
    no_torch.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    no_torch.chmod(0o755)
    run = lambda path, *argv: subprocess.run(
        ["bash", os.path.join(ROOT, "benchmark.sh"), *argv], capture_output=True, text=True, env={**os.environ, "PATH": path}
    )
    for path in (f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", f"{tmp_path}:/usr/bin:/bin"):
        for flag in ("--help", "-h", "help"):
            proc = run(path, flag)
            assert proc.returncode == 0 and proc.stderr == "", (path, flag, proc.stderr)
            assert "./benchmark.sh learn  [--preset" in proc.stdout and "./benchmark.sh aggregate DIR" in proc.stdout
            assert "#" not in proc.stdout and "set -euo" not in proc.stdout  # the header's text, not the file
    proc = run(f"{tmp_path}:/usr/bin:/bin", "learn", "--help")  # a real mode still needs the packages
    assert proc.returncode == 2 and "pip install -r requirements.txt" in proc.stderr
    for argv, error in (["nope"], "error: unknown mode 'nope'"), ([], "error: no mode given"):
        proc = run(os.environ["PATH"], *argv)
        assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.splitlines()[0] == error
        assert "./benchmark.sh aggregate DIR" in proc.stderr


def test_runner_says_on_the_console_which_runs_compile_first_and_gives_each_its_share_of_threads(
    tmp_path, fake_script, capsys
):
    assert learning.compiles(["--compile"]) and not learning.compiles(["--compile", "--no-compile"])
    assert learning.compiles(["--no-compile", "--compile"]) and not learning.compiles([])
    variants = {"c": (), "nc": ("--no-compile",), "t3": ("--threads", "3")}
    jobs = learning.build_jobs(
        tmp_path / "out", ["lql"], {"Hopper-v4": 50}, [1], ("--compile",), scripts={"lql": fake_script}, variants=variants
    )
    assert learning.run_jobs(jobs, workers=2, cores=4) == []
    out = capsys.readouterr().out.splitlines()
    assert "[1/3] start lql-c/Hopper-v4/seed1 (compiles first: a few minutes)" in out
    assert "[2/3] start lql-nc/Hopper-v4/seed1" in out
    threads = [json.loads((job.run_dir / "call.json").read_text())["args"] for job in jobs]
    assert [args[args.index("--threads") + 1] for args in threads] == ["2", "2", "3"]  # 4 cores / 2 workers, or as given
    assert [args.count("--threads") for args in threads] == [1, 1, 1]
    omp = [json.loads((job.run_dir / "call.json").read_text())["omp"] for job in jobs]
    assert omp == ["2", "2", "3"]  # OpenMP follows the run's --threads
    assert "2 at a time, each on 2 thread(s) unless its arguments give --threads" in out[0]


def test_runner_runs_in_parallel_skips_finished_runs_retries_failed_ones_and_resumes_interrupted_ones(tmp_path, fake_script):
    jobs = learning.build_jobs(
        tmp_path / "out", ["lql", "nclql"], {"Hopper-v4": 50}, [1, 2, 3], scripts={"lql": fake_script, "nclql": fake_script}
    )
    (tmp_path / "fail.txt").write_text("nclql/seed2\n")
    (tmp_path / "interrupt.txt").write_text("lql/seed3\n")
    failed = learning.run_jobs(jobs, workers=2, cores=4)
    assert [(job.name, status) for job, status in failed] == [("nclql/Hopper-v4/seed2", 3), ("lql/Hopper-v4/seed3", 143)]
    assert "boom" in (failed[0][0].run_dir / "log.txt").read_text()
    for job in jobs:
        call = json.loads((job.run_dir / "call.json").read_text())
        assert call["args"] == [*job.command[2:], "--threads", "2"] and call["omp"] == "2"  # 4 cores // 2 workers
        assert job.done == (job.name not in ("nclql/Hopper-v4/seed2", "lql/Hopper-v4/seed3"))
        assert "fake run" in (job.run_dir / "log.txt").read_text()
    done = json.loads((jobs[0].run_dir / "DONE").read_text())
    assert done["exit_status"] == 0 and done["command"] == list(jobs[0].command) and done["wall_time_s"] >= 0.3
    assert done["resumed_from"] is None
    # two at a time: some runs overlap, never three
    spans = [json.loads((job.run_dir / "call.json").read_text())["t"] for job in jobs]
    overlaps = [sum(a[0] <= t < a[1] for a in spans) for t, _ in spans]
    assert max(overlaps) == 2

    # the second pass runs only those two: the failed one afresh (its partial logs deleted), the interrupted one from
    # its checkpoint, its earlier output kept in the log
    (tmp_path / "fail.txt").unlink()
    assert learning.run_jobs(jobs, workers=2, cores=4) == []
    attempts = {job.name: int((job.run_dir / "attempts").read_text()) for job in jobs}
    assert attempts == {job.name: 2 if job.name in ("nclql/Hopper-v4/seed2", "lql/Hopper-v4/seed3") else 1 for job in jobs}
    assert all(job.done for job in jobs)
    assert not (jobs[3].run_dir / "runs" / "partial").exists()
    resumed = next(job for job in jobs if job.name == "lql/Hopper-v4/seed3")
    assert json.loads((resumed.run_dir / "call.json").read_text())["args"][-4:-2] == ["--resume", "runs/r1/checkpoint.pt"]
    assert json.loads((resumed.run_dir / "DONE").read_text())["resumed_from"] == "runs/r1/checkpoint.pt"
    log = (resumed.run_dir / "log.txt").read_text()
    assert "SIGTERM: checkpoint written" in log and log.count("fake run") == 2


def test_cli_exit_status_is_non_zero_when_a_run_fails_and_zero_after_the_retry(tmp_path, fake_script, monkeypatch, capsys):
    monkeypatch.setattr(learning, "SCRIPTS", {"lql": fake_script, "nclql": fake_script})
    (tmp_path / "fail.txt").write_text("lql/seed1\n")
    argv = ["--envs", "InvertedPendulum-v4", "--seeds", "1,2", "--out", str(tmp_path / "out"), "--workers", "2"]
    assert learning.main(argv) == 1
    err = capsys.readouterr().err
    assert "1 of 4 runs failed" in err
    assert f"lql/InvertedPendulum-v4/seed1 (exit status 3): {tmp_path / 'out/lql/InvertedPendulum-v4/seed1/log.txt'}" in err
    (tmp_path / "fail.txt").unlink()
    assert learning.main(argv) == 0
    assert "4 runs: 3 finished earlier (skipped), 1 to do" in capsys.readouterr().out
    # finished runs are kept when the arguments change, with a warning
    assert learning.main([*argv, "--", "--w", "0.5"]) == 0
    assert "warning: 4 finished run(s) were made with other script arguments" in capsys.readouterr().err


def test_slurm_script_is_valid_bash_with_one_array_task_per_unfinished_run(tmp_path, fake_script, monkeypatch, capsys):
    monkeypatch.setattr(learning, "SCRIPTS", {"lql": fake_script, "nclql": fake_script})
    monkeypatch.setattr(learning.shutil, "which", lambda name: None)
    out = tmp_path / "out"
    argv = ["--envs", "Hopper-v4", "--seeds", "1,2,3", "--out", str(out), "--slurm", "--sbatch=--gres=gpu:1"]
    *_, jobs, _, _ = learning.plan(argv)
    learning.run_job(jobs[0], 1)  # one finished run: left out of the array
    assert learning.main(argv) == 0
    script = out / "slurm_job.sh"
    assert f"wrote {script} (5 array tasks)" in capsys.readouterr().out
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --array=0-4\n" in text and "#SBATCH --gres=gpu:1\n" in text and "#SBATCH --time=02:00:00\n" in text
    assert [line.split("# ")[1] for line in text.splitlines() if line.strip()[:2] in {f"{i})" for i in range(10)}] == [
        job.name for job in jobs[1:]
    ]

    # task 0 (the second job) runs like the local runner: its directory, log.txt, DONE with the command
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0", "SLURM_CPUS_PER_TASK": "3"}
    assert subprocess.run(["bash", str(script)], env=env, capture_output=True).returncode == 0
    done = json.loads((jobs[1].run_dir / "DONE").read_text())
    assert done == {
        "exit_status": 0,
        "wall_time_s": done["wall_time_s"],
        "runner": "slurm",
        "command": list(jobs[1].command),
        "resumed_from": None,
    }
    call = json.loads((jobs[1].run_dir / "call.json").read_text())
    assert call["omp"] == "3" and call["args"][-2:] == ["--threads", "3"]  # the task's cores
    (tmp_path / "fail.txt").write_text(f"{jobs[2].algo}/seed{jobs[2].seed}\n")
    env["SLURM_ARRAY_TASK_ID"] = "1"
    assert subprocess.run(["bash", str(script)], env=env, capture_output=True).returncode == 3
    assert not jobs[2].done and "boom" in (jobs[2].run_dir / "log.txt").read_text()
    # an interrupted attempt's checkpoint is resumed from (task 2 is jobs[3])
    (jobs[3].run_dir / "runs" / "r1").mkdir(parents=True)
    (jobs[3].run_dir / "runs" / "r1" / "checkpoint.pt").write_text("state")
    env["SLURM_ARRAY_TASK_ID"] = "2"
    assert subprocess.run(["bash", str(script)], env=env, capture_output=True).returncode == 0
    assert json.loads((jobs[3].run_dir / "call.json").read_text())["args"][-4:-2] == ["--resume", "runs/r1/checkpoint.pt"]
    assert json.loads((jobs[3].run_dir / "DONE").read_text())["resumed_from"] == "runs/r1/checkpoint.pt"
    env.pop("SLURM_ARRAY_TASK_ID")
    assert subprocess.run(["bash", str(script)], env=env, capture_output=True).returncode != 0

    # submitted with sbatch when there is one; the array now holds the 3 runs left
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/sbatch_args\necho "Submitted batch job 1"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setattr(learning.shutil, "which", lambda name: str(bin_dir / name))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert learning.main(argv) == 0
    assert (tmp_path / "sbatch_args").read_text().strip() == str(script)
    assert "#SBATCH --array=0-2\n" in script.read_text()  # 6 runs, 3 finished


def _git(repo, *args) -> str:
    config = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", "-C", str(repo), *config, *args], check=True, capture_output=True, text=True).stdout


# names two GPUs: `-i 1` the second, `-i 0` (or no -i) the first, another -i fails
NVIDIA_SMI = r"""#!/bin/sh
second='NVIDIA "Second" \ GPU'
case "$*" in
  *"-i 1"*) printf '%s\n' "$second" ;;
  *"-i 0"* | *noheader) printf '%s\n' 'NVIDIA First GPU' "$second" ;;
  *) echo 'No devices were found'; exit 6 ;;
esac
"""


@pytest.fixture
def fake_repo(tmp_path, fake_script, monkeypatch):
    """The stand-in script committed in a git repository (tmp_path; what the runs write there is untracked), and on
    PATH the NVIDIA_SMI stand-in, whose second GPU's name has a quote and a backslash (the Slurm script must escape them
    in its JSON line). Returns the commit."""
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", fake_script.name)
    _git(tmp_path, "commit", "-q", "-m", "fake script")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return _git(tmp_path, "rev-parse", "HEAD").strip()


def test_the_machine_is_the_gpus_name_for_a_cuda_run_else_the_cpu_model(tmp_path, fake_repo, monkeypatch):
    cpu = learning.cpu_model()
    assert cpu and cpu != "unknown" and cpu == cpu.strip()
    assert learning.machine_name(["python", "x.py"]) == cpu and learning.machine_name(["--cuda", "--no-cuda"]) == cpu
    assert learning.machine_name(["python", "x.py", "--cuda"]) == "NVIDIA First GPU"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")  # the run's device 0 is the machine's GPU 1
    assert learning.machine_name(["--cuda"]) == 'NVIDIA "Second" \\ GPU'
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # nvidia-smi cannot tell: its first GPU
    assert learning.machine_name(["--cuda"]) == "NVIDIA First GPU"
    assert learning.code_commit(tmp_path / "fake_script.py") == fake_repo
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi: the CPU; no git: no commit
    assert learning.gpu_name() is None and learning.machine_name(["--cuda"]) == cpu
    assert learning.code_commit(tmp_path / "fake_script.py") == "unknown"
    monkeypatch.setenv("PATH", path)
    outside = tmp_path.parent / f"{tmp_path.name}-not-a-repo"
    outside.mkdir()
    assert learning.code_commit(outside / "x.py") == "unknown"


def test_each_attempt_records_the_commit_and_the_machine_and_a_fresh_start_forgets_the_failed_attempts(
    tmp_path, fake_script, fake_repo, monkeypatch
):
    variants = {"cpu": (), "gpu": ("--cuda",)}
    jobs = learning.build_jobs(
        tmp_path / "out", ["lql"], {"Hopper-v4": 50}, [1], scripts={"lql": fake_script}, variants=variants
    )
    cpu_job, gpu_job = jobs
    (tmp_path / "interrupt.txt").write_text("lql-cpu/seed1\n")  # cut: it resumes
    (tmp_path / "fail.txt").write_text("lql-gpu/seed1\n")  # fails without a checkpoint: it starts afresh
    assert [status for _, status in learning.run_jobs(jobs, workers=1, cores=1)] == [143, 3]
    read = lambda job: [json.loads(line) for line in (job.run_dir / "run_info.jsonl").read_text().splitlines()]
    (first,) = read(cpu_job)
    assert first["commit"] == fake_repo and first["machine"] == learning.cpu_model() and first["runner"] == "local"
    assert first["resumed_from"] is None and first["started"].endswith("Z")
    assert [(r["commit"], r["machine"]) for r in read(gpu_job)] == [(fake_repo, "NVIDIA First GPU")]
    # the script changes (uncommitted) before the second attempt, on another GPU
    (tmp_path / "fail.txt").unlink()
    with open(fake_script, "a") as f:
        f.write("# changed\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert learning.run_jobs(jobs, workers=1, cores=1) == [] and all(job.done for job in jobs)
    assert [(r["commit"], r["resumed_from"]) for r in read(cpu_job)] == [
        (fake_repo, None),
        (fake_repo + "+dirty", "runs/r1/checkpoint.pt"),
    ]
    assert [(r["commit"], r["machine"]) for r in read(gpu_job)] == [(fake_repo + "+dirty", 'NVIDIA "Second" \\ GPU')]
    # the aggregator's reading: every attempt's distinct values, in order
    assert aggregate.run_info(cpu_job.run_dir) == (f"{fake_repo}; {fake_repo}+dirty", learning.cpu_model())
    assert aggregate.run_info(gpu_job.run_dir) == (f"{fake_repo}+dirty", 'NVIDIA "Second" \\ GPU')
    assert aggregate.run_info(tmp_path) == ("", "")  # no run_info.jsonl: not recorded


def test_slurm_tasks_record_the_commit_and_the_machine_as_the_local_runner_does(tmp_path, fake_script, fake_repo):
    variants = {"cpu": (), "gpu": ("--cuda",)}
    jobs = learning.build_jobs(
        tmp_path / "out", ["lql"], {"Hopper-v4": 50}, [1], scripts={"lql": fake_script}, variants=variants
    )
    script = learning.write_slurm_script(jobs, tmp_path / "out", "01:00:00", 1)
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0", "CUDA_VISIBLE_DEVICES": "1"}
    read = lambda job: [json.loads(line) for line in (job.run_dir / "run_info.jsonl").read_text().splitlines()]
    for task, job in enumerate(jobs):
        (job.run_dir / "runs" / "r1").mkdir(parents=True)  # an interrupted local attempt left a checkpoint
        (job.run_dir / "runs" / "r1" / "checkpoint.pt").write_text("state")
        (job.run_dir / "run_info.jsonl").write_text(json.dumps({"commit": "abc", "machine": "laptop"}) + "\n")
        result = subprocess.run(["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": str(task)}, capture_output=True)
        assert result.returncode == 0, result.stderr
        assert job.done
    (_, cpu), (_, gpu) = read(jobs[0]), read(jobs[1])
    assert cpu["commit"] == gpu["commit"] == learning.code_commit(fake_script) == fake_repo
    assert cpu["machine"] == learning.cpu_model() and gpu["machine"] == 'NVIDIA "Second" \\ GPU'  # JSON escaped
    assert cpu["runner"] == "slurm" and cpu["resumed_from"] == "runs/r1/checkpoint.pt"
    assert set(cpu) == {"started", "runner", "commit", "machine", "resumed_from"}
    assert aggregate.run_info(jobs[0].run_dir) == (f"abc; {fake_repo}", f"laptop; {learning.cpu_model()}")
    # a fresh start (no checkpoint) begins a new file; the script changed since its commit
    shutil.rmtree(jobs[0].run_dir)
    with open(fake_script, "a") as f:
        f.write("# changed\n")
    assert subprocess.run(["bash", str(script)], env=env, capture_output=True).returncode == 0
    assert [(r["commit"], r["resumed_from"]) for r in read(jobs[0])] == [(fake_repo + "+dirty", None)]


def test_runs_csv_keeps_each_runs_commit_and_machine_and_reads_an_older_runs_csv_without_them(tmp_path):
    first, later, older = tmp_path / "first", tmp_path / "later", tmp_path / "older"
    numeric = "1234567890e12345678901234567890123456789"  # a commit pandas would read as a number
    attempts = [(numeric, "Intel Xeon"), (numeric + "+dirty", "NVIDIA H100")]
    run_dir = write_run(first, "nclql", "Hopper-v4", 1, [(2500, 1.0), (5000, 10.0)], 10.0)
    (run_dir / "run_info.jsonl").write_text(
        "".join(json.dumps({"commit": c, "machine": m}) + "\n" for c, m in attempts) + '{"commit": "cut sh'
    )
    write_run(first, "nclql", "Hopper-v4", 2, [(2500, 1.0), (5000, 20.0)], 10.0)  # made before they were recorded
    aggregate.aggregate(first)
    runs = list(csv.DictReader((first / "runs.csv").read_text().splitlines()))
    assert list(runs[0]) == aggregate.RUN_COLUMNS
    summary = [r for r in runs if r["series"] == "wall_time_s"]
    assert [(r["seed"], r["commit"], r["machine"]) for r in summary] == [
        ("1", f"{numeric}; {numeric}+dirty", "Intel Xeon; NVIDIA H100"),
        ("2", "", ""),
    ]
    assert {(r["commit"], r["machine"]) for r in runs if r["series"] in ("eval", "train")} == {("", "")}
    made_with = (
        f"- Commits: {numeric} (1 run), {numeric}+dirty (1 run), not recorded (1 run); machines: Intel Xeon (1 run), "
        "NVIDIA H100 (1 run), not recorded (1 run) (per run in runs.csv, columns `commit` and `machine`)."
    )
    assert made_with in (first / "results.md").read_text().splitlines()
    # the run directories gone: the same values, and the same tables
    later.mkdir()
    shutil.copy(first / "runs.csv", later / "runs.csv")
    assert [(r.commit, r.machine) for r in aggregate.find_runs(later)[0]] == [
        (f"{numeric}; {numeric}+dirty", "Intel Xeon; NVIDIA H100"),
        ("", ""),
    ]
    aggregate.aggregate(later)
    for name in ("runs.csv", "results.md", "results.csv"):
        assert (later / name).read_text() == (first / name).read_text()
    # a runs.csv written before the columns existed: read, its runs not recorded
    older.mkdir()
    with open(first / "runs.csv") as f, open(older / "runs.csv", "w", newline="") as g:
        writer = csv.writer(g)
        for row in csv.reader(f):
            writer.writerow(row[:4] + row[6:])
    assert [(r.seed, r.commit, r.machine) for r in aggregate.read_runs(older / "runs.csv")] == [(1, "", ""), (2, "", "")]
    aggregate.aggregate(older)
    assert (older / "runs.csv").read_text().splitlines()[0] == ",".join(aggregate.RUN_COLUMNS)


def test_a_slurm_run_is_aggregated_like_a_local_one(tmp_path):
    """The aggregation reads DONE and runs/ only, which both runners leave the same way."""
    run_dir = write_run(tmp_path, "nclql", "Hopper-v4", 1, [(5000, 42.0)], wall_time=50.0)
    (run_dir / "DONE").write_text(json.dumps({"exit_status": 0, "wall_time_s": 51, "runner": "slurm", "command": []}))
    (row,) = aggregate.aggregate(tmp_path)
    assert (row["seeds"], row["final_return_mean"], row["iqm_ci_low"], row["iqm_ci_high"]) == (1, 42.0, 42.0, 42.0)
    assert math.isnan(row["final_return_std"]) and "| 42.0 | 42.0 [42.0, 42.0] |" in (tmp_path / "results.md").read_text()


def test_variants_are_aggregated_as_their_own_rows_with_their_algorithms_critic_size(tmp_path):
    write_run(tmp_path, "nclql-auto", "Hopper-v4", 1, [(5000, 42.0)], wall_time=50.0, tuned_w=[(3000, 0.5), (4000, 0.25)])
    write_run(tmp_path, "nclql-auto", "Hopper-v4", 2, [(5000, 40.0)], wall_time=50.0, tuned_w=[(4000, 0.75)])
    write_run(tmp_path, "nclql-w0.02", "Hopper-v4", 1, [(2500, 3.0), (5000, 7.0)], wall_time=50.0)
    rows = aggregate.aggregate(tmp_path)
    assert [(r["algorithm"], r["first_return_mean"], r["final_return_mean"]) for r in rows] == [
        ("nclql-auto", 41.0, 41.0),
        ("nclql-w0.02", 3.0, 7.0),
    ]
    assert rows[1]["curve_mean"] == pytest.approx(5.0)
    assert {r["critic_params"] for r in rows} == {PARAMS[("nclql", "Hopper-v4")]}
    assert rows[0]["final_w"] == pytest.approx(0.5) and math.isnan(rows[1]["final_w"])  # mean of each seed's last w
    markdown = (tmp_path / "results.md").read_text().splitlines()
    assert any(line.startswith("| algorithm |") and "| final w |" in line for line in markdown)
    assert any(line.startswith("| nclql-auto | Hopper-v4 | 2 |") and "| 0.5 |" in line for line in markdown)
    assert any(
        line.startswith("| nclql-w0.02 | Hopper-v4 | 1 |") and "| 7.0 | 7.0 [7.0, 7.0] | - |" in line for line in markdown
    )


def test_a_resumed_run_keeps_what_its_checkpoint_had_and_its_wall_time_leaves_out_the_pause(tmp_path):
    """The scripts resume with SummaryWriter(purge_step=checkpoint step + 1) in the same directory: what the
    interrupted session logged after its checkpoint is hidden, and the pause between the sessions is not run time."""
    event_dir = tmp_path / "nclql" / "Hopper-v4" / "seed1" / "runs" / "Hopper-v4__nclql__1__1"
    writer = SummaryWriter(str(event_dir))
    writer.add_scalar("eval/episodic_return", 10.0, 1000, walltime=1000.0)
    writer.add_scalar("eval/episodic_return", 20.0, 2000, walltime=1100.0)  # checkpoint at 2000
    writer.add_scalar("eval/episodic_return", 999.0, 3000, walltime=1200.0)  # lost with the interruption
    writer.close()
    time.sleep(1.1)  # event file names carry the second they were created: the resumed session's sorts after
    writer = SummaryWriter(str(event_dir), purge_step=2001)
    writer.add_scalar("eval/episodic_return", 30.0, 3000, walltime=5000.0)
    writer.add_scalar("eval/episodic_return", 40.0, 4000, walltime=5050.0)
    writer.close()
    (event_dir.parent.parent / "DONE").write_text("{}")
    (result,) = aggregate.find_runs(tmp_path)[0]
    assert result.steps.tolist() == [1000, 2000, 3000, 4000] and result.returns.tolist() == [10.0, 20.0, 30.0, 40.0]
    assert result.wall_time_s == pytest.approx(200.0 + 50.0) and result.total_steps == 4000


def test_difference_interval_and_probability_of_improvement_have_their_defining_values():
    assert aggregate.probability_of_improvement([2.0, 3.0], [1.0, 2.0]) == 0.875  # pairs: 1, 0.5 (tie), 1, 1
    assert aggregate.probability_of_improvement([1.0], [1.0]) == 0.5  # neither ahead
    assert aggregate.difference_ci([5.0, 5.0], [3.0]) == (2.0, 2.0)  # no spread: a degenerate interval
    low, high = aggregate.difference_ci([10.0, 20.0, 30.0], [0.0, 1.0, 2.0])
    # each resampled mean lies in [10, 30] and [0, 2]; 1/27 of the resamples of the first are all 10 (> 2.5%)
    assert 8.0 <= low < 19.0 < high <= 30.0 and (low, high) == aggregate.difference_ci([10.0, 20.0, 30.0], [0.0, 1.0, 2.0])


def test_tuned_cells_are_compared_with_the_best_fixed_w_of_their_algorithm_in_each_environment(tmp_path):
    def cell(algo, finals, first=0.0, tuned=False):
        for seed, final in enumerate(finals, start=1):
            write_run(
                tmp_path,
                algo,
                "Hopper-v4",
                seed,
                [(2500, first), (5000, final)],
                wall_time=50.0,
                tuned_w=[(4000, 0.01)] if tuned else (),
            )

    cell("nclql-w0.1", [100.0, 200.0, 300.0], first=400.0)  # the best curve mean (300 vs 250), not the best final return
    cell("nclql-w0.5", [400.0, 500.0, 600.0])  # the best final return (500)
    cell("nclql-auto", [450.0, 550.0, 650.0], tuned=True)
    cell("lql-w9", [9000.0, 9000.0, 9000.0])  # another algorithm: never the rival of an NC-LQL cell
    (row,) = aggregate.tuned_against_fixed(aggregate.find_runs(tmp_path)[0])
    final, curve = row["final_return"], row["curve_mean"]
    assert (row["env"], row["tuned"], row["seeds"]) == ("Hopper-v4", "nclql-auto", 3)
    assert (final["best_fixed"], final["tuned_mean"], final["best_fixed_mean"], final["difference"]) == (
        "nclql-w0.5",
        550.0,
        500.0,
        50.0,
    )
    assert final["p_improvement"] == pytest.approx(6 / 9)  # 450 beats 400; 550 beats 400, 500; 650 beats all three
    assert final["ci"] == aggregate.difference_ci([450.0, 550.0, 650.0], [400.0, 500.0, 600.0])
    assert (curve["best_fixed"], curve["best_fixed_mean"], curve["difference"]) == ("nclql-w0.1", 300.0, -25.0)
    markdown = tmp_path / "results.md"
    aggregate.aggregate(tmp_path)
    lines = markdown.read_text().splitlines()
    assert "## Tuned w against the best fixed w of each environment" in lines
    assert "| Hopper-v4 | nclql-auto | 3 | 550.0 vs 500.0 (nclql-w0.5, 3) | +50.0 [" in "\n".join(lines)
    assert not any(line.startswith("| Hopper-v4 | lql") for line in lines if "vs" in line)


def test_no_comparison_section_without_both_tuned_and_fixed_cells(results):
    out, _ = results
    assert "Tuned w against" not in (out / "results.md").read_text()  # fixed cells only


def test_held_out_comparison_picks_the_best_fixed_w_on_the_selection_seeds_and_judges_on_the_others(tmp_path):
    def cell(algo, finals, tuned=False):
        for seed, final in enumerate(finals, start=1):
            evals = [(2500, 0.0), (5000, final)]
            write_run(tmp_path, algo, "Hopper-v4", seed, evals, wall_time=50.0, tuned_w=[(4000, 0.01)] if tuned else ())

    cell("nclql-w0.1", [900.0, 900.0, 100.0, 200.0])  # best on seeds 1-2 (the selection), poor on 3-4
    cell("nclql-w0.5", [500.0, 500.0, 600.0, 700.0])  # better than w0.1 over all four seeds (575 vs 525)
    cell("nclql-auto", [0.0, 0.0, 300.0, 400.0], tuned=True)
    write_run(tmp_path, "nclql-w0.9", "Hopper-v4", 1, [(2500, 0.0), (5000, 9e3)], wall_time=50.0)  # no held-out seed
    results = aggregate.find_runs(tmp_path)[0]
    (pooled,) = aggregate.tuned_against_fixed(results)
    assert pooled["final_return"]["best_fixed"] == "nclql-w0.9" and pooled["seeds"] == 4
    (held_out,) = aggregate.tuned_against_fixed(results, select_seeds={1, 2})
    final = held_out["final_return"]
    assert held_out["seeds"] == 2 and (final["best_fixed"], final["best_fixed_seeds"]) == ("nclql-w0.1", 2)
    assert (final["tuned_mean"], final["best_fixed_mean"], final["difference"]) == (350.0, 150.0, 200.0)
    assert final["p_improvement"] == 1.0 and final["ci"] == aggregate.difference_ci([300.0, 400.0], [100.0, 200.0])
    assert aggregate.tuned_against_fixed(results, select_seeds={1, 2, 3, 4}) == []  # nothing held out to judge on
    assert aggregate.main([str(tmp_path), "--select-seeds", "1,2"]) == 0
    text = (tmp_path / "results.md").read_text()
    assert "## Tuned w against the best fixed w of each environment\n" in text  # the pooled section stays
    assert "picked on seeds 1, 2, compared on the others" in text
    assert "| Hopper-v4 | nclql-auto | 2 | 350.0 vs 150.0 (nclql-w0.1, 2) | +200.0 [" in text


def test_select_seeds_must_be_integers(tmp_path):
    with pytest.raises(SystemExit, match=r"--select-seeds must be comma-separated integers, got '1,x'"):
        aggregate.main([str(tmp_path), "--select-seeds", "1,x"])


def test_results_tables_are_the_aggregators_not_typed_by_hand():
    """Every table row of README.md's results, and the sac-budget table against CleanRL SAC in docs/sac_budget.md, is a
    line of a results.md under docs/results/ that the aggregator wrote."""
    generated = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "docs", "results")):
        if "results.md" in files:
            with open(os.path.join(folder, "results.md")) as f:
                generated.update(line.rstrip("\n") for line in f)

    def rows_of_section(path, title):
        with open(os.path.join(ROOT, path)) as f:
            section = f.read().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
        return [line for line in section.splitlines() if line.startswith("|")]

    readme_rows, sac_budget_rows = rows_of_section("README.md", "Results"), rows_of_section("docs/sac_budget.md", "The tables")
    assert any("reference, same steps" in row for row in sac_budget_rows)  # the table against CleanRL SAC is there
    assert [row for row in readme_rows + sac_budget_rows if row not in generated] == []


def test_gpu_runs_have_their_own_speed_and_are_marked_seed_by_seed_also_when_kept_in_runs_csv(tmp_path):
    """A run whose logged command has --cuda counts in the returns like any seed, but its env steps/s is summarised
    apart from the CPU runs' (a median over both would describe neither machine)."""
    for seed, wall_time, cuda in [(1, 100.0, False), (2, 300.0, False), (3, 10.0, True), (4, 20.0, True)]:
        run_dir = write_run(tmp_path, "nclql", "Hopper-v4", seed, [(5000, 10.0 * seed)], wall_time=wall_time)
        command = f"$ python nclql_continuous_action.py --seed {seed}" + (" --cuda --cudagraphs" if cuda else "")
        (run_dir / "log.txt").write_text(command + "\nglobal_step=5000\n")
    (row,) = aggregate.aggregate(tmp_path)
    assert row["seeds"] == 4 and row["final_return_mean"] == pytest.approx(25.0)
    assert row["env_steps_per_s"] == pytest.approx((50.0 + 5000 / 300) / 2)  # the CPU seeds' median
    assert row["gpu_env_steps_per_s"] == pytest.approx((500.0 + 250.0) / 2) and row["gpu_seeds"] == 2
    assert row["wall_time_s"] == pytest.approx(200.0)  # the CPU seeds'
    markdown = (tmp_path / "results.md").read_text()
    assert "| 33.3; GPU 375.0 (2 of 4) |" in markdown
    assert "| nclql | Hopper-v4 | 1: 12.0, 2: 12.0, 3*: 12.0, 4*: 12.0 |" in markdown
    later = tmp_path / "later"
    later.mkdir()
    shutil.copy(tmp_path / "runs.csv", later / "runs.csv")
    assert [r.on_gpu for r in aggregate.find_runs(later)[0]] == [False, False, True, True]
    gpu_only = tmp_path / "gpu_only"  # no CPU seed: no CPU speed or wall time
    run_dir = write_run(gpu_only, "lql", "Hopper-v4", 1, [(5000, 1.0)], wall_time=10.0)
    (run_dir / "log.txt").write_text("$ python lql_continuous_action.py --cuda\n")
    (row,) = aggregate.aggregate(gpu_only)
    assert math.isnan(row["env_steps_per_s"]) and "| GPU 500.0 (1 of 1) | n/a |" in (gpu_only / "results.md").read_text()


def test_the_sac_reference_table_computes_the_envs_run_here_and_keeps_an_earlier_tables_rows_for_the_others(tmp_path):
    """cleanrl_sac.sh table DIR CSV: windows of the seeds under DIR (CleanRL logs an episode ending at env step s at
    global_step s - 1), mean and sample std over seeds; the earlier CSV's rows for other envs and algorithms kept."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # the reference venv's stand-in:
    (venv_bin / "python").chmod(0o755)  # tensorboard is all the table needs
    for seed, value in [(1, 100.0), (2, 300.0)]:
        run_dir = tmp_path / "HalfCheetah-v4" / f"seed{seed}"
        with SummaryWriter(str(run_dir / "runs" / "sac")) as writer:
            for step in range(9_999, 50_000, 5_000):  # ends at 10k, 15k, ..., 50k: one episode per window from 5-10k
                writer.add_scalar("charts/episodic_return", value + step, step)
        (run_dir / "DONE").touch()
    earlier = tmp_path / "earlier.csv"
    header = "algorithm,env,seeds,steps_from,steps_to,training_return,training_return_std,source\n"
    earlier.write_text(
        header + "cleanrl-sac,HalfCheetah-v4,3,5000,10000,1.0,2.0,old\ncleanrl-sac,Hopper-v4,5,5000,10000,"
        "3.0,4.0,kept\ncleanrl-sac-first,HalfCheetah-v4,1,5000,10000,5.0,,first\n"
    )
    script = os.path.join(ROOT, "benchmarks", "reference", "cleanrl_sac.sh")
    result = subprocess.run(["bash", script, "table", str(tmp_path), str(earlier)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    computed = [r for r in rows if (r["algorithm"], r["env"]) == ("cleanrl-sac", "HalfCheetah-v4")]
    assert [(int(r["steps_from"]), int(r["steps_to"])) for r in computed][:2] == [(5000, 10000), (10000, 15000)]
    assert len(computed) == 10 and {r["seeds"] for r in computed} == {"2"}
    first = computed[0]  # seeds' 10,099 and 10,299: mean 10,199, std 141.4
    assert (float(first["training_return"]), float(first["training_return_std"])) == (10_199.0, 141.4)
    assert "1: 47599, 2: 47799" in first["source"]  # each seed's 40-50k mean: value + (44,999 + 49,999) / 2
    assert [(r["algorithm"], r["env"], r["source"]) for r in rows[10:]] == [
        ("cleanrl-sac", "Hopper-v4", "kept"),
        ("cleanrl-sac-first", "HalfCheetah-v4", "first"),
    ]
    missing = subprocess.run(
        ["bash", script, "table", str(tmp_path), str(tmp_path / "none.csv")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: no such CSV")
