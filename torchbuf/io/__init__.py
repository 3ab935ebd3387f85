"""Saving and loading batches, trajectories and buffer checkpoints.

Tensors are stored with tensordict's memory-mapped format (one raw file per field)
and load lazily, zero-copy, on the CPU; infos are stored as data (a JSON tree and the
bytes of their arrays and tensors, :mod:`torchbuf.io.objects`). Every save is atomic
and checked on load: see :mod:`torchbuf.io.savedir` and ``docs/io.md`` for the layout
on disk.

Loading never runs code from the file: infos that are not data (class instances,
functions) are pickled only with ``save(..., allow_pickle=True)``, and such a save
loads only with ``load(..., allow_pickle=True)``.
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
from torchbuf.io.objects import NotDataError
from torchbuf.io.savedir import CorruptSaveError, UnsafeLoadError

__all__ = [
    "CorruptSaveError",
    "NotDataError",
    "UnsafeLoadError",
    "load",
    "load_checkpoint",
    "save",
    "save_checkpoint",
]

_TRANSITIONS = {"Transitions": Transitions, "TransitionsWithRew": TransitionsWithRew}
_TRAJECTORIES = {"Trajectory": Trajectory, "TrajectoryWithRew": TrajectoryWithRew}
_TRANSITION_FIELDS = ("obs", "acts", "next_obs", "dones", "terminated", "truncated")
_STEP_FIELDS = ("acts", "terminated", "truncated")

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------- batches
def save(
    path: PathLike, batch_or_trajs: Transitions | Sequence[Trajectory], *, allow_pickle: bool = False
) -> None:
    """Saves transitions or trajectories to the directory ``path``, atomically.

    Tensors keep their dtypes and structure (dict observations as nested
    TensorDicts); ``terminated``, ``truncated``, ``terminal`` are kept. Trajectories
    are stored concatenated, one file per field, with an index of their lengths.
    ``infos`` are stored as data: ``None``, numbers, strings, bytes, lists, tuples,
    dicts, sets, numpy arrays and scalars and tensors come back of the same types,
    dtypes and devices (``infos=None`` stays ``None``). An existing save at ``path``
    is replaced only once the new one is complete on disk; a ``path`` that is a
    symbolic link keeps pointing to the new save.

    Args:
        path: The save directory (created; its parent must exist).
        batch_or_trajs: A :class:`Transitions` / :class:`TransitionsWithRew` batch,
            or a sequence of :class:`Trajectory` / :class:`TrajectoryWithRew` (all
            of one class), e.g. what ``pop_trajectories()`` returned.
        allow_pickle: Pickle the infos if they hold anything else (class
            instances, functions). Loading such a save runs code from it, and needs
            ``load(..., allow_pickle=True)``.

    Raises:
        TypeError: ``batch_or_trajs`` is neither, or mixes trajectory classes.
        NotDataError: (a ``TypeError``) the infos hold something that is not data
            and ``allow_pickle`` is false; the message names the entry.
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
        savedir.write(path, "transitions", data, infos, meta, allow_pickle)
    elif isinstance(batch_or_trajs, Sequence):
        data, infos, meta = _pack_trajectories(batch_or_trajs)
        savedir.write(path, "trajectories", data, infos, meta, allow_pickle)
    else:
        raise TypeError(
            f"save expects Transitions or a sequence of Trajectory, got {type(batch_or_trajs).__name__}"
        )


def load(
    path: PathLike, device: torch.device | str = "cpu", *, verify: bool = True, allow_pickle: bool = False
) -> Transitions | list[Trajectory]:
    """Loads what :func:`save` wrote, after checking it against its manifest.

    On the CPU the tensors are memory-mapped: nothing is read until used, and
    nothing is copied. Another ``device`` gets a copy there. Safe on saves from
    untrusted sources unless ``allow_pickle=True`` (see ``docs/io.md``).

    Args:
        path: The save directory.
        device: Where the tensors go.
        verify: Check each file's sha256 (reads every file once); sizes, shapes
            and dtypes are checked either way. This detects corruption, not
            tampering (the manifest is not signed).
        allow_pickle: Unpickle infos saved with ``save(..., allow_pickle=True)``.
            Unpickling runs code from the file: only for saves you trust.

    Returns:
        The batch, of the class that was saved, or a list of trajectories.

    Raises:
        FileNotFoundError: nothing saved at ``path``.
        CorruptSaveError: a file is missing, truncated or corrupt, the manifest is
            malformed, or a field's shape or dtype is wrong; the message names the
            file and field.
        UnsafeLoadError: the save holds pickled infos and ``allow_pickle`` is false.
    """
    data, infos, body = savedir.read(path, verify=verify, allow_pickle=allow_pickle)
    if body["kind"] not in ("transitions", "trajectories"):
        raise CorruptSaveError(f"{path}: holds a {body['kind']!r}, not transitions or trajectories")
    data = _to_device(data, torch.device(device))
    try:
        if body["kind"] == "transitions":
            return _unpack_transitions(data, infos, body["meta"])
        return _unpack_trajectories(data, infos, body["meta"])
    except CorruptSaveError as err:
        raise CorruptSaveError(f"{path}: {err}") from err
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as err:
        raise CorruptSaveError(f"{path}: the saved fields do not make a {body['kind']}: {err}") from err


