"""Rollout helpers: imitation's stopping rule, complete episodes, stats and flattening."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from tests.helpers import ACT_SPACES, OBS_SPACES, ScheduleEnv
from torchbuf import BufferingWrapper, VectorBufferingWrapper
from torchbuf.data.types import Transitions, TransitionsWithRew
from torchbuf.envs import TorchCartPole, TorchPendulum
from torchbuf.envs.experts import scripted_cartpole, scripted_pendulum
from torchbuf.rollout import flatten_trajectories, generate_trajectories, make_sample_until, rollout_stats

IMITATION_STAT_KEYS = {"n_traj"} | {
    f"{d}_{s}" for d in ("return", "len") for s in ("min", "mean", "std", "max")
}


def _schedule_venv(ep_lens_per_env, obs="box"):
    fns = [
        (lambda lens=lens: ScheduleEnv(OBS_SPACES[obs], ACT_SPACES["discrete"], lens, [False] * len(lens)))
        for lens in ep_lens_per_env
    ]
    return DummyVecEnv(fns)


def _zeros(obs):
    return torch.zeros(len(obs), dtype=torch.int64)


def test_make_sample_until():
    until = make_sample_until(min_timesteps=10, min_episodes=2)
    traj = [type("T", (), {"__len__": lambda self: 6})()]
    assert not until(traj) and until(traj * 2) and not until([])
    with pytest.raises(ValueError, match="At least one"):
        make_sample_until()
    with pytest.raises(ValueError, match="positive"):
        make_sample_until(min_episodes=0)


def test_stopping_rule_is_imitations():
    # env 0 ends an episode every 2 steps, env 1 every 5. min_episodes=3 holds at
    # t=5 (env1's first episode); env 1 then stops, env 0 finishes the episode it runs (t=6).
    venv = _schedule_venv([[2], [5]])
    trajs = generate_trajectories(_zeros, venv, make_sample_until(min_episodes=3))
    assert [len(t) for t in trajs] == [2, 2, 5, 2]
    assert all(t.terminal for t in trajs)
    # rewards are episode * 1000 + t: each env's episodes in order, none from a later one
    assert [int(t.rews[-1]) for t in trajs] == [2, 1002, 5, 2002]


@pytest.mark.parametrize("check_every", [1, 3, 16])
def test_reading_dones_every_few_steps_gives_the_same_episodes(check_every):
    venv = _schedule_venv([[2, 7], [5], [3, 1, 4]])
    wrapper = BufferingWrapper(venv)
    trajs = generate_trajectories(
        _zeros, wrapper, make_sample_until(min_timesteps=12), check_every=check_every
    )
    expected = generate_trajectories(
        _zeros, _schedule_venv([[2, 7], [5], [3, 1, 4]]), make_sample_until(min_timesteps=12)
    )
    assert [t.rews.tolist() for t in trajs] == [t.rews.tolist() for t in expected]
    assert wrapper.n_unpopped == 0  # partial episodes dropped: the wrapper can be reset again
    wrapper.reset()


def test_sb3_vecenv_scripted_expert():
    venv = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 4)
    trajs = generate_trajectories(
        scripted_cartpole, venv, make_sample_until(min_episodes=5), seed=0, rng=np.random.default_rng(0)
    )
    stats = rollout_stats(trajs)
    assert stats.keys() == IMITATION_STAT_KEYS
    assert stats["n_traj"] >= 5 and stats["return_mean"] == 500.0
    for t in trajs:
        assert t.obs.shape == (len(t) + 1, 4) and t.acts.dtype == torch.int64 and t.terminal


def test_torch_env_stays_on_device_and_matches_expert_returns():
    trajs = generate_trajectories(
        scripted_pendulum, TorchPendulum(8, seed=0), make_sample_until(min_episodes=16)
    )
    stats = rollout_stats(trajs)
    print(f"scripted Pendulum expert: {stats}")
    assert stats["n_traj"] == 16 and stats["len_min"] == stats["len_max"] == 200
    assert stats["return_mean"] > -250
    random = rollout_stats(
        generate_trajectories(None, TorchPendulum(8, seed=0), make_sample_until(min_episodes=8))
    )
    print(f"random Pendulum policy: return_mean={random['return_mean']:.1f}")
    assert random["return_mean"] < stats["return_mean"] - 500


@pytest.mark.parametrize("env_kind", ["sb3", "torch"])
def test_sb3_policy(env_kind):
    model = PPO("MlpPolicy", gym.make("CartPole-v1"), seed=0, device="cpu")
    venv = (
        DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2) if env_kind == "sb3" else TorchCartPole(2, seed=0)
    )
    for policy in (model, model.policy):
        trajs = generate_trajectories(
            policy, venv, make_sample_until(min_timesteps=50), deterministic_policy=True
        )
        assert sum(len(t) for t in trajs) >= 50
        assert all(t.acts.dtype == torch.int64 and t.acts.shape == (len(t),) for t in trajs)


def test_sb3_policy_box_actions_on_torch_env():
    model = PPO("MlpPolicy", gym.make("Pendulum-v1"), seed=0, device="cpu")
    trajs = generate_trajectories(model, TorchPendulum(2, seed=0), make_sample_until(min_episodes=2))
    acts = torch.cat([t.acts for t in trajs])
    assert acts.shape == (400, 1) and acts.abs().max() <= 2.0


def test_gymnasium_numpy_vector_env():
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    trajs = generate_trajectories(
        scripted_cartpole, VectorBufferingWrapper(envs), make_sample_until(min_episodes=2)
    )
    assert len(trajs) == 2 and all(int(t.rews.sum()) == 500 for t in trajs)


def test_monitor_returns_in_stats():
    venv = DummyVecEnv([lambda: Monitor(gym.make("CartPole-v1"))] * 2)
    stats = rollout_stats(generate_trajectories(None, venv, make_sample_until(min_episodes=3), seed=1))
    assert stats["monitor_return_len"] == stats["n_traj"]
    assert stats["monitor_return_mean"] == pytest.approx(stats["return_mean"])


def test_rollout_stats_values():
    venv = _schedule_venv([[3, 4], [6]])
    trajs = generate_trajectories(_zeros, venv, make_sample_until(min_episodes=4))
    stats = rollout_stats(trajs)
    returns = np.array([float(t.rews.double().sum()) for t in trajs])
    assert stats["return_std"] == pytest.approx(returns.std())  # population std, as numpy's
    assert stats["len_mean"] == np.mean([len(t) for t in trajs])
    with pytest.raises(ValueError, match="at least one"):
        rollout_stats([])


def test_bad_arguments():
    with pytest.raises(TypeError, match="VecEnv"):
        generate_trajectories(_zeros, gym.make("CartPole-v1"), make_sample_until(min_episodes=1))
    with pytest.raises(ValueError, match="deterministic"):
        generate_trajectories(
            _zeros, TorchCartPole(1), make_sample_until(min_episodes=1), deterministic_policy=True
        )
    with pytest.raises(TypeError, match="policy"):
        generate_trajectories(3, TorchCartPole(1), make_sample_until(min_episodes=1))


@pytest.mark.parametrize("obs", ["box", "dict"])
def test_flatten_trajectories(obs):
    wrapper = BufferingWrapper(_schedule_venv([[3], [5]], obs=obs))
    wrapper.reset()
    for _ in range(7):
        wrapper.step(np.zeros(2, dtype=np.int64))
    trajs, _ = wrapper.pop_trajectories()  # two complete episodes of env 0 and 1, and fragments
    flat = flatten_trajectories(trajs)
    assert isinstance(flat, TransitionsWithRew) and flat.batch_size == (14,)
    start = 0
    for t in trajs:
        n = len(t)
        assert (flat.obs[start : start + n] == t.obs[:-1]).all()
        assert (flat.next_obs[start : start + n] == t.obs[1:]).all()
        assert flat.dones[start : start + n].tolist() == [False] * (n - 1) + [t.terminal]
        assert torch.equal(flat.rews[start : start + n], t.rews)
        start += n
    assert [bool(t.terminal) for t in trajs].count(False) == 2  # running fragments: no done
    assert len(flat.infos) == 14


def test_flatten_without_rewards():
    traj = generate_trajectories(
        scripted_cartpole, TorchCartPole(1, seed=0), make_sample_until(min_episodes=1)
    )[0]
    plain = type(traj).__mro__[1](
        obs=traj.obs, acts=traj.acts, terminated=traj.terminated, truncated=traj.truncated
    )
    flat = flatten_trajectories([plain])
    assert type(flat) is Transitions and flat.dones[-1] and flat.infos is None
