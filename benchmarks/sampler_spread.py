"""How the Langevin sampler acts on a trained critic, per state: the spread of its actions, the share clipped to the box,
and the critic's value of them against uniform actions, for the run's own sampler settings and others.

    ./benchmark.sh spread runs/{run}/checkpoint.pt [--setting 'NAME=ARGS' ...] [--states 16] [--chains 256]
    ./benchmark.sh spread CHECKPOINT CHECKPOINT ...   # one run's copies over training: its estimation only

A checkpoint of either script (with its replay buffer: the states come from it). Each setting is script arguments on
top of the run's own (e.g. `--setting 'cold=--w 0.1 --step-size 1e-4'`); without any, a few temperatures and step
sizes. Columns, means over `--states` replayed states with `--chains` chains each:
- action std: the standard deviation of the actions drawn at one state, per dimension (a uniform law on [-1, 1] has
  1/sqrt(3) = 0.577: a sampler near that barely left its uniform start);
- clipped: the share of action coordinates on the box's faces;
- Q of the actions: the critics' mean at the clean level, against the mean and the best of 4096 uniform actions;
- TD-target noise: the std of the update's TD target over --draws draws of a' (the critics fixed), mean over the
  buffer's last --transitions transitions: the part of the critics' regression target that is the sampler's dice.
For a run with one environment it also compares Q at the buffer's recent (s, a) with their discounted returns (over-
or under-estimation), and Q 1, 5, 20 and 50 steps before a termination with the reward left until it (does the
critic see a fall coming?). Given several checkpoints of one-environment runs (copies kept during training), it prints
only those two, one row per checkpoint in env-step order: when over-estimation starts.
"""

import argparse
import importlib
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS = {  # by algorithm: their step sizes mean different things (a level ladder's base, a constant step)
    "NC-LQL": {
        "w 0.5, step 1e-5 (the earlier default)": "--w 0.5 --step-size 1e-5",
        "w 0.5, step 1e-4": "--w 0.5 --step-size 1e-4",
        "w 0.1, step 1e-4 (the default)": "--w 0.1 --step-size 1e-4",
        "the authors' (--grad-norm --w 0.01 --step-size 1e-4)": "--grad-norm --w 0.01 --step-size 1e-4",
    },
    "LQL": {
        "w 0.5 (the earlier default)": "--w 0.5",
        "w 0.1 (the default)": "--w 0.1",
        "--grad-norm --w 0.01": "--grad-norm --w 0.01",
    },
}


def load(path):
    """The script module, the run's Args and its critics."""
    import gymnasium as gym
    import tyro

    try:  # tensors and plain values only, as the scripts read them: a shared file cannot run code
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SystemExit(f"error: no checkpoint at {path}") from None
    except Exception as e:
        if "Weights only load failed" in str(e):
            raise SystemExit(f"error: {path} holds more than tensors and plain values (loading it could run code)") from None
        raise SystemExit(f"error: cannot read checkpoint {path} ({type(e).__name__})") from None
    modules = {"LQL": "lql_continuous_action", "NC-LQL": "nclql_continuous_action"}
    if not isinstance(checkpoint, dict) or checkpoint.get("algorithm") not in modules or "args" not in checkpoint:
        raise SystemExit(f"error: {path} is not a checkpoint of this project's scripts")
    if "rb" not in checkpoint:  # written with --no-checkpoint-buffer, or a --save-model file
        raise SystemExit(f"error: {path} holds no replay buffer (a checkpoint written with --checkpoint-buffer is needed)")
    sys.path.insert(0, str(REPO))
    module = importlib.import_module(modules[checkpoint["algorithm"]])
    known = module.Args.__dataclass_fields__
    args = module.Args(**{k: v for k, v in checkpoint["args"].items() if k in known})
    with warnings.catch_warnings():  # gymnasium's "v4 is out of date": only the sizes are needed
        warnings.simplefilter("ignore")
        env = gym.make(args.env_id)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    env.close()
    qf = module.CriticEnsemble(obs_dim, act_dim)
    qf.load_state_dict(checkpoint["qf"])
    settings = lambda tokens: tyro.cli(module.Args, args=tokens, default=args)
    return module, args, qf, checkpoint, settings


def spread(module, qf, args, obs, n_chains):
    """(action std, clipped share, mean Q of the actions) of the script's sampler under `args` at the states `obs`."""
    states = obs.repeat_interleave(n_chains, 0)
    with torch.no_grad():
        if hasattr(module, "noise_levels"):
            sigmas = module.noise_levels(args.sigma_max, args.sigma_min, args.num_levels)
            actions = module.sample_actions(qf, states, sigmas, args)
            q = qf(states, actions, torch.full((1,), args.num_levels - 1)).mean(0)
        else:
            actions = module.sample_actions(qf, states, args)
            q = qf(states, actions).mean(0)
    per_state = actions.view(len(obs), n_chains, -1)
    return per_state.std(1).mean().item(), (actions.abs() >= 1).float().mean().item(), q.mean().item()


