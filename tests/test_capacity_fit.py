"""Pops give back the capacity that doubling overshot, and nothing recorded changes.

Each run records SB3's ``DummyVecEnv`` of gymnasium's CartPole with seeded random
actions twice: through a storage that starts small (it doubles on the way, and pops
shrink it), and through one whose capacity holds every window (it never resizes).
The oracle is that second run: every pop of the first must equal it exactly.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from torchbuf import BufferingWrapper

N_ENVS = 4


def _venv(capacity: int) -> BufferingWrapper:
    venv = BufferingWrapper(DummyVecEnv([lambda: gym.make("CartPole-v1")] * N_ENVS), capacity=capacity)
    venv.seed(0)
    venv.reset()
    return venv


def _record(venv: BufferingWrapper, steps: int, rng: np.random.Generator) -> None:
    for _ in range(steps):
        venv.step(rng.integers(0, 2, N_ENVS))


def _capacity(venv: BufferingWrapper) -> int:
    return venv._recorder.storage.capacity


def _pop(venv: BufferingWrapper, kind: str):
    if kind == "transitions":
        return venv.pop_transitions()
    return (venv.pop_finished_trajectories() if kind == "finished" else venv.pop_trajectories())[0]


def _same(a, b) -> None:
    if not hasattr(a, "next_obs"):  # trajectories
        assert len(a) == len(b)
        for x, y in zip(list(a), list(b)):
            for name in ("obs", "acts", "rews", "terminal"):
                np.testing.assert_array_equal(np.asarray(getattr(x, name)), np.asarray(getattr(y, name)))
        return
    assert len(a) == len(b)
    for name in ("obs", "next_obs", "acts", "rews", "dones", "terminated", "truncated"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))


@pytest.mark.parametrize("kind", ["transitions", "trajectories", "finished"])
def test_a_pop_shrinks_doubled_rows_to_the_window_and_the_data_is_unchanged(kind):
    small, big = _venv(16), _venv(4096)
    rngs = np.random.default_rng(1), np.random.default_rng(1)
    windows = [100, 100, 100, 300, 100]  # the fourth outgrows the fitted rows: growth again
    capacities = []
    for steps in windows:
        _record(small, steps, rngs[0])
        _record(big, steps, rngs[1])
        grown = _capacity(small)
        _same(_pop(small, kind), _pop(big, kind))
        capacities.append((grown, _capacity(small)))
    # window 1 doubled 16 -> 128 (100 steps and the slots episode ends take) and the pop fitted it
    assert capacities[0][0] == 128 and capacities[0][1] < 112, capacities
    assert all(after <= grown for grown, after in capacities), capacities
    if kind != "finished":  # (finished-only pops keep running episodes: each window's top differs)
        # windows like the first fit in the fitted rows: no growth, no resize
        assert capacities[1] == (capacities[0][1],) * 2 == capacities[2], capacities
        # the long window grew again and its pop fitted the rows to it
        assert capacities[3][0] > capacities[3][1] >= 300, capacities
        assert capacities[4] == (capacities[3][1],) * 2, capacities
    assert _capacity(big) == 4096  # the oracle never resized


def test_a_pop_never_shrinks_below_the_capacity_asked_for():
    venv = _venv(500)
    _record(venv, 50, np.random.default_rng(0))
    venv.pop_transitions()
    assert _capacity(venv) == 500


def test_after_a_shrink_the_next_steps_check_their_room_again():
    """Slots a long window left free are not counted once the rows shrink (the skipped check)."""
    small, big = _venv(64), _venv(4096)
    rngs = np.random.default_rng(2), np.random.default_rng(2)
    for venv, rng in zip((small, big), rngs):
        _record(venv, 1000, rng)  # grows to 1024 and more: a wide stretch of free slots per row
        venv.pop_transitions()
        _record(venv, 10, rng)  # short window: the pop fits the rows to the longest window seen
        venv.pop_transitions()
    fitted = _capacity(small)
    assert fitted < 1100
    for venv, rng in zip((small, big), rngs):
        _record(venv, fitted + 50, rng)  # past the fitted rows: must grow, not overflow
    assert _capacity(small) > fitted
    _same(small.pop_transitions(), big.pop_transitions())
