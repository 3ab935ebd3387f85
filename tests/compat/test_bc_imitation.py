"""imitation 1.0.1 as the yardstick: its BC trains from our loader; our loss, stats and
flattening agree with its own."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv
from tensordict import TensorDict

pytest.importorskip("imitation", reason="imitation is not installed (the compat environment has 1.0.1)")
from imitation.algorithms import bc as im_bc  # noqa: E402
from imitation.data import rollout as im_rollout  # noqa: E402

from tests.helpers import assert_obs_equal  # noqa: E402
from torchbuf.envs import TorchCartPole  # noqa: E402
from torchbuf.envs.experts import scripted_cartpole  # noqa: E402
from torchbuf.learners import BC  # noqa: E402
from torchbuf.loader import TransitionLoader, imitation_batches  # noqa: E402
from torchbuf.rollout import flatten_trajectories, generate_trajectories, make_sample_until, rollout_stats  # noqa: E402

CARTPOLE = gym.make("CartPole-v1")


@pytest.fixture(scope="module")
def trajs():
    venv = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2)
    return generate_trajectories(scripted_cartpole, venv, make_sample_until(min_timesteps=300), seed=0)


def _imitation_bc(observation_space, action_space, demonstrations, batch_size):
    return im_bc.BC(
        observation_space=observation_space,
        action_space=action_space,
        demonstrations=demonstrations,
        batch_size=batch_size,
        rng=np.random.default_rng(0),
        device="cpu",
    )


def test_imitation_bc_trains_one_epoch_from_our_loader(trajs):
    loader = TransitionLoader(trajs, 64, seed=0, epochs=1)
    trainer = _imitation_bc(CARTPOLE.observation_space, CARTPOLE.action_space, loader, 64)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    batches_seen = []
    trainer.train(n_epochs=1, progress_bar=False, on_batch_end=lambda: batches_seen.append(1))
    assert len(batches_seen) == loader.batches_per_epoch
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))


def test_imitation_bc_from_dict_observations():
    obs_space = spaces.Dict(
        {"pos": spaces.Box(-1, 1, (2,), np.float32), "vel": spaces.Box(-1, 1, (3,), np.float32)}
    )
    n = 96
    obs = TensorDict({"pos": torch.rand(n, 2), "vel": torch.rand(n, 3)}, [n])
    loader = TransitionLoader({"obs": obs, "acts": torch.randint(0, 2, (n,))}, 32, seed=0)
    trainer = _imitation_bc(obs_space, spaces.Discrete(2), imitation_batches(loader), 32)
    batches_seen = []
    trainer.train(n_epochs=2, progress_bar=False, on_batch_end=lambda: batches_seen.append(1))
    assert len(batches_seen) == 2 * loader.batches_per_epoch


def test_loss_equals_imitations(trajs):
    trainer = _imitation_bc(CARTPOLE.observation_space, CARTPOLE.action_space, None, 32)
    batch = next(iter(TransitionLoader(trajs, 32, seed=0)))
    theirs = im_bc.BehaviorCloningLossCalculator(ent_weight=1e-2, l2_weight=1e-3)(
        trainer.policy, batch["obs"], batch["acts"]
    )
    ours = BC(trainer.policy, ent_weight=1e-2, l2_weight=1e-3).loss(batch["obs"], batch["acts"])
    for name in ("neglogp", "entropy", "ent_loss", "prob_true_act", "l2_norm", "l2_loss", "loss"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name).reshape(()), msg=name)


def test_stats_and_flattening_equal_imitations():
    trajs = generate_trajectories(None, TorchCartPole(3, seed=0), make_sample_until(min_episodes=5))
    theirs = [t.to_imitation() for t in trajs]
    assert rollout_stats(trajs) == pytest.approx(im_rollout.rollout_stats(theirs))
    ours = flatten_trajectories(trajs).to_imitation()
    expected = im_rollout.flatten_trajectories_with_rew(theirs)
    for field in ("obs", "next_obs", "acts", "dones", "rews"):
        assert_obs_equal(getattr(ours, field), getattr(expected, field))
