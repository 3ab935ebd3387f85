"""Host-side infos: one entry per recorded transition, kept per env in time order.

Nothing is made per env at a step or a pop: a pop hands out :class:`InfoArray` s whose
dicts are made from the logged steps when read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from torchbuf.data.infos import InfoArray


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
        self._steps: list[tuple[np.ndarray, Sequence[dict[str, Any]]]] = []
        self._carry: list[InfoArray] = [InfoArray.of([])] * n_envs

    def clear(self) -> None:
        """Forgets everything."""
        self._steps, self._carry = [], [InfoArray.of([])] * self.n_envs

    def append(self, env_ids: np.ndarray, infos: Sequence[dict[str, Any]]) -> None:
        """Logs one step: ``infos[j]`` belongs to env ``env_ids[j]``."""
        self._steps.append((env_ids, infos))

    def take(self) -> list[InfoArray]:
        """Removes and returns every logged info, one array per env, in time order."""
        steps, carry = self._steps, self._carry
        self.clear()
        if not steps:
            return carry
        filled = np.zeros((self.n_envs, len(steps)), dtype=bool)
        pos = np.zeros((self.n_envs, len(steps)), dtype=np.int64)
        for j, (env_ids, _) in enumerate(steps):
            filled[env_ids, j] = True
            pos[env_ids, j] = np.arange(len(env_ids))
        env, step = np.nonzero(filled)  # env by env, in time order
        logged = InfoArray.gather([infos for _, infos in steps], step, pos[env, step])
        ends = np.cumsum(filled.sum(1))
        return [
            InfoArray.concatenate([carry[e], logged[ends[e] - n : ends[e]]])
            if len(carry[e])
            else logged[ends[e] - n : ends[e]]
            for e, n in enumerate(filled.sum(1).tolist())
        ]

    def give_back(self, per_env: list[InfoArray]) -> None:
        """Keeps ``per_env`` (the unpopped rest of :meth:`take`) ahead of later steps."""
        assert not self._steps, "give_back() follows take() before any new step"
        self._carry = per_env
