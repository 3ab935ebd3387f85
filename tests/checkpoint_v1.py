"""Checkpoints of the first slot layout (``ep_len`` marks), kept to test that they still load.

:func:`scenario` drives a wrapper over :class:`tests.truth.CountingEnv` envs through
episode ends, a ``pop_finished_trajectories`` (running episodes carried over the pop),
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
EP_LENS = ([3, 5], [2, 6], [4, 1])
TRUNCATE = ([False, True], [True], [False])
N_BEFORE, N_AFTER = 9, 7


def make(kind: str) -> tuple[object, Truth]:
    """A fresh wrapper of ``kind`` over three counting envs, and their truth."""
    truth = Truth(len(EP_LENS))
    fns = [
        (lambda i=i: CountingEnv(i, truth, EP_LENS[i], TRUNCATE[i], spaces.Discrete(3), seed=i))
        for i in range(len(EP_LENS))
    ]
    if kind == "sb3":
        return BufferingWrapper(DummyVecEnv(fns), capacity=4), truth
    mode = gym.vector.AutoresetMode(kind.split("-")[1])
    return VectorBufferingWrapper(gym.vector.SyncVectorEnv(fns, autoreset_mode=mode), capacity=4), truth


def actions(t: int) -> np.ndarray:
    return np.random.default_rng(t).integers(0, 3, len(EP_LENS))


def scenario(kind: str, wrapper, truth: Truth) -> None:
    """The steps and pops before the checkpoint; every pop is checked against ``truth``."""
    if kind == "sb3":
        wrapper.reset()
    else:
        wrapper.reset(seed=0)
    for t in range(N_BEFORE):
        if t == 4:
            check_pop(wrapper, truth, "finished")
        if t == 6 and kind != "sb3":
            wrapper.reset(options={"reset_mask": np.array([False, True, False])})  # env 1 is cut
        wrapper.step(actions(t))


def finish(wrapper, truth: Truth) -> None:
    """The steps after the checkpoint, then every kind of pop, checked against ``truth``."""
    for t in range(N_BEFORE, N_BEFORE + N_AFTER):
        wrapper.step(actions(t))
        if t == N_BEFORE + 2:
            check_pop(wrapper, truth, "finished")
        if t == N_BEFORE + 4:
            check_pop(wrapper, truth, "trajectories")
    check_pop(wrapper, truth, "transitions")


if __name__ == "__main__":
    for kind in KINDS:
        wrapper, truth = make(kind)
        scenario(kind, wrapper, truth)
        io.save_checkpoint(DATA / kind, wrapper)
        print(kind, "unpopped:", wrapper.n_unpopped)
