"""Collective pops: each rank's popped batch gathered to one rank or to all.

Every rank records its own envs and pops as usual; these functions then combine
the ranks' batches with ``torch.distributed``. The cost is fixed by the batch's
structure, not by its size:

1. one ``all_gather`` of a small int64 tensor: every rank's row counts and a
   fingerprint of its fields (names, dtypes, per-row shapes), read on the host
   once (the only device-to-host sync);
2. one ``all_gather`` (or ``gather``) per tensor leaf (``obs``, ``acts``, ...;
   each key of a dict observation is a leaf), padded to the largest rank's rows
   and sent as raw bytes, so every dtype travels on every backend (gloo has no
   bool or int16 collectives), on the tensors' device (NCCL on GPUs, gloo on
   CPU; gloo's CPU-only collectives get host copies of GPU tensors);
3. one ``all_gather_object`` of the infos (host objects), only when they were kept;
4. one ``broadcast_object_list`` of the structure, only when some rank has
   nothing to send and must learn the dtypes and shapes it receives.

The result holds rank 0's rows first, then rank 1's, and so on, each rank's in
its own order. Ranks must pop batches of the same structure (same spaces,
``keep_infos`` alike); otherwise every rank raises the same ``ValueError``. A
rank that fails or stalls makes the others raise :class:`CollectiveError` when
their backend notices (at once when the peer's process exits, after the process
group's ``timeout`` when it hangs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase

from torchbuf.data.convert import object_array
from torchbuf.data.infos import InfoArray
from torchbuf.data.trajectories import Trajectories, pack
from torchbuf.data.types import Obs, TrajectoryWithRew, Transitions

__all__ = [
    "CollectiveError",
    "all_gather_trajectories",
    "all_gather_transitions",
    "backend_device",
    "exchange_counts",
    "gather_trajectories",
    "gather_transitions",
]

T = TypeVar("T", bound=Transitions)
Group = Any  # a torch.distributed ProcessGroup, or None for the default group
_STEP_KEYS = ("acts", "rews", "terminated", "truncated")


class CollectiveError(RuntimeError):
    """A collective failed because another rank raised, exited or stalled."""


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """One tensor of a row set: where it goes, its dtype, the shape of one row."""

    path: tuple[str, ...]
    dtype: torch.dtype
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _Schema:
    """The structure of a rank's batch: what a receiver needs to allocate it."""

    kind: type
    row_sets: tuple[tuple[_Leaf, ...], ...]
    has_infos: bool
    td_fields: tuple[str, ...]  # fields that are TensorDicts; ordered (a set's order varies by process)

    def fingerprint(self) -> int:
        """A hash of the structure, equal on ranks whose batches agree."""
        return zlib.crc32(repr(self).encode()) + 1  # never 0: 0 marks an empty rank


@dataclasses.dataclass
class _Parts:
    """A batch taken apart: its schema, one list of leaves per row set, its infos."""

    schema: _Schema
    leaves: list[list[torch.Tensor]]
    infos: Any


def gather_transitions(
    batch: T | None, dst: int | None = 0, *, group: Group = None, device: torch.device | str | None = None
) -> T | None:
    """Gathers every rank's transitions to rank ``dst`` (to every rank with ``dst=None``).

    A collective: every rank of ``group`` must call it with the same ``dst``.

    Args:
        batch: This rank's batch (e.g. from ``pop_transitions()``), or ``None``
            when the rank has nothing to send.
        dst: The global rank that receives the result; ``None``: all of them.
        group: The process group (default: the world).
        device: Where the result goes on a rank that sent ``None`` (default: the
            backend's device, see :func:`backend_device`); otherwise the batch's device.

    Returns:
        On the receiving ranks, one batch of the batches' class with rank 0's
        transitions first, then rank 1's, and so on; ``infos`` concatenated
        likewise. ``None`` on the other ranks, and when every rank sent ``None``.

    Raises:
        ValueError: the ranks' batches differ in fields, dtypes or shapes.
        CollectiveError: another rank failed or timed out.
        RuntimeError: ``torch.distributed`` is not initialized.

    Examples:
        >>> batch = venv.pop_transitions()  # doctest: +SKIP
        >>> everything = gather_transitions(batch, dst=0)  # doctest: +SKIP
    """
    parts = None if batch is None else _transition_parts(batch)
    gathered = _gather(parts, 1, dst, group, device, "gather_transitions")
    if gathered is None:
        return None
    fields = _assemble(gathered.schema.row_sets[0], gathered.leaves[0], gathered.schema.td_fields)
    n = int(next(iter(gathered.leaves[0])).shape[0])
    infos = _cat_objects(gathered.infos) if gathered.schema.has_infos else None
    return gathered.schema.kind(**fields, infos=infos, batch_size=[n])  # type: ignore[no-any-return]


