"""Host-side infos: one entry per recorded transition, kept per env in time order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from torchbuf.data.convert import object_array


class InfoLog:
    """The info dicts of unpopped transitions.

    Each step appends its infos once (no loop over envs); pops read them per env,
    in time order, as numpy object arrays, and hand back what they leave unpopped.

    Args:
        n_envs: Number of envs.
    """

    def __init__(self, n_envs: int):
        self.n_envs = n_envs
        self._steps: list[tuple[np.ndarray, Sequence[dict[str, Any]]]] = []
        self._carry: list[np.ndarray] = [object_array([])] * n_envs

    def clear(self) -> None:
        """Forgets everything."""
        self._steps, self._carry = [], [object_array([])] * self.n_envs

    def append(self, env_ids: np.ndarray, infos: Sequence[dict[str, Any]]) -> None:
        """Logs one step: ``infos[j]`` belongs to env ``env_ids[j]``."""
        self._steps.append((env_ids, infos))

    def take(self) -> list[np.ndarray]:
        """Removes and returns every logged info, one object array per env, in time order."""
        steps, carry = self._steps, self._carry
        self.clear()
        if not steps:
            return carry
        grid = np.empty((self.n_envs, len(steps)), dtype=object)
        filled = np.zeros((self.n_envs, len(steps)), dtype=bool)
        for j, (env_ids, infos) in enumerate(steps):
            grid[env_ids, j] = object_array(infos)
            filled[env_ids, j] = True
        dense = bool(filled.all())
        return [
            np.concatenate([carry[e], grid[e] if dense else grid[e][filled[e]]]) for e in range(self.n_envs)
        ]

    def give_back(self, per_env: list[np.ndarray]) -> None:
        """Keeps ``per_env`` (the unpopped rest of :meth:`take`) ahead of later steps."""
        assert not self._steps, "give_back() follows take() before any new step"
        self._carry = per_env
