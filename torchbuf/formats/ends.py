"""How a trajectory's end must look for formats that keep less than torchbuf does.

torchbuf keeps ``terminated`` and ``truncated`` per step and ``terminal`` per
trajectory. imitation keeps only ``terminal`` (and, by SB3's convention, an info
``"TimeLimit.truncated"``); Minari keeps per-step flags and derives the end from the
last one. A trajectory that these cannot express exactly is refused with a
``ValueError`` naming it, never written as something else.
"""

from __future__ import annotations

import numpy as np
from tensordict import TensorDictBase

from torchbuf.data.types import Obs, Trajectory, TrajectoryWithRew


def host_flags(traj: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """The trajectory's ``(terminated, truncated)`` as host bool arrays."""
    return traj.terminated.cpu().numpy().astype(bool), traj.truncated.cpu().numpy().astype(bool)


def check_rewards_and_infos(
    traj: Trajectory, index: int, fmt: str, unit: str, *, drop_infos: bool, why: str = ""
) -> None:
    """Raises where ``traj`` has no rewards, or infos that ``fmt`` cannot hold.

    Args:
        traj: The trajectory.
        index: Its index, for the message.
        fmt: The format's name, e.g. ``"Minari"``.
        unit: What the format calls a trajectory, e.g. ``"episodes"``.
        drop_infos: Infos are dropped on the way out (not refused).
        why: Why the format cannot hold infos, e.g. ``" (its infos start with the reset's)"``.

    Raises:
        TypeError: ``traj`` is not a :class:`~torchbuf.TrajectoryWithRew`.
        ValueError: ``traj`` has infos and ``drop_infos`` is false.
    """
    if not isinstance(traj, TrajectoryWithRew):
        raise TypeError(f"trajectory {index} has no rewards: {fmt} {unit} need TrajectoryWithRew")
    if traj.infos is not None and not drop_infos:
        raise ValueError(
            f"trajectory {index} has infos, which {fmt} cannot hold{why}: pass drop_infos=True "
            "to save without them"
        )


def check_end(traj: Trajectory, index: int, fmt: str, *, flags_only_at_end: bool) -> None:
    """Raises where ``traj``'s flags and ``terminal`` cannot be carried by ``fmt``.

    Args:
        traj: The trajectory.
        index: Its position in the sequence being saved (for the message).
        fmt: The format's name (for the message).
        flags_only_at_end: The format has one end flag per trajectory: only the last
            step may be terminated or truncated, and not both.

    Raises:
        ValueError: the trajectory has no steps; ``terminal`` disagrees with its
            last step's flags; or (``flags_only_at_end``) a flag before the last
            step, or both flags at the last.
    """
    terminated, truncated = host_flags(traj)
    n = len(terminated)
    where = f"trajectory {index}"
    if n == 0:
        raise ValueError(f"{where} has no steps: {fmt} stores trajectories of at least one step")
    done = bool(terminated[-1] or truncated[-1])
    if bool(traj.terminal) != done:
        raise ValueError(
            f"{where}: terminal={bool(traj.terminal)}, but its last step is "
            f"{'done' if done else 'neither terminated nor truncated'}; {fmt} derives one from the other"
        )
    if not flags_only_at_end:
        return
    early = np.flatnonzero(terminated[:-1] | truncated[:-1])
    if len(early):
        raise ValueError(
            f"{where}: step {int(early[0])} is terminated or truncated, but {fmt} marks only "
            "a trajectory's last step"
        )
    if terminated[-1] and truncated[-1]:
        raise ValueError(f"{where}: its last step is both terminated and truncated; {fmt} keeps one")


def is_dict(obs: Obs) -> bool:
    """Whether ``obs`` is a (nested) TensorDict rather than one tensor."""
    return isinstance(obs, TensorDictBase)
