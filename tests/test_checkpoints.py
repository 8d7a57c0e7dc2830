"""Runs that survive (both scripts): a run interrupted by a signal and resumed from its checkpoint ends exactly as the
uninterrupted run, SIGTERM checkpoints and exits with a resume command, non-finite values stop the run naming the
step, checkpoints are written atomically, saved critics can be evaluated, and bad checkpoints are refused."""

import dataclasses
import math
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import DEVICES, NEEDS_CUDA, ROOT, read_scalars

import lql_continuous_action as lql
import nclql_continuous_action as nclql

SMALL = {  # tiny samplers and batches: seconds per run, every code path kept
    lql: dict(langevin_steps=2),
    nclql: dict(num_levels=2, steps_per_level=1),
}


def tiny_args(module, **overrides):
    settings = dict(
        env_id="InvertedPendulum-v4",  # a MuJoCo env: the simulator state must survive the checkpoint
        total_timesteps=160,
        num_envs=2,
        learning_starts=40,
        batch_size=16,
        eval_frequency=80,
        eval_episodes=2,
        log_frequency=10,
        checkpoint_frequency=60,
        **SMALL[module],
    )
    settings.update(overrides)
    return module.Args(**settings)


def interrupt_at_call(monkeypatch, module, n_calls, signum=signal.SIGINT):
    """Sends `signum` to this process during the n-th environment step of the next run (as Ctrl-C would)."""
    calls = []
    original = module.real_next_observations

    def step_then_signal(*args):
        calls.append(1)
        if len(calls) == n_calls:
            os.kill(os.getpid(), signum)
        return original(*args)

    monkeypatch.setattr(module, "real_next_observations", step_then_signal)


def flat_parameters(qf):
    return torch.cat([p.detach().flatten() for p in qf.parameters()])


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
@pytest.mark.parametrize(
    "settings",
    [
        dict(checkpoint_buffer=True),
        dict(checkpoint_buffer=False),
        dict(checkpoint_buffer=True, autotune_w=True, autotune_frequency=3, autotune_chains=8, target_entropy_per_dim=-3.0),
    ],
    ids=["buffer", "no-buffer", "buffer-autotune"],
)
@pytest.mark.parametrize("device", [*DEVICES, pytest.param("cudagraphs", marks=NEEDS_CUDA)])
def test_interrupted_and_resumed_run_ends_as_the_uninterrupted_one(in_tmp_dir, monkeypatch, module, settings, device):
    # on CUDA the generator's state is checkpointed too; with --cudagraphs the resumed run warms up and captures anew
    settings = dict(settings, cuda=device != "cpu", cudagraphs=device == "cudagraphs")
    with_buffer = settings["checkpoint_buffer"]
    qf_whole, whole_dir = module.train(tiny_args(module, exp_name="whole", **settings))

    with monkeypatch.context() as patch, pytest.raises(SystemExit) as stop:
        interrupt_at_call(patch, module, n_calls=50)  # at env step 100, between two periodic checkpoints
        module.train(tiny_args(module, exp_name="cut", **settings))
    assert stop.value.code == 128 + signal.SIGINT
    (cut_dir,) = [d for d in os.listdir("runs") if "__cut__" in d]
    checkpoint = f"runs/{cut_dir}/checkpoint.pt"
    assert torch.load(checkpoint, weights_only=False, map_location="cpu")["global_step"] == 100
    qf_resumed, resumed_dir = module.train(tiny_args(module, exp_name="cut", resume=checkpoint, **settings))

    assert resumed_dir == f"runs/{cut_dir}"  # the resumed run appends to its own logs
    whole, resumed = read_scalars(whole_dir), read_scalars(resumed_dir)
    assert len(whole["charts/episodic_return"]) > 5
    assert [step for step, _ in whole["eval/episodic_return"]] == [80, 160]  # the final evaluation is the one at 160
    if with_buffer:  # same buffer, same RNG states, same environments: the same run, bit for bit
        tags = ["charts/episodic_return", "charts/episodic_length", "eval/episodic_return", "losses/qf_loss"]
        for tag in tags + (["losses/w", "losses/policy_entropy"] if settings.get("autotune_w") else []):
            assert resumed[tag] == whole[tag], tag
        assert torch.equal(flat_parameters(qf_resumed), flat_parameters(qf_whole))
    else:  # the buffer refills from the resumed policy first: the same run up to the interruption, then it trains on
        before_cut = [(step, value) for step, value in whole["charts/episodic_return"] if step <= 100]
        assert resumed["charts/episodic_return"][: len(before_cut)] == before_cut
        assert [step for step, _ in resumed["eval/episodic_return"]] == [80, 160]
        assert resumed["losses/qf_loss"][-1][0] > 100 and not torch.equal(
            flat_parameters(qf_resumed), flat_parameters(qf_whole)
        )


