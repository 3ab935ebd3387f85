"""Pops as segments: contiguous runs of slots, one per trajectory, cut at the marks.

The storage reads its run ends and cursors to the host; :func:`cut_segments`
turns them into the runs a pop gathers, without a loop over envs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Segments:
    """Contiguous runs of slots, one per trajectory, env by env in time order.

    Attributes:
        env: Each run's env index.
        first: The slot of each run's first observation.
        last: The slot of each run's last observation (``last - first`` actions).
        ep_len: The full episode length where the run ends its episode, else 0.
    """

    env: np.ndarray
    first: np.ndarray
    last: np.ndarray
    ep_len: np.ndarray

    def __len__(self) -> int:
        return len(self.env)


def cut_segments(
    kinds: np.ndarray, cursors: np.ndarray, carry: np.ndarray, finished_only: bool
) -> tuple[Segments, np.ndarray]:
    """Cuts each row's unpopped slots at the run ends in ``kinds``.

    Vectorised over all rows: a run ends at each marked slot, the next starts one
    slot after it; a row's running episode is the run from its last mark to its
    cursor (marked 3 at the cursor, so that one ``nonzero`` finds every run, env by
    env in time order). A run that ends in a terminal slot reports its episode's
    length: its actions, plus the row's carried steps when it starts at the row's
    first slot.

    Args:
        kinds: Each row's slots: 2 where a terminal observation ends a run, 1 where
            a cut does, 0 elsewhere (at least one column past every cursor). A
            scratch array: the cursors' slots are overwritten.
        cursors: Each row's cursor.
        carry: Steps each row's episode at its first slot made before that slot.
        finished_only: Leave out the running episodes.

    Returns:
        The runs with at least one action, and per row the slot where the
        unpopped rest begins.
    """
    if not finished_only:
        kinds[np.arange(len(cursors)), cursors] = 3
    env, end = np.nonzero(kinds)  # row-major: env by env, in time order
    new_row = np.empty(env.size, dtype=bool)
    new_row[:1] = True
    np.not_equal(env[1:], env[:-1], out=new_row[1:])
    first = np.zeros_like(end)
    first[1:] = end[:-1] + 1
    first[new_row] = 0
    kind = kinds[env, end]
    length = end - first + np.where(new_row, carry[env], 0)
    keep_from = np.zeros(len(cursors), dtype=np.int64)
    if finished_only:  # one past each row's last mark
        last_of_row = np.empty(env.size, dtype=bool)
        last_of_row[-1:] = True
        last_of_row[:-1] = new_row[1:]
        keep_from[env[last_of_row]] = end[last_of_row] + 1
    else:  # where each row's running episode begins
        running = kind == 3
        keep_from[env[running]] = first[running]
    keep = end > first
    ep_len = np.where(kind == 2, length, 0)
    return Segments(env[keep], first[keep], end[keep], ep_len[keep]), keep_from
