"""SB3 ``VecEnv`` convention: ``dones``, ``terminal_observation``, ``TimeLimit.truncated``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from torchbuf.buffer.record import StepRecord
from torchbuf.data.convert import as_tensor, cast_like, obs_to_tensors, stack_obs


def sb3_record(
    acts: Any,
    obs: Any,
    rews: np.ndarray,
    dones: np.ndarray,
    infos: Sequence[dict[str, Any]],
    device: torch.device,
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

    Returns:
        The record, on ``device``.

    Raises:
        KeyError: an env ended its episode without ``terminal_observation``.
    """
    dones = np.asarray(dones, dtype=bool)
    n = len(dones)
    obs_t = obs_to_tensors(obs, n, device)
    ended = np.flatnonzero(dones)
    truncated = np.zeros(n, dtype=bool)
    final = None
    if ended.size:
        for env in ended.tolist():
            if "terminal_observation" not in infos[env]:
                raise KeyError(f"env {env}: episode ended without info['terminal_observation']")
            truncated[env] = bool(infos[env].get("TimeLimit.truncated", False))
        terminal = stack_obs([infos[env]["terminal_observation"] for env in ended.tolist()], device)
        final = cast_like(terminal, obs_t)
    return StepRecord(
        obs=obs_t,
        acts=as_tensor(acts, device),
        rews=as_tensor(rews, device),
        terminated=as_tensor(dones & ~truncated, device),
        truncated=as_tensor(truncated, device),
        final_obs=final,
        final_rows=ended if final is not None else None,
        dones_host=dones,
    )
