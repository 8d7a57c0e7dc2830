"""NC-LQL: the annealed sampler against an exact noise-conditioned Gaussian-mixture target, the
noise-conditioning regression against Gaussian-smoothed functions, a short training run, and refusal of bad input."""

import copy
import math
import subprocess
import sys

import pytest
import torch
from conftest import DEVICES, ROOT, read_scalars, tiny_run_args

import lql_continuous_action as lql
import nclql_continuous_action as nclql

MODES, WEIGHTS, S, W = [[-0.5], [0.5]], [0.75, 0.25], 0.08, 0.1


def noise_conditioned_mixture_q(means, weights, s, w, sigmas):
    """Q(a, l) = w log sum_k pi_k N(a; m_k, (s^2 + sigma_l^2) I): the exact sigma_l-smoothing of the level-(L-1) law,
    whose Boltzmann law at temperature w is the mixture itself."""
    means, log_weights = torch.tensor(means), torch.tensor(weights).log()
    variances = [s**2 + float(sigma) ** 2 for sigma in sigmas]

    def q_fn(a, level):
        var = variances[level]
        log_components = -0.5 * ((a[:, None, :] - means) ** 2).sum(-1) / var - 0.5 * a.shape[1] * math.log(var)
        return w * torch.logsumexp(log_weights + log_components, dim=1)

    return q_fn


def test_noise_levels_are_a_geometric_ladder():
    sigmas = nclql.noise_levels(0.1, 0.001, 10)
    assert len(sigmas) == 10 and sigmas[0] == pytest.approx(0.1) and sigmas[-1] == pytest.approx(0.001)
    ratios = sigmas[1:] / sigmas[:-1]
    assert torch.allclose(ratios, ratios[0].expand(9)) and ratios[0] < 1
    assert nclql.noise_levels(0.1, 0.001, 1).tolist() == [0.001]


def near_a_mode(samples, modes=(-0.5, 0.5), within=2 * S):
    """Share of 1-D samples within `within` of one of the modes: 0.954 for the mixture's law, 0.32 for Uniform[-1, 1]."""
    return ((samples[:, :1] - torch.tensor(modes)).abs().min(1).values < within).float().mean().item()


def test_annealed_sampler_recovers_unequal_mode_weights_where_single_scale_does_not():
    sigmas = nclql.noise_levels(1.0, 0.01, 10)  # sigma_max comparable to the distance between the modes
    q_fn = noise_conditioned_mixture_q(MODES, WEIGHTS, S, W, sigmas)
    n = 30_000
    torch.manual_seed(0)
    start = torch.rand(n, 1) * 2 - 1
    # At step_size 1e-4 and 20 steps per level the unadjusted-Langevin bias widens the mid levels (alpha_l ~ their
    # variance) and the split lands near 0.28 instead of 0.25. Here the law of the samples, measured with 200k chains,
    # puts 0.2626 +- 0.001 on the right (the split freezes as the barrier rises: 2e-5 x 200 or 1e-5 x 400 steps give
    # the same) and each mode's std 1.3% +- 0.3% above sqrt(s^2 + sigma_min^2).
    annealed = nclql.annealed_langevin_sample(q_fn, start, W, sigmas, steps_per_level=100, step_size=4e-5)
    single_scale = lql.langevin_sample(lambda a: q_fn(a, len(sigmas) - 1), start, W, 200, 1e-3)
    share_right = (annealed[:, 0] > 0).float().mean().item()
    # SE of the share: sqrt(0.26 * 0.74 / n) = 0.0025: 0.027 is 5.7 SE beyond the freezing bias. The single-scale split
    # stays near its uniform start's 0.5, 9x the tolerance away
    assert share_right == pytest.approx(WEIGHTS[1], abs=0.027)
    assert abs((single_scale[:, 0] > 0).float().mean().item() - WEIGHTS[1]) > 0.15
    assert near_a_mode(single_scale) > 0.9  # the single-scale chains did move: into the wells, not across
    for mode, side in ((-0.5, annealed[:, 0] < 0), (0.5, annealed[:, 0] > 0)):
        around_mode = annealed[side, 0]
        # the smaller (right) mode holds ~7,900 samples: SE of its mean 0.08 / sqrt(7900) = 0.0009 (0.01 is 11 SE), of
        # its std 1 / sqrt(2 * 7900) = 0.8% (6% is 5.4 SE beyond the measured 1.3% + 0.3%)
        assert around_mode.mean().item() == pytest.approx(mode, abs=0.01)
        assert around_mode.std().item() == pytest.approx(math.sqrt(S**2 + 0.01**2), rel=0.06)


