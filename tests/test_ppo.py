"""On-device PPO: it learns CartPole, is seeded, never syncs, bootstraps truncations, runs Box actions."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from tests.synccount import count_ops
from torchbuf import VectorBufferingWrapper
from torchbuf.envs import TorchCartPole, TorchPendulum
from torchbuf.learners import PPO
from torchbuf.rollout import generate_trajectories, make_sample_until, rollout_stats

FAST = {"n_steps": 32, "batch_size": 128, "learning_rate": 2.5e-3}


def _mean_return(policy, seed=100, n=8):
    trajs = generate_trajectories(policy, TorchCartPole(n, seed=seed), make_sample_until(min_episodes=n))
    return rollout_stats(trajs)["return_mean"]


def test_improves_cartpole_over_random():
    random_return = _mean_return(None)
    ppo = PPO(TorchCartPole(16, seed=0), seed=0, **FAST)
    history = []
    ppo.learn(10_000, callback=history.append)
    trained_return = _mean_return(ppo.act)
    print(f"random {random_return:.1f}, PPO after {ppo.num_timesteps} steps {trained_return:.1f}")
    assert ppo.num_timesteps == 10_240 and len(history) == 20
    assert trained_return > 3 * random_return
    assert history[-1]["ep_len_mean"] > history[0]["ep_len_mean"]


def test_same_seed_same_run():
    def run():
        ppo = PPO(TorchCartPole(4, seed=3), n_steps=16, batch_size=32, seed=7)
        history = []
        ppo.learn(128, callback=history.append)
        return history, [p.detach().clone() for p in ppo.policy.parameters()]

    (h1, p1), (h2, p2) = run(), run()
    assert h1 == h2
    for a, b in zip(p1, p2, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = PPO(TorchCartPole(4, seed=3), n_steps=16, batch_size=32, seed=8)
    assert not torch.equal(next(other.policy.parameters()), p1[0])


def test_shapes_and_devices():
    env = TorchCartPole(4, seed=0)
    ppo = PPO(env, n_steps=8, batch_size=16, seed=0)
    assert all(p.device == env.device for p in ppo.policy.parameters())
    ppo.learn(32)
    rollout = ppo._rollout
    assert rollout.obs.shape == (8, 4, 4) and rollout.actions.shape == (8, 4)
    assert rollout.actions.dtype == torch.int64 and rollout.obs.device == env.device
    acts = ppo.act(torch.zeros(3, 4))
    assert acts.shape == (3,) and acts.dtype == torch.int64
    assert ppo.act(torch.zeros(3, 4), deterministic=False).shape == (3,)


def test_rollout_and_update_never_sync():
    ppo = PPO(TorchCartPole(8, seed=0), n_steps=16, batch_size=32, seed=0)
    ppo.learn(128)  # the optimizer's state is created on the first step
    with count_ops() as counter:
        ppo.learn(256)
    assert counter.syncs == {}, counter.syncs


def test_runs_on_meta_device():
    # Nothing has a value on meta: a rollout or update that read one back would raise.
    ppo = PPO(TorchCartPole(4, device="meta"), n_steps=8, batch_size=16, seed=0)
    ppo.learn(64)
    assert ppo.num_timesteps == 64 and next(ppo.policy.parameters()).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_runs_on_cuda():
    ppo = PPO(TorchCartPole(4, device="cuda", seed=0), n_steps=8, batch_size=16, seed=0)
    ppo.learn(64)
    assert ppo.act(torch.zeros(2, 4)).device.type == "cuda"


def test_truncation_bootstraps_from_the_final_observation():
    """A truncated step's reward gets gamma * V(final obs); reward_fn replaces the env's reward."""
    env = TorchCartPole(2, seed=0, max_episode_steps=5)  # too short to fall: every episode is truncated
    ppo = PPO(env, n_steps=5, batch_size=10, gamma=0.9, seed=0)
    seen = []

    def reward_fn(obs, acts, next_obs, dones):
        seen.append((obs.clone(), next_obs.clone(), dones.clone()))
        return torch.zeros(len(obs))

    ppo._obs = None
    ppo._collect(reward_fn)  # one rollout, before any update
    rews = ppo._rollout.rews
    torch.testing.assert_close(rews[:4], torch.zeros(4, 2))
    obs_after, final, dones = seen[4][0], seen[4][1], seen[4][2]
    assert dones.all() and not torch.equal(final, ppo._obs)  # the env returned the reset obs
    with torch.no_grad():
        torch.testing.assert_close(rews[4], 0.9 * ppo.policy.value(final))
    assert torch.equal(seen[3][1], obs_after)  # next_obs of one step is the obs of the next


def test_box_actions_on_pendulum():
    env = TorchPendulum(4, seed=0)
    ppo = PPO(env, n_steps=16, batch_size=32, seed=0, log_std_init=1.0)
    log_std = ppo.policy.log_std.detach().clone()
    seen = []
    ppo.learn(128, reward_fn=lambda o, a, n, d: seen.append(a) or -a.square().sum(-1))
    acts = torch.cat(seen)
    assert acts.shape == (128, 1) and acts.abs().max() <= 2.0  # clipped to the space
    assert (acts.abs() == 2.0).any()  # std e^1 makes clipping happen
    assert ppo._rollout.actions.abs().max() > 2.0  # the raw samples are what is scored
    assert not torch.equal(ppo.policy.log_std, log_std)
    out = ppo.act(torch.zeros(5, 3))
    assert out.shape == (5, 1) and out.dtype == torch.float32


def test_bound_mean_keeps_the_gaussian_mean_inside_the_box():
    env = TorchPendulum(4, seed=0)
    bounded = PPO(env, n_steps=8, batch_size=16, seed=0, bound_mean=True)
    free = PPO(env, n_steps=8, batch_size=16, seed=0)
    for ppo in (bounded, free):  # an actor whose output is far outside [-2, 2]
        torch.nn.init.constant_(ppo.policy.actor[-1].bias, 50.0)
    obs = torch.zeros(3, 3)
    with torch.no_grad():
        mean_bounded, mean_free = bounded.policy._head(obs), free.policy._head(obs)
    assert (mean_bounded <= 2.0).all() and (mean_bounded > 1.9).all()
    assert (mean_free > 40).all()
    samples, _ = bounded.policy.sample(obs.repeat(100, 1), bounded.generator)
    assert (samples < 2.0).any()  # some samples stay inside the box: the policy can still learn there
    bounded.learn(64)


def test_trains_through_the_buffering_wrapper():
    env = VectorBufferingWrapper(TorchCartPole(4, seed=0))
    ppo = PPO(env, n_steps=8, batch_size=16, seed=0)
    ppo.learn(32)
    assert env.pop_transitions().obs.shape == (32, 4)


def test_rejects_envs_it_cannot_train_on():
    numpy_env = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    # gymnasium 1.x declares next-step autoreset (refused at once); 0.29 gives numpy arrays.
    with pytest.raises(ValueError, match="autoreset_mode|obs: PPO needs an env that returns torch"):
        PPO(numpy_env, n_steps=4, batch_size=8).learn(8)
    with pytest.raises(ValueError, match="n_steps=0"):
        PPO(TorchCartPole(2), n_steps=0)
    with pytest.raises(ValueError, match="num_envs"):
        PPO(TorchCartPole(2)).set_env(TorchCartPole(3))
