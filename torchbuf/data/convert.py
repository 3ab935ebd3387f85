"""Host arrays to device tensors, and back, for observations of any space."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

Obs = torch.Tensor | TensorDictBase
"""A batch of observations: a tensor, or a (nested) TensorDict for dict spaces."""


def object_array(items: Sequence[Any]) -> np.ndarray:
    """A 1-D numpy object array holding ``items`` as they are (dicts stay dicts)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def as_tensor(x: Any, device: torch.device) -> torch.Tensor:
    """Moves a numpy array or tensor to ``device`` (numpy is copied once, if at all)."""
    if isinstance(x, torch.Tensor):
        return x.to(device)
    arr = np.asarray(x)
    if arr.flags.writeable and arr.dtype.kind in "biuf":
        t = torch.from_numpy(arr)  # a view, cheaper than as_tensor; the storage copies it
        return t if device.type == "cpu" else t.to(device)
    return torch.as_tensor(arr, device=device)


def obs_to_tensors(obs: Any, batch: int, device: torch.device) -> Obs:
    """Converts a batch of observations (array, tensor or nested mapping).

    Args:
        obs: The batch, leading dimension ``batch``.
        batch: The batch size.
        device: Target device.

    Returns:
        A tensor, or a TensorDict (nested for nested mappings) of batch ``(batch,)``.
    """
    if isinstance(obs, TensorDictBase):
        return obs.to(device)
    if isinstance(obs, Mapping):
        return TensorDict(
            {k: obs_to_tensors(v, batch, device) for k, v in obs.items()},
            batch_size=[batch],
            device=device,
        )
    return as_tensor(obs, device)


def to_storage(x: Any, batch: int, device: torch.device) -> Obs | np.ndarray:
    """A step's values for a storage on ``device``.

    For a CPU storage a numeric host array stays as it is (the storage copies it into
    its own memory, so a step makes no tensor); anything else becomes tensors there,
    as :func:`obs_to_tensors` makes them.

    Args:
        x: A batch (array, tensor or nested mapping), leading dimension ``batch``.
        batch: The batch size.
        device: The storage device.

    Returns:
        ``x`` itself, or a tensor or TensorDict on ``device``.
    """
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf" and device.type == "cpu":
        return x
    return obs_to_tensors(x, batch, device)


def stack_obs(items: list[Any], device: torch.device) -> Obs:
    """Stacks single observations (arrays or nested mappings) into a batch."""
    first = items[0]
    if isinstance(first, Mapping):
        return TensorDict(
            {k: stack_obs([it[k] for it in items], device) for k in first},
            batch_size=[len(items)],
            device=device,
        )
    if isinstance(first, torch.Tensor):
        return torch.stack([it.to(device) for it in items])
    return torch.as_tensor(np.stack([np.asarray(it) for it in items]), device=device)


def obs_to_numpy(obs: Obs) -> np.ndarray | dict[str, Any]:
    """Converts a tensor or TensorDict of observations to numpy (dicts stay dicts)."""
    if isinstance(obs, torch.Tensor):
        return obs.detach().cpu().numpy()
    return {k: obs_to_numpy(v) for k, v in obs.items()}  # type: ignore[arg-type]


def cast_like(value: Obs, like: Obs) -> Obs:
    """Casts ``value`` to the dtypes of ``like`` (leaf by leaf for TensorDicts).

    An env may return a final observation of another dtype than its space's (a
    Python int for a float ``Box``); vector envs cast every other observation into
    their buffers, so the final one is cast the same way.

    Raises:
        ValueError: one is a tensor and the other a TensorDict.
    """
    if isinstance(value, torch.Tensor) and isinstance(like, torch.Tensor):
        return value.to(like.dtype)
    if isinstance(value, torch.Tensor) or isinstance(like, torch.Tensor):
        raise ValueError("final observation and observation differ in structure")
    out = value.apply(lambda v, t: v.to(t.dtype), like)
    assert out is not None
    return out
