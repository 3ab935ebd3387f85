"""The pop API over a slot storage: counters, infos, and typed batches.

Every buffering wrapper owns one :class:`Recorder`; the wrappers only turn their
env's step output into step records (:class:`~torchbuf.buffer.record.StepRecord`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from torchbuf.buffer.infolog import InfoLog
from torchbuf.buffer.record import StepRecord
from torchbuf.buffer.rows import ranges
from torchbuf.buffer.storage import SlotStorage
from torchbuf.data.infos import InfoArray
from torchbuf.data.trajectories import pack
from torchbuf.data.types import Obs, TrajectoryWithRew, TransitionsWithRew


class Recorder:
    """Records steps of ``n_envs`` envs and pops them as typed batches.

    Args:
        n_envs: Number of envs.
        device: Storage device.
        keep_infos: Keep each step's info dicts (host objects) for the batches'
            ``infos``; with ``False`` the batches carry ``infos=None``.
        capacity: Initial slots per env (grows as needed).
    """

    def __init__(self, n_envs: int, device: torch.device | str, keep_infos: bool = True, capacity: int = 64):
        self.n_envs = n_envs
        self.keep_infos = keep_infos
        self.storage = SlotStorage(n_envs, device, capacity)
        self.n_transitions: int | None = None
        self._infos = InfoLog(n_envs)
        self._all_ids = np.arange(n_envs)

    @property
    def device(self) -> torch.device:
        """The storage device."""
        return self.storage.device

    @property
    def n_unpopped(self) -> int:
        """Transitions recorded and not yet returned by any pop."""
        return int(self.storage.n_unpopped.sum())

    def start(self, obs: Obs, awaiting: bool = False) -> None:
        """Discards unpopped data and starts every env at ``obs`` (see ``SlotStorage.start``)."""
        self.storage.start(obs, awaiting)
        self.n_transitions = 0
        self._infos.clear()

    def record(self, rec: StepRecord, infos: Sequence[dict[str, Any]] | None) -> None:
        """Writes one step; ``infos`` holds one dict per env that stepped."""
        self.storage.write(rec)
        ids = self._all_ids if rec.env_ids is None else rec.env_ids
        rows: np.ndarray | None = None  # positions in the step that made a transition
        if rec.active is not None:
            if rec.active_host is None:
                self._drop_infos()
            else:
                rows = np.flatnonzero(rec.active_host)
        assert self.n_transitions is not None
        self.n_transitions += len(ids) if rows is None else len(rows)
        if self.keep_infos:
            infos = infos if infos is not None else _NoInfos(len(ids))
            if rows is not None:
                self._infos.append(ids[rows], _Subset(infos, rows))
            else:
                self._infos.append(rec.env_ids, infos)

    def _keep_unpopped_infos(
        self, infos: InfoArray, counts: np.ndarray, env: np.ndarray, lengths: np.ndarray
    ) -> InfoArray:
        """The infos of the popped segments; gives each env's unpopped rest back to the log.

        Each env's segments are its first transitions, in order: env ``e`` pops the
        first ``popped[e]`` of its ``counts[e]`` infos.
        """
        popped = np.bincount(env, weights=lengths, minlength=self.n_envs).astype(np.int64)
        start = np.cumsum(counts) - counts
        self._infos.give_back([infos[int(a + p) : int(a + n)] for a, p, n in zip(start, popped, counts)])
        return infos[ranges(start, popped)]

    def _drop_infos(self) -> None:
        if self.keep_infos:
            warnings.warn(
                "infos are not kept: which envs made a transition is known only on the device",
                stacklevel=4,
            )
            self.keep_infos = False
            self._infos.clear()

    def pop_transitions(self) -> TransitionsWithRew:
        """Pops every unpopped transition (env by env, in time order).

        Raises:
            RuntimeError: empty (nothing recorded since the last pop).
        """
        if self.n_unpopped == 0:
            raise RuntimeError(
                "Called pop_transitions on an empty buffer: no transitions recorded since the last pop"
            )
        flat = self.storage.take_transitions()
        infos = self._infos.take_all()[0] if self.keep_infos else None
        self.n_transitions = 0
        return _transitions(flat, infos)

    def pop_trajectories(self, finished_only: bool = False) -> tuple[Sequence[TrajectoryWithRew], list[int]]:
        """Pops trajectories and the lengths of the episodes completed since the last pop.

        Args:
            finished_only: Pop completed episodes only; running ones stay recorded.

        Returns:
            A tuple ``(trajs, ep_lens)`` with ``trajs`` a
            :class:`~torchbuf.data.trajectories.Trajectories` sequence (each trajectory is
            made when read), or ``([], [])`` when nothing is unpopped.
        """
        if self.n_unpopped == 0:
            self.n_transitions = 0
            return [], []
        segments, obs, steps = self.storage.take_segments(finished_only)
        lengths = segments.last - segments.first
        infos = None
        if self.keep_infos:
            infos, counts = self._infos.take_all()
            if finished_only:
                infos = self._keep_unpopped_infos(infos, counts, segments.env, lengths)
        trajs = pack(obs, steps, lengths, segments.ep_len > 0, infos)
        self.n_transitions = 0
        return trajs, segments.ep_len[segments.ep_len > 0].tolist()

    def state_dict(self) -> dict[str, Any]:
        """The recorder's state: storage, ``n_transitions`` and the unpopped infos.

        Returns:
            A dict with ``storage`` (:meth:`SlotStorage.state_dict`), ``n_transitions``,
            ``keep_infos`` and ``infos``: per env, the info dicts of its unpopped
            transitions in time order (object arrays), or ``None`` when infos are
            not kept.
        """
        infos = None
        if self.keep_infos:
            per_env = self._infos.take()
            self._infos.give_back(per_env)  # the same log, gathered per env
            infos = [np.asarray(e) for e in per_env]
        return {
            "storage": self.storage.state_dict(),
            "n_transitions": self.n_transitions,
            "keep_infos": self.keep_infos,
            "infos": infos,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`.

        Args:
            state: What :meth:`state_dict` returned.

        Raises:
            ValueError: the state holds another number of envs.
        """
        self.storage.load_state_dict(state["storage"])
        self.n_transitions = None if state["n_transitions"] is None else int(state["n_transitions"])
        self.keep_infos = bool(state["keep_infos"])
        self._infos.clear()
        if self.keep_infos and state["infos"] is not None:
            self._infos.give_back([InfoArray.of(e) for e in state["infos"]])


class _NoInfos(Sequence[dict[str, Any]]):
    """A step without infos: an empty dict of its own for each env, made when read."""

    def __init__(self, n: int):
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        return {}


class _Subset(Sequence[dict[str, Any]]):
    """The infos of some positions of a step, read lazily."""

    def __init__(self, infos: Sequence[dict[str, Any]], rows: np.ndarray):
        self._infos, self._rows = infos, rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        return self._infos[int(self._rows[i])]


def _transitions(flat: TensorDict, infos: InfoArray | None) -> TransitionsWithRew:
    flat.set("dones", flat["terminated"] | flat["truncated"])
    return TransitionsWithRew.from_tensordict(flat, non_tensordict={"infos": infos})
