"""The step record: what every adapter turns its env's step output into.

One record holds one step of a batch of envs, already as tensors on the storage
device. Storage writes records; it never sees an env.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from torchbuf.types import Obs


@dataclass
class StepRecord:
    """One step of ``n`` envs.

    Attributes:
        obs: The observations the step returned, batch size ``(n,)``. Under
            auto-reset these are reset observations for the envs whose episode ended.
        acts: The actions taken, shape ``(n,) + action_shape``.
        rews: Rewards, shape ``(n,)``.
        terminated: Termination flags, shape ``(n,)``, bool.
        truncated: Truncation flags, shape ``(n,)``, bool.
        final_obs: The true last observations, read where ``terminated | truncated``
            (other rows are ignored), or ``None`` when no episode ended. Batch ``(n,)``.
        dones_host: ``terminated | truncated`` as a host array when the env gave it
            on the host (lets the storage bound its cursors exactly), else ``None``.
        env_ids: Host indices of the envs that stepped (``n`` of them), or ``None``
            when every env stepped.
    """

    obs: Obs
    acts: torch.Tensor
    rews: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: Obs | None = None
    dones_host: np.ndarray | None = None
    env_ids: np.ndarray | None = None
