"""The algorithm's core, for both scripts, each test checked against numbers recomputed here from the scripts' public
parts: what the replay buffer stores at episode ends (termination against truncation) in a real train() run, the TD
target and losses of one update, the Polyak update of the target critics, evaluation returns against episodes replayed
by hand, and --compile against eager through train()."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import read_scalars, tiny_run_args

import lql_continuous_action as lql
import nclql_continuous_action as nclql

MODULES = pytest.mark.parametrize("module", [lql, nclql], ids=["lql", "nclql"])
SMALL = {  # short samplers: each call is cheap, every code path kept
    lql: dict(langevin_steps=2),
    nclql: dict(num_levels=2, steps_per_level=1),
}


def sampler_extra(module, args):
    """What update_critics / sample_actions / evaluate / act take between their leading arguments and `w`."""
    if module is nclql:
        return (nclql.noise_levels(args.sigma_max, args.sigma_min, args.num_levels), args)
    return (args,)


def clean_q(module, critics, obs, actions, extra):
    """(2, N) Q-values of both critics; NC-LQL's at the clean level L-1, the one the TD loss trains."""
    if module is nclql:
        sigmas = extra[0]
        return critics(obs, actions, torch.full((1,), len(sigmas) - 1, dtype=torch.long))
    return critics(obs, actions)