def _pack_transitions(batch: Transitions) -> tuple[TensorDict, Any, dict[str, Any]]:
    names = [*_TRANSITION_FIELDS, *(["rews"] if isinstance(batch, TransitionsWithRew) else [])]
    data = TensorDict({name: getattr(batch, name) for name in names}, batch_size=batch.batch_size)
    infos = None if batch.infos is None else np.asarray(batch.infos, dtype=object)
    return data, infos, {"class": type(batch).__name__}


def _unpack_transitions(data: TensorDictBase, infos: Any, meta: dict[str, Any]) -> Transitions:
    cls = _TRANSITIONS[_saved_class(meta, _TRANSITIONS)]
    expected = {*_TRANSITION_FIELDS, *(["rews"] if cls is TransitionsWithRew else [])}
    _check_keys(data, expected, "data")
    n = data.batch_size[0] if data.batch_dims == 1 else -1
    if infos is not None and not _object_rows(infos, n):
        raise CorruptSaveError(f"infos: not None nor {n} entries in a 1-D object array")
    fields = {str(k): data[k] for k in data.keys()}  # noqa: SIM118
    return cls(**fields, infos=infos, batch_size=data.batch_size)


def _saved_class(meta: dict[str, Any], classes: dict[str, Any]) -> Any:
    name = meta.get("class")
    if name not in classes and not (name is None and classes is _TRAJECTORIES):
        raise CorruptSaveError(f"meta['class'] is {name!r}, not one of {sorted(classes)}")
    return name


def _check_keys(data: TensorDictBase, expected: set[str], where: str) -> None:
    if set(data.keys()) != expected:
        raise CorruptSaveError(f"{where} holds the fields {sorted(data.keys())}, not {sorted(expected)}")


def _object_rows(infos: Any, n: int) -> bool:
    return isinstance(infos, np.ndarray) and infos.dtype == object and infos.shape == (n,)


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
    name = _saved_class(meta, _TRAJECTORIES)
    if name is None:
        return []
    cls = _TRAJECTORIES[name]
    _check_keys(data, {"index", "obs", "steps"}, "data")
    _check_keys(data["index"], {"lengths", "terminal"}, "data/index")
    _check_keys(data["steps"], {*_STEP_FIELDS, *(["rews"] if cls is TrajectoryWithRew else [])}, "data/steps")
    if data["index", "lengths"].dtype != torch.int64 or data["index", "lengths"].dim() != 1:
        raise CorruptSaveError("data/index/lengths (field 'index/lengths'): not a 1-D int64 tensor")
    lengths = data["index", "lengths"].tolist()
    if not isinstance(infos, list) or len(infos) != len(lengths):
        raise CorruptSaveError(f"infos: not a list of {len(lengths)} entries, one per trajectory")
    terminal = data["index", "terminal"].tolist()
    # Plain tensor views of the mapped files: slicing a MemoryMappedTensor costs ~60 µs.
    obs, steps = _plain(data["obs"]), _plain(data["steps"])
    _check_index(lengths, obs, steps, infos)
    for i, (n, rows) in enumerate(zip(lengths, infos)):
        if rows is not None and not _object_rows(rows, n):
            raise CorruptSaveError(f"infos[{i}]: not None nor {n} entries in a 1-D object array")
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
def save_checkpoint(path: PathLike, wrapper: PopAPI, *, allow_pickle: bool = False) -> None:
    """Saves a buffering wrapper's unpopped state, atomically.

    Saved: what ``wrapper.state_dict()`` returns: the storage slots that hold
    unpopped data, the per-env cursors, episode step counters and awaiting flags,
    the host counts, ``n_transitions``, the infos of the unpopped transitions
    (as data, as :func:`save` stores them), and the wrapper's own step state (a ``VectorBufferingWrapper``'s
    pending NEXT_STEP resets and envpool actions).

    The env itself is not saved: see :func:`load_checkpoint`.

    Args:
        path: The checkpoint directory (created or replaced; its parent must exist).
        wrapper: A :class:`~torchbuf.BufferingWrapper` or
            :class:`~torchbuf.VectorBufferingWrapper` (or a subclass).
        allow_pickle: Pickle the infos if they hold anything else than data (see
            :func:`save`); loading then needs ``allow_pickle=True``.

    Raises:
        TypeError: ``wrapper`` is neither.
        NotDataError: the infos hold something that is not data and
            ``allow_pickle`` is false.
        RuntimeError: a ``step_async()`` is pending (checkpoint between steps).
        OSError: the parent directory is missing or not writable.
    """
    state = _wrapper(wrapper).state_dict()
    data, infos, meta = _pack_checkpoint(state)
    savedir.write(path, "checkpoint", data, infos, meta, allow_pickle)


