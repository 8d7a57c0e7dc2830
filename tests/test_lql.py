"""LQL: the Langevin sampler against analytic Boltzmann targets, the replay buffer and gymnasium 1.x
autoreset handling, a short training run, and refusal of bad input."""

import dataclasses
import math
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import DEVICES, ROOT, read_scalars, small_update_and_act, tiny_run_args

import lql_continuous_action as lql
import nclql_continuous_action as nclql


def quadratic_q(mu, precision):
    """Q(a) = -(a - mu)^T P (a - mu) / 2, whose Boltzmann law at temperature w is N(mu, w P^-1)."""
    return lambda a: -0.5 * (((a - mu) @ precision) * (a - mu)).sum(-1)


def ula_covariance(precision, w, eps):
    """Stationary covariance of unadjusted Langevin on that quadratic: per eigen-direction lambda of P,
    w / (lambda (1 - eps lambda / (4 w))) (docs/lql.md#step-size)."""
    lam, vectors = torch.linalg.eigh(precision.double())
    return (vectors * (w / (lam * (1 - eps * lam / (4 * w))))) @ vectors.T


def run_chains(q_fn, n_chains, dim, w, n_steps, eps, grad_norm=False, seed=0, device="cpu"):
    torch.manual_seed(seed)
    start = torch.rand(n_chains, dim, device=device) * 2 - 1
    return lql.langevin_sample(q_fn, start, w, n_steps, eps, grad_norm=grad_norm).double()


def test_isotropic_quadratic_matches_boltzmann_with_known_step_bias():
    # eps p / (4 w) = 0.25: ULA's stationary variance w / (p (1 - 0.25)) is 4/3 of the Boltzmann law's w / p. A step
    # contracts by 1 - eps p / (2 w) = 0.5, so after 200 steps the chains are n iid draws of the stationary Gaussian.
    mu, p, w, eps, n, rel = torch.tensor([0.2, -0.3]), 10.0, 0.01, 1e-3, 30_000, 0.05
    samples = run_chains(quadratic_q(mu, p * torch.eye(2)), n, 2, w, 200, eps)
    expected_var = w / (p * (1 - eps * p / (4 * w)))
    # SE of a mean sqrt(var / n) = 2.1e-4: atol 14 SE; of a variance var sqrt(2 / (n - 1)) = 0.82%: rel 6.1 SE
    assert torch.allclose(samples.mean(0), mu.double(), atol=3e-3)
    assert samples.var(0) == pytest.approx([expected_var] * 2, rel=rel)
    # the Boltzmann variance w / p lies 25% below the modelled one, 5x the tolerance: a sampler without the step
    # bias would fail (the bias is real, so the formula is what matches)
    assert (expected_var - w / p) / expected_var > 3 * rel


@pytest.mark.parametrize("device", DEVICES)
def test_anisotropic_quadratic_matches_boltzmann_covariance(device):
    """Compared in P's eigenbasis, where the ULA covariance is diagonal: variance w / (lam (1 - eps lam / (4 w))) along
    each eigenvector lam of P, and no correlation between the two."""
    mu, w, eps, n, rel = torch.tensor([-0.1, 0.25]), 0.02, 7e-4, 50_000, 0.035
    precision = torch.tensor([[30.0, 10.0], [10.0, 20.0]])  # eigenvalues 36.2 and 13.8; w P^-1 has correlation -0.41
    # eps lam / (4 w) = 0.32 and 0.12; the slower direction contracts by 1 - 2 * 0.12 = 0.76 a step: stationary in 150
    samples = run_chains(quadratic_q(mu.to(device), precision.to(device)), n, 2, w, 150, eps, device=device)
    assert samples.device.type == device
    samples, vectors = samples.cpu(), torch.linalg.eigh(precision.double()).eigenvectors
    in_eigenbasis = lambda covariance: vectors.T @ covariance @ vectors
    measured, modelled = in_eigenbasis(torch.cov(samples.T)), in_eigenbasis(ula_covariance(precision, w, eps))
    boltzmann = in_eigenbasis(w * torch.linalg.inv(precision.double()))
    # SE of a mean sqrt(var / n) <= 1.9e-4: atol 21 SE; of a variance var sqrt(2 / (n - 1)) = 0.63%: rel 5.5 SE
    assert torch.allclose(samples.mean(0), mu.double(), atol=4e-3)
    assert measured.diagonal().tolist() == pytest.approx(modelled.diagonal().tolist(), rel=rel)
    # SE of a correlation near 0: 1 / sqrt(n) = 0.0045: 0.025 is 5.5 SE
    assert abs(measured[0, 1]) / (measured[0, 0] * measured[1, 1]).sqrt() < 0.025
    assert torch.cov(samples.T)[0, 1] < 0  # the correlation of w P^-1 is recovered, not just the marginals
    # the Boltzmann variances lie 32% and 12% below the modelled ones: >= 3.4x the tolerance in both directions
    assert ((modelled.diagonal() - boltzmann.diagonal()) / modelled.diagonal()).min() > 3 * rel


