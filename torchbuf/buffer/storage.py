"""Preallocated per-env slot streams on the device.

Each env owns one row of slots. Slot ``cur[e]`` holds the observation the env's next
action applies to; every step writes the action, reward and flags into that slot and
the next observation into the slot after it. Where an episode ends, the slot after
the transition holds the terminal observation (and the episode's length in
``ep_len``), and the reset observation goes one slot further. Observations are thus
stored once: a transition's ``next_obs`` is the following slot. A row reset in the
middle of an episode gets a *cut* mark (``ep_len == -1``) on its last observation.

The storage sees tensors only, never an env. The host keeps two counts per row that
it knows without reading the device: the number of unpopped transitions (exact unless
a step's active rows were only known on the device) and an upper bound on the cursor,
which decides growth. Column ``capacity`` is a trash column that absorbs the writes
of rows that have nothing to write, so no step needs a data-dependent branch. Each
row's cursor is kept as a flat slot index, the index the step writes at, so a step
computes no slot index from a row and a column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchbuf.buffer.record import StepRecord
from torchbuf.buffer.rows import Index, Rows, add_rows, alloc, check_fits, get_rows, ranges, spec
from torchbuf.buffer.segments import Segments, cut_segments
from torchbuf.data.types import Obs

_STEP_FIELDS = ("acts", "rews", "terminated", "truncated")


class SlotStorage:
    """Per-env slot streams in one preallocated TensorDict.

    Args:
        n_envs: Number of rows (envs).
        device: Where the tensors live.
        capacity: Initial slots per row; doubled whenever a step could overflow.
    """

    def __init__(self, n_envs: int, device: torch.device | str = "cpu", capacity: int = 64):
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity < 1:
            raise ValueError(f"capacity: expected a positive number of slots per env, got {capacity!r}")
        self.n_envs = n_envs
        self.device = torch.device(device)
        self.capacity = max(int(capacity), 4)
        self.data: TensorDict | None = None
        self._rows = torch.arange(n_envs, device=self.device)
        self._base = self._rows * (self.capacity + 1)
        self._flat: dict[str, list[Rows]] = {}
        self._pos = self._base.clone()  # each row's cursor, as a flat slot index
        self._ep_t = torch.zeros(n_envs, dtype=torch.int32, device=self.device)
        self._awaiting = torch.zeros(n_envs, dtype=torch.bool, device=self.device)
        self.counts_exact = True
        self.n_unpopped = np.zeros(n_envs, dtype=np.int64)
        self._bound = np.zeros(n_envs, dtype=np.int64)
        self._slack = 0  # free slots left in every row by the bound, at least (0: unknown)

    # ------------------------------------------------------------------ writing
    def start(self, obs: Obs, awaiting: bool = False) -> None:
        """Discards everything and starts every row at ``obs`` (a reset).

        Args:
            obs: Reset observations, batch ``(n_envs,)``, on the storage device.
            awaiting: The rows' first observations come later, through
                :meth:`restart` (``obs`` only fixes shapes and dtypes).
        """
        if self.data is None or not self._obs_matches(obs):
            check_fits(obs, self.n_envs, self.capacity + 1, self.device)
            self.data = TensorDict(
                {"obs": alloc(obs, self.n_envs, self.capacity + 1), "ep_len": self._zeros(torch.int32)},
                batch_size=[self.n_envs, self.capacity + 1],
                device=self.device,
            )
            self._refresh_views()
        self.data["ep_len"].zero_()
        self._pos = self._base.clone()
        self._ep_t.zero_()
        self._awaiting.fill_(awaiting)
        self.counts_exact = True
        self.n_unpopped[:] = 0
        self._bound[:] = 0
        self._put("obs", self._base, obs)

    def restart(self, obs: Obs, mask: torch.Tensor, env_ids: np.ndarray | None = None) -> None:
        """Starts new episodes in the rows where ``mask`` holds, keeping all data.

        A row whose episode ended with ``final_in_obs`` takes ``obs`` in the slot it
        kept free; a row still running is cut there (its fragment ends, not
        terminal) and starts ``obs`` in the next slot.

        Args:
            obs: Observations, batch ``(n,)``; read where ``mask``.
            mask: Bool, shape ``(n,)``: the rows to restart.
            env_ids: Host indices of the ``n`` rows, or ``None`` for all rows.
        """
        assert self.data is not None, "start() first"
        self._bound[slice(None) if env_ids is None else env_ids] += 1
        self._ensure_capacity()
        rows = self._rows if env_ids is None else torch.as_tensor(env_ids, device=self.device)
        base, awaiting = self._base[rows], self._awaiting[rows]
        cur = self._pos[rows] - base
        cut = mask & ~awaiting
        self.data["ep_len"][rows, torch.where(cut, cur, self.capacity)] = -1
        at = cur + cut
        self._put("obs", torch.where(mask, base + at, base + self.capacity), obs)
        self.data["ep_len"][rows, torch.where(mask, at, self.capacity)] = 0
        self._pos[rows] = base + at
        self._ep_t[rows] = torch.where(mask, 0, self._ep_t[rows])
        self._awaiting[rows] = awaiting & ~mask

    def write(self, rec: StepRecord) -> None:
        """Writes one step of the envs in ``rec`` at their cursors.

        Every env is written at once through flat slot indices. Where the host
        knows that no episode ended in the step, the episode bookkeeping is skipped.

        Args:
            rec: The step, on the storage device.
        """
        assert self.data is not None, "start() first"
        if "acts" not in self._flat:
            self._alloc_step_fields(rec)
        self._count_on_host(rec)
        on_host = rec.dones_host is not None and rec.active is None and self.device.type == "cpu"
        pos, ep_t = (self._pos.numpy(), self._ep_t.numpy()) if on_host else (self._pos, self._ep_t)
        rows: Any = rec.env_ids  # host ids on the CPU route, else a tensor
        if rows is not None and not on_host:
            rows = torch.as_tensor(rows, device=self.device)
        here, active = get_rows(pos, rows), rec.active
        trash: Any = None if on_host else get_rows(self._trash, rows)
        if active is not None:
            here = torch.where(active, here, trash)
        for name in _STEP_FIELDS:
            self._put(name, here, getattr(rec, name))
        nxt = here + 1 if active is None else torch.where(active, here + 1, trash)
        steps = 1 if active is None else active.int()
        if rec.dones_host is not None:
            self._ends_on_host(rec, pos, ep_t, rows, nxt, steps)
        else:
            self._ends_on_device(rec, rows, nxt, steps, trash)

    def _ends_on_host(self, rec: StepRecord, pos: Any, ep_t: Any, rows: Any, nxt: Any, steps: Any) -> None:
        """Episode ends the host knows: every row written once, the ended rows again.

        ``pos``, ``ep_t``, ``rows`` and ``nxt`` are tensors, or on the CPU numpy
        views of the cursors' and episode steps' memory and host indices, so that
        a full-batch step makes no torch call for its bookkeeping.
        """
        assert rec.dones_host is not None
        self._put("obs", nxt, rec.obs)
        add_rows(ep_t, rows, steps)
        add_rows(pos, rows, steps)
        if not rec.dones_host.any():
            return
        ended = rec.final_rows if rec.final_rows is not None else np.flatnonzero(rec.dones_host)
        at_step = torch.as_tensor(ended, device=self.device)
        at = at_step if isinstance(pos, torch.Tensor) else ended
        at_row = at if rows is None else rows[at]
        final = nxt[at]
        if not rec.final_in_obs:
            assert rec.final_obs is not None, "an episode ended without its final observation"
            ended_final = rec.final_obs if rec.final_rows is not None else rec.final_obs[at_step]
            self._put("obs", final, ended_final)
            self._put("obs", final + 1, rec.obs[at_step])
        self._put("ep_len", final, ep_t[at_row])
        ep_t[at_row] = 0
        pos[at_row] += 1
        if rec.final_in_obs:
            self._awaiting[at_row] = True

    def _ends_on_device(
        self,
        rec: StepRecord,
        rows: torch.Tensor | None,
        nxt: torch.Tensor,
        steps: Any,
        trash: torch.Tensor,
    ) -> None:
        """Episode ends known only on the device: full-batch writes, no sync.

        An ended row's terminal slot is ``nxt`` and its reset observation goes one
        slot further; a running row writes its terminal-slot values to the trash
        column. Slots past a cursor hold no mark, so running rows write none.
        """
        done = rec.terminated | rec.truncated
        if rec.active is not None:
            done = done & rec.active
        ended_at = torch.where(done, nxt, trash)
        reset_at = nxt + done
        if rec.final_in_obs:
            self._put("obs", nxt, rec.obs)
            self._awaiting = _set(self._awaiting, rows, get_rows(self._awaiting, rows) | done)
        else:
            self._put("obs", reset_at, rec.obs)
            self._put("obs", ended_at, rec.obs if rec.final_obs is None else rec.final_obs)
        ep_t = get_rows(self._ep_t, rows) + steps
        self._put("ep_len", ended_at, ep_t)
        self._ep_t = _set(self._ep_t, rows, ep_t.masked_fill_(done, 0))
        if rec.active is None:
            self._pos = _set(self._pos, rows, reset_at)
        else:  # an inactive row's nxt is the trash column: its cursor stays
            add_rows(self._pos, rows, steps + done)

    def _count_on_host(self, rec: StepRecord) -> None:
        """Advances the host counts (exact where the host has the flags) and grows."""
        if rec.env_ids is None and rec.active is None and rec.dones_host is not None:
            self.n_unpopped += 1
            self._bound += 1
            ended = rec.dones_host.any()
            if ended:
                self._bound += rec.dones_host
            if self._slack >= 2:  # no row can reach the last slot: skip the check
                self._slack -= 1 + int(ended)
            else:
                self._ensure_capacity()
            return
        host_rows = slice(None) if rec.env_ids is None else rec.env_ids
        active: int | np.ndarray = 1
        if rec.active is not None and rec.active_host is not None:
            active = rec.active_host.astype(np.int64)
        elif rec.active is not None:
            self.counts_exact = False
        ends: int | np.ndarray = 1 if rec.dones_host is None else rec.dones_host.astype(np.int64)
        self._bound[host_rows] += active + ends
        self.n_unpopped[host_rows] += active
        self._ensure_capacity()

    def _ensure_capacity(self) -> None:
        """Grows where a cursor bound reaches the last slot; notes how many slots stay free."""
        top = int(self._bound.max())
        if top + 1 >= self.capacity:
            self._grow(top + 2)
        self._slack = self.capacity - 2 - top  # a full-batch step uses at most 2 of them

    @property
    def _cur(self) -> torch.Tensor:
        """Each row's cursor as a column (for pops and checkpoints; steps use the flat slot)."""
        return self._pos - self._base

    # ------------------------------------------------------------------ reading
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
        width = int(self._bound.max())
        col = torch.arange(width, device=self.device)
        is_tr = (self.data["ep_len"][:, :width] == 0) & (col < self._cur[:, None])
        if not self.counts_exact:
            self.n_unpopped = is_tr.sum(1).cpu().numpy()
        counts = self.n_unpopped
        n = int(counts.sum())
        offset = torch.as_tensor(np.cumsum(counts) - counts, device=self.device)
        rank = is_tr.cumsum(1) - 1 + offset[:, None]
        target = torch.where(is_tr, rank, n)
        slot = self._rows[:, None] * (self.capacity + 1) + col
        index = torch.zeros(n + 1, dtype=torch.long, device=self.device)
        index.scatter_(0, target.flatten(), slot.flatten())
        out = self._gather(index[:n], index[:n] + 1)
        self._restart_at_cursor()
        return out

    def take_segments(self, finished_only: bool) -> tuple[Segments, Obs, TensorDict]:
        """Pops trajectories: completed episodes, and partial ones unless ``finished_only``.

        Reads the marks of the unpopped slots and the cursors to the host: one
        synchronisation, of ``n_envs`` x (slots since the last pop) integers, never
        of observation data.

        Args:
            finished_only: Keep the running episodes' slots unpopped.

        Returns:
            The segments, the observations of all segments concatenated (each
            segment's ``last - first + 1`` slots), and the per-action fields of all
            segments concatenated (``last - first`` slots each).
        """
        assert self.data is not None and "acts" in self.data
        width = int(self._bound.max()) + 1
        col = torch.arange(width, device=self.device)
        marks = torch.where(col < self._cur[:, None], self.data["ep_len"][:, :width], 0)
        host = torch.cat([marks, self._cur[:, None]], 1).cpu().numpy()
        segments, keep_from = cut_segments(host[:, :-1], host[:, -1], finished_only)
        if finished_only:
            self.n_unpopped = np.maximum(host[:, -1] - keep_from, 0)
            self.counts_exact = True
        start = segments.env * (self.capacity + 1) + segments.first
        n_acts = segments.last - segments.first
        obs = self._take("obs", self._index(ranges(start, n_acts + 1)))
        steps = self._take_fields(_STEP_FIELDS, self._index(ranges(start, n_acts)))
        if finished_only:
            self._keep_from(keep_from)
        else:
            self._restart_at_cursor()
        return segments, obs, steps

    # ------------------------------------------------------------------ helpers
    def _index(self, host: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(host, dtype=torch.long, device=self.device)

    def _gather(self, index: torch.Tensor, next_index: torch.Tensor) -> TensorDict:
        out = self._take_fields(_STEP_FIELDS, index)
        out.set("obs", self._take("obs", index))
        out.set("next_obs", self._take("obs", next_index))
        return out

    def _restart_at_cursor(self) -> None:
        """Moves each row's current observation to slot 0: all else is popped."""
        assert self.data is not None
        self._put("obs", self._base, self._take("obs", self._pos))
        self.data["ep_len"][:, : int(self._bound.max()) + 2].zero_()
        self._pos = self._base.clone()
        self.n_unpopped[:] = 0
        self._bound[:] = 0
        self.counts_exact = True

    def _keep_from(self, keep_from: np.ndarray) -> None:
        """Shifts each row's slots ``keep_from[e]..cur[e]`` to the row's start."""
        assert self.data is not None
        width = int(self.n_unpopped.max() + 1)
        first = torch.as_tensor(keep_from, device=self.device)
        cols = (first[:, None] + torch.arange(width, device=self.device)).clamp_(max=self.capacity)
        self.data[:, :width] = self.data[self._rows[:, None], cols]
        self._pos = self._base + torch.as_tensor(self.n_unpopped, device=self.device)
        upto = min(int(self._bound.max()) + 2, self.capacity + 1)
        col = torch.arange(upto, device=self.device)
        self.data["ep_len"][:, :upto].masked_fill_(col >= self._cur[:, None], 0)
        self._bound = self.n_unpopped.copy()

    def _grow(self, needed: int) -> None:
        assert self.data is not None
        capacity, cur = max(2 * self.capacity, needed), self._cur
        grown = self.data.new_zeros(torch.Size([self.n_envs, capacity + 1]))
        grown[:, : self.capacity] = self.data[:, : self.capacity]
        self.data, self.capacity = grown, capacity
        self._refresh_views()
        self._pos = self._base + cur

    def _alloc_step_fields(self, rec: StepRecord) -> None:
        assert self.data is not None
        for name in _STEP_FIELDS:
            self.data[name] = alloc(getattr(rec, name), self.n_envs, self.capacity + 1)
        self._refresh_views()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles and deep copies without the flat views: they would become independent arrays."""
        state = self.__dict__.copy()
        state["_flat"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuilds the flat views over the copied tensors."""
        self.__dict__.update(state)
        if self.data is not None:
            self._refresh_views()

    def _refresh_views(self) -> None:
        """Flat ``(n_envs * (capacity + 1), ...)`` views of every field's leaves, for the writes."""
        assert self.data is not None
        flat = self.data.reshape(-1)
        self._flat = {}
        for name in flat.keys():  # noqa: SIM118 (iterating a TensorDict walks its rows)
            assert isinstance(name, str)
            field = flat[name]
            leaves = [(None, field)] if isinstance(field, torch.Tensor) else field.items(True, True)
            self._flat[name] = [Rows(key, leaf) for key, leaf in leaves]
        self._base = self._rows * (self.capacity + 1)
        self._trash = self._base + self.capacity

    def _put(self, name: str, index: Index, value: Obs | np.ndarray) -> None:
        """Writes ``value`` (a tensor or TensorDict, batch ``(n,)``) at flat slot ``index``."""
        for rows in self._flat[name]:
            rows.put(index, value if rows.key is None else value.get(rows.key))  # type: ignore[union-attr]

    def _take(self, name: str, index: torch.Tensor) -> Obs:
        """Reads field ``name`` at flat slot ``index`` (a copy): a tensor, or a TensorDict."""
        leaves = self._flat[name]
        if leaves[0].key is None:
            return leaves[0].take(index)
        out = TensorDict({}, batch_size=index.shape[:1], device=self.device)
        for rows in leaves:
            out.set(rows.key, rows.take(index))
        return out

    def _take_fields(self, names: tuple[str, ...], index: torch.Tensor) -> TensorDict:
        out = TensorDict({}, batch_size=index.shape[:1], device=self.device)
        for name in names:
            out.set(name, self._take(name, index))
        return out

    def _zeros(self, dtype: torch.dtype, shape: tuple[int, ...] = ()) -> torch.Tensor:
        return torch.zeros((self.n_envs, self.capacity + 1, *shape), dtype=dtype, device=self.device)

    def _obs_matches(self, obs: Obs) -> bool:
        assert self.data is not None
        stored = self.data["obs"]
        if isinstance(obs, torch.Tensor) or isinstance(stored, torch.Tensor):
            return (
                isinstance(obs, torch.Tensor)
                and isinstance(stored, torch.Tensor)
                and (obs.shape[1:] == stored.shape[2:] and obs.dtype == stored.dtype)
            )
        return spec(obs, 1) == spec(stored, 2)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The unpopped state: live slots, cursors and host counts.

        Only the slots up to the host bound on the cursors are kept (the rest of
        each row holds nothing unpopped). Tensors are views of the storage, on its
        device: copy or save them before the next step.

        Returns:
            A dict with ``n_envs``, ``capacity``, ``data`` (a TensorDict of batch
            ``(n_envs, width)``, or ``None`` before the first start), ``cur``,
            ``ep_t``, ``awaiting`` (tensors of shape ``(n_envs,)``) and the host
            values ``counts_exact``, ``n_unpopped``, ``bound``.
        """
        width = int(self._bound.max()) + 1
        return {
            "n_envs": self.n_envs,
            "capacity": self.capacity,
            "data": None if self.data is None else self.data[:, :width],
            "cur": self._cur,
            "ep_t": self._ep_t,
            "awaiting": self._awaiting,
            "counts_exact": self.counts_exact,
            "n_unpopped": self.n_unpopped.copy(),
            "bound": self._bound.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` (possibly saved from another device).

        Args:
            state: What :meth:`state_dict` returned.

        Raises:
            ValueError: the state holds another number of envs, or more slots
                than its capacity.
        """
        if int(state["n_envs"]) != self.n_envs:
            raise ValueError(f"the state has {state['n_envs']} envs, the storage {self.n_envs}")
        data = state["data"]
        width = 0 if data is None else int(data.batch_size[1])
        if width > int(state["capacity"]) + 1:
            raise ValueError(f"the state holds {width} slots per env, more than its capacity")
        self.capacity = max(int(state["capacity"]), self.capacity)
        self.data = None if data is None else self._padded(data)
        cur = state["cur"].to(self.device, torch.long)
        self._ep_t = state["ep_t"].to(self.device, self._ep_t.dtype).clone()
        self._awaiting = state["awaiting"].to(self.device, self._awaiting.dtype).clone()
        self.counts_exact = bool(state["counts_exact"])
        self.n_unpopped = np.array(state["n_unpopped"], dtype=np.int64)
        self._bound = np.array(state["bound"], dtype=np.int64)
        self._slack = 0
        self._base = self._rows * (self.capacity + 1)
        self._pos = self._base + cur
        if self.data is not None:
            self._refresh_views()

    def _padded(self, data: TensorDictBase) -> TensorDict:
        """``data`` (batch ``(n_envs, width)``) in a fresh zeroed storage of ``capacity + 1`` slots."""
        slots = self.capacity + 1
        full = TensorDict(
            {
                key: torch.zeros((self.n_envs, slots, *leaf.shape[2:]), dtype=leaf.dtype, device=self.device)
                for key, leaf in data.items(True, True)
            },
            batch_size=[self.n_envs, slots],
            device=self.device,
        )
        full[:, : data.batch_size[1]] = data.to(self.device)
        return full


def _set(t: torch.Tensor, rows: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """``t`` with ``value`` in ``rows``: ``value`` itself when it covers every row (no copy)."""
    if rows is None:
        return value
    t[rows] = value
    return t
