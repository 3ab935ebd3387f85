"""Which API an env speaks (torchbuf.adapters.detect) and the spaces read for adapted envs.

The real Isaac Lab / mjlab and rsl_rl envs are recorded in tests/sims/test_mjlab.py;
these checks run without them.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from torchbuf import VectorBufferingWrapper
from torchbuf.adapters.detect import ADAPTERS, as_vector_env, detect_api
from torchbuf.adapters.spaces import space_of, to_gym_space
from torchbuf.envs import TorchCartPole


def test_gymnasium_and_torch_envs_are_recorded_as_they_are():
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    for env in (sync, TorchCartPole(2, seed=0)):
        assert detect_api(env) == "gymnasium" and as_vector_env(env) is env
        assert VectorBufferingWrapper(env, api="gymnasium").env is env


def test_an_unknown_api_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown env api 'jax'.*'gymnasium', 'isaaclab', 'rsl_rl'"):
        VectorBufferingWrapper(TorchCartPole(2, seed=0), api="jax")
    # isaaclab first: its envs have get_observations() too
    assert [name for name, *_ in ADAPTERS] == ["isaaclab", "rsl_rl"]


def test_space_of_a_tensordict_of_groups():
    img = torch.zeros(3, 2, 2, dtype=torch.uint8)
    obs = TensorDict({"policy": torch.zeros(3, 5), "critic": {"img": img}}, batch_size=[3])
    space = space_of(obs)
    assert space["policy"] == gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
    assert space["critic"]["img"] == gym.spaces.Box(0, 255, (2, 2), np.uint8)
    with pytest.raises(TypeError, match="leading env axis"):
        space_of({"x": torch.tensor(1.0)})


def test_gymnasium_spaces_pass_through_and_bad_ones_are_refused():
    box = gym.spaces.Box(-1, 1, (2,), np.float32)
    assert to_gym_space(box) is box
    with pytest.raises(TypeError, match="no 'spaces', no 'shape'"):
        to_gym_space(object())
