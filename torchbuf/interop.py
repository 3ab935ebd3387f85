"""Conversion between torchbuf batches and ``imitation.data.types`` (numpy, host).

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
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchbuf.infolog import object_array
from torchbuf.types import Obs, Trajectory, TrajectoryWithRew, Transitions, TransitionsWithRew

TRUNCATED_KEY = "TimeLimit.truncated"
"""The info key that marks a done step as a truncation (SB3's convention)."""

TorchbufBatch = Trajectory | Transitions


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


# --------------------------------------------------------------------- outwards
def trajectory_to_imitation(traj: Trajectory, separator: str = ".") -> Any:
    """Converts a trajectory to imitation's (numpy, on the host).

    Args:
        traj: The trajectory.
        separator: Joins nested dict observation keys (imitation's ``DictObs`` is flat).

    Returns:
        ``imitation.data.types.TrajectoryWithRew`` when ``traj`` has rewards, else
        ``imitation.data.types.Trajectory``; ``infos`` an object array or ``None``.
    """
    types = imitation_types()
    fields = {
        "obs": obs_to_imitation(traj.obs, separator),
        "acts": _to_numpy(traj.acts),
        "infos": None if traj.infos is None else object_array(list(traj.infos)),
        "terminal": bool(traj.terminal),
    }
    if isinstance(traj, TrajectoryWithRew):
        return types.TrajectoryWithRew(rews=_to_numpy(traj.rews), **fields)
    return types.Trajectory(**fields)


def transitions_to_imitation(trans: Transitions, separator: str = ".") -> Any:
    """Converts a batch of transitions to imitation's (numpy, on the host).

    Args:
        trans: The batch, batch size ``(n,)``.
        separator: Joins nested dict observation keys (imitation's ``DictObs`` is flat).

    Returns:
        ``imitation.data.types.TransitionsWithRew`` when ``trans`` has rewards, else
        ``imitation.data.types.Transitions``. imitation requires ``infos``: the kept
        ones, or empty dicts when none were kept.
    """
    types = imitation_types()
    n = int(trans.batch_size[0])
    infos = [{} for _ in range(n)] if trans.infos is None else list(trans.infos)
    fields = {
        "obs": obs_to_imitation(trans.obs, separator),
        "acts": _to_numpy(trans.acts),
        "next_obs": obs_to_imitation(trans.next_obs, separator),
        "dones": _to_numpy(trans.dones),
        "infos": object_array(infos),
    }
    if isinstance(trans, TransitionsWithRew):
        return types.TransitionsWithRew(rews=_to_numpy(trans.rews), **fields)
    return types.Transitions(**fields)


def obs_to_imitation(obs: Obs, separator: str = ".") -> Any:
    """Converts observations to a numpy array, or a ``DictObs`` for TensorDicts.

    Args:
        obs: A tensor, or a (nested) TensorDict of tensors.
        separator: Joins nested keys.

    Returns:
        A numpy array, or an ``imitation.data.types.DictObs`` of flat keys.
    """
    if isinstance(obs, torch.Tensor):
        return _to_numpy(obs)
    flat = obs.flatten_keys(separator)
    arrays = {str(key): _to_numpy(value) for key, value in flat.items()}
    return imitation_types().DictObs(arrays)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def from_imitation(
    obj: Any, device: torch.device | str = "cpu", *, separator: str | None = "."
) -> TorchbufBatch | list[Trajectory]:
    """Converts imitation's trajectories or transitions to torchbuf batches.

    Args:
        obj: An ``imitation.data.types`` ``Trajectory``, ``TrajectoryWithRew``,
            ``Transitions`` or ``TransitionsWithRew``, or a sequence of trajectories.
        device: Where the tensors go.
        separator: Splits dict observation keys into nested TensorDicts (undoing
            the joining of the way out); ``None`` keeps the keys flat.

    Returns:
        The matching torchbuf batch (a list of them for a sequence). ``terminated``
        and ``truncated`` come from imitation's ``dones`` / ``terminal``: a done
        step is truncated where its info has ``"TimeLimit.truncated"``, else
        terminated.

    Raises:
        TypeError: ``obj`` is none of the above.
    """
    types = imitation_types()
    device = torch.device(device)
    if isinstance(obj, types.Trajectory):
        return trajectory_from_imitation(obj, device, separator=separator)
    if isinstance(obj, types.Transitions):
        return transitions_from_imitation(obj, device, separator=separator)
    if isinstance(obj, Sequence) and all(isinstance(t, types.Trajectory) for t in obj):
        return [trajectory_from_imitation(t, device, separator=separator) for t in obj]
    raise TypeError(
        "from_imitation expects an imitation Trajectory, TrajectoryWithRew, Transitions, "
        f"TransitionsWithRew or a sequence of trajectories, got {type(obj).__name__}"
    )


def trajectory_from_imitation(
    traj: Any, device: torch.device | str = "cpu", *, separator: str | None = "."
) -> Trajectory:
    """Converts an imitation ``Trajectory`` / ``TrajectoryWithRew``.

    Args:
        traj: The trajectory.
        device: Where the tensors go.
        separator: Splits dict observation keys into nested TensorDicts, or ``None``.

    Returns:
        A :class:`TrajectoryWithRew` when ``traj`` has rewards, else a :class:`Trajectory`.
        Only the last step can be done: terminated or truncated when ``terminal``.
    """
    device = torch.device(device)
    n = len(traj.acts)
    infos = None if traj.infos is None else object_array(list(traj.infos))
    dones = np.zeros(n, dtype=bool)
    dones[-1:] = bool(traj.terminal)
    terminated, truncated = _split_dones(dones, infos)
    fields: dict[str, Any] = {
        "obs": obs_from_imitation(traj.obs, n + 1, device, separator),
        "acts": _to_tensor(traj.acts, device),
        "terminated": _to_tensor(terminated, device),
        "truncated": _to_tensor(truncated, device),
        "infos": infos,
        "terminal": bool(traj.terminal),
        "batch_size": [],
        "device": device,
    }
    if getattr(traj, "rews", None) is not None:
        return TrajectoryWithRew(rews=_to_tensor(traj.rews, device), **fields)
    return Trajectory(**fields)


def transitions_from_imitation(
    trans: Any, device: torch.device | str = "cpu", *, separator: str | None = "."
) -> Transitions:
    """Converts imitation ``Transitions`` / ``TransitionsWithRew``.

    Args:
        trans: The batch.
        device: Where the tensors go.
        separator: Splits dict observation keys into nested TensorDicts, or ``None``.

    Returns:
        A :class:`TransitionsWithRew` when ``trans`` has rewards, else a
        :class:`Transitions`; ``infos`` is a copy of imitation's (an object array).
    """
    device = torch.device(device)
    n = len(trans.acts)
    infos = object_array(list(trans.infos))
    dones = np.asarray(trans.dones, dtype=bool)
    terminated, truncated = _split_dones(dones, infos)
    fields: dict[str, Any] = {
        "obs": obs_from_imitation(trans.obs, n, device, separator),
        "acts": _to_tensor(trans.acts, device),
        "next_obs": obs_from_imitation(trans.next_obs, n, device, separator),
        "dones": _to_tensor(dones, device),
        "terminated": _to_tensor(terminated, device),
        "truncated": _to_tensor(truncated, device),
        "infos": infos,
        "batch_size": [n],
        "device": device,
    }
    if getattr(trans, "rews", None) is not None:
        return TransitionsWithRew(rews=_to_tensor(trans.rews, device), **fields)
    return Transitions(**fields)


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
        return _to_tensor(obs, device)
    items = obs.items() if isinstance(obs, Mapping) else obs.unwrap().items()
    td: TensorDictBase = TensorDict(
        {key: _to_tensor(value, device) for key, value in items}, batch_size=[n], device=device
    )
    return td if separator is None else td.unflatten_keys(separator)


def _to_tensor(array: Any, device: torch.device) -> torch.Tensor:
    """A copy of ``array`` as a tensor of the same dtype on ``device``."""
    return torch.from_numpy(np.array(array, copy=True)).to(device)


def _split_dones(dones: np.ndarray, infos: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``dones`` into ``(terminated, truncated)`` by the infos' truncation flag."""
    truncated = np.zeros_like(dones)
    if infos is not None:
        for i in np.flatnonzero(dones):
            info = infos[i]
            truncated[i] = isinstance(info, Mapping) and bool(info.get(TRUNCATED_KEY, False))
    return dones & ~truncated, truncated
