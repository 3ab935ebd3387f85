"""Behaviour cloning: imitation's loss, no host sync per step, determinism, and a CartPole clone."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn
from torch.distributions import Independent, Normal

from tests.synccount import count_ops
from torchbuf.envs import TorchCartPole, TorchPendulum
from torchbuf.envs.experts import scripted_cartpole, scripted_pendulum
from torchbuf.learners import BC
from torchbuf.loader import TransitionLoader
from torchbuf.rollout import generate_trajectories, make_sample_until, rollout_stats

CARTPOLE = gym.make("CartPole-v1")


def _mlp(device="cpu"):
    return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2)).to(
        device
    )


def _sb3_policy():
    return ActorCriticPolicy(CARTPOLE.observation_space, CARTPOLE.action_space, lambda _: 1e-3)


@pytest.fixture(scope="module")
def expert_trajs():
    """10 scripted-expert CartPole episodes (5000 transitions), on the torch env."""
    return generate_trajectories(
        scripted_cartpole, TorchCartPole(10, seed=0), make_sample_until(min_episodes=10)
    )


def _batch(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, 4, generator=g), "acts": torch.randint(0, 2, (n,), generator=g)}


@pytest.mark.parametrize("make_policy", [_mlp, _sb3_policy], ids=["module", "sb3"])
def test_train_step_never_syncs(make_policy):
    bc = BC(make_policy(), l2_weight=1e-4)
    bc.train_step(_batch())  # optimizer state is created on the first step
    with count_ops() as counter:
        metrics = bc.train_step(_batch(seed=1))
    assert counter.syncs == {}, counter.syncs
    assert metrics.loss.requires_grad and metrics.entropy is not None


def test_train_step_on_meta_device():
    # Nothing has a value on meta: a step that read one back would raise.
    bc = BC(_mlp("meta"))
    metrics = bc.train_step(
        {"obs": torch.empty(16, 4, device="meta"), "acts": torch.zeros(16, dtype=torch.long, device="meta")}
    )
    assert metrics.loss.device.type == "meta"


def test_loss_is_imitations_formula():
    policy = _sb3_policy()
    bc = BC(policy, ent_weight=0.1, l2_weight=0.01)
    batch = _batch()
    metrics = bc.loss(batch["obs"], batch["acts"])
    _, log_prob, entropy = policy.evaluate_actions(batch["obs"], batch["acts"])
    l2 = sum(p.square().sum() for p in policy.parameters()) / 2
    expected = -log_prob.mean() - 0.1 * entropy.mean() + 0.01 * l2
    torch.testing.assert_close(metrics.loss, expected)
    torch.testing.assert_close(metrics.prob_true_act, log_prob.exp().mean())
    floats = metrics.to_floats()
    assert floats["loss"] == pytest.approx(expected.item(), rel=1e-6)


def test_same_seed_same_parameters(expert_trajs):
    def run(seed):
        torch.manual_seed(seed)
        bc = BC(_mlp())
        bc.train(TransitionLoader(expert_trajs, 64, seed=seed, epochs=None), n_batches=30)
        return [p.detach().clone() for p in bc.policy.parameters()]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_cartpole_clone_reaches_expert_return(expert_trajs):
    torch.manual_seed(0)
    bc = BC(_mlp(), optimizer_kwargs={"lr": 3e-3})
    loader = TransitionLoader(expert_trajs, 128, seed=0, epochs=None)
    first = bc.train(loader, n_batches=1)
    last = bc.train(loader, n_batches=1000)
    assert first is not None and last is not None
    data = loader.data
    accuracy = float((bc.act(data["obs"]) == data["acts"]).float().mean())
    evals = generate_trajectories(bc.act, TorchCartPole(20, seed=123), make_sample_until(min_episodes=20))
    stats = rollout_stats(evals)
    print(
        f"BC CartPole: loss {first.to_floats()['loss']:.3f} -> {last.to_floats()['loss']:.3f}, "
        f"accuracy on expert actions {accuracy:.3f}, "
        f"eval return mean {stats['return_mean']:.1f} (min {stats['return_min']:.0f}) "
        f"over {stats['n_traj']} episodes"
    )
    assert last.loss.item() < first.loss.item()
    assert accuracy >= 0.9
    assert stats["n_traj"] >= 20 and stats["return_mean"] >= 475


def test_sb3_policy_clone_on_sb3_vecenv():
    venv = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 5)
    trajs = generate_trajectories(scripted_cartpole, venv, make_sample_until(min_episodes=5), seed=0)
    torch.manual_seed(0)
    bc = BC(_sb3_policy(), optimizer_kwargs={"lr": 3e-3})
    loader = TransitionLoader(trajs, 128, seed=0, epochs=None)
    bc.train(loader, n_batches=400)
    accuracy = float((bc.act(loader.data["obs"]) == loader.data["acts"]).float().mean())
    stats = rollout_stats(
        generate_trajectories(
            bc.policy, venv, make_sample_until(min_episodes=5), seed=1, deterministic_policy=True
        )
    )
    print(f"BC (SB3 policy) CartPole: accuracy {accuracy:.3f}, eval return mean {stats['return_mean']:.1f}")
    assert accuracy >= 0.9


def test_continuous_actions_with_a_distribution_module():
    class Gaussian(nn.Module):
        def __init__(self):
            super().__init__()
            self.mean = nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 1))
            self.log_std = nn.Parameter(torch.zeros(1))

        def forward(self, obs):
            return Independent(Normal(self.mean(obs), self.log_std.exp()), 1)

    trajs = generate_trajectories(
        scripted_pendulum, TorchPendulum(4, seed=0), make_sample_until(min_episodes=4)
    )
    torch.manual_seed(0)
    bc = BC(Gaussian(), ent_weight=0.0)
    loader = TransitionLoader(trajs, 100, seed=0, epochs=None)
    first = bc.train(loader, n_batches=1)
    with count_ops() as counter:
        bc.train(loader, n_batches=10)
    assert counter.syncs == {}
    last = bc.train(loader, n_batches=300)
    assert first is not None and last is not None and last.neglogp.item() < first.neglogp.item() - 0.2
    assert bc.act(loader.data["obs"][:5]).shape == (5, 1)


def test_weight_decay_is_refused():
    with pytest.raises(ValueError, match="l2_weight"):
        BC(_mlp(), optimizer_kwargs={"weight_decay": 0.1})