def all_gather_transitions(
    batch: T | None, *, group: Group = None, device: torch.device | str | None = None
) -> T | None:
    """Gathers every rank's transitions to every rank; see :func:`gather_transitions`."""
    return gather_transitions(batch, None, group=group, device=device)


def gather_trajectories(
    trajs: Sequence[TrajectoryWithRew],
    dst: int | None = 0,
    *,
    group: Group = None,
    device: torch.device | str | None = None,
) -> Sequence[TrajectoryWithRew] | None:
    """Gathers every rank's trajectories to rank ``dst`` (to every rank with ``dst=None``).

    A collective: every rank of ``group`` must call it with the same ``dst``. The
    trajectories travel packed (observations, per-step fields, and each
    trajectory's length and ``terminal`` flag), so thousands of them cost the
    same few collectives as one.

    Args:
        trajs: This rank's trajectories with rewards (e.g. ``pop_trajectories()[0]``),
            possibly empty.
        dst: The global rank that receives the result; ``None``: all of them.
        group: The process group (default: the world).
        device: Where the result goes on a rank that sent no trajectory (default:
            the backend's device); otherwise the trajectories' device.

    Returns:
        On the receiving ranks, a :class:`~torchbuf.data.trajectories.Trajectories`
        with rank 0's trajectories first, then rank 1's, and so on (``[]`` when no
        rank had one); ``None`` on the other ranks.

    Raises:
        ValueError: the ranks' trajectories differ in fields, dtypes or shapes,
            or a trajectory has no rewards.
        CollectiveError: another rank failed or timed out.
        RuntimeError: ``torch.distributed`` is not initialized.
    """
    parts = _trajectory_parts(trajs) if len(trajs) else None
    gathered = _gather(parts, 3, dst, group, device, "gather_trajectories")
    if gathered is None:
        return [] if _receives(dst) else None
    (obs_set, step_set, _), td_fields = gathered.schema.row_sets, gathered.schema.td_fields
    obs = _assemble(obs_set, gathered.leaves[0], td_fields)["obs"]
    acts = gathered.leaves[1][0]
    steps = TensorDict(
        _assemble(step_set, gathered.leaves[1], td_fields), batch_size=acts.shape[:1], device=acts.device
    )
    meta = gathered.leaves[2][0].cpu().numpy()  # lengths and terminal flags: the one host read
    infos = None
    if gathered.schema.has_infos:
        infos = InfoArray.concatenate([i for rank_infos in gathered.infos for i in rank_infos])
    return pack(obs, steps, meta[:, 0], meta[:, 1].astype(bool), infos)


def all_gather_trajectories(
    trajs: Sequence[TrajectoryWithRew], *, group: Group = None, device: torch.device | str | None = None
) -> Sequence[TrajectoryWithRew]:
    """Gathers every rank's trajectories to every rank; see :func:`gather_trajectories`."""
    out = gather_trajectories(trajs, None, group=group, device=device)
    assert out is not None  # every rank receives
    return out