def load_checkpoint(
    path: PathLike, wrapper: PopAPI, *, verify: bool = True, allow_pickle: bool = False
) -> None:
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
        allow_pickle: Unpickle infos saved with ``allow_pickle=True`` (runs code
            from the file: only for checkpoints you trust).

    Raises:
        TypeError: ``wrapper`` is not a buffering wrapper.
        FileNotFoundError: no checkpoint at ``path``.
        CorruptSaveError: a file is missing, truncated or corrupt, or the manifest
            is malformed.
        UnsafeLoadError: the checkpoint holds pickled infos and ``allow_pickle``
            is false.
        ValueError: the checkpoint does not fit ``wrapper`` (kind, number of envs,
            autoreset mode, or infos kept by the checkpoint but not by the wrapper).
    """
    _wrapper(wrapper)
    data, infos, body = savedir.read(path, kind="checkpoint", verify=verify, allow_pickle=allow_pickle)
    try:
        state = _unpack_checkpoint(data, infos, body["meta"])
    except CorruptSaveError as err:
        raise CorruptSaveError(f"{path}: {err}") from err
    _wrapper(wrapper).load_state_dict(state)


def _wrapper(wrapper: Any) -> PopAPI:
    if not isinstance(wrapper, PopAPI):
        raise TypeError(
            f"expected a BufferingWrapper or VectorBufferingWrapper, got {type(wrapper).__name__}"
        )
    return wrapper


# On disk: tensors under data/ (``cursors``, ``storage``, and the vector wrapper's
# ``wrapper/{ended,sent}``), host values in the manifest's metadata. Checkpoints of the
# first slot layout (cursors ``ep_t``, storage ``ep_len``) load and are converted.
_VECTOR_HOST = ("mode", "started", "tensor_env", "ended_host")
_VECTOR_TENSORS = ("ended", "sent")
_CURSORS = ("cur", "ep_carry", "awaiting")
_FIRST_LAYOUT_CURSORS = ("cur", "ep_t", "awaiting")  # with an ``ep_len`` storage field


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


_META_TYPES: dict[str, Any] = {
    "wrapper": str,
    "device": str,
    "n_envs": int,
    "capacity": int,
    "counts_exact": bool,
    "n_unpopped": list,
    "bound": list,
    "n_transitions": int,
    "keep_infos": bool,
}
_VECTOR_META_TYPES: dict[str, Any] = {
    "mode": (str, type(None)),
    "started": bool,
    "tensor_env": bool,
    "ended_host": list,
}


def _check_checkpoint(data: TensorDictBase, infos: Any, meta: dict[str, Any]) -> None:
    """Raises :class:`CorruptSaveError` where the checkpoint's parts are not of their types."""
    spec = {**_META_TYPES, **(_VECTOR_META_TYPES if meta.get("wrapper") == "vector" else {})}
    for key, kind in spec.items():
        value = meta.get(key)
        if key not in meta or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CorruptSaveError(f"meta[{key!r}]: missing or not a {kind}: {value!r}")
    n = meta["n_envs"]
    for key in ("n_unpopped", "bound", *(["ended_host"] if meta["wrapper"] == "vector" else [])):
        item = bool if key == "ended_host" else int
        if len(meta[key]) != n or not all(type(v) is item for v in meta[key]):
            raise CorruptSaveError(f"meta[{key!r}]: not {n} values of type {item.__name__}")
    layouts = (set(_CURSORS), set(_FIRST_LAYOUT_CURSORS))
    if "cursors" not in data or set(data["cursors"].keys()) not in layouts:
        raise CorruptSaveError(f"data/cursors: missing, or its fields are not {list(_CURSORS)}")
    if infos is not None and not (isinstance(infos, list) and all(_object_rows(r, len(r)) for r in infos)):
        raise CorruptSaveError("infos: not None nor a list of 1-D object arrays, one per env")


def _unpack_checkpoint(data: TensorDictBase, infos: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The ``state_dict()`` that :func:`_pack_checkpoint` split."""
    _check_checkpoint(data, infos, meta)
    storage = {k: data["cursors", k] for k in data["cursors"].keys()}  # noqa: SIM118
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