def td_target_noise(module, qf, qf_target, args, buffer, transitions, draws):
    """The TD target's standard deviation over `draws` draws of a' by the sampler under `args` (the critics fixed), mean
    over the buffer's last `transitions` transitions: how much the sampler's randomness alone moves the regression
    target reward_scale * r + gamma * (1 - terminated) * min_i Q_i^targ(s', a') of the update."""
    size = buffer["size"]
    index = torch.arange(max(0, size - transitions), size)
    next_obs, rewards, terminations = buffer["next_obs"][index], buffer["rewards"][index], buffer["terminations"][index]
    targets = []
    with torch.no_grad():
        for _ in range(draws):
            if hasattr(module, "noise_levels"):
                sigmas = module.noise_levels(args.sigma_max, args.sigma_min, args.num_levels)
                actions = module.sample_actions(qf, next_obs, sigmas, args)
                next_q = qf_target(next_obs, actions, torch.full((1,), args.num_levels - 1)).min(0).values
            else:
                next_q = qf_target(next_obs, module.sample_actions(qf, next_obs, args)).min(0).values
            targets.append(args.reward_scale * rewards + args.gamma * (1 - terminations) * next_q)
    return torch.stack(targets).std(0).mean().item()


def discounted_returns(args, buffer):
    """Per transition of a one-environment buffer: reward_scale * sum_k gamma^k r_{t+k} to its episode's end, whether the
    episode ends there (cut where a transition's s' is not the next one's s: the buffer is in time order until it
    wraps), and whether the return is complete (transitions after the buffer's last episode end are not)."""
    size = buffer["size"]
    obs, next_obs, rewards = buffer["obs"][:size], buffer["next_obs"][:size], buffer["rewards"][:size].double()
    ends = torch.ones(size, dtype=torch.bool)
    ends[:-1] = (next_obs[:-1] != obs[1:]).any(1)  # the last transition may be mid-episode: cut below
    returns, running = torch.zeros(size, dtype=torch.float64), 0.0
    for t in range(size - 1, -1, -1):
        running = args.reward_scale * rewards[t].item() + (0.0 if ends[t] else args.gamma * running)
        returns[t] = running
    finished = torch.zeros(size, dtype=torch.bool)
    last_end = int(torch.nonzero(ends[:-1]).max()) if ends[:-1].any() else -1
    finished[: last_end + 1] = True  # transitions after the last episode end have no full return yet
    return returns, ends, finished


def clean_q(module, qf, args, obs, actions):
    """The critics' mean Q at the clean level (NC-LQL) or Q (LQL)."""
    with torch.no_grad():
        clean = (torch.full((1,), args.num_levels - 1),) if hasattr(module, "noise_levels") else ()
        return qf(obs, actions, *clean).mean(0).double()


def q_against_returns(module, qf, args, buffer, last):
    """(mean Q, mean discounted return, their correlation, count) over the buffer's last `last` transitions of finished
    episodes: Q_clean(s, a) against their discounted returns (`discounted_returns`), the Monte Carlo value of the
    actions taken (by the policies of those steps)."""
    returns, _, finished = discounted_returns(args, buffer)
    index = torch.nonzero(finished).squeeze(1)[-last:]
    q, g = clean_q(module, qf, args, buffer["obs"][index], buffer["actions"][index]), returns[index]
    return q.mean().item(), g.mean().item(), torch.corrcoef(torch.stack([q, g]))[0, 1].item(), len(index)


def q_before_falls(module, qf, args, buffer, last, steps=(1, 5, 20, 50)):
    """{k: (mean Q, mean discounted return, count)} at the transitions k steps before an episode's termination (k = 1:
    the terminating transition), over the terminations in the buffer's last `last` transitions whose episode was that
    long: does the critic see a fall coming? The return there is what is left of the reward until the fall."""
    returns, ends, _ = discounted_returns(args, buffer)
    size = buffer["size"]
    falls = torch.nonzero(buffer["terminations"][:size].bool()).squeeze(1)
    falls = falls[falls >= size - last]
    table = {}
    for k in steps:
        index = torch.tensor([t - k + 1 for t in falls.tolist() if t - k + 1 >= 0 and not ends[t - k + 1 : t].any()])
        if len(index):
            q = clean_q(module, qf, args, buffer["obs"][index], buffer["actions"][index])
            table[k] = (q.mean().item(), returns[index].mean().item(), len(index))
    return table