def backend_device(group: Group = None) -> torch.device:
    """The device whose tensors the group's backend sends.

    ``cuda`` (the current device) for NCCL, ``cpu`` for gloo and any other backend.

    Args:
        group: The process group (default: the world).

    Returns:
        The device.
    """
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def exchange_counts(
    counts: Sequence[int], group: Group = None, device: torch.device | None = None
) -> np.ndarray:
    """All-gathers a few integers from every rank in one collective.

    Args:
        counts: This rank's integers; every rank sends as many.
        group: The process group (default: the world).
        device: Where the small tensor is sent from (default: the backend's device).

    Returns:
        A host int64 array, shape ``(world_size, len(counts))``, row ``r`` from rank ``r``.

    Raises:
        CollectiveError: another rank failed or timed out.
    """
    device = device or backend_device(group)
    mine = torch.tensor(list(counts), dtype=torch.int64, device=device)
    table = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    with _collective("exchanging sizes", group):
        dist.all_gather(table, mine, group=group)
    return torch.stack(table).cpu().numpy()


# --- taking batches apart and putting them back together ---------------------------


def _transition_parts(batch: Transitions) -> _Parts:
    if batch.batch_dims != 1:
        raise ValueError(f"expected a flat batch of transitions, got batch size {tuple(batch.batch_size)}")
    fields: dict[str, Obs] = {}
    for field in dataclasses.fields(batch):
        value = getattr(batch, field.name)
        if isinstance(value, torch.Tensor | TensorDictBase):
            fields[field.name] = value
        elif value is not None and field.name != "infos":
            raise ValueError(f"field {field.name!r} holds a {type(value).__name__}, which cannot be gathered")
    leaves, row_set, td_fields = _leaves(fields)
    schema = _Schema(type(batch), (row_set,), batch.infos is not None, td_fields)
    return _Parts(schema, [leaves], batch.infos)


def _trajectory_parts(trajs: Sequence[TrajectoryWithRew]) -> _Parts:
    obs, steps, lengths, terminal, infos = _packed(trajs)
    device = steps["acts"].device
    meta = torch.from_numpy(np.stack([lengths, terminal.astype(np.int64)], axis=1)).to(device)
    obs_leaves, obs_set, obs_tds = _leaves({"obs": obs})
    step_leaves, step_set, step_tds = _leaves({str(k): steps[k] for k in sorted(steps.keys())})
    meta_leaves, meta_set, _ = _leaves({"meta": meta})
    schema = _Schema(Trajectories, (obs_set, step_set, meta_set), infos is not None, obs_tds + step_tds)
    return _Parts(schema, [obs_leaves, step_leaves, meta_leaves], infos)


def _packed(trajs: Sequence[TrajectoryWithRew]) -> tuple[Obs, TensorDict, np.ndarray, np.ndarray, Any]:
    """The trajectories' packed fields (as :class:`Trajectories` holds them)."""
    if isinstance(trajs, Trajectories):
        return trajs.obs, trajs.steps, trajs.lengths, trajs.terminal, trajs.infos
    missing = [i for i, t in enumerate(trajs) if getattr(t, "rews", None) is None]
    if missing:
        raise ValueError(f"trajectories {missing[:5]} have no rews: only trajectories with rewards gather")
    lengths = np.array([len(t) for t in trajs], dtype=np.int64)
    steps = TensorDict(
        {k: torch.cat([getattr(t, k) for t in trajs]) for k in _STEP_KEYS}, batch_size=[int(lengths.sum())]
    )
    infos = None if all(t.infos is None for t in trajs) else [_infos_or_empty(t) for t in trajs]
    terminal = np.array([bool(t.terminal) for t in trajs])
    return torch.cat([t.obs for t in trajs]), steps, lengths, terminal, infos


def _infos_or_empty(traj: TrajectoryWithRew) -> np.ndarray:
    return traj.infos if traj.infos is not None else object_array([{}] * len(traj))


