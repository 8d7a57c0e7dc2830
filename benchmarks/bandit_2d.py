# 2-D multimodal bandit: LQL vs NC-LQL mode coverage; paper: Ki, Ahn, Kim, Lee, arXiv 2602.07873 (2026)
"""The paper's 2-D bandit: does the sampler cover every mode of a multimodal reward with the right mass?

A single state (obs = [0]), a 2-D action a in [-1, 1]^2 and a reward with four separated modes at (±0.6, ±0.6)
(distance 1.2 between neighbours) of unequal weights p = 0.5 / 0.25 / 0.15 / 0.10:

    r(a) = beta * log sum_k p_k exp(-||a - m_k||^2 / (2 s^2)),   beta = 0.1, s = 0.2

With w = beta the soft policy pi ∝ exp(r / w) is exactly that Gaussian mixture (cut to the box), so the target
mode masses are p; for any w they are computed on a 1001^2 grid, each point going to its nearest mode centre.
Both scripts' critics (`CriticEnsemble`, imported, unchanged) regress onto r (gamma = 0: no TD target); the NC-LQL
critic also takes the script's noise-conditioning step (its `noise_conditioning_loss`), as in `nclql.update_critics` minus
the TD target. Then `--num-samples` chains per method start Uniform[-1, 1]^2 and each is assigned to its nearest
mode. Rows: LQL with its script defaults (K = 20, eps = 1e-2), LQL with NC-LQL's gradient budget, NC-LQL with a
schedule whose sigma_max is comparable to the mode distance, and NC-LQL with the authors' schedule.

Choices, all measured (first with exact, Monte Carlo smoothed critics, then with the trained ones):
- Reward shape. Why log-sum-exp of paraboloids and not a sum of Gaussian bumps: NC-LQL's level-l critic learns the
  Gaussian smoothing of Q, E[Q(a + sigma_l eps)], not of exp(Q / w). Smoothing a Gaussian bump of width s scales
  it by s^2 / (s^2 + sigma^2), which shrinks the height differences that set the mode masses, so the coarse levels
  see almost equal modes: with a sum of bumps (heights giving target masses 0.47 / 0.25 / 0.16 / 0.12) the annealed
  sampler ended near the uniform start's split, TV 0.19-0.25 for every sigma_max (0.1, 0.5, 0.8) and step size
  tried with T = 2, and still 0.18 with T = 20 and sigma_max = 0.5, even with exact smoothed critics. Smoothing a
  paraboloid only shifts it by a constant, so here the coarse critics keep the modes' relative heights: the masses
  of exp(Q_sigma / w) stay within 0.02 of the target up to sigma = 0.2.
- s = 0.2 makes the barrier between neighbouring modes 4.3 nats at w = 0.1: a constant-step chain rarely crosses it.
  With wider modes (s = 0.3, 1.8 nats) LQL mixes too once given as many steps as NC-LQL (TV 0.05), and the
  comparison would show nothing but a step count.
- w = 0.1 (= beta; the samplers' own temperature: the bandit has no reward scale): the target masses are then
  exactly p (0.499 / 0.250 / 0.150 / 0.101 on the box).
- sigma_max = 0.5, comparable to the mode distance (1.2): at 0.5 the smoothed critic is almost unimodal, so chains
  move freely between modes. 0.8 did worse (exact critics, T = 20: TV 0.08-0.10 vs 0.05-0.09 for 0.5): at 0.8 the
  smoothing distorts the masses (exp(Q_0.5 / w) already gives 0.37 / 0.28 / 0.18 / 0.17). The authors' 0.1 is half
  the width of one mode: their smoothed critics never connect the modes (what their schedule gains with T = 20
  likely comes from its large coarse steps, alpha_0 = 1, noise std 1 per step, which throw chains across the box).
- sigma_min = 0.01 and step_size = 1.2e-4: the annealed step is alpha_l = step_size * (sigma_l / sigma_min)^2, so
  the coarsest step alpha_0 = step_size * (sigma_max / sigma_min)^2 = 0.3 (noise std 0.55 per step). With the
  authors' sigma_min = 0.001 and step_size = 1e-4, sigma_max = 0.5 would give alpha_0 = 25 (noise std 5: every
  coarse step is clipped onto the box's faces) and the schedule would only start to act at sigma ~ 0.05, i.e. it
  would be the authors' schedule again. sigma_min = 0.01 also puts more of the 10 levels where the modes are
  connected (0.5 ... 0.05). alpha_0 = 1 (noise std 1) did worse than 0.3 (exact critics, T = 20: 0.07 vs 0.05).
- steps_per_level = 20 (the scripts' default is 2): moving mass between modes takes time at the coarse levels.
  Exact critics, 2048 chains: T = 2 gives TV 0.18, T = 5 0.12, T = 10 0.07-0.09, T = 20 0.05-0.09. Trained
  critics, T = 20: 0.04-0.08 over four runs (seeds 1, 2; 1500-3000 training steps), against 0.08-0.12 for the
  authors' schedule with the same T and 0.15-0.16 for LQL with the same 200 gradient evaluations. The T = 2 rows are reported
  too, and LQL is also run with the same 200 gradient evaluations, so that the step count alone is not the story.
- train_steps = 2000 (lr 1e-3, batch 256): the clean critics' RMSE against r is then ~0.01-0.02 (r spans ~1).

Run:  ./benchmark.sh bandit  (a few minutes on one CPU thread; writes docs/bandit_2d.png and docs/bandit_2d.md).
"""

