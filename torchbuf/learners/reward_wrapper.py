"""An SB3 ``VecEnvWrapper`` that replaces the env's rewards, as imitation's ``RewardVecEnvWrapper``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

__all__ = ["RewardVecEnvWrapper"]

HostRewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``reward_fn(obs, acts, next_obs, dones) -> rewards``, numpy batches of all envs."""


class RewardVecEnvWrapper(VecEnvWrapper):
    """Replaces the rewards of ``venv`` with ``reward_fn`` of each step's transitions.

    ``next_obs`` is the true next observation: ``info["terminal_observation"]``
    where an episode ended (SB3 resets in the same step). The env's own reward is
    kept in ``info["original_env_rew"]``, and the env returns of the episodes that
    ended are collected until :meth:`pop_episode_returns`.

    Args:
        venv: The env to wrap (e.g. a :class:`~torchbuf.BufferingWrapper`, which then
            records the env's own rewards).
        reward_fn: Computes the rewards of a step.

    Examples:
        >>> import gymnasium as gym
        >>> from stable_baselines3.common.vec_env import DummyVecEnv
        >>> venv = RewardVecEnvWrapper(
        ...     DummyVecEnv([lambda: gym.make("CartPole-v1")]), lambda o, a, n, d: np.full(len(o), 2.0)
        ... )
        >>> _ = venv.reset()
        >>> venv.step(np.array([0]))[1]
        array([2.], dtype=float32)
    """

    def __init__(self, venv: VecEnv, reward_fn: HostRewardFn):
        super().__init__(venv)
        self.reward_fn = reward_fn
        self._obs: Any = None
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._ended: list[tuple[float, int]] = []

    def reset(self) -> VecEnvObs:
        """Resets the env; running episodes are forgotten."""
        self._obs = self.venv.reset()
        self._returns[:] = 0
        self._lengths[:] = 0
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        """Remembers the actions and sends them to the env."""
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Steps the env and returns its result with the rewards replaced.

        Raises:
            RuntimeError: stepped before ``reset()``.
        """
        if self._obs is None or self._actions is None:
            raise RuntimeError("RewardVecEnvWrapper: call reset() and step_async() before step_wait()")
        obs, env_rews, dones, infos = self.venv.step_wait()
        next_obs = _terminal_fixed(obs, dones, infos)
        rews = np.asarray(self.reward_fn(self._obs, np.asarray(self._actions), next_obs, np.asarray(dones)))
        self._track(env_rews, dones)
        for info, rew in zip(infos, env_rews):
            info["original_env_rew"] = rew
        self._obs = obs
        return obs, rews.astype(np.float32).reshape(self.num_envs), dones, infos

    def pop_episode_returns(self) -> tuple[np.ndarray, np.ndarray]:
        """Env returns and lengths of the episodes that ended since the last call."""
        ended = np.asarray(self._ended, dtype=np.float64).reshape(-1, 2)
        self._ended = []
        return ended[:, 0], ended[:, 1].astype(np.int64)

    def _track(self, env_rews: np.ndarray, dones: np.ndarray) -> None:
        self._returns += env_rews
        self._lengths += 1
        for i in np.flatnonzero(dones):
            self._ended.append((float(self._returns[i]), int(self._lengths[i])))
        self._returns[dones] = 0
        self._lengths[dones] = 0


def _terminal_fixed(obs: Any, dones: np.ndarray, infos: list[dict[str, Any]]) -> Any:
    """Observations with each ended episode's terminal observation in place of the reset one."""
    ended = np.flatnonzero(dones)
    if len(ended) == 0:
        return obs
    if isinstance(obs, dict):
        fixed_dict = {k: np.array(v) for k, v in obs.items()}
        for i in ended:
            for k in fixed_dict:
                fixed_dict[k][i] = infos[i]["terminal_observation"][k]
        return fixed_dict
    fixed = np.array(obs)
    for i in ended:
        fixed[i] = infos[i]["terminal_observation"]
    return fixed
