"""The vendored test files are imitation 1.0.1's, and they run against torchbuf's drop-in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

imitation = pytest.importorskip(
    "imitation", reason="imitation is not installed (the compat environment has 1.0.1)"
)

# sha256 of tests/data/test_wrappers.py in imitation 1.0.1's source distribution.
IMITATION_1_0_1_TEST_WRAPPERS_SHA256 = "c9fcad1f9d0a99f1da31d5443b336ac5a3870f7b1df286e2871cae06474b50b6"
# sha256 of tests/algorithms/test_preference_comparisons.py in the same distribution.
IMITATION_1_0_1_TEST_PREFERENCE_COMPARISONS_SHA256 = (
    "ef353428fc02a75f24a12deb8a681055fdb446fc9b68bf48277b73f65dbd6bbf"
)


def test_vendored_file_is_imitation_1_0_1s_byte_for_byte():
    data = Path(__file__).with_name("test_wrappers.py").read_bytes()
    assert hashlib.sha256(data).hexdigest() == IMITATION_1_0_1_TEST_WRAPPERS_SHA256


def test_vendored_preference_comparisons_is_imitation_1_0_1s_byte_for_byte():
    data = Path(__file__).with_name("test_preference_comparisons.py").read_bytes()
    assert hashlib.sha256(data).hexdigest() == IMITATION_1_0_1_TEST_PREFERENCE_COMPARISONS_SHA256


def test_installed_imitation_is_1_0_1():
    assert imitation.__version__ == "1.0.1"


def test_vendored_tests_run_against_the_dropin(vendored_module):
    from torchbuf.compat.imitation import BufferingWrapper

    assert vendored_module.BufferingWrapper is BufferingWrapper


def test_swap_is_undone_for_other_modules():
    import imitation.data.wrappers as im_wrappers

    assert im_wrappers.BufferingWrapper.__module__ == "imitation.data.wrappers"


def test_preference_comparisons_agent_trainer_buffers_with_the_dropin(dropin_buffering_wrapper, rng):
    """What the vendored preference-comparisons tests run on: imitation's trainer, torchbuf's wrapper."""
    import seals  # noqa: F401
    import stable_baselines3
    from imitation.algorithms import preference_comparisons
    from imitation.rewards import reward_nets
    from imitation.util import util

    from torchbuf.compat.imitation import BufferingWrapper

    venv = util.make_vec_env("seals/CartPole-v0", n_envs=1, rng=rng)
    agent = stable_baselines3.PPO("MlpPolicy", venv, n_epochs=1, batch_size=2, n_steps=10)
    net = reward_nets.BasicRewardNet(venv.observation_space, venv.action_space)
    trainer = preference_comparisons.AgentTrainer(agent, net, venv, rng)
    assert type(trainer.buffering_wrapper) is BufferingWrapper


def test_local_expert_balances_seals_cartpole(cartpole_expert_trajectories):
    """The hub expert's stand-in is an expert: it holds the pole for seals' full 500 steps."""
    assert len(cartpole_expert_trajectories) == 60
    assert all(len(t) == 500 and t.rews.sum() == 500 for t in cartpole_expert_trajectories)
