"""A per-env ground truth kept beside a recording, and the count of popped transitions that differ.

The test steps the env and writes down, for each env, what the env itself returned
(never what torchbuf recorded). :class:`Run` pops in a random mix of the three pops and
compares every popped transition with the truth, field by field and exactly (NaN
stand-ins for unknown final observations compare equal to NaN). Where the truth of a
transition has an ``info`` (the env's own info values for that env and step), the
recorded info dict must equal it too, key for key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

POPS = ("transitions", "trajectories", "finished")
FIELDS = ("obs", "act", "next", "rew", "term", "trunc")


@dataclass
class Truth:
    """One env's transitions as the env reported them; ``ends``: an episode ends (or is cut) there."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    popped: int = 0

    def add(self, **step: Any) -> None:
        self.steps.append(step)

    def cut(self) -> None:
        if len(self.steps) > self.popped and not self.steps[-1]["ends"]:
            self.steps[-1]["ends"] = True

    def take(self, finished_only: bool) -> list[dict[str, Any]]:
        end = len(self.steps)
        if finished_only:
            ends = [i + 1 for i in range(self.popped, end) if self.steps[i]["ends"]]
            end = ends[-1] if ends else self.popped
        out, self.popped = self.steps[self.popped : end], end
        return out


def popped(envs: Any, how: str) -> list[dict[str, Any]]:
    """The pop's transitions, in pop order (env by env), as plain dicts of CPU tensors (and ``info``)."""
    if how == "transitions":
        t = envs.pop_transitions()
        cols = (t.obs, t.acts, t.next_obs, t.rews, t.terminated, t.truncated)
        return [_with_info(dict(zip(FIELDS, (c[i].cpu() for c in cols))), t.infos, i) for i in range(len(t))]
    trajs, _ = envs.pop_trajectories() if how == "trajectories" else envs.pop_finished_trajectories()
    out = []
    for tr in trajs:
        for i in range(len(tr.acts)):
            cols = (tr.obs[i], tr.acts[i], tr.obs[i + 1], tr.rews[i], tr.terminated[i], tr.truncated[i])
            out.append(_with_info(dict(zip(FIELDS, (x.cpu() for x in cols))), tr.infos, i))
    return out


def _with_info(row: dict[str, Any], infos: Any, i: int) -> dict[str, Any]:
    if infos is not None:
        row["info"] = infos[i]
    return row


def same(a: Any, b: Any) -> bool:
    """Exact equality of two values (tensors, TensorDicts, numbers), NaN equal to NaN."""
    if hasattr(a, "keys") or hasattr(b, "keys"):
        if not (hasattr(a, "keys") and hasattr(b, "keys")) or set(a.keys()) != set(b.keys()):
            return False
        return all(same(a[k], b[k]) for k in a.keys())  # noqa: SIM118 (TensorDicts too)
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        return False
    if a.dtype != b.dtype and not (a.dtype.is_floating_point and b.dtype.is_floating_point):
        return bool(torch.equal(a.to(torch.float64), b.to(torch.float64)))
    if a.dtype.is_floating_point:
        return bool(torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))
    return bool(torch.equal(a, b))


def mismatches(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> int:
    """Transitions that differ in any field, plus the count difference."""
    bad = abs(len(got) - len(want))
    for g, w in zip(got, want):
        keys = FIELDS + (("info",) if "info" in w else ())
        bad += not all(k in g and same(g[k], w[k]) for k in keys)
    return bad


class Run:
    """Keeps the truth of a wrapped env, pops in random orders, counts mismatches."""

    def __init__(self, envs: Any, seed: int):
        self.envs, self.rng = envs, np.random.default_rng(seed)
        self.truth = [Truth() for _ in range(envs.num_envs)]
        self.compared = self.bad = self.infos_compared = 0
        self.pops = dict.fromkeys(POPS, 0)
        self._order: list[str] = []
        self._next_pop = int(self.rng.integers(10, 41))

    def maybe_pop(self, t: int) -> None:
        """Pops at random intervals of 10 to 40 steps."""
        if t >= self._next_pop:
            self.pop()
            self._next_pop = t + int(self.rng.integers(10, 41))

    def pop(self, how: str | None = None) -> None:
        if how is None:  # each round of three pops takes them in a random order
            if not self._order:
                self._order = list(self.rng.permutation(POPS))
            how = str(self._order.pop())
        if not self.envs.n_unpopped:
            return
        want = [s for t in self.truth for s in t.take(how == "finished")]
        got = popped(self.envs, how)
        self.compared += len(got)
        self.infos_compared += sum("info" in w for w in want[: len(got)])
        self.bad += mismatches(got, want)
        self.pops[how] += 1

    def ends(self) -> tuple[int, int]:
        """Counts of terminated and truncated transitions in the truth."""
        steps = [s for t in self.truth for s in t.steps]
        return sum(bool(s["term"]) for s in steps), sum(bool(s["trunc"]) for s in steps)

    def report(self, name: str) -> str:
        n_term, n_trunc = self.ends()
        line = (
            f"{name}: {self.compared} transitions compared ({n_term} terminated, {n_trunc} truncated; "
            f"infos of {self.infos_compared}), pops {self.pops}, mismatches {self.bad}"
        )
        print(line)
        return line
