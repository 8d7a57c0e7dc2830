"""Langevin Q-Learning (LQL): actor-free soft Q-learning in one file. Paper: Ki, Ahn, Kim, Lee, arXiv 2602.07873 (2026).

There is no actor: the policy is the critics' Boltzmann law pi(a|s) ∝ exp(Q(s, a) / w), drawn by unadjusted Langevin
dynamics on the action-gradient of the mean critic, K steps from Uniform[-1, 1]^d (the last iterate is the action):

    a <- clip(a + (eps / 2) * grad_a Q(s, a) / w + sqrt(eps) * z, -1, 1),   z ~ N(0, I)

The critics learn by TD on y = reward_scale * r + gamma * (1 - terminated) * min_i Q_i^targ(s', a'), a' drawn by the
same sampler. `w` is the TEMPERATURE of pi ∝ exp(Q / w): bigger explores more. The authors' code multiplies a
unit-normalised gradient by w = 500 instead; `--grad-norm` does the same with w = 1/500 = 0.002 (their NC-LQL sampler
exactly is `--grad-norm --w 0.002 --step-size 1e-4`). `--autotune-w` tunes w toward a target entropy: docs/autotune.md.
Docs: docs/lql.md (why NC-LQL: one noise scale mixes slowly between separated modes of Q).
"""

import copy
import importlib.util
import math
import os
import random
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter

try:
    import mujoco
except Exception as e:  # MuJoCo loads the renderer MUJOCO_GL names at import: one this machine lacks fails here
    raise SystemExit(
        f"error: cannot import mujoco with MUJOCO_GL={os.environ.get('MUJOCO_GL')} ({e}); use MUJOCO_GL=egl"
    ) from None

ALGORITHM = "LQL"  # written into checkpoints: another algorithm's are refused
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # finish the step, checkpoint, exit


@dataclass
class Args:
    # core
    exp_name: str = os.path.basename(__file__)[: -len(".py")]  # the name of this experiment (part of the run directory name)
    seed: int = 1  # seed of the experiment (torch, numpy, random and the environments)
    torch_deterministic: bool = True  # if toggled, sets `torch.backends.cudnn.deterministic=True`
    cuda: bool = False  # if toggled, runs on CUDA (fails clearly when no GPU is visible)
    track: bool = False  # if toggled, tracks the experiment with Weights and Biases (the TensorBoard logs, synced)
    wandb_project_name: str = "lql"  # the wandb's project name
    wandb_entity: str | None = None  # the entity (team) of wandb's project
    capture_video: bool = False  # if toggled, records videos of the first training environment under `videos/{run_name}`
    save_model: bool = False  # if toggled, saves the critics and Args to `runs/{run_name}/{exp_name}.cleanrl_model` at the end
    # algorithm
    env_id: str = "Walker2d-v4"  # the id of a gymnasium environment with a bounded Box action space
    total_timesteps: int = 5_000_000  # total environment steps, summed over the parallel environments (authors: 5e6)
    num_envs: int = 5  # number of parallel environments; one gradient update per vector step (authors: 5)
    buffer_size: int = 1_000_000  # the replay memory size (transitions)
    gamma: float = 0.99  # the discount factor
    tau: float = 0.005  # the Polyak averaging rate of the target critics
    batch_size: int = 256  # the minibatch size of each update
    learning_starts: int = 30_000  # environment steps of uniform random actions before learning starts (authors: 30k)
    learning_rate: float = 1e-4  # the Adam learning rate of the critics
    reward_scale: float = 0.2  # rewards are multiplied by this in the TD target (authors: 0.2)
    w: float = 0.1  # temperature of pi ∝ exp(Q / w); bigger explores more (authors' 500 is 1/w with --grad-norm)
    langevin_steps: int = 20  # Langevin steps K per action and per TD-target action (NC-LQL's L*T = 20)
    step_size: float = 1e-2  # Langevin step size eps (constant; chosen by measurement: docs/lql.md)
    grad_norm: bool = False  # if toggled, unit-normalises the action-gradient per chain as the authors do (then w = 1/500)
    # speed (docs/speed.md)
    compile: bool = False  # if toggled, compiles the update and the acting sampler (eager's random draws, rounding aside)
    cudagraphs: bool = False  # if toggled (with --cuda), replays the update and the acting sampler from CUDA graphs
    threads: int = 1  # torch's CPU threads (0: torch's default, one per core); small networks run fastest on one
    # automatic temperature (docs/autotune.md)
    autotune_w: bool = False  # if toggled, adapts w toward a target entropy by a dual step on log w, as SAC tunes alpha
    target_entropy_per_dim: float = -1.0  # the target entropy (nats) per action dimension in [-1, 1]^d; -1: SAC's -dim(A)
    autotune_frequency: int = 10  # updates between two entropy estimates and dual steps
    autotune_states: int = 4  # states (from the replay batch) per entropy estimate
    autotune_chains: int = 64  # chains per state for the entropy estimate (must exceed dim(A) + 1: a covariance per state)
    autotune_lr: float = 0.05  # dual step on log w as a fraction of the Newton step, in (0, 1]; less averages noise
    autotune_cooling_fraction: float = 1.0  # the target falls from the uniform law's d log 2 over this fraction of learning
    # checkpoints and evaluation (docs/checkpoints.md)
    eval_frequency: int = 125_000  # evaluate every this many env steps (0: never periodically; a final one always runs)
    eval_episodes: int = 20  # episodes per evaluation, run in parallel on separate environments (authors: 20)
    log_frequency: int = 100  # log losses and sampler diagnostics every this many updates
    checkpoint_frequency: int = 100_000  # write runs/{run_name}/checkpoint.pt every this many env steps (0: on a stop only)
    checkpoint_buffer: bool = True  # if toggled, checkpoints hold the replay buffer (exact resume); off: small files
    resume: str | None = None  # continue the run of this checkpoint: give the run's own command line plus --resume PATH
    eval_checkpoint: str | None = None  # evaluate the critics of this checkpoint or saved model instead of training