def estimation_over_training(paths, options, fall_steps=20):
    """One row per checkpoint, in env-step order: Q against discounted returns and Q `fall_steps` before a fall."""
    rows = []
    for path in paths:
        module, args, qf, checkpoint, _ = load(path)
        if checkpoint["args"]["num_envs"] != 1:
            raise SystemExit(f"error: {path} is a run with {checkpoint['args']['num_envs']} envs; its buffer interleaves them")
        q, g, r, _ = q_against_returns(module, qf, args, checkpoint["rb"], options.last)
        fall = q_before_falls(module, qf, args, checkpoint["rb"], options.last_falls, (fall_steps,)).get(fall_steps)
        before = f"{fall[0]:.2f} | {fall[1]:.2f}" if fall else "- | -"
        rows.append((checkpoint["global_step"], f"| {args.env_id} | {q:.2f} | {g:.2f} | {q - g:+.2f} | {r:.2f} | {before} |"))
    print(f"# Q against discounted returns over training: {checkpoint['algorithm']} ({checkpoint['args']['exp_name']})\n")
    print(f"Over the last {options.last:,} transitions of finished episodes in each checkpoint's buffer, and at the")
    print(f"terminations in its last {options.last_falls:,}, {fall_steps} steps before them (the reward left there).\n")
    print(f"| env step | env | Q | return | Q - return | correlation | Q, {fall_steps} steps before a fall | reward left |")
    print("|-|-|-|-|-|-|-|-|")
    for step, row in sorted(rows, key=lambda row: row[0]):
        print(f"| {step:,} {row}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="+", help="one checkpoint, or several of one run over training")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=ARGS", help="sampler settings to compare")
    parser.add_argument("--states", type=int, default=16, help="replayed states (default: 16)")
    parser.add_argument("--chains", type=int, default=256, help="chains per state (default: 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--last", type=int, default=5000, help="transitions for Q against returns (one env only)")
    parser.add_argument("--last-falls", type=int, default=20_000, help="transitions for Q before terminations (one env)")
    parser.add_argument("--transitions", type=int, default=1000, help="recent transitions for the TD-target noise")
    parser.add_argument("--draws", type=int, default=8, help="draws of a' per transition for the TD-target noise")
    options = parser.parse_args(argv)
    if options.states < 1 or options.chains < 2 or options.transitions < 1 or options.draws < 2:
        raise SystemExit("error: --states and --transitions must be >= 1, --chains and --draws >= 2")
    named = {}
    for spec in options.setting:
        name, sep, text = spec.partition("=")
        if not sep or not name:
            raise SystemExit(f"error: --setting must be NAME=ARGS, got {spec!r}")
        named[name] = text
    torch.set_num_threads(1)
    if len(options.checkpoint) > 1:
        return estimation_over_training(options.checkpoint, options)
    module, args, qf, checkpoint, settings = load(options.checkpoint[0])
    torch.manual_seed(options.seed)
    buffer = checkpoint["rb"]
    obs = buffer["obs"][torch.randint(0, buffer["size"], (options.states,))]
    act_dim = buffer["actions"].shape[1]
    with torch.no_grad():
        uniform = torch.rand(options.states * 4096, act_dim) * 2 - 1
        states = obs.repeat_interleave(4096, 0)
        clean = (torch.full((1,), args.num_levels - 1),) if hasattr(module, "noise_levels") else ()
        q_uniform = qf(states, uniform, *clean).mean(0).view(options.states, 4096)
    print(f"# Sampler spread: {options.checkpoint[0]}\n")
    print(
        f"{checkpoint['algorithm']} on {args.env_id} at env step {checkpoint['global_step']:,}; "
        f"{options.states} replayed states, "
        f"{options.chains} chains each. Q of uniform actions: mean {q_uniform.mean():.3f}, best of 4096 "
        f"{q_uniform.max(1).values.mean():.3f}; a uniform law's action std is {1 / 3**0.5:.3f}.\n"
    )
    if checkpoint["args"]["num_envs"] == 1:
        q, g, r, n = q_against_returns(module, qf, args, buffer, options.last)
        print(
            f"Q against discounted returns (reward_scale * sum gamma^k r) over the last {n:,} transitions of finished "
            f"episodes in the buffer: Q {q:.3f}, return {g:.3f} (Q - return {q - g:+.3f}), correlation {r:.2f}.\n"
        )
        falls = q_before_falls(module, qf, args, buffer, options.last_falls)
        if falls:
            print(f"Q before a termination (a fall) in the last {options.last_falls:,} transitions, against the discounted")
            print("reward left until it:\n\n| steps before the termination | Q | return | terminations |\n|-|-|-|-|")
            for k, (q, g, n) in falls.items():
                print(f"| {k} | {q:.3f} | {g:.3f} | {n} |")
            print()
    qf_target = type(qf)(buffer["obs"].shape[1], act_dim)
    qf_target.load_state_dict(checkpoint["qf_target"])
    print(f"TD-target noise: the std of the update's TD target over {options.draws} draws of a' (critics fixed), mean over")
    print(f"the buffer's last {options.transitions:,} transitions.\n")
    print("| sampler | action std per state | clipped | Q of the actions | TD-target noise |")
    print("|-|-|-|-|-|")
    defaults = DEFAULT_SETTINGS[checkpoint["algorithm"]]
    rows = {"the run's own": []} | {name: shlex.split(text) for name, text in (named or defaults).items()}
    for name, tokens in rows.items():
        torch.manual_seed(options.seed)
        std, clipped, q = spread(module, qf, settings(tokens), obs, options.chains)
        noise = td_target_noise(module, qf, qf_target, settings(tokens), buffer, options.transitions, options.draws)
        print(f"| {name} | {std:.3f} | {clipped:.3f} | {q:.3f} | {noise:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