def test_variance_is_proportional_to_temperature():
    mu, p, n, rel = torch.zeros(1), 20.0, 30_000, 0.05
    variances = []
    for w in (0.005, 0.01, 0.02):
        eps = 0.05 * w  # eps / w fixed: eps p / (4 w) = 0.25 at every w, so var(w) / w must be constant
        variances.append(run_chains(quadratic_q(mu, p * torch.eye(1)), n, 1, w, 200, eps).var().item())
    ratios = np.array(variances) / np.array([0.005, 0.01, 0.02])
    modelled = 1 / (p * (1 - 0.05 * p / 4))
    # SE of a variance: var sqrt(2 / (n - 1)) = 0.82%: rel 6.1 SE
    assert ratios == pytest.approx([modelled] * 3, rel=rel)
    assert (modelled - 1 / p) / modelled > 3 * rel  # Boltzmann's 1 / p is 25% below: 5x the tolerance


def test_actions_stay_within_bounds_under_a_strong_outward_pull():
    q_fn = quadratic_q(torch.tensor([3.0, -3.0, 0.0]), 50 * torch.eye(3))
    samples = run_chains(q_fn, 4096, 3, 0.05, 30, 0.05)
    assert samples.abs().max() <= 1.0
    assert (samples[:, 0] == 1.0).float().mean() > 0.9 and (samples[:, 1] == -1.0).float().mean() > 0.9


def test_grad_norm_has_its_own_laplace_like_stationary_law():
    # With g / ||g||, the drift has constant speed: the stationary density is exp(-||a - mu|| / w), whatever the
    # precision. In 2-D the radius r = ||a - mu|| is then Gamma(2, w): E[r] = 2 w, Var[r] = 2 w^2 (kurtosis 6). The law
    # is modelled without a step correction; at this step, measured with 200k chains (from mu, or after 1500 steps from
    # the uniform start), E[r] is 0.9% +- 0.16% above 2 w and Var[r] within 1.5% of 2 w^2.
    mu, w, eps, n = torch.tensor([0.1, -0.1]), 0.05, 2e-4, 20_000
    torch.manual_seed(0)
    start = mu.expand(n, 2).clone()  # all chains at the mode: a sampler that did nothing would give r = 0
    samples = lql.langevin_sample(quadratic_q(mu, 40 * torch.eye(2)), start, w, 600, eps, grad_norm=True).double()
    r = (samples - mu.double()).norm(dim=-1)
    # SE of the mean: sqrt(2 w^2 / n) / 2 w = 0.5%: rel 0.04 is 5.6 SE beyond a step bias of 1.2%
    assert r.mean().item() == pytest.approx(2 * w, rel=0.04)
    # SE of a variance with kurtosis 6: var sqrt(5 / n) = 1.6%: rel 0.1 is 5.4 SE beyond a step bias of 1.5%
    assert r.var().item() == pytest.approx(2 * w**2, rel=0.1)
    # the Boltzmann law N(mu, w / 40 I) has a Rayleigh radius: E[r] = sqrt(pi w / 80) = 0.044, 56% below 2 w (14x the
    # tolerance), and Var[r] = (2 - pi / 2) w / 40 = 5.4e-4, 89% below 2 w^2 (8.9x)
    assert math.sqrt(math.pi * w / 80) < (1 - 3 * 0.04) * 2 * w and (2 - math.pi / 2) * w / 40 < (1 - 3 * 0.1) * 2 * w**2