def check_args(args: Args) -> None:
    """Refuses bad input with a one-line message before anything is built."""
    try:
        probe = gym.make(args.env_id)
    except gym.error.Error as e:
        raise SystemExit(f"error: cannot make --env-id {args.env_id!r} ({e})") from None
    space = probe.action_space
    probe.close()
    if not isinstance(space, gym.spaces.Box):
        raise SystemExit(f"error: {args.env_id} has a {type(space).__name__} action space; LQL needs a continuous Box")
    bounds = [  # (rule, test, flags)
        ("> 0", lambda v: v > 0, "w step_size learning_rate"),
        (">= 1", lambda v: v >= 1, "langevin_steps total_timesteps num_envs buffer_size batch_size"),
        (">= 1", lambda v: v >= 1, "eval_episodes log_frequency"),
        (">= 0", lambda v: v >= 0, "learning_starts eval_frequency checkpoint_frequency threads"),
        ("in [0, 1]", lambda v: 0 <= v <= 1, "gamma autotune_cooling_fraction"),
        ("in (0, 1]", lambda v: 0 < v <= 1, "tau"),
    ]
    notes = {"w": " (the temperature of pi ∝ exp(Q/w))", "threads": " (0: torch's default)"}
    problems = [
        f"--{name.replace('_', '-')} must be {rule}{notes.get(name, '')}, got {getattr(args, name)}"
        for rule, test, names in bounds
        for name in names.split()
        if not test(getattr(args, name))
    ]
    if args.autotune_w and (args.autotune_frequency < 1 or args.autotune_states < 1 or not 0 < args.autotune_lr <= 1):
        problems.append("--autotune-frequency and --autotune-states must be >= 1 and --autotune-lr in (0, 1] (a Newton step)")
    if args.resume and args.eval_checkpoint:
        problems.append("--resume (continue training) and --eval-checkpoint (evaluate only) exclude each other")
    if args.cuda and not torch.cuda.is_available():
        problems.append("--cuda was given but torch sees no CUDA device")
    if args.cudagraphs and not args.cuda:
        problems.append("--cudagraphs needs --cuda (CUDA graphs run on a GPU only)")
    can_train = not args.eval_checkpoint  # runs that could never make an update
    if can_train and args.batch_size > args.buffer_size:
        problems.append(f"--batch-size {args.batch_size} exceeds --buffer-size {args.buffer_size}: nothing would train")
    if can_train and args.learning_starts >= args.total_timesteps:
        problems.append(
            f"--learning-starts {args.learning_starts} is not shorter than --total-timesteps {args.total_timesteps}: "
            "the run would end in the random warm-up, before any update"
        )
    elif can_train and args.batch_size > args.total_timesteps:
        problems.append(
            f"--batch-size {args.batch_size} exceeds --total-timesteps {args.total_timesteps}: nothing would train"
        )
    if args.track and importlib.util.find_spec("wandb") is None:
        problems.append("--track needs wandb: pip install wandb")
    if args.capture_video and importlib.util.find_spec("moviepy") is None:  # gymnasium's RecordVideo writes with moviepy
        problems.append("--capture-video needs moviepy: pip install moviepy")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        problems.append(f"{args.env_id} has an unbounded Box action space; LQL samples in a bounded box")
    if args.autotune_w and args.autotune_chains <= space.shape[0] + 1:
        problems.append(f"--autotune-chains must exceed dim(A) + 1 = {space.shape[0] + 1} (a covariance per state)")
    if args.autotune_w and args.target_entropy_per_dim >= math.log(2):  # the uniform law has the most: w would rise forever
        problems.append(
            f"--target-entropy-per-dim {args.target_entropy_per_dim} is unreachable: the most any law on [-1, 1]^d "
            f"has is log 2 = {math.log(2):.3f} per dimension"
        )
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    if args.capture_video:
        check_rendering(args.env_id)


def check_rendering(env_id):
    """Renders one frame before anything is written (with no display, EGL: MuJoCo's default GLFW needs one)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
    try:
        env = gym.make(env_id, render_mode="rgb_array")
        env.reset(seed=0)
        env.render()
        env.close()
    except Exception as e:
        raise SystemExit(
            f"error: --capture-video cannot render {env_id} with MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
            f"({type(e).__name__}); on a machine without a display use MUJOCO_GL=egl (needs libEGL)"
        ) from None


def make_env(env_id, seed, idx, capture_video, run_name):
    def thunk():
        if capture_video and idx == 0:
            env = gym.make(env_id, render_mode="rgb_array")
            env = gym.wrappers.RecordVideo(env, f"videos/{run_name}")
        else:
            env = gym.make(env_id)
        env.action_space.seed(seed + idx)
        return env

    return thunk


def make_vector_env(env_id, seed, num_envs, capture_video=False, run_name=""):
    # SAME_STEP autoreset: an ended episode's true last observation is in infos["final_obs"], so no transition spans a
    # reset (CleanRL's scripts mishandle gymnasium 1.x's default, NEXT_STEP)
    envs = gym.vector.SyncVectorEnv(
        [make_env(env_id, seed, i, capture_video, run_name) for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def real_next_observations(next_obs, terminations, truncations, infos):
    """s' of each transition: the returned observation, except for ended episodes (whose returned one starts the next)."""
    real_next_obs = next_obs.copy()
    for i in np.flatnonzero(np.logical_or(terminations, truncations)):
        real_next_obs[i] = infos["final_obs"][i]
    return real_next_obs


