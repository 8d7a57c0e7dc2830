"""Noise-Conditioned Langevin Q-Learning (NC-LQL): actor-free soft Q-learning in one file. Paper: Ki, Ahn, Kim, Lee,
arXiv 2602.07873 (2026).

There is no actor: the policy is the critics' Boltzmann law pi(a|s) ∝ exp(Q(s, a) / w), drawn by annealed Langevin
dynamics on noise-conditioned critics Q(s, a, l), coarse to fine over the levels sigma_0 = sigma_max > ... > sigma_{L-1}
= sigma_min, from a ~ Uniform[-1, 1]^d (Q: the critics' mean; alpha_l = step_size * (sigma_l / sigma_min)^2):

    for l = 0 .. L-1, T times:  a <- clip(a + (alpha_l / 2) * grad_a Q(s, a, l) / w + sqrt(alpha_l) * z, -1, 1)

The critics learn by TD at the clean level L-1, y = reward_scale * r + gamma * (1 - terminated) * min_i Q_i^targ(s', a'),
a' from the same sampler, and level l by regressing Q(s, a + sigma_l * eps, l) onto the clean Q(s, a): a smoothed critic.
`w` is the TEMPERATURE in the environment's reward units, as SAC's alpha: pi ∝ exp(Q / (reward_scale w)) on the critics'
scaled Q; bigger explores more. The authors multiply a unit-normalised gradient by 500; `--grad-norm --w 0.01` is that
(their sampler: `--grad-norm --w 0.01 --step-size 1e-4`). `--autotune-w` tunes w: docs/autotune.md. Docs: docs/nclql.md.
"""

import contextlib
import importlib.util
import math
import os
import random
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

ALGORITHM = "NC-LQL"  # written into checkpoints: another algorithm's are refused


@dataclass
class Args:
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
    # temperature in reward units, as SAC's alpha: pi ∝ exp(Q_env / w), bigger explores more; 0.05-0.25 learned best at small
    # budgets; a fixed w turns greedier as Q grows with the returns (README.md#choosing-w)
    w: float = 0.1
    num_levels: int = 10  # number L of noise levels (authors: 10)
    sigma_max: float = 0.1  # largest noise level sigma_0 (authors: 0.1)
    sigma_min: float = 0.001  # smallest noise level sigma_{L-1}, the clean critic's (authors: 0.001)
    steps_per_level: int = 2  # Langevin steps T at each noise level (authors: 2)
    step_size: float = 1e-4  # clean-level Langevin step; level l uses step_size * (sigma_l / sigma_min)^2 (authors: 1e-4)
    grad_norm: bool = False  # if toggled, unit-normalises the action-gradient per chain as the authors do (with --w 0.01)
    num_particles: int = 1  # chains per state; the action is the one with the highest min_i Q_i at the clean level
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
    resume: str | None = None  # continue the run of this checkpoint, with the run's own flags (docs/checkpoints.md)
    eval_checkpoint: str | None = None  # evaluate the critics of this checkpoint or saved model instead of training


