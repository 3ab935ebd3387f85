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
    cursor. A run that ends in a terminal slot reports its episode's length: its
    actions, plus the row's carried steps when it starts at the row's first slot.

    Args:
        kinds: Each row's unpopped slots: 2 where a terminal observation ends a run,
            1 where a cut does, 0 elsewhere.
        cursors: Each row's cursor.
        carry: Steps each row's episode at its first slot made before that slot.
        finished_only: Leave out the running episodes.

    Returns:
        The runs with at least one action, and per row the slot where the
        unpopped rest begins.
    """
    env, end = np.nonzero(kinds)  # row-major: env by env, in time order
    change = env[1:] != env[:-1]
    new_row, last_of_row = np.ones(env.size, dtype=bool), np.ones(env.size, dtype=bool)
    new_row[1:], last_of_row[:-1] = change, change
    first = np.zeros(env.size, dtype=np.int64)
    first[1:] = end[:-1] + 1
    first[new_row] = 0
    keep_from = np.zeros(len(cursors), dtype=np.int64)
    keep_from[env[last_of_row]] = end[last_of_row] + 1  # one past each row's last mark
    length = end - first + np.where(new_row, carry[env], 0)
    parts = [(env, first, end, np.where(kinds[env, end] == 2, length, 0))]
    if not finished_only:  # each row's running episode: after all of the row's marks
        rows = np.flatnonzero(cursors > keep_from)
        parts.append((rows, keep_from[rows], cursors[rows], np.zeros(len(rows), dtype=np.int64)))
    env, first, last, ep_len = (np.concatenate(x).astype(np.int64, copy=False) for x in zip(*parts))
    order = np.argsort(env, kind="stable")  # env by env; within a row the running episode comes last
    keep = order[last[order] > first[order]]
    return Segments(env[keep], first[keep], last[keep], ep_len[keep]), keep_from
