"""Small real gymnasium envs and comparison helpers shared by the tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDictBase

from torchbuf.buffer import rows as rows_module

OBS_SPACES = {
    "box": spaces.Box(-5.0, 5.0, (3,), np.float32),
    "image": spaces.Box(0, 255, (6, 6, 3), np.uint8),
    "discrete": spaces.Discrete(7),
    "multidiscrete": spaces.MultiDiscrete([3, 4]),
    "dict": spaces.Dict(
        {"pos": spaces.Box(-1.0, 1.0, (2,), np.float32), "img": spaces.Box(0, 255, (4, 4), np.uint8)}
    ),
    "nested": spaces.Dict(
        {"a": spaces.Discrete(3), "b": spaces.Dict({"c": spaces.Box(-1.0, 1.0, (2,), np.float64)})}
    ),
}
ACT_SPACES = {
    "discrete": spaces.Discrete(4),
    "multidiscrete": spaces.MultiDiscrete([2, 3]),
    "box": spaces.Box(-1.0, 1.0, (2,), np.float32),
    "dict": spaces.Dict(
        {"move": spaces.Discrete(3), "arm": spaces.Dict({"torque": spaces.Box(-1.0, 1.0, (2,))})}
    ),
}


class ScheduleEnv(gym.Env):
    """Episodes of scheduled lengths; each ends terminated or truncated as scheduled.

    Observations are drawn from the space with a seeded generator, so every
    observation differs and any mix-up of slots shows.
    """

    def __init__(self, obs_space, act_space, ep_lens, truncate, seed=0):
        self.observation_space, self.action_space = obs_space, act_space
        self.ep_lens, self.truncate = list(ep_lens), list(truncate)
        self.observation_space.seed(seed)
        self.episode, self.t = -1, 0

    def reset(self, *, seed=None, options=None):
        self.episode, self.t = self.episode + 1, 0
        return self.observation_space.sample(), {"episode": self.episode}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.t += 1
        k = self.episode % len(self.ep_lens)
        end = self.t >= self.ep_lens[k]
        trunc = end and self.truncate[k]
        rew = float(self.episode * 1000 + self.t)
        info = {"episode": self.episode, "t": self.t}
        return self.observation_space.sample(), rew, end and not trunc, trunc, info


def to_numpy(x):
    """Tensor or TensorDict to numpy (a dict of arrays for TensorDicts)."""
    if isinstance(x, TensorDictBase):
        return {k: to_numpy(v) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return x.cpu().numpy()
    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    return np.asarray(x)


def index_obs(obs, i):
    """The i-th observation of a batch (arrays or dicts of arrays)."""
    if isinstance(obs, dict):
        return {k: index_obs(v, i) for k, v in obs.items()}
    return obs[i]


def assert_obs_equal(a, b):
    """Exact equality of observations, arrays or (nested) dicts; dtype included."""
    a, b = to_numpy(a), to_numpy(b)
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_obs_equal(a[k], b[k])
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    np.testing.assert_array_equal(a, b)


def stack_obs(items):
    """Stacks single observations (arrays or dicts) along a new first axis."""
    if isinstance(items[0], dict):
        return {k: stack_obs([it[k] for it in items]) for k in items[0]}
    return np.stack([np.asarray(it) for it in items])


def torch_route(monkeypatch):
    """Makes the storage take its GPU route on the CPU too (``index_put_``, no numpy views)."""
    monkeypatch.setattr(rows_module, "host_view", lambda leaf: None)