@NEEDS_CUDA
@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
@pytest.mark.parametrize("graphed_before, graphed_after", [(False, True), (True, False)], ids=["add", "drop"])
def test_cudagraphs_can_be_switched_on_or_off_at_resume(in_tmp_dir, monkeypatch, module, graphed_before, graphed_after):
    """Adam's capturable mode is saved in its state: the resumed run must use its own (a graph needs it on)."""
    qf_whole, _ = module.train(tiny_args(module, exp_name="whole", cuda=True))
    with monkeypatch.context() as patch, pytest.raises(SystemExit):
        interrupt_at_call(patch, module, n_calls=50)
        module.train(tiny_args(module, exp_name="cut", cuda=True, cudagraphs=graphed_before))
    (cut_dir,) = [d for d in os.listdir("runs") if "__cut__" in d]
    resumed_args = tiny_args(
        module, exp_name="cut", cuda=True, cudagraphs=graphed_after, resume=f"runs/{cut_dir}/checkpoint.pt"
    )
    qf_resumed, resumed_dir = module.train(resumed_args)
    losses = read_scalars(resumed_dir)["losses/qf_loss"]
    assert losses[-1][0] > 100 and all(math.isfinite(value) for _, value in losses)  # trained on after the cut
    # the same run up to float rounding: capturable Adam computes its bias corrections on the GPU
    assert torch.allclose(flat_parameters(qf_resumed), flat_parameters(qf_whole), atol=1e-4)


