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


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_training_with_cudagraphs_follows_the_plain_run(in_tmp_dir, module):
    runs = {}
    for cudagraphs in (False, True):
        args = module.Args(**RUN_SETTINGS, **SMALL[module], cudagraphs=cudagraphs, exp_name=f"graphs{cudagraphs}")
        qf, run_dir = module.train(args)
        runs[cudagraphs] = (torch.cat([p.detach().flatten().cpu() for p in qf.parameters()]), read_scalars(run_dir))
    (plain_params, plain), (graphed_params, graphed) = runs[False], runs[True]
    assert len(graphed["losses/qf1_loss"]) == (240 - 120) // 2 // 10 and "losses/w" in graphed
    assert all(math.isfinite(v) for _, v in graphed["losses/qf1_loss"] + graphed["eval/episodic_return"])
    # the same seed: the same transitions and updates, up to float rounding (capturable Adam computes on the GPU)
    for key in ("losses/qf1_loss", "losses/w", "losses/policy_entropy"):
        first_plain, first_graphed = plain[key][0][1], graphed[key][0][1]
        assert first_graphed == pytest.approx(first_plain, rel=1e-3, abs=1e-6), key
    assert torch.allclose(graphed_params, plain_params, atol=1e-3)
