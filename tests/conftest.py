import os
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
torch.set_num_threads(1)  # the tests' tensors are small: one thread is faster and steadier than two

# Tests marked with DEVICES run on the CPU and, where torch sees a GPU, again with --cuda: the scripts must run
# unchanged on both. CI has no GPU, so there the CUDA cases are skipped; run `pytest tests` on a GPU machine for them.
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
DEVICES = ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)]


class CountdownEnv(gym.Env):
    """A tiny env whose episode ends are known: obs = [episode index, step within episode]. Episode k (k = 0, 1, ...)
    terminates after 3 steps when k is even; odd episodes run until the TimeLimit of 5 steps truncates them."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.episode, self.t = -1, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return np.array([self.episode, 0], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.episode % 2 == 0 and self.t == 3
        return np.array([self.episode, self.t], np.float32), 1.0, terminated, False, {}


gym.register("CountdownEnv-v0", entry_point=CountdownEnv, max_episode_steps=5)


def read_scalars(run_dir):
    """{tag: [(step, value), ...]} from a run's TensorBoard event files, read in the order they were written.
    TensorBoard reads a directory's files in name order: events.out.tfevents.{second}.{host}.{pid}.{n}, n counting the
    process's writers; a resume in the same second by the same process (as in a test) would sort writer 10 before 9,
    and the resumed file's purge would then drop the first file's steps. Links with ordered names keep their order."""
    import tempfile

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = [f for f in os.listdir(run_dir) if "tfevents" in f]
    written_order = sorted(files, key=lambda f: (int(f.split(".")[3]), int(f.split(".")[-1])))  # second, then n
    with tempfile.TemporaryDirectory() as ordered:
        for i, name in enumerate(written_order):
            os.symlink(os.path.abspath(os.path.join(run_dir, name)), os.path.join(ordered, f"events.out.tfevents.{i:06d}"))
        accumulator = EventAccumulator(ordered, size_guidance={"scalars": 0})
        accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    """Runs write runs/ under the working directory: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def small_update_and_act(module):
    """A script's update and acting sampler with small samplers (quick to compile), and the arguments they take after
    the batch / the observations: update(qf, qf_target, optimizer, batch, *extra, w), act(qf, obs, *extra, w)."""
    if hasattr(module, "noise_levels"):
        args = module.Args(num_levels=3, steps_per_level=1, grad_norm=True, num_particles=2)
        sigmas = module.noise_levels(args.sigma_max, args.sigma_min, args.num_levels)
        return module.update_critics, module.sample_actions, (sigmas, args)
    return module.update_critics, module.sample_actions, (module.Args(langevin_steps=3),)


def tiny_run_args(module, **overrides):
    """A run of either script small enough for a test: 60 env steps on InvertedPendulum, 10 updates, short chains."""
    small = dict(num_levels=3, steps_per_level=1) if hasattr(module, "noise_levels") else dict(langevin_steps=3)
    settings = dict(
        env_id="InvertedPendulum-v4",
        total_timesteps=60,
        num_envs=2,
        learning_starts=40,
        batch_size=16,
        eval_frequency=0,
        eval_episodes=2,
        **small,
    )
    return module.Args(**{**settings, **overrides})


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """trained_run(module) -> the directory of one tiny trained run of that script (checkpoint.pt at env step 60 of 60,
    and the saved model, trained at w = 0.25), made once per session for the tests that only read it."""
    run_dirs = {}

    def run_of(module):
        if module not in run_dirs:
            here, workdir = os.getcwd(), tmp_path_factory.mktemp(module.ALGORITHM)
            os.chdir(workdir)
            try:
                _, run_dir = module.train(
                    tiny_run_args(module, exp_name="trained", checkpoint_frequency=60, save_model=True, w=0.25)
                )
            finally:
                os.chdir(here)
            run_dirs[module] = str(workdir / run_dir)
        return run_dirs[module]

    return run_of