def to_env_actions(actions, space):
    """Maps sampler actions in [-1, 1]^d linearly onto the environment's Box bounds (no tanh)."""
    low = space.low.astype(np.float64)
    return (low + (actions + 1) * ((space.high.astype(np.float64) - low) / 2)).astype(np.float32)


# ALGO LOGIC: the critics, the Langevin sampler, the replay buffer and the update (docs/lql.md, "Implementation details")
def tanh_softplus(z):
    """tanh(softplus(z)) from one exp, n / (n + 2) with n = e^z (e^z + 2), and e^z: cheaper than torch's mish."""
    e = torch.exp(z.clamp(max=20.0))  # beyond 20, tanh(softplus(z)) == 1 in float32
    n = e * (e + 2)
    return n / (n + 2), e


def mish(z):
    """mish(z) = z * tanh(softplus(z)), the critics' activation."""
    return z * tanh_softplus(z)[0]


def mish_and_derivative(z):
    """mish(z) and mish'(z) = t + z (1 - t^2) sigmoid(z), t = tanh(softplus(z)), for the hand-written gradient."""
    t, e = tanh_softplus(z)
    return z * t, t + z * (1 - t**2) * (e / (1 + e))


class EnsembleLinear(nn.Module):
    """`n_members` independent linear layers applied as one batched matmul: (E, N, in) -> (E, N, out)."""

    def __init__(self, n_members, in_features, out_features, bias=True, fan_in=None):
        super().__init__()
        # the authors' init (haiku's Linear default): N(0, 1/fan_in) truncated at 2 stddev, not rescaled; zero biases
        std = 1 / math.sqrt(fan_in or in_features)
        weight = torch.empty(n_members, in_features, out_features)
        self.weight = nn.Parameter(nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, out_features)) if bias else None

    def forward(self, x):  # x is (E, N, in), or (N, in) shared by every member
        y = torch.matmul(x, self.weight)
        return y if self.bias is None else y + self.bias


class CriticEnsemble(nn.Module):
    """Two critics Q_i(s, a): concat(s, a) -> 3 x 256 mish -> 1, evaluated as one ensemble. The first layer is split: the
    state's share, constant along a Langevin chain, is computed once per chain (`state_features`)."""

    def __init__(self, obs_dim, act_dim, n_critics=2, hidden_dim=256, n_hidden_layers=3):
        super().__init__()
        fan_in = obs_dim + act_dim
        self.state_in = EnsembleLinear(n_critics, obs_dim, hidden_dim, fan_in=fan_in)
        self.action_in = EnsembleLinear(n_critics, act_dim, hidden_dim, bias=False, fan_in=fan_in)
        self.hidden = nn.ModuleList(EnsembleLinear(n_critics, hidden_dim, hidden_dim) for _ in range(n_hidden_layers - 1))
        self.out = EnsembleLinear(n_critics, hidden_dim, 1)

    def state_features(self, obs):  # (N, obs_dim) -> (E, N, hidden), bias included
        return self.state_in(obs)

    def q_from_features(self, features, actions):  # (E, N, hidden) state features, (N, act_dim) -> (E, N)
        h = mish(features + self.action_in(actions))
        for layer in self.hidden:
            h = mish(layer(h))
        return self.out(h).squeeze(-1)

    @torch.no_grad()
    def mean_action_gradient(self, features, actions):
        """grad_a of the critics' mean Q, backpropagated by hand: no autograd graph and no parameter gradients, about 2x
        faster than autograd (the sampler's hot path)."""
        h, slope = mish_and_derivative(features + self.action_in(actions))
        slopes = [slope]
        for layer in self.hidden:
            h, slope = mish_and_derivative(layer(h))
            slopes.append(slope)
        grad = self.out.weight.transpose(1, 2) * slopes[-1]  # dQ_i/dh_last: (E, N, hidden)
        for layer, slope in zip(reversed(self.hidden), reversed(slopes[:-1]), strict=True):
            grad = torch.bmm(grad, layer.weight.transpose(1, 2)) * slope
        return torch.matmul(grad, self.action_in.weight.transpose(1, 2)).mean(0)

    def forward(self, obs, actions):
        return self.q_from_features(self.state_features(obs), actions)


def action_gradient(q_fn, actions):
    """Per-chain grad_a of q_fn by autograd; only the actions require a gradient, so the critics' `.grad` stay untouched."""
    with torch.enable_grad():
        a = actions.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(q_fn(a).sum(), a)
    return grad


def langevin_sample(q_fn, actions, w, n_steps, step_size, grad_norm=False, grad_fn=None):
    """Unadjusted Langevin dynamics on pi ∝ exp(q_fn / w) in [-1, 1]^d, one chain per row of the starts `actions` (N, d):
    a <- clip(a + step_size/2 * g / w + sqrt(step_size) * z, -1, 1), g = grad_a q_fn(a) (unit-normalised per chain with
    `grad_norm`; supplied by `grad_fn(a)` when given). Returns the last iterates."""
    grad_fn = grad_fn or (lambda a: action_gradient(q_fn, a))
    drift_scale = 0.5 * step_size / w
    noise = torch.randn((n_steps, *actions.shape), device=actions.device, dtype=actions.dtype) * step_size**0.5
    a = actions.detach()
    for k in range(n_steps):
        g = grad_fn(a)
        if grad_norm:
            g = g / (g.norm(dim=-1, keepdim=True) + 1e-8)
        a = (a + drift_scale * g + noise[k]).clamp_(-1.0, 1.0)
    return a


def mean_critic(qf, obs):
    """The sampler's q_fn and grad_fn: a -> the critics' mean Q (the mean keeps w the true temperature) and its
    action-gradient; the state features are computed once per call."""
    features = qf.state_features(obs)
    q_fn = lambda actions: qf.q_from_features(features, actions).mean(0)
    grad_fn = lambda actions: qf.mean_action_gradient(features, actions)
    return q_fn, grad_fn