def _leaves(
    fields: dict[str, Obs],
) -> tuple[list[torch.Tensor], tuple[_Leaf, ...], tuple[str, ...]]:
    """Flattens fields (tensors, nested TensorDicts) into leaves and their descriptions."""
    leaves, described, td_fields = [], [], []
    for name, value in fields.items():
        if isinstance(value, TensorDictBase):
            td_fields.append(name)
        for path, leaf in _named_leaves(name, value):
            leaves.append(leaf)
            described.append(_Leaf(path, leaf.dtype, tuple(leaf.shape[1:])))
    return leaves, tuple(described), tuple(td_fields)


def _named_leaves(name: str, value: Obs) -> list[tuple[tuple[str, ...], torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        return [((name,), value)]
    paths = sorted((k,) if isinstance(k, str) else tuple(k) for k in value.keys(True, True))
    return [((name, *path), value.get(path)) for path in paths]  # sorted: the same on every rank


def _assemble(
    row_set: tuple[_Leaf, ...], leaves: list[torch.Tensor], td_fields: tuple[str, ...]
) -> dict[str, Obs]:
    """Puts leaves back into fields: tensors, or TensorDicts for dict observations."""
    out: dict[str, Obs] = {}
    for desc, leaf in zip(row_set, leaves, strict=True):
        name = desc.path[0]
        if name not in td_fields:
            out[name] = leaf
            continue
        td = out.setdefault(name, TensorDict({}, batch_size=leaf.shape[:1], device=leaf.device))
        td.set(desc.path[1:], leaf)  # type: ignore[union-attr]
    return out


def _cat_objects(per_rank: list[Any]) -> np.ndarray:
    return object_array([item for infos in per_rank for item in infos])


# --- the collectives ----------------------------------------------------------------


def _gather(
    parts: _Parts | None, n_sets: int, dst: int | None, group: Group, device: Any, what: str
) -> _Parts | None:
    """Gathers every rank's parts; ``None`` on non-receiving ranks or when all are empty."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"{what}: torch.distributed is not initialized (call init_process_group first)")
    local = _local_device(parts, device, group)
    comm = _comm_device(local, group)
    agreed = _agree(parts, n_sets, group, comm, local, what)
    if agreed is None:
        return None
    parts, table = agreed
    leaves = [
        [_gather_leaf(leaf, table[:, s], dst, group, comm, local) for leaf in set_leaves]
        for s, set_leaves in enumerate(parts.leaves)
    ]
    infos = _gather_objects(parts.infos, dst, group) if parts.schema.has_infos else None
    return _Parts(parts.schema, leaves, infos) if _receives(dst) else None  # type: ignore[arg-type]


def _agree(
    parts: _Parts | None, n_sets: int, group: Group, comm: torch.device, local: torch.device, what: str
) -> tuple[_Parts, np.ndarray] | None:
    """Exchanges row counts and structures; ``None`` when no rank has data.

    Returns:
        This rank's parts (empty ones, of the agreed structure, if it had none) and
        the table of row counts: row ``r`` holds rank ``r``'s count per row set.
    """
    mine = (
        [0] * (n_sets + 1)
        if parts is None
        else [*(len(s[0]) for s in parts.leaves), parts.schema.fingerprint()]
    )
    table = exchange_counts(mine, group, comm)  # the last column: each rank's fingerprint
    senders = np.flatnonzero(table[:, -1])
    if len(senders) == 0:
        return None
    _check_agreement(table[:, -1], parts, what)
    if len(senders) < len(table):  # a rank has nothing: it learns the structure from one that has
        schema = _broadcast_schema(parts, int(senders[0]), group)
        parts = parts or _empty_parts(schema, local)
    assert parts is not None
    return parts, table[:, :-1]


def _gather_leaf(
    leaf: torch.Tensor,
    counts: np.ndarray,
    dst: int | None,
    group: Group,
    comm: torch.device,
    out: torch.device,
) -> torch.Tensor | None:
    """Gathers one leaf as rows of bytes, padded to the longest rank's rows."""
    n, row_shape, dtype = int(leaf.shape[0]), leaf.shape[1:], leaf.dtype
    rows = leaf.reshape(n, row_shape.numel()).contiguous().view(torch.uint8).to(comm)
    longest = int(counts.max())
    if n < longest:
        rows = F.pad(rows, (0, 0, 0, longest - n))
    buffers = [torch.empty_like(rows) for _ in range(len(counts))] if _receives(dst) else None
    with _collective("gathering a batch", group):
        if dst is None:
            dist.all_gather(buffers, rows, group=group)  # type: ignore[arg-type]
        else:
            dist.gather(rows, buffers, dst=dst, group=group)
    if buffers is None:
        return None
    joined = torch.cat([b[: int(c)] for b, c in zip(buffers, counts, strict=True)]).to(out)
    return joined.view(dtype).reshape(int(counts.sum()), *row_shape)


def _gather_objects(objects: Any, dst: int | None, group: Group) -> list[Any]:
    world = dist.get_world_size(group)
    out: list[Any] = [None] * world
    with _collective("gathering infos", group):
        if dst is None:
            dist.all_gather_object(out, objects, group=group)
        else:
            dist.gather_object(objects, out if _receives(dst) else None, dst=dst, group=group)
    return out


def _broadcast_schema(parts: _Parts | None, src: int, group: Group) -> _Schema:
    """Sends rank ``src``'s structure to every rank (for those that have no data)."""
    box: list[Any] = [None if parts is None else parts.schema]
    with _collective("sending the batch structure", group):
        dist.broadcast_object_list(box, src=src, group=group)
    return box[0]  # type: ignore[no-any-return]


def _empty_parts(schema: _Schema, device: torch.device) -> _Parts:
    leaves = [[torch.empty((0, *d.shape), dtype=d.dtype, device=device) for d in s] for s in schema.row_sets]
    return _Parts(schema, leaves, object_array([]) if schema.kind is not Trajectories else [])


def _check_agreement(fingerprints: np.ndarray, parts: _Parts | None, what: str) -> None:
    """Raises on every rank alike when non-empty ranks' structures differ."""
    sent = fingerprints[fingerprints != 0]
    if len(set(sent.tolist())) <= 1:
        return
    first = int(np.flatnonzero(fingerprints)[0])
    differ = [r for r, f in enumerate(fingerprints) if f not in (0, fingerprints[first])]
    mine = "nothing" if parts is None else _describe(parts.schema)
    raise ValueError(
        f"{what}: ranks {differ} pop batches whose fields, dtypes or shapes differ from rank {first}'s "
        f"(ranks must record envs of the same spaces, keep_infos alike); this rank's: {mine}"
    )


def _describe(schema: _Schema) -> str:
    leaves = ", ".join(
        f"{'.'.join(d.path)}: {str(d.dtype).removeprefix('torch.')}{list(d.shape)}"
        for row_set in schema.row_sets
        for d in row_set
    )
    return f"{schema.kind.__name__}({leaves}; infos={'kept' if schema.has_infos else 'None'})"


def _local_device(parts: _Parts | None, device: Any, group: Group) -> torch.device:
    if parts is not None:
        return parts.leaves[0][0].device
    return torch.device(device) if device is not None else backend_device(group)


def _comm_device(local: torch.device, group: Group) -> torch.device:
    """The data's device, unless the backend only sends another (gloo: CPU; NCCL: CUDA)."""
    backend = dist.get_backend(group)
    if backend == "gloo":
        return torch.device("cpu")
    if backend == "nccl" and local.type != "cuda":
        return backend_device(group)
    return local


def _receives(dst: int | None) -> bool:
    """Whether this process receives the result (``dst`` is a global rank)."""
    return dst is None or dist.get_rank() == dst


@contextlib.contextmanager
def _collective(step: str, group: Group) -> Iterator[None]:
    """Turns a backend failure into an error that says what probably happened."""
    try:
        yield
    except RuntimeError as err:
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        raise CollectiveError(
            f"rank {rank} of {world}: {step} failed: another rank raised, exited, or did not reach "
            f"this collective within the process group's timeout (init_process_group(timeout=...)); "
            f"check the other ranks' logs. Backend error: {err}"
        ) from err
