"""benchmarks/reference/sac_seeds.py: CleanRL SAC's runs seed by seed per window, and the two stacks' seeds compared."""

import csv
import importlib.util
import os

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("sac_seeds", os.path.join(ROOT, "benchmarks", "reference", "sac_seeds.py"))
sac_seeds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sac_seeds)


def fake_run(root, env_id, seed, episodes, done=True):
    """A cleanrl_sac.sh run directory: `episodes` are (global_step as CleanRL logs it, return)."""
    run_dir = root / env_id / f"seed{seed}"
    writer = SummaryWriter(str(run_dir / "runs" / f"{env_id}__sac__{seed}"))
    for step, value in episodes:
        writer.add_scalar("charts/episodic_return", value, step)
    writer.close()
    if done:
        (run_dir / "DONE").touch()


def fake_old_table(path, env_id, per_seed):
    """A `cleanrl_sac.sh table` CSV with its 40-50k row naming each seed, as the old stack's reference has."""
    listed = ", ".join(f"{seed}: {value:.0f}" for seed, value in per_seed.items())
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["algorithm", "env", "seeds", "steps_from", "steps_to", "training_return", "training_return_std", "source"]
        )
        mean = np.mean(list(per_seed.values()))
        writer.writerow(
            ["cleanrl-sac", env_id, len(per_seed), 40000, 50000, mean, "", f"... (per seed over 40-50k: {listed})"]
        )
        writer.writerow(["cleanrl-sac", "Hopper-v4", 1, 40000, 50000, 951, "", "a single seed, no list"])


def test_windows_count_an_episode_at_the_step_after_cleanrls_global_step_and_skip_unfinished_runs(tmp_path):
    # logged at 9999: ended at env step 10,000, inside (5k, 10k]; logged at 10,000: ended at 10,001, in (10k, 15k]
    fake_run(tmp_path, "Walker2d-v4", 1, [(6000, 10.0), (9999, 20.0), (10000, 100.0), (44999, 300.0), (45000, 500.0)])
    fake_run(tmp_path, "Walker2d-v4", 2, [(9999, 1.0)], done=False)  # still running: not a finished seed
    table = sac_seeds.per_seed_windows(tmp_path)
    assert set(table.seed) == {1}
    value = {(r.steps_from, r.steps_to): r.training_return for r in table.itertuples()}
    assert value[(5000, 10000)] == 15.0 and value[(10000, 15000)] == 100.0
    assert value[(40000, 45000)] == 300.0 and value[(45000, 50000)] == 500.0 and value[(40000, 50000)] == 400.0
    assert np.isnan(value[(20000, 25000)])  # no episode ended there


def test_old_stack_seeds_are_read_from_the_tables_source_column(tmp_path):
    fake_old_table(tmp_path / "old.csv", "Walker2d-v4", {1: 259, 2: 543, 3: -12})
    assert sac_seeds.old_stack_seeds(tmp_path / "old.csv") == {"Walker2d-v4": {1: 259.0, 2: 543.0, 3: -12.0}}


@pytest.mark.parametrize("shift, verdict", [(0.0, "no difference resolved"), (1000.0, "differs")])
def test_stacks_differ_only_where_the_interval_of_the_difference_excludes_zero(tmp_path, shift, verdict):
    old = {seed: 300.0 + 10 * seed for seed in range(1, 6)}
    fake_old_table(tmp_path / "old.csv", "Walker2d-v4", old)
    for seed, value in old.items():  # each seed's last 10k is one episode per window at the old value, shifted
        fake_run(tmp_path / "new", "Walker2d-v4", seed, [(41000, value + shift), (46000, value + shift)])
    assert sac_seeds.main([str(tmp_path / "new"), str(tmp_path / "old.csv")]) == 0
    row = (tmp_path / "new" / "stacks.md").read_text().splitlines()[4]
    assert row.startswith("| Walker2d-v4 | 5: 330.0 ± 15.8 | 5: ") and row.endswith(f"| {verdict} |")
    assert f"{shift:+,.1f} [" in row  # the difference of the means
    assert (tmp_path / "new" / "cleanrl_sac_seeds.csv").exists()


def test_a_missing_directory_is_refused_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match="error: no such directory"):
        sac_seeds.main([str(tmp_path / "nothing")])


def test_run_skips_a_finished_run_and_starts_an_unfinished_one_afresh(tmp_path):
    """cleanrl_sac.sh run: a run with DONE is kept as it is (a pre-registered run is reported once, never re-run); one
    without DONE is deleted and run again. A stub stands in for the venv's python (it writes what the run would)."""
    import subprocess

    venv = tmp_path / "venv"
    (venv / "cleanrl").mkdir(parents=True)
    (venv / "cleanrl" / "sac_continuous_action.py").write_text("")
    (venv / "bin").mkdir()
    (venv / "bin" / "python").write_text('#!/bin/sh\ncat > /dev/null; echo "ran $*"\n')
    (venv / "bin" / "python").chmod(0o755)
    finished, unfinished = (tmp_path / "Hopper-v4" / f"seed{s}" for s in (101, 102))
    for run_dir in (finished, unfinished):
        run_dir.mkdir(parents=True)
        (run_dir / "log.txt").write_text("the first attempt\n")
    (finished / "DONE").touch()
    script = os.path.join(ROOT, "benchmarks", "reference", "cleanrl_sac.sh")
    for seed in (101, 102):
        result = subprocess.run(["bash", script, "run", str(tmp_path), "Hopper-v4", str(seed)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert (finished / "log.txt").read_text() == "the first attempt\n"  # untouched
    assert "--seed 102" in (unfinished / "log.txt").read_text() and (unfinished / "DONE").exists()  # run again
