"""``BatchFit``'s fast path agrees with ``check_batch`` then ``fit_space`` (the general path).

Every case is run through both: the same value back (the same object where no cast is
needed), or the same error message.
"""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from torchbuf import BufferingWrapper
from torchbuf.data.spaces import BatchFit, check_batch, fit_space

BOX = spaces.Box(-1, 1, (3,), np.float32)
DISCRETE = spaces.Discrete(4, start=-1)
IMAGE = spaces.Box(0, 255, (2, 2), np.uint8)
CASES = [
    (BOX, np.zeros((5, 3), np.float32)),
    (BOX, np.zeros((5, 3), np.float64)),  # cast, exactly
    (BOX, np.full((5, 3), 0.1, np.float64)),  # float64 into float32: cast
    (BOX, np.zeros((5, 4), np.float32)),  # wrong shape
    (BOX, np.zeros((4, 3), np.float32)),  # wrong batch
    (BOX, torch.zeros(5, 3)),
    (BOX, torch.zeros(5, 3, dtype=torch.float64)),  # cast, exactly
    (BOX, torch.zeros(5, 4)),  # wrong shape
    (DISCRETE, torch.tensor([-1, 0, 1, 2, 2])),
    (DISCRETE, torch.tensor([-1, 0, 1, 2, 2], dtype=torch.int32)),  # cast to the space's int64
    (DISCRETE, np.array([-1, 0, 1, 2, 2])),
    (DISCRETE, np.array([-1, 0, 3, 2, 2])),  # outside the range, env 2
    (DISCRETE, np.array([-2, 0, 1, 2, 2])),  # outside the range, env 0
    (DISCRETE, np.arange(40 * 5).reshape(5, 40)[:, 0] % 4 - 1),
    (DISCRETE, np.zeros(5, np.float32)),  # a float into an integer space: refused
    (IMAGE, np.zeros((5, 2, 2), np.uint8)),
    (IMAGE, np.full((5, 2, 2), 300, np.int64)),  # 300 does not fit uint8
    (spaces.Dict({"a": BOX}), {"a": np.zeros((5, 3), np.float32)}),
]


def _general(space, value):
    check_batch(space, value, 5, "obs")
    return fit_space(space, value, "obs")


@pytest.mark.parametrize(("space", "value"), CASES)
def test_batch_fit_returns_or_raises_what_the_general_checks_do(space, value):
    try:
        expected = _general(space, value)
    except ValueError as error:
        with pytest.raises(ValueError, match=re.escape(str(error))):
            BatchFit(space, 5, "obs")(value)
        return
    got = BatchFit(space, 5, "obs")(value)
    if isinstance(expected, dict):
        assert got.keys() == expected.keys()
        assert all(np.array_equal(got[k], expected[k]) for k in expected)
        return
    assert (got is value) == (expected is value)
    assert type(got) is type(expected) and got.dtype == expected.dtype
    assert np.array_equal(np.asarray(got), np.asarray(expected))


@pytest.mark.parametrize(("space", "value"), CASES)
def test_a_batch_fit_of_any_size_takes_every_batch_the_sized_one_takes(space, value):
    try:
        expected = BatchFit(space, len(value) if not isinstance(value, dict) else 5, "obs")(value)
    except ValueError as error:
        if "expected shape" in str(error) and not isinstance(value, dict) and len(value) != 5:
            return  # only the sized fit knows the batch size
        with pytest.raises(ValueError, match=re.escape(str(error))):
            BatchFit(space, None, "obs")(value)
        return
    got = BatchFit(space, None, "obs")(value)
    assert (got is value) == (expected is value)


def test_a_many_valued_discrete_batch_is_range_checked():
    space = spaces.Discrete(3)
    fit = BatchFit(space, 64, "actions")
    acts = np.ones(64, np.int64)
    assert fit(acts) is acts
    acts[50] = 3
    with pytest.raises(ValueError, match=r"actions: env 50 gave 3, outside Discrete\(3\)"):
        fit(acts)


class ByteActions(gym.Env):
    """Actions of one byte; counts the steps it takes."""

    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.Box(0, 10, (1,), np.uint8)

    def __init__(self, steps: list):
        self.steps = steps

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.steps.append(action)
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_actions_that_cannot_be_stored_are_refused_before_the_env_steps():
    steps: list = []
    venv = BufferingWrapper(DummyVecEnv([lambda: ByteActions(steps)] * 2))
    venv.reset()
    venv.step(np.array([[3], [4]]))  # int64 values a byte holds: cast, recorded
    with pytest.raises(ValueError, match=r"actions: env 1 gave \[300\]"):
        venv.step(np.array([[3], [300]]))  # 300 is no uint8
    assert len(steps) == 2  # the refused step never reached the envs
    assert venv.pop_transitions().acts.tolist() == [[3], [4]]