def mixture_q(means, weights, s, w):
    """Q(a) = w log sum_k pi_k N(a; m_k, s^2): the Boltzmann law at temperature w is the mixture itself."""
    means, log_weights = torch.tensor(means), torch.tensor(weights).log()

    def q_fn(a):
        log_components = -0.5 * ((a[:, None, :] - means) ** 2).sum(-1) / s**2
        return w * torch.logsumexp(log_weights + log_components, dim=1)

    return q_fn


def test_single_scale_langevin_keeps_the_uniform_split_of_unequal_modes():
    """The limitation the paper names: between separated modes, single-scale chains keep the split of their uniform
    start (about 50/50) instead of the target's 80/20. NC-LQL's test shows the annealed sampler fixing this."""
    w, s = 0.1, 0.08
    q_fn = mixture_q([[-0.5], [0.5]], [0.8, 0.2], s, w)
    samples = run_chains(q_fn, 10_000, 1, w, 200, 1e-3)
    share_right = (samples[:, 0] > 0).double().mean().item()
    assert abs(share_right - 0.5) < 0.05
    assert abs(share_right - 0.2) > 0.25
    left = samples[samples[:, 0] < 0, 0]
    assert left.std().item() == pytest.approx(s, rel=0.15)  # each mode itself is sampled correctly


def test_critic_gradient_matches_autograd_and_leaves_no_parameter_gradients():
    torch.manual_seed(0)
    qf = lql.CriticEnsemble(obs_dim=5, act_dim=3)
    obs, actions = torch.randn(64, 5), torch.rand(64, 3) * 2 - 1
    q_fn, grad_fn = lql.mean_critic(qf, obs)
    assert torch.allclose(grad_fn(actions), lql.action_gradient(q_fn, actions), atol=1e-6)
    assert torch.allclose(lql.mish(obs), torch.nn.functional.mish(obs), atol=1e-6)
    args = lql.Args(w=0.1, langevin_steps=5)
    sampled = lql.sample_actions(qf, obs, args)
    assert sampled.shape == (64, 3) and sampled.abs().max() <= 1 and not sampled.requires_grad
    assert all(p.grad is None for p in qf.parameters())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_compiled_update_and_sampler_give_eager_numbers_up_to_rounding(module, device):
    """--compile makes eager's random draws (fallback_random): two updates and an acting call from the same state and
    seed, eager vs torch.compile'd, agree to float rounding (without fallback_random this fails)."""
    import copy

    torch._inductor.config.fallback_random = True  # what train() sets with --compile
    update_fn, act_fn, extra = small_update_and_act(module)
    torch.manual_seed(0)
    n = 16
    batch = tuple(
        t.to(device)
        for t in (torch.randn(n, 4), torch.rand(n, 2) * 2 - 1, torch.rand(n), torch.randn(n, 4), (torch.rand(n) < 0.2).float())
    )
    results = []
    for update, act in ((update_fn, act_fn), (torch.compile(update_fn, dynamic=False), torch.compile(act_fn, dynamic=False))):
        torch.manual_seed(0)
        qf = module.CriticEnsemble(obs_dim=4, act_dim=2).to(device)
        qf_target = copy.deepcopy(qf).requires_grad_(False)
        optimizer = torch.optim.Adam(qf.parameters(), lr=1e-3)
        torch.manual_seed(1)
        outputs = [update(qf, qf_target, optimizer, batch, *extra) for _ in range(2)]
        outputs.append(act(qf, batch[0][:5], *extra))
        results.append((outputs, torch.cat([p.flatten() for p in (*qf.parameters(), *qf_target.parameters())])))
    (eager_outputs, eager_params), (compiled_outputs, compiled_params) = results
    assert torch.allclose(compiled_params, eager_params, atol=1e-4)  # Adam steps are <= lr = 1e-3; float noise ~1e-5
    for eager, compiled in zip(eager_outputs[:2], compiled_outputs[:2], strict=True):
        for e, c in zip(eager, compiled, strict=True):
            assert torch.allclose(c, e, atol=1e-4)
    assert torch.allclose(compiled_outputs[2], eager_outputs[2], atol=1e-4)