def sample_actions(qf, obs, args, w=None):
    """One action per state: a Langevin chain from Uniform[-1, 1]^d on the online critics' mean. w=None: args.w."""
    start = torch.rand(obs.shape[0], qf.action_in.weight.shape[1], device=obs.device) * 2 - 1
    q_fn, grad_fn = mean_critic(qf, obs)
    return langevin_sample(
        q_fn, start, args.w if w is None else w, args.langevin_steps, args.step_size, args.grad_norm, grad_fn
    )


class ReplayBuffer:
    """Uniform replay over preallocated tensors on the training device; actions in [-1, 1]^d. Only `terminated` is
    stored: a time-limit truncation still bootstraps, from the true final observation."""

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminations")

    def __init__(self, capacity, obs_dim, act_dim, device):
        self.capacity, self.device = capacity, device
        self.obs = torch.zeros((capacity, obs_dim), dtype=torch.float32, device=device)
        self.next_obs = torch.zeros((capacity, obs_dim), dtype=torch.float32, device=device)
        self.actions = torch.zeros((capacity, act_dim), dtype=torch.float32, device=device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.terminations = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.pos, self.size = 0, 0

    def add(self, obs, next_obs, actions, rewards, terminations):  # one transition per environment; the oldest go first
        n = len(rewards)
        idx = torch.arange(self.pos, self.pos + n, device=self.device) % self.capacity
        for field, value in zip(self.FIELDS, (obs, next_obs, actions, rewards, terminations), strict=True):
            getattr(self, field)[idx] = torch.as_tensor(np.asarray(value), dtype=torch.float32).to(self.device)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def state_dict(self):  # the filled rows only: the buffer fills from row 0 and wraps only when full
        return {"pos": self.pos, "size": self.size, **{f: getattr(self, f)[: self.size].clone() for f in self.FIELDS}}

    def load_state_dict(self, state):
        for field in self.FIELDS:
            getattr(self, field)[: state["size"]] = state[field].to(self.device)
        self.pos, self.size = state["pos"], state["size"]

    def sample(self, batch_size):
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terminations[idx]


def update_critics(qf, qf_target, optimizer, batch, args, w=None):
    """One training iteration:
    1. a' by the sampler on the online critics at s'; y = scale * r + gamma * (1 - term) * min_i Q_i^targ(s', a');
    2. TD step: Q_i(s, a) regresses onto y (one Adam step on the summed MSE);
    3. Polyak update of the targets."""
    obs, actions, rewards, next_obs, terminations = batch
    next_actions = sample_actions(qf, next_obs, args, w)
    with torch.no_grad():
        next_q = qf_target(next_obs, next_actions).min(0).values
        td_target = args.reward_scale * rewards + args.gamma * (1 - terminations) * next_q
    q_values = qf(obs, actions)
    qf_losses = ((q_values - td_target) ** 2).mean(1)
    optimizer.zero_grad()
    qf_losses.sum().backward()
    optimizer.step()
    with torch.no_grad():
        torch._foreach_lerp_(list(qf_target.parameters()), list(qf.parameters()), args.tau)  # fused Polyak update
    return qf_losses.detach(), q_values.detach().mean(1), next_actions


def sampler_diagnostics(qf, obs, sampled_actions):
    """Spread of sampled actions, the action-gradient's norm there, share of clipped coordinates."""
    grad = mean_critic(qf, obs)[1](sampled_actions)
    return {
        "sampler/action_std": sampled_actions.std(0).mean(),
        "sampler/grad_norm": grad.norm(dim=-1).mean(),
        "sampler/clip_fraction": (sampled_actions.abs() >= 1.0).float().mean(),
    }


# Automatic temperature (--autotune-w): w is the multiplier of the constraint E_s H(pi(.|s)) >= target, tuned by damped
# Newton steps on log w, toward a target that cools from the uniform law's entropy (docs/autotune.md)
def gaussian_entropy(samples):
    """(S, M, d) samples of S laws -> (S,) entropies of Gaussians with their covariances (an upper bound, exact for a
    Gaussian); the M-sample log det's Wishart bias sum_i [psi((M - i) / 2) - log((M - 1) / 2)] is added back."""
    n, d = samples.shape[1], samples.shape[2]
    centred = samples - samples.mean(1, keepdim=True)
    covariance = centred.transpose(1, 2) @ centred / (n - 1) + 1e-6 * torch.eye(d, device=samples.device)
    i = torch.arange(1, d + 1, dtype=torch.float64)
    log_det_bias = float((torch.special.digamma((n - i) / 2) - math.log((n - 1) / 2)).sum())
    return 0.5 * d * math.log(2 * math.pi * math.e) + 0.5 * (torch.logdet(covariance) - log_det_bias)


def policy_entropy(sample, obs, n_chains):
    """Mean over states of the Gaussian entropy bound of `sample(obs)`'s action law, from `n_chains` chains per state."""
    with torch.no_grad():
        actions = sample(obs.repeat_interleave(n_chains, 0))
    return gaussian_entropy(actions.view(obs.shape[0], n_chains, -1)).mean()


def temperature_optimizer(log_w, act_dim, newton_fraction):
    """SGD on log w with lr = fraction / (d / 2): a damped Newton step, the dual's curvature being d/2 for a quadratic Q."""
    return torch.optim.SGD([log_w], lr=newton_fraction / (act_dim / 2))


def scheduled_target_entropy(global_step, args, act_dim):
    """The hot start: d log 2 (the uniform law's) at --learning-starts, linearly down to the final target by
    --autotune-cooling-fraction of the learning steps (0: the final target throughout)."""
    final, uniform = args.target_entropy_per_dim * act_dim, act_dim * math.log(2)
    cooling_steps = args.autotune_cooling_fraction * (args.total_timesteps - args.learning_starts)
    progress = min(max((global_step - args.learning_starts) / cooling_steps, 0.0), 1.0) if cooling_steps > 0 else 1.0
    return uniform + progress * (final - uniform)


def temperature_step(log_w, w_optimizer, entropy, target_entropy):
    """A dual step on log w, gradient H - target: w falls while the policy is more random than the target (SAC's rule)."""
    w_loss = log_w * (entropy - target_entropy).detach()
    w_optimizer.zero_grad()
    w_loss.backward()
    w_optimizer.step()


def evaluate(qf, env_id, n_episodes, seed, args, device, act=sample_actions, capture_video=False, run_name="", w=None):
    """Returns of `n_episodes` episodes on fresh environments, in parallel, with the training sampler (as the authors)."""
    envs = make_vector_env(env_id, seed, n_episodes, capture_video, run_name)
    returns = np.full(n_episodes, np.nan)
    obs, _ = envs.reset(seed=seed)
    while np.isnan(returns).any():
        actions = act(qf, torch.as_tensor(obs, dtype=torch.float32, device=device), args, w)
        obs, _, _, _, infos = envs.step(to_env_actions(actions.cpu().numpy(), envs.single_action_space))
        if "episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                if np.isnan(returns[i]):
                    returns[i] = infos["episode"]["r"][i]
    envs.close()
    return returns


def train(args: Args):
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # a saturated mish makes denormal floats, slow on x86 CPUs: docs/speed.md#denormal-floats
    if args.eval_checkpoint:
        return evaluate_checkpoint(args)
    device = torch.device("cuda" if args.cuda else "cpu")
    checkpoint = load_checkpoint(args.resume, args.env_id, device, resuming=args) if args.resume else None
    run_name = checkpoint["run_name"] if checkpoint else f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    writer = make_writer(args, run_name, checkpoint)
    envs = make_vector_env(args.env_id, args.seed, args.num_envs, args.capture_video, run_name)
    stop = StopSignals()  # the first SIGINT / SIGTERM: the loop checkpoints and exits after the current step
    try:
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        act_dim = int(np.prod(envs.single_action_space.shape))
        qf = CriticEnsemble(obs_dim, act_dim).to(device)
        qf_target = CriticEnsemble(obs_dim, act_dim).to(device)
        qf_target.load_state_dict(qf.state_dict())
        qf_target.requires_grad_(False)
        if args.compile:
            torch._inductor.config.fallback_random = True  # eager's random draws, hence eager's numbers
        update, act = faster(update_critics, args), faster(sample_actions, args)
        # capturable: Adam keeps its step count on the GPU, so that its step can live inside a CUDA graph
        optimizer = torch.optim.Adam(qf.parameters(), lr=args.learning_rate, capturable=args.cudagraphs)
        log_w = torch.tensor(math.log(args.w), device=device, requires_grad=True)  # tuned only with --autotune-w
        w_optimizer = temperature_optimizer(log_w, act_dim, args.autotune_lr)
        rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)

        # TRY NOT TO MODIFY: start the game
        obs, _ = envs.reset(seed=args.seed)
        recent_returns, n_updates, global_step, start_iteration, next_eval = [], 0, 0, 0, args.eval_frequency or None
        if checkpoint is not None:  # continue exactly where the checkpoint was written
            obs, recent_returns, n_updates, global_step, start_iteration, next_eval = resume_from(
                checkpoint, args, qf, qf_target, optimizer, log_w, w_optimizer, rb, envs
            )
        every = args.checkpoint_frequency
        next_checkpoint = (global_step // every + 1) * every if every else math.inf  # the next multiple of the frequency
        last_checkpoint, evaluated_at = args.resume, None  # the final evaluation reuses one made at the last step
        start_time, start_step = time.time(), global_step
        autotune_seconds, entropy = 0.0, None  # the tuner's time (logged) and its last entropy estimate
        w = log_w.detach().exp() if args.autotune_w else None  # None: the fixed args.w (here for a run resumed at its end)
        progress = ProgressLine(args, global_step)
        n_iterations = -(-args.total_timesteps // args.num_envs)
        for iteration in range(start_iteration, n_iterations):
            iteration_start = time.time()
            global_step += args.num_envs  # env steps, not vector steps (CleanRL #465)
            w = log_w.detach().exp() if args.autotune_w else None
            # ALGO LOGIC: put action logic here
            if global_step <= args.learning_starts:
                actions = torch.rand(args.num_envs, act_dim, device=device) * 2 - 1
            else:
                actions = act(qf, torch.as_tensor(obs, dtype=torch.float32, device=device), args, w)
            actions = actions.cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(to_env_actions(actions, envs.single_action_space))
            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):  # every finished env, not only the first (CleanRL #481)
                    episodic_return = float(infos["episode"]["r"][i])
                    recent_returns = (recent_returns + [episodic_return])[-10:]
                    writer.add_scalar("charts/episodic_return", episodic_return, global_step)
                    writer.add_scalar("charts/episodic_length", int(infos["episode"]["l"][i]), global_step)
            rb.add(obs, real_next_observations(next_obs, terminations, truncations, infos), actions, rewards, terminations)
            obs = next_obs

            # ALGO LOGIC: training (once the buffer holds a batch: a resume without the buffer refills it first)
            if global_step > args.learning_starts and rb.size >= args.batch_size:
                batch = rb.sample(args.batch_size)
                qf_losses, qf_values, next_actions = update(qf, qf_target, optimizer, batch, args, w)
                n_updates += 1
                if progress.learning_since is None:
                    progress.first_update_done(global_step, time.time() - iteration_start)
                if not torch.isfinite(torch.cat([qf_losses, qf_values, log_w.detach()[None]])).all():
                    raise SystemExit(  # stop: no training on garbage
                        f"error: non-finite loss or Q-value at global_step={global_step} (update {n_updates}); "
                        f"last good checkpoint: {last_checkpoint or 'none written'}"
                    )
                if args.autotune_w and n_updates % args.autotune_frequency == 0:
                    tune_start = time.time()
                    sample = lambda o, w=w: act(qf, o, args, w)
                    entropy = policy_entropy(sample, batch[0][: args.autotune_states], args.autotune_chains)
                    target_entropy = scheduled_target_entropy(global_step, args, act_dim)
                    temperature_step(log_w, w_optimizer, entropy, target_entropy)
                    autotune_seconds += time.time() - tune_start
                if n_updates % args.log_frequency == 0 or n_updates == 1:  # the first at once: it trains
                    tuned = None
                    if entropy is not None:  # w, its entropy and target, and the tuner's share of the time
                        share = autotune_seconds / (time.time() - start_time)
                        tuned = log_w.exp().item(), entropy.item(), target_entropy, share
                    sps = int((global_step - start_step) / (time.time() - start_time))
                    diagnostics = sampler_diagnostics(qf, batch[3], next_actions)
                    log_update(writer, global_step, qf_losses, qf_values, diagnostics, sps, tuned)

            if next_eval is not None and global_step >= next_eval:
                next_eval += args.eval_frequency
                evaluated_at = global_step
                eval_returns = evaluate(qf, args.env_id, args.eval_episodes, args.seed + 10_000, args, device, act, w=w)
                writer.add_scalar("eval/episodic_return", eval_returns.mean(), global_step)
                print(f"global_step={global_step}, eval_return={eval_returns.mean():.1f} ± {eval_returns.std():.1f}")
            if global_step >= next_checkpoint or stop.received:  # docs/checkpoints.md
                next_checkpoint += every
                loop = dict(obs=obs, recent_returns=recent_returns, n_updates=n_updates, global_step=global_step)
                loop.update(iteration=iteration, next_eval=next_eval)
                state = checkpoint_state(args, run_name, qf, qf_target, optimizer, log_w, w_optimizer, rb, envs, loop)
                last_checkpoint = save_checkpoint(f"runs/{run_name}/checkpoint.pt", state)
            if stop.received:
                writer.flush()
                stop.exit(global_step, last_checkpoint)
            progress.print(global_step, n_updates, recent_returns, force=iteration == n_iterations - 1)

        if evaluated_at != global_step:
            eval_returns = evaluate(qf, args.env_id, args.eval_episodes, args.seed + 10_000, args, device, act, w=w)
            writer.add_scalar("eval/episodic_return", eval_returns.mean(), global_step)
        print(f"global_step={global_step}, final eval_return={eval_returns.mean():.1f} ± {eval_returns.std():.1f}")
        if args.save_model:
            model_path = f"runs/{run_name}/{args.exp_name}.cleanrl_model"
            model = {"algorithm": ALGORITHM, "args": asdict(args), "qf": qf.state_dict(), "qf_target": qf_target.state_dict()}
            model["w"] = log_w.exp().item() if args.autotune_w else args.w  # the w the critics act with
            torch.save(model, model_path)
            print(f"model saved to {model_path}")
    finally:
        stop.restore()
        envs.close()
        writer.close()
        if args.track:
            import wandb

            wandb.finish()
    return qf, f"runs/{run_name}"


# The machinery below the loop: logging, resume, checkpoints, progress, speed, evaluation of saved critics
def make_writer(args, run_name, checkpoint):
    """CleanRL's writer (--track: synced to W&B); a resumed run appends, hiding what was logged after its checkpoint."""
    if args.track:
        import wandb

        run = dict(project=args.wandb_project_name, entity=args.wandb_entity, name=run_name, config=vars(args))
        wandb.init(**run, sync_tensorboard=True, save_code=True)
    writer = SummaryWriter(f"runs/{run_name}", purge_step=checkpoint["global_step"] + 1 if checkpoint else None)
    if checkpoint is None:
        table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)
    return writer