def check_args(args: Args) -> None:
    """Refuses input that would fail late, silently or with a traceback: one line naming every problem."""
    try:
        space = gym.make(args.env_id).action_space
    except Exception as e:  # an unknown id, a missing dependency, a MUJOCO_GL renderer this machine lacks
        hint = "; use MUJOCO_GL=egl on a machine without a display" if "MUJOCO_GL" in str(e) else ""
        raise SystemExit(f"error: cannot make --env-id {args.env_id!r} ({e}){hint}") from None
    if not isinstance(space, gym.spaces.Box):
        raise SystemExit(f"error: {args.env_id} has a {type(space).__name__} action space; {ALGORITHM} needs a continuous Box")
    bounds = [  # (rule, test, flags)
        ("> 0", lambda v: v > 0, "w sigma_min step_size learning_rate"),
        (">= 1", lambda v: v >= 1, "num_levels steps_per_level total_timesteps num_envs buffer_size batch_size"),
        (">= 1", lambda v: v >= 1, "eval_episodes log_frequency num_particles"),
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
    a, trains, lacks = args, not args.eval_checkpoint, lambda package: importlib.util.find_spec(package) is None
    never, most = ": nothing would train", f"the most any law on [-1, 1]^d has is log 2 = {math.log(2):.3f} per dimension"
    problems += [  # runs that could never train, flags that exclude each other, what this machine lacks
        message
        for failed, message in [
            (a.num_levels > 1 and a.sigma_max <= a.sigma_min, "--sigma-max must be > --sigma-min when --num-levels > 1"),
            (a.autotune_w and not (a.autotune_frequency >= 1 and a.autotune_states >= 1 and 0 < a.autotune_lr <= 1),
             "--autotune-frequency and --autotune-states must be >= 1 and --autotune-lr in (0, 1] (a Newton step)"),
            (a.resume and a.eval_checkpoint, "--resume (train on) and --eval-checkpoint (evaluate only) exclude each other"),
            (a.cuda and not torch.cuda.is_available(), "--cuda was given but torch sees no CUDA device"),
            (a.cudagraphs and not a.cuda, "--cudagraphs needs --cuda (CUDA graphs run on a GPU only)"),
            (trains and a.batch_size > a.buffer_size,
             f"--batch-size {a.batch_size} exceeds --buffer-size {a.buffer_size}{never}"),
            (trains and a.learning_starts >= a.total_timesteps, f"--learning-starts {a.learning_starts} is not shorter than "
             f"--total-timesteps {a.total_timesteps}: the run would end in the random warm-up, before any update"),
            (trains and a.learning_starts < a.total_timesteps < a.batch_size,
             f"--batch-size {a.batch_size} exceeds --total-timesteps {a.total_timesteps}{never}"),
            (a.track and lacks("wandb"), "--track needs wandb: pip install wandb"),
            (a.capture_video and lacks("moviepy"), "--capture-video needs moviepy: pip install moviepy"),
            (not np.isfinite([space.low, space.high]).all(), f"{a.env_id} has an unbounded Box action space"),
            (a.autotune_w and a.autotune_chains <= space.shape[0] + 1,
             f"--autotune-chains must exceed dim(A) + 1 = {space.shape[0] + 1} (a covariance per state)"),
            (a.autotune_w and a.target_entropy_per_dim >= math.log(2),  # the uniform law's: w would rise forever
             f"--target-entropy-per-dim {a.target_entropy_per_dim} is unreachable: {most}"),
        ]
        if failed
    ]  # fmt: skip
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    if args.capture_video:
        check_rendering(args.env_id)


def check_rendering(env_id):
    """One frame rendered before anything is written (with no display, by EGL: MuJoCo's default GLFW needs one)."""
    os.environ.setdefault("MUJOCO_GL", "glfw" if os.environ.get("DISPLAY") else "egl")
    try:
        (env := gym.make(env_id, render_mode="rgb_array")).reset(seed=0)
        env.render()
    except Exception as e:
        raise SystemExit(
            f"error: --capture-video cannot render {env_id} with MUJOCO_GL={os.environ['MUJOCO_GL']} "
            f"({type(e).__name__}); on a machine without a display use MUJOCO_GL=egl (needs libEGL)"
        ) from None


def make_env(env_id, seed, idx, capture_video, run_name):
    def thunk():
        if capture_video and idx == 0:
            env = gym.wrappers.RecordVideo(gym.make(env_id, render_mode="rgb_array"), f"videos/{run_name}")
        else:
            env = gym.make(env_id)
        env.action_space.seed(seed + idx)
        return env

    return thunk


def make_vector_env(env_id, seed, num_envs, capture_video=False, run_name=""):
    # SAME_STEP autoreset: an ended episode's true last observation is in infos["final_obs"], so no transition spans a
    # reset (CleanRL's scripts mishandle gymnasium 1.x's default, NEXT_STEP)
    thunks = [make_env(env_id, seed, i, capture_video, run_name) for i in range(num_envs)]
    envs = gym.vector.SyncVectorEnv(thunks, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
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


# ALGO LOGIC: the noise-conditioned critics, the annealed sampler, the replay buffer and the update (docs/nclql.md)
def mish(z, with_derivative=False):
    """The critics' activation z * t, t = tanh(softplus(z)) = n / (n + 2) with n = e^z (e^z + 2): one exp, cheaper than
    torch's mish; with its derivative t + z (1 - t^2) sigmoid(z) for the hand-written gradient."""
    e = torch.exp(z.clamp(max=20.0))  # beyond 20, tanh(softplus(z)) == 1 in float32
    n = e * (e + 2)
    t = n / (n + 2)
    return (z * t, t + z * (1 - t**2) * (e / (1 + e))) if with_derivative else z * t


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


def noise_levels(sigma_max, sigma_min, num_levels):
    """Geometric ladder sigma_0 = sigma_max > ... > sigma_{L-1} = sigma_min; [sigma_min] if L = 1."""
    ladder = torch.logspace(np.log10(sigma_max), np.log10(sigma_min), num_levels, dtype=torch.float64)
    return ladder if num_levels > 1 else torch.tensor([sigma_min], dtype=torch.float64)


def sinusoidal_embedding(levels, dim=16):
    """(N,) integer levels -> (N, dim) sin/cos features at geometric frequencies (as diffusion models embed time),
    scaled by 1/sqrt(dim) as the authors' code does."""
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(dim // 2, device=levels.device) / (dim // 2))
    angles = levels.float()[:, None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1) / math.sqrt(dim)


class CriticEnsemble(nn.Module):
    """Two noise-conditioned critics Q_i(s, a, l), evaluated as one ensemble: the level's 16-dim embedding goes through
    Linear(32)-mish-Linear(16); concat(s, a, embedding) -> 3 x 256 mish -> 1. The first layer is split into state,
    level and action parts: the first two are constant along a chain at one level, so computed once there."""

    def __init__(self, obs_dim, act_dim, n_critics=2, hidden_dim=256, n_hidden_layers=3, embed_dim=16):
        super().__init__()
        self.embed_dim = embed_dim
        self.level_mlp_in = EnsembleLinear(n_critics, embed_dim, 2 * embed_dim)
        self.level_mlp_out = EnsembleLinear(n_critics, 2 * embed_dim, embed_dim)
        fan_in = obs_dim + act_dim + embed_dim
        self.state_in = EnsembleLinear(n_critics, obs_dim, hidden_dim, fan_in=fan_in)
        self.level_in = EnsembleLinear(n_critics, embed_dim, hidden_dim, bias=False, fan_in=fan_in)
        self.action_in = EnsembleLinear(n_critics, act_dim, hidden_dim, bias=False, fan_in=fan_in)
        self.hidden = nn.ModuleList(EnsembleLinear(n_critics, hidden_dim, hidden_dim) for _ in range(n_hidden_layers - 1))
        self.out = EnsembleLinear(n_critics, hidden_dim, 1)

    def state_features(self, obs):  # (N, obs_dim) -> (E, N, hidden), bias included
        return self.state_in(obs)

    def level_features(self, levels):  # (N,) or (1,) integer levels -> (E, N, hidden)
        return self.level_in(self.level_mlp_out(mish(self.level_mlp_in(sinusoidal_embedding(levels, self.embed_dim)))))

    def q_from_features(self, features, actions):  # (E, N, hidden) state + level features, (N, act_dim) -> (E, N)
        h = mish(features + self.action_in(actions))
        for layer in self.hidden:
            h = mish(layer(h))
        return self.out(h).squeeze(-1)

    @torch.no_grad()
    def mean_action_gradient(self, features, actions):
        """grad_a of the critics' mean Q, backpropagated by hand: no autograd graph and no parameter gradients, about 2x
        faster than autograd (the sampler's hot path)."""
        h, slope = mish(features + self.action_in(actions), True)
        slopes = [slope]
        for layer in self.hidden:
            h, slope = mish(layer(h), True)
            slopes.append(slope)
        grad = self.out.weight.transpose(1, 2) * slopes[-1]  # dQ_i/dh_last: (E, N, hidden)
        for layer, slope in zip(reversed(self.hidden), reversed(slopes[:-1]), strict=True):
            grad = torch.bmm(grad, layer.weight.transpose(1, 2)) * slope
        return torch.matmul(grad, self.action_in.weight.transpose(1, 2)).mean(0)

    def forward(self, obs, actions, levels):
        return self.q_from_features(self.state_features(obs) + self.level_features(levels), actions)


def action_gradient(q_fn, actions):
    """Per-chain grad_a of q_fn by autograd; only the actions require a gradient, so the critics' `.grad` stay untouched."""
    with torch.enable_grad():
        a = actions.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(q_fn(a).sum(), a)
    return grad


def annealed_langevin_sample(q_fn, actions, w, sigmas, steps_per_level, step_size, grad_norm=False, grad_fn=None):
    """Annealed Langevin dynamics from the N chains `actions` (N, d); returns the last iterates. Level l runs
    `steps_per_level` steps a <- clip(a + alpha_l / 2 * g / w + sqrt(alpha_l) * z, -1, 1), alpha_l = step_size *
    (sigmas[l] / sigmas[-1])^2, g = grad_a q_fn(a, l) (from `grad_fn` if given; unit-normalised when `grad_norm`)."""
    grad_fn = grad_fn or (lambda a, level: action_gradient(lambda x: q_fn(x, level), a))
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    alphas = (step_size * (sigmas / sigmas[-1]) ** 2).tolist()  # host floats: no device sync inside the loop
    noise = torch.randn((len(alphas), steps_per_level, *actions.shape), device=actions.device, dtype=actions.dtype)
    a = actions.detach()
    for level, alpha in enumerate(alphas):
        for t in range(steps_per_level):
            g = grad_fn(a, level)
            if grad_norm:
                g = g / (g.norm(dim=-1, keepdim=True) + 1e-8)
            a = (a + (0.5 * alpha / w) * g + alpha**0.5 * noise[level, t]).clamp_(-1.0, 1.0)
    return a


def mean_critic(qf, obs):
    """The sampler's q_fn and grad_fn: (a, level) -> the critics' mean Q (the mean keeps w the true temperature) and
    its action-gradient; the state and level features are computed once per call and level."""
    state_features, level_features = qf.state_features(obs), {}

    def features(level):
        if level not in level_features:
            with torch.no_grad():
                level_features[level] = state_features + qf.level_features(torch.full((1,), level, device=obs.device))
        return level_features[level]

    q_fn = lambda actions, level: qf.q_from_features(features(level), actions).mean(0)
    grad_fn = lambda actions, level: qf.mean_action_gradient(features(level), actions)
    return q_fn, grad_fn


def sample_actions(qf, obs, sigmas, args, w=None):
    """One action per state: `num_particles` annealed chains from Uniform[-1, 1]^d on the online critics' mean; with
    several, the one with the highest min_i Q_i at the clean level is kept, as in the authors' code. w=None: args.w."""
    n_states, n_particles = obs.shape[0], args.num_particles
    obs_per_chain = obs.repeat_interleave(n_particles, 0) if n_particles > 1 else obs
    start = torch.rand(n_states * n_particles, qf.action_in.weight.shape[1], device=obs.device) * 2 - 1
    q_fn, grad_fn = mean_critic(qf, obs_per_chain)
    w_critic = (args.w if w is None else w) * args.reward_scale  # w in reward units; the critics learn reward_scale * r
    chains = annealed_langevin_sample(
        q_fn, start, w_critic, sigmas, args.steps_per_level, args.step_size, args.grad_norm, grad_fn
    )
    if n_particles == 1:
        return chains
    clean = torch.full((1,), len(sigmas) - 1, dtype=torch.long, device=obs.device)
    with torch.no_grad():
        score = qf(obs_per_chain, chains, clean).min(0).values.view(n_states, n_particles)
    best = score.argmax(1) + torch.arange(n_states, device=obs.device) * n_particles
    return chains[best]


class ReplayBuffer:
    """Uniform replay over preallocated tensors on the training device; actions in [-1, 1]^d. Only `terminated` is
    stored: a time-limit truncation still bootstraps, from the true final observation."""

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminations")

    def __init__(self, capacity, obs_dim, act_dim, device):
        self.capacity, self.device, self.pos, self.size = capacity, device, 0, 0
        for field, shape in zip(self.FIELDS, [(obs_dim,), (obs_dim,), (act_dim,), (), ()], strict=True):
            setattr(self, field, torch.zeros((capacity, *shape), dtype=torch.float32, device=device))

    def add(self, obs, next_obs, actions, rewards, terminations):  # one transition per environment; the oldest go first
        n = len(rewards)
        idx = torch.arange(self.pos, self.pos + n, device=self.device) % self.capacity
        for field, value in zip(self.FIELDS, (obs, next_obs, actions, rewards, terminations), strict=True):
            getattr(self, field)[idx] = torch.as_tensor(np.asarray(value), dtype=torch.float32).to(self.device)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size):
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terminations[idx]

    def state_dict(self):  # the filled rows only: the buffer fills from row 0 and wraps only when full
        return {"pos": self.pos, "size": self.size, **{f: getattr(self, f)[: self.size].clone() for f in self.FIELDS}}

    def load_state_dict(self, state):
        for field in self.FIELDS:
            getattr(self, field)[: state["size"]] = state[field].to(self.device)
        self.pos, self.size = state["pos"], state["size"]


def noise_conditioning_loss(qf, obs, actions, sigmas, smoothed_target):
    """l ~ U{0..L-2}, a~ = a + sigma_l * eps (unclipped); each Q_i(s, a~, l) regresses onto `smoothed_target` (the clean
    critics' mean at (s, a)), so Q(s, ., l) learns the sigma_l-smoothed clean critic. The sum of the critics' MSEs."""
    levels = torch.randint(0, len(sigmas) - 1, (obs.shape[0],), device=obs.device)
    # the ladder on the device by fill kernels: a host-to-device copy would break CUDA-graph capture (--cudagraphs)
    level_sigmas = torch.stack([torch.full((), s, dtype=actions.dtype, device=obs.device) for s in sigmas.tolist()])
    perturbed = actions + level_sigmas[levels, None] * torch.randn_like(actions)
    return ((qf(obs, perturbed, levels) - smoothed_target) ** 2).mean(1).sum()


def update_critics(qf, qf_target, optimizer, batch, sigmas, args, w=None):
    """One training iteration:
    1. a' by the sampler on the online critics at s'; y = scale * r + gamma * (1 - term) * min_i Q_i^targ(s', a', L-1);
    2. TD step: Q_i(s, a, L-1) regresses onto y (one Adam step);
    3. noise conditioning onto the clean critics' mean at (s, a) from step 2's forward pass, i.e. from BEFORE the TD
       step, as in the authors' code; a second Adam step;
    4. Polyak update of the targets."""
    obs, actions, rewards, next_obs, terminations = batch
    clean = torch.full((1,), len(sigmas) - 1, dtype=torch.long, device=obs.device)
    next_actions = sample_actions(qf, next_obs, sigmas, args, w)
    with torch.no_grad():
        next_q = qf_target(next_obs, next_actions, clean).min(0).values
        td_target = args.reward_scale * rewards + args.gamma * (1 - terminations) * next_q
    q_values = qf(obs, actions, clean)
    qf_losses = ((q_values - td_target) ** 2).mean(1)
    optimizer.zero_grad()
    qf_losses.sum().backward()
    optimizer.step()

    nc_loss = torch.zeros((), device=obs.device)
    if len(sigmas) > 1:  # with one level NC-LQL is LQL: nothing to smooth
        nc_loss = noise_conditioning_loss(qf, obs, actions, sigmas, q_values.detach().mean(0))
        optimizer.zero_grad()
        nc_loss.backward()
        optimizer.step()
    with torch.no_grad():
        torch._foreach_lerp_(list(qf_target.parameters()), list(qf.parameters()), args.tau)  # fused Polyak update
    return qf_losses.detach(), q_values.detach().mean(1), nc_loss.detach(), next_actions


def sampler_diagnostics(qf, obs, sampled_actions, clean_level):
    """Spread of sampled actions, the clean action-gradient's norm there, share of clipped coordinates."""
    grad_norm = mean_critic(qf, obs)[1](sampled_actions, clean_level).norm(dim=-1).mean()
    spread, clipped = sampled_actions.std(0).mean(), (sampled_actions.abs() >= 1.0).float().mean()
    return {"sampler/action_std": spread, "sampler/grad_norm": grad_norm, "sampler/clip_fraction": clipped}


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


class Temperature(nn.Module):
    """w: args.w, or with --autotune-w exp(log w), moved every --autotune-frequency updates by a dual step with gradient
    H - target (w falls while the policy is more random than the target: SAC's rule) on the entropy of `sample` (states
    -> actions); SGD at lr = fraction / (d / 2) makes it a damped Newton step, the dual's curvature being d/2 for a
    quadratic Q. The target cools from the uniform law's d log 2 to the final one over --autotune-cooling-fraction."""

    def __init__(self, args, act_dim, device):
        super().__init__()
        self.args, self.act_dim, self.seconds, self.since, self.logged = args, act_dim, 0.0, time.time(), {}
        self.log_w = nn.Parameter(torch.tensor(math.log(args.w), device=device))  # the module's state_dict
        self.optimizer = torch.optim.SGD([self.log_w], lr=args.autotune_lr / (act_dim / 2))  # stateless: not saved

    @property
    def w(self):  # the samplers' w argument; None: the fixed args.w
        return self.log_w.detach().exp() if self.args.autotune_w else None

    def target_entropy(self, global_step):  # d log 2 (the uniform law's) at --learning-starts, cooling linearly
        args, d = self.args, self.act_dim
        cooling_steps = args.autotune_cooling_fraction * (args.total_timesteps - args.learning_starts)
        progress = min(max((global_step - args.learning_starts) / cooling_steps, 0.0), 1.0) if cooling_steps > 0 else 1.0
        return d * math.log(2) + progress * (args.target_entropy_per_dim * d - d * math.log(2))

    def step(self, sample, obs, n_updates, global_step):
        if not self.args.autotune_w or n_updates % self.args.autotune_frequency:
            return
        start, target = time.time(), self.target_entropy(global_step)
        entropy = policy_entropy(sample, obs[: self.args.autotune_states], self.args.autotune_chains)
        self.optimizer.zero_grad()
        (self.log_w * (entropy - target).detach()).backward()
        self.optimizer.step()
        self.seconds += time.time() - start
        w, share = self.log_w.detach().exp(), self.seconds / (time.time() - self.since)
        self.logged = {"losses/w": w, "losses/policy_entropy": entropy, "losses/target_entropy": target}
        self.logged["charts/autotune_time_fraction"] = share


def evaluate(qf, env_id, n_episodes, seed, sigmas, args, device, act=sample_actions, capture_video=False, run_name="", w=None):
    """Returns of `n_episodes` episodes on fresh environments, in parallel, with the training sampler (as the authors)."""
    envs = make_vector_env(env_id, seed, n_episodes, capture_video, run_name)
    returns = np.full(n_episodes, np.nan)
    obs, _ = envs.reset(seed=seed)
    while np.isnan(returns).any():
        actions = act(qf, torch.as_tensor(obs, dtype=torch.float32, device=device), sigmas, args, w)
        obs, _, _, _, infos = envs.step(to_env_actions(actions.cpu().numpy(), envs.single_action_space))
        for i in np.flatnonzero(infos.get("_episode", [])):
            if np.isnan(returns[i]):
                returns[i] = infos["episode"]["r"][i]
    envs.close()
    return returns


def train(args: Args):
    args, checkpoint = from_checkpoint(args)  # --resume, --eval-checkpoint: the run's own flags (docs/checkpoints.md)
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # a saturated mish makes denormal floats, slow on x86 CPUs: docs/speed.md#denormal-floats
    device = torch.device("cuda" if args.cuda else "cpu")
    run_name = checkpoint["run_name"] if args.resume else f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    envs = make_vector_env(args.env_id, args.seed, args.num_envs, args.capture_video and not args.eval_checkpoint, run_name)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    act_dim = int(np.prod(envs.single_action_space.shape))
    qf = CriticEnsemble(obs_dim, act_dim).to(device)
    qf_target = CriticEnsemble(obs_dim, act_dim).to(device)
    qf_target.load_state_dict(qf.state_dict())
    qf_target.requires_grad_(False)
    update, act = faster(update_critics, args), faster(sample_actions, args)
    # capturable: Adam keeps its step count on the GPU, so that its step can live inside a CUDA graph
    optimizer = torch.optim.Adam(qf.parameters(), lr=args.learning_rate, capturable=args.cudagraphs)
    temperature = Temperature(args, act_dim, device)
    sigmas = noise_levels(args.sigma_max, args.sigma_min, args.num_levels)  # on the host: step sizes are floats
    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    evaluate_now = lambda w, video=False: evaluate(
        qf, args.env_id, args.eval_episodes, args.seed + 10_000, sigmas, args, device, act, video, run_name, w
    )
    if args.eval_checkpoint:  # the saved critics, with the sampler settings and the w they were trained with
        envs.close()
        qf.load_state_dict(checkpoint["qf"])
        temperature.load_state_dict(checkpoint["temperature"])
        returns = evaluate_now(temperature.w, args.capture_video)
        print(f"{args.eval_checkpoint} on {args.env_id}: eval_return={returns.mean():.1f} ± {returns.std():.1f}")
        return returns
    stateful = dict(qf=qf, qf_target=qf_target, optimizer=optimizer, temperature=temperature, rb=rb)
    global_step, n_updates = restore(checkpoint, stateful, args) if checkpoint else (0, 0)

    # TRY NOT TO MODIFY: start the game (a resumed run starts new episodes: docs/checkpoints.md)
    obs, _ = envs.reset(seed=args.seed + global_step)
    with Run(args, run_name, stateful, envs, checkpoint) as run:
        while global_step < args.total_timesteps:
            global_step += args.num_envs  # env steps, not vector steps (CleanRL #465)
            w = temperature.w
            # ALGO LOGIC: put action logic here
            if global_step <= args.learning_starts:
                actions = torch.rand(args.num_envs, act_dim, device=device) * 2 - 1
            else:
                actions = act(qf, torch.as_tensor(obs, dtype=torch.float32, device=device), sigmas, args, w)
            actions = actions.cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(to_env_actions(actions, envs.single_action_space))
            run.episodes(infos, global_step)
            rb.add(obs, real_next_observations(next_obs, terminations, truncations, infos), actions, rewards, terminations)
            obs = next_obs

            # ALGO LOGIC: training (once the buffer holds a batch: a resume without the buffer refills it first)
            if global_step > args.learning_starts and rb.size >= args.batch_size:
                batch = rb.sample(args.batch_size)
                qf_losses, qf_values, nc_loss, next_actions = update(qf, qf_target, optimizer, batch, sigmas, args, w)
                n_updates += 1
                temperature.step(lambda o, w=w: act(qf, o, sigmas, args, w), batch[0], n_updates, global_step)
                if n_updates % args.log_frequency == 0 or n_updates == 1:  # the first at once: it trains
                    diagnostics = sampler_diagnostics(qf, batch[3], next_actions, args.num_levels - 1)
                    run.update(global_step, n_updates, qf_losses, qf_values, nc_loss, diagnostics, temperature.logged)

            # TRY NOT TO MODIFY: evaluation, checkpoint (the run stops there after a SIGINT / SIGTERM), console line
            if args.eval_frequency and global_step % args.eval_frequency < args.num_envs:  # passed a multiple
                run.evaluation(global_step, evaluate_now(w))
            run.checkpoint(global_step, n_updates)
            run.progress(global_step, n_updates)

        if run.evaluated_at != global_step:  # the final evaluation, unless one ran at the last step
            run.evaluation(global_step, evaluate_now(temperature.w))
        if args.save_model:
            model = dict(algorithm=ALGORITHM, args=asdict(args), qf=qf.state_dict(), temperature=temperature.state_dict())
            torch.save(model, path := f"runs/{run_name}/{args.exp_name}.cleanrl_model")
            print(f"model saved to {path}")
    return qf, f"runs/{run_name}"


# The machinery below the loop: logging, checkpoints and resume, speed (docs/checkpoints.md, docs/speed.md)
class Run(contextlib.AbstractContextManager):
    """What a run writes: CleanRL's TensorBoard logs (--track: synced to W&B), a console line every ~10 s, and
    runs/{run_name}/checkpoint.pt every --checkpoint-frequency env steps and at a SIGINT / SIGTERM, which then ends the
    run with the command that resumes it (a second signal stops at once)."""

    def __init__(self, args, run_name, stateful, envs, checkpoint=None):
        if args.track:
            run = dict(project=args.wandb_project_name, entity=args.wandb_entity, name=run_name, config=vars(args))
            importlib.import_module("wandb").init(**run, sync_tensorboard=True, save_code=True)
        step = checkpoint["global_step"] if checkpoint else 0  # a resumed run hides what was logged after its checkpoint
        self.writer = SummaryWriter(f"runs/{run_name}", purge_step=step + 1 if checkpoint else None)
        table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
        self.writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)
        self.args, self.run_name, self.stateful, self.envs = args, run_name, stateful, envs
        self.path, self.returns, self.evaluated_at, self.signal = f"runs/{run_name}/checkpoint.pt", [], None, None
        self.start, self.last_print, self.learning_since = (time.time(), step), time.time(), None
        self.handlers = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(self, signum, frame):
        if self.signal:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exception):
        for s, handler in self.handlers.items():
            signal.signal(s, handler)
        self.writer.close()
        self.envs.close()
        if self.args.track:
            sys.modules["wandb"].finish()

    def episodes(self, infos, global_step):
        for i in np.flatnonzero(infos.get("_episode", [])):  # every finished env, not only the first (CleanRL #481)
            self.returns = [*self.returns[-9:], float(infos["episode"]["r"][i])]
            self.writer.add_scalar("charts/episodic_return", self.returns[-1], global_step)
            self.writer.add_scalar("charts/episodic_length", int(infos["episode"]["l"][i]), global_step)

    def update(self, global_step, n_updates, qf_losses, qf_values, nc_loss, diagnostics, tuned):
        scalars = {"losses/qf_loss": qf_losses.sum() / 2, "losses/nc_loss": nc_loss / 2, **diagnostics, **tuned}
        for i in range(2):
            scalars.update({f"losses/qf{i + 1}_values": qf_values[i], f"losses/qf{i + 1}_loss": qf_losses[i]})
        scalars = {key: float(value) for key, value in scalars.items()}  # one device sync per logged update
        if not all(map(math.isfinite, scalars.values())):  # stop: no training on garbage
            last = self.path if os.path.exists(self.path) else "none written"
            raise SystemExit(f"error: non-finite loss or Q-value at global_step={global_step} (update {n_updates}); "
                             f"last good checkpoint: {last}")  # fmt: skip
        scalars["charts/SPS"] = int((global_step - self.start[1]) / (time.time() - self.start[0]))
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, global_step)

    def evaluation(self, global_step, returns):
        self.evaluated_at = global_step
        self.writer.add_scalar("eval/episodic_return", returns.mean(), global_step)
        print(f"global_step={global_step}, eval_return={returns.mean():.1f} ± {returns.std():.1f}", flush=True)

    def checkpoint(self, global_step, n_updates):
        """Each part of `stateful` by its state_dict (the buffer only with --checkpoint-buffer), the counters and torch's
        RNG states; written atomically (a crash while writing keeps the previous one), never from non-finite critics."""
        every = self.args.checkpoint_frequency
        if not (every and global_step % every < self.args.num_envs or self.signal):
            return
        if not all(p.isfinite().all() for p in self.stateful["qf"].parameters()):
            raise SystemExit(f"error: non-finite critics at global_step={global_step}; last good checkpoint: {self.path}")
        state = {k: part.state_dict() for k, part in self.stateful.items() if k != "rb" or self.args.checkpoint_buffer}
        rng = dict(torch=torch.get_rng_state(), cuda=torch.cuda.get_rng_state_all() if self.args.cuda else None)
        state.update(algorithm=ALGORITHM, args=asdict(self.args), run_name=self.run_name, rng=rng, global_step=global_step)
        with open(self.path + ".tmp", "wb") as f:
            torch.save({**state, "n_updates": n_updates}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(self.path + ".tmp", self.path)
        if self.signal:
            print(f"{signal.Signals(self.signal).name} at global_step={global_step}: checkpoint written to {self.path}; "
                  f"resume with: python {os.path.relpath(__file__)} --resume {self.path}", file=sys.stderr)  # fmt: skip
            sys.exit(128 + self.signal)

    def progress(self, global_step, n_updates):
        """A plain line (clean in a log file); the time left comes from the pace after this process's first update."""
        now, args = time.time(), self.args
        self.learning_since = self.learning_since or ((now, global_step) if n_updates else None)
        if now - self.last_print < 10 and global_step < args.total_timesteps:
            return
        self.last_print, (since, since_step) = now, self.learning_since or (now, global_step)
        if global_step <= args.learning_starts:
            phase = f"warm-up: random actions until step {args.learning_starts}" + (", then compiling" if args.compile else "")
        elif global_step == since_step:
            phase = "time_left=? (measured once learning runs)"
        else:
            seconds_per_step = (now - since) / (global_step - since_step)
            phase = f"time_left={(args.total_timesteps - global_step) * seconds_per_step / 60:.1f}min"
        line = f"global_step={global_step}/{args.total_timesteps}, recent_return={np.mean(self.returns or [math.nan]):.1f}"
        print(f"{line}, updates={n_updates}, {phase}", flush=True)


def restore(checkpoint, stateful, args):
    """Loads each part the checkpoint holds (without the buffer, it refills first) and torch's RNG states; returns the
    counters. The environments start new episodes: the run goes on the same in law, not bit for bit."""
    for group in checkpoint["optimizer"]["param_groups"]:  # Adam's mode follows this run's --cudagraphs
        group["capturable"] = args.cudagraphs
    for key in stateful.keys() & checkpoint.keys():
        stateful[key].load_state_dict(checkpoint[key])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if args.cuda and checkpoint["rng"]["cuda"] is not None:
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    print(f"resumed at global_step={checkpoint['global_step']} from {args.resume}")
    return checkpoint["global_step"], checkpoint["n_updates"]


SETTABLE = dict(  # the flags the command line may set when --resume continues a run or --eval-checkpoint evaluates it
    resume="total_timesteps checkpoint_frequency checkpoint_buffer compile cudagraphs threads track wandb_project_name "
    "wandb_entity",
    eval_checkpoint="eval_episodes capture_video seed cuda compile threads",
)


def from_checkpoint(args):
    """--resume / --eval-checkpoint PATH: the checkpoint, and its run's Args with the SETTABLE flags given on the command
    line; any other flag given there with a value other than the run's is refused."""
    flag = "resume" if args.resume else "eval_checkpoint" if args.eval_checkpoint else None
    if flag is None:
        return args, None
    checkpoint, settable = load_checkpoint(getattr(args, flag)), [flag, *SETTABLE[flag].split()]
    if flag == "resume" and "global_step" not in checkpoint:  # a --save-model file: critics only
        raise SystemExit(f"error: {args.resume} is a saved model, not a checkpoint: --eval-checkpoint evaluates it")
    saved = {k: v for k, v in checkpoint["args"].items() if k in Args.__dataclass_fields__ and k not in SETTABLE}
    given = {k: v for k, v in asdict(args).items() if v != getattr(Args, k)}  # the flags that differ from the defaults
    for k, v in given.items():
        if k not in settable and saved.get(k) != v:
            allowed = ", ".join(f"--{name}" for name in settable[1:]).replace("_", "-")
            raise SystemExit(f"error: --{k.replace('_', '-')} {v} differs from the checkpoint's {saved.get(k)} "
                             f"(with --{flag.replace('_', '-')} only {allowed} may change)")  # fmt: skip
    return Args(**{**saved, **{k: v for k, v in given.items() if k in settable}}), checkpoint


def load_checkpoint(path):
    """A checkpoint or saved model of this script, read with weights_only=True: tensors and plain values only, so that a
    file someone shared cannot run code. A missing, truncated, foreign or unsafe file is refused in one line."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SystemExit(f"error: no checkpoint at {path}") from None
    except Exception as e:  # a truncated or foreign file fails in zip, pickle or EOF handling
        if "Weights only load failed" in str(e):
            raise SystemExit(f"error: {path} holds more than tensors and plain values (loading it could run code)") from None
        raise SystemExit(f"error: cannot read checkpoint {path} (truncated or not a checkpoint: {type(e).__name__})") from None
    if not isinstance(checkpoint, dict) or not {"algorithm", "args", "qf", "temperature"} <= checkpoint.keys():
        raise SystemExit(f"error: {path} is not a checkpoint of this project's scripts")
    if checkpoint["algorithm"] != ALGORITHM:
        raise SystemExit(f"error: {path} is a {checkpoint['algorithm']} checkpoint; this script is {ALGORITHM}")
    return checkpoint


def faster(fn, args):
    """`fn` compiled by --compile (one graph per shape, eager's random draws) and replayed from CUDA graphs by --cudagraphs."""
    if args.compile:
        torch._inductor.config.fallback_random = True
    fn = torch.compile(fn, dynamic=False) if args.compile else fn
    return CudaGraphed(fn) if args.cudagraphs else fn


class CudaGraphed:
    """`fn` replayed from CUDA graphs: one launch per call (small networks are bound by launch overhead). One graph per
    signature: the CUDA tensor arguments' shapes (one level into tuples) and every other argument's identity (baked in:
    it may change only in place); the first calls run eagerly on a side stream, as capture requires."""

    def __init__(self, fn, warmup_calls=3):
        self.fn, self.warmup_calls, self.calls, self.graphs = fn, warmup_calls, {}, {}

    def __call__(self, *args):
        is_input = lambda x: isinstance(x, torch.Tensor) and x.is_cuda  # copied in at each call; all else is baked in
        flat = [x for a in args for x in (a if isinstance(a, tuple) else (a,))]
        key = tuple((x.shape, x.dtype) if is_input(x) else id(x) for x in flat)
        self.calls[key] = self.calls.get(key, 0) + 1
        if self.calls[key] <= self.warmup_calls:
            side_stream = torch.cuda.Stream()
            side_stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side_stream):
                outputs = self.fn(*args)
            torch.cuda.current_stream().wait_stream(side_stream)
            return outputs
        if key not in self.graphs:  # capture: records the kernels on copies of the inputs, without running them
            copies = iter(static_inputs := [x.clone() for x in flat if is_input(x)])
            swap = lambda x: next(copies) if is_input(x) else x
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_outputs = self.fn(*(tuple(map(swap, a)) if isinstance(a, tuple) else swap(a) for a in args))
            self.graphs[key] = (graph, static_inputs, static_outputs)
        graph, static_inputs, static_outputs = self.graphs[key]
        for static_input, x in zip(static_inputs, [x for x in flat if is_input(x)], strict=True):
            static_input.copy_(x)
        graph.replay()
        return tuple(x.clone() for x in static_outputs) if isinstance(static_outputs, tuple) else static_outputs.clone()


if __name__ == "__main__":
    train(tyro.cli(Args))
