"""Speed benchmark for NC-LQL (and LQL): one training iteration split into its parts, the compute floor, and a
SAC-style update timed in the same process as a yardstick. Machines here are noisy: read the ratios.

    python benchmarks/speed.py --env-id Hopper-v4 [--compile] [--threads 2] [--cuda [--cudagraphs]]
    python benchmarks/speed.py --checkpoint runs/{run}/checkpoint.pt [--keep-denormals]  # a trained critic
"""

import copy
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
    cuda: bool = False
    """time on the GPU, as the scripts' --cuda runs (each timing waits for the GPU to finish)"""
    cudagraphs: bool = False
    """also time the update and acting sampler replayed from CUDA graphs, as the scripts' --cudagraphs (with --compile:
    the compiled ones too); needs --cuda"""
    repeats: int = 20
    """timed repetitions of each part (after warm-up)"""
    checkpoint: str | None = None
    """time NC-LQL on this NC-LQL checkpoint's critics, optimiser state, settings and replay batch (a trained critic)
    instead of fresh ones; its environment replaces --env-id"""
    keep_denormals: bool = False
    """compute with denormal floats, where the scripts flush them to zero (docs/speed.md#denormal-floats)"""


def timed(functions, repeats, synchronize=lambda: None):
    """{name: median wall time of fn() in ms}, after two warm-up calls each. The functions take turns, round after
    round, so that a load change on this shared machine hits all of them alike and their ratios stay meaningful.
    `synchronize` waits for queued GPU work, so a timing covers the kernels, not only their launch."""
    for fn in functions.values():
        fn(), fn()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] * 1000 for name, t in times.items()}


class SacYardstick:
    """A plain PyTorch SAC update: tanh-Gaussian actor and two Q critics, 2 x 256 ReLU, one Adam step each."""

    def __init__(self, obs_dim, act_dim, batch_size, device):
        def mlp(n_in, n_out):
            return nn.Sequential(nn.Linear(n_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, n_out))

        self.actor, self.q1, self.q2 = mlp(obs_dim, 2 * act_dim), mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)
        self.q1_target, self.q2_target = mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)
        for net in (self.actor, self.q1, self.q2, self.q1_target, self.q2_target):
            net.to(device)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=3e-4)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=3e-4)
        self.obs, self.next_obs = (
            torch.randn(batch_size, obs_dim, device=device),
            torch.randn(batch_size, obs_dim, device=device),
        )
        self.actions = torch.rand(batch_size, act_dim, device=device) * 2 - 1
        self.rewards = torch.randn(batch_size, device=device)

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


def critics_and_batch(args: Args, device):
    """(env_id, NC-LQL Args, critics, target critics, Adam, replay batch): fresh critics and a random batch, or with
    --checkpoint the checkpoint's settings, critics, optimiser state and a batch of its replay buffer."""
    checkpoint = nclql.load_checkpoint(args.checkpoint) if args.checkpoint else None  # on the CPU, weights_only=True
    if checkpoint is not None and "rb" not in checkpoint:  # --no-checkpoint-buffer, or a --save-model file
        raise SystemExit(
            f"error: {args.checkpoint} holds no replay buffer (a checkpoint written with --checkpoint-buffer is needed)"
        )
    env_id = checkpoint["args"]["env_id"] if checkpoint else args.env_id
    if env_id not in ENV_DIMS:
        raise SystemExit(f"error: --env-id {env_id} has no known sizes here; one of: {', '.join(ENV_DIMS)}")
    obs_dim, act_dim = ENV_DIMS[env_id]
    torch.manual_seed(0)
    saved_args = {k: v for k, v in checkpoint["args"].items() if k in nclql.Args.__dataclass_fields__} if checkpoint else {}
    nc_args = nclql.Args(**saved_args)
    qf, qf_target = nclql.CriticEnsemble(obs_dim, act_dim).to(device), nclql.CriticEnsemble(obs_dim, act_dim).to(device)
    qf_target.requires_grad_(False)
    optimizer = torch.optim.Adam(qf.parameters(), lr=nc_args.learning_rate)
    n = args.batch_size
    if checkpoint is None:
        obs, actions = torch.randn(n, obs_dim), torch.rand(n, act_dim) * 2 - 1
        batch = (obs, actions, torch.randn(n), torch.randn(n, obs_dim), torch.zeros(n))
    else:
        qf.load_state_dict(checkpoint["qf"])
        qf_target.load_state_dict(checkpoint["qf_target"])
        for group in checkpoint["optimizer"]["param_groups"]:  # Adam's plain mode; the graphed timings build their own
            group["capturable"] = False
        optimizer.load_state_dict(checkpoint["optimizer"])
        buffer = checkpoint["rb"]  # the replay buffer's state_dict: its filled rows
        rows = torch.randint(0, buffer["size"], (n,))
        batch = tuple(buffer[f][rows] for f in ("obs", "actions", "rewards", "next_obs", "terminations"))
    return env_id, nc_args, qf, qf_target, optimizer, tuple(t.to(device) for t in batch)


