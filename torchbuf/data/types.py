"""Typed tensor batches: the transitions and trajectories that pops return.

Field names follow ``imitation.data.types`` (``obs, acts, infos, next_obs, dones,
rews, terminal``), plus ``terminated`` / ``truncated`` kept apart. Observations are a
tensor, or a (nested) ``TensorDict`` for dict spaces. Dtypes are those the env gave
(uint8 images stay uint8). Every batch lives on one device; ``infos`` is host data (a
numpy object array of dicts; in popped batches an :class:`~torchbuf.data.infos.InfoArray`,
which behaves as one and makes each dict when it is first read) or ``None`` when infos
were not kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from tensordict import TensorClass

from torchbuf.data import imitation
from torchbuf.data.convert import Obs, object_array
from torchbuf.data.infos import InfoArray

__all__ = [
    "Obs",
    "Trajectory",
    "TrajectoryWithRew",
    "Transitions",
    "TransitionsWithRew",
    "from_imitation",
    "obs_len",
]
_B = TypeVar("_B", bound="_Batch")


def obs_len(obs: Obs) -> int:
    """Returns the leading (time or batch) length of an observation batch."""
    return int(obs.shape[0]) if isinstance(obs, torch.Tensor) else int(obs.batch_size[0])


class _Batch(TensorClass["nocast"]):  # type: ignore[type-arg,name-defined]  # noqa: F821
    """Shared behaviour of the typed batches (``infos`` follows indexing: see :func:`_indexes_infos`)."""

    @classmethod
    def from_imitation(
        cls: type[_B], obj: Any, device: torch.device | str = "cpu", *, separator: str | None = "."
    ) -> _B:
        """Converts one of imitation's numpy batches (see :func:`from_imitation`).

        Args:
            obj: An ``imitation.data.types`` trajectory or transitions batch.
            device: Where the tensors go.
            separator: Splits dict observation keys into nested TensorDicts, or ``None``.

        Returns:
            The converted batch, an instance of this class.

        Raises:
            TypeError: ``obj`` does not convert to this class (e.g. transitions
                given to ``Trajectory.from_imitation``, or no rewards given to a
                ``*WithRew`` class).
        """
        out = from_imitation(obj, device, separator=separator)
        if not isinstance(out, cls):
            got = type(out).__name__
            raise TypeError(f"{type(obj).__name__} converts to a {got}, not a {cls.__name__}")
        return out

    def _check_infos(self, n: int, name: str) -> None:
        infos = self.infos  # type: ignore[attr-defined]
        if infos is not None and len(infos) != n:
            raise ValueError(f"infos must have one entry per {name}: {len(infos)} != {n}")


class Trajectory(_Batch):
    """A trajectory (or a fragment of one) of a single environment.

    Attributes:
        obs: Observations, shape ``(trajectory_len + 1,) + obs_shape``; a TensorDict
            of such tensors for dict spaces. The last one is the terminal
            observation when ``terminal`` is true.
        acts: Actions, shape ``(trajectory_len,) + action_shape``.
        terminated: Whether the env reported termination after each action, shape
            ``(trajectory_len,)``, bool.
        truncated: Whether the env reported truncation after each action, shape
            ``(trajectory_len,)``, bool.
        infos: Host numpy object array of the info dicts, one per action, or
            ``None`` when infos were not kept.
        terminal: Whether the fragment ends with the episode's end.
    """

    obs: Obs
    acts: Obs
    terminated: torch.Tensor
    truncated: torch.Tensor
    infos: Any = None
    terminal: bool = True

    def __post_init__(self) -> None:
        """Checks the trajectory's invariants.

        Raises:
            ValueError: lengths disagree.
        """
        n_acts = obs_len(self.acts)
        if obs_len(self.obs) != n_acts + 1:
            raise ValueError(
                f"expected one more observation than actions: {obs_len(self.obs)} != {n_acts} + 1"
            )
        self._check_infos(n_acts, "action")

    def to_imitation(self, separator: str = ".") -> Any:
        """Converts to imitation's trajectory (numpy, on the host).

        Args:
            separator: Joins nested dict observation keys (imitation's ``DictObs`` is flat).

        Returns:
            ``imitation.data.types.TrajectoryWithRew`` when this has rewards, else
            ``imitation.data.types.Trajectory``; ``infos`` an object array or ``None``.
        """
        fields = {
            "obs": imitation.obs_to_imitation(self.obs, separator),
            "acts": imitation.to_numpy(self.acts),
            "infos": None if self.infos is None else object_array(list(self.infos)),
            "terminal": bool(self.terminal),
        }
        types = imitation.imitation_types()
        rews = getattr(self, "rews", None)
        if rews is not None:
            return types.TrajectoryWithRew(rews=imitation.to_numpy(rews), **fields)
        return types.Trajectory(**fields)


class TrajectoryWithRew(Trajectory):
    """A :class:`Trajectory` with rewards.

    Attributes:
        rews: Rewards, shape ``(trajectory_len,)``, in the env's dtype.
    """

    rews: torch.Tensor = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        """Checks the trajectory's invariants.

        Raises:
            ValueError: lengths or shapes disagree.
        """
        super().__post_init__()
        n_acts = obs_len(self.acts)
        if self.rews is None or tuple(self.rews.shape[:1]) != (n_acts,):
            shape = None if self.rews is None else tuple(self.rews.shape)
            raise ValueError(f"rews must have shape ({n_acts},), got {shape}")


class Transitions(_Batch):
    """A flat batch of transitions, batch size ``(n,)``.

    Attributes:
        obs: Observations before each action, shape ``(n,) + obs_shape``.
        acts: Actions, shape ``(n,) + action_shape``.
        next_obs: Observations after each action, shape ``(n,) + obs_shape``; the
            terminal observation where an episode ended.
        dones: ``terminated | truncated``, shape ``(n,)``, bool.
        terminated: Termination flags, shape ``(n,)``, bool.
        truncated: Truncation flags, shape ``(n,)``, bool.
        infos: Host numpy object array of info dicts, or ``None``.
    """

    obs: Obs
    acts: Obs
    next_obs: Obs
    dones: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    infos: Any = None

    def __post_init__(self) -> None:
        """Checks the batch's invariants.

        Raises:
            ValueError: lengths disagree.
        """
        if self.batch_dims == 1:
            self._check_infos(int(self.batch_size[0]), "transition")

    def to_imitation(self, separator: str = ".") -> Any:
        """Converts to imitation's transitions (numpy, on the host).

        Args:
            separator: Joins nested dict observation keys (imitation's ``DictObs`` is flat).

        Returns:
            ``imitation.data.types.TransitionsWithRew`` when this has rewards, else
            ``imitation.data.types.Transitions``. imitation requires ``infos``: the kept
            ones, or empty dicts when none were kept.
        """
        n = int(self.batch_size[0])
        infos = [{} for _ in range(n)] if self.infos is None else list(self.infos)
        fields = {
            "obs": imitation.obs_to_imitation(self.obs, separator),
            "acts": imitation.to_numpy(self.acts),
            "next_obs": imitation.obs_to_imitation(self.next_obs, separator),
            "dones": imitation.to_numpy(self.dones),
            "infos": object_array(infos),
        }
        types = imitation.imitation_types()
        rews = getattr(self, "rews", None)
        if rews is not None:
            return types.TransitionsWithRew(rews=imitation.to_numpy(rews), **fields)
        return types.Transitions(**fields)


class TransitionsWithRew(Transitions):
    """A :class:`Transitions` batch with rewards.

    Attributes:
        rews: Rewards, shape ``(n,)``, in the env's dtype.
    """

    rews: torch.Tensor = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        """Checks the batch's invariants.

        Raises:
            ValueError: rewards missing.
        """
        super().__post_init__()
        if self.rews is None:
            raise ValueError("rews is required")


def _n_actions(self: Trajectory) -> int:
    """Returns the number of actions (transitions) of the trajectory."""
    return obs_len(self.acts)


# TensorClass defines ``__len__`` from the batch size (empty for a trajectory);
# imitation's ``len(traj)`` is the number of actions, so set it after the fact.
Trajectory.__len__ = _n_actions  # type: ignore[method-assign,assignment]
TrajectoryWithRew.__len__ = _n_actions  # type: ignore[method-assign,assignment]


def from_imitation(
    obj: Any, device: torch.device | str = "cpu", *, separator: str | None = "."
) -> Trajectory | Transitions | list[Trajectory]:
    """Converts imitation's trajectories or transitions to torchbuf batches.

    Args:
        obj: An ``imitation.data.types`` ``Trajectory``, ``TrajectoryWithRew``,
            ``Transitions`` or ``TransitionsWithRew``, or a sequence of trajectories.
        device: Where the tensors go.
        separator: Splits dict observation keys into nested TensorDicts (undoing
            the joining of the way out); ``None`` keeps the keys flat.

    Returns:
        The matching torchbuf batch (a list of them for a sequence). ``terminated``
        and ``truncated`` come from imitation's ``dones`` / ``terminal``: a done
        step is truncated where its info has ``"TimeLimit.truncated"``, else
        terminated.

    Raises:
        TypeError: ``obj`` is none of the above.
    """
    types = imitation.imitation_types()
    device = torch.device(device)
    if isinstance(obj, types.Trajectory):
        return _trajectory_from_imitation(obj, device, separator)
    if isinstance(obj, types.Transitions):
        return _transitions_from_imitation(obj, device, separator)
    if isinstance(obj, Sequence) and all(isinstance(t, types.Trajectory) for t in obj):
        return [_trajectory_from_imitation(t, device, separator) for t in obj]
    raise TypeError(
        "from_imitation expects an imitation Trajectory, TrajectoryWithRew, Transitions, "
        f"TransitionsWithRew or a sequence of trajectories, got {type(obj).__name__}"
    )


def _trajectory_from_imitation(traj: Any, device: torch.device, separator: str | None) -> Trajectory:
    """An imitation trajectory as a (rewarded) :class:`Trajectory`; only its last step can be done."""
    n = len(traj.acts)
    infos = None if traj.infos is None else object_array(list(traj.infos))
    dones = np.zeros(n, dtype=bool)
    dones[-1:] = bool(traj.terminal)
    terminated, truncated = imitation.split_dones(dones, infos)
    fields: dict[str, Any] = {
        "obs": imitation.obs_from_imitation(traj.obs, n + 1, device, separator),
        "acts": imitation.to_tensor(traj.acts, device),
        "terminated": imitation.to_tensor(terminated, device),
        "truncated": imitation.to_tensor(truncated, device),
        "infos": infos,
        "terminal": bool(traj.terminal),
        "batch_size": [],
        "device": device,
    }
    if getattr(traj, "rews", None) is not None:
        return TrajectoryWithRew(rews=imitation.to_tensor(traj.rews, device), **fields)
    return Trajectory(**fields)


def _transitions_from_imitation(trans: Any, device: torch.device, separator: str | None) -> Transitions:
    """Imitation transitions as (rewarded) :class:`Transitions`; ``infos`` copied."""
    n = len(trans.acts)
    infos = object_array(list(trans.infos))
    dones = np.asarray(trans.dones, dtype=bool)
    terminated, truncated = imitation.split_dones(dones, infos)
    fields: dict[str, Any] = {
        "obs": imitation.obs_from_imitation(trans.obs, n, device, separator),
        "acts": imitation.to_tensor(trans.acts, device),
        "next_obs": imitation.obs_from_imitation(trans.next_obs, n, device, separator),
        "dones": imitation.to_tensor(dones, device),
        "terminated": imitation.to_tensor(terminated, device),
        "truncated": imitation.to_tensor(truncated, device),
        "infos": infos,
        "batch_size": [n],
        "device": device,
    }
    if getattr(trans, "rews", None) is not None:
        return TransitionsWithRew(rews=imitation.to_tensor(trans.rews, device), **fields)
    return Transitions(**fields)


def _indexes_infos(cls: type[_B]) -> None:
    """Makes indexing a batch of ``cls`` index its ``infos`` too.

    A tensorclass indexes its tensors and gives non-tensor fields whole, so the
    indexed batch would hold every info; its ``__getitem__`` (set by the tensorclass
    on each class) is wrapped to index the batch without them, then the infos.
    """
    getitem = cls.__getitem__

    def __getitem__(self: _B, index: Any) -> _B:
        infos = self.infos  # type: ignore[attr-defined]
        if infos is None:
            return getitem(self, index)
        bare = self.copy()
        bare.infos = None  # type: ignore[attr-defined]
        out = getitem(bare, index)
        host = index.cpu().numpy() if isinstance(index, torch.Tensor) else index
        out.infos = (infos if isinstance(infos, InfoArray) else np.asarray(infos))[host]  # type: ignore[attr-defined]
        return out

    cls.__getitem__ = __getitem__  # type: ignore[method-assign,assignment]


for _cls in (Trajectory, TrajectoryWithRew, Transitions, TransitionsWithRew):
    _indexes_infos(_cls)