@pytest.mark.parametrize("module", [lql, nclql])
def test_linear_layers_use_the_authors_truncated_normal_init_with_zero_biases(module):
    """haiku's Linear default, which the authors keep: N(0, 1/fan_in) truncated at 2 stddev and not rescaled (so the
    actual std is 0.880/sqrt(fan_in)); zero biases. The first layer's fan-in is that of concat(s, a[, embedding])."""
    torch.manual_seed(0)
    layer = module.EnsembleLinear(2, 400, 300)
    bound = 2 / math.sqrt(400)
    assert layer.weight.abs().max().item() <= bound and layer.weight.abs().max().item() > 0.99 * bound
    assert layer.weight.std().item() == pytest.approx(0.8796 / math.sqrt(400), rel=0.01)
    assert torch.count_nonzero(layer.bias) == 0
    qf = module.CriticEnsemble(obs_dim=11, act_dim=3)
    fan_in = 11 + 3 + (16 if module is nclql else 0)
    assert qf.state_in.weight.abs().max().item() <= 2 / math.sqrt(fan_in)
    assert qf.state_in.weight.std().item() == pytest.approx(0.8796 / math.sqrt(fan_in), rel=0.05)
    assert all(torch.count_nonzero(p) == 0 for name, p in qf.named_parameters() if name.endswith("bias"))


@pytest.mark.parametrize("module", [lql, nclql])
def test_evaluation_runs_the_authors_20_episodes_by_default(module):
    assert module.Args().eval_episodes == 20


def test_replay_buffer_wraps_around_and_samples_stored_transitions():
    rb = lql.ReplayBuffer(capacity=5, obs_dim=2, act_dim=1, device="cpu")
    for step in range(4):  # 2 envs per step: 8 transitions into 5 slots
        ids = np.array([2 * step, 2 * step + 1], dtype=np.float32)
        rb.add(np.stack([ids, ids], 1), np.stack([ids + 0.5, ids], 1), ids[:, None] / 10, ids, ids % 2)
    assert rb.size == 5 and rb.pos == 3
    assert sorted(rb.rewards.tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]  # the oldest three were overwritten
    obs, actions, rewards, next_obs, terminations = rb.sample(1000)
    assert obs.shape == (1000, 2) and actions.shape == (1000, 1) and rewards.shape == (1000,)
    assert set(rewards.tolist()) == {3.0, 4.0, 5.0, 6.0, 7.0}  # uniform over what is stored, nothing else
    assert torch.equal(obs[:, 0], rewards) and torch.equal(next_obs[:, 0], rewards + 0.5)
    assert torch.allclose(actions[:, 0], rewards / 10) and torch.equal(terminations, rewards % 2)


def test_autoreset_transitions_bootstrap_truncations_and_never_span_a_reset():
    envs = lql.make_vector_env("CountdownEnv-v0", seed=0, num_envs=2)
    obs, _ = envs.reset(seed=0)
    stored, episodes = [], []
    for _ in range(40):
        next_obs, _, terminations, truncations, infos = envs.step(np.zeros((2, 1), np.float32))
        real_next = lql.real_next_observations(next_obs, terminations, truncations, infos)
        stored += list(zip(obs, real_next, terminations, truncations, strict=True))
        if "episode" in infos:
            episodes += [int(infos["episode"]["l"][i]) for i in np.flatnonzero(infos["_episode"])]
        obs = next_obs
    envs.close()
    for o, o_next, terminated, truncated in stored:
        assert o_next[0] == o[0] and o_next[1] == o[1] + 1  # same episode, one step on: no transition spans a reset
        even_episode = o[0] % 2 == 0
        assert terminated == (even_episode and o_next[1] == 3)  # terminations only where the env terminated
        assert truncated == (not even_episode and o_next[1] == 5)  # time-limit ends are truncations, not terminations
    assert any(t for *_, t, _ in stored) and any(t for *_, t in stored)
    assert set(episodes) == {3, 5}  # episode statistics are reported for every env's episodes


def test_actions_map_from_the_unit_box_linearly_onto_the_bounds():
    space = gym.spaces.Box(np.array([-3.0, 0.0]), np.array([3.0, 2.0]))
    out = lql.to_env_actions(np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 0.5]]), space)
    assert out.dtype == np.float32 and np.allclose(out, [[-3.0, 0.0], [0.0, 1.0], [3.0, 1.5]])


