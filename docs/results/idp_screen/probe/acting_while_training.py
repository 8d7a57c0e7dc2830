"""Does the acting critic's update-to-update change drop the pendulum? From one checkpoint (critics, targets, Adam,
buffer), episodes acting with the sampler on (a) the frozen online critics, (b) the frozen target critics, (c) the online
critics while training goes on (one update per env step, as in the run), (d) the target critics while training goes on."""

import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[4]  # the repository root
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
import sampler_spread  # noqa: E402
from restore import training_state  # noqa: E402

torch.set_num_threads(1)
path, episodes, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
m, args, _, ck, _ = sampler_spread.load(path)

sigmas = m.noise_levels(args.sigma_max, args.sigma_min, args.num_levels)
w = args.w


for mode in modes:
    torch.manual_seed(0)
    qf, qt, opt, rb = training_state(m, args, ck)
    env = gym.make(args.env_id)
    rets = []
    t0 = time.time()
    for ep in range(episodes):
        o, _ = env.reset(seed=1000 + ep)
        done = False
        R = 0.0
        n = 0
        while not done:
            critic = qt if "target" in mode else qf
            a = m.sample_actions(critic, torch.as_tensor(o, dtype=torch.float32)[None], sigmas, args, w)
            a = a.detach().numpy()
            o2, r, term, trunc, _ = env.step(m.to_env_actions(a, env.action_space)[0])
            if "train" in mode:
                rb.add(o[None], o2[None], a, np.array([r]), np.array([term]))
                m.update_critics(qf, qt, opt, rb.sample(args.batch_size), sigmas, args, w)
            o = o2
            R += r
            n += 1
            done = term or trunc
        rets.append(R)
        print(f"{mode} episode {ep}: return {R:.0f}, length {n}, {time.time() - t0:.0f}s", flush=True)
    print(f"{mode}: mean {np.mean(rets):.0f} over {episodes}: {[round(x) for x in rets]}", flush=True)
