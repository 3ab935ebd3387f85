"""The slot storage's pops: run ends read from the flags, transitions and segments gathered.

A slot ends a run where the slot before it is done or its ``cut`` flag is set (see
:mod:`torchbuf.buffer.storage`). On the CPU the pops read the flags and cursors
through numpy views of the storage's memory; elsewhere with torch ops, reading back
to the host only what the host must know (none for ``pop_transitions`` while the
host counts are exact, one transfer for the trajectories' run ends).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from torchbuf.buffer.rows import Index, ranges
from torchbuf.buffer.segments import Segments, cut_segments
from torchbuf.buffer.slotstate import SlotState
from torchbuf.data.types import Obs

STEP_FIELDS = ("acts", "rews", "terminated", "truncated")
FLAGS = ("terminated", "truncated", "cut")


class SlotReading(SlotState):
    """:class:`~torchbuf.buffer.storage.SlotStorage`'s pops (``take_transitions``, ``take_segments``)."""

    def _grid(self, width: int) -> tuple[Any, Any, Any, Any]:
        """Each row's first ``width`` slots for a pop: ``(xp, cursors, columns, carried steps)``.

        On the CPU these are numpy views of the storage's memory and ``xp`` is numpy
        (a pop of few envs is a handful of small ops, which numpy makes in a
        microsecond where torch takes several); elsewhere tensors and torch.
        """
        if self.host_route():
            cur = self._host("_pos") + (self._shift - self._host("_base"))
            return np, cur, np.arange(width), self._host("_ep_carry")
        return torch, self._cur, torch.arange(width, device=self.device), self._ep_carry

    def host_route(self) -> bool:
        """Whether pops read the storage through numpy views of its memory (the CPU's route)."""
        return self._flat["cut"][0].host is not None  # the leaves' route (every field has the same)

    def _marks(self, width: int, xp: Any) -> tuple[Any, Any]:
        """Which of each row's first ``width`` slots end a run, and which of those are terminal."""
        assert self.data is not None
        terminated, truncated, cut = (self._flag(name, xp)[:, :width] for name in FLAGS)
        terminal = xp.zeros_like(cut)
        terminal[:, 1:] = terminated[:, :-1] | truncated[:, :-1]
        return terminal | cut, terminal

    def _flag(self, name: str, xp: Any) -> Any:
        """A flag field ``(n_envs, capacity + 1)``: its numpy view where ``xp`` is numpy, else the tensor."""
        if xp is np:  # the view the writes use, reshaped (a numpy view: no torch call)
            return self._flat[name][0].host.reshape(self.n_envs, -1)  # type: ignore[union-attr]
        assert self.data is not None
        return self.data.get(name)

    def take_transitions(self) -> TensorDict:
        """Pops every unpopped transition, env by env in time order.

        Does no device-to-host synchronisation while the host counts are exact; when
        a step's active rows were known only on the device, reads the per-row
        counts first (one synchronisation of ``n_envs`` integers).

        Returns:
            A flat TensorDict with ``obs, next_obs, acts, rews, terminated,
            truncated``, batch ``(n,)``; a copy, never a view.
        """
        assert self.data is not None and "acts" in self.data
        self._rebase()
        width = int(self._bound.max())
        if 4 * (self.capacity + 1) <= 5 * width:  # little more to read, and each grid cell is its flat slot
            width = self.capacity + 1
        xp, cur, col, carry = self._grid(width)
        ends, _ = self._marks(width, xp)
        live = col < cur[:, None]
        ends &= live
        is_tr = ~ends & live
        out = self._gather(self._transition_slots(is_tr))
        last = _last_true(ends, col, xp)  # each row's last run end
        carry = xp.where(last >= 0, cur - last - 1, carry + cur)
        self._ep_carry = torch.from_numpy(carry) if xp is np else carry
        self._restart_at_cursor()
        return out

    def take_segments(self, finished_only: bool) -> tuple[Segments, Obs, TensorDict]:
        """Pops trajectories: completed episodes, and partial ones unless ``finished_only``.

        Reads the marks of the unpopped slots, the cursors and the carried episode
        steps to the host: one synchronisation, of ``n_envs`` x (slots since the
        last pop) small integers, never of observation data.

        Args:
            finished_only: Keep the running episodes' slots unpopped.

        Returns:
            The segments, the observations of all segments concatenated (each
            segment's ``last - first + 1`` slots), and the per-action fields of all
            segments concatenated (``last - first`` slots each).
        """
        assert self.data is not None and "acts" in self.data
        self._rebase()
        width = int(self._bound.max()) + 1
        xp, cur, col, carried = self._grid(width)
        ends, terminal = self._marks(width, xp)
        live = col < cur[:, None]
        if xp is np:  # kinds one byte a slot (nonzero reads them next): 2 terminal, 1 cut
            kinds = np.where(live, ends.view(np.int8) + terminal.view(np.int8), np.int8(0))
            cursors, carry = cur, carried.copy()
        else:  # int64, to go to the host in one transfer with the cursors
            kinds = torch.where(live, ends * 1 + terminal * 1, 0)
            host = torch.cat([kinds, cur[:, None], carried[:, None]], 1).cpu().numpy()
            kinds, cursors, carry = host[:, :-2], host[:, -2], host[:, -1]
        segments, keep_from = cut_segments(kinds, cursors, carry, finished_only)
        started = keep_from > 0  # the running episode began in these slots
        if finished_only:
            self.n_unpopped = np.maximum(cursors - keep_from, 0)
            self.counts_exact = True
            carry = np.where(started, 0, carry)
        else:
            carry = np.where(started, cursors - keep_from, carry + cursors)
        start = segments.env * (self.capacity + 1) + segments.first
        n_acts = segments.last - segments.first
        obs_at, steps_at = self._slots(ranges(start, n_acts + 1)), self._slots(ranges(start, n_acts))
        # in range by construction: runs of each row's slots up to its cursor (short of the trash column)
        obs = self._take("obs", obs_at, True)
        steps = self._take_fields(STEP_FIELDS, steps_at, True)
        self._ep_carry = torch.from_numpy(carry) if xp is np else self._index(carry)
        if finished_only:
            self._keep_from(keep_from)
        else:
            self._restart_at_cursor()
        return segments, obs, steps

    def _transition_slots(self, is_tr: Any) -> Index:
        """The flat slots where ``is_tr`` (rows x their first slots) holds, row by row.

        For a numpy ``is_tr`` (the CPU), numpy's ``flatnonzero`` (a host array); elsewhere a scatter
        to ranks counted on the host, so that no sync is needed while the host counts
        are exact.
        """
        width = is_tr.shape[1]
        if isinstance(is_tr, np.ndarray):  # (the pop then zeroes the counts: none to count here)
            return self._grid_slots(np.flatnonzero(is_tr), width)
        if not self.counts_exact:
            self.n_unpopped = is_tr.sum(1).cpu().numpy()
        counts = self.n_unpopped
        n = int(counts.sum())
        offset = torch.as_tensor(np.cumsum(counts) - counts, device=self.device)
        rank = is_tr.cumsum(1) - 1 + offset[:, None]
        target = torch.where(is_tr, rank, n)
        slot = self._rows[:, None] * (self.capacity + 1) + torch.arange(width, device=self.device)
        index = torch.zeros(n + 1, dtype=torch.long, device=self.device)
        index.scatter_(0, target.flatten(), slot.flatten())
        return index[:n]

    def _index(self, host: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(host, dtype=torch.long, device=self.device)

    def _slots(self, host: np.ndarray) -> Index:
        """Host slot indices as the reads take them: the array itself on the CPU route, else a tensor."""
        return host if self.host_route() else self._index(host)

    def _grid_slots(self, at: np.ndarray, width: int) -> np.ndarray:
        """Flat slot indices of positions ``at`` of a (rows x ``width``) grid of each row's first slots."""
        if width == self.capacity + 1:  # the whole rows: positions are slots
            return at
        return at + (at // width) * (self.capacity + 1 - width)

    def _gather(self, index: Index) -> TensorDict:
        """The transitions at flat slots ``index``: step fields, ``obs``, ``next_obs`` (the next slot).

        Every ``index`` and ``index + 1`` is a slot by construction (positions of the grid
        of slots before the cursors, which stop short of the trash column), so a host
        index needs no range check.
        """
        fields = {name: self._take(name, index, True) for name in STEP_FIELDS}
        fields["obs"] = self._take("obs", index, True)
        fields["next_obs"] = self._take("obs", index + 1, True)
        return TensorDict(fields, batch_size=[len(index)], device=self.device)

    def _clear_flags(self, upto: int) -> None:
        """Zeroes the done and cut flags of each row's first ``upto`` slots (slots to reuse)."""
        assert self.data is not None
        xp = np if self.host_route() else torch
        for name in FLAGS:
            if name in self._flat:
                self._flag(name, xp)[:, :upto] = False

    def _clear_flags_past(self, cur: torch.Tensor, upto: int) -> None:
        """Zeroes the done and cut flags at and past each row's cursor ``cur`` (a column), below ``upto``.

        Those slots hold nothing recorded, and the steps rely on their flags being
        clear: a final observation's slot never gets its flags written, and its
        ``terminated`` would mark the reset observation after it as a run end.
        """
        assert self.data is not None
        stale = torch.arange(upto, device=self.device) >= cur[:, None]
        for name in FLAGS:
            if name in self._flat:
                self.data[name][:, :upto].masked_fill_(stale, False)

    def _restart_at_cursor(self) -> None:
        """Moves each row's current observation to slot 0: all else is popped."""
        assert self.data is not None
        host = self.host_route()
        pos: Index = self._host("_pos") if host else self._pos
        base: Index = self._host("_base") if host else self._base
        for rows in self._flat["obs"]:
            rows.move(pos, base)
        top = int(self._bound.max())
        self._clear_flags(min(top + 2, self.capacity + 1))
        if isinstance(pos, np.ndarray):  # in place: the cursors' numpy view stays valid for the next step
            pos[:] = base
        else:
            self._pos = self._base.clone()
        self.n_unpopped[:] = 0
        self._bound[:] = 0
        self.counts_exact = True
        self._fit(top)

    def _keep_from(self, keep_from: np.ndarray) -> None:
        """Shifts each row's slots ``keep_from[e]..cur[e]`` to the row's start."""
        assert self.data is not None
        top, width = int(self._bound.max()), int(self.n_unpopped.max() + 1)
        first = torch.as_tensor(keep_from, device=self.device)
        cols = (first[:, None] + torch.arange(width, device=self.device)).clamp_(max=self.capacity)
        self.data[:, :width] = self.data[self._rows[:, None], cols]
        self._pos = self._base + torch.as_tensor(self.n_unpopped, device=self.device)
        self._clear_flags_past(self._cur, min(top + 2, self.capacity + 1))
        self._bound = self.n_unpopped.copy()
        self._fit(top)


def _last_true(mask: Any, col: Any, xp: Any) -> Any:
    """Each row's last column where ``mask`` (rows x columns) holds, or -1."""
    if xp is np:  # the largest column + 1 where set, in the narrowest integers that hold it
        width = mask.shape[1]
        if not width:
            return np.full(mask.shape[0], -1, dtype=np.int64)
        dtype = np.int16 if width < 2**15 else np.int64
        return (mask * np.arange(1, width + 1, dtype=dtype)).max(1).astype(np.int64) - 1
    return torch.amax(torch.where(mask, col, -1), 1)