def log_update(writer, global_step, qf_losses, qf_values, diagnostics, sps, tuned=None):
    """The losses and sampler diagnostics of an update; `tuned`: (w, entropy, target entropy, time share) once tuned."""
    if tuned is not None:
        for key, value in zip(("losses/w", "losses/policy_entropy", "losses/target_entropy"), tuned[:3], strict=True):
            writer.add_scalar(key, value, global_step)
        writer.add_scalar("charts/autotune_time_fraction", tuned[3], global_step)
    for i in range(2):
        writer.add_scalar(f"losses/qf{i + 1}_values", qf_values[i].item(), global_step)
        writer.add_scalar(f"losses/qf{i + 1}_loss", qf_losses[i].item(), global_step)
    writer.add_scalar("losses/qf_loss", qf_losses.sum().item() / 2, global_step)
    for key, value in diagnostics.items():
        writer.add_scalar(key, value.item(), global_step)
    writer.add_scalar("charts/SPS", sps, global_step)


def resume_from(checkpoint, args, qf, qf_target, optimizer, log_w, w_optimizer, rb, envs):
    """Restores everything `checkpoint` holds; returns the loop's state (obs, counters, next iteration, next_eval)."""
    for group in checkpoint["optimizer"]["param_groups"]:  # Adam's mode follows this run's --cudagraphs
        group["capturable"] = args.cudagraphs
    for key, part in dict(qf=qf, qf_target=qf_target, optimizer=optimizer, w_optimizer=w_optimizer).items():
        part.load_state_dict(checkpoint[key])
    with torch.no_grad():
        log_w.copy_(checkpoint["log_w"])
    if checkpoint["buffer"] is not None:
        rb.load_state_dict(checkpoint["buffer"])
    restore_env_state(envs, checkpoint["envs"])
    rng = checkpoint["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"].cpu())  # map_location may have moved it
    if args.cuda and rng["cuda"] is not None:
        torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
    print(f"resumed {checkpoint['run_name']} at global_step={checkpoint['global_step']} from {args.resume}")
    loop = [checkpoint[key] for key in ("obs", "recent_returns", "n_updates", "global_step")]
    return *loop, checkpoint["iteration"] + 1, checkpoint["next_eval"]