def short_run_args(**overrides):  # longer than conftest's tiny run: several logs, an evaluation
    settings = dict(total_timesteps=240, learning_starts=120, batch_size=32, buffer_size=1000, log_frequency=10)
    return tiny_run_args(lql, **{**settings, **dict(eval_frequency=200, langevin_steps=4, seed=7), **overrides})


@pytest.mark.parametrize("device", DEVICES)
def test_short_training_run_updates_the_critics_and_logs(in_tmp_dir, device):
    args = short_run_args(save_model=True, cuda=device == "cuda")
    torch.manual_seed(args.seed)
    initial = lql.CriticEnsemble(4, 1)  # train() seeds torch, then builds its critic first: the same initial weights
    qf, run_dir = lql.train(args)
    assert all(p.device.type == device for p in qf.parameters())
    changed = [not torch.equal(p.cpu(), p0) for p, p0 in zip(qf.parameters(), initial.parameters(), strict=True)]
    assert all(changed)  # every layer received gradient updates
    scalars = read_scalars(run_dir)
    for key in ["charts/episodic_return", "charts/episodic_length", "charts/SPS", "eval/episodic_return"] + [
        f"losses/qf{i}_{kind}" for i in (1, 2) for kind in ("loss", "values")
    ]:
        assert key in scalars, key
    # one update per vector step, logged after the first and every 10th
    assert [step for step, _ in scalars["losses/qf1_loss"]] == [122] + list(range(140, 241, 20))
    assert [step for step, _ in scalars["eval/episodic_return"]] == [200, 240]  # periodic, then the final one
    assert {"sampler/action_std", "sampler/grad_norm", "sampler/clip_fraction"} <= set(scalars)
    assert all(math.isfinite(value) for _, value in scalars["losses/qf1_loss"] + scalars["eval/episodic_return"])
    saved = torch.load(f"{run_dir}/{args.exp_name}.cleanrl_model", map_location="cpu")  # a GPU run's model loads anywhere
    assert saved["args"]["env_id"] == "InvertedPendulum-v4"
    reloaded = lql.CriticEnsemble(4, 1)
    reloaded.load_state_dict(saved["qf"])
    assert all(torch.equal(a, b.cpu()) for a, b in zip(reloaded.parameters(), qf.parameters(), strict=True))


def test_same_seed_gives_the_same_numbers_on_cpu(in_tmp_dir):
    first_qf, first_dir = lql.train(short_run_args(eval_frequency=0))
    second_qf, second_dir = lql.train(short_run_args(eval_frequency=0, exp_name="again"))
    assert all(torch.equal(a, b) for a, b in zip(first_qf.parameters(), second_qf.parameters(), strict=True))
    first, second = read_scalars(first_dir), read_scalars(second_dir)
    for key in ("losses/qf1_loss", "charts/episodic_return", "eval/episodic_return"):
        assert first[key] == second[key]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(w=0.0), "--w must be > 0"),
        (dict(step_size=0.0), "--step-size must be > 0"),
        (dict(env_id="NoSuchEnv-v0"), "cannot make --env-id 'NoSuchEnv-v0' (Environment `NoSuchEnv` doesn't exist"),
        (dict(env_id="CartPole-v1"), "Discrete action space"),
        (dict(cudagraphs=True), "--cudagraphs needs --cuda"),
        (dict(autotune_w=True, target_entropy_per_dim=0.7), "--target-entropy-per-dim 0.7 is unreachable"),  # > log 2
        (dict(autotune_w=True, autotune_lr=1.5), "--autotune-lr in (0, 1]"),
        (dict(autotune_w=True, autotune_lr=0.0), "--autotune-lr in (0, 1]"),
        (dict(autotune_w=True, autotune_cooling_fraction=1.5), "--autotune-cooling-fraction must be in [0, 1]"),
        (dict(autotune_w=True, autotune_cooling_fraction=-0.1), "--autotune-cooling-fraction must be in [0, 1]"),
    ],
)
@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_bad_input_is_refused_before_training(in_tmp_dir, module, overrides, message):
    """Both scripts' shared flags; each script's own are below and in test_nclql.py. InvertedPendulum: d = 1."""
    with pytest.raises(SystemExit) as refusal:
        module.train(tiny_run_args(module, **overrides))
    assert message in str(refusal.value) and "\n" not in str(refusal.value)
    assert not (in_tmp_dir / "runs").exists()  # refused before anything was written


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_every_problem_is_named_in_one_refusal(in_tmp_dir, module):
    """Checks on the flags and on the environment's action space (InvertedPendulum: d = 1) report together."""
    with pytest.raises(SystemExit) as refusal:
        module.train(tiny_run_args(module, w=0.0, tau=2.0, autotune_w=True, autotune_chains=2))
    text = str(refusal.value)
    assert "\n" not in text and text.count("; ") == 2
    for message in ("--w must be > 0", "--tau must be in (0, 1]", "--autotune-chains must exceed dim(A) + 1 = 2"):
        assert message in text


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(w=-1.0), "--w must be > 0"),
        (dict(langevin_steps=0), "--langevin-steps must be >= 1"),
        (dict(num_envs=0), "--num-envs must be >= 1"),
    ],
)
def test_bad_lql_input_is_refused_before_training(in_tmp_dir, overrides, message):
    with pytest.raises(SystemExit) as refusal:
        lql.train(short_run_args(**overrides))
    assert message in str(refusal.value) and "\n" not in str(refusal.value)
    assert not (in_tmp_dir / "runs").exists()


