"""Runs that survive (both scripts, docs/checkpoints.md): a run interrupted by a signal and resumed from its checkpoint
ends where the uninterrupted run ends, with the same number of updates, from the checkpoint's critics and buffer;
--resume PATH restores the run's own flags; SIGTERM checkpoints and exits with a resume command; non-finite values stop
the run naming the step; checkpoints are written atomically and read without unpickling code; saved critics can be
evaluated; bad checkpoints are refused."""

import copy
import dataclasses
import math
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
from conftest import DEVICES, NEEDS_CUDA, ROOT, read_scalars

import lql_continuous_action as lql
import nclql_continuous_action as nclql

MODULES = pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
SMALL = {  # tiny samplers and batches: seconds per run, every code path kept
    lql: dict(langevin_steps=2),
    nclql: dict(num_levels=2, steps_per_level=1),
}


def tiny_args(module, **overrides):
    settings = dict(
        env_id="InvertedPendulum-v4",
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
    return module.Args(**{**settings, **overrides})


def interrupt_at_call(monkeypatch, module, n_calls, signum=signal.SIGINT):
    """Sends `signum` to this process during the n-th environment step of the next run (as Ctrl-C would)."""
    calls, original = [], module.real_next_observations

    def step_then_signal(*args):
        calls.append(1)
        if len(calls) == n_calls:
            os.kill(os.getpid(), signum)
        return original(*args)

    monkeypatch.setattr(module, "real_next_observations", step_then_signal)


def flat_parameters(state_dict):
    return torch.cat([v.detach().flatten().cpu() for v in state_dict.values()])


def final_updates(output):
    """The update count of the last progress line (printed at the last step)."""
    return int(re.findall(r"updates=(\d+)", output)[-1])


@MODULES
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
def test_interrupted_and_resumed_run_ends_where_the_uninterrupted_one_ends(
    in_tmp_dir, monkeypatch, capsys, module, settings, device
):
    settings = dict(settings, cuda=device != "cpu", cudagraphs=device == "cudagraphs")
    _, whole_dir = module.train(tiny_args(module, exp_name="whole", **settings))
    whole_updates = final_updates(capsys.readouterr().out)
    assert whole_updates == (160 - 40) // 2

    with monkeypatch.context() as patch, pytest.raises(SystemExit) as stop:
        interrupt_at_call(patch, module, n_calls=50)  # at env step 100, between two periodic checkpoints
        module.train(tiny_args(module, exp_name="cut", **settings))
    assert stop.value.code == 128 + signal.SIGINT
    (cut_dir,) = [d for d in os.listdir("runs") if "__cut__" in d]
    checkpoint = torch.load(f"runs/{cut_dir}/checkpoint.pt", weights_only=True)
    assert checkpoint["global_step"] == 100 and checkpoint["n_updates"] == (100 - 40) // 2

    resumed_parts, real_restore = {}, module.restore

    def recording_restore(saved, stateful, args):  # what the resumed run starts from
        counters = real_restore(saved, stateful, args)
        resumed_parts.update({name: copy.deepcopy(part.state_dict()) for name, part in stateful.items()})
        return counters

    monkeypatch.setattr(module, "restore", recording_restore)
    capsys.readouterr()
    _, resumed_dir = module.train(module.Args(resume=f"runs/{cut_dir}/checkpoint.pt", cuda=settings["cuda"]))
    resumed_updates = final_updates(capsys.readouterr().out)

    assert resumed_dir == f"runs/{cut_dir}"  # the resumed run appends to its own logs, with its own flags
    assert torch.equal(flat_parameters(resumed_parts["qf"]), flat_parameters(checkpoint["qf"]))
    assert torch.equal(flat_parameters(resumed_parts["qf_target"]), flat_parameters(checkpoint["qf_target"]))
    resumed, whole = read_scalars(resumed_dir), read_scalars(whole_dir)
    assert [step for step, _ in resumed["eval/episodic_return"]] == [80, 160]  # the final evaluation is the one at 160
    before_cut = [(step, value) for step, value in whole["charts/episodic_return"] if step <= 100]
    assert resumed["charts/episodic_return"][: len(before_cut)] == before_cut  # the same run up to the cut
    if settings["checkpoint_buffer"]:  # the buffer as it was, so the run trains on at once: the same number of updates
        rows = checkpoint["rb"]["size"]
        assert rows == 100 and resumed_parts["rb"]["size"] == rows
        for field in lql.ReplayBuffer.FIELDS:
            assert torch.equal(resumed_parts["rb"][field][:rows].cpu(), checkpoint["rb"][field]), field
        assert resumed_updates == whole_updates
        assert resumed["losses/qf_loss"][-1][0] == 160
    else:  # the buffer refills from the resumed policy first (batch_size 16: 7 steps of 2 envs short), then it trains on
        assert "rb" not in checkpoint and resumed_updates == whole_updates - 7
    if settings.get("autotune_w"):  # the tuned w continues from the checkpoint's
        assert torch.equal(resumed_parts["temperature"]["log_w"].cpu(), checkpoint["temperature"]["log_w"])


def test_sigterm_checkpoints_flushes_logs_and_the_printed_command_resumes_the_run(in_tmp_dir):
    command = [
        sys.executable, "-u", os.path.join(ROOT, "lql_continuous_action.py"),
        "--env-id", "InvertedPendulum-v4", "--total-timesteps", "600", "--num-envs", "1", "--learning-starts", "50",
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
    assert message.startswith("SIGTERM at global_step=") and "resume with: python " in message
    checkpoint = message.split("checkpoint written to ")[1].split(";")[0]
    saved = torch.load(checkpoint, weights_only=True)
    assert 60 <= saved["global_step"] < 600 and saved["rb"]["size"] == saved["global_step"]
    logged = read_scalars(os.path.dirname(checkpoint))
    assert logged["eval/episodic_return"][0][0] == 60 and "losses/qf_loss" in logged  # flushed before exiting

    resume = message.split("resume with: ")[1].split()
    assert resume[-2:] == ["--resume", checkpoint]
    result = subprocess.run([sys.executable, "-u", *resume[1:]], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # one update per env step after the warm-up, as in an uninterrupted run
    assert re.findall(r"global_step=600/600, .*updates=(\d+)", result.stdout) == [str(600 - 50)]


def test_resume_takes_the_runs_own_flags_and_refuses_other_values_with_one_line(in_tmp_dir):
    _, run_dir = lql.train(tiny_args(lql, exp_name="source", total_timesteps=60, w=0.05))
    checkpoint = f"{run_dir}/checkpoint.pt"
    for changed, message in [
        (dict(w=0.3), "error: --w 0.3 differs from the checkpoint's 0.05"),
        (dict(env_id="Hopper-v4"), "error: --env-id Hopper-v4 differs from the checkpoint's InvertedPendulum-v4"),
    ]:
        with pytest.raises(SystemExit) as refused:
            lql.train(lql.Args(resume=checkpoint, **changed))
        assert str(refused.value.code).startswith(message) and "\n" not in str(refused.value.code)
    args, _ = lql.from_checkpoint(lql.Args(resume=checkpoint, total_timesteps=80, w=0.05, threads=2))
    assert (args.env_id, args.w, args.langevin_steps, args.total_timesteps, args.threads) == (
        "InvertedPendulum-v4",
        0.05,
        2,
        80,
        2,
    )


@MODULES
def test_non_finite_values_stop_the_run_naming_the_step_and_keep_the_last_checkpoint(in_tmp_dir, monkeypatch, module):
    real_update, calls = module.update_critics, []

    def update_that_diverges(*args):
        outputs = real_update(*args)
        calls.append(1)
        if len(calls) >= 45:  # from env step 2 * (20 warm-up steps + 45) = 130, after the checkpoint at 120
            outputs = (outputs[0] * float("nan"), *outputs[1:])
        return outputs

    monkeypatch.setattr(module, "update_critics", update_that_diverges)
    with pytest.raises(SystemExit) as stop:
        module.train(tiny_args(module))
    message = str(stop.value.code)
    # checked where it is logged (every 10 updates), not after each update: update 50, env step 140
    assert message.startswith("error: non-finite loss or Q-value at global_step=140 (update 50)")
    saved = torch.load(message.split("last good checkpoint: ")[1], weights_only=True)
    assert saved["global_step"] == 120 and all(torch.isfinite(v).all() for v in saved["qf"].values())


@MODULES
def test_a_checkpoint_is_never_written_from_non_finite_critics(in_tmp_dir, monkeypatch, module):
    real_update, calls = module.update_critics, []

    def update_that_poisons_the_critics(qf, *args):
        calls.append(1)
        if len(calls) == 35:  # env step 110, between logging (every 10 updates) and the checkpoint at 120
            with torch.no_grad():
                next(qf.parameters()).fill_(float("inf"))
        return real_update(qf, *args)

    monkeypatch.setattr(module, "update_critics", update_that_poisons_the_critics)
    with pytest.raises(SystemExit) as stop:
        module.train(tiny_args(module, log_frequency=1000))
    assert str(stop.value.code).startswith("error: non-finite critics at global_step=120; last good checkpoint: ")
    (run_dir,) = os.listdir("runs")
    assert torch.load(f"runs/{run_dir}/checkpoint.pt", weights_only=True)["global_step"] == 60


def test_checkpoint_writes_are_atomic(in_tmp_dir, monkeypatch):
    real_save, calls = torch.save, []

    def crash_on_the_second_write(obj, f):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError("disk full")
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", crash_on_the_second_write)
    with pytest.raises(OSError):
        lql.train(tiny_args(lql))
    (run_dir,) = os.listdir("runs")
    assert torch.load(f"runs/{run_dir}/checkpoint.pt", weights_only=True)["global_step"] == 60


@MODULES
def test_saved_critics_are_evaluated_with_their_trained_w_without_training(in_tmp_dir, monkeypatch, module, trained_run):
    run_dir = trained_run(module)
    model = torch.load(f"{run_dir}/trained.cleanrl_model", weights_only=True)
    evaluated, real_evaluate = [], module.evaluate

    def recording_evaluate(qf, *args, **kwargs):
        (run_args,) = [a for a in args if isinstance(a, module.Args)]
        evaluated.append((qf.state_dict(), run_args.w))
        return real_evaluate(qf, *args, **kwargs)

    monkeypatch.setattr(module, "evaluate", recording_evaluate)
    returns = module.train(module.Args(eval_checkpoint=f"{run_dir}/trained.cleanrl_model", eval_episodes=3))
    assert returns.shape == (3,) and (returns >= 1).all()
    ((evaluated_qf, evaluated_w),) = evaluated
    assert evaluated_w == 0.25  # the trained w, not the command line's default
    assert torch.equal(flat_parameters(evaluated_qf), flat_parameters(model["qf"]))  # the saved critics
    assert not os.path.exists("runs")  # evaluation trains nothing and logs nothing
    with pytest.raises(SystemExit, match="error: --env-id Hopper-v4 differs from the checkpoint's InvertedPendulum-v4"):
        module.train(module.Args(eval_checkpoint=f"{run_dir}/trained.cleanrl_model", env_id="Hopper-v4"))


class Payload:  # a pickled object: loading it would run code
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_bad_checkpoints_are_refused_with_one_line(in_tmp_dir, trained_run):
    checkpoint = f"{trained_run(lql)}/checkpoint.pt"
    with open(checkpoint, "rb") as f, open("truncated.pt", "wb") as g:
        g.write(f.read()[:1000])
    torch.save({**torch.load(checkpoint, weights_only=True), "payload": Payload()}, "unsafe.pt")
    torch.save({"weights": torch.zeros(3)}, "foreign.pt")
    cases = [
        (lql, "missing.pt", "error: no checkpoint at missing.pt"),
        (lql, "truncated.pt", "error: cannot read checkpoint truncated.pt (truncated or not a checkpoint"),
        (lql, "unsafe.pt", "error: unsafe.pt holds more than tensors and plain values (loading it could run code)"),
        (lql, "foreign.pt", "error: foreign.pt is not a checkpoint of this project's scripts"),
        (nclql, checkpoint, f"error: {checkpoint} is a LQL checkpoint; this script is NC-LQL"),
    ]
    model = f"{trained_run(lql)}/trained.cleanrl_model"
    with pytest.raises(SystemExit, match=f"error: {model} is a saved model, not a checkpoint: --eval-checkpoint"):
        lql.train(lql.Args(resume=model))
    for module, path, expected in cases:
        for flag in ("resume", "eval_checkpoint"):
            with pytest.raises(SystemExit) as refused:
                module.train(module.Args(**{flag: path}))
            assert str(refused.value.code).startswith(expected) and "\n" not in str(refused.value.code)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "nclql_continuous_action.py"), "--eval-checkpoint", "unsafe.pt"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: unsafe.pt holds more")
    assert "Traceback" not in result.stderr and "this ran while loading" not in result.stdout


@MODULES
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
    saved = torch.load(f"{run_dir}/checkpoint.pt", weights_only=True)
    model = torch.load(f"{run_dir}/{args.exp_name}.cleanrl_model", weights_only=True)
    w_saved, w_final = (math.exp(float(state["temperature"]["log_w"])) for state in (saved, model))
    assert w_final == pytest.approx(w_logged[-1], rel=1e-6) and w_final < w_saved < args.w  # still falling
    with pytest.raises(SystemExit, match="--autotune-chains must exceed dim"):
        module.train(dataclasses.replace(args, autotune_chains=2))