def test_sigterm_checkpoints_flushes_logs_and_says_how_to_resume(in_tmp_dir):
    command = [
        sys.executable,
        os.path.join(ROOT, "lql_continuous_action.py"),
        "--env-id", "InvertedPendulum-v4", "--total-timesteps", "100000", "--num-envs", "1", "--learning-starts", "50",
        "--batch-size", "16", "--langevin-steps", "2", "--eval-frequency", "60", "--eval-episodes", "1",
        "--log-frequency", "5",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # the first evaluation: training has begun
        if "eval_return" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("SIGTERM at global_step=") and "resume with: python" in message and "--resume" in message
    checkpoint = message.split("checkpoint written to ")[1].split(";")[0]
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["global_step"] >= 60 and saved["buffer"]["size"] == saved["global_step"]
    logged = read_scalars(os.path.dirname(checkpoint))
    assert logged["eval/episodic_return"][0][0] == 60 and "losses/qf_loss" in logged  # flushed before exiting


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_non_finite_values_stop_the_run_naming_the_step_and_keep_the_last_checkpoint(in_tmp_dir, monkeypatch, module):
    update_name = "update_critics"
    real_update, calls = getattr(module, update_name), []

    def update_that_diverges(*args):
        outputs = real_update(*args)
        calls.append(1)
        if len(calls) == 50:  # env step 2 * (20 warm-up steps + 50) = 140, after the checkpoint at 120
            outputs = (outputs[0] * float("nan"), *outputs[1:])
        return outputs

    monkeypatch.setattr(module, update_name, update_that_diverges)
    with pytest.raises(SystemExit) as stop:
        module.train(tiny_args(module))
    message = str(stop.value.code)
    assert message.startswith("error: non-finite loss or Q-value at global_step=140 (update 50)")
    checkpoint = message.split("last good checkpoint: ")[1]
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["global_step"] == 120 and all(torch.isfinite(v).all() for v in saved["qf"].values())


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint.pt")
    lql.save_checkpoint(path, {"global_step": 1})

    def crash_midway(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError):
        lql.save_checkpoint(path, {"global_step": 2})
    assert torch.load(path, weights_only=False) == {"global_step": 1}


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
@pytest.mark.parametrize("device", DEVICES)  # critics trained with --cuda are evaluated on the CPU
def test_saved_critics_can_be_evaluated_without_training(in_tmp_dir, monkeypatch, module, device):
    qf, run_dir = module.train(tiny_args(module, exp_name="trained", save_model=True, w=0.05, cuda=device == "cuda"))
    qf = qf.cpu()
    model = f"{run_dir}/trained.cleanrl_model"
    evaluated, real_evaluate = [], module.evaluate

    def recording_evaluate(qf, *args, **kwargs):
        (run_args,) = [a for a in args if isinstance(a, module.Args)]
        evaluated.append((qf, run_args.w))
        return real_evaluate(qf, *args, **kwargs)

    monkeypatch.setattr(module, "evaluate", recording_evaluate)
    returns = module.train(module.Args(eval_checkpoint=model, eval_episodes=3))  # the environment is the checkpoint's
    assert returns.shape == (3,) and (returns >= 1).all()
    ((evaluated_qf, evaluated_w),) = evaluated
    assert evaluated_w == 0.05  # the trained w, not the command line's default 0.1
    assert torch.equal(flat_parameters(evaluated_qf), flat_parameters(qf))  # the saved critics
    assert sorted(os.listdir("runs")) == [os.path.basename(run_dir)]  # evaluation trains nothing and logs nothing


def test_bad_checkpoints_are_refused_with_one_line(in_tmp_dir):
    _, run_dir = lql.train(tiny_args(lql, exp_name="source", total_timesteps=60))
    checkpoint = f"{run_dir}/checkpoint.pt"
    truncated = "truncated.pt"
    with open(checkpoint, "rb") as f, open(truncated, "wb") as g:
        g.write(f.read()[:1000])
    cases = [
        (lql, tiny_args(lql, resume="missing.pt"), "error: no checkpoint at missing.pt"),
        (lql, tiny_args(lql, resume=truncated), "error: cannot read checkpoint truncated.pt (truncated or not a checkpoint"),
        (nclql, tiny_args(nclql, resume=checkpoint), f"error: {checkpoint} is a LQL checkpoint; this script is NC-LQL"),
        (
            lql,
            tiny_args(lql, resume=checkpoint, env_id="Hopper-v4"),
            "was written for InvertedPendulum-v4, not --env-id Hopper-v4",
        ),
        (lql, tiny_args(lql, exp_name="source", resume=checkpoint, w=0.3), "error: --w 0.3 differs from the checkpoint's 0.1"),
        (lql, lql.Args(env_id="Hopper-v4", eval_checkpoint=checkpoint), "was written for InvertedPendulum-v4"),
    ]
    for module, args, expected in cases:
        with pytest.raises(SystemExit) as refused:
            module.train(args)
        assert expected in str(refused.value.code) and "\n" not in str(refused.value.code)
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "nclql_continuous_action.py"),
            "--env-id",
            "InvertedPendulum-v4",
            "--resume",
            truncated,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: cannot read checkpoint")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_autotuned_w_moves_toward_the_target_is_logged_checkpointed_and_used_for_evaluation(in_tmp_dir, module):
    # a uniform-ish early policy has entropy near log 2 = 0.69 > target -3: w must fall
    args = tiny_args(
        module,
        autotune_w=True,
        target_entropy_per_dim=-3.0,
        autotune_frequency=2,
        autotune_chains=8,
        autotune_lr=0.05,
        autotune_cooling_fraction=0.5,  # the target is reached by step 100, well before the run ends
    )
    _, run_dir = module.train(dataclasses.replace(args, save_model=True))
    logged = read_scalars(run_dir)
    w_logged = [value for _, value in logged["losses/w"]]
    assert w_logged[-1] < w_logged[0] < args.w and len(logged["losses/policy_entropy"]) == len(w_logged)
    assert 0 < logged["charts/autotune_time_fraction"][-1][1] < 1
    targets = [value for _, value in logged["losses/target_entropy"]]  # the hot start cools to the target by step 100
    assert math.log(2) > targets[0] > targets[1] and targets[-1] == pytest.approx(-3.0) and len(targets) == len(w_logged)
    saved = torch.load(f"{run_dir}/checkpoint.pt", weights_only=False)
    model = torch.load(f"{run_dir}/{args.exp_name}.cleanrl_model", weights_only=False)
    assert saved["w"] == pytest.approx(float(saved["log_w"].exp())) and model["w"] < saved["w"] < args.w  # still falling
    with pytest.raises(SystemExit, match="--autotune-chains must exceed dim"):
        module.train(dataclasses.replace(args, autotune_chains=2))