def checkpoint_state(args, run_name, qf, qf_target, optimizer, log_w, w_optimizer, rb, envs, loop):
    """Everything a run needs to continue exactly as if it had not stopped; `loop`: the loop's state (obs, counters)."""
    parts = dict(qf=qf, qf_target=qf_target, optimizer=optimizer, w_optimizer=w_optimizer)
    state = dict(algorithm=ALGORITHM, args=asdict(args), run_name=run_name, **{k: p.state_dict() for k, p in parts.items()})
    state["log_w"] = log_w.detach().clone()
    state["w"] = log_w.exp().item() if args.autotune_w else args.w  # the w the critics act with
    state["buffer"] = rb.state_dict() if args.checkpoint_buffer else None
    rng = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    rng["cuda"] = torch.cuda.get_rng_state_all() if args.cuda else None
    return {**state, "envs": env_state(envs), **loop, "rng": rng}


class StopSignals:
    """The first SIGINT / SIGTERM only sets `received`: the loop then checkpoints and exits; a second one stops at once."""

    def __init__(self):
        self.received = None
        self.previous = {s: signal.signal(s, self.on_signal) for s in STOP_SIGNALS}

    def on_signal(self, signum, frame):
        if self.received:
            raise KeyboardInterrupt
        self.received = signum

    def exit(self, global_step, path):
        print(
            f"{signal.Signals(self.received).name} at global_step={global_step}: checkpoint written to {path}; "
            f"resume with: {resume_command(path)}",
            file=sys.stderr,
        )
        sys.exit(128 + self.received)

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class ProgressLine:
    """The console line every 10 s; the time left comes from the rate of learning after the first update (compiling)."""

    def __init__(self, args, global_step):
        self.args, self.last_print, self.last_step = args, time.time(), global_step
        self.learning_since = None  # (time, global_step) at the end of this process's first update

    def first_update_done(self, global_step, seconds):
        self.learning_since = (time.time(), global_step)
        compiled = " (compilation included)" if self.args.compile else ""
        print(f"global_step={global_step}: first update done, {seconds:.1f}s for its step{compiled}", flush=True)

    def print(self, global_step, n_updates, recent_returns, force=False):
        args = self.args
        if args.compile and global_step <= args.learning_starts < global_step + args.num_envs:  # minutes of silence next
            print(
                f"global_step={global_step}: learning starts; --compile compiles the sampler and the update first", flush=True
            )
        now = time.time()
        if now - self.last_print < 10 and not force:
            return
        sps = (global_step - self.last_step) / max(now - self.last_print, 1e-9)
        self.last_print, self.last_step = now, global_step
        recent = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
        if global_step <= args.learning_starts:
            phase = f"warm-up (random actions until step {args.learning_starts})"
        elif self.learning_since is None or global_step == self.learning_since[1]:
            phase = "time_left=? (measured once learning runs)"
        else:
            rate = (global_step - self.learning_since[1]) / (now - self.learning_since[0])
            phase = f"time_left={(args.total_timesteps - global_step) / rate / 60:.1f}min"
        line = f"global_step={global_step}/{args.total_timesteps}, recent_return={recent}, SPS={sps:.0f}, updates={n_updates}"
        print(f"{line}, {phase}", flush=True)


