"""SB3 ``VecEnv`` convention: ``dones``, ``terminal_observation``, ``TimeLimit.truncated``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from torchbuf.buffer.record import StepRecord
from torchbuf.data.convert import as_tensor, cast_like, obs_to_tensors, stack_obs
from torchbuf.data.spaces import check_batch, check_one, fit_one, fit_space


def sb3_record(
    acts: Any,
    obs: Any,
    rews: np.ndarray,
    dones: np.ndarray,
    infos: Sequence[dict[str, Any]],
    device: torch.device,
    obs_space: gym.Space | None = None,
    act_space: gym.Space | None = None,
) -> StepRecord:
    """Turns one ``VecEnv.step_wait()`` result into a step record.

    Only the envs whose episode ended are visited on the host (to read their
    ``terminal_observation`` and ``TimeLimit.truncated``); the rest is batched.

    Args:
        acts: The actions passed to ``step_async``.
        obs: Observations returned (reset observations where ``dones``).
        rews: Rewards.
        dones: Episode-end flags.
        infos: One info dict per env.
        device: Storage device.
        obs_space: Where given, observations (final ones included) are stored in its
            dtype and checked against it, naming the env.
        act_space: Where given, actions are stored in its dtype.

    Returns:
        The record, on ``device``.

    Raises:
        KeyError: an env ended its episode without ``terminal_observation``.
        ValueError: a value does not fit its space, or rewards are not one per env.
    """
    dones = np.asarray(dones, dtype=bool)
    n = len(dones)
    if np.shape(rews) != (n,):
        raise ValueError(f"rewards: expected shape ({n},) (one per env), got {np.shape(rews)}")
    if obs_space is not None:
        obs = fit_space(obs_space, obs, "obs")
    if act_space is not None:
        acts = fit_space(act_space, acts, "actions")
    obs_t = obs_to_tensors(obs, n, device)
    ended = np.flatnonzero(dones)
    truncated = np.zeros(n, dtype=bool)
    final = None
    if ended.size:
        for env in ended.tolist():
            if "terminal_observation" not in infos[env]:
                raise KeyError(f"env {env}: episode ended without info['terminal_observation']")
            truncated[env] = bool(infos[env].get("TimeLimit.truncated", False))
        ends = [infos[env]["terminal_observation"] for env in ended.tolist()]
        if obs_space is None:
            terminal = stack_obs(ends, device)
        else:
            terminal = obs_to_tensors(_final_batch(obs_space, ends, ended), len(ends), device)
        final = cast_like(terminal, obs_t)
    return StepRecord(
        obs=obs_t,
        acts=as_tensor(acts, device),
        rews=_float(as_tensor(rews, device)),
        terminated=as_tensor(dones & ~truncated if ended.size else dones, device),
        truncated=as_tensor(truncated, device),
        final_obs=final,
        final_rows=ended if final is not None else None,
        dones_host=dones,
    )


_FINAL = "info['terminal_observation']"


def _final_batch(space: gym.Space, ends: list[Any], ended: np.ndarray) -> Any:
    """The ended envs' terminal observations as one host batch in the space's dtype.

    Checked and cast as one batch; where that fails, env by env, so that the error
    names the env whose observation does not fit.

    Raises:
        ValueError: an env's terminal observation does not fit the space.
    """
    try:
        batch = _stack_host(ends)
        check_batch(space, batch, len(ends), _FINAL)
        return fit_space(space, batch, _FINAL)
    except (ValueError, TypeError, KeyError):
        pass
    ends = list(ends)
    for i, env in enumerate(ended.tolist()):  # raises naming the env
        check_one(space, ends[i], f"{_FINAL} of env {env}")
        ends[i] = fit_one(space, ends[i], _FINAL, env)
    return _stack_host(ends)


def _stack_host(items: list[Any]) -> Any:
    """Stacks single host observations (arrays of one dtype, or mappings with the same keys) into a batch."""
    first = items[0]
    if isinstance(first, dict):
        keys = set(first)
        if any(not isinstance(it, dict) or set(it) != keys for it in items):
            raise ValueError("the observations' keys differ")
        return {k: _stack_host([it[k] for it in items]) for k in first}
    arrays = [np.asarray(it) for it in items]
    if any(a.dtype != arrays[0].dtype for a in arrays):
        raise ValueError("the observations' dtypes differ")  # each is checked on its own
    return np.stack(arrays)


def _float(rews: torch.Tensor) -> torch.Tensor:
    """Integer rewards as float64 (exact), so a later float reward is never truncated."""
    return rews if rews.is_floating_point() else rews.to(torch.float64)