def test_authors_narrow_schedule_cannot_cross_between_distant_modes():
    """With sigma_max = 0.1 the widest smoothed critic still has separate modes 1.0 apart: the weights are not recovered
    (the reason the bandit experiment uses a wider schedule), although each chain settles into the well it started in."""
    sigmas = nclql.noise_levels(0.1, 0.001, 10)
    q_fn = noise_conditioned_mixture_q(MODES, WEIGHTS, S, W, sigmas)
    n = 10_000
    torch.manual_seed(0)
    start = torch.rand(n, 1) * 2 - 1
    samples = nclql.annealed_langevin_sample(q_fn, start, W, sigmas, 20, 1e-6)
    # SE of a share near 0.5: 0.005, so the split is 28 SE beyond 0.1 from the weights' 0.25 (it stays near 0.5)
    assert abs((samples[:, 0] > 0).float().mean().item() - WEIGHTS[1]) > 0.1
    # the chains concentrate where Q is high: 0.94 of them within 2 s of a mode (the mixture's law: 0.954; SE 0.0023)
    # against the uniform start's 0.32 -- a sampler that left its start unchanged would fail by 250 SE
    assert near_a_mode(start) < 0.35 and near_a_mode(samples) > 0.9


def test_level_step_sizes_follow_the_schedule():
    """With a flat Q and no clipping, level l adds variance steps * step_size * (sigma_l / sigma_min)^2."""
    sigmas, n = torch.tensor([0.04, 0.02, 0.01]), 80_000
    torch.manual_seed(0)
    samples = nclql.annealed_langevin_sample(
        lambda a, level: torch.zeros(a.shape[0]) + 0 * a.sum(-1), torch.zeros(n, 2), 1.0, sigmas, 3, 1e-5
    )
    expected_var = 3 * 1e-5 * (16 + 4 + 1)
    # SE of a variance: var sqrt(2 / (n - 1)) = 0.5%: rel 0.03 is 6 SE. One step size at every level would give
    # 9e-5 (86% below), a step proportional to sigma_l rather than its square 2.1e-4 (67% below)
    assert samples.var(0).tolist() == pytest.approx([expected_var] * 2, rel=0.03)


def test_annealed_sampler_has_unadjusted_langevins_step_bias_at_every_level():
    """On the exactly smoothed Gaussian Q(a, l) = w log N(a; 0, v_l I), v_l = s^2 + sigma_l^2, a step at level l maps a
    chain's variance v to (1 - alpha_l / (2 v_l))^2 v + alpha_l: from a = 0 that recursion gives the samples' variance,
    drift and noise of every level included. The exact law's v_{L-1} is 27% below it here."""
    sigmas, s, w, step, steps_per_level, n, rel = torch.tensor([0.04, 0.02, 0.01]), 0.01, 0.1, 2e-4, 3, 50_000, 0.04
    q_fn = noise_conditioned_mixture_q([[0.0, 0.0]], [1.0], s, w, sigmas)
    torch.manual_seed(0)
    samples = nclql.annealed_langevin_sample(q_fn, torch.zeros(n, 2), w, sigmas, steps_per_level, step).double()
    modelled = 0.0
    for sigma in sigmas.tolist():  # alpha_l / (4 v_l) = 0.47, 0.4, 0.25: large steps, a large bias
        alpha, v = step * (sigma / sigmas[-1].item()) ** 2, s**2 + sigma**2
        for _ in range(steps_per_level):
            modelled = (1 - alpha / (2 * v)) ** 2 * modelled + alpha
    exact = s**2 + sigmas[-1].item() ** 2
    # SE of a variance: var sqrt(2 / (n - 1)) = 0.63%: rel 0.04 is 6.3 SE; the exact law is 6.8x the tolerance away
    assert samples.var(0).tolist() == pytest.approx([modelled] * 2, rel=rel)
    assert (modelled - exact) / modelled > 3 * rel


def test_level_embedding_is_scaled_by_one_over_sqrt_of_its_size_as_the_authors_do():
    embedding = nclql.sinusoidal_embedding(torch.arange(10), 16)
    assert embedding.shape == (10, 16)
    assert torch.allclose(embedding.norm(dim=1), torch.full((10,), math.sqrt(8) / 4))  # 8 (sin, cos) pairs, / sqrt(16)
    assert embedding[1, 0].item() == pytest.approx(math.sin(1.0) / 4) and embedding[0, 8].item() == pytest.approx(0.25)


