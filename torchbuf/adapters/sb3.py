"""SB3 ``VecEnv`` convention: ``dones``, ``terminal_observation``, ``TimeLimit.truncated``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from torchbuf.buffer.record import StepRecord
from torchbuf.data.convert import to_storage
from torchbuf.data.spaces import BatchFit, check_one, fit_one

FINAL = "info['terminal_observation']"
"""The field of the terminal observations, as errors name it."""


def sb3_record(
    acts: Any,
    obs: Any,
    rews: np.ndarray,
    dones: np.ndarray,
    infos: Sequence[dict[str, Any]],
    device: torch.device,
    fit_final: BatchFit,
) -> StepRecord:
    """Turns one ``VecEnv.step_wait()`` result into a step record.

    Only the envs whose episode ended are visited on the host (to read their
    ``terminal_observation`` and ``TimeLimit.truncated``); the rest is batched. For a
    CPU storage the record keeps the env's host arrays (the storage copies them), so
    a step makes no tensor.

    Args:
        acts: The actions passed to ``step_async``, checked and in the action
            space's dtype (:class:`~torchbuf.data.spaces.BatchFit`).
        obs: Observations returned (reset observations where ``dones``), checked
            and in the observation space's dtype.
        rews: Rewards.
        dones: Episode-end flags.
        infos: One info dict per env.
        device: Storage device.
        fit_final: Checks the final observations against the observation space
            and casts them to its dtype (``BatchFit(obs_space, None, FINAL)``).

    Returns:
        The record, for a storage on ``device``.

    Raises:
        KeyError: an env ended its episode without ``terminal_observation``.
        ValueError: a final observation does not fit its space, or rewards are not one per env.
    """
    dones = np.asarray(dones, dtype=bool)
    n = len(dones)
    if getattr(rews, "shape", None) != (n,) and np.shape(rews) != (n,):
        raise ValueError(f"rewards: expected shape ({n},) (one per env), got {np.shape(rews)}")
    ended = dones.nonzero()[0]
    truncated, final = np.zeros(n, dtype=bool), None
    if ended.size:
        ends = []
        for env in ended.tolist():
            info = infos[env]
            if "terminal_observation" not in info:
                raise KeyError(f"env {env}: episode ended without info['terminal_observation']")
            ends.append(info["terminal_observation"])
            truncated[env] = bool(info.get("TimeLimit.truncated", False))
        final = to_storage(_final_batch(fit_final, ends, ended), len(ends), device)
    return StepRecord(
        obs=to_storage(obs, n, device),
        acts=to_storage(acts, n, device),
        rews=to_storage(_float(np.asarray(rews)), n, device),
        terminated=to_storage(dones & ~truncated if ended.size else dones, n, device),
        truncated=to_storage(truncated, n, device),
        final_obs=final,
        final_rows=ended if final is not None else None,
        dones_host=dones,
    )


def _final_batch(fit: BatchFit, ends: list[Any], ended: np.ndarray) -> Any:
    """The ended envs' terminal observations as one host batch in the space's dtype.

    Checked and cast as one batch; where that fails, env by env, so that the error
    names the env whose observation does not fit.

    Raises:
        ValueError: an env's terminal observation does not fit the space.
    """
    try:
        return fit(_stack_host(ends))
    except (ValueError, TypeError, KeyError):
        pass
    space, ends = fit.space, list(ends)
    for i, env in enumerate(ended.tolist()):  # raises naming the env
        check_one(space, ends[i], f"{FINAL} of env {env}")
        ends[i] = fit_one(space, ends[i], FINAL, env)
    return _stack_host(ends)


def _stack_host(items: list[Any]) -> Any:
    """Stacks single host observations (arrays of one dtype, or mappings with the same keys) into a batch."""
    first = items[0]
    if isinstance(first, dict):
        keys = set(first)
        if any(not isinstance(it, dict) or set(it) != keys for it in items):
            raise ValueError("the observations' keys differ")
        return {k: _stack_host([it[k] for it in items]) for k in first}
    arrays = [it if type(it) is np.ndarray else np.asarray(it) for it in items]
    if len({a.dtype for a in arrays}) > 1:
        raise ValueError("the observations' dtypes differ")  # each is checked on its own
    if len({a.shape for a in arrays}) > 1:
        raise ValueError("the observations' shapes differ")
    return np.array(arrays)  # stacks, as np.stack does, in a third of its time


def _float(rews: np.ndarray) -> np.ndarray:
    """Integer rewards as float64 (exact), so a later float reward is never truncated."""
    return rews if rews.dtype.kind == "f" else rews.astype(np.float64)
