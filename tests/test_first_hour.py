"""A newcomer's first hour: runs that could never train are refused, progress says what is happening, --threads,
--eval-checkpoint without --env-id, video on a machine without a display, and CleanRL's --track (wandb, offline)."""

import glob
import itertools
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, read_scalars, tiny_run_args

import lql_continuous_action as lql
import nclql_continuous_action as nclql

MODULES = pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])


@MODULES
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(buffer_size=10), "--batch-size 16 exceeds --buffer-size 10: nothing would train"),
        (dict(batch_size=300, buffer_size=200), "--batch-size 300 exceeds --buffer-size 200"),
        (
            dict(learning_starts=5000, total_timesteps=2000),
            "--learning-starts 5000 is not shorter than --total-timesteps 2000",
        ),
        (dict(learning_starts=60), "--learning-starts 60 is not shorter than --total-timesteps 60"),
        (dict(batch_size=100), "--batch-size 100 exceeds --total-timesteps 60"),
        (dict(threads=-1), "--threads must be >= 0"),
    ],
)
def test_runs_that_could_never_train_are_refused_before_anything_is_written(in_tmp_dir, module, overrides, message):
    with pytest.raises(SystemExit) as refusal:
        module.train(tiny_run_args(module, **overrides))
    assert message in str(refusal.value) and "\n" not in str(refusal.value)
    assert not (in_tmp_dir / "runs").exists()


def test_cli_refusal_of_a_run_that_could_never_train_is_one_line_and_nonzero(in_tmp_dir):
    result = subprocess.run(
        [sys.executable, f"{ROOT}/nclql_continuous_action.py", "--learning-starts", "5000", "--total-timesteps", "2000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        "error: --learning-starts 5000 is not shorter than --total-timesteps 2000: "
        "the run would end in the random warm-up, before any update"
    ]
    assert not (in_tmp_dir / "runs").exists()


@MODULES
def test_progress_marks_the_warm_up_then_the_time_left_and_the_first_update_logs_its_losses_at_once(
    in_tmp_dir, monkeypatch, capsys, module
):
    # every time.time() call is 11 s later, so each iteration prints its line; itertools.count, not a generator: the
    # TensorBoard writer's thread reads the clock too, and next() on a C iterator is atomic
    clock = itertools.count(0, 11)
    monkeypatch.setattr(module.time, "time", lambda: float(next(clock)))
    _, run_dir = module.train(tiny_run_args(module, log_frequency=1000, threads=1))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("global_step=") and "/60" in line]
    warm_up = [line for line in lines if line.endswith("warm-up: random actions until step 40")]
    assert [line.split(",")[0] for line in warm_up] == [f"global_step={step}/60" for step in range(2, 41, 2)]
    learning = lines[len(warm_up) :]
    assert learning[0].startswith("global_step=42/60") and learning[0].endswith("time_left=? (measured once learning runs)")
    assert all(re.search(r", updates=\d+, time_left=\d+\.\dmin$", line) for line in learning[1:]) and len(learning) == 10
    scalars = read_scalars(run_dir)
    assert [step for step, _ in scalars["losses/qf1_loss"]] == [42]  # the first update, not the 1000th
    assert [step for step, _ in scalars["sampler/action_std"]] == [42]


@MODULES
def test_with_compile_the_warm_up_line_says_that_compiling_comes_next(in_tmp_dir, capsys, module):
    envs = module.make_vector_env("InvertedPendulum-v4", 0, 1)
    with module.Run(tiny_run_args(module, compile=True, total_timesteps=40), "r", {}, envs) as run:
        run.progress(40, 0)  # the last step prints at once
    line = capsys.readouterr().out.strip()
    assert line.endswith("warm-up: random actions until step 40, then compiling")


