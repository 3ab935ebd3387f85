"""Runs imitation 1.0.1's own tests of code that buffers against torchbuf's drop-in.

Both vendored files are imitation 1.0.1's, byte for byte, from its source distribution
(MIT licensed, see ``LICENSE.imitation``; ``test_vendored.py`` checks their sha256):

- ``test_wrappers.py`` is its ``tests/data/test_wrappers.py``. It does
  ``from imitation.data.wrappers import BufferingWrapper``: while pytest imports it, that
  name is bound to :class:`torchbuf.compat.imitation.BufferingWrapper`, and restored
  right after, so no other test module sees the swap.
- ``test_preference_comparisons.py`` is its ``tests/algorithms/test_preference_comparisons.py``.
  imitation's ``AgentTrainer`` builds ``wrappers.BufferingWrapper(venv)`` when it runs,
  so for each of its tests the module attribute is torchbuf's drop-in (and restored
  after). The fixtures it takes from imitation's ``tests/conftest.py`` and
  ``tests/algorithms/conftest.py`` are defined here as those files define them, except
  the CartPole expert: imitation downloads a PPO policy from the Hugging Face hub
  (``load_policy("ppo-huggingface", ...)``), which CI cannot reach. Its stand-in is a
  scripted balancing controller that holds seals' CartPole for the full 500 steps; the
  tests that use it only sample its trajectories, they never check the expert's skill.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytest.importorskip("imitation", reason="imitation is not installed (the compat environment has 1.0.1)")

VENDORED = Path(__file__).with_name("test_wrappers.py")
PREFERENCES = Path(__file__).with_name("test_preference_comparisons.py")
CARTPOLE_ENV_NAME = "seals/CartPole-v0"


@contextlib.contextmanager
def dropin() -> Iterator[None]:
    """Binds ``imitation.data.wrappers.BufferingWrapper`` to torchbuf's drop-in."""
    import imitation.data.wrappers as im_wrappers

    from torchbuf.compat.imitation import BufferingWrapper

    original = im_wrappers.BufferingWrapper
    im_wrappers.BufferingWrapper = BufferingWrapper
    try:
        yield
    finally:
        im_wrappers.BufferingWrapper = original


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """Imports the vendored module (collecting it) with the drop-in in place."""
    if isinstance(collector, pytest.Module) and collector.path == VENDORED:
        with dropin():
            return (yield)
    return (yield)


@pytest.fixture
def vendored_module() -> ModuleType:
    """The vendored test module as pytest imported it (imported here if not collected)."""
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path) == VENDORED:
            return module
    spec = importlib.util.spec_from_file_location("imitation_1_0_1_test_wrappers", VENDORED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with dropin():
        spec.loader.exec_module(module)
    return module


@pytest.fixture
def dropin_buffering_wrapper() -> Iterator[None]:
    """``imitation.data.wrappers.BufferingWrapper`` is torchbuf's drop-in for one test."""
    with dropin():
        yield


@pytest.fixture(autouse=True)
def _dropin_for_preference_comparisons(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.path == PREFERENCES:
        with dropin():
            yield
    else:
        yield


# Fixtures of imitation 1.0.1's tests/conftest.py and tests/algorithms/conftest.py.
@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(seed=0)


@pytest.fixture
def custom_logger(tmpdir: str):
    from imitation.util import logger

    return logger.configure(tmpdir)


@pytest.fixture(params=[1, 4], ids=lambda n: f"vecenv({n})")
def cartpole_venv(request: pytest.FixtureRequest, rng: np.random.Generator):
    import seals  # noqa: F401  (registers seals/CartPole-v0)
    from imitation.data.wrappers import RolloutInfoWrapper
    from imitation.util import util

    return util.make_vec_env(
        CARTPOLE_ENV_NAME,
        n_envs=request.param,
        post_wrappers=[lambda env, _: RolloutInfoWrapper(env)],
        rng=rng,
    )


def scripted_cartpole_expert(obs: np.ndarray, state: Any, episode_start: Any) -> tuple[np.ndarray, Any]:
    """The hub expert's stand-in: push toward where the pole falls (an imitation ``PolicyCallable``)."""
    x, x_dot, theta, theta_dot = obs.T
    return (0.1 * x + 0.5 * x_dot + 10 * theta + 2 * theta_dot > 0).astype(np.int64), state


def local_expert(policy_type: str, venv: Any, **kwargs: Any) -> Any:
    """Stands in for ``imitation.policies.serialize.load_policy``'s hub download."""
    assert (policy_type, kwargs.get("env_name")) == ("ppo-huggingface", CARTPOLE_ENV_NAME), kwargs
    return scripted_cartpole_expert


@pytest.fixture
def cartpole_expert_policy(cartpole_venv: Any) -> Any:
    return local_expert("ppo-huggingface", cartpole_venv, env_name=CARTPOLE_ENV_NAME)


def _trajectories(cache: Path, rng: np.random.Generator) -> Any:
    """imitation's own generate-or-load path, with the local expert instead of the hub's."""
    from imitation.policies import serialize
    from imitation.testing.expert_trajectories import lazy_generate_expert_trajectories

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serialize, "load_policy", local_expert)
        return lazy_generate_expert_trajectories(cache, CARTPOLE_ENV_NAME, 60, rng)


@pytest.fixture(scope="session")
def experts_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warm experts cache: imitation keeps one in pytest's cache between runs.

    A fresh one per session keeps stale experts out. It is warmed here because
    imitation's cold-cache call returns the rollouts without infos (only the saved copy
    has them, as empty dicts), which its ``test_trajectory_dataset_seeding`` rejects.
    """
    cache = tmp_path_factory.mktemp("experts")
    _trajectories(cache, np.random.default_rng(seed=0))
    return cache


@pytest.fixture
def cartpole_expert_trajectories(
    cartpole_expert_policy: Any, cartpole_venv: Any, experts_cache: Path, rng: np.random.Generator
) -> Any:
    return _trajectories(experts_cache, rng)
