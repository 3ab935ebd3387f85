"""Row primitives of the slot storage: indexed row copies, per-row updates, allocation.

Indexed row copies are most of a step's cost for large observations; :class:`Rows`
gives each field leaf the fastest route to the same bytes. The free functions are
the small tensor operations the storage repeats on its per-row state.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from torchbuf.data.convert import Obs

Index = torch.Tensor | np.ndarray
"""Flat slot indices: a tensor, or on the CPU a host array (no torch call to read it)."""


_NUMPY_SMALL = 1 << 20
"""Below this many bytes a row take returns numpy's own result: the allocator reuses such blocks."""

_NUMPY_HUGE = 4 << 20
"""numpy backs arrays of this many bytes or more with huge pages (Linux): fresh results are cheap there."""


class Rows:
    """One leaf of a field as flat slots ``(n_envs * (capacity + 1), ...)``.

    Indexed row copies are the whole cost of a step for large observations, so they
    take the fastest route to the same bytes: on the CPU, numpy's indexing of a view of
    the tensor's memory in which each row is one element (``np.void`` of the row's
    bytes): one memcpy per row, where fancy indexing of ``(rows, ...)`` walks every
    element (for 4096 rows of 4 float32, 3.5 µs instead of 41 µs to write and 3 µs
    instead of 30 µs to read; for 256 uint8 84x84x4 rows, 0.13 ms instead of 5.6 ms to
    write). On other devices, rows of 32 bytes or more go through their widest integer
    view. Every route moves exactly the bytes ``index_put_`` would.
    """

    def __init__(self, key: Any, leaf: torch.Tensor, shifts: int = 1):
        self.key, self.leaf = key, leaf
        self.host = host_view(leaf)
        row_bytes = leaf[0].numel() * leaf.element_size() if leaf.shape[0] else 0
        self.row_bytes = row_bytes
        wide = [d for d in (torch.int64, torch.int32) if row_bytes >= 32 and row_bytes % d.itemsize == 0]
        self.wide_dtype = wide[0] if wide else None
        self.wide = leaf.reshape(leaf.shape[0], -1).view(self.wide_dtype) if self.wide_dtype else None
        self.slots = _one_element_per_row(self.host)
        self._row_shape = None if self.host is None else self.host.shape[1:]
        self.shifts = max(1, min(shifts, leaf.shape[0]))
        target = self.leaf if self.wide is None else self.wide
        self._shifted: list[torch.Tensor] = []
        if self.host is None:  # made once: slicing in a step would be one more op
            self._shifted = [target[k:] for k in range(self.shifts)]

    def put(self, index: Index, value: torch.Tensor | np.ndarray, shift: int = 0) -> None:
        """Writes ``value`` (one row per index) at flat slots ``index + shift``.

        ``shift`` (below ``self.shifts``) selects a view of the slots that starts
        ``shift`` slots later, so the storage adds a host offset to a device index
        without a device op.
        """
        if self.host is not None:  # a CPU leaf: the step's values are host arrays or CPU tensors
            self._put_host(index, value, shift)
            return
        if isinstance(index, np.ndarray) or isinstance(value, np.ndarray):  # host data, a device leaf
            index, value = torch.as_tensor(index), torch.as_tensor(value)
        target = (
            self._shifted[shift] if self._shifted else (self.leaf if self.wide is None else self.wide)[shift:]
        )
        if self.wide is None:
            target.index_put_((index,), value)
        else:
            value = value.to(self.leaf.dtype).reshape(value.shape[0], -1)
            target.index_put_((index,), value.view(self.wide_dtype))  # type: ignore[arg-type]

    def take(self, index: Index, checked: bool = False) -> torch.Tensor:
        """Reads the rows at flat slots ``index`` (a copy).

        Args:
            index: Flat slots: a tensor, or on the CPU a host array.
            checked: The caller has checked that every index is a slot of this leaf
                (:func:`check_slots`), once for all the leaves it reads.
        """
        if self.host is not None:
            at = index if isinstance(index, np.ndarray) else index.numpy()
            if not checked:  # numpy's take wraps negative indices, and mode="clip" clamps
                check_slots(at, len(self.host))
            size = len(at) * self.row_bytes
            if size < _NUMPY_SMALL or size >= _NUMPY_HUGE:  # numpy's own result (see the constants)
                rows = np.take(self.host, at, axis=0) if self.slots is None else np.take(self.slots, at)
                return torch.from_numpy(rows.view(self.host.dtype).reshape(len(at), *self.host.shape[1:]))
            # between: into memory torch allocates, which the next pop's copy reuses, where numpy's
            # fresh pages for each pop cost more than the copy (4096 envs x 100 steps: 10 vs 14 ms)
            out = torch.empty((len(at), *self.leaf.shape[1:]), dtype=self.leaf.dtype)
            if not len(at):
                return out
            dest = out.numpy()
            if self.slots is None:  # numpy buffers a take into out= unless its mode is "clip" (or "wrap")
                np.take(self.host, at, axis=0, out=dest, mode="clip")
            else:
                dest = dest.reshape(len(at), -1).view(self.slots.dtype).reshape(-1)
                np.take(self.slots, at, out=dest, mode="clip")
            return out
        if self.wide is None:
            return self.leaf[index]
        return self.wide[index].view(self.leaf.dtype).reshape(index.shape[0], *self.leaf.shape[1:])

    def move(self, src: Index, dst: Index) -> None:
        """Copies the rows at flat slots ``src`` to slots ``dst`` (host arrays for a CPU leaf).

        On the CPU one numpy copy through the row view, no torch call; elsewhere a
        take and a put.
        """
        if self.host is None:
            self.put(dst, self.take(src))
            return
        rows = self.host if self.slots is None else self.slots
        rows[dst] = rows[src]

    def _put_host(self, index: Index, value: torch.Tensor | np.ndarray, shift: int) -> None:
        """:meth:`put` for a CPU leaf (``host`` set): numpy writes into the leaf's memory."""
        host, slots = self.host, self.slots
        assert host is not None
        if shift:
            host, slots = host[shift:], None if slots is None else slots[shift:]
        at = index if isinstance(index, np.ndarray) else index.numpy()
        data = (
            value if isinstance(value, np.ndarray) or not isinstance(value, torch.Tensor) else value.numpy()
        )
        if slots is None or data.shape[1:] != self._row_shape or len(data) != len(at):  # 1-D, or broadcast
            host[at] = data
            return
        rows = np.ascontiguousarray(data, dtype=host.dtype)  # the cast host[at] = data makes
        slots[at] = rows.reshape(len(at), -1).view(slots.dtype).reshape(-1)