def faster(fn, args):
    """`fn` compiled by --compile (one graph per shape) and replayed from CUDA graphs by --cudagraphs (docs/speed.md)."""
    fn = torch.compile(fn, dynamic=False) if args.compile else fn
    return CudaGraphed(fn) if args.cudagraphs else fn


class CudaGraphed:
    """`fn` replayed from CUDA graphs: one launch per call (small networks are bound by launch overhead). One graph per
    signature, the CUDA tensor arguments' shapes (one level into tuples) and every other argument's identity (baked in:
    it may change only in place); the first calls run eagerly on a side stream, as capture requires (docs/speed.md)."""

    def __init__(self, fn, warmup_calls=3):
        self.fn, self.warmup_calls = fn, warmup_calls
        self.calls, self.graphs = {}, {}

    @staticmethod
    def is_input(x):  # the arguments copied into the graph at each call; all others are baked in
        return isinstance(x, torch.Tensor) and x.is_cuda

    @staticmethod
    def flatten(args):
        return [x for a in args for x in (a if isinstance(a, tuple) else (a,))]

    def __call__(self, *args):
        flat_args = self.flatten(args)
        key = tuple((x.shape, x.dtype) if self.is_input(x) else id(x) for x in flat_args)
        self.calls[key] = self.calls.get(key, 0) + 1
        if self.calls[key] <= self.warmup_calls:
            side_stream = torch.cuda.Stream()
            side_stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side_stream):
                outputs = self.fn(*args)
            torch.cuda.current_stream().wait_stream(side_stream)
            return outputs
        if key not in self.graphs:  # capture: records the kernels without running them
            copy_if_input = lambda x: x.clone() if self.is_input(x) else x
            static_args = tuple(tuple(map(copy_if_input, a)) if isinstance(a, tuple) else copy_if_input(a) for a in args)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_outputs = self.fn(*static_args)
            self.graphs[key] = (graph, [x for x in self.flatten(static_args) if self.is_input(x)], static_outputs)
        graph, static_inputs, static_outputs = self.graphs[key]
        for static_input, x in zip(static_inputs, [x for x in flat_args if self.is_input(x)], strict=True):
            static_input.copy_(x)
        graph.replay()
        return tuple(x.clone() for x in static_outputs) if isinstance(static_outputs, tuple) else static_outputs.clone()


