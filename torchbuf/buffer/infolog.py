"""Host-side infos: one entry per recorded transition, kept per env in time order.

Nothing is made per env at a step or a pop: a pop hands out :class:`InfoArray` s whose
dicts are made from the logged steps when read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from torchbuf.data.infos import InfoArray

_NONE = InfoArray.of([])
"""No infos: what an env carries when nothing was given back (shared: it has nothing to make)."""


class InfoLog:
    """The info dicts of unpopped transitions.

    Each step appends its infos once (no loop over envs); pops take them per env,
    in time order, as :class:`InfoArray` s (made when read), and hand back what they
    leave unpopped.

    Args:
        n_envs: Number of envs.
    """

    def __init__(self, n_envs: int):
        self.n_envs = n_envs
        self._all = np.arange(n_envs)
        self._steps: list[tuple[np.ndarray | None, Sequence[dict[str, Any]]]] = []
        self._carry: list[InfoArray] = [_NONE] * n_envs
        self._carried = False  # whether any env carries infos given back

    def clear(self) -> None:
        """Forgets everything."""
        self._steps, self._carry, self._carried = [], [_NONE] * self.n_envs, False

    def append(self, env_ids: np.ndarray | None, infos: Sequence[dict[str, Any]]) -> None:
        """Logs one step: ``infos[j]`` belongs to env ``env_ids[j]`` (env ``j`` when ``None``)."""
        self._steps.append((env_ids, infos))

    def take(self) -> list[InfoArray]:
        """Removes and returns every logged info, one array per env, in time order."""
        infos, counts = self.take_all()
        ends = np.cumsum(counts)
        return [infos[int(b - n) : int(b)] for b, n in zip(ends, counts)]

    def take_all(self) -> tuple[InfoArray, np.ndarray]:
        """Removes every logged info: one array, env by env in time order, and each env's count."""
        carry, any_carried = self._carry, self._carried
        logged, counts = self._take_logged()
        if not any_carried:
            return logged, counts
        carried = np.array([len(c) for c in carry])
        ends = np.cumsum(counts).tolist()
        starts = [0, *ends[:-1]]
        parts = [x for e in range(self.n_envs) for x in (carry[e], logged[starts[e] : ends[e]])]
        return InfoArray.concatenate(parts), counts + carried

    def _take_logged(self) -> tuple[InfoArray, np.ndarray]:
        """The logged steps' infos env by env in time order, and each env's count; clears the log."""
        steps = self._steps
        self.clear()
        sources = [infos for _, infos in steps]
        if all(ids is None for ids, _ in steps):  # every env in every step
            return InfoArray.grid(sources, self.n_envs), np.full(self.n_envs, len(steps))
        filled = np.zeros((self.n_envs, len(steps)), dtype=bool)
        at = np.zeros((self.n_envs, len(steps)), dtype=np.int64)
        for j, (env_ids, _) in enumerate(steps):
            ids = self._all if env_ids is None else env_ids
            filled[ids, j] = True
            at[ids, j] = np.arange(len(ids))
        env, step = np.nonzero(filled)  # env by env, in time order
        return InfoArray.gather(sources, step, at[env, step]), filled.sum(1)

    def give_back(self, per_env: list[InfoArray]) -> None:
        """Keeps ``per_env`` (the unpopped rest of :meth:`take`) ahead of later steps."""
        assert not self._steps, "give_back() follows take() before any new step"
        self._carry = per_env
        self._carried = any(len(c) for c in per_env)