def check_slots(at: np.ndarray, n_slots: int, after: int = 0) -> None:
    """Raises unless every ``at`` and ``at + after`` is a slot index below ``n_slots``.

    Raises:
        IndexError: an index out of range (a defect: the storage computes them).
    """
    if len(at) and (at.min() < 0 or at.max() + after >= n_slots):
        raise IndexError(f"slot index out of range: {at.min()}..{at.max() + after} of {n_slots} slots")


def host_view(leaf: torch.Tensor) -> np.ndarray | None:
    """A numpy view of a CPU leaf's memory (the host route of :class:`Rows`), or ``None``."""
    return leaf.numpy() if leaf.device.type == "cpu" and leaf.dtype != torch.bfloat16 else None


def _one_element_per_row(host: np.ndarray | None) -> np.ndarray | None:
    """A 1-D view of ``host`` whose elements are its rows (``np.void``), or ``None``.

    ``None`` where there is nothing to gain or no such view: 1-D arrays (their rows are
    elements already), rows of no bytes, and memory that is not C-contiguous.
    """
    if host is None or host.ndim < 2 or not host.flags.c_contiguous or host.size == 0:
        return None
    row_bytes = host.itemsize * int(np.prod(host.shape[1:]))
    return host.reshape(host.shape[0], -1).view(np.dtype((np.void, row_bytes))).reshape(-1)


def ranges(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(start, length)])``, without the loop."""
    total = int(length.sum())
    offsets = np.cumsum(length) - length
    return np.arange(total) - np.repeat(offsets - start, length)


def get_rows(t: Any, rows: Index | None) -> Any:
    """The rows of a per-row tensor (all of it, no copy, when ``rows`` is ``None``)."""
    return t if rows is None else t[rows]


def set_rows(t: torch.Tensor, rows: torch.Tensor | None, value: torch.Tensor) -> None:
    """Sets the rows of a per-row tensor (all of it when ``rows`` is ``None``)."""
    if rows is None:
        t.copy_(value)
    else:
        t[rows] = value


def add_rows(t: Any, rows: Index | None, value: torch.Tensor | int) -> None:
    """Adds ``value`` to the rows of a per-row tensor or array (all of it when ``rows`` is ``None``)."""
    if rows is None:
        t += value
    else:
        t[rows] += value


def spec(td: TensorDictBase, skip: int) -> dict:
    """Each leaf's shape past the first ``skip`` dimensions, and its dtype."""
    return {k: (v.shape[skip:], v.dtype) for k, v in td.items(True, True)}


def alloc(value: Obs | np.ndarray, rows: int, slots: int) -> Obs:
    """Zeros of ``rows`` x ``slots`` elements shaped like each element of ``value`` (arrays: on the CPU)."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value[:0].copy())
    if isinstance(value, torch.Tensor):
        return torch.zeros((rows, slots, *value.shape[1:]), dtype=value.dtype, device=value.device)
    return value.new_zeros(torch.Size([rows, slots]))


def where(cond: torch.Tensor, a: Obs, b: Obs) -> Obs:
    """``a`` where ``cond`` (one flag per row), else ``b``, leaf by leaf for TensorDicts."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        return torch.where(cond.view(-1, *([1] * (a.dim() - 1))), a, b)
    assert isinstance(b, TensorDictBase)
    out = a.apply(lambda x, y: torch.where(cond.view(-1, *([1] * (x.dim() - 1))), x, y), b)
    assert out is not None
    return out


def check_fits(obs: Obs, rows: int, slots: int, device: torch.device) -> None:
    """Refuses a first allocation larger than the device's memory (before trying it)."""
    leaves: list[torch.Tensor] = (
        [obs] if isinstance(obs, torch.Tensor) else list(obs.values(include_nested=True, leaves_only=True))  # type: ignore[arg-type]
    )
    per_slot = 16 + sum(int(leaf[0].numel()) * leaf.element_size() for leaf in leaves if len(leaf))
    need = rows * slots * per_slot
    if device.type == "cuda":
        have = torch.cuda.mem_get_info(device)[0]
    elif hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    else:
        return
    if need > have:
        raise ValueError(
            f"capacity: {slots - 1} slots for each of {rows} envs need about {need / 2**30:.1f} GiB, "
            f"more than the {have / 2**30:.1f} GiB of {device}: start smaller, the storage grows as needed"
        )
