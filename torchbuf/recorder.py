"""The pop API over a slot storage: counters, infos, and typed batches.

Every buffering wrapper owns one :class:`Recorder`; the wrappers only turn their
env's step output into step records (:class:`~torchbuf.record.StepRecord`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from torchbuf.record import StepRecord
from torchbuf.storage import Segment, SlotStorage
from torchbuf.types import Obs, TrajectoryWithRew, TransitionsWithRew

InfoStep = tuple[np.ndarray, Sequence[dict[str, Any]]]


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
        self._pending: list[InfoStep] = []
        self._carry: list[list[dict[str, Any]]] = [[] for _ in range(n_envs)]

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
        self._pending = []
        self._carry = [[] for _ in range(self.n_envs)]

    def record(self, rec: StepRecord, infos: Sequence[dict[str, Any]] | None) -> None:
        """Writes one step; ``infos`` holds one dict per env that stepped."""
        self.storage.write(rec)
        ids = np.arange(self.n_envs) if rec.env_ids is None else rec.env_ids
        rows: np.ndarray | None = None  # positions in the step that made a transition
        if rec.active is not None:
            if rec.active_host is None:
                self._drop_infos()
            else:
                rows = np.flatnonzero(rec.active_host)
        assert self.n_transitions is not None
        self.n_transitions += len(ids) if rows is None else len(rows)
        if self.keep_infos:
            infos = infos if infos is not None else [{}] * len(ids)
            self._pending.append((ids, infos) if rows is None else (ids[rows], _Subset(infos, rows)))

    def _drop_infos(self) -> None:
        if self.keep_infos:
            warnings.warn(
                "infos are not kept: which envs made a transition is known only on the device",
                stacklevel=4,
            )
            self.keep_infos = False
            self._pending, self._carry = [], [[] for _ in range(self.n_envs)]

    def pop_transitions(self) -> TransitionsWithRew:
        """Pops every unpopped transition (env by env, in time order).

        Raises:
            RuntimeError: empty (nothing recorded since the last pop).
        """
        if self.n_unpopped == 0:
            raise RuntimeError(
                "Called pop_transitions on an empty buffer: no transitions recorded since the last pop"
            )
        counts = self.storage.n_unpopped.copy()
        flat = self.storage.take_transitions()
        infos = None
        if self.keep_infos:
            per_env = self._infos_per_env()
            infos = _object_array([i for e in range(self.n_envs) for i in per_env[e][: counts[e]]])
        self.n_transitions = 0
        return _transitions(flat, infos)

    def pop_trajectories(self, finished_only: bool = False) -> tuple[list[TrajectoryWithRew], list[int]]:
        """Pops trajectories and the lengths of the episodes completed since the last pop.

        Args:
            finished_only: Pop completed episodes only; running ones stay recorded.

        Returns:
            ``(trajs, ep_lens)``; ``([], [])`` when nothing is unpopped.
        """
        if self.n_unpopped == 0:
            self.n_transitions = 0
            return [], []
        segments, obs, steps = self.storage.take_segments(finished_only)
        per_env = self._infos_per_env() if self.keep_infos else None
        trajs = _trajectories(segments, obs, steps, per_env)
        if per_env is not None:
            self._carry = per_env
        self.n_transitions = 0
        return trajs, [s.ep_len for s in segments if s.ep_len]

    def _infos_per_env(self) -> list[list[dict[str, Any]]]:
        """Collects unpopped infos per env; the caller consumes them from the front."""
        per_env, self._carry = self._carry, [[] for _ in range(self.n_envs)]
        for env_ids, infos in self._pending:
            ids = range(self.n_envs) if env_ids is None else env_ids
            for env, info in zip(ids, infos, strict=False):
                per_env[env].append(info)
        self._pending = []
        return per_env


class _Subset(Sequence[dict[str, Any]]):
    """The infos of some positions of a step, read lazily."""

    def __init__(self, infos: Sequence[dict[str, Any]], rows: np.ndarray):
        self._infos, self._rows = infos, rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        return self._infos[int(self._rows[i])]


def _object_array(items: list[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _transitions(flat: TensorDict, infos: np.ndarray | None) -> TransitionsWithRew:
    terminated, truncated = flat["terminated"], flat["truncated"]
    return TransitionsWithRew(
        obs=flat["obs"],
        acts=flat["acts"],
        next_obs=flat["next_obs"],
        dones=terminated | truncated,
        terminated=terminated,
        truncated=truncated,
        rews=flat["rews"],
        infos=infos,
        batch_size=flat.batch_size,
    )


def _trajectories(
    segments: list[Segment],
    obs: Obs,
    steps: TensorDict,
    per_env: list[list[dict[str, Any]]] | None,
) -> list[TrajectoryWithRew]:
    """Splits the concatenated segments into trajectories (views of one copy).

    The pieces come from the storage, whose slots satisfy every trajectory
    invariant, so they are assembled without re-checking each one.
    """
    act_sizes = [s.last - s.first for s in segments]
    fields = {"obs": _split(obs, [n + 1 for n in act_sizes])}
    for name in steps.keys():  # noqa: SIM118 (iterating a TensorDict walks its rows)
        fields[str(name)] = _split(steps[name], act_sizes)
    trajs = []
    for i, seg in enumerate(segments):
        infos = None
        if per_env is not None:
            n = act_sizes[i]
            infos, per_env[seg.env] = _object_array(per_env[seg.env][:n]), per_env[seg.env][n:]
        td = TensorDict({k: v[i] for k, v in fields.items()}, batch_size=[], device=steps.device)
        extra = {"infos": infos, "terminal": bool(seg.ep_len)}
        trajs.append(TrajectoryWithRew.from_tensordict(td, non_tensordict=extra))
    return trajs


def _split(value: Obs, sizes: list[int]) -> list[Any]:
    """Views of consecutive pieces of ``value`` along its first dimension."""
    return list(value.split(sizes))