def main(args: Args):
    if args.threads:
        torch.set_num_threads(args.threads)
    torch._inductor.config.fallback_random = True  # as the scripts' --compile: eager's random draws
    if args.cuda and not torch.cuda.is_available():
        raise SystemExit("error: --cuda was given but torch sees no CUDA device")
    if args.cudagraphs and not args.cuda:
        raise SystemExit("error: --cudagraphs needs --cuda (CUDA graphs run on a GPU only)")
    torch.set_flush_denormal(not args.keep_denormals)  # the scripts flush them
    device = torch.device("cuda" if args.cuda else "cpu")
    env_id, nc_args, qf, qf_target, optimizer, batch = critics_and_batch(args, device)
    obs_dim, act_dim, n = batch[0].shape[1], batch[1].shape[1], args.batch_size
    sigmas = nclql.noise_levels(nc_args.sigma_max, nc_args.sigma_min, nc_args.num_levels)  # on the host, as in the script
    obs, actions, rewards, next_obs, terminations = batch
    clean = torch.full((1,), nc_args.num_levels - 1, device=device)
    evaluations = nc_args.num_levels * nc_args.steps_per_level

    def td_step():
        with torch.no_grad():
            y = 0.2 * rewards + 0.99 * qf_target(next_obs, actions, clean).min(0).values
        loss = ((qf(obs, actions, clean) - y) ** 2).mean(1).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def nc_step():
        with torch.no_grad():
            smoothed_target = qf(obs, actions, clean).mean(0)
        loss = nclql.noise_conditioning_loss(qf, obs, actions, sigmas, smoothed_target)
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

    eager_update = lambda: nclql.update_critics(qf, qf_target, optimizer, batch, sigmas, nc_args)
    obs_acting = batch[0][: args.num_envs] if args.checkpoint else torch.randn(args.num_envs, obs_dim, device=device)

    sac = SacYardstick(obs_dim, act_dim, n, device)
    lql_args = lql.Args()
    lql_qf = lql.CriticEnsemble(obs_dim, act_dim).to(device)
    functions = {
        "acting sampler": lambda: nclql.sample_actions(qf, obs_acting, sigmas, nc_args),
        "target sampler": lambda: nclql.sample_actions(qf, next_obs, sigmas, nc_args),
        "TD step": td_step,
        "noise-conditioning step": nc_step,
        "target update": target_update,
        "iteration eager": eager_update,
        "matmul floor": floor_iteration,
        "autograd eval": lambda: nclql.action_gradient(
            lambda a: nclql.mean_critic(qf, next_obs)[0](a, nc_args.num_levels - 1), actions
        ),
        "hand-written eval": lambda: nclql.mean_critic(qf, next_obs)[1](actions, nc_args.num_levels - 1),
        "SAC update": sac.update,
        "LQL sampler": lambda: lql.sample_actions(lql_qf, next_obs, lql_args),
    }
    if args.compile:
        compiled_update = torch.compile(nclql.update_critics, dynamic=False)
        compiled_sample = torch.compile(nclql.sample_actions, dynamic=False)
        functions["acting compiled"] = lambda: compiled_sample(qf, obs_acting, sigmas, nc_args)
        functions["iteration compiled"] = lambda: compiled_update(qf, qf_target, optimizer, batch, sigmas, nc_args)
    if args.cudagraphs:  # own critics: a graphed update needs Adam's capturable mode, as the scripts build it
        graphed_qf, graphed_target = copy.deepcopy(qf), copy.deepcopy(qf_target)
        graphed_optimizer = torch.optim.Adam(graphed_qf.parameters(), lr=nc_args.learning_rate, capturable=True)
        graphed_update_args = (graphed_qf, graphed_target, graphed_optimizer, batch, sigmas, nc_args)
        modes = {"graphed": (nclql.update_critics, nclql.sample_actions)}
        if args.compile:
            modes["compiled+graphed"] = (compiled_update, compiled_sample)
        for mode, (update, sample) in modes.items():
            update, sample = nclql.CudaGraphed(update), nclql.CudaGraphed(sample)
            for _ in range(update.warmup_calls + 1):  # warm-up calls, then the capture: timed() then sees replays
                update(*graphed_update_args), sample(graphed_qf, obs_acting, sigmas, nc_args)
            functions[f"acting {mode}"] = lambda sample=sample: sample(graphed_qf, obs_acting, sigmas, nc_args)
            functions[f"iteration {mode}"] = lambda update=update: update(*graphed_update_args)
    ms = timed(functions, args.repeats, torch.cuda.synchronize if args.cuda else lambda: None)
    parts = {
        name: ms[name] for name in ("acting sampler", "target sampler", "TD step", "noise-conditioning step", "target update")
    }
    modes = ("eager", "compiled", "graphed", "compiled+graphed")
    iterations = {mode: ms[f"iteration {mode}"] for mode in modes if f"iteration {mode}" in ms}
    acting = {"eager": ms["acting sampler"], **{mode: ms[f"acting {mode}"] for mode in modes[1:] if f"acting {mode}" in ms}}
    floor, sac_update = ms["matmul floor"], ms["SAC update"]
    autograd_eval, handwritten_eval, lql_sampler = ms["autograd eval"], ms["hand-written eval"], ms["LQL sampler"]

    on = torch.cuda.get_device_name() if args.cuda else f"CPU, {torch.get_num_threads()} threads"
    critics = f"the trained critics of {args.checkpoint}" if args.checkpoint else "fresh critics"
    denormals = "denormal floats kept" if args.keep_denormals else "denormal floats flushed to zero"
    print(f"# {env_id}, batch {n}, {on}, torch {torch.__version__}, {critics}, {denormals}")
    print("| part (eager) | ms | share of the eager iteration |\n|-|-|-|")
    for name, part_ms in parts.items():
        share = "acting" if name == "acting sampler" else f"{part_ms / iterations['eager']:.0%}"
        print(f"| {name}{f' ({args.num_envs} obs)' if name == 'acting sampler' else ''} | {part_ms:.1f} | {share} |")
    for mode, it_ms in iterations.items():
        print(f"| **NC-LQL iteration, {mode}** | {it_ms:.1f} | {it_ms / floor:.2f}x the compute floor |")
    print(f"| compute floor: every critic matmul of one iteration, back to back | {floor:.1f} | |")
    print(f"| one critic action-gradient: autograd / hand-written | {autograd_eval:.2f} / {handwritten_eval:.2f} | |")
    print(f"| LQL target sampler (K = {lql_args.langevin_steps}), eager | {lql_sampler:.1f} | |")
    print(f"| SAC update (yardstick) | {sac_update:.1f} | |")
    print()
    sac_env_steps_per_s = 1000 / sac_update  # SAC at one update per env step
    for mode, it_ms in iterations.items():
        env_steps_per_s = args.num_envs * 1000 / (it_ms + acting[mode])  # UTD 1/num_envs; simulator time ignored
        print(
            f"{mode}: iteration / compute floor {it_ms / floor:.2f}x; "
            f"updates/s {1000 / it_ms:.1f}; update / SAC update "
            f"{it_ms / sac_update:.1f}x; env steps/s at {args.num_envs} envs (networks only) {env_steps_per_s:.1f} = "
            f"{env_steps_per_s / sac_env_steps_per_s:.2f}x SAC's at one update per env step ({sac_env_steps_per_s:.1f})"
        )


if __name__ == "__main__":
    main(tyro.cli(Args))
