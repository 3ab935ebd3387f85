"""gymnasium spaces for envs that bring their own (mjlab) or none (rsl_rl ``VecEnv``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces


def to_gym_space(space: Any) -> spaces.Space:
    """A gymnasium space for a space that only looks like one.

    gymnasium spaces are returned as they are; anything with ``spaces`` (a mapping)
    becomes a ``Dict``, anything with ``shape`` and ``dtype`` a ``Box`` with its
    ``low`` / ``high`` (unbounded where absent). mjlab's ``mjlab.utils.spaces`` are
    read this way.

    Raises:
        TypeError: the space has neither ``spaces`` nor ``shape``.
    """
    if isinstance(space, spaces.Space):
        return space
    if isinstance(getattr(space, "spaces", None), Mapping):
        return spaces.Dict({k: to_gym_space(v) for k, v in space.spaces.items()})
    if hasattr(space, "shape"):
        dtype = np.dtype(str(getattr(space, "dtype", "float32")))
        low = np.broadcast_to(np.asarray(getattr(space, "low", -np.inf), dtype=np.float64), space.shape)
        high = np.broadcast_to(np.asarray(getattr(space, "high", np.inf), dtype=np.float64), space.shape)
        return spaces.Box(low.astype(dtype), high.astype(dtype), tuple(space.shape), dtype)
    raise TypeError(f"cannot read {type(space).__name__} as a gymnasium space (no 'spaces', no 'shape')")


def space_of(batch: Any) -> spaces.Space:
    """The unbounded single-env space of a batch of tensors (a tensor or a mapping of them)."""
    if isinstance(batch, Mapping):
        return spaces.Dict({k: space_of(v) for k, v in batch.items()})
    if not isinstance(batch, torch.Tensor) or batch.dim() == 0:
        raise TypeError(f"expected a batch of tensors with a leading env axis, got {type(batch).__name__}")
    dtype = np.dtype(str(batch.dtype).removeprefix("torch."))
    if dtype.kind == "f":
        return spaces.Box(-np.inf, np.inf, tuple(batch.shape[1:]), dtype)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    low, high = (info.min, info.max) if info is not None else (0, 1)
    return spaces.Box(low, high, tuple(batch.shape[1:]), dtype)