@pytest.mark.parametrize("cli_args", [["--env-id", "CartPole-v1"], ["--w", "-0.5"]])
def test_cli_bad_input_exits_nonzero_with_one_line(in_tmp_dir, cli_args):
    result = subprocess.run(
        [sys.executable, f"{ROOT}/lql_continuous_action.py", *cli_args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr


def test_capture_video_without_moviepy_is_refused_clearly(in_tmp_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "moviepy", None)  # makes `import moviepy` fail as if it were not installed
    with pytest.raises(SystemExit) as refusal:
        lql.train(short_run_args(capture_video=True))
    assert "--capture-video needs moviepy" in str(refusal.value)


def boltzmann_entropy(w, precision):
    d = precision.shape[0]
    return 0.5 * d * math.log(2 * math.pi * math.e) + 0.5 * torch.logdet(w * torch.linalg.inv(precision)).item()


PRECISION = torch.tensor([[400.0, 120.0, 0.0], [120.0, 300.0, -60.0], [0.0, -60.0, 200.0]])  # correlated, std ~0.02-0.05


def log_det_bias_and_variance(m, d):
    """log det of the (m - 1)-normalised covariance of m Gaussian draws in d dimensions, minus the true log det, is a sum
    of independent log chi^2_{m - i} / (m - 1), i = 1..d (Bartlett): its mean sum_i [psi((m - i) / 2) - log((m - 1) / 2)]
    (what gaussian_entropy adds back) and its variance sum_i psi'((m - i) / 2)."""
    halves = (m - torch.arange(1, d + 1, dtype=torch.float64)) / 2
    mean = (torch.special.digamma(halves) - math.log((m - 1) / 2)).sum().item()
    return mean, torch.special.polygamma(1, halves).sum().item()


def test_entropy_estimate_of_langevin_samples_matches_the_boltzmann_entropy_of_a_quadratic_critic():
    mu, w, step, n_states, n_chains, tolerance = torch.tensor([0.2, -0.1, 0.3]), 0.5, 1.2e-3, 1250, 16, 0.055
    torch.manual_seed(0)
    q_fn = quadratic_q(mu, PRECISION)
    # step lam / (4 w) = 0.09, 0.16, 0.29 for P's eigenvalues 157, 259, 484; the slowest direction contracts by
    # 1 - 2 * 0.09 = 0.81 a step: the chains are iid draws of the stationary Gaussian after 100 steps
    sample = lambda obs: lql.langevin_sample(q_fn, torch.rand(obs.shape[0], 3) * 2 - 1, w, 100, step)
    estimate = lql.policy_entropy(sample, torch.zeros(n_states, 1), n_chains).item()  # 1250 states x 16 chains
    # unadjusted Langevin's known bias: covariance (w P^-1)(I - step P / (4 w))^-1 (docs/lql.md#step-size): +0.31 nats
    eigenvalues = torch.linalg.eigvalsh(PRECISION.double())
    step_bias = -0.5 * torch.log(1 - step * eigenvalues / (4 * w)).sum().item()
    assert estimate == pytest.approx(boltzmann_entropy(w, PRECISION) + step_bias, abs=tolerance)
    # SE: the per-state estimate's sd sqrt(variance) / 2 = 0.34 nats over 1250 states, 0.0096: the tolerance is 5.7 SE
    # (the estimator's 1e-6 I ridge adds 0.001). Dropping the estimator's bias correction would move the estimate by
    # 0.5 * log_det_bias = -0.22 nats (3.9x the tolerance), a sampler with the exact Boltzmann law by -0.31 (5.6x)
    log_det_bias, log_det_variance = log_det_bias_and_variance(n_chains, 3)
    assert tolerance >= 5 * math.sqrt(log_det_variance / 4 / n_states)
    assert min(-0.5 * log_det_bias, step_bias) > 3.5 * tolerance


def test_entropy_estimator_corrects_the_small_sample_log_det_bias():
    n_laws, m, tolerance = 20_000, 8, 0.03
    torch.manual_seed(0)
    covariance = 0.3 * torch.linalg.inv(PRECISION)
    samples = torch.distributions.MultivariateNormal(torch.zeros(3), covariance).sample((n_laws, m))  # 8 draws per law
    exact = boltzmann_entropy(0.3, PRECISION)
    # SE: sd sqrt(variance) / 2 = 0.55 nats per law over 20,000 laws, 0.0039; the estimator's 1e-6 I ridge adds 0.0035
    # nats at these variances (~1e-3), so the tolerance is 6.8 SE beyond it
    assert lql.gaussian_entropy(samples).mean().item() == pytest.approx(exact, abs=tolerance)  # unbiased on average
    centred = samples.double() - samples.double().mean(1, keepdim=True)
    plain_log_det = torch.logdet(centred.transpose(1, 2) @ centred / (m - 1)).mean().item()
    plain = 0.5 * 3 * math.log(2 * math.pi * math.e) + 0.5 * plain_log_det
    log_det_bias, log_det_variance = log_det_bias_and_variance(m, 3)
    # what the correction removes: without it the estimate sits 0.51 nats low, 17x the tolerance, as Wishart predicts
    assert plain == pytest.approx(exact + 0.5 * log_det_bias, abs=tolerance)
    assert tolerance >= 5 * math.sqrt(log_det_variance / 4 / n_laws) + 0.0035 and -0.5 * log_det_bias > 3 * tolerance


def target_w(target, precision):
    """H(N(mu, w P^-1)) = d/2 log(2 pi e) + d/2 log w - 1/2 log det P  =>  the w whose Boltzmann law has entropy `target`."""
    d = precision.shape[0]
    return math.exp((2 / d) * (target - 0.5 * d * math.log(2 * math.pi * math.e) + 0.5 * torch.logdet(precision).item()))


def tuner(module, w, lr, target_per_dim=-2.0, cooling_steps=0, n_states=8):
    """The script's Temperature for a 3-D action on the quadratic critic: the target falls from 3 log 2 to 3 *
    `target_per_dim` over the first `cooling_steps` env steps (learning starts at 0), one dual step per call."""
    args = module.Args(
        w=w, autotune_w=True, autotune_lr=lr, autotune_frequency=1, autotune_states=n_states, autotune_chains=32
    )
    args = dataclasses.replace(
        args, learning_starts=0, total_timesteps=max(cooling_steps, 1), target_entropy_per_dim=target_per_dim
    )
    return module.Temperature(dataclasses.replace(args, autotune_cooling_fraction=1.0 if cooling_steps else 0.0), 3, "cpu")


def tune_on_quadratic_q(temperature, n_steps, first_step=0):
    """`n_steps` dual steps of the tuner on Q = -a^T P a / 2, sampled by Langevin with a step proportional to w (a
    constant, small discretisation bias); returns the log w after each step."""
    args = temperature.args
    final_w = target_w(args.target_entropy_per_dim * 3, PRECISION)
    q_fn, obs, trajectory = quadratic_q(torch.zeros(3), PRECISION), torch.zeros(args.autotune_states, 1), []
    for step in range(first_step, first_step + n_steps):
        w = temperature.w
        sample = lambda o, w=w: lql.langevin_sample(q_fn, torch.zeros(o.shape[0], 3), w, 100, 1e-4 * w / final_w)
        temperature.step(sample, obs, n_updates=step + 1, global_step=step)
        trajectory.append(temperature.log_w.item())
    return trajectory


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])  # the same tuner in both scripts
def test_a_full_newton_dual_step_lands_on_the_w_whose_boltzmann_law_has_the_target_entropy(module):
    # a quadratic Q's entropy is linear in log w with slope d/2, so one full Newton step (lr 1) solves the dual exactly
    torch.manual_seed(0)
    temperature = tuner(module, w=1.0, lr=1.0, n_states=200)  # w = 1, far from w* (about 0.25)
    [log_w_after] = tune_on_quadratic_q(temperature, 1)
    assert math.log(target_w(-6.0, PRECISION)) < -1
    assert log_w_after == pytest.approx(math.log(target_w(-6.0, PRECISION)), abs=0.05)
    assert temperature.logged["losses/target_entropy"] == -6.0 and float(temperature.logged["losses/w"]) == pytest.approx(
        math.exp(log_w_after)
    )


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_temperature_tuner_with_its_defaults_converges_to_the_w_whose_boltzmann_law_has_the_target_entropy(module):
    torch.manual_seed(0)
    trajectory = tune_on_quadratic_q(tuner(module, w=1.0, lr=module.Args.autotune_lr), 150)
    log_w_star = math.log(target_w(-6.0, PRECISION))
    assert abs(trajectory[9] - log_w_star) > 0.5  # a damped step: not there after 10 steps ...
    assert np.mean(trajectory[-50:]) == pytest.approx(log_w_star, abs=0.1)  # ... but within 150 ...
    assert np.std(trajectory[-50:]) < 0.1  # ... and it stays there: the damping averages the estimates' noise


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_a_fixed_w_is_never_tuned(module):
    temperature = module.Temperature(module.Args(w=0.3), 3, "cpu")
    temperature.step(lambda o: torch.rand(o.shape[0], 3), torch.zeros(4, 1), n_updates=10, global_step=10**6)
    assert temperature.w is None and temperature.logged == {} and temperature.log_w.item() == pytest.approx(math.log(0.3))


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_target_entropy_cools_linearly_from_the_uniform_laws_entropy_to_the_target(module):
    args = module.Args(total_timesteps=10_000, learning_starts=2_000, target_entropy_per_dim=-1.0)  # 8,000 learning steps
    uniform, final = 3 * math.log(2), -3.0  # d = 3
    target = lambda step, **kw: module.Temperature(dataclasses.replace(args, **kw), 3, "cpu").target_entropy(step)
    assert target(0) == target(2_000) == pytest.approx(uniform)  # hottest while learning has not started
    assert target(6_000) == pytest.approx((uniform + final) / 2)  # by default it cools over all of learning
    assert target(10_000) == pytest.approx(final)  # SAC's -dim(A) at the end
    half = dict(autotune_cooling_fraction=0.5)
    assert target(4_000, **half) == pytest.approx((uniform + final) / 2)  # halfway through 4,000 cooling steps
    assert target(6_000, **half) == target(10_000, **half) == pytest.approx(final)  # cooled: -dim(A) from then on
    assert target(3_000, autotune_cooling_fraction=0.25) == pytest.approx(final + (uniform - final) / 2)
    assert target(2_000, autotune_cooling_fraction=0.0) == pytest.approx(final)  # no hot start


@pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
def test_temperature_tuner_follows_the_cooling_target_down_to_the_w_of_the_final_target(module):
    torch.manual_seed(0)
    start, final = 3 * math.log(2), -6.0
    # on the hot start's w; the target cools linearly over 100 dual steps, then holds
    temperature = tuner(module, w=target_w(start, PRECISION), lr=module.Args.autotune_lr, cooling_steps=100)
    trajectory = tune_on_quadratic_q(temperature, 300)
    log_w_start, log_w_final = math.log(target_w(start, PRECISION)), math.log(target_w(final, PRECISION))
    assert log_w_start - log_w_final > 5  # a long way to cool
    # w falls with the target (a lag of a few tens of steps, the damping) and settles on the final target's w
    window_means = [np.mean(trajectory[i : i + 25]) for i in range(0, 150, 25)]
    assert (np.diff(window_means) < 0).all()
    assert np.mean(trajectory[-50:]) == pytest.approx(log_w_final, abs=0.1)
