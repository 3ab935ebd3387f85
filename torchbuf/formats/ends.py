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

from torchbuf.data.types import Obs, Trajectory


def host_flags(traj: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """The trajectory's ``(terminated, truncated)`` as host bool arrays."""
    return traj.terminated.cpu().numpy().astype(bool), traj.truncated.cpu().numpy().astype(bool)


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