import os
import sys
import time
from dataclasses import dataclass

import matplotlib
import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lql_continuous_action as lql  # noqa: E402
import nclql_continuous_action as nclql  # noqa: E402


@dataclass
class Args:
    seed: int = 1
    """seed of torch (critic initialisation, training batches and the samplers)"""
    w: float = 0.1
    """temperature of the soft policy pi ∝ exp(r / w); at w = reward_beta the target masses are exactly mode_weights"""
    reward_beta: float = 0.1
    """scale of the reward r(a) = beta * log sum_k p_k exp(-||a - m_k||^2 / (2 s^2))"""
    mode_width: float = 0.2
    """width s of each mode (the centres are 1.2 apart)"""
    mode_weights: tuple[float, ...] = (0.5, 0.25, 0.15, 0.10)
    """weights p_k of the modes at (0.6, 0.6), (-0.6, 0.6), (-0.6, -0.6), (0.6, -0.6)"""
    train_steps: int = 2000
    """regression steps for each critic (batch of uniform actions, one Adam step, plus the NC step for NC-LQL)"""
    batch_size: int = 256
    """actions per regression step, drawn Uniform[-1, 1]^2"""
    learning_rate: float = 1e-3
    """Adam learning rate of the critics"""
    num_levels: int = 10
    """number L of noise levels of both NC-LQL schedules (authors: 10)"""
    sigma_max: float = 0.5
    """largest noise level of the wide schedule: comparable to the distance between modes (1.2)"""
    sigma_min: float = 0.01
    """smallest noise level of the wide schedule"""
    step_size: float = 1.2e-4
    """clean-level Langevin step of the wide schedule; level l uses step_size * (sigma_l / sigma_min)^2 (alpha_0 = 0.3)"""
    steps_per_level: int = 20
    """Langevin steps T per level of the wide schedule and of the authors' schedule's second row"""
    authors_sigma_max: float = 0.1
    """largest noise level of the authors' schedule"""
    authors_sigma_min: float = 0.001
    """smallest noise level of the authors' schedule"""
    authors_step_size: float = 1e-4
    """clean-level Langevin step of the authors' schedule (alpha_0 = 1)"""
    authors_steps_per_level: int = nclql.Args.steps_per_level
    """Langevin steps T per level of the authors' schedule (authors: 2)"""
    lql_steps: int = lql.Args.langevin_steps
    """Langevin steps K of LQL (the LQL script's default)"""
    lql_step_size: float = lql.Args.step_size
    """Langevin step size eps of LQL (the LQL script's default)"""
    num_samples: int = 4096
    """chains (sampled actions) per method"""
    output: str = "docs/bandit_2d.png"
    """where the picture of the sampled actions over the target density goes"""
    table: str = "docs/bandit_2d.md"
    """where the Markdown table of the results goes"""


