"""Info dicts made when read: the ``infos`` of popped batches.

A pop of ``n`` transitions holds ``n`` info dicts, and making them (a dict per env per
step, out of each step's batched info) was most of a pop's time. An :class:`InfoArray`
keeps where each entry comes from (a step's infos and the env's position in it) and
makes an entry the first time it is read; every later read, through any slice of it,
returns that same dict, as a numpy object array's entries would. It behaves as a 1-D
numpy object array of dicts: ``len``, integer and slice or index-array indexing,
iteration, ``np.asarray(infos)`` (an object array holding the same dicts), pickling
(as that object array).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


class _Entries:
    """Where each of ``n`` entries comes from (``sources[src[i]][pos[i]]``), and those made so far.

    With ``src`` and ``pos`` ``None`` the sources are ``steps`` steps of every env,
    entries env by env in time order: entry ``i`` is ``sources[i % steps][i // steps]``
    (no index arrays to build for the common full-batch pop).
    """

    __slots__ = ("sources", "src", "pos", "n", "steps", "made", "done")

    def __init__(
        self,
        sources: Sequence[Sequence[Any]],
        src: np.ndarray | None,
        pos: np.ndarray | None,
        n: int | None = None,
    ):
        self.sources, self.src, self.pos = sources, src, pos
        self.n = len(src) if src is not None else int(n or 0)
        self.steps = len(sources)
        self.made: np.ndarray | None = None  # allocated at the first read
        self.done = np.zeros(0, dtype=bool)

    def get(self, index: np.ndarray) -> np.ndarray:
        """The entries at ``index``, made where not made yet (an object array)."""
        if self.made is None:
            self.made, self.done = np.empty(self.n, dtype=object), np.zeros(self.n, dtype=bool)
        missing = np.unique(index[~self.done[index]])
        if self.src is None or self.pos is None:  # the grid of every env in every step
            for i in missing.tolist():
                self.made[i] = self.sources[i % self.steps][i // self.steps]
        else:
            for i in missing.tolist():
                self.made[i] = self.sources[self.src[i]][int(self.pos[i])]
        self.done[missing] = True
        return self.made[index]


class InfoArray(Sequence[Any]):
    """A 1-D array of info dicts, each made when first read.

    Args:
        entries: Where the entries come from.
        index: Which of ``entries`` this array holds, in order; ``None`` for all of
            them (the index array is then made only if something reads it).
    """

    ndim = 1
    dtype = np.dtype(object)

    def __init__(self, entries: _Entries, index: np.ndarray | None = None):
        self._entries, self._own_index = entries, index

    @property
    def _index(self) -> np.ndarray:
        if self._own_index is None:
            self._own_index = np.arange(self._entries.n)
        return self._own_index

    @classmethod
    def gather(cls, sources: Sequence[Sequence[Any]], src: np.ndarray, pos: np.ndarray) -> InfoArray:
        """Entry ``i`` is ``sources[src[i]][pos[i]]``, made when read."""
        return cls(_Entries(sources, src, pos))

    @classmethod
    def grid(cls, steps: Sequence[Sequence[Any]], n_envs: int) -> InfoArray:
        """Every env's entry of every step, env by env in time order.

        Entry ``e * len(steps) + t`` is ``steps[t][e]``.
        """
        return cls(_Entries(steps, None, None, len(steps) * n_envs))

    @classmethod
    def of(cls, items: Sequence[Any]) -> InfoArray:
        """The entries of ``items`` (a sequence or an object array), as they are."""
        if isinstance(items, InfoArray):
            return items
        n = len(items)
        return cls.gather([items], np.zeros(n, dtype=np.int64), np.arange(n))

    @classmethod
    def concatenate(cls, parts: Sequence[Sequence[Any]]) -> InfoArray:
        """The parts one after the other; entries already made stay the same objects."""
        arrays = [cls.of(p) for p in parts]
        roots: dict[int, int] = {}
        for a in arrays:
            roots.setdefault(id(a._entries), len(roots))
        if len(roots) == 1:
            return cls(arrays[0]._entries, np.concatenate([a._index for a in arrays]))
        if not arrays:
            return cls.of([])
        whole = {id(a._entries): cls(a._entries) for a in arrays}
        src = np.concatenate([np.full(len(a), roots[id(a._entries)], dtype=np.int64) for a in arrays])
        pos = np.concatenate([a._index for a in arrays]).astype(np.int64)
        return cls.gather(list(whole.values()), src, pos)

    @property
    def shape(self) -> tuple[int]:
        """``(len(self),)``, as a 1-D array's."""
        return (len(self),)

    @property
    def size(self) -> int:
        """The number of entries."""
        return len(self)

    def __len__(self) -> int:
        return self._entries.n if self._own_index is None else len(self._own_index)

    def __getitem__(self, key: Any) -> Any:
        if type(key) is slice:
            return InfoArray(self._entries, self._index[key])
        if isinstance(key, int | np.integer):
            return self._entries.get(self._index[np.array([key])])[0]
        if isinstance(key, tuple) and len(key) == 1:
            key = key[0]
        if isinstance(key, list):
            key = np.asarray(key)
        if isinstance(key, np.ndarray) and key.dtype.kind not in "biu":
            raise IndexError(f"InfoArray indices must be integers, slices or index arrays, not {key.dtype}")
        return InfoArray(self._entries, self._index[key])

    def __iter__(self) -> Iterator[Any]:
        return iter(self._entries.get(self._index).tolist())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self._entries.get(self._index)
        return out if dtype is None or np.dtype(dtype) == out.dtype else out.astype(dtype)

    def tolist(self) -> list[Any]:
        """The entries as a list (made where not made yet)."""
        return self._entries.get(self._index).tolist()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles (and deep copies) as the object array of its entries."""
        return (_object_array, (self.tolist(),))

    def __repr__(self) -> str:
        return f"InfoArray({len(self)} info dicts, made when read)"


def _object_array(items: list[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
