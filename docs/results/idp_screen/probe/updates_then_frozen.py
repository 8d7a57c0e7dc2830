"""From one checkpoint: K updates on the stored buffer alone (no new data, no acting), then episodes with the frozen
online critics. Is a critic a few updates on already bad? An optional 4th argument sets the critics' learning rate
of these updates (default: the run's), a 5th the sampler's chains per state when acting (--num-particles)."""

import sys
from pathlib import Path

import gymnasium as gym
import torch

REPO = Path(__file__).resolve().parents[4]  # the repository root
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
import sampler_spread  # noqa: E402
from restore import training_state  # noqa: E402

torch.set_num_threads(1)
path, episodes, ks = sys.argv[1], int(sys.argv[2]), [int(k) for k in sys.argv[3].split(",")]
learning_rate = float(sys.argv[4]) if len(sys.argv) > 4 else None
m, args, _, ck, _ = sampler_spread.load(path)
if len(sys.argv) > 5:
    args.num_particles = int(sys.argv[5])
sigmas = m.noise_levels(args.sigma_max, args.sigma_min, args.num_levels)
torch.manual_seed(0)
qf, qt, opt, rb = training_state(m, args, ck)
for group in opt.param_groups:  # Adam's moments as the run left them, at this rate
    group["lr"] = learning_rate or args.learning_rate
done_updates = 0
env = gym.make(args.env_id)
for k in ks:
    while done_updates < k:
        m.update_critics(qf, qt, opt, rb.sample(args.batch_size), sigmas, args, args.w)
        done_updates += 1
    rets = []
    for ep in range(episodes):
        o, _ = env.reset(seed=2000 + ep)
        done = False
        R = 0.0
        while not done:
            a = m.sample_actions(qf, torch.as_tensor(o, dtype=torch.float32)[None], sigmas, args, args.w).detach().numpy()
            o, r, term, trunc, _ = env.step(m.to_env_actions(a, env.action_space)[0])
            R += r
            done = term or trunc
        rets.append(round(R))
    rate = opt.param_groups[0]["lr"]
    print(
        f"after {k} updates (buffer only, rate {rate:g}, {args.num_particles} chains): frozen online critics {rets}",
        flush=True,
    )
