"""benchmarks/reference/gym_shim/gym.py: the gym 0.23 API through which CleanRL 1.2.0's unmodified SAC script runs on
our gymnasium and MuJoCo. Under the same seed and actions, what the script sees through it must be gymnasium's own
observations, rewards, episode ends and statistics, with gym 0.23's autoreset and truncation marks."""

import importlib.util
import os

import gymnasium
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("gym_shim", os.path.join(ROOT, "benchmarks", "reference", "gym_shim", "gym.py"))
gym = importlib.util.module_from_spec(_spec)  # as the script names it; not put in sys.modules, so no other test sees it
_spec.loader.exec_module(gym)
pytestmark = pytest.mark.filterwarnings("ignore:.*Hopper-v4 is out of date:DeprecationWarning")  # the script's env


def make_env(env_id, seed, **kwargs):
    """The script's make_env (without --capture-video); kwargs (max_episode_steps) are the test's."""

    def thunk():
        env = gym.make(env_id, **kwargs)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env.seed(seed)
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
        return env

    return thunk


def gymnasium_env(env_id, **kwargs):
    return gymnasium.wrappers.RecordEpisodeStatistics(gymnasium.make(env_id, **kwargs))


def test_single_env_seed_is_gymnasiums_reset_seed():
    """env.seed(s) then reset() is gymnasium's reset(seed=s), once: the next episode continues the same RNG."""
    env, ref = make_env("Hopper-v4", 7)(), gymnasium_env("Hopper-v4")
    obs, ref_obs = env.reset()[0], ref.reset(seed=7)[0]
    actions = np.random.default_rng(0).uniform(-1, 1, (1000, 3)).astype(np.float32)
    episodes = 0
    for action in actions:
        np.testing.assert_array_equal(obs, ref_obs)
        obs, reward, terminated, truncated, info = env.step(action)
        ref_obs, ref_reward, ref_terminated, ref_truncated, ref_info = ref.step(action)
        assert (reward, terminated, truncated) == (ref_reward, ref_terminated, ref_truncated)
        if terminated or truncated:
            assert info["episode"]["r"] == ref_info["episode"]["r"] and info["episode"]["l"] == ref_info["episode"]["l"]
            episodes += 1
            if episodes == 2:
                break
            obs, ref_obs = env.reset()[0], ref.reset()[0]
    assert episodes == 2
    np.testing.assert_array_equal(obs, ref_obs)


def run_both(thunks, references, seeds, steps, action_shape):
    """Step the shim's vector env and gymnasium's (same-step autoreset) with the same actions; check that the script's
    view (obs, rewards, dones, per-env infos) is gymnasium's; return (terminations, truncations, both) seen."""
    envs = gym.vector.SyncVectorEnv(thunks)
    ref = gymnasium.vector.SyncVectorEnv(references, autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
    obs, (ref_obs, _) = envs.reset(), ref.reset(seed=seeds)
    np.testing.assert_array_equal(obs, ref_obs)
    assert isinstance(envs.single_action_space, gym.spaces.Box) and envs.action_space.shape == (len(seeds), *action_shape)
    counts = np.zeros(3, int)
    for actions in np.random.default_rng(1).uniform(-1, 1, (steps, len(seeds), *action_shape)).astype(np.float32):
        obs, rewards, dones, infos = envs.step(actions)
        ref_obs, ref_rewards, terminated, truncated, ref_infos = ref.step(actions)
        np.testing.assert_array_equal(obs, ref_obs)  # after an episode's end: the next episode's first observation
        np.testing.assert_array_equal(rewards, ref_rewards)
        np.testing.assert_array_equal(dones, terminated | truncated)
        assert isinstance(infos, list) and len(infos) == len(seeds)
        for i, info in enumerate(infos):
            if not dones[i]:
                assert not {"episode", "terminal_observation", "TimeLimit.truncated"} & info.keys()
                continue
            np.testing.assert_array_equal(info["terminal_observation"], ref_infos["final_obs"][i])
            episode = ref_infos["final_info"]["episode"]
            assert info["episode"]["r"] == episode["r"][i] and info["episode"]["l"] == episode["l"][i]
            assert info["TimeLimit.truncated"] == (truncated[i] and not terminated[i])
            counts += [terminated[i] and not truncated[i], truncated[i] and not terminated[i], terminated[i] and truncated[i]]
    envs.close()
    ref.close()
    return counts


def test_vector_env_is_gymnasiums_with_gym_023_api():
    """Hopper-v4, two envs as the script makes them: one at its 1000-step limit (episodes end by falling), one cut by a
    10-step TimeLimit; dones, autoreset, terminal observations, episode statistics and truncation marks."""
    thunks = [make_env("Hopper-v4", 3), make_env("Hopper-v4", 4, max_episode_steps=10)]
    references = [lambda: gymnasium_env("Hopper-v4"), lambda: gymnasium_env("Hopper-v4", max_episode_steps=10)]
    terminations, truncations, _ = run_both(thunks, references, [3, 4], 150, (3,))
    assert terminations >= 2 and truncations >= 2


def test_termination_at_the_time_limit_is_no_truncation():
    """gym 0.23's TimeLimit set info["TimeLimit.truncated"] = not done: an episode that terminates on its last allowed
    step is terminal for the replay buffer. CountdownEnv (conftest) under a 3-step limit: its even episodes terminate
    at step 3, on the limit; its odd ones are truncated there."""
    counts = run_both(
        [make_env("CountdownEnv-v0", 0, max_episode_steps=3)],
        [lambda: gymnasium_env("CountdownEnv-v0", max_episode_steps=3)],
        [0],
        12,
        (1,),
    )
    assert list(counts) == [0, 2, 2]


def test_replay_buffer_reads_the_truncation_marks():
    """stable-baselines3's ReplayBuffer, as the script builds it, stores a truncation as not done and a termination as
    done. Runs where stable-baselines3 is installed (the reference venv of benchmarks/reference/cleanrl_sac.sh)."""
    buffers = pytest.importorskip("stable_baselines3.common.buffers", reason="stable-baselines3 is only in the reference venv")
    envs = gym.vector.SyncVectorEnv([make_env("CountdownEnv-v0", 0, max_episode_steps=3)])
    envs.single_observation_space.dtype = np.float32
    rb = buffers.ReplayBuffer(
        100, envs.single_observation_space, envs.single_action_space, "cpu", handle_timeout_termination=True
    )
    obs = envs.reset()
    for _ in range(6):  # episode 0 terminates (on the limit), episode 1 is truncated
        actions = np.array([envs.single_action_space.sample()])
        next_obs, rewards, dones, infos = envs.step(actions)
        real_next_obs = next_obs.copy()
        for idx, d in enumerate(dones):
            if d:
                real_next_obs[idx] = infos[idx]["terminal_observation"]
        rb.add(obs, real_next_obs, actions, rewards, dones, infos)
        obs = next_obs
    data = rb._get_samples(np.arange(6))
    np.testing.assert_array_equal(data.dones.flatten().numpy(), [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(data.next_observations.numpy()[[2, 5]], [[0, 3], [1, 3]])
