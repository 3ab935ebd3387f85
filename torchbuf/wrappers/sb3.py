"""Drop-in counterparts of ``imitation.data.wrappers``: buffering and rollout info.

``BufferingWrapper`` records an SB3 ``VecEnv`` into device storage and returns
exactly what the wrapped env returns. Its pops return torch batches
(:mod:`torchbuf.data.types`); :mod:`torchbuf.compat.imitation` returns imitation's types.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from torchbuf.adapters.sb3 import FINAL, sb3_record
from torchbuf.buffer.guard import exclusive
from torchbuf.buffer.popapi import PopAPI
from torchbuf.buffer.recorder import Recorder
from torchbuf.data.convert import obs_to_tensors
from torchbuf.data.spaces import BatchFit


class BufferingWrapper(PopAPI, VecEnvWrapper):
    """Saves transitions of the wrapped VecEnv in preallocated device storage.

    Retrieve them with :meth:`pop_transitions`, :meth:`pop_trajectories` or
    :meth:`pop_finished_trajectories`. The wrapper is transparent: ``reset`` and
    ``step_wait`` return exactly what ``venv`` returns.

    Args:
        venv: The wrapped VecEnv.
        error_on_premature_reset: Error if ``reset()`` is called while transitions
            recorded since the last pop have not been popped.
        device: Storage device (default CPU).
        keep_infos: Keep the info dicts (host objects) for the batches' ``infos``.
        capacity: Initial slots per env; storage doubles when a step could overflow,
            and a pop gives back what doubling overshot (never below ``capacity``).

    Attributes:
        n_transitions: ``None`` before the first ``reset()``, then the number of
            transitions recorded since the last pop of any kind.
        error_on_premature_event: Same as ``error_on_premature_reset``.

    Examples:
        >>> import gymnasium as gym
        >>> from stable_baselines3.common.vec_env import DummyVecEnv
        >>> venv = BufferingWrapper(DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2))
        >>> obs = venv.reset()
        >>> obs, rews, dones, infos = venv.step(np.zeros(2, dtype=np.int64))
        >>> venv.pop_transitions().obs.shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        venv: VecEnv,
        error_on_premature_reset: bool = True,
        *,
        device: torch.device | str = "cpu",
        keep_infos: bool = True,
        capacity: int = 64,
    ):
        super().__init__(venv)
        self.error_on_premature_reset = error_on_premature_reset
        self._recorder = Recorder(venv.num_envs, device, keep_infos, capacity)
        self._saved_acts: Any = None
        self._fit_obs = BatchFit(self.observation_space, self.num_envs, "obs")
        self._fit_acts = BatchFit(self.action_space, self.num_envs, "actions")
        self._fit_final = BatchFit(self.observation_space, None, FINAL)

    _state_kind = "sb3"

    def _step_state(self) -> dict[str, Any]:
        if self._saved_acts is not None:
            raise RuntimeError("BufferingWrapper: a step_async() is pending; save the state between steps")
        return {}

    @exclusive
    def reset(self, **kwargs: Any) -> VecEnvObs:
        """Resets all envs; discards data not yet popped.

        Raises:
            RuntimeError: ``error_on_premature_reset`` and transitions recorded since
                the last pop are unpopped.
        """
        self._check_premature_reset("BufferingWrapper")
        obs = self.venv.reset(**kwargs)
        self._recorder.start(obs_to_tensors(self._fit_obs(obs), self.num_envs, self.device))
        self._saved_acts = None
        return obs

    @exclusive
    def step(self, actions: np.ndarray) -> VecEnvStepReturn:
        """Steps the wrapped env with ``actions`` and records it (``step_async``, then ``step_wait``)."""
        self._step_async(actions)
        return self._step_wait()

    @exclusive
    def step_async(self, actions: np.ndarray) -> None:
        """Checks and saves ``actions``, then steps the wrapped env.

        Raises:
            RuntimeError: called before ``reset()`` or with a step still pending.
            ValueError: ``actions`` do not fit the action space.
        """
        self._step_async(actions)

    def _step_async(self, actions: np.ndarray) -> None:
        if self._recorder.n_transitions is None:
            raise RuntimeError("BufferingWrapper: call reset() before step()")
        if self._saved_acts is not None:
            raise RuntimeError("BufferingWrapper: step_async() called again before step_wait()")
        acts = self._fit_acts(actions)  # before the env steps: a step that cannot be recorded is not taken
        self.venv.step_async(actions)
        self._saved_acts = acts

    @exclusive
    def step_wait(self) -> VecEnvStepReturn:
        """Waits for the step, records it, and returns the wrapped env's result.

        Raises:
            RuntimeError: no ``step_async()`` is pending.
            ValueError: an observation does not fit the observation space.
        """
        return self._step_wait()

    def _step_wait(self) -> VecEnvStepReturn:
        if self._saved_acts is None:
            raise RuntimeError("BufferingWrapper: step_wait() called without step_async()")
        acts, self._saved_acts = self._saved_acts, None
        obs, rews, dones, infos = self.venv.step_wait()
        record = sb3_record(acts, self._fit_obs(obs), rews, dones, infos, self.device, self._fit_final)
        self._recorder.record(record, infos)
        return obs, rews, dones, infos


class RolloutInfoWrapper(gym.Wrapper):
    """Adds the entire episode's observations and rewards to ``info`` at episode end.

    Whenever ``terminated or truncated``, ``info["rollout"]`` is a dict with keys
    ``"obs"`` (all observations of the episode, reset observation included, stacked;
    a dict of stacked arrays for dict observations) and ``"rews"``. The key is
    ``"rollout"`` as in imitation's code and its ``rollout.unwrap_traj`` (imitation's
    docs page says ``"rollouts"``). Numpy observations stack with numpy, torch
    tensors with torch.

    Args:
        env: Environment to wrap.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._obs: list[Any] = []
        self._rews: list[Any] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Resets the env and starts a new episode record."""
        obs, info = self.env.reset(**kwargs)
        self._obs, self._rews = [obs], []
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        """Steps the env; at episode end adds ``info["rollout"]``."""
        obs, rew, terminated, truncated, info = self.env.step(action)
        self._obs.append(obs)
        self._rews.append(rew)
        if terminated or truncated:
            assert "rollout" not in info
            info["rollout"] = {"obs": _stack(self._obs), "rews": _stack(self._rews)}
        return obs, rew, terminated, truncated, info


def _stack(items: list[Any]) -> Any:
    first = items[0]
    if isinstance(first, dict):
        return {k: _stack([it[k] for it in items]) for k in first}
    if isinstance(first, torch.Tensor):
        return torch.stack(items)
    return np.stack(items)
