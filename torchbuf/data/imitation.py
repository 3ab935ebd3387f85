"""The pieces of conversion to and from ``imitation.data.types`` (numpy, host) below the batch types.

imitation is never a hard dependency: it is imported on first use, and a missing
install raises an :class:`ImportError` that says how to get it.

What maps to what:

- ``Trajectory`` / ``TrajectoryWithRew`` <-> imitation's classes of the same names.
- ``Transitions`` / ``TransitionsWithRew`` <-> imitation's classes of the same names.
- Dict observations (TensorDicts) <-> ``imitation.data.types.DictObs``. imitation's
  ``DictObs`` holds flat dicts only, so nested keys are joined with ``separator``
  (``"."`` by default) on the way out and split on it again on the way in; pass
  ``separator=None`` to :func:`from_imitation` to keep imitation's keys flat.
- Dtypes are kept as they are (uint8 images stay uint8, float32 rewards stay
  float32). On the way out, arrays of CPU tensors share memory with them, as
  ``Tensor.numpy()`` does; on the way in, arrays are copied (imitation marks its
  arrays read-only).

imitation has no ``terminated`` / ``truncated``, only ``dones`` (transitions) and
``terminal`` (trajectories). On the way out ``dones = terminated | truncated``. On
the way in a done step is ``truncated`` when its info dict says
``info["TimeLimit.truncated"]`` (as SB3's VecEnvs write it, and as imitation's
own buffers keep it), and ``terminated`` otherwise; steps that are not done are
neither. So the distinction survives a round trip exactly when the infos carry it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchbuf.data.convert import Obs

TRUNCATED_KEY = "TimeLimit.truncated"
"""The info key that marks a done step as a truncation (SB3's convention)."""


def imitation_types() -> ModuleType:
    """Imports ``imitation.data.types``.

    Returns:
        The module.

    Raises:
        ImportError: imitation is not installed.
    """
    return imitation_module("imitation.data.types")


def imitation_module(name: str) -> ModuleType:
    """Imports ``name``, a module of imitation or of its dependencies (e.g. ``datasets``).

    Args:
        name: The module's dotted name.

    Returns:
        The module.

    Raises:
        ImportError: it is not installed; the message names torchbuf's ``imitation`` extra.
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(
            f"{name} is needed to convert to or from imitation's types and files: "
            "pip install 'torchbuf[imitation]'"
        ) from err


def obs_to_imitation(obs: Obs, separator: str = ".") -> Any:
    """Converts observations to a numpy array, or a ``DictObs`` for TensorDicts.

    Args:
        obs: A tensor, or a (nested) TensorDict of tensors.
        separator: Joins nested keys.

    Returns:
        A numpy array, or an ``imitation.data.types.DictObs`` of flat keys.
    """
    if isinstance(obs, torch.Tensor):
        return to_numpy(obs)
    flat = obs.flatten_keys(separator)
    arrays = {str(key): to_numpy(value) for key, value in flat.items()}
    return imitation_types().DictObs(arrays)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The tensor on the host as a numpy array (shares memory with a CPU tensor)."""
    return tensor.detach().cpu().numpy()


def obs_from_imitation(obs: Any, n: int, device: torch.device, separator: str | None = ".") -> Obs:
    """Converts a numpy array or ``DictObs`` (or a plain dict of arrays) of ``n`` rows.

    Args:
        obs: The observations.
        n: Their number (the TensorDict's batch size).
        device: Where the tensors go.
        separator: Splits keys into nested TensorDicts, or ``None``.

    Returns:
        A tensor, or a TensorDict of batch size ``(n,)``.
    """
    if isinstance(obs, np.ndarray):
        return to_tensor(obs, device)
    items = obs.items() if isinstance(obs, Mapping) else obs.unwrap().items()
    td: TensorDictBase = TensorDict(
        {key: to_tensor(value, device) for key, value in items}, batch_size=[n], device=device
    )
    return td if separator is None else td.unflatten_keys(separator)


def to_tensor(array: Any, device: torch.device) -> torch.Tensor:
    """A copy of ``array`` as a tensor of the same dtype on ``device``."""
    return torch.from_numpy(np.array(array, copy=True)).to(device)


def split_dones(dones: np.ndarray, infos: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``dones`` into ``(terminated, truncated)`` by the infos' truncation flag."""
    truncated = np.zeros_like(dones)
    if infos is not None:
        for i in np.flatnonzero(dones):
            info = infos[i]
            truncated[i] = isinstance(info, Mapping) and bool(info.get(TRUNCATED_KEY, False))
    return dones & ~truncated, truncated