# 1. Termination against truncation, through train()
@MODULES
def test_train_stores_terminations_only_and_true_final_observations_at_truncations(in_tmp_dir, monkeypatch, module):
    """CountdownEnv: obs = [episode k, step]; even episodes terminate at step 3, odd ones are truncated at 5. Every
    transition train() stores must have terminations == 1 exactly at the terminal step of an even episode, 0 at a
    truncation (a time limit still bootstraps) and elsewhere, and s' from the same episode (the true final observation
    [k, 5], not the next episode's reset observation). Catches: storing `terminations | truncations` (the odd episodes'
    last transitions would not bootstrap), storing the autoreset's returned observation as s' (a transition spanning a
    reset), gymnasium's NEXT_STEP autoreset storing a bogus transition from the final to the reset observation, and lost
    or misordered transitions."""
    buffers = []

    class RecordingBuffer(module.ReplayBuffer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            buffers.append(self)

    monkeypatch.setattr(module, "ReplayBuffer", RecordingBuffer)
    args = tiny_run_args(module, env_id="CountdownEnv-v0", buffer_size=1000, eval_episodes=1, **SMALL[module])
    module.train(args)
    assert len(buffers) == 1
    rb = buffers[0]
    assert rb.size == 60  # one transition per env step, none dropped or added
    obs, next_obs, terminations = rb.obs[: rb.size], rb.next_obs[: rb.size], rb.terminations[: rb.size]
    n_terminated = n_truncated = 0
    for o, o_next, terminated in zip(obs.tolist(), next_obs.tolist(), terminations.tolist(), strict=True):
        episode, step = o
        assert o_next == [episode, step + 1], (o, o_next)  # same episode, one step on: never across a reset
        if episode % 2 == 0 and o_next[1] == 3:
            assert terminated == 1.0, (o, o_next)
            n_terminated += 1
        else:
            assert terminated == 0.0, (o, o_next)  # a truncation at [k, 5] (k odd) bootstraps like any other step
            n_truncated += episode % 2 == 1 and o_next[1] == 5
    assert n_terminated >= 4 and n_truncated >= 2  # both kinds of episode end were exercised
    # one transition per environment per vector step, oldest first: each env's s' is its next s, or an episode ended
    # and the next s is the reset observation [k + 1, 0] of that same env
    per_env_obs, per_env_next = obs.view(-1, args.num_envs, 2), next_obs.view(-1, args.num_envs, 2)
    for t in range(per_env_obs.shape[0] - 1):
        for i in range(args.num_envs):
            (k, step), following = per_env_next[t, i].tolist(), per_env_obs[t + 1, i].tolist()
            ended = step == (3 if k % 2 == 0 else 5)
            assert following == ([k + 1, 0] if ended else [k, step]), (t, i, following)


# 2 and 3. One update: the TD target and losses, where a' comes from, and the Polyak update
def one_update(module, tau=0.3):
    """One update_critics call on critics whose targets differ from them, with a mix of terminations, reward_scale 0.2
    and gamma 0.9; returns the critics before and after, the batch, the update's outputs, its RNG seed and the sampler
    arguments."""
    torch.manual_seed(0)
    obs_dim, act_dim, n = 3, 2, 32
    qf = module.CriticEnsemble(obs_dim, act_dim)
    qf_target = copy.deepcopy(qf)
    with torch.no_grad():
        for p in qf_target.parameters():
            p.add_(0.05 * torch.randn_like(p))  # targets differ from the online critics (as after many updates)
    qf_target.requires_grad_(False)
    optimizer = torch.optim.Adam(qf.parameters(), lr=1e-2)  # large steps: online after != online before, clearly
    terminations = (torch.arange(n) % 3 == 0).float()  # a third terminal
    batch = (torch.randn(n, obs_dim), torch.rand(n, act_dim) * 2 - 1, 1 + torch.rand(n), torch.randn(n, obs_dim), terminations)
    args = module.Args(reward_scale=0.2, gamma=0.9, tau=tau, **SMALL[module])
    extra = sampler_extra(module, args)
    qf_before, qf_target_before = copy.deepcopy(qf), copy.deepcopy(qf_target)
    seed = 123
    torch.manual_seed(seed)
    outputs = module.update_critics(qf, qf_target, optimizer, batch, *extra)
    return dict(
        qf=qf,
        qf_target=qf_target,
        qf_before=qf_before,
        qf_target_before=qf_target_before,
        batch=batch,
        outputs=outputs,
        seed=seed,
        extra=extra,
    )


@MODULES
def test_td_losses_match_the_target_recomputed_from_the_critics_before_the_update(module):
    """y = reward_scale * r + gamma * (1 - terminated) * min_i Q_i^targ(s', a') (NC-LQL: at the clean level), and the
    returned losses are each critic's mean((Q_i(s, a) - y)^2) with the critics as they were before the step. Catches:
    bootstrapping from the online critics, mean or max instead of min over the targets, ignoring terminations, dropping
    reward_scale or gamma, a noisy level in place of the clean one, losses taken after the step or summed/swapped."""
    u = one_update(module)
    obs, actions, rewards, next_obs, terminations = u["batch"]
    qf_losses, q_values, next_actions = u["outputs"][0], u["outputs"][1], u["outputs"][-1]
    assert qf_losses.shape == (2,) and q_values.shape == (2,) and next_actions.shape == actions.shape
    with torch.no_grad():
        next_q = clean_q(module, u["qf_target_before"], next_obs, next_actions, u["extra"]).min(0).values
        y = 0.2 * rewards + 0.9 * (1 - terminations) * next_q
        q_before = clean_q(module, u["qf_before"], obs, actions, u["extra"])
    expected_losses = ((q_before - y) ** 2).mean(1)
    assert torch.allclose(qf_losses, expected_losses, rtol=1e-5, atol=1e-7), (qf_losses, expected_losses)
    assert torch.allclose(q_values, q_before.mean(1), rtol=1e-5, atol=1e-7)
    # the recomputation is sensitive to what it checks: the alternatives give other losses
    with torch.no_grad():
        online_next_q = clean_q(module, u["qf_before"], next_obs, next_actions, u["extra"]).min(0).values
        mean_next_q = clean_q(module, u["qf_target_before"], next_obs, next_actions, u["extra"]).mean(0)
    for wrong_y in (
        0.2 * rewards + 0.9 * (1 - terminations) * mean_next_q,
        0.2 * rewards + 0.9 * (1 - terminations) * online_next_q,
        0.2 * rewards + 0.9 * next_q,
        rewards + 0.9 * (1 - terminations) * next_q,
    ):
        assert not torch.allclose(((q_before - wrong_y) ** 2).mean(1), expected_losses, rtol=1e-4)


@MODULES
def test_next_actions_are_sampled_on_the_online_critics(module):
    """a' for the TD target is drawn by the sampler on the ONLINE critics at s' (as the paper; the targets only score
    it): from the same RNG state, sample_actions on the pre-update online critics reproduces the update's a' exactly, on
    the target critics it does not. Catches sampling a' on the target critics or at s instead of s'."""
    u = one_update(module)
    next_obs, next_actions = u["batch"][3], u["outputs"][-1]
    torch.manual_seed(u["seed"])
    from_online = module.sample_actions(u["qf_before"], next_obs, *u["extra"])
    torch.manual_seed(u["seed"])
    from_target = module.sample_actions(u["qf_target_before"], next_obs, *u["extra"])
    assert torch.equal(from_online, next_actions)
    assert (from_target - next_actions).abs().max() > 1e-4


@MODULES
def test_polyak_update_moves_each_target_parameter_tau_of_the_way_to_the_updated_online_critic(module):
    """After an update, target <- (1 - tau) * target + tau * online (the online critics after their step), tau = 0.3.
    Catches a swapped (1 - tau), a skipped update, a copy of the online critics, and averaging toward the online
    critics from before their step."""
    tau = 0.3
    u = one_update(module, tau=tau)
    pairs = zip(u["qf_target"].parameters(), u["qf_target_before"].parameters(), u["qf"].parameters(), strict=True)
    names = [name for name, _ in u["qf"].named_parameters()]
    for name, (target, old_target, online) in zip(names, pairs, strict=True):
        expected = (1 - tau) * old_target + tau * online.detach()
        assert torch.allclose(target, expected, rtol=1e-5, atol=1e-7), name
    moved = [not torch.allclose(a, b) for a, b in zip(u["qf"].parameters(), u["qf_before"].parameters(), strict=True)]
    assert all(moved)  # the online critics did take a step, so averaging toward the pre-step ones would fail


# 4. Evaluation against episodes replayed by hand
@MODULES
@pytest.mark.parametrize(
    "env_id, policy_seed",  # policies (found by a search) whose 3 episodes' lengths differ by more than 2x
    [("Hopper-v4", 39), ("InvertedPendulum-v4", 8)],  # Hopper: real-valued rewards; InvertedPendulum: actions in [-3, 3]
    ids=["hopper", "pendulum"],
)
def test_evaluation_returns_are_those_of_each_environments_first_episode_replayed_by_hand(module, env_id, policy_seed):
    """evaluate runs n episodes in parallel on sub-envs seeded seed + i and returns each one's first episode's return.
    With a deterministic policy (tanh of a fixed linear map of the observation), each return must equal the sum of
    rewards of the same episode replayed by hand on gym.make(env_id).reset(seed=seed + i) until it terminates or is
    truncated. The episodes' lengths differ by more than 2x, so the short ones end twice before the long one ends once.
    Catches: returns taken from a later episode of a sub-env (after autoreset), from the wrong sub-env, episodes not
    seeded seed + i, actions not mapped onto the bounds as to_env_actions does (InvertedPendulum's are [-3, 3]), and
    returns cut or run past an episode's end."""
    seed, n_episodes = 10, 3
    probe = gym.make(env_id)
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    weights = torch.randn(obs_dim, act_dim, generator=torch.Generator().manual_seed(policy_seed), dtype=torch.float64)

    def policy(qf, obs, *sampler_args_and_w):  # sample_actions' signature; row by row: the same numbers in any batch
        return torch.stack([torch.tanh(o.double() @ weights) for o in obs]).float()

    args = module.Args(**SMALL[module])
    qf = module.CriticEnsemble(obs_dim, act_dim)
    returns = module.evaluate(qf, env_id, n_episodes, seed, *sampler_extra(module, args), torch.device("cpu"), policy)
    assert returns.shape == (n_episodes,)

    replayed, lengths = [], []
    env = gym.make(env_id)
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed + i)
        total, length = 0.0, 0
        while True:
            action = policy(qf, torch.as_tensor(obs[None], dtype=torch.float32)).numpy()
            obs, reward, terminated, truncated, _ = env.step(module.to_env_actions(action, env.action_space)[0])
            total, length = total + float(reward), length + 1
            if terminated or truncated:
                break
        replayed.append(total)
        lengths.append(length)
    env.close()
    assert max(lengths) > 2 * min(lengths), lengths  # the test's premise: some sub-envs run a second episode meanwhile
    assert np.allclose(returns, replayed, rtol=1e-5, atol=1e-4), (returns, replayed, lengths)


