"""Speed benchmark for NC-LQL (and LQL): one training iteration split into its parts, two compute floors, and a
SAC-style update timed in the same process as a yardstick. Machines here are noisy: read the ratios.

    python benchmarks/speed.py --env-id Hopper-v4 [--compile] [--threads 2]
"""

import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import tyro
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lql_continuous_action as lql  # noqa: E402
import nclql_continuous_action as nclql  # noqa: E402

ENV_DIMS = {  # (obs_dim, act_dim) of the MuJoCo v4 tasks: no simulator is needed to time the networks
    "InvertedPendulum-v4": (4, 1),
    "Hopper-v4": (11, 3),
    "Walker2d-v4": (17, 6),
    "HalfCheetah-v4": (17, 6),
    "Ant-v4": (27, 8),
    "Humanoid-v4": (376, 17),
    "Swimmer-v4": (8, 2),
}


@dataclass
class Args:
    env_id: str = "Hopper-v4"
    """which task's observation and action sizes to time with"""
    batch_size: int = 256
    """the update's minibatch size"""
    num_envs: int = 5
    """observations per acting call"""
    compile: bool = False
    """also time the torch.compile'd update and acting sampler, as the scripts' --compile runs them"""
    threads: int = 0
    """torch threads (0 = torch's default: every core)"""
    repeats: int = 20
    """timed repetitions of each part (after warm-up)"""


