"""A real client: imitation 1.0.1's GAIL trains with torchbuf's drop-in as its buffer.

imitation's ``AdversarialTrainer`` builds ``wrappers.BufferingWrapper(venv)`` from
``imitation.data.wrappers``; binding that name to torchbuf's drop-in puts torchbuf in
GAIL's data path. The same tiny run with imitation's own wrapper is the yardstick.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

pytest.importorskip("imitation", reason="imitation is not installed (the compat environment has 1.0.1)")
from imitation.algorithms.adversarial.gail import GAIL  # noqa: E402
from imitation.data import rollout  # noqa: E402
from imitation.data import wrappers as im_wrappers  # noqa: E402
from imitation.rewards.reward_nets import BasicRewardNet  # noqa: E402
from imitation.util import logger as im_logger  # noqa: E402

from torchbuf.compat.imitation import BufferingWrapper  # noqa: E402

N_ENVS, N_STEPS, ROUNDS, SEED = 2, 64, 3, 0


def scripted_cartpole(observations, states, episode_starts):
    """Pushes toward the pole's lean: balances CartPole for the full 500 steps."""
    theta, theta_dot = observations[:, 2], observations[:, 3]
    return (theta + 0.5 * theta_dot > 0).astype(np.int64), None


def cartpole_venv() -> DummyVecEnv:
    return DummyVecEnv([lambda: gym.make("CartPole-v1")] * N_ENVS)


@pytest.fixture(scope="module")
def demonstrations():
    venv = cartpole_venv()
    venv.seed(SEED)
    rng = np.random.default_rng(SEED)
    trajs = rollout.generate_trajectories(scripted_cartpole, venv, rollout.make_min_timesteps(200), rng)
    assert min(len(t) for t in trajs) == 500  # the controller is an expert
    return trajs


def train_gail(wrapper_cls, demonstrations, tmp_path, monkeypatch):
    """Runs ``ROUNDS`` GAIL rounds with ``wrapper_cls`` as imitation's BufferingWrapper.

    Returns:
        The trainer, and per round the trajectories GAIL popped from its buffer.
    """
    monkeypatch.setattr(im_wrappers, "BufferingWrapper", wrapper_cls)
    torch.manual_seed(SEED)
    venv = cartpole_venv()
    learner = PPO("MlpPolicy", venv, n_steps=N_STEPS, batch_size=64, n_epochs=1, seed=SEED, device="cpu")
    trainer = GAIL(
        demonstrations=demonstrations,
        demo_batch_size=64,
        gen_replay_buffer_capacity=128,
        n_disc_updates_per_round=1,
        venv=venv,
        gen_algo=learner,
        reward_net=BasicRewardNet(venv.observation_space, venv.action_space),
        allow_variable_horizon=True,
        log_dir=tmp_path,
        custom_logger=im_logger.configure(tmp_path, format_strs=[]),
    )
    popped = []
    pop = trainer.venv_buffering.pop_trajectories

    def spy():
        trajs, ep_lens = pop()
        popped.append(trajs)
        return trajs, ep_lens

    monkeypatch.setattr(trainer.venv_buffering, "pop_trajectories", spy)
    trainer.train(total_timesteps=ROUNDS * N_ENVS * N_STEPS)
    monkeypatch.undo()
    return trainer, popped


def sorted_rows(trajs):
    trans = rollout.flatten_trajectories_with_rew(trajs)
    rows = np.concatenate([trans.obs, trans.acts[:, None], trans.next_obs, trans.rews[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])], trans


def test_gail_runs_on_the_dropin_as_on_imitations_wrapper(demonstrations, tmp_path, monkeypatch):
    ours, ours_popped = train_gail(BufferingWrapper, demonstrations, tmp_path / "ours", monkeypatch)
    theirs, theirs_popped = train_gail(
        im_wrappers.BufferingWrapper, demonstrations, tmp_path / "theirs", monkeypatch
    )
    assert isinstance(ours.venv_buffering, BufferingWrapper)
    assert type(theirs.venv_buffering).__module__ == "imitation.data.wrappers"

    per_round = [[sum(len(t) for t in trajs) for trajs in popped] for popped in (ours_popped, theirs_popped)]
    assert per_round[0] == per_round[1] == [N_ENVS * N_STEPS] * ROUNDS
    assert ours._gen_replay_buffer.size() == theirs._gen_replay_buffer.size() == 128

    # Round 1 starts from the same seeds and the same initial policy, so both buffers
    # saw the same transitions (in another order: compare as multisets). Later rounds
    # depend on the order the discriminator sampled them in, so they may differ.
    ours_rows, ours_trans = sorted_rows(ours_popped[0])
    theirs_rows, theirs_trans = sorted_rows(theirs_popped[0])
    np.testing.assert_array_equal(ours_rows, theirs_rows)
    for name in ("obs", "acts", "next_obs", "rews", "dones"):
        assert getattr(ours_trans, name).dtype == getattr(theirs_trans, name).dtype, name
    assert ours_trans.dones.sum() == theirs_trans.dones.sum()
