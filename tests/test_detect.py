"""Which API an env speaks (torchbuf.adapters.detect) and the spaces read for adapted envs.

The real Isaac Lab / mjlab and rsl_rl envs are recorded in tests/sims/test_mjlab.py,
torchrl envs in tests/sims/test_torchrl_env.py, Brax / Playground envs in
tests/sims/test_jax.py (each detected there from the real package's env); these checks
run without them. Where a stand-in is used below it is one: it has exactly the
attributes the real class has that detection reads (named in each), nothing it steps.
"""

from __future__ import annotations

import gc
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from torchbuf import VectorBufferingWrapper
from torchbuf.adapters.detect import ADAPTERS, as_vector_env, detect_api
from torchbuf.adapters.jax import JaxVectorEnv, batch_size
from torchbuf.adapters.spaces import space_of, to_gym_space
from torchbuf.envs import TorchCartPole


def test_gymnasium_and_torch_envs_are_recorded_as_they_are():
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    for env in (sync, TorchCartPole(2, seed=0)):
        assert detect_api(env) == "gymnasium" and as_vector_env(env) is env
        assert VectorBufferingWrapper(env, api="gymnasium").env is env


def test_an_unknown_api_is_refused_naming_the_known_ones():
    known = r"'gymnasium', 'torchrl', 'jax', 'isaaclab', 'rsl_rl'"
    with pytest.raises(ValueError, match=rf"unknown env api 'brax'.*{known}"):
        VectorBufferingWrapper(TorchCartPole(2, seed=0), api="brax")
    # torchrl first (its wrappers forward attributes of the env they wrap); isaaclab
    # before rsl_rl: its envs have get_observations() too
    assert [name for name, *_ in ADAPTERS] == ["torchrl", "jax", "isaaclab", "rsl_rl"]


class EnvBase:
    """Stands for ``torchrl.envs.EnvBase``: detection reads only the class's name and module."""

    __module__ = "torchrl.envs.common"


class TorchRLGymEnv(EnvBase):
    """A subclass of it in torchrl's own tree, as ``torchrl.envs.GymEnv`` is."""

    __module__ = "torchrl.envs.libs.gym"


class BraxEnv:
    """Stands for a Brax ``Env`` / Playground ``MjxEnv``: ``reset``, ``step`` and the two size properties."""

    def reset(self, rng):
        raise AssertionError("detection must not reset")

    def step(self, state, action):
        raise AssertionError("detection must not step")

    @property
    def observation_size(self):
        return 4

    @property
    def action_size(self):
        return 1


class VmapWrapper(BraxEnv):
    """Stands for ``brax.envs.wrappers.training.VmapWrapper``: its ``env`` and ``batch_size``."""

    def __init__(self, env, batch_size=None):
        self.env, self.batch_size = env, batch_size


class ManagerBased:
    """Isaac Lab's / mjlab's manager-based env as detection sees it (the attributes it reads)."""

    observation_manager = num_envs = None

    def step(self, action): ...

    def reset(self): ...

    def get_observations(self): ...


class RslRl:
    """rsl_rl's ``VecEnv`` as detection sees it."""

    num_envs = num_actions = None

    def step(self, action): ...

    def get_observations(self): ...


def test_each_api_is_told_apart_from_the_others():
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    single = gym.make("Pendulum-v1")
    namesake = type("EnvBase", (), {"__module__": "mylib.envs"})()  # an EnvBase not of torchrl
    apis = {
        "torchrl": [TorchRLGymEnv()],
        "jax": [BraxEnv(), VmapWrapper(BraxEnv()), VmapWrapper(BraxEnv(), batch_size=8)],
        "isaaclab": [ManagerBased()],
        "rsl_rl": [RslRl()],
        "gymnasium": [sync, single, TorchCartPole(2, seed=0), namesake],
    }
    for api, envs in apis.items():
        for env in envs:
            assert detect_api(env) == api, (type(env).__name__, api)


def test_a_torchrl_wrapper_of_an_isaac_lab_env_is_torchrl():
    """torchrl's ``IsaacLabWrapper`` forwards attribute look-ups to the Isaac Lab env it wraps."""

    class IsaacLabWrapper(TorchRLGymEnv):
        def __getattr__(self, name):
            return getattr(ManagerBased(), name)

    env = IsaacLabWrapper()
    assert hasattr(env, "observation_manager") and detect_api(env) == "torchrl"


def test_a_jax_env_without_a_batch_size_asks_for_jax_vector_env():
    for env in (BraxEnv(), VmapWrapper(BraxEnv())):
        with pytest.raises(ValueError, match=r"no batch size: wrap it as JaxVectorEnv\(env, num_envs=N\)"):
            VectorBufferingWrapper(env)
    with pytest.raises(ValueError, match="no batch size"):
        VectorBufferingWrapper(BraxEnv(), api="jax")


def test_the_batch_size_is_read_from_a_vmap_wrapper_inside_the_env():
    class AutoResetWrapper(BraxEnv):  # brax.envs.create(..., batch_size=8) puts it outside the VmapWrapper
        def __init__(self, env):
            self.env = env

    assert batch_size(AutoResetWrapper(VmapWrapper(BraxEnv(), batch_size=8))) == 8
    assert batch_size(AutoResetWrapper(VmapWrapper(BraxEnv()))) is None
    assert batch_size(BraxEnv()) is None
    with pytest.raises(ValueError, match="num_envs=4, but the env's VmapWrapper has batch_size=8"):
        JaxVectorEnv(VmapWrapper(BraxEnv(), batch_size=8), num_envs=4)
    with pytest.raises(ValueError, match="num_envs must be positive"):
        JaxVectorEnv(BraxEnv(), num_envs=0)


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


def test_a_wrapper_whose_construction_failed_is_collected_quietly():
    """gymnasium 0.29's ``VectorEnvWrapper.__del__`` recursed on the ``env`` never set."""
    unraisable = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with pytest.raises(ValueError, match="unknown env api"):
            VectorBufferingWrapper(TorchCartPole(2, seed=0), api="brax")
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert not unraisable, [u.exc_value for u in unraisable]