def test_noise_conditioning_target_is_the_clean_critics_mean_from_before_the_td_step():
    """The authors compute the regression target of the noise-conditioning step in the TD loss's forward pass, so with
    the parameters from BEFORE the TD step; the second Adam step then applies to the TD-updated parameters."""
    import copy

    args = nclql.Args(num_levels=3, steps_per_level=1)
    sigmas = nclql.noise_levels(args.sigma_max, args.sigma_min, args.num_levels)
    torch.manual_seed(0)
    n, clean = 32, torch.full((1,), 2)
    batch = (torch.randn(n, 4), torch.rand(n, 2) * 2 - 1, torch.rand(n), torch.randn(n, 4), torch.zeros(n))
    obs, actions, rewards, next_obs, terminations = batch
    initial = nclql.CriticEnsemble(obs_dim=4, act_dim=2)

    def updated_critics(target_before_td_step=None):
        """Both Adam steps by hand (None: the script's update_critics); the same random draws in every case."""
        qf = copy.deepcopy(initial)
        qf_target = copy.deepcopy(initial).requires_grad_(False)
        optimizer = torch.optim.Adam(qf.parameters(), lr=1e-2)
        torch.manual_seed(1)
        if target_before_td_step is None:
            nclql.update_critics(qf, qf_target, optimizer, batch, sigmas, args)
            return qf
        next_actions = nclql.sample_actions(qf, next_obs, sigmas, args)
        with torch.no_grad():
            td_target = args.reward_scale * rewards + args.gamma * qf_target(next_obs, next_actions, clean).min(0).values
        q_values = qf(obs, actions, clean)
        optimizer.zero_grad()
        ((q_values - td_target) ** 2).mean(1).sum().backward()
        optimizer.step()
        with torch.no_grad():
            smoothed_target = q_values.mean(0) if target_before_td_step else qf(obs, actions, clean).mean(0)
        optimizer.zero_grad()
        nclql.noise_conditioning_loss(qf, obs, actions, sigmas, smoothed_target).backward()
        optimizer.step()
        return qf

    def parameters(qf):
        return torch.cat([p.detach().flatten() for p in qf.parameters()])

    script, before, after = updated_critics(), updated_critics(True), updated_critics(False)
    assert torch.allclose(parameters(script), parameters(before), atol=1e-6)
    assert not torch.allclose(parameters(script), parameters(after), atol=1e-4)  # the order is visible in the result


def smoothed_regression_target(f, grid, sigma, low=-1.0, high=1.0):
    """The exact minimiser of E[(Q(a + sigma eps) - f(a))^2] for a ~ U[low, high]: E[f(a) | a + sigma eps = x]. Far from
    the data's edges (more than ~3 sigma) it is the Gaussian smoothing E[f(x + sigma eps)]; near them it is truncated."""
    a = torch.linspace(low, high, 4001, dtype=torch.float64)
    kernel = torch.exp(-0.5 * ((grid[:, None].double() - a) / sigma) ** 2)
    return (kernel * f(a)).sum(1) / kernel.sum(1)