def timed(fn, repeats):
    """Median wall time of fn() in milliseconds, after two warm-up calls."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


class SacYardstick:
    """A plain PyTorch SAC update: tanh-Gaussian actor and two Q critics, 2 x 256 ReLU, one Adam step each."""

    def __init__(self, obs_dim, act_dim, batch_size):
        def mlp(n_in, n_out):
            return nn.Sequential(nn.Linear(n_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, n_out))

        self.actor, self.q1, self.q2 = mlp(obs_dim, 2 * act_dim), mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)
        self.q1_target, self.q2_target = mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=3e-4)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=3e-4)
        self.obs, self.next_obs = torch.randn(batch_size, obs_dim), torch.randn(batch_size, obs_dim)
        self.actions, self.rewards = torch.rand(batch_size, act_dim) * 2 - 1, torch.randn(batch_size)

    def act(self, obs):
        mean, log_std = self.actor(obs).chunk(2, -1)
        std = log_std.clamp(-5, 2).exp()
        raw = mean + std * torch.randn_like(mean)
        log_prob = (-0.5 * ((raw - mean) / std) ** 2 - std.log()).sum(-1) - (2 * (0.693 - raw - F.softplus(-2 * raw))).sum(-1)
        return torch.tanh(raw), log_prob

    def update(self):
        with torch.no_grad():
            next_a, next_logp = self.act(self.next_obs)
            x = torch.cat([self.next_obs, next_a], -1)
            target = self.rewards + 0.99 * (torch.min(self.q1_target(x), self.q2_target(x)).squeeze(-1) - 0.2 * next_logp)
        x = torch.cat([self.obs, self.actions], -1)
        q_loss = F.mse_loss(self.q1(x).squeeze(-1), target) + F.mse_loss(self.q2(x).squeeze(-1), target)
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        a, logp = self.act(self.obs)
        x = torch.cat([self.obs, a], -1)
        actor_loss = (0.2 * logp - torch.min(self.q1(x), self.q2(x)).squeeze(-1)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()


def main(args: Args):
    if args.threads:
        torch.set_num_threads(args.threads)
    torch._inductor.config.fallback_random = True  # as the scripts' --compile: eager's random draws
    obs_dim, act_dim = ENV_DIMS[args.env_id]
    torch.manual_seed(0)
    nc_args = nclql.Args()
    sigmas = nclql.noise_levels(nc_args.sigma_max, nc_args.sigma_min, nc_args.num_levels)
    qf, qf_target = nclql.CriticEnsemble(obs_dim, act_dim), nclql.CriticEnsemble(obs_dim, act_dim)
    qf_target.requires_grad_(False)
    optimizer = torch.optim.Adam(qf.parameters(), lr=nc_args.learning_rate)
    n = args.batch_size
    batch = (torch.randn(n, obs_dim), torch.rand(n, act_dim) * 2 - 1, torch.randn(n), torch.randn(n, obs_dim), torch.zeros(n))
    obs, actions, rewards, next_obs, terminations = batch
    clean = torch.full((1,), nc_args.num_levels - 1)
    evaluations = nc_args.num_levels * nc_args.steps_per_level

    def td_step():
        with torch.no_grad():
            y = 0.2 * rewards + 0.99 * qf_target(next_obs, actions, clean).min(0).values
        loss = ((qf(obs, actions, clean) - y) ** 2).mean(1).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def nc_step():
        loss = nclql.noise_conditioning_loss(qf, obs, actions, sigmas)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def target_update():
        with torch.no_grad():
            torch._foreach_lerp_(list(qf_target.parameters()), list(qf.parameters()), 0.005)

    # The compute floor: every critic matmul one iteration must do, timed back to back with nothing else (no
    # activation, no optimiser, no Python between them): L*T sampler passes (forward + input-gradient), two
    # forward-only passes (the TD target's Q and the noise-conditioning target) and two training passes (TD and
    # noise conditioning: forward + input- and weight-gradients).
    w_hidden = [layer.weight.detach() for layer in qf.hidden]
    w_out, w_act, w_obs = qf.out.weight.detach(), qf.action_in.weight.detach(), qf.state_in.weight.detach()
    features = (qf.state_features(next_obs) + qf.level_features(clean)).detach()

    def sampler_pass():
        h = features + torch.matmul(actions, w_act)
        for w in w_hidden:
            h = torch.matmul(h, w)
        g = w_out.transpose(1, 2).expand(-1, n, -1)
        for w in reversed(w_hidden):
            g = torch.matmul(g, w.transpose(1, 2))
        return torch.matmul(g, w_act.transpose(1, 2))

    def forward_pass():
        activations = [torch.matmul(obs, w_obs) + torch.matmul(actions, w_act)]
        for w in w_hidden:
            activations.append(torch.matmul(activations[-1], w))
        return activations, torch.matmul(activations[-1], w_out)

    def training_pass():
        activations, _ = forward_pass()
        g = w_out.transpose(1, 2).expand(-1, n, -1)
        weight_grads = [torch.matmul(activations[-1].transpose(1, 2), g)]
        for w, h in zip(reversed(w_hidden), reversed(activations[:-1]), strict=True):
            g = torch.matmul(g, w.transpose(1, 2))
            weight_grads.append(torch.matmul(h.transpose(1, 2), g))
        return weight_grads

    def floor_iteration():
        for _ in range(evaluations):
            sampler_pass()
        for _ in range(2):
            forward_pass()
            training_pass()

    eager_update = lambda: nclql.nclql_update(qf, qf_target, optimizer, batch, sigmas, nc_args)
    parts = {
        "acting sampler": timed(
            lambda: nclql.sample_actions(qf, torch.randn(args.num_envs, obs_dim), sigmas, nc_args), args.repeats
        ),
        "target sampler": timed(lambda: nclql.sample_actions(qf, next_obs, sigmas, nc_args), args.repeats),
        "TD step": timed(td_step, args.repeats),
        "noise-conditioning step": timed(nc_step, args.repeats),
        "target update": timed(target_update, args.repeats),
    }
    iterations = {"eager": timed(eager_update, args.repeats)}
    acting = {"eager": parts["acting sampler"]}
    if args.compile:
        compiled_update = torch.compile(nclql.nclql_update, dynamic=False)
        compiled_sample = torch.compile(nclql.sample_actions, dynamic=False)
        obs_acting = torch.randn(args.num_envs, obs_dim)
        acting["compiled"] = timed(lambda: compiled_sample(qf, obs_acting, sigmas, nc_args), args.repeats)
        iterations["compiled"] = timed(lambda: compiled_update(qf, qf_target, optimizer, batch, sigmas, nc_args), args.repeats)
    floor = timed(floor_iteration, args.repeats)

    # The critic-pass floor: the same critic passes as whole networks (activations included), each compiled, back to
    # back: L*T action-gradients, two forward passes, two forward-backward passes; no sampler arithmetic between
    # steps, no optimiser, no target update. What is left above it is the iteration's own overhead.
    grad_pass = torch.compile(qf.mean_action_gradient, dynamic=False)
    forward_q = torch.compile(lambda: qf(obs, actions, clean), dynamic=False)
    train_q = torch.compile(lambda: ((qf(obs, actions, clean) - rewards) ** 2).mean(1).sum(), dynamic=False)

    def critic_pass_iteration():
        for _ in range(evaluations):
            grad_pass(features, actions)
        for _ in range(2):
            with torch.no_grad():
                forward_q()
            train_q().backward()

    critic_floor = timed(critic_pass_iteration, args.repeats)
    autograd_eval = timed(
        lambda: nclql.action_gradient(lambda a: nclql.mean_critic(qf, next_obs)[0](a, nc_args.num_levels - 1), actions),
        args.repeats,
    )
    handwritten_eval = timed(lambda: nclql.mean_critic(qf, next_obs)[1](actions, nc_args.num_levels - 1), args.repeats)
    sac = SacYardstick(obs_dim, act_dim, n)
    sac_update = timed(sac.update, args.repeats)
    lql_args = lql.Args()
    lql_qf = lql.CriticEnsemble(obs_dim, act_dim)
    lql_sampler = timed(lambda: lql.sample_actions(lql_qf, next_obs, lql_args), args.repeats)

    print(f"# {args.env_id}, batch {n}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| part (eager) | ms | share of the eager iteration |\n|-|-|-|")
    for name, ms in parts.items():
        share = "acting" if name == "acting sampler" else f"{ms / iterations['eager']:.0%}"
        print(f"| {name}{f' ({args.num_envs} obs)' if name == 'acting sampler' else ''} | {ms:.1f} | {share} |")
    for mode, ms in iterations.items():
        ratios = f"{ms / critic_floor:.2f}x the critic-pass floor, {ms / floor:.2f}x the matmul floor"
        print(f"| **NC-LQL iteration, {mode}** | {ms:.1f} | {ratios} |")
    print(f"| critic-pass floor: the iteration's critic passes, compiled, back to back | {critic_floor:.1f} | |")
    print(f"| matmul floor: every critic matmul of one iteration, back to back | {floor:.1f} | |")
    print(f"| one critic action-gradient: autograd / hand-written | {autograd_eval:.2f} / {handwritten_eval:.2f} | |")
    print(f"| LQL target sampler (K = {lql_args.langevin_steps}), eager | {lql_sampler:.1f} | |")
    print(f"| SAC update (yardstick) | {sac_update:.1f} | |")
    print()
    sac_env_steps_per_s = 1000 / sac_update  # SAC at one update per env step
    for mode, ms in iterations.items():
        env_steps_per_s = args.num_envs * 1000 / (ms + acting[mode])  # UTD 1/num_envs; simulator time ignored
        print(
            f"{mode}: iteration / critic-pass floor {ms / critic_floor:.2f}x (/ matmul floor {ms / floor:.2f}x); "
            f"updates/s {1000 / ms:.1f}; update / SAC update "
            f"{ms / sac_update:.1f}x; env steps/s at {args.num_envs} envs (networks only) {env_steps_per_s:.1f} = "
            f"{env_steps_per_s / sac_env_steps_per_s:.2f}x SAC's at one update per env step ({sac_env_steps_per_s:.1f})"
        )


if __name__ == "__main__":
    main(tyro.cli(Args))
