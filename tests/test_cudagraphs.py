"""--cudagraphs (both scripts): replays of the captured CUDA graphs give the eager numbers, with or without
--compile, and a training run with them learns as the plain one does. CUDA only: CI has no GPU, so these run where
torch sees one (`pytest tests -k cudagraphs`); the refusal without --cuda is in each script's bad-input test."""

import copy
import math

import pytest
import torch
from conftest import NEEDS_CUDA, read_scalars, small_update_and_act

import lql_continuous_action as lql
import nclql_continuous_action as nclql

pytestmark = NEEDS_CUDA


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_graph_replays_give_the_eager_numbers(module, compiled):
    """Six updates and six acting calls, each on new inputs and a new w (as --autotune-w passes it): calls 1-3 run
    eagerly (warm-up), call 4 captures, calls 4-6 replay. Every output and the final weights must match eager ones."""
    torch._inductor.config.fallback_random = True  # what train() sets with --compile
    update_fn, act_fn, extra = small_update_and_act(module)
    device, n = "cuda", 32
    torch.manual_seed(0)
    batches = [
        tuple(t.to(device) for t in (torch.randn(n, 4), torch.rand(n, 2) * 2 - 1, torch.rand(n), torch.randn(n, 4)))
        + ((torch.rand(n, device=device) < 0.2).float(),)
        for _ in range(6)
    ]
    temperatures = [torch.tensor(w, device=device) for w in (0.1, 0.05, 0.2, 0.1, 0.02, 0.3)]
    observations = [torch.randn(5, 4, device=device) for _ in range(6)]
    results = []
    for graphed in (False, True):
        update, act = update_fn, act_fn
        if compiled and graphed:
            update, act = torch.compile(update_fn, dynamic=False), torch.compile(act_fn, dynamic=False)
        if graphed:
            update, act = module.CudaGraphed(update), module.CudaGraphed(act)
        torch.manual_seed(0)
        qf = module.CriticEnsemble(obs_dim=4, act_dim=2).to(device)
        qf_target = copy.deepcopy(qf).requires_grad_(False)
        optimizer = torch.optim.Adam(qf.parameters(), lr=1e-3, capturable=graphed)  # as train() builds it
        torch.manual_seed(1)
        outputs = []
        for batch, w, obs in zip(batches, temperatures, observations, strict=True):
            outputs.extend(update(qf, qf_target, optimizer, batch, *extra, w))
            outputs.append(act(qf, obs, *extra, w))
        results.append((outputs, torch.cat([p.flatten() for p in (*qf.parameters(), *qf_target.parameters())])))
        if graphed:  # one graph each, captured once and replayed: not eager calls throughout
            assert len(update.graphs) == 1 and len(act.graphs) == 1
            assert all(calls == 6 for calls in (*update.calls.values(), *act.calls.values()))
    (eager_outputs, eager_params), (graphed_outputs, graphed_params) = results
    per_call = len(eager_outputs) // 6
    assert not torch.allclose(eager_outputs[-1], eager_outputs[-1 - per_call])  # new inputs, new actions: a real check
    for eager, graphed in zip(eager_outputs, graphed_outputs, strict=True):
        assert torch.allclose(graphed, eager, atol=1e-4)
    assert torch.allclose(graphed_params, eager_params, atol=1e-4)  # Adam steps are <= lr = 1e-3


RUN_SETTINGS = dict(  # a short InvertedPendulum run with --autotune-w: every graphed call site (act, update, entropy)
    env_id="InvertedPendulum-v4",
    total_timesteps=240,
    num_envs=2,
    learning_starts=120,
    batch_size=32,
    buffer_size=1000,
    log_frequency=10,
    eval_frequency=200,
    eval_episodes=2,
    autotune_w=True,
    autotune_frequency=5,
    seed=5,
    cuda=True,
)
SMALL = {lql: dict(langevin_steps=4), nclql: dict(num_levels=4)}
# what a logged update writes (losses and sampler diagnostics), the tuner's three once it has stepped, and NC-LQL's
UPDATE_TAGS = {f"losses/qf{i}_{kind}" for i in (1, 2) for kind in ("values", "loss")} | {"losses/qf_loss"}
UPDATE_TAGS |= {"sampler/action_std", "sampler/grad_norm", "sampler/clip_fraction"}
TUNER_TAGS = {"losses/w", "losses/policy_entropy", "losses/target_entropy"}
OWN_TAGS = {lql: set(), nclql: {"losses/nc_loss"}}


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_training_with_cudagraphs_follows_the_plain_run(in_tmp_dir, module, monkeypatch):
    wrappers = []

    class RecordedCudaGraphed(module.CudaGraphed):  # the graph wrappers train() makes, kept to check they replayed
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            wrappers.append(self)

    monkeypatch.setattr(module, "CudaGraphed", RecordedCudaGraphed)
    runs = {}
    for cudagraphs in (False, True):
        args = module.Args(**RUN_SETTINGS, **SMALL[module], cudagraphs=cudagraphs, exp_name=f"graphs{cudagraphs}")
        qf, run_dir = module.train(args)
        runs[cudagraphs] = (torch.cat([p.detach().flatten().cpu() for p in qf.parameters()]), read_scalars(run_dir))
    (plain_params, plain), (graphed_params, graphed) = runs[False], runs[True]
    # 60 updates (one per vector step from env step 122), logged after the first and every 10th: 7 times; the tuner
    # steps every 5th update, so its values are logged from update 10 on: 6 times
    logged_at = [122] + list(range(140, 241, 20))
    tags = {tag for tag in graphed if tag.startswith(("losses/", "sampler/"))}
    assert tags == UPDATE_TAGS | TUNER_TAGS | OWN_TAGS[module]
    for tag in tags:
        expected_steps = logged_at[1:] if tag in TUNER_TAGS else logged_at
        assert [step for step, _ in graphed[tag]] == [step for step, _ in plain[tag]] == expected_steps, tag
    assert all(math.isfinite(v) for _, v in graphed["losses/qf1_loss"] + graphed["eval/episodic_return"])
    # graphs: the update's (one signature) and the acting sampler's (two: 2 states when acting and evaluating, 4 x 64
    # chains for the entropy estimate), each called more than its 3 eager warm-up calls, so replayed
    assert sorted(len(wrapper.graphs) for wrapper in wrappers) == [1, 2]
    assert all(calls > wrapper.warmup_calls for wrapper in wrappers for calls in wrapper.calls.values())
    # The first 3 calls of each signature run eagerly: the update's up to update 3, the acting sampler's up to env step
    # 126, the entropy estimate's up to update 15. From update 20 (env step 160) on, every logged value comes from graph
    # replays; the same seed gives the same transitions and updates, up to float rounding (capturable Adam computes on
    # the GPU), so the replayed values match the plain run's
    for tag in sorted(tags):
        replayed = [(step, value) for step, value in graphed[tag] if step >= 160]
        eager = [(step, value) for step, value in plain[tag] if step >= 160]
        assert [step for step, _ in replayed] == [step for step, _ in eager] == list(range(160, 241, 20)), tag
        assert [v for _, v in replayed] == pytest.approx([v for _, v in eager], rel=1e-3, abs=1e-6), tag
    assert torch.allclose(graphed_params, plain_params, atol=1e-3)
