"""``Trajectories``: the trajectories of one pop, packed, each one built when read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
from tensordict import TensorDict

from torchbuf.data.infos import InfoArray
from torchbuf.data.types import Obs, TrajectoryWithRew


class Trajectories(Sequence[TrajectoryWithRew]):
    """A sequence of :class:`TrajectoryWithRew` stored as packed tensors.

    A pop gathers every trajectory's slots into one tensor per field; a trajectory
    is a view of its piece, made when indexed or iterated. Popping thousands of
    trajectories thus costs one gather, not thousands of objects; learners can read
    the packed fields directly.

    Args:
        obs: Observations of all trajectories, concatenated (``len + 1`` each).
        steps: ``acts, rews, terminated, truncated`` of all trajectories, concatenated.
        lengths: Number of actions of each trajectory.
        terminal: Whether each trajectory ends its episode.
        infos: The info dicts of all trajectories, concatenated (``len`` each), or ``None``.

    Attributes:
        obs: The packed observations.
        steps: The packed per-action fields.
        lengths: Number of actions of each trajectory, host int64 array.
        terminal: Host bool array, one per trajectory.
    """

    def __init__(
        self,
        obs: Obs,
        steps: TensorDict,
        lengths: np.ndarray,
        terminal: np.ndarray,
        infos: InfoArray | None,
    ):
        self.obs, self.steps = obs, steps
        self.lengths, self.terminal = lengths, terminal
        self._infos = infos
        self._act_start = np.concatenate([[0], np.cumsum(lengths)])
        self._obs_start = self._act_start + np.arange(len(lengths) + 1)

    @property
    def infos(self) -> list[InfoArray] | None:
        """Per trajectory, its info dicts (made when read), or ``None`` when not kept."""
        if self._infos is None:
            return None
        return [self._infos[int(a) : int(b)] for a, b in zip(self._act_start[:-1], self._act_start[1:])]

    def __len__(self) -> int:
        return len(self.lengths)

    @overload
    def __getitem__(self, index: int) -> TrajectoryWithRew: ...

    @overload
    def __getitem__(self, index: slice) -> list[TrajectoryWithRew]: ...

    def __getitem__(self, index: int | slice) -> TrajectoryWithRew | list[TrajectoryWithRew]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = range(len(self))[index]
        a0, a1 = int(self._act_start[i]), int(self._act_start[i + 1])
        o0, o1 = int(self._obs_start[i]), int(self._obs_start[i + 1])
        fields = {"obs": self.obs[o0:o1], **{str(k): self.steps[k][a0:a1] for k in self.steps.keys()}}  # noqa: SIM118
        infos = None if self._infos is None else self._infos[a0:a1]
        extra = {"infos": infos, "terminal": bool(self.terminal[i])}
        td = TensorDict(fields, batch_size=[], device=self.steps.device)
        return TrajectoryWithRew.from_tensordict(td, non_tensordict=extra)

    def __iter__(self) -> Iterator[TrajectoryWithRew]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        """Equal to an empty sequence when empty (``trajs == []``); else identity."""
        if isinstance(other, Sequence) and len(other) == 0:
            return len(self) == 0
        return self is other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Trajectories(n={len(self)}, transitions={int(self.lengths.sum())}, device={self.steps.device})"
        )


def pack(
    obs: Obs, steps: TensorDict, lengths: np.ndarray, terminal: np.ndarray, infos: InfoArray | None
) -> Trajectories:
    """Builds a :class:`Trajectories` from packed fields (see the class)."""
    return Trajectories(
        obs, steps, np.asarray(lengths, dtype=np.int64), np.asarray(terminal, dtype=bool), infos
    )
