# Langevin Q-Learning (LQL): docs in README.md; paper: Ki, Ahn, Kim, Lee, arXiv 2602.07873 (2026)
"""Langevin Q-Learning: an actor-free soft Q-learning baseline in one file.

There is no actor. The soft policy is the Boltzmann law of the critic, pi(a|s) ∝ exp(Q(s, a) / w), whose score is
grad_a Q(s, a) / w, so actions are drawn by unadjusted Langevin dynamics on the critic's action-gradient
(spec, sections 1-2):

    a_{k+1} = clip(a_k + (eps / 2) * grad_a Q(s, a_k) / w + sqrt(eps) * z_k, -1, 1),   z_k ~ N(0, I)

started from Uniform[-1, 1]^d; the last of K iterates is the action. The same sampler draws a' for the TD target.

`w` here is the TEMPERATURE (bigger w = more exploration, pi -> uniform as w -> inf). The authors' NC-LQL code
instead multiplies a unit-normalised gradient by w_code = 500, i.e. it runs  a += (eps / 2) * w_code * g / ||g||.
With `--grad-norm` this script does the same with w = 1 / w_code (0.002 for the authors' 500).

Known limitation (the motivation for NC-LQL, see nclql_continuous_action.py): a single noise scale mixes slowly
between separated modes of a non-concave Q, so the chains keep roughly the split of their uniform start.

Automatic temperature (`--autotune-w`, opt-in; the paper names hand-tuned w as its main limitation). As in SAC,
ask for max E[Q] subject to E_s H(pi(.|s)) >= H_target. The Lagrangian max_pi E[Q + w (H(pi) - H_target)] is, for a
fixed multiplier w, maximised by pi ∝ exp(Q / w): exactly the law the Langevin sampler draws. So w is the
constraint's multiplier, and the dual problem min_{w > 0} w (E H(pi_w) - H_target) is solved by gradient steps on
log w with gradient H(pi_w) - H_target (SAC's alpha rule; default target -dim(A)). The dual's curvature is known:
dH/dlog w = Var_pi(Q / w), which is d/2 for a quadratic Q (H = d/2 log w + const), so each step is a damped Newton
step, log w -= lr * (H - H_target) / (d / 2): w reaches the target within tens of steps, not thousands (Adam's
fixed-size steps). H(pi_w) is estimated every few updates from many chains per state on a few replayed states, by the
Gaussian bound H <= 1/2 log det(2 pi e Cov) (exact for a Gaussian law; the sample log det is bias-corrected). Its
cost is logged (charts/autotune_time_fraction). Hot start: a young critic's Q is small and flat, so a fixed target is
met only by a near-greedy w (~0.001 measured), and acting greedily on a critic that knows little stalls exploration
(README: the Hopper plateau). So the target starts at the uniform law's entropy d log 2 (the most on [-1, 1]^d) and
falls linearly to H_target over --autotune-cooling-fraction of learning (as CleanRL DQN's epsilon): w cools as the
critic learns, as a fixed w does implicitly while Q grows. Default: all of learning; cooled within half of it, Walker2d's
policy stayed near-greedy for the second half and trailed (README, "Automatic temperature against fixed w").
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
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of the experiment (torch, numpy, random and the environments)"""
    torch_deterministic: bool = True
    """if toggled, sets `torch.backends.cudnn.deterministic=True` (reproducible CUDA kernels)"""
    cuda: bool = False
    """if toggled, runs on CUDA (fails clearly when no GPU is visible)"""
    capture_video: bool = False
    """if toggled, records videos of the first training environment under `videos/{run_name}`"""
    compile: bool = False
    """if toggled, compiles the whole update and the acting sampler with torch.compile (same numbers, about 2x faster)"""
    cudagraphs: bool = False
    """if toggled (with --cuda), replays the update and the acting sampler from CUDA graphs (same numbers, fewer launches)"""
    save_model: bool = False
    """if toggled, saves the critics and the Args to `runs/{run_name}/{exp_name}.cleanrl_model` at the end"""
    threads: int = 1
    """torch's CPU threads (0: torch's default, one per core); small networks run fastest on one, above all on a shared CPU"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases (the TensorBoard logs, synced)"""
    wandb_project_name: str = "lql"
    """the wandb's project name"""
    wandb_entity: str | None = None
    """the entity (team) of wandb's project"""

    # Algorithm specific arguments
    env_id: str = "Walker2d-v4"
    """the id of a gymnasium environment with a bounded Box action space"""
    total_timesteps: int = 5_000_000
    """total environment steps, summed over the parallel environments (authors: 5e6)"""
    num_envs: int = 5
    """number of parallel environments; one gradient update per vector step (authors: 5)"""
    buffer_size: int = 1_000_000
    """the replay memory size (transitions)"""
    gamma: float = 0.99
    """the discount factor"""
    tau: float = 0.005
    """the Polyak averaging rate of the target critics"""
    batch_size: int = 256
    """the minibatch size of each update"""
    learning_starts: int = 30_000
    """environment steps of uniform random actions before learning starts (authors: 30k)"""
    learning_rate: float = 1e-4
    """the Adam learning rate of the critics"""
    reward_scale: float = 0.2
    """rewards are multiplied by this in the TD target (authors: 0.2)"""
    w: float = 0.1
    """temperature of the soft policy pi ∝ exp(Q / w); bigger explores more"""
    langevin_steps: int = 20
    """Langevin steps K per action and per TD-target action (same critic-gradient budget as NC-LQL's L*T = 20)"""
    step_size: float = 1e-2
    """Langevin step size eps (constant; chosen by measurement, see README)"""
    grad_norm: bool = False
    """if toggled, unit-normalises the action-gradient per chain, as the authors' code does (then w = 1/w_code)"""
    eval_frequency: int = 125_000
    """evaluate every this many environment steps (0 disables periodic evaluation; a final one always runs)"""
    eval_episodes: int = 20
    """episodes per evaluation, run in parallel on separate environments (authors: 20)"""
    log_frequency: int = 100
    """log losses and sampler diagnostics every this many updates"""
    autotune_w: bool = False
    """if toggled, adapts w during training toward a target entropy by a dual step on log w, as SAC tunes its alpha"""
    target_entropy_per_dim: float = -1.0
    """--autotune-w aims at this entropy (nats) per action dimension, in [-1, 1]^d: -1 is SAC's target -dim(A)"""
    autotune_frequency: int = 10
    """updates between two entropy estimates and dual steps"""
    autotune_states: int = 4
    """states (from the replay batch) per entropy estimate"""
    autotune_chains: int = 64
    """chains per state for the entropy estimate (must exceed dim(A) + 1: a full covariance per state)"""
    autotune_lr: float = 0.05
    """dual step on log w as a fraction of the Newton step, in (0, 1]: 1 solves a quadratic Q at once; less averages noise"""
    autotune_cooling_fraction: float = 1.0
    """the target entropy falls from the uniform law's (d log 2) to the target over this fraction of the learning steps"""
    checkpoint_frequency: int = 100_000
    """write runs/{run_name}/checkpoint.pt every this many env steps (0: only when interrupted); atomic, latest only"""
    checkpoint_buffer: bool = True
    """if toggled, checkpoints hold the replay buffer too (exact resume); --no-checkpoint-buffer for small files"""
    resume: str | None = None
    """continue the run of this checkpoint: give the run's own command line plus --resume PATH"""
    eval_checkpoint: str | None = None
    """evaluate the critics of this checkpoint or saved model (--eval-episodes, --capture-video) instead of training"""


