"""Checkpoints of the first slot layout (``ep_len`` marks), kept to test that they still load.

:func:`scenario` drives a wrapper over :class:`tests.truth.CountingEnv` envs through
episode ends, a ``pop_trajectories`` and a ``pop_finished_trajectories`` with episodes running
across them,
a partial reset (an episode cut) and, in NEXT_STEP mode, envs awaiting their reset
observation at the checkpoint. ``tests/data/slot_layout_v1/`` holds the checkpoints that
torchbuf's first slot layout wrote at the end of the scenario; ``python -m
tests.checkpoint_v1`` wrote them (with that layout's code).
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from tests.truth import CountingEnv, Truth, check_pop
from torchbuf import BufferingWrapper, VectorBufferingWrapper, io

DATA = Path(__file__).parent / "data" / "slot_layout_v1"
KINDS = ("vector-NextStep", "vector-SameStep", "sb3")
TRUNCATE = ([False, True], [True], [False])
# Two schedules (episode lengths per env, steps before the checkpoint): with the first,
# episodes that began before a pop end after the checkpoint (their lengths need the
# carried steps); with the second, a terminal slot keeps the done flags of a transition
# popped earlier (the first layout left them; they must not end a run).
SCHEDULES = {
    "carried": (([3, 7], [2, 9], [6, 1]), 9),
    "stale": (([3, 1, 2], [4, 1, 4], [3, 2, 4]), 12),
}
N_AFTER = 7
CASES = [f"{kind}.{schedule}" for kind in KINDS for schedule in SCHEDULES]


def make(case: str) -> tuple[object, Truth]:
    """A fresh wrapper for ``case`` (``kind.schedule``) over three counting envs, and their truth."""
    kind, schedule = case.split(".")
    ep_lens = SCHEDULES[schedule][0]
    truth = Truth(len(ep_lens))
    fns = [
        (lambda i=i: CountingEnv(i, truth, ep_lens[i], TRUNCATE[i], spaces.Discrete(3), seed=i))
        for i in range(len(ep_lens))
    ]
    if kind == "sb3":
        return BufferingWrapper(DummyVecEnv(fns), capacity=4), truth
    mode = gym.vector.AutoresetMode(kind.split("-")[1])
    return VectorBufferingWrapper(gym.vector.SyncVectorEnv(fns, autoreset_mode=mode), capacity=4), truth


def actions(t: int) -> np.ndarray:
    return np.random.default_rng(t).integers(0, 3, len(TRUNCATE))


def scenario(case: str, wrapper, truth: Truth) -> None:
    """The steps and pops before the checkpoint; every pop is checked against ``truth``."""
    kind, schedule = case.split(".")
    if kind == "sb3":
        wrapper.reset()
    else:
        wrapper.reset(seed=0)
    for t in range(SCHEDULES[schedule][1]):
        if t == 2:
            check_pop(wrapper, truth, "trajectories")  # running episodes carried over the pop
        if t == 4:
            check_pop(wrapper, truth, "finished")
        if t == 6 and kind != "sb3":
            wrapper.reset(options={"reset_mask": np.array([False, True, False])})  # env 1 is cut
        wrapper.step(actions(t))


def finish(case: str, wrapper, truth: Truth) -> None:
    """The steps after the checkpoint, then every kind of pop, checked against ``truth``."""
    n_before = SCHEDULES[case.split(".")[1]][1]
    for t in range(n_before, n_before + N_AFTER):
        wrapper.step(actions(t))
        if t == n_before + 2:
            check_pop(wrapper, truth, "finished")
        if t == n_before + 4:
            check_pop(wrapper, truth, "trajectories")
    check_pop(wrapper, truth, "transitions")


if __name__ == "__main__":
    for case in CASES:
        wrapper, truth = make(case)
        scenario(case, wrapper, truth)
        io.save_checkpoint(DATA / case, wrapper)
        print(case, "unpopped:", wrapper.n_unpopped)