# Checkpoints (docs/checkpoints.md): the flags a resumed run may change; any other difference is refused
RESUMABLE_CHANGES = set(
    "resume eval_checkpoint total_timesteps checkpoint_frequency checkpoint_buffer compile cudagraphs threads track "
    "wandb_project_name wandb_entity".split()
)


def env_layers(envs):
    """The vector env, its wrappers, and every sub-env with its wrappers, outermost first."""
    layers, layer = [], envs
    while isinstance(layer, gym.vector.VectorWrapper):
        layers.append(layer)
        layer = layer.env
    layers.append(layer)
    for env in layer.envs:
        while isinstance(env, gym.Wrapper):
            layers.append(env)
            env = env.env
        layers.append(env)
    return layers


def env_state(envs):
    """The counters, arrays and RNGs of every env layer, and MuJoCo's physics (gymnasium pickles a fresh MuJoCo env)."""
    state = []
    for layer in env_layers(envs):
        kept = (int, float, np.ndarray, np.random.Generator)
        fields = {k: copy.deepcopy(v) for k, v in vars(layer).items() if isinstance(v, kept)}
        if isinstance(getattr(layer, "data", None), mujoco.MjData):
            physics = np.empty(mujoco.mj_stateSize(layer.model, mujoco.mjtState.mjSTATE_INTEGRATION))
            mujoco.mj_getState(layer.model, layer.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
            fields["mujoco_integration_state"] = physics
        state.append(fields)
    return state


def restore_env_state(envs, state):
    """Puts back what `env_state` read, into freshly made and reset environments of the same kind."""
    for layer, fields in zip(env_layers(envs), state, strict=True):
        fields = dict(fields)
        physics = fields.pop("mujoco_integration_state", None)
        vars(layer).update(fields)
        if physics is not None:
            mujoco.mj_setState(layer.model, layer.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
            mujoco.mj_forward(layer.model, layer.data)  # derived quantities (positions of bodies) some envs read


def save_checkpoint(path, state):
    """Atomic (a temporary file, flushed, renamed over the last one): a crash while writing keeps the previous one."""
    with open(path + ".tmp", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
    return path


def load_checkpoint(path, env_id, device, resuming=None):
    """Reads a checkpoint or saved model; refuses with one line a missing, truncated or foreign file, another algorithm's,
    one written for another environment than `env_id` (None: any), and one whose flags differ from those of the run
    `resuming` it beyond RESUMABLE_CHANGES. Unpickles: load only files you trust."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise SystemExit(f"error: no checkpoint at {path}") from None
    except Exception as e:  # a truncated or foreign file fails in zip, pickle or EOF handling
        raise SystemExit(f"error: cannot read checkpoint {path} (truncated or not a checkpoint: {type(e).__name__})") from None
    if not isinstance(checkpoint, dict) or not {"algorithm", "args", "qf"} <= checkpoint.keys():
        raise SystemExit(f"error: {path} is not a checkpoint of this project's scripts")
    if checkpoint["algorithm"] != ALGORITHM:
        raise SystemExit(f"error: {path} is a {checkpoint['algorithm']} checkpoint; this script is {ALGORITHM}")
    saved = checkpoint["args"]
    if env_id is not None and saved["env_id"] != env_id:
        raise SystemExit(f"error: {path} was written for {saved['env_id']}, not --env-id {env_id}")
    if resuming is not None:
        for k, v in saved.items():
            if k not in RESUMABLE_CHANGES and getattr(resuming, k, v) != v:
                raise SystemExit(
                    f"error: --{k.replace('_', '-')} {getattr(resuming, k)} differs from the checkpoint's {v}; "
                    "resume with the run's own command line plus --resume PATH"
                )
    return checkpoint


def resume_command(checkpoint_path):
    """This run's command line with --resume PATH in place of any earlier --resume."""
    argv = [a for i, a in enumerate(sys.argv) if not a.startswith("--resume") and (i == 0 or sys.argv[i - 1] != "--resume")]
    return shlex.join(["python", *argv, "--resume", checkpoint_path])


def evaluate_checkpoint(args: Args):
    """--eval-checkpoint: the saved critics, acting with the sampler settings they were trained with."""
    device = torch.device("cuda" if args.cuda else "cpu")
    # the checkpoint's environment, unless --env-id names another (the default Walker2d-v4 stands for "not given")
    checkpoint = load_checkpoint(args.eval_checkpoint, None if args.env_id == Args.env_id else args.env_id, device)
    eval_time_args = ("eval_checkpoint", "eval_episodes", "capture_video", "seed", "cuda", "compile", "cudagraphs")
    trained = {k: v for k, v in checkpoint["args"].items() if k in Args.__dataclass_fields__ and k not in eval_time_args}
    args = Args(**{**asdict(args), **trained, "w": checkpoint["w"]})  # the tuned w, if tuned
    probe = gym.make(args.env_id)
    qf = CriticEnsemble(int(np.prod(probe.observation_space.shape)), int(np.prod(probe.action_space.shape))).to(device)
    probe.close()
    qf.load_state_dict(checkpoint["qf"])
    torch.manual_seed(args.seed)
    act = faster(sample_actions, args)
    run_name = f"{args.env_id}__{args.exp_name}__eval__{int(time.time())}"
    returns = evaluate(
        qf, args.env_id, args.eval_episodes, args.seed + 10_000, args, device, act, args.capture_video, run_name
    )
    print(
        f"{args.eval_checkpoint} on {args.env_id}: eval_return={returns.mean():.1f} ± {returns.std():.1f} "
        f"over {len(returns)} episodes"
    )
    if args.capture_video:
        print(f"video of the first episode in videos/{run_name}")
    return returns


if __name__ == "__main__":
    train(tyro.cli(Args))
