"""The step record: what every adapter turns its env's step output into.

One record holds one step of a batch of envs, already as tensors on the storage
device, or for a CPU storage as host arrays it copies. Storage writes records; it
never sees an env.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from torchbuf.data.types import Obs


@dataclass
class StepRecord:
    """One step of ``n`` envs.

    Attributes:
        obs: The observations the step returned, batch size ``(n,)``. Where an
            episode ended these are reset observations (auto-reset in the same
            step), unless ``final_in_obs``.
        acts: The actions taken, shape ``(n,) + action_shape`` (a TensorDict for
            dict action spaces).
        rews: Rewards, shape ``(n,)``.
        terminated: Termination flags, shape ``(n,)``, bool.
        truncated: Truncation flags, shape ``(n,)``, bool.
        final_obs: The true last observations, read where ``terminated | truncated``
            (other rows are ignored), or ``None`` when no episode ended. Batch ``(n,)``,
            or only the ended rows when ``final_rows`` is given.
        final_rows: Host positions (in this step) of the rows ``final_obs`` holds,
            in order, when it holds only the ended rows; else ``None``.
        final_in_obs: ``obs`` holds the final observations of the ended episodes;
            their reset observations come later, through ``SlotStorage.restart``
            (gymnasium's NEXT_STEP and DISABLED autoreset modes).
        active: Rows that took a real step, or ``None`` for all. Inactive rows (a
            NEXT_STEP reset step) record nothing.
        active_host: ``active`` as a host array, where the host has it.
        dones_host: ``terminated | truncated`` as a host array when the env gave it
            on the host (lets the storage bound its cursors exactly), else ``None``.
            The vector wrapper gives it for CPU tensors too where the storage
            takes its host route (their memory is the host's: no sync).
        env_ids: Host indices of the envs that stepped (``n`` of them), or ``None``
            when every env stepped.
    """

    obs: Obs | np.ndarray
    acts: Obs | np.ndarray
    rews: torch.Tensor | np.ndarray
    terminated: torch.Tensor | np.ndarray
    truncated: torch.Tensor | np.ndarray
    final_obs: Obs | np.ndarray | None = None
    final_rows: np.ndarray | None = None
    final_in_obs: bool = False
    active: torch.Tensor | None = None
    active_host: np.ndarray | None = None
    dones_host: np.ndarray | None = None
    env_ids: np.ndarray | None = None