CENTRES = torch.tensor([[0.6, 0.6], [-0.6, 0.6], [-0.6, -0.6], [0.6, -0.6]])


def reward(actions, args):
    """r(a) = beta * log sum_k p_k exp(-||a - m_k||^2 / (2 s^2)) for (N, 2) actions: four modes, heights beta log p_k."""
    d2 = ((actions[:, None, :] - CENTRES) ** 2).sum(-1)
    log_p = torch.log(torch.tensor(args.mode_weights))
    return args.reward_beta * torch.logsumexp(log_p - d2 / (2 * args.mode_width**2), dim=-1)


def nearest_mode(actions):
    """Index of the nearest mode centre of each (N, 2) action."""
    return torch.cdist(actions, CENTRES).argmin(1)


def mode_fractions(actions):
    return torch.bincount(nearest_mode(actions), minlength=len(CENTRES)).double() / len(actions)


def grid(n):
    x = torch.linspace(-1, 1, n)
    return torch.stack(torch.meshgrid(x, x, indexing="xy"), -1).reshape(-1, 2)


def target_masses(args, n=1001):
    """Mass of pi ∝ exp(r / w) nearest each mode, on an n x n grid of [-1, 1]^2."""
    points = grid(n)
    p = torch.softmax(reward(points, args).double() / args.w, 0)
    return torch.zeros(len(CENTRES), dtype=torch.float64).index_add_(0, nearest_mode(points), p)


def train_lql_critic(args):
    """LQL's two critics regress Q_i(s, a) onto r(a), a ~ Uniform[-1, 1]^2 (a bandit: gamma = 0, no target nets)."""
    qf = lql.CriticEnsemble(1, 2)
    optimizer = torch.optim.Adam(qf.parameters(), lr=args.learning_rate)
    obs = torch.zeros(args.batch_size, 1)
    for _ in range(args.train_steps):
        actions = torch.rand(args.batch_size, 2) * 2 - 1
        loss = ((qf(obs, actions) - reward(actions, args)) ** 2).mean(1).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return qf


def train_nclql_critic(sigmas, args):
    """NC-LQL's critics: `nclql.update_critics` with the TD target replaced by r(a). Step 1: Q_i(s, a, L-1) regresses
    onto r(a). Step 2, the script's noise-conditioning loss: Q_i(s, a + sigma_l eps, l) regresses onto the critics' mean
    at (s, a, L-1) from before step 1, no gradient; a second Adam step with the same optimiser."""
    qf = nclql.CriticEnsemble(1, 2)
    optimizer = torch.optim.Adam(qf.parameters(), lr=args.learning_rate)
    obs = torch.zeros(args.batch_size, 1)
    clean = torch.full((1,), len(sigmas) - 1, dtype=torch.long)
    for _ in range(args.train_steps):
        actions = torch.rand(args.batch_size, 2) * 2 - 1
        clean_q = qf(obs, actions, clean)
        loss = ((clean_q - reward(actions, args)) ** 2).mean(1).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if len(sigmas) > 1:
            nc_loss = nclql.noise_conditioning_loss(qf, obs, actions, sigmas, clean_q.detach().mean(0))
            optimizer.zero_grad()
            nc_loss.backward()
            optimizer.step()
    return qf


@torch.no_grad()
def clean_rmse(q_fn, args, n=201):
    """Root-mean-square error of a critic's clean mean against r on an n x n grid of the action box."""
    points = grid(n)
    return ((q_fn(points) - reward(points, args)) ** 2).mean().sqrt().item()


