"""Environments for the benchmarks: a synthetic SB3 ``VecEnv`` of near-zero cost, and CartPole.

The synthetic env returns preallocated arrays and prebuilt info lists, so a step costs
a few microseconds whatever ``n_envs`` is and the time measured around it is the
recorder's. Episodes end on a fixed, staggered schedule (env ``i`` ends every
``ep_len`` steps, offset by ``i``), each ending with ``terminal_observation`` (and
every other ending a ``TimeLimit.truncated``) in its info dict, as SB3's auto-reset
reports it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

OBS_KINDS = ("vec4", "img84", "dict")
"""Observation kinds: 4 float32, 84x84x4 uint8, and a Dict of both."""


def obs_space(kind: str) -> spaces.Space:
    """The single-env observation space of an observation kind.

    Args:
        kind: One of :data:`OBS_KINDS`.

    Returns:
        The space.
    """
    vec = spaces.Box(-1.0, 1.0, (4,), np.float32)
    img = spaces.Box(0, 255, (84, 84, 4), np.uint8)
    if kind == "vec4":
        return vec
    if kind == "img84":
        return img
    if kind == "dict":
        return spaces.Dict({"img": img, "vec": vec})
    raise ValueError(f"unknown observation kind {kind!r}; expected one of {OBS_KINDS}")


def raw_obs_bytes(kind: str) -> int:
    """Bytes of one observation of ``kind``."""
    space = obs_space(kind)
    subs = space.spaces.values() if isinstance(space, spaces.Dict) else [space]
    return sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in subs)


def _batch(space: spaces.Space, n: int, fill: int) -> Any:
    if isinstance(space, spaces.Dict):
        return {k: _batch(s, n, fill) for k, s in space.spaces.items()}
    return np.full((n, *space.shape), fill, dtype=space.dtype)


def _row(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {k: v[i] for k, v in obs.items()}
    return obs[i]


class SyntheticVecEnv(VecEnv):
    """An SB3 ``VecEnv`` whose step returns preallocated data.

    Args:
        n_envs: Number of envs.
        obs_kind: One of :data:`OBS_KINDS`.
        ep_len: Episode length; env ``i``'s episodes end at steps ``t`` with
            ``(t + i) % ep_len == 0``.
    """

    def __init__(self, n_envs: int, obs_kind: str = "vec4", ep_len: int = 50):
        super().__init__(n_envs, obs_space(obs_kind), spaces.Discrete(4))
        self.ep_len = ep_len
        self._obs = _batch(self.observation_space, n_envs, 1)
        self._terminal = _batch(self.observation_space, n_envs, 2)
        self._rews = np.ones(n_envs, dtype=np.float32)
        self._phase_dones = [(np.arange(n_envs) + p) % ep_len == 0 for p in range(ep_len)]
        self._phase_infos = [self._infos(d) for d in self._phase_dones]
        self._t = 0

    def _infos(self, dones: np.ndarray) -> list[dict[str, Any]]:
        empty: dict[str, Any] = {}
        infos = [empty] * self.num_envs
        for i in np.flatnonzero(dones):
            infos[i] = {"terminal_observation": _row(self._terminal, i), "TimeLimit.truncated": bool(i % 2)}
        return infos

    def reset(self) -> Any:
        """Returns the (preallocated) first observations."""
        self._t = 0
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        """Ignores the actions."""

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Returns the preallocated step of the current phase of the schedule."""
        self._t += 1
        phase = self._t % self.ep_len
        return self._obs, self._rews, self._phase_dones[phase], self._phase_infos[phase]

    def close(self) -> None:
        """Nothing to close."""

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """Reads an attribute of this object once per env."""
        return [getattr(self, attr_name)] * self.num_envs

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Sets an attribute of this object."""
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        """Calls a method of this object once per env."""
        return [getattr(self, method_name)(*args, **kwargs) for _ in range(self.num_envs)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        """No env is wrapped."""
        return [False] * self.num_envs


def make_env(name: str, n_envs: int) -> VecEnv:
    """Builds a benchmark env.

    Args:
        name: ``"cartpole"`` (SB3 ``DummyVecEnv`` of ``CartPole-v1``) or an
            observation kind of the synthetic env.
        n_envs: Number of envs.

    Returns:
        The VecEnv.
    """
    if name == "cartpole":
        return DummyVecEnv([lambda: gym.make("CartPole-v1")] * n_envs)
    return SyntheticVecEnv(n_envs, name)
