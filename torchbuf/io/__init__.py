"""Saving and loading batches, trajectories and buffer checkpoints.

Tensors are stored with tensordict's memory-mapped format (one raw file per field)
and load lazily, zero-copy, on the CPU; infos are Python objects and are stored with
:mod:`pickle` in a side file. Every save is atomic and checked on load: see
:mod:`torchbuf.io.savedir` and ``docs/io.md`` for the layout on disk.

Loading unpickles the infos file: load only saves you trust.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchbuf.buffer.popapi import PopAPI
from torchbuf.data.types import Trajectory, TrajectoryWithRew, Transitions, TransitionsWithRew
from torchbuf.io import savedir
from torchbuf.io.savedir import CorruptSaveError

__all__ = ["CorruptSaveError", "load", "load_checkpoint", "save", "save_checkpoint"]

_TRANSITIONS = {"Transitions": Transitions, "TransitionsWithRew": TransitionsWithRew}
_TRAJECTORIES = {"Trajectory": Trajectory, "TrajectoryWithRew": TrajectoryWithRew}
_TRANSITION_FIELDS = ("obs", "acts", "next_obs", "dones", "terminated", "truncated")
_STEP_FIELDS = ("acts", "terminated", "truncated")

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------- batches
def save(path: PathLike, batch_or_trajs: Transitions | Sequence[Trajectory]) -> None:
    """Saves transitions or trajectories to the directory ``path``, atomically.

    Tensors keep their dtypes and structure (dict observations as nested
    TensorDicts); ``terminated``, ``truncated``, ``terminal`` are kept. Trajectories
    are stored concatenated, one file per field, with an index of their lengths.
    ``infos`` are Python objects: they are stored with :mod:`pickle` in a side file
    (``infos=None`` stays ``None``). An existing save at ``path`` is replaced only
    once the new one is complete on disk.

    Args:
        path: The save directory (created; its parent must exist).
        batch_or_trajs: A :class:`Transitions` / :class:`TransitionsWithRew` batch,
            or a sequence of :class:`Trajectory` / :class:`TrajectoryWithRew` (all
            of one class), e.g. what ``pop_trajectories()`` returned.

    Raises:
        TypeError: ``batch_or_trajs`` is neither, or mixes trajectory classes.
        OSError: the parent directory is missing or not writable.

    Examples:
        >>> import tempfile, torch
        >>> from torchbuf import TransitionsWithRew
        >>> n = 3
        >>> flags = torch.zeros(n, dtype=torch.bool)
        >>> batch = TransitionsWithRew(
        ...     obs=torch.zeros(n, 2), acts=torch.zeros(n, dtype=torch.long), next_obs=torch.ones(n, 2),
        ...     dones=flags, terminated=flags, truncated=flags, rews=torch.ones(n), batch_size=[n],
        ... )
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save(f"{tmp}/batch", batch)
        ...     load(f"{tmp}/batch").rews.tolist()
        [1.0, 1.0, 1.0]
    """
    if isinstance(batch_or_trajs, Transitions):
        data, infos, meta = _pack_transitions(batch_or_trajs)
        savedir.write(path, "transitions", data, infos, meta)
    elif isinstance(batch_or_trajs, Sequence):
        data, infos, meta = _pack_trajectories(batch_or_trajs)
        savedir.write(path, "trajectories", data, infos, meta)
    else:
        raise TypeError(
            f"save expects Transitions or a sequence of Trajectory, got {type(batch_or_trajs).__name__}"
        )


def load(
    path: PathLike, device: torch.device | str = "cpu", *, verify: bool = True
) -> Transitions | list[Trajectory]:
    """Loads what :func:`save` wrote, after checking it against its manifest.

    On the CPU the tensors are memory-mapped: nothing is read until used, and
    nothing is copied. Another ``device`` gets a copy there.

    Args:
        path: The save directory.
        device: Where the tensors go.
        verify: Check each file's sha256 (reads every file once); sizes, shapes
            and dtypes are checked either way.

    Returns:
        The batch, of the class that was saved, or a list of trajectories.

    Raises:
        FileNotFoundError: nothing saved at ``path``.
        CorruptSaveError: a file is missing, truncated or corrupt, or a field's
            shape or dtype is wrong; the message names the file and field.
    """
    data, infos, body = savedir.read(path, verify=verify)
    if body["kind"] not in ("transitions", "trajectories"):
        raise CorruptSaveError(f"{path}: holds a {body['kind']!r}, not transitions or trajectories")
    data = _to_device(data, torch.device(device))
    if body["kind"] == "transitions":
        return _unpack_transitions(data, infos, body["meta"])
    return _unpack_trajectories(data, infos, body["meta"])


def _pack_transitions(batch: Transitions) -> tuple[TensorDict, Any, dict[str, Any]]:
    names = [*_TRANSITION_FIELDS, *(["rews"] if isinstance(batch, TransitionsWithRew) else [])]
    data = TensorDict({name: getattr(batch, name) for name in names}, batch_size=batch.batch_size)
    infos = None if batch.infos is None else np.asarray(batch.infos, dtype=object)
    return data, infos, {"class": type(batch).__name__}


def _unpack_transitions(data: TensorDictBase, infos: Any, meta: dict[str, Any]) -> Transitions:
    cls = _TRANSITIONS[meta["class"]]
    fields = {str(k): data[k] for k in data.keys()}  # noqa: SIM118
    return cls(**fields, infos=infos, batch_size=data.batch_size)


def _pack_trajectories(trajs: Sequence[Trajectory]) -> tuple[TensorDict, Any, dict[str, Any]]:
    classes = {type(t).__name__ for t in trajs}
    if len(classes) > 1 or not all(isinstance(t, Trajectory) for t in trajs):
        raise TypeError(f"save expects trajectories of one class, got {sorted(classes)}")
    lengths = torch.tensor([len(t) for t in trajs], dtype=torch.int64)
    index = TensorDict(
        {"lengths": lengths, "terminal": torch.tensor([bool(t.terminal) for t in trajs], dtype=torch.bool)},
        batch_size=[len(trajs)],
    )
    data = TensorDict({"index": index}, batch_size=[])
    if trajs:
        names = [*_STEP_FIELDS, *(["rews"] if isinstance(trajs[0], TrajectoryWithRew) else [])]
        data["obs"] = torch.cat([t.obs for t in trajs])
        steps = {name: torch.cat([getattr(t, name) for t in trajs]) for name in names}
        data["steps"] = TensorDict(steps, batch_size=[int(lengths.sum())])
    infos = [None if t.infos is None else np.asarray(t.infos, dtype=object) for t in trajs]
    return data, infos, {"class": classes.pop() if classes else None}


def _unpack_trajectories(data: TensorDictBase, infos: list[Any], meta: dict[str, Any]) -> list[Trajectory]:
    if meta["class"] is None:
        return []
    cls = _TRAJECTORIES[meta["class"]]
    lengths = data["index", "lengths"].tolist()
    terminal = data["index", "terminal"].tolist()
    # Plain tensor views of the mapped files: slicing a MemoryMappedTensor costs ~60 µs.
    obs, steps = _plain(data["obs"]), _plain(data["steps"])
    _check_index(lengths, obs, steps, infos)
    columns = {str(k): steps[k] for k in steps.keys()}  # noqa: SIM118
    out: list[Trajectory] = []
    a0 = 0
    for i, n in enumerate(lengths):
        fields = {"obs": obs[a0 + i : a0 + i + n + 1], **{k: v[a0 : a0 + n] for k, v in columns.items()}}
        extra = {"infos": infos[i], "terminal": terminal[i]}
        out.append(cls.from_tensordict(TensorDict(fields, batch_size=[]), non_tensordict=extra))
        a0 += n
    return out


def _plain(value: Any) -> Any:
    """``value`` (a tensor or TensorDict) with plain ``torch.Tensor`` views as leaves."""
    if isinstance(value, TensorDictBase):
        return value.apply(lambda t: t.as_subclass(torch.Tensor))
    return value.as_subclass(torch.Tensor)


def _check_index(lengths: list[int], obs: Any, steps: TensorDictBase, infos: list[Any]) -> None:
    """Raises if the trajectory index does not add up to the stored rows."""
    n_obs = int(obs.shape[0]) if isinstance(obs, torch.Tensor) else int(obs.batch_size[0])
    if any(n < 0 for n in lengths) or sum(lengths) != int(steps.batch_size[0]):
        raise CorruptSaveError(
            f"data/index/lengths (field 'index/lengths'): add up to {sum(lengths)}, "
            f"data/steps holds {steps.batch_size[0]} rows"
        )
    if n_obs != sum(lengths) + len(lengths) or len(infos) != len(lengths):
        raise CorruptSaveError(
            f"data/index/lengths (field 'index/lengths'): {len(lengths)} trajectories need "
            f"{sum(lengths) + len(lengths)} observations and "
            f"as many infos entries; the save holds {n_obs} and {len(infos)}"
        )


def _to_device(data: TensorDictBase, device: torch.device) -> TensorDictBase:
    return data if device.type == "cpu" else data.to(device)


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(path: PathLike, wrapper: PopAPI) -> None:
    """Saves a buffering wrapper's unpopped state, atomically.

    Saved: what ``wrapper.state_dict()`` returns: the storage slots that hold
    unpopped data, the per-env cursors, episode step counters and awaiting flags,
    the host counts, ``n_transitions``, the infos of the unpopped transitions
    (pickled), and the wrapper's own step state (a ``VectorBufferingWrapper``'s
    pending NEXT_STEP resets and envpool actions).

    The env itself is not saved: see :func:`load_checkpoint`.

    Args:
        path: The checkpoint directory (created or replaced; its parent must exist).
        wrapper: A :class:`~torchbuf.BufferingWrapper` or
            :class:`~torchbuf.VectorBufferingWrapper` (or a subclass).

    Raises:
        TypeError: ``wrapper`` is neither.
        RuntimeError: a ``step_async()`` is pending (checkpoint between steps).
        OSError: the parent directory is missing or not writable.
    """
    state = _wrapper(wrapper).state_dict()
    data, infos, meta = _pack_checkpoint(state)
    savedir.write(path, "checkpoint", data, infos, meta)


def load_checkpoint(path: PathLike, wrapper: PopAPI, *, verify: bool = True) -> None:
    """Restores a :func:`save_checkpoint` into ``wrapper``, replacing its recorded data.

    ``wrapper`` wraps a fresh env of the same kind (same number of envs, spaces and
    autoreset mode). The env's own state cannot be checkpointed: **restore it
    yourself** (reseed it and replay the recorded actions, or set its state) so that
    its current observations are those at the checkpoint. The buffer then continues
    from the recorded current observations: later steps and pops give what an
    uninterrupted run would have given. Restoring the env through the wrapper's
    ``reset()`` / ``step()`` is fine (what they record is replaced); through the
    wrapped env directly is fine too.

    The storage goes to ``wrapper.device`` (a ``VectorBufferingWrapper`` created
    without a device takes the checkpoint's).

    Args:
        path: The checkpoint directory.
        wrapper: A buffering wrapper of the same kind as the one saved.
        verify: Check each file's sha256 (see :func:`load`).

    Raises:
        TypeError: ``wrapper`` is not a buffering wrapper.
        FileNotFoundError: no checkpoint at ``path``.
        CorruptSaveError: a file is missing, truncated or corrupt.
        ValueError: the checkpoint does not fit ``wrapper`` (kind, number of envs,
            autoreset mode, or infos kept by the checkpoint but not by the wrapper).
    """
    _wrapper(wrapper)
    data, infos, body = savedir.read(path, kind="checkpoint", verify=verify)
    _wrapper(wrapper).load_state_dict(_unpack_checkpoint(data, infos, body["meta"]))


def _wrapper(wrapper: Any) -> PopAPI:
    if not isinstance(wrapper, PopAPI):
        raise TypeError(
            f"expected a BufferingWrapper or VectorBufferingWrapper, got {type(wrapper).__name__}"
        )
    return wrapper


# On disk (format version 1): tensors under data/ (``cursors``, ``storage``, and the
# vector wrapper's ``wrapper/{ended,sent}``), host values in the manifest's metadata.
_VECTOR_HOST = ("mode", "started", "tensor_env", "ended_host")
_VECTOR_TENSORS = ("ended", "sent")
_CURSORS = ("cur", "ep_t", "awaiting")


def _pack_checkpoint(state: dict[str, Any]) -> tuple[TensorDict, Any, dict[str, Any]]:
    """Splits a wrapper's ``state_dict()`` into tensors, pickled infos and JSON metadata."""
    recorder, step = state["recorder"], state["step"]
    storage = recorder["storage"]
    cursors = TensorDict({k: storage[k] for k in _CURSORS}, batch_size=[storage["n_envs"]])
    data = TensorDict({"cursors": cursors}, batch_size=[])
    if storage["data"] is not None:
        data["storage"] = storage["data"]
    host: dict[str, Any] = {}
    if state["kind"] == "vector":
        host = {k: step[k] for k in _VECTOR_HOST}
        host["ended_host"] = np.asarray(step["ended_host"]).tolist()
        tensors = {k: step[k] for k in _VECTOR_TENSORS if step[k] is not None}
        data["wrapper"] = TensorDict(tensors, batch_size=[state["n_envs"]])
    meta = {
        "wrapper": state["kind"],
        **host,
        "device": state["device"],
        "n_envs": storage["n_envs"],
        "capacity": storage["capacity"],
        "counts_exact": storage["counts_exact"],
        "n_unpopped": np.asarray(storage["n_unpopped"]).tolist(),
        "bound": np.asarray(storage["bound"]).tolist(),
        "n_transitions": recorder["n_transitions"],
        "keep_infos": recorder["keep_infos"],
    }
    return data, recorder["infos"], meta


def _unpack_checkpoint(data: TensorDictBase, infos: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The ``state_dict()`` that :func:`_pack_checkpoint` split."""
    storage = {k: data["cursors", k] for k in _CURSORS}
    storage.update(
        n_envs=meta["n_envs"],
        capacity=meta["capacity"],
        data=data.get("storage", None),
        counts_exact=meta["counts_exact"],
        n_unpopped=meta["n_unpopped"],
        bound=meta["bound"],
    )
    step: dict[str, Any] = {}
    if meta["wrapper"] == "vector":
        tensors = data.get("wrapper", TensorDict({}, batch_size=[]))
        step = {k: meta[k] for k in _VECTOR_HOST}
        step.update({k: tensors.get(k, None) for k in _VECTOR_TENSORS})
    recorder = {
        "storage": storage,
        "n_transitions": meta["n_transitions"],
        "keep_infos": meta["keep_infos"],
        "infos": infos,
    }
    return {
        "kind": meta["wrapper"],
        "n_envs": meta["n_envs"],
        "device": meta["device"],
        "recorder": recorder,
        "step": step,
    }