def test_noise_conditioning_regression_learns_gaussian_smoothed_critics():
    """Fit Q(a, L-1) to f(a) = sin(3a) and train the other levels with the script's perturbation loss only: each level
    must learn the sigma_l-smoothed f (docs/nclql.md, Overview), which for the small levels is sin(3a) exp(-9 sigma^2 / 2)."""
    torch.manual_seed(0)
    sigmas = nclql.noise_levels(0.4, 0.02, 4)
    qf = nclql.CriticEnsemble(obs_dim=1, act_dim=1, hidden_dim=64)
    optimizer = torch.optim.Adam(qf.parameters(), lr=2e-3)
    obs, clean = torch.zeros(256, 1), torch.full((1,), 3)
    for _ in range(1600):
        actions = torch.rand(256, 1) * 2 - 1
        clean_q = qf(obs, actions, clean)
        clean_loss = ((clean_q - torch.sin(3 * actions[:, 0])) ** 2).mean(1).sum()
        loss = clean_loss + nclql.noise_conditioning_loss(qf, obs, actions, sigmas, clean_q.detach().mean(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    grid = torch.linspace(-0.9, 0.9, 73)
    with torch.no_grad():
        for level, sigma in enumerate(sigmas.tolist()):
            learned = qf(torch.zeros(73, 1), grid[:, None], torch.full((73,), level)).mean(0).double()
            target = smoothed_regression_target(torch.sin, 3 * grid, 3 * sigma, low=-3.0, high=3.0)  # f(a) = sin(3a)
            assert (learned - target).abs().max().item() < 0.06, level
            interior = grid.abs() <= 1 - 3 * sigma  # far enough from the data's edges for the two to agree
            if interior.any():
                gaussian_smoothed = torch.sin(3 * grid[interior]).double() * math.exp(-4.5 * sigma**2)
                assert (learned[interior] - gaussian_smoothed).abs().max().item() < 0.06, level
        widest = qf(torch.zeros(73, 1), grid[:, None], torch.full((73,), 0)).mean(0)
        assert widest.abs().max().item() < 0.8 * torch.sin(3 * grid).abs().max().item()  # really smoothed, not copied


def test_critic_gradient_matches_autograd_at_every_level_and_particles_pick_the_best():
    torch.manual_seed(0)
    qf = nclql.CriticEnsemble(obs_dim=5, act_dim=3)
    obs, actions = torch.randn(16, 5), torch.rand(16, 3) * 2 - 1
    q_fn, grad_fn = nclql.mean_critic(qf, obs)
    for level in (0, 4, 9):
        autograd = nclql.action_gradient(lambda a, level=level: q_fn(a, level), actions)
        assert torch.allclose(grad_fn(actions, level), autograd, atol=1e-6)
    sigmas = nclql.noise_levels(0.1, 0.001, 10)
    args = nclql.Args(num_particles=8)
    torch.manual_seed(1)
    best = nclql.sample_actions(qf, obs, sigmas, args)
    torch.manual_seed(1)  # the same 8 chains per state, all returned
    all_chains = nclql.sample_actions(qf, obs.repeat_interleave(8, 0), sigmas, nclql.Args(num_particles=1))
    clean = torch.full((1,), 9)
    with torch.no_grad():
        scores = qf(obs.repeat_interleave(8, 0), all_chains, clean).min(0).values.view(16, 8)
        assert torch.allclose(qf(obs, best, clean).min(0).values, scores.max(1).values)
    assert all(p.grad is None for p in qf.parameters())


def short_run_args(**overrides):  # longer than conftest's tiny run: several logs, an evaluation
    settings = dict(total_timesteps=240, learning_starts=120, batch_size=32, buffer_size=1000, log_frequency=10)
    return tiny_run_args(
        nclql, **{**settings, **dict(eval_frequency=200, num_levels=4, steps_per_level=2, seed=3), **overrides}
    )


def noisy_level_gaps(qf, obs, actions, n_levels):
    """For each noisy level l < L-1, the rms over the batch and the critics of Q_i(s, a, l) minus the clean critics' mean
    Q(s, a, L-1), the noise-conditioning step's target; and the clean critics' mean."""
    at_level = lambda level: torch.full((1,), level, device=obs.device)
    with torch.no_grad():
        clean = qf(obs, actions, at_level(n_levels - 1)).mean(0)
        gaps = [(qf(obs, actions, at_level(level)) - clean).pow(2).mean().sqrt().item() for level in range(n_levels - 1)]
    return torch.tensor(gaps), clean.cpu()


def updated_on_one_batch(device, n_updates=30, seed=0):
    """The noisy levels' gaps (noisy_level_gaps) after `n_updates` update_critics calls on one batch of terminal
    transitions (TD targets 0.2 r in [1, 2], far from the initial Q ~ 0), and how far the clean critics' mean moved."""
    torch.manual_seed(seed)
    n = 32
    batch = (torch.randn(n, 4), torch.rand(n, 2) * 2 - 1, 5 + 5 * torch.rand(n), torch.randn(n, 4), torch.ones(n))
    batch = tuple(t.to(device) for t in batch)
    args = nclql.Args(num_levels=4, steps_per_level=1)
    sigmas = nclql.noise_levels(args.sigma_max, args.sigma_min, args.num_levels)
    qf = nclql.CriticEnsemble(obs_dim=4, act_dim=2).to(device)
    qf_target = copy.deepcopy(qf).requires_grad_(False)
    optimizer = torch.optim.Adam(qf.parameters(), lr=1e-3)
    clean_before = noisy_level_gaps(qf, batch[0], batch[1], 4)[1]
    for _ in range(n_updates):
        nclql.update_critics(qf, qf_target, optimizer, batch, sigmas, args)
    gaps, clean_after = noisy_level_gaps(qf, batch[0], batch[1], 4)
    return gaps, (clean_after - clean_before).pow(2).mean().sqrt().item()


@pytest.mark.parametrize("device", DEVICES)
def test_short_training_run_updates_every_level_and_logs(in_tmp_dir, device, monkeypatch):
    args = short_run_args(save_model=True, cuda=device == "cuda")
    torch.manual_seed(args.seed)
    initial = nclql.CriticEnsemble(4, 1)
    qf, run_dir = nclql.train(args)
    assert all(p.device.type == device for p in qf.parameters())
    qf = qf.cpu()
    assert all(not torch.equal(p, p0) for p, p0 in zip(qf.parameters(), initial.parameters(), strict=True))
    scalars = read_scalars(run_dir)
    for key in ["charts/episodic_return", "charts/episodic_length", "charts/SPS", "eval/episodic_return", "losses/nc_loss"]:
        assert key in scalars, key
    for key in [f"losses/qf{i}_{kind}" for i in (1, 2) for kind in ("loss", "values")]:
        assert [step for step, _ in scalars[key]] == [122] + list(range(140, 241, 20)), key  # the first, every 10th
    assert all(value > 0 and math.isfinite(value) for _, value in scalars["losses/nc_loss"])
    assert [step for step, _ in scalars["eval/episodic_return"]] == [200, 240]  # periodic, then the final one
    saved = torch.load(f"{run_dir}/{args.exp_name}.cleanrl_model", map_location="cpu")
    assert saved["args"]["num_levels"] == 4 and set(saved) >= {"qf", "args"}  # the model file holds no target critics

    # Every level's critic is trained, not only the clean one. The TD step alone changes every level's Q (the layers are
    # shared), so the check is what only the noise-conditioning step does: carry the noisy levels onto the clean
    # critics' mean. On one batch, 30 updates move that mean by ~1.5, and every noisy level stays within 5% of the move
    # (at this seed 2.1%; seeds 0-7: at most 4.7%). With the step's loss patched to zero (the TD step and both Adam
    # steps unchanged) the noisy levels lag: the worst by 17.7% of the move at this seed (seeds 0-7: at least 8.2%).
    gaps, moved = updated_on_one_batch(device)
    assert moved > 1.0 and (gaps < 0.05 * moved).all(), (gaps / moved, moved)
    original = nclql.noise_conditioning_loss
    monkeypatch.setattr(nclql, "noise_conditioning_loss", lambda *inputs: 0 * original(*inputs))
    gaps_without, moved_without = updated_on_one_batch(device)
    assert moved_without > 1.0 and gaps_without.max() > 0.05 * moved_without  # the same check fails without the step


def test_same_seed_gives_the_same_numbers_on_cpu(in_tmp_dir):
    first_qf, first_dir = nclql.train(short_run_args(eval_frequency=0))
    second_qf, second_dir = nclql.train(short_run_args(eval_frequency=0, exp_name="again"))
    assert all(torch.equal(a, b) for a, b in zip(first_qf.parameters(), second_qf.parameters(), strict=True))
    first, second = read_scalars(first_dir), read_scalars(second_dir)
    for key in ("losses/qf1_loss", "losses/nc_loss", "charts/episodic_return"):
        assert first[key] == second[key]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(sigma_max=0.001, sigma_min=0.01), "must be > --sigma-min"),
        (dict(sigma_max=0.01, sigma_min=0.01), "must be > --sigma-min"),
        (dict(num_levels=0), "--num-levels must be >= 1"),
        (dict(sigma_min=0.0), "--sigma-min must be > 0"),
        (dict(steps_per_level=0), "--steps-per-level must be >= 1"),
        (dict(step_size=-1e-4), "--step-size must be > 0"),
        (dict(num_particles=0), "--num-particles must be >= 1"),
        (dict(env_id="Pendulum-v99"), "cannot make --env-id 'Pendulum-v99'"),
    ],
)
def test_bad_nclql_input_is_refused_before_training(in_tmp_dir, overrides, message):
    """NC-LQL's own flags; the flags both scripts share are refused as tested in test_lql.py."""
    with pytest.raises(SystemExit) as refusal:
        nclql.train(short_run_args(**overrides))
    assert message in str(refusal.value) and "\n" not in str(refusal.value)
    assert not (in_tmp_dir / "runs").exists()


def test_cli_bad_schedule_exits_nonzero_with_one_line(in_tmp_dir):
    result = subprocess.run(
        [sys.executable, f"{ROOT}/nclql_continuous_action.py", "--sigma-max", "0.0001"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--sigma-max" in errors[0] and "Traceback" not in result.stderr
