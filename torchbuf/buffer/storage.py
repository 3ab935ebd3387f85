"""Preallocated per-env slot streams on the device.

Each env owns one row of slots. Slot ``cur[e]`` holds the observation the env's next
action applies to; every step writes the action, reward and done flags into that slot
and the next observation into the slot after it. Where an episode ends, the slot after
the transition holds the terminal observation, and the reset observation goes one slot
further. Observations are thus stored once: a transition's ``next_obs`` is the
following slot. A slot *ends a run* (no transition starts there) where the slot
before it is done (a terminal observation) or its ``cut`` flag is set (a row reset in
the middle of an episode: the fragment's last observation). Episode lengths are read
from the flags at pop time; the steps each row's running episode made before its
first slot are carried across pops (``ep_carry``).

The storage sees tensors only, never an env. The host keeps two counts per row that
it knows without reading the device: the number of unpopped transitions (exact unless
a step's active rows were only known on the device) and an upper bound on the cursor,
which decides growth. Column ``capacity`` is a trash column that absorbs the writes
of rows that have nothing to write, so no step needs a data-dependent branch. Each
row's cursor is kept as a flat slot index, less the number of full-batch steps since
it was last rebased (``shift``): a full-batch step writes through views of the slots
that start ``shift`` slots later, so its only index arithmetic is ``cursor + done``.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchbuf.buffer.checkpoint import StorageState
from torchbuf.buffer.reading import STEP_FIELDS, SlotReading
from torchbuf.buffer.record import StepRecord
from torchbuf.buffer.rows import Index, Rows, add_rows, alloc, check_fits, get_rows, spec
from torchbuf.data.types import Obs

_SHIFTS = 1024
"""Full-batch steps between rebases of the cursors (views made per field leaf)."""


class SlotStorage(StorageState, SlotReading):
    """Per-env slot streams in one preallocated TensorDict.

    Args:
        n_envs: Number of rows (envs).
        device: Where the tensors live.
        capacity: Initial slots per row; doubled whenever a step could overflow.
            A pop gives back what doubling overshot: rows grown past 1.05x the
            longest pop window seen shrink to it (never below ``capacity``).
    """

    def __init__(self, n_envs: int, device: torch.device | str = "cpu", capacity: int = 64):
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity < 1:
            raise ValueError(f"capacity: expected a positive number of slots per env, got {capacity!r}")
        self.n_envs = n_envs
        self.device = torch.device(device)
        self.capacity = self._initial = max(int(capacity), 4)
        self._peak = 0  # the highest cursor bound any pop window reached
        self.data: TensorDict | None = None
        self._rows = torch.arange(n_envs, device=self.device)
        self._base = self._rows * (self.capacity + 1)
        self._flat: dict[str, list[Rows]] = {}
        self._pos = self._base.clone()  # each row's cursor as a flat slot index, less _shift
        self._host_views: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
        self._shift, self._shifts = 0, 1  # shifted views per leaf: set with the views
        self._ep_carry = torch.zeros(n_envs, dtype=torch.int64, device=self.device)
        self._awaiting = torch.zeros(n_envs, dtype=torch.bool, device=self.device)
        self.counts_exact = True
        self._due_steps = self._due_ends = 0
        self._unpopped = np.zeros(n_envs, dtype=np.int64)
        self._bounds = np.zeros(n_envs, dtype=np.int64)
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
                {"obs": alloc(obs, self.n_envs, self.capacity + 1), "cut": self._zeros(torch.bool)},
                batch_size=[self.n_envs, self.capacity + 1],
                device=self.device,
            )
            self._refresh_views()
        self._clear_flags(self.capacity + 1)
        self._pos, self._shift = self._base.clone(), 0
        self._ep_carry.zero_()
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
        self._rebase()
        self._bound[slice(None) if env_ids is None else env_ids] += 1
        self._ensure_capacity()
        rows = self._rows if env_ids is None else torch.as_tensor(env_ids, device=self.device)
        base, awaiting = self._base[rows], self._awaiting[rows]
        cur = self._pos[rows] - base
        cut = mask & ~awaiting
        self.data["cut"][rows, torch.where(cut, cur, self.capacity)] = True
        at = cur + cut
        self._put("obs", torch.where(mask, base + at, base + self.capacity), obs)
        self._pos[rows] = base + at
        self._awaiting[rows] = awaiting & ~mask

    def write(self, rec: StepRecord) -> None:
        """Writes one step of the envs in ``rec`` at their cursors.

        Args:
            rec: The step, on the storage device.
        """
        assert self.data is not None, "start() first"
        if "acts" not in self._flat:
            self._alloc_step_fields(rec)
        if rec.env_ids is None and rec.active is None:
            if rec.dones_host is None:
                self._count_full_batch(None)
                self._write_full_batch(rec)
                return
            if self.device.type == "cpu":
                self._write_host_batch(rec)
                return
            self._count_full_batch(rec.dones_host.nonzero()[0])  # a device storage fed host flags
        else:
            self._count_on_host(rec)
        self._rebase()
        on_host = rec.dones_host is not None and rec.active is None and self.device.type == "cpu"
        pos = self._host("_pos") if on_host else self._pos
        rows: Any = rec.env_ids  # host ids on the CPU route, else a tensor
        if rows is not None and not on_host:
            rows = torch.as_tensor(rows, device=self.device)
        here, active = get_rows(pos, rows), rec.active
        trash: Any = None if on_host else get_rows(self._trash, rows)
        if active is not None:
            here = torch.where(active, here, trash)
        for name in STEP_FIELDS:
            self._put(name, here, getattr(rec, name))
        nxt = None if active is None else torch.where(active, here + 1, trash)
        steps = 1 if active is None else active.int()
        if rec.dones_host is not None:
            add_rows(pos, rows, steps)
            self._ends_on_host(
                rec, pos, rows, get_rows(pos, rows) if nxt is None else nxt, np.flatnonzero(rec.dones_host)
            )
        else:
            self._ends_on_device(rec, rows, here + 1 if nxt is None else nxt, steps)

    def _write_full_batch(self, rec: StepRecord) -> None:
        """Every row steps, episode ends known only on the device: eight ops, no sync.

        The fields go to each row's cursor slot; the final observations to the next
        slot of every row, and the step's observations to next slot + ``done`` after
        them, so that a running row's observation overwrites its final one (ops on
        one device stream run in order) and an ended row's reset observation lands
        one slot further.
        """
        assert rec.final_rows is None, "a full batch of final observations, or none"
        if self._shift + 1 >= self._shifts:
            self._rebase()
        k, pos = self._shift, self._pos
        host = self.host_route()  # CPU leaves: one numpy view of the cursors serves every write
        at = self._host("_pos") if host else pos
        for name in STEP_FIELDS:
            self._put(name, at, getattr(rec, name), k)
        done = _done(rec)
        self._pos, self._shift = pos + done, k + 1
        self._put_next_obs(rec, at, self._host("_pos") if host else self._pos, k + 1)
        if rec.final_in_obs:
            self._awaiting = self._awaiting | done

    def _write_host_batch(self, rec: StepRecord) -> None:
        """Every row steps on a CPU storage, episode ends known on the host: numpy writes, no torch op.

        The fields go to each row's cursor slot, then the cursors move on in place
        (through the numpy view of their memory) and :meth:`_ends_on_host` writes
        the observations.
        """
        done = rec.dones_host
        assert done is not None
        ends = done.nonzero()[0]
        self._count_full_batch(ends)
        self._rebase()
        pos = self._host("_pos")
        for name in STEP_FIELDS:
            self._put(name, pos, getattr(rec, name))
        pos += 1
        self._ends_on_host(rec, pos, None, pos, ends)

    def _ends_on_host(self, rec: StepRecord, pos: Any, rows: Any, nxt: Any, ends: np.ndarray) -> None:
        """Episode ends the host knows: each row's observation written once, the ended rows' final ones.

        A row's observation goes to its next slot, or one slot further where its
        episode ended (the final observation takes the next slot, written first),
        and the ended rows' cursors move past that slot. With ``final_in_obs`` the
        observations are the final ones and the slot after them stays free for the
        reset observation (:meth:`restart`).

        Args:
            rec: The step.
            pos: The cursors, already moved past the step's slot: a tensor, or on
                the CPU a numpy view of their memory (no torch call).
            rows: The stepping rows' indices (host ids on the CPU, else a tensor),
                or ``None`` for every row.
            nxt: Each stepping row's next slot.
            ends: Host positions (in this step) of the rows whose episode ended.
        """
        if not len(ends):
            self._put("obs", nxt, rec.obs)
            return
        tensors = isinstance(pos, torch.Tensor)  # else numpy views and host indices (the CPU route)
        at = torch.as_tensor(ends, device=self.device) if tensors else ends
        at_row = at if rows is None else rows[at]
        assert rec.dones_host is not None
        skip = torch.as_tensor(rec.dones_host, device=self.device) if tensors else rec.dones_host
        if rec.final_in_obs:
            self._put("obs", nxt, rec.obs)
            (self._awaiting if tensors else self._host("_awaiting"))[at_row] = True
        else:
            assert rec.final_obs is not None, "an episode ended without its final observation"
            final: Any = rec.final_obs
            final_at: Any = at
            if rec.final_rows is not None:
                final_at = torch.as_tensor(rec.final_rows, device=self.device) if tensors else rec.final_rows
            else:  # a full batch: its ended rows
                final = final[at] if tensors else _host_rows(final, ends)
            self._put("obs", nxt[final_at], final)
        moved_in_place = nxt is pos  # every row steps: the next slots are the cursors themselves
        if moved_in_place:
            pos += skip
        else:
            pos[at_row] += 1
        if not rec.final_in_obs:  # an ended row's reset observation one slot further
            self._put("obs", nxt if moved_in_place else nxt + skip, rec.obs)

    def _ends_on_device(
        self, rec: StepRecord, rows: torch.Tensor | None, nxt: torch.Tensor, steps: Any
    ) -> None:
        """Episode ends known only on the device, some rows stepping: no sync.

        As in :meth:`_write_full_batch`, the final observations go to the next
        slot and the step's observations to next slot + ``done`` after them; an
        inactive row's next slot is the trash column.
        """
        done = _done(rec)
        if rec.active is not None:
            done = done & rec.active
        reset_at = nxt + done
        self._put_next_obs(rec, nxt, reset_at)
        if rec.final_in_obs:
            self._awaiting = _set(self._awaiting, rows, get_rows(self._awaiting, rows) | done)
        if rec.active is None:
            self._pos = _set(self._pos, rows, reset_at)
        else:  # an inactive row's nxt is the trash column: its cursor stays
            add_rows(self._pos, rows, steps + done)

    def _put_next_obs(self, rec: StepRecord, nxt: Any, reset_at: Any, shift: int = 0) -> None:
        """Writes a device step's observations: the final ones at ``nxt``, then ``obs`` at ``reset_at``.

        ``reset_at`` is ``nxt + done``: a running row's observation overwrites its final
        one (ops on one device stream run in order), an ended row's reset observation
        lands one slot further. With ``final_in_obs`` ``obs`` holds the final ones and
        the next slot stays free for the reset observation.
        """
        if rec.final_in_obs:
            self._put("obs", nxt, rec.obs, shift)
            return
        self._put("obs", nxt, rec.obs if rec.final_obs is None else rec.final_obs, shift)
        self._put("obs", reset_at, rec.obs, shift)

    def _count_full_batch(self, ends: np.ndarray | None) -> None:
        """Advances the host counts for a step of every row, and grows.

        Args:
            ends: The rows whose episode ended (host positions), or ``None`` where only
                the device knows: then every row's bound moves by 2 (a final
                observation may take one more slot).
        """
        self._due_steps += 1
        if ends is None:
            self._due_ends += 1
        elif len(ends):
            self._bounds[ends] += 1  # the final observation's slot
        if self._slack >= 2:  # no row can reach the last slot: skip the check
            self._slack -= 1 if ends is not None and not len(ends) else 2
        else:
            self._ensure_capacity()

    def _count_on_host(self, rec: StepRecord) -> None:
        """Advances the host counts of a step of some rows (exact where the host has the flags) and grows."""
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

    # ------------------------------------------------------------------ helpers
    def _grow(self, needed: int) -> None:
        self._resize(max(2 * self.capacity, needed), self.capacity)

    def _fit(self, top: int) -> None:
        """At a pop (each row's kept slots at its start): shrinks rows that doubling left oversized.

        Args:
            top: The highest cursor bound of the window just popped.
        """
        self._peak = max(self._peak, top)
        fit = max(self._peak + 2 + self._peak // 64, self._initial)  # growth needs bound + 2 slots
        if 20 * self.capacity > 21 * fit:
            self._resize(fit, int(self._bound.max()) + 1)

    def _resize(self, capacity: int, keep: int) -> None:
        """Reallocates every row to ``capacity`` slots (plus the trash column), keeping its first ``keep``."""
        assert self.data is not None
        self._rebase()
        cur = self._cur
        resized = self.data.new_zeros(torch.Size([self.n_envs, capacity + 1]))
        resized[:, :keep] = self.data[:, :keep]
        self.data, self.capacity, self._slack = resized, capacity, 0  # slack: unknown until checked
        self._refresh_views()
        self._pos = self._base + cur

    def _alloc_step_fields(self, rec: StepRecord) -> None:
        assert self.data is not None
        for name in STEP_FIELDS:
            self.data[name] = alloc(getattr(rec, name), self.n_envs, self.capacity + 1)
        self._refresh_views()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles and deep copies without the flat views: they would become independent arrays."""
        state = self.__dict__.copy()
        state["_flat"], state["_host_views"] = {}, {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuilds the flat views over the copied tensors."""
        state.setdefault("_peak", 0)  # pickled before pops gave back overshot capacity
        state.setdefault("_initial", state["capacity"])
        if "n_unpopped" in state:  # pickled before full-batch steps left their counts due
            state["_unpopped"], state["_bounds"] = state.pop("n_unpopped"), state.pop("_bound")
        state.setdefault("_due_steps", 0)
        state.setdefault("_due_ends", 0)
        state.pop("_pos_view", None)  # pickled with the cursors' view alone
        state["_host_views"] = {}
        self.__dict__.update(state)
        if self.data is not None:
            self._refresh_views()

    def _refresh_views(self) -> None:
        """Flat ``(n_envs * (capacity + 1), ...)`` views of every field's leaves, for the writes."""
        assert self.data is not None
        flat = self.data.reshape(-1)
        self._shifts = min(_SHIFTS, self.capacity)
        self._flat = {}
        for name in flat.keys():  # noqa: SIM118 (iterating a TensorDict walks its rows)
            assert isinstance(name, str)
            field = flat[name]
            leaves = [(None, field)] if isinstance(field, torch.Tensor) else field.items(True, True)
            self._flat[name] = [Rows(key, leaf, 1 if name == "cut" else self._shifts) for key, leaf in leaves]
        self._base = self._rows * (self.capacity + 1)
        self._trash = self._base + self.capacity

    def _put(self, name: str, index: Index, value: Obs | np.ndarray, shift: int = 0) -> None:
        """Writes ``value`` (a tensor or TensorDict, batch ``(n,)``) at flat slot ``index + shift``."""
        for rows in self._flat[name]:
            rows.put(index, value if rows.key is None else value.get(rows.key), shift)  # type: ignore[union-attr]

    def _take(self, name: str, index: Index, checked: bool = False) -> Obs:
        """Reads field ``name`` at flat slot ``index`` (a copy): a tensor, or a TensorDict.

        ``checked``: the caller checked the host ``index`` against the slots (:func:`check_slots`).
        """
        leaves = self._flat[name]
        if leaves[0].key is None:
            return leaves[0].take(index, checked)
        out = TensorDict({}, batch_size=[len(index)], device=self.device)
        for rows in leaves:
            out.set(rows.key, rows.take(index, checked))
        return out

    def _take_fields(self, names: tuple[str, ...], index: Index, checked: bool = False) -> TensorDict:
        fields = {name: self._take(name, index, checked) for name in names}
        return TensorDict(fields, batch_size=[len(index)], device=self.device)

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


def _done(rec: StepRecord) -> torch.Tensor:
    """A device step's ``terminated | truncated`` (device steps hold tensors, never host arrays)."""
    return cast(torch.Tensor, rec.terminated | rec.truncated)


def _host_rows(value: Obs | np.ndarray, rows: np.ndarray) -> Obs | np.ndarray:
    """The ``rows`` of a batch on the host: a CPU tensor's through its numpy view, a TensorDict's by torch."""
    if isinstance(value, TensorDictBase):
        return value[torch.from_numpy(rows)]
    host = value.numpy() if isinstance(value, torch.Tensor) else value
    return cast(np.ndarray, host)[rows]


def _set(t: torch.Tensor, rows: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """``t`` with ``value`` in ``rows``: ``value`` itself when it covers every row (no copy)."""
    if rows is None:
        return value
    t[rows] = value
    return t