def check_args(args: Args) -> None:
    """Refuses bad input with a one-line message before anything is built."""
    problems = []
    if not args.w > 0:
        problems.append(f"--w must be > 0 (the temperature of pi ∝ exp(Q/w)), got {args.w}")
    if args.langevin_steps < 1:
        problems.append(f"--langevin-steps must be >= 1, got {args.langevin_steps}")
    if not args.step_size > 0:
        problems.append(f"--step-size must be > 0, got {args.step_size}")
    for name in ("total_timesteps", "num_envs", "buffer_size", "batch_size", "eval_episodes", "log_frequency"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.autotune_w and (args.autotune_frequency < 1 or args.autotune_states < 1 or not 0 < args.autotune_lr <= 1):
        problems.append("--autotune-frequency and --autotune-states must be >= 1 and --autotune-lr in (0, 1] (a Newton step)")
    if not 0 <= args.autotune_cooling_fraction <= 1:
        problems.append(f"--autotune-cooling-fraction must be in [0, 1], got {args.autotune_cooling_fraction}")
    for name in ("learning_starts", "eval_frequency", "checkpoint_frequency"):
        if getattr(args, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not 0 <= args.gamma <= 1:
        problems.append(f"--gamma must be in [0, 1], got {args.gamma}")
    if not 0 < args.tau <= 1:
        problems.append(f"--tau must be in (0, 1], got {args.tau}")
    if not args.learning_rate > 0:
        problems.append(f"--learning-rate must be > 0, got {args.learning_rate}")
    if args.resume and args.eval_checkpoint:
        problems.append("--resume (continue training) and --eval-checkpoint (evaluate only) exclude each other")
    if args.cuda and not torch.cuda.is_available():
        problems.append("--cuda was given but torch sees no CUDA device")
    if args.cudagraphs and not args.cuda:
        problems.append("--cudagraphs needs --cuda (CUDA graphs run on a GPU only)")
    if args.threads < 0:
        problems.append(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if not args.eval_checkpoint:  # runs that could never make an update
        if args.batch_size > args.buffer_size:
            problems.append(f"--batch-size {args.batch_size} exceeds --buffer-size {args.buffer_size}: nothing would train")
        if args.learning_starts >= args.total_timesteps:
            problems.append(
                f"--learning-starts {args.learning_starts} is not shorter than --total-timesteps {args.total_timesteps}: "
                "the run would end in the random warm-up, before any update"
            )
        elif args.batch_size > args.total_timesteps:
            problems.append(
                f"--batch-size {args.batch_size} exceeds --total-timesteps {args.total_timesteps}: nothing would train"
            )
    if args.track and importlib.util.find_spec("wandb") is None:
        problems.append("--track needs wandb: pip install wandb")
    if args.capture_video and importlib.util.find_spec("moviepy") is None:  # gymnasium's RecordVideo writes with it
        problems.append("--capture-video needs moviepy: pip install moviepy")
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    try:
        gym.spec(args.env_id)
    except gym.error.Error as e:
        raise SystemExit(f"error: unknown --env-id {args.env_id!r} ({e})") from None
    probe = gym.make(args.env_id)
    space = probe.action_space
    probe.close()
    if not isinstance(space, gym.spaces.Box):
        raise SystemExit(f"error: {args.env_id} has a {type(space).__name__} action space; LQL needs a continuous Box")
    if args.autotune_w and args.autotune_chains <= space.shape[0] + 1:
        raise SystemExit(f"error: --autotune-chains must exceed dim(A) + 1 = {space.shape[0] + 1} (a covariance per state)")
    if args.autotune_w and args.target_entropy_per_dim >= math.log(2):
        raise SystemExit(  # the uniform law on the box has the most entropy: the tuner would raise w forever
            f"error: --target-entropy-per-dim {args.target_entropy_per_dim} is unreachable: the most any law on [-1, 1]^d "
            f"has is log 2 = {math.log(2):.3f} per dimension"
        )
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise SystemExit(f"error: {args.env_id} has an unbounded Box action space; LQL samples in a bounded box")
    if args.capture_video:
        check_rendering(args.env_id)


def check_rendering(env_id):
    """--capture-video renders one frame before anything is written: a machine that cannot render is refused in one
    line, not with a traceback and an empty videos/ folder. Without a display MuJoCo's default (GLFW) cannot render,
    so EGL is then the default."""
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
    # SAME_STEP autoreset: the true last observation of an ended episode is in infos["final_obs"], so no stored
    # transition spans a reset (gymnasium 1.x; CleanRL's scripts mishandle the NEXT_STEP default).
    envs = gym.vector.SyncVectorEnv(
        [make_env(env_id, seed, i, capture_video, run_name) for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def real_next_observations(next_obs, terminations, truncations, infos):
    """s' of each transition: the returned observation, except for ended episodes, whose true last observation
    gymnasium's SAME_STEP autoreset puts in infos["final_obs"] (the returned one already starts the next episode)."""
    real_next_obs = next_obs.copy()
    for i in np.flatnonzero(np.logical_or(terminations, truncations)):
        real_next_obs[i] = infos["final_obs"][i]
    return real_next_obs


class ActionScaler:
    """Maps sampler actions in [-1, 1]^d linearly to the environment's Box bounds (spec, section 1; no tanh)."""

    def __init__(self, space: gym.spaces.Box):
        self.low = space.low.astype(np.float64)
        self.half_range = (space.high.astype(np.float64) - self.low) / 2

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        return (self.low + (actions + 1) * self.half_range).astype(np.float32)


# ALGO LOGIC: initialize agent here:
def tanh_softplus(z):
    """tanh(softplus(z)) from one exp: tanh(log(1 + e^z)) = n / (n + 2) with n = e^z (e^z + 2); torch's mish costs
    a softplus (exp, log1p) and a tanh forward and more backward. Equal to float precision."""
    e = torch.exp(z.clamp(max=20.0))  # beyond 20, tanh(softplus(z)) == 1 in float32
    n = e * (e + 2)
    return n / (n + 2), e


def mish(z):
    """mish(z) = z * tanh(softplus(z)), the critics' activation (spec, section 3), cheap forward and backward."""
    return z * tanh_softplus(z)[0]


def mish_and_derivative(z):
    """mish(z) and mish'(z) = t + z (1 - t^2) sigmoid(z), t = tanh(softplus(z)): the hand-written gradient's need."""
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

    def forward(self, x):
        if self.bias is None:
            return torch.matmul(x, self.weight)
        return torch.matmul(x, self.weight) + self.bias  # x is (E, N, in), or (N, in) shared by every member


class CriticEnsemble(nn.Module):
    """Two critics Q_i(s, a): concat(s, a) -> 3 x 256 mish -> 1 (spec, sections 2-3), evaluated as one ensemble.

    The first layer is split into a state part and an action part so that the state's share, constant along a
    Langevin chain, is computed once per chain rather than once per step (`state_features`)."""

    def __init__(self, obs_dim, act_dim, n_critics=2, hidden_dim=256, n_hidden_layers=3):
        super().__init__()
        fan_in = obs_dim + act_dim
        self.state_in = EnsembleLinear(n_critics, obs_dim, hidden_dim, fan_in=fan_in)
        self.action_in = EnsembleLinear(n_critics, act_dim, hidden_dim, bias=False, fan_in=fan_in)
        self.hidden = nn.ModuleList(EnsembleLinear(n_critics, hidden_dim, hidden_dim) for _ in range(n_hidden_layers - 1))
        self.out = EnsembleLinear(n_critics, hidden_dim, 1)

    def state_features(self, obs):
        """(N, obs_dim) -> (E, N, hidden): the state's contribution to the first layer, bias included."""
        return self.state_in(obs)

    def q_from_features(self, features, actions):
        """(E, N, hidden), (N, act_dim) -> (E, N) Q-values of every critic."""
        h = mish(features + self.action_in(actions))
        for layer in self.hidden:
            h = mish(layer(h))
        return self.out(h).squeeze(-1)

    @torch.no_grad()
    def mean_action_gradient(self, features, actions):
        """grad_a of the critics' mean Q, by backpropagating through the MLP by hand: no autograd graph and no
        parameter gradients at all, and about 2x faster than autograd (the Langevin loop's hot path)."""
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
    """grad_a sum_n q_fn(a)_n = per-chain action-gradients. Only the actions require a gradient here, so autograd
    computes no parameter gradients and leaves the critics' `.grad` untouched."""
    with torch.enable_grad():
        a = actions.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(q_fn(a).sum(), a)
    return grad


def langevin_sample(q_fn, actions, w, n_steps, step_size, grad_norm=False, grad_fn=None):
    """Unadjusted Langevin dynamics on pi ∝ exp(q_fn / w) in [-1, 1]^d (spec, section 1):
    a <- clip(a + step_size/2 * g / w + sqrt(step_size) * z, -1, 1), g = grad_a q_fn(a) (unit-normalised per chain
    when `grad_norm`). `actions` (N, d) are the starts of N independent chains; returns the last iterates.
    `grad_fn(a)`, when given, supplies g directly (the critics' hand-written gradient) instead of autograd on q_fn."""
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
    """q_fn and grad_fn for the sampler: a -> mean over the critics of Q_i(s, a) (the mean keeps w the true
    temperature) and its action-gradient. The state's features are computed once, not once per Langevin step."""
    features = qf.state_features(obs)
    q_fn = lambda actions: qf.q_from_features(features, actions).mean(0)
    grad_fn = lambda actions: qf.mean_action_gradient(features, actions)
    return q_fn, grad_fn


def sample_actions(qf, obs, args, w=None):
    """One action per state: a Langevin chain from Uniform[-1, 1]^d on the mean of the online critics."""
    start = torch.rand(obs.shape[0], qf.action_in.weight.shape[1], device=obs.device) * 2 - 1
    q_fn, grad_fn = mean_critic(qf, obs)
    return langevin_sample(
        q_fn, start, args.w if w is None else w, args.langevin_steps, args.step_size, args.grad_norm, grad_fn
    )


class ReplayBuffer:
    """Uniform replay over preallocated tensors on the training device. Actions are stored in [-1, 1]^d; a
    transition stores `terminated` only (a time-limit truncation still bootstraps, from the true final obs)."""

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminations")

    def __init__(self, capacity, obs_dim, act_dim, device):
        self.capacity, self.device = capacity, device
        self.obs = torch.zeros((capacity, obs_dim), dtype=torch.float32, device=device)
        self.next_obs = torch.zeros((capacity, obs_dim), dtype=torch.float32, device=device)
        self.actions = torch.zeros((capacity, act_dim), dtype=torch.float32, device=device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.terminations = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.pos, self.size = 0, 0

    def add(self, obs, next_obs, actions, rewards, terminations):
        """Adds a batch of n transitions (one per environment), overwriting the oldest when full."""
        n = len(rewards)
        idx = torch.arange(self.pos, self.pos + n, device=self.device) % self.capacity
        for field, value in zip(self.FIELDS, (obs, next_obs, actions, rewards, terminations), strict=True):
            getattr(self, field)[idx] = torch.as_tensor(np.asarray(value), dtype=torch.float32).to(self.device)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def state_dict(self):
        """The filled part only (rows 0 .. size-1: the buffer fills from 0 and wraps only when full)."""
        return {"pos": self.pos, "size": self.size, **{f: getattr(self, f)[: self.size].clone() for f in self.FIELDS}}

    def load_state_dict(self, state):
        for field in self.FIELDS:
            getattr(self, field)[: state["size"]] = state[field].to(self.device)
        self.pos, self.size = state["pos"], state["size"]

    def sample(self, batch_size):
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terminations[idx]


def update_critics(qf, qf_target, optimizer, batch, args, w=None):
    """One iteration (spec, section 2): a' ~ Langevin on the online critics at s', y = r * scale + gamma *
    (1 - terminated) * min_i Q_i^targ(s', a'), one Adam step on the summed MSE, then the Polyak update."""
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
    """What a researcher watches: spread of sampled actions, action-gradient norm there, share of clipped coords."""
    grad = mean_critic(qf, obs)[1](sampled_actions)
    return {
        "sampler/action_std": sampled_actions.std(0).mean(),
        "sampler/grad_norm": grad.norm(dim=-1).mean(),
        "sampler/clip_fraction": (sampled_actions.abs() >= 1.0).float().mean(),
    }


def evaluate(qf, env_id, n_episodes, seed, args, device, act=sample_actions, capture_video=False, run_name="", w=None):
    """Returns of `n_episodes` episodes on fresh environments (one each, run in parallel), acting with the same
    stochastic Langevin sampler as in training, as the authors' evaluation does."""
    envs = gym.vector.SyncVectorEnv([make_env(env_id, seed, i, capture_video, run_name) for i in range(n_episodes)])
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    scaler = ActionScaler(envs.single_action_space)
    returns = np.full(n_episodes, np.nan)
    obs, _ = envs.reset(seed=seed)
    while np.isnan(returns).any():
        actions = act(qf, torch.as_tensor(obs, dtype=torch.float32, device=device), args, w)
        obs, _, _, _, infos = envs.step(scaler(actions.cpu().numpy()))
        if "episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                if np.isnan(returns[i]):
                    returns[i] = infos["episode"]["r"][i]
    envs.close()
    return returns


class CudaGraphed:
    """--cudagraphs: `fn` replayed from CUDA graphs. A graph records every kernel of one call and replays them with one
    launch: on a GPU these small networks are bound by Python and launch overhead (an update is hundreds of small
    kernels), not by the maths. One graph per signature: the shapes of the CUDA tensors among the arguments (one level
    into tuples, as the batch) and the identity of every other argument (modules, Args, host tensors), which the graph
    bakes in; they may change only in place (parameters, Adam's state). A call copies its CUDA tensors into the graph's
    inputs, replays, and returns copies of the outputs. The first `warmup_calls` calls of a signature run eagerly on a side
    stream, as capture requires (Adam allocates its state there). Random draws inside a graph use the CUDA
    generator's graph-safe offsets, so a replay gives the numbers an eager call would (tested)."""

    def __init__(self, fn, warmup_calls=3):
        self.fn, self.warmup_calls = fn, warmup_calls
        self.calls, self.graphs = {}, {}

    @staticmethod
    def is_input(x):
        """the arguments copied into the graph at each call; all others are baked in"""
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


# Automatic temperature (--autotune-w): see the header for the principle.
def gaussian_entropy(samples):
    """(S, M, d) samples of S laws -> (S,) entropies of the Gaussians with their covariances: an upper bound on each
    law's entropy (a Gaussian has the most entropy for its covariance), exact for a Gaussian. log det of an M-sample
    covariance is biased low by sum_i [psi((M - i) / 2) - log((M - 1) / 2)], i = 1..d (Wishart): added back."""
    n, d = samples.shape[1], samples.shape[2]
    centred = samples - samples.mean(1, keepdim=True)
    covariance = centred.transpose(1, 2) @ centred / (n - 1) + 1e-6 * torch.eye(d, device=samples.device)
    i = torch.arange(1, d + 1, dtype=torch.float64)
    log_det_bias = float((torch.special.digamma((n - i) / 2) - math.log((n - 1) / 2)).sum())
    return 0.5 * d * math.log(2 * math.pi * math.e) + 0.5 * (torch.logdet(covariance) - log_det_bias)


def policy_entropy(sample, obs, n_chains):
    """Mean over states of the Gaussian entropy bound of the sampler's action law, from `n_chains` chains per state;
    `sample(obs)` draws one action per row."""
    with torch.no_grad():
        actions = sample(obs.repeat_interleave(n_chains, 0))
    return gaussian_entropy(actions.view(obs.shape[0], n_chains, -1)).mean()


def temperature_optimizer(log_w, act_dim, newton_fraction):
    """SGD on log w with lr = fraction / (d / 2): the dual step of temperature_step becomes a damped Newton step,
    since the dual's curvature dH/dlog w = Var_pi(Q / w) is d/2 for a quadratic Q (header)."""
    return torch.optim.SGD([log_w], lr=newton_fraction / (act_dim / 2))


def scheduled_target_entropy(global_step, args, act_dim):
    """The hot start (header): d log 2 at --learning-starts, linearly down to --target-entropy-per-dim * d at
    --autotune-cooling-fraction of the learning steps, then constant (a fraction 0: the fixed target throughout)."""
    final, uniform = args.target_entropy_per_dim * act_dim, act_dim * math.log(2)
    cooling_steps = args.autotune_cooling_fraction * (args.total_timesteps - args.learning_starts)
    progress = min(max((global_step - args.learning_starts) / cooling_steps, 0.0), 1.0) if cooling_steps > 0 else 1.0
    return uniform + progress * (final - uniform)


def temperature_step(log_w, w_optimizer, entropy, target_entropy):
    """One dual step: the loss log_w * (H - target) has gradient H - target, so w falls while the policy is more
    random than the target and rises while it is less (SAC's rule for alpha)."""
    w_loss = log_w * (entropy - target_entropy).detach()
    w_optimizer.zero_grad()
    w_loss.backward()
    w_optimizer.step()


# Checkpoints (resume, interruption): everything a run needs to continue exactly as if it had not stopped.
RESUMABLE_CHANGES = {
    "resume",
    "eval_checkpoint",
    "total_timesteps",
    "checkpoint_frequency",
    "checkpoint_buffer",
    "compile",
    "cudagraphs",
    "threads",
    "track",
    "wandb_project_name",
    "wandb_entity",
}


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
    """The counters, arrays and RNGs of every env layer, and MuJoCo's simulator state (gymnasium pickles a MuJoCo
    env as a fresh one, so the physics is read out explicitly): what it takes to continue each episode exactly."""
    state = []
    for layer in env_layers(envs):
        fields = {
            k: copy.deepcopy(v) for k, v in vars(layer).items() if isinstance(v, (int, float, np.ndarray, np.random.Generator))
        }
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
    """Atomic: written to a temporary file, flushed to disk, then renamed over the latest checkpoint, so a crash
    while writing leaves the previous checkpoint intact."""
    with open(path + ".tmp", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def load_checkpoint(path, env_id, device):
    """Reads a checkpoint or saved model; refuses with one line a missing, truncated or foreign file, another
    algorithm's, or one written for another environment than `env_id` (None: any). Unpickles: load only files you trust."""
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
    if env_id is not None and checkpoint["args"]["env_id"] != env_id:
        raise SystemExit(f"error: {path} was written for {checkpoint['args']['env_id']}, not --env-id {env_id}")
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
    act = torch.compile(sample_actions, dynamic=False) if args.compile else sample_actions
    act = CudaGraphed(act) if args.cudagraphs else act
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


class ProgressLine:
    """The console line, every 10 s. The random warm-up is marked as such (it runs far faster than learning), and the
    time left comes from the rate of the learning phase alone, measured from the end of the first update (which may
    include minutes of compilation)."""

    def __init__(self, args, global_step):
        self.args, self.last_print, self.last_step = args, time.time(), global_step
        self.learning_since = None  # (time, global_step) at the end of this process's first update

    def first_update_done(self, global_step, seconds):
        self.learning_since = (time.time(), global_step)
        compiled = " (compilation included)" if self.args.compile else ""
        print(f"global_step={global_step}: first update done, {seconds:.1f}s for its step{compiled}", flush=True)

    def print(self, global_step, n_updates, recent_returns, force=False):
        learning_next = global_step <= self.args.learning_starts < global_step + self.args.num_envs
        if learning_next and self.args.compile:  # the next step compiles: minutes of silence, said beforehand
            print(
                f"global_step={global_step}: learning starts; --compile compiles the sampler and the update first", flush=True
            )
        now = time.time()
        if now - self.last_print < 10 and not force:
            return
        sps = (global_step - self.last_step) / max(now - self.last_print, 1e-9)
        self.last_print, self.last_step = now, global_step
        recent = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
        if global_step <= self.args.learning_starts:
            phase = f"warm-up (random actions until step {self.args.learning_starts})"
        elif self.learning_since is None or global_step == self.learning_since[1]:
            phase = "time_left=? (measured once learning runs)"
        else:
            rate = (global_step - self.learning_since[1]) / (now - self.learning_since[0])
            phase = f"time_left={(self.args.total_timesteps - global_step) / rate / 60:.1f}min"
        print(
            f"global_step={global_step}/{self.args.total_timesteps}, recent_return={recent}, SPS={sps:.0f}, "
            f"updates={n_updates}, {phase}",
            flush=True,
        )


def train(args: Args):
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.eval_checkpoint:
        return evaluate_checkpoint(args)
    device = torch.device("cuda" if args.cuda else "cpu")
    checkpoint = load_checkpoint(args.resume, args.env_id, device) if args.resume else None
    if checkpoint is not None:
        saved_args = checkpoint["args"]
        changed = [k for k, v in saved_args.items() if k not in RESUMABLE_CHANGES and getattr(args, k, v) != v]
        if changed:
            k = changed[0]
            raise SystemExit(
                f"error: --{k.replace('_', '-')} {getattr(args, k)} differs from the checkpoint's {saved_args[k]}; "
                "resume with the run's own command line plus --resume PATH"
            )
    run_name = checkpoint["run_name"] if checkpoint else f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    if args.track:  # CleanRL's tracking: the TensorBoard logs, synced to Weights and Biases
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=vars(args),
            name=run_name,
            save_code=True,
        )
    # a resumed run appends to its own logs; purge_step hides what a crashed run logged after its checkpoint
    writer = SummaryWriter(f"runs/{run_name}", purge_step=checkpoint["global_step"] + 1 if checkpoint else None)
    if checkpoint is None:
        writer.add_text(
            "hyperparameters",
            "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in vars(args).items()),
        )
    envs = make_vector_env(args.env_id, args.seed, args.num_envs, args.capture_video, run_name)
    interrupted = []  # the first SIGINT / SIGTERM only sets this: the loop stops between two steps and checkpoints

    def on_stop_signal(signum, frame):
        if interrupted:  # a second one stops at once
            raise KeyboardInterrupt
        interrupted.append(signum)

    previous_handlers = {s: signal.signal(s, on_stop_signal) for s in STOP_SIGNALS}
    try:
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        act_dim = int(np.prod(envs.single_action_space.shape))
        scaler = ActionScaler(envs.single_action_space)
        qf = CriticEnsemble(obs_dim, act_dim).to(device)
        qf_target = CriticEnsemble(obs_dim, act_dim).to(device)
        qf_target.load_state_dict(qf.state_dict())
        qf_target.requires_grad_(False)
        update, act = update_critics, sample_actions
        if args.compile:  # the whole update and the acting sampler, one graph per batch shape (no dynamic shapes)
            torch._inductor.config.fallback_random = True  # eager's random draws, hence eager's numbers
            update, act = torch.compile(update_critics, dynamic=False), torch.compile(sample_actions, dynamic=False)
        if args.cudagraphs:  # after --compile: then the graphs replay the compiled kernels
            update, act = CudaGraphed(update), CudaGraphed(act)
        # capturable: Adam keeps its step count on the GPU, so that its step can live inside a CUDA graph
        optimizer = torch.optim.Adam(qf.parameters(), lr=args.learning_rate, capturable=args.cudagraphs)
        log_w = torch.tensor(math.log(args.w), device=device, requires_grad=True)  # tuned only with --autotune-w
        w_optimizer = temperature_optimizer(log_w, act_dim, args.autotune_lr)
        rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
        checkpoint_path = f"runs/{run_name}/checkpoint.pt"

        # TRY NOT TO MODIFY: start the game
        obs, _ = envs.reset(seed=args.seed)
        recent_returns, n_updates, global_step, start_iteration = [], 0, 0, 0
        next_eval = args.eval_frequency or None
        evaluated_at = None  # the final evaluation reuses a periodic one made at the last step
        next_checkpoint = args.checkpoint_frequency or None
        last_checkpoint = None
        if checkpoint is not None:  # continue exactly where the checkpoint was written
            qf.load_state_dict(checkpoint["qf"])
            qf_target.load_state_dict(checkpoint["qf_target"])
            for group in checkpoint["optimizer"]["param_groups"]:  # Adam's mode follows this run's --cudagraphs
                group["capturable"] = args.cudagraphs
            optimizer.load_state_dict(checkpoint["optimizer"])
            w_optimizer.load_state_dict(checkpoint["w_optimizer"])
            with torch.no_grad():
                log_w.copy_(checkpoint["log_w"])
            if checkpoint["buffer"] is not None:
                rb.load_state_dict(checkpoint["buffer"])
            restore_env_state(envs, checkpoint["envs"])
            obs, recent_returns, n_updates = checkpoint["obs"], checkpoint["recent_returns"], checkpoint["n_updates"]
            global_step, start_iteration, next_eval = (
                checkpoint["global_step"],
                checkpoint["iteration"] + 1,
                checkpoint["next_eval"],
            )
            if args.checkpoint_frequency:  # the next multiple, as in the run that wrote the checkpoint
                next_checkpoint = (global_step // args.checkpoint_frequency + 1) * args.checkpoint_frequency
            random.setstate(checkpoint["rng"]["python"])
            np.random.set_state(checkpoint["rng"]["numpy"])
            torch.set_rng_state(checkpoint["rng"]["torch"].cpu())  # map_location may have moved it
            if args.cuda and checkpoint["rng"]["cuda"] is not None:
                torch.cuda.set_rng_state_all([state.cpu() for state in checkpoint["rng"]["cuda"]])
            last_checkpoint = args.resume
            print(f"resumed {run_name} at global_step={global_step} from {args.resume}")

        def write_checkpoint(iteration):
            save_checkpoint(
                checkpoint_path,
                {
                    "algorithm": ALGORITHM,
                    "args": asdict(args),
                    "run_name": run_name,
                    "qf": qf.state_dict(),
                    "qf_target": qf_target.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "log_w": log_w.detach().clone(),
                    "w_optimizer": w_optimizer.state_dict(),
                    "w": log_w.exp().item() if args.autotune_w else args.w,
                    "buffer": rb.state_dict() if args.checkpoint_buffer else None,
                    "envs": env_state(envs),
                    "obs": obs,
                    "recent_returns": recent_returns,
                    "n_updates": n_updates,
                    "global_step": global_step,
                    "iteration": iteration,
                    "next_eval": next_eval,
                    "rng": {
                        "python": random.getstate(),
                        "numpy": np.random.get_state(),
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if args.cuda else None,
                    },
                },
            )
            return checkpoint_path

        start_time = time.time()
        autotune_seconds, entropy = 0.0, None  # the tuner's time (logged) and its last entropy estimate
        w = log_w.detach().exp() if args.autotune_w else None  # None: the fixed args.w
        start_step = global_step
        progress = ProgressLine(args, global_step)
        n_iterations = -(-args.total_timesteps // args.num_envs)
        for iteration in range(start_iteration, n_iterations):
            iteration_start = time.time()
            global_step += args.num_envs  # env steps, not vector steps (CleanRL #465)
            w = log_w.detach().exp() if args.autotune_w else None  # None: the fixed args.w
            # ALGO LOGIC: put action logic here
            if global_step <= args.learning_starts:
                actions = torch.rand(args.num_envs, act_dim, device=device) * 2 - 1
            else:
                actions = act(qf, torch.as_tensor(obs, dtype=torch.float32, device=device), args, w)
            actions = actions.cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(scaler(actions))
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
                finite = torch.isfinite(torch.cat([qf_losses, qf_values, log_w.detach()[None]])).all()
                if not finite:  # stop, don't train on garbage
                    raise SystemExit(
                        f"error: non-finite loss or Q-value at global_step={global_step} (update {n_updates}); "
                        f"last good checkpoint: {last_checkpoint or 'none written'}"
                    )
                if args.autotune_w and n_updates % args.autotune_frequency == 0:  # header: automatic temperature
                    tune_start = time.time()
                    entropy = policy_entropy(
                        lambda o, w=w: act(qf, o, args, w), batch[0][: args.autotune_states], args.autotune_chains
                    )
                    target_entropy = scheduled_target_entropy(global_step, args, act_dim)  # SAC's -dim(A) once cooled
                    temperature_step(log_w, w_optimizer, entropy, target_entropy)
                    autotune_seconds += time.time() - tune_start
                if n_updates % args.log_frequency == 0 or n_updates == 1:  # the first at once: it trains
                    if entropy is not None:
                        writer.add_scalar("losses/w", log_w.exp().item(), global_step)
                        writer.add_scalar("losses/policy_entropy", entropy.item(), global_step)
                        writer.add_scalar("losses/target_entropy", target_entropy, global_step)
                        writer.add_scalar(
                            "charts/autotune_time_fraction", autotune_seconds / (time.time() - start_time), global_step
                        )
                    sps = int((global_step - start_step) / (time.time() - start_time))
                    for i in range(2):
                        writer.add_scalar(f"losses/qf{i + 1}_values", qf_values[i].item(), global_step)
                        writer.add_scalar(f"losses/qf{i + 1}_loss", qf_losses[i].item(), global_step)
                    writer.add_scalar("losses/qf_loss", qf_losses.sum().item() / 2, global_step)
                    for key, value in sampler_diagnostics(qf, batch[3], next_actions).items():
                        writer.add_scalar(key, value.item(), global_step)
                    writer.add_scalar("charts/SPS", sps, global_step)

            if next_eval is not None and global_step >= next_eval:
                next_eval += args.eval_frequency
                evaluated_at = global_step
                eval_returns = evaluate(qf, args.env_id, args.eval_episodes, args.seed + 10_000, args, device, act, w=w)
                writer.add_scalar("eval/episodic_return", eval_returns.mean(), global_step)
                print(f"global_step={global_step}, eval_return={eval_returns.mean():.1f} ± {eval_returns.std():.1f}")
            if next_checkpoint is not None and global_step >= next_checkpoint:
                next_checkpoint += args.checkpoint_frequency
                last_checkpoint = write_checkpoint(iteration)
            if interrupted:
                path = write_checkpoint(iteration)
                writer.flush()
                print(
                    f"{signal.Signals(interrupted[0]).name} at global_step={global_step}: checkpoint written to {path}; "
                    f"resume with: {resume_command(path)}",
                    file=sys.stderr,
                )
                sys.exit(128 + interrupted[0])
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
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
        envs.close()
        writer.close()
        if args.track:
            wandb.finish()
    return qf, f"runs/{run_name}"


if __name__ == "__main__":
    train(tyro.cli(Args))