# 5. --compile through train()
@MODULES
def test_compiled_training_logs_the_eager_losses_up_to_rounding(in_tmp_dir, module):
    """A tiny train() eager and one with --compile, same seed: the logged qf_loss series have the same steps and agree
    to 1e-3 relative (compiled kernels round differently, so not bit-identical: they differ by ~1e-5 here). Catches a
    compiled path that draws other random numbers than eager (train() not setting inductor's fallback_random: the
    losses then differ by several %), and any other divergence of the compiled update or acting sampler from eager."""
    settings = dict(
        total_timesteps=50,
        num_envs=2,
        learning_starts=40,
        batch_size=16,
        eval_episodes=2,  # = num_envs: the compiled sampler's shape for acting serves evaluation too (no recompile)
        log_frequency=1,
        **SMALL[module],
    )
    series = {}
    # train() sets fallback_random under --compile: config.patch gives the process its own value back afterwards (not
    # monkeypatch, whose undo deletes, hence hides, a torch config entry it did not find in the module's __dict__)
    with torch._inductor.config.patch(fallback_random=torch._inductor.config.fallback_random):
        for compiled in (False, True):
            args = tiny_run_args(module, compile=compiled, exp_name=f"compile{compiled}", **settings)
            _, run_dir = module.train(args)
            series[compiled] = read_scalars(run_dir)["losses/qf_loss"]
    eager, compiled = series[False], series[True]
    assert [step for step, _ in compiled] == [step for step, _ in eager] == list(range(42, 51, 2))
    assert np.allclose([v for _, v in compiled], [v for _, v in eager], rtol=1e-3, atol=0), (eager, compiled)
