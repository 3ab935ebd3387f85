"""Which episodes an export keeps: every format's ``save_*`` takes the selected list.

Demonstration datasets often keep only the episodes that succeeded (Isaac Lab's
succeeded-only export, ManiSkill's ``success`` flag). :func:`select_trajectories`
filters any sequence of trajectories by a predicate; :func:`info_flag` builds the
predicate that reads a flag, such as ManiSkill's ``"success"``, from the recorded infos.

Examples:
    >>> import torch
    >>> from torchbuf.data.types import Trajectory
    >>> def traj(success):
    ...     return Trajectory(
    ...         obs=torch.zeros(3, 1), acts=torch.zeros(2, 1),
    ...         terminated=torch.tensor([False, True]), truncated=torch.tensor([False, False]),
    ...         infos=[{"success": False}, {"success": success}])
    >>> kept = select_trajectories([traj(True), traj(False)], info_flag("success"))
    >>> len(kept)
    1
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from torchbuf.data.types import Trajectory

T = TypeVar("T", bound=Trajectory)


def select_trajectories(trajectories: Iterable[T], keep: Callable[[T], bool]) -> list[T]:
    """The trajectories for which ``keep`` is true, in their order.

    Args:
        trajectories: The trajectories, e.g. from ``pop_finished_trajectories()``.
        keep: A predicate on one trajectory, e.g. ``info_flag("success")``.

    Returns:
        The kept trajectories (the same objects, not copies).
    """
    return [traj for traj in trajectories if keep(traj)]


def info_flag(key: str = "success", *, at: Literal["last", "any"] = "last") -> Callable[[Trajectory], bool]:
    """A predicate that reads a boolean flag from a trajectory's infos.

    Args:
        key: The info key; a nested key as ``"a/b"`` (ManiSkill's ``success``,
            Isaac Lab's recorder terms, ...).
        at: ``"last"``: the flag of the last step's info (the episode's outcome, as
            ManiSkill's ``RecordEpisode`` saves it); ``"any"``: true at any step. Where
            a step's info holds ``final_info`` (a same-step autoreset), its flag is read there.

    Returns:
        The predicate. It raises ``ValueError`` for a trajectory recorded without
        infos, or whose info lacks ``key`` or holds a value that is not one flag,
        naming the trajectory's length and the key.
    """
    if at not in ("last", "any"):
        raise ValueError(f"at must be 'last' or 'any', not {at!r}")

    def keep(traj: Trajectory) -> bool:
        infos = traj.infos
        if infos is None:
            raise ValueError(f"cannot read info {key!r}: the trajectory was recorded without infos")
        steps = [infos[-1]] if at == "last" else list(infos)
        return any(_flag(info, key, i if at == "any" else len(infos) - 1) for i, info in enumerate(steps))

    return keep


def _flag(info: Any, key: str, step: int) -> bool:
    """``info[key]`` (``"a/b"`` nests) as one bool; ``ValueError`` naming ``step`` otherwise.

    At a same-step autoreset (ManiSkill's ``ManiSkillVectorEnv``, gymnasium's ``SAME_STEP``)
    the done step's info is the reset's and ``info["final_info"]`` the ended episode's:
    the flag is read from there where it holds the key.
    """
    final = info.get("final_info") if isinstance(info, Mapping) else None
    if isinstance(final, Mapping) and key.split("/")[0] in final:
        info = final
    value: Any = info
    for part in key.split("/"):
        if not isinstance(value, Mapping) or part not in value:
            raise ValueError(f"step {step}'s info has no {key!r} (keys: {_keys(info)})")
        value = value[part]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "biu":
        raise ValueError(f"step {step}'s info {key!r} is not one flag: {value!r}")
    return bool(array.reshape(()))


def _keys(info: Any) -> list[str]:
    return sorted(map(str, info)) if isinstance(info, Mapping) else [type(info).__name__]