@MODULES
def test_threads_sets_torchs_cpu_thread_count(in_tmp_dir, module):
    try:
        _, run_dir = module.train(tiny_run_args(module, threads=2, checkpoint_frequency=60))
        assert torch.get_num_threads() == 2
        # a resumed run may have another share of the cores (the benchmark runner sets --threads per run)
        module.train(tiny_run_args(module, threads=3, total_timesteps=80, resume=f"{run_dir}/checkpoint.pt"))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(1)  # the suite's setting (conftest)
    assert module.Args().threads == 1  # the default: fastest on a shared CPU (docs/speed.md)


@MODULES
def test_training_computes_with_denormal_floats_flushed_to_zero(in_tmp_dir, module):
    # a trained critic's saturated mish yields denormal floats, which x86 computes about 2x slower (docs/speed.md)
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormal floats")
    assert torch.tensor([1e-40]).item() > 0  # a float32 denormal, kept by default
    try:
        module.train(tiny_run_args(module))
        assert torch.tensor([1e-40]).item() == 0
    finally:
        torch.set_flush_denormal(False)


@MODULES
def test_mujoco_renderer_this_machine_lacks_is_refused_with_one_line(in_tmp_dir, module):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = subprocess.run(
        [sys.executable, module.__file__, "--capture-video"],
        env={**env, "MUJOCO_GL": "no-such-renderer"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(errors) == 1 and "use MUJOCO_GL=egl" in errors[0]
    assert not (in_tmp_dir / "videos").exists() and not (in_tmp_dir / "runs").exists()


def headless(monkeypatch, mujoco_gl=None):
    monkeypatch.delenv("DISPLAY", raising=False)
    if mujoco_gl is None:
        monkeypatch.delenv("MUJOCO_GL", raising=False)
    else:
        monkeypatch.setenv("MUJOCO_GL", mujoco_gl)


@MODULES
def test_video_on_a_machine_without_a_display_works_with_the_defaults(in_tmp_dir, monkeypatch, module):
    headless(monkeypatch)
    _, run_dir = module.train(tiny_run_args(module, capture_video=True, num_envs=1))
    videos = glob.glob(f"videos/{os.path.basename(run_dir)}/*.mp4")
    assert videos and all(os.path.getsize(v) > 0 for v in videos)


def test_video_that_cannot_be_rendered_is_refused_before_anything_is_written(in_tmp_dir, monkeypatch):
    headless(monkeypatch, "glfw")  # GLFW needs a display: rendering fails as on a headless server
    with pytest.raises(SystemExit) as refusal:
        lql.train(tiny_run_args(lql, capture_video=True))
    message = str(refusal.value)
    assert message.startswith("error: --capture-video cannot render InvertedPendulum-v4 with MUJOCO_GL=glfw")
    assert "use MUJOCO_GL=egl" in message and "\n" not in message
    assert not (in_tmp_dir / "videos").exists() and not (in_tmp_dir / "runs").exists()


@MODULES
def test_track_syncs_the_tensorboard_logs_to_wandb_offline(in_tmp_dir, monkeypatch, module):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(in_tmp_dir))
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    try:
        _, run_dir = module.train(tiny_run_args(module, track=True, wandb_project_name="lql-test", log_frequency=1))
    finally:
        wandb.teardown()  # wandb keeps its settings (WANDB_DIR) per process: the next test starts afresh
    (offline_run,) = glob.glob(str(in_tmp_dir / "wandb" / "offline-run-*"))
    (records,) = glob.glob(f"{offline_run}/run-*.wandb")
    data = open(records, "rb").read()
    for synced in (b"losses/qf1_loss", b"charts/episodic_return", b"lql-test", os.path.basename(run_dir).encode()):
        assert synced in data, synced  # the scalars, the project and the run's name
    assert "losses/qf1_loss" in read_scalars(run_dir)  # TensorBoard still writes its own files


@MODULES
def test_track_without_wandb_is_refused_with_one_line(in_tmp_dir, monkeypatch, module):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed
    with pytest.raises(SystemExit) as refusal:
        module.train(tiny_run_args(module, track=True))
    assert str(refusal.value) == "error: --track needs wandb: pip install wandb"
    assert not (in_tmp_dir / "runs").exists()