def main(args: Args):
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start_time = time.time()
    n = args.num_samples
    target = target_masses(args)
    wide_sigmas = nclql.noise_levels(args.sigma_max, args.sigma_min, args.num_levels)
    authors_sigmas = nclql.noise_levels(args.authors_sigma_max, args.authors_sigma_min, args.num_levels)

    qf_lql = train_lql_critic(args)
    qf_wide = train_nclql_critic(wide_sigmas, args)
    qf_authors = train_nclql_critic(authors_sigmas, args)
    train_time = time.time() - start_time

    obs = torch.zeros(n, 1)
    lql_q, lql_grad = lql.mean_critic(qf_lql, obs)
    wide_q, wide_grad = nclql.mean_critic(qf_wide, obs)
    authors_q, authors_grad = nclql.mean_critic(qf_authors, obs)
    rmse = {
        "lql": clean_rmse(lambda a: lql.mean_critic(qf_lql, torch.zeros(len(a), 1))[0](a), args),
        "wide": clean_rmse(lambda a: nclql.mean_critic(qf_wide, torch.zeros(len(a), 1))[0](a, args.num_levels - 1), args),
        "authors": clean_rmse(
            lambda a: nclql.mean_critic(qf_authors, torch.zeros(len(a), 1))[0](a, args.num_levels - 1), args
        ),
    }

    def alpha_0(sigmas, step_size):
        return step_size * float(sigmas[0] / sigmas[-1]) ** 2

    def annealed(q_fn, grad_fn, sigmas, steps_per_level, step_size):
        start = torch.rand(n, 2) * 2 - 1
        return nclql.annealed_langevin_sample(q_fn, start, args.w, sigmas, steps_per_level, step_size, grad_fn=grad_fn)

    def langevin(n_steps):
        start = torch.rand(n, 2) * 2 - 1
        return lql.langevin_sample(lql_q, start, args.w, n_steps, args.lql_step_size, grad_fn=lql_grad)

    budget = args.num_levels * args.steps_per_level
    wide = f"σ {args.sigma_max:g}→{args.sigma_min:g}, α0 {alpha_0(wide_sigmas, args.step_size):.2g}"
    authors = (
        f"σ {args.authors_sigma_max:g}→{args.authors_sigma_min:g}, α0 {alpha_0(authors_sigmas, args.authors_step_size):.2g}"
    )
    methods = [  # (name, details, gradient evaluations, critic RMSE, samples)
        ("LQL", f"K {args.lql_steps}, ε {args.lql_step_size:g}", args.lql_steps, rmse["lql"], langevin(args.lql_steps)),
        ("LQL, NC-LQL's budget", f"K {budget}, ε {args.lql_step_size:g}", budget, rmse["lql"], langevin(budget)),
        (
            f"NC-LQL, σ_max {args.sigma_max:g}",
            f"{wide}, T {args.steps_per_level}",
            budget,
            rmse["wide"],
            annealed(wide_q, wide_grad, wide_sigmas, args.steps_per_level, args.step_size),
        ),
        (
            f"NC-LQL, σ_max {args.sigma_max:g}, T {args.authors_steps_per_level}",
            f"{wide}, T {args.authors_steps_per_level}",
            args.num_levels * args.authors_steps_per_level,
            rmse["wide"],
            annealed(wide_q, wide_grad, wide_sigmas, args.authors_steps_per_level, args.step_size),
        ),
        (
            f"NC-LQL, authors' σ_max {args.authors_sigma_max:g}",
            f"{authors}, T {args.authors_steps_per_level}",
            args.num_levels * args.authors_steps_per_level,
            rmse["authors"],
            annealed(authors_q, authors_grad, authors_sigmas, args.authors_steps_per_level, args.authors_step_size),
        ),
        (
            f"NC-LQL, authors' σ_max {args.authors_sigma_max:g}, T {args.steps_per_level}",
            f"{authors}, T {args.steps_per_level}",
            budget,
            rmse["authors"],
            annealed(authors_q, authors_grad, authors_sigmas, args.steps_per_level, args.authors_step_size),
        ),
    ]
    results = []
    for name, details, n_grads, critic_rmse, actions in methods:
        fractions = mode_fractions(actions)
        tv = 0.5 * (fractions - target).abs().sum().item()
        results.append((name, details, n_grads, critic_rmse, fractions, tv, actions))
    total_time = time.time() - start_time

    # Markdown table
    centres = [f"({x:+.1f}, {y:+.1f})" for x, y in CENTRES.tolist()]
    lines = [
        f"2-D bandit, w = {args.w:g}, modes {', '.join(centres)}, s = {args.mode_width:g}, seed {args.seed}, "
        f"{args.train_steps} training steps per critic, {n} samples per method; fraction of samples nearest each mode.",
        "",
        "| method | sampler | gradient evals | critic RMSE | " + " | ".join(centres) + " | TV |",
        "|-|-|-|-|" + "-|" * len(centres) + "-|",
        "| **target** | exp(r / w) on a grid | | | " + " | ".join(f"{m:.3f}" for m in target.tolist()) + " | 0 |",
    ]
    for name, details, n_grads, critic_rmse, fractions, tv, _ in results:
        cells = " | ".join(f"{f:.3f}" for f in fractions.tolist())
        lines.append(f"| {name} | {details} | {n_grads} | {critic_rmse:.3f} | {cells} | {tv:.3f} |")
    lines += ["", f"Run time: {total_time:.0f} s (critic training {train_time:.0f} s), one CPU thread."]
    table = "\n".join(lines)
    print(table)
    for path in (args.table, args.output):
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(args.table, "w") as f:
        f.write("# 2-D multimodal bandit: LQL vs NC-LQL\n\nMade by `./benchmark.sh bandit`.\n\n" + table + "\n")

    # Picture: the target density, then one panel per method with its samples over the reward
    matplotlib.use("Agg")  # here, not at import: importing this file leaves the caller's backend alone
    import matplotlib.pyplot as plt

    points = grid(201)
    r = reward(points, args).reshape(201, 201).numpy()
    density = torch.softmax(torch.as_tensor(r).flatten().double() / args.w, 0).reshape(201, 201).numpy()
    n_panels = 1 + len(results)
    n_cols = 4 if n_panels > 6 else 3
    n_rows = -(-n_panels // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 4.2 * n_rows), squeeze=False)
    axes = axes.flatten()
    extent = (-1, 1, -1, 1)
    axes[0].imshow(density, origin="lower", extent=extent, cmap="viridis")
    axes[0].set_title(f"target π ∝ exp(r / w), w = {args.w:g}", fontsize=10)
    for k, (x, y) in enumerate(CENTRES.tolist()):
        axes[0].text(x, y + 0.3, f"{target[k]:.2f}", color="white", ha="center", fontsize=10)
    top = float(r.max())
    label_box = {"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1}
    for ax, (name, details, _, _, fractions, tv, actions) in zip(axes[1:], results, strict=False):
        ax.imshow(r, origin="lower", extent=extent, cmap="Greys", vmin=top - 0.6, vmax=top + 0.4)  # the modes' tops
        ax.axhline(0, color="tab:gray", lw=0.5, ls=":")  # the nearest-centre partition
        ax.axvline(0, color="tab:gray", lw=0.5, ls=":")
        shown = actions.numpy()
        ax.scatter(shown[:, 0], shown[:, 1], s=2, c="tab:red", alpha=0.5, linewidths=0)
        for k, (x, y) in enumerate(CENTRES.tolist()):
            ax.text(x, y + 0.3, f"{fractions[k]:.2f} ({target[k]:.2f})", ha="center", fontsize=9, bbox=label_box)
        ax.set_title(f"{name}\n{details}\nTV = {tv:.3f}", fontsize=9)
    for ax in axes:
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
    for ax in axes[n_panels:]:
        ax.axis("off")
    fig.suptitle(
        f"2-D bandit: {n} sampled actions (red) over the reward (grey: its top 0.6); fraction nearest each mode (target)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.table} and {args.output}")
    return results, target


if __name__ == "__main__":
    main(tyro.cli(Args))
