"""`gym`, as CleanRL 1.2.0's sac_continuous_action.py uses it (gym 0.23's API), on top of gymnasium.

benchmarks/reference/cleanrl_sac.sh installs this file as `gym` in the reference venv, so that the unmodified script
runs on the gymnasium and MuJoCo of requirements.txt, the simulator our own scripts run on. It restores only what the
script touches; everything else (the envs, their dynamics and rewards, TimeLimit, the episode statistics, the spaces
and their sampling) is gymnasium's own.

- `make`: gymnasium.make without the env checker, which gym 0.23 did not have. The script sets the observation
  space's dtype to float32 after making the env (for its replay buffer), and the checker would then warn that the
  env's float64 observations are not in that space.
- `spaces`: gymnasium.spaces (the script checks `isinstance(..., gym.spaces.Box)`; stable-baselines3 2.x's
  ReplayBuffer reads gymnasium spaces).
- `wrappers.RecordEpisodeStatistics`: gymnasium's (info["episode"] = {"r", "l", "t"} on an episode's last step) with
  gym 0.23's `env.seed(seed)`, which gymnasium replaced by `reset(seed=seed)`: the seed is kept and given to the next
  reset. `wrappers.RecordVideo` (`--capture-video`, off by default and in our runs) is not provided.
- `vector.SyncVectorEnv`: gym 0.23's, over gymnasium envs. `reset()` returns the observations only; `step(actions)`
  returns (observations, rewards, dones, infos) with done = terminated or truncated and infos a list of per-env
  dicts; an env whose episode ended is reset in the same step, its true last observation in
  infos[i]["terminal_observation"]; and, as gym 0.23's TimeLimit did, infos[i]["TimeLimit.truncated"] tells a
  truncation (True unless the episode also terminated), which stable-baselines3's ReplayBuffer reads with
  handle_timeout_termination=True so as not to take a time limit for a terminal state. The 5-to-4 tuple translation
  is gymnasium's own convert_to_done_step_api (it sets the key to False on a termination, where gym 0.23 left it out:
  `info.get("TimeLimit.truncated", False)` reads both alike).

Two differences from gym 0.23 that the script does not read: the episode return is summed in float64 (gym 0.23:
float32), and info["episode"]["t"] is the episode's duration (gym 0.23: the time since the wrapper was made).
"""

import functools
import types

import gymnasium
import numpy as np
from gymnasium.utils.step_api_compatibility import convert_to_done_step_api
from gymnasium.vector.utils import batch_space

make = functools.partial(gymnasium.make, disable_env_checker=True)
spaces = gymnasium.spaces


class RecordEpisodeStatistics(gymnasium.wrappers.RecordEpisodeStatistics):
    """gymnasium's RecordEpisodeStatistics with gym 0.23's env.seed(seed): the seed goes to the next reset."""

    _seed = None

    def seed(self, seed=None):
        self._seed = seed

    def reset(self, *, seed=None, options=None):
        seed, self._seed = self._seed if seed is None else seed, None
        return super().reset(seed=seed, options=options)


class SyncVectorEnv:
    """gym 0.23's SyncVectorEnv over gymnasium envs: old reset and step API, same-step autoreset, per-env infos."""

    def __init__(self, env_fns):
        self.envs = [env_fn() for env_fn in env_fns]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(self):
        return np.stack([env.reset()[0] for env in self.envs])

    def step(self, actions):
        results = []
        for env, action in zip(self.envs, actions, strict=True):
            obs, reward, done, info = convert_to_done_step_api(env.step(action))
            if done:
                info["terminal_observation"] = obs
                obs, _ = env.reset()
            results.append((obs, reward, done, info))
        observations, rewards, dones, infos = zip(*results, strict=True)
        return np.stack(observations), np.array(rewards, dtype=np.float64), np.array(dones, dtype=bool), list(infos)

    def close(self):
        for env in self.envs:
            env.close()


wrappers = types.SimpleNamespace(RecordEpisodeStatistics=RecordEpisodeStatistics)
vector = types.SimpleNamespace(SyncVectorEnv=SyncVectorEnv)
