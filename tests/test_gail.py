"""GAIL: the discriminator learns, it consumes exactly what the buffer recorded, both generator
paths run, the torch-native round never syncs per step, and bad demonstrations are refused."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO as SB3PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from tests.synccount import count_ops
from torchbuf import BufferingWrapper, VectorBufferingWrapper
from torchbuf.data.types import Transitions
from torchbuf.envs import TorchCartPole, TorchPendulum
from torchbuf.envs.experts import EXPERTS, scripted_cartpole
from torchbuf.learners import GAIL, PPO
from torchbuf.learners.presets import GAIL_PRESETS, gail_preset
from torchbuf.learners.reward_nets import BasicRewardNet, gail_reward
from torchbuf.rollout import flatten_trajectories, generate_trajectories, make_sample_until


@pytest.fixture(scope="module")
def demos():
    """4 scripted-expert CartPole episodes (2000 transitions)."""
    return generate_trajectories(
        scripted_cartpole, TorchCartPole(4, seed=0), make_sample_until(min_episodes=4)
    )


def _torch_gail(demos, n_envs=4, n_steps=16, **kwargs):
    env = TorchCartPole(n_envs, seed=1)
    ppo = PPO(env, n_steps=n_steps, batch_size=32, seed=0)
    return GAIL(demos, env, ppo, demo_batch_size=64, seed=0, **kwargs)


def _sb3_gail(demos, n_envs=2, n_steps=32):
    venv = DummyVecEnv([lambda: gym.make("CartPole-v1")] * n_envs)
    venv.seed(1)
    ppo = SB3PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=32, n_epochs=1, seed=0, device="cpu")
    return GAIL(demos, venv, ppo, demo_batch_size=64, seed=0)


def test_discriminator_learns_expert_from_generator(demos):
    gail = _torch_gail(demos, disc_lr=3e-3)
    gen, _ = gail.train_gen()
    steps = [gail.train_disc(gen) for _ in range(60)]
    first, last = steps[0], steps[-1]
    print({k: (round(float(first[k]), 3), round(float(last[k]), 3)) for k in first})
    assert float(last["disc_loss"]) < float(first["disc_loss"]) - 0.1
    assert float(last["disc_acc"]) > max(0.75, float(first["disc_acc"]) + 0.2)
    assert float(last["disc_acc_expert"]) > 0.8
    expert = {k: v[:256] for k, v in gail.expert.items()}
    rewards = [
        gail.reward(*(d[k][:256] for k in ("obs", "acts", "next_obs", "dones"))) for d in (expert, gen)
    ]
    assert rewards[0].mean() > rewards[1].mean() and (rewards[1] > 0).all()  # -log(1 - D) > 0


def test_torch_path_consumes_exactly_the_rollout(demos):
    gail = _torch_gail(demos, n_envs=4, n_steps=16)
    assert (
        isinstance(gail.venv_buffering, VectorBufferingWrapper) and gail.gen_algo.env is gail.venv_buffering
    )
    for _ in range(2):
        gen, _ = gail.train_gen()
        rollout = gail.gen_algo._rollout  # (n_steps, n_envs, ...); pops come env by env
        assert len(gen["obs"]) == gail.gen_train_timesteps == 64
        assert torch.equal(gen["obs"], rollout.obs.transpose(0, 1).reshape(64, 4))
        assert torch.equal(gen["acts"], rollout.actions.T.reshape(64))
        assert torch.equal(gen["dones"], rollout.dones.T.reshape(64))
    history = gail.train(128)
    assert [r["gen_timesteps"] for r in history] == [64.0, 64.0]


def test_sb3_path_consumes_exactly_the_rollout(demos):
    gail = _sb3_gail(demos, n_envs=2, n_steps=32)
    assert isinstance(gail.venv_buffering, BufferingWrapper)
    for _ in range(2):
        gen, _ = gail.train_gen()
        # SB3's training flattened its rollout env by env, as pops come
        buf = gail.gen_algo.rollout_buffer
        assert buf.generator_ready and len(gen["obs"]) == gail.gen_train_timesteps == 64
        assert torch.equal(gen["obs"], torch.as_tensor(buf.observations))
        assert torch.equal(gen["acts"], torch.as_tensor(buf.actions).reshape(64).long())
    assert gail.venv_buffering.n_unpopped == 0


@pytest.mark.parametrize("path", ["torch", "sb3"])
def test_both_paths_train_and_act(demos, path):
    gail = _torch_gail(demos) if path == "torch" else _sb3_gail(demos)
    seen = []
    history = gail.train(2 * gail.gen_train_timesteps, callback=lambda r, s: seen.append(r))
    assert seen == [0, 1] and len(history) == 2
    for key in ("gen_timesteps", "disc_loss", "disc_acc_expert", "disc_acc_gen", "gen_return_mean"):
        assert key in history[0], key
    assert history[0]["gen_n_episodes"] > 0 and history[0]["gen_return_mean"] > 0
    acts = gail.act(torch.zeros(3, 4))
    assert acts.shape == (3,)
    evals = generate_trajectories(gail.act, TorchCartPole(2, seed=5), make_sample_until(min_episodes=2))
    assert len(evals) >= 2
    with pytest.raises(ValueError, match="less than one round"):
        gail.train(gail.gen_train_timesteps - 1)


def test_sb3_path_trains_on_discriminator_rewards(demos):
    gail = _sb3_gail(demos)
    gail.train(gail.gen_train_timesteps)
    obs = gail.venv_train.reset()
    gail.venv_train.step_async(np.zeros(2, dtype=np.int64))
    _, rews, _, infos = gail.venv_train.step_wait()
    assert [info["original_env_rew"] for info in infos] == [1.0, 1.0]
    with torch.no_grad():
        logits = gail.reward_net(torch.as_tensor(obs), torch.zeros(2, dtype=torch.long), None, None)
    np.testing.assert_allclose(rews, gail_reward(logits).numpy(), rtol=1e-6)


@pytest.mark.parametrize("sizes", [(4, 8), (8, 32)])
def test_torch_round_syncs_a_fixed_few_times(demos, sizes):
    n_envs, n_steps = sizes
    gail = _torch_gail(demos, n_envs=n_envs, n_steps=n_steps)
    gail.train_round()  # optimizers create their state on the first step
    with count_ops() as counter:
        gail.train_round()
    print(sizes, dict(counter.syncs))
    # one read, of the round's statistics; nothing per env step, per env or per transition
    assert counter.syncs == {"Tensor.cpu": 1, "Tensor.tolist": 1}, counter.syncs


def test_torch_round_runs_on_meta(demos):
    """Everything but the statistics read: rollout, pop, rewards, discriminator steps."""
    env = TorchCartPole(4, device="meta")
    gail = GAIL(
        [t.to("meta") for t in demos],
        env,
        PPO(env, n_steps=8, batch_size=16, seed=0),
        demo_batch_size=64,
    )
    gen, episodes = gail.train_gen()
    stats = gail.train_disc(gen)
    assert gen["obs"].device.type == "meta" and len(gen["obs"]) == 32
    assert stats["disc_loss"].device.type == "meta"


def test_bad_demonstrations_are_refused(demos):
    env = TorchCartPole(2)
    ppo = PPO(env, n_steps=8, batch_size=16)
    good = flatten_trajectories(demos)
    n = good.batch_size[0]
    wrong_obs = Transitions(
        obs=torch.zeros(n, 3),
        acts=good.acts,
        next_obs=torch.zeros(n, 3),
        dones=good.dones,
        terminated=good.terminated,
        truncated=good.truncated,
        batch_size=[n],
    )
    with pytest.raises(ValueError, match=r"demonstrations\.obs: each row has shape \(3,\)"):
        GAIL(wrong_obs, env, ppo, demo_batch_size=64)
    with pytest.raises(ValueError, match=r"demonstrations\.acts"):
        GAIL(good.replace(acts=torch.zeros(n, 2)), env, ppo, demo_batch_size=64)  # one-hot, not indices
    with pytest.raises(ValueError, match="fewer than demo_batch_size=4096"):
        GAIL(good, env, ppo, demo_batch_size=4096)
    with pytest.raises(ValueError, match="demonstrations: no trajectories"):
        GAIL([], env, ppo)
    with pytest.raises(TypeError, match="demonstrations"):
        GAIL({"obs": good.obs}, env, ppo)
    with pytest.raises(TypeError, match="gen_algo"):
        GAIL(good, env, object(), demo_batch_size=64)


def test_reward_net_is_imitations_basic_reward_net():
    net = BasicRewardNet(
        gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3), use_next_state=True, use_done=True
    )
    assert net.mlp[0].in_features == 4 + 3 + 4 + 1
    obs, acts = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    features = torch.cat([obs, torch.nn.functional.one_hot(acts, 3).float(), obs, torch.ones(5, 1)], 1)
    torch.testing.assert_close(
        net(obs, acts, obs, torch.ones(5, dtype=torch.bool)), net.mlp(features).squeeze(-1)
    )
    logits = torch.tensor([-3.0, 0.0, 3.0])
    torch.testing.assert_close(gail_reward(logits), -torch.log(1 - torch.sigmoid(logits)))


@pytest.mark.parametrize("key", sorted(GAIL_PRESETS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_presets_build_their_trainer(key):
    env_id, backend = key
    preset = gail_preset(env_id, backend)
    expert = EXPERTS[env_id]
    env = TorchCartPole(2, seed=0) if env_id == "CartPole-v1" else TorchPendulum(4, seed=0)
    trajs = generate_trajectories(expert, env, make_sample_until(min_episodes=4))
    gail = preset.make_gail(trajs, seed=0)
    assert gail.torch_path == (backend == "torch")
    assert gail.gen_train_timesteps == preset.n_envs * preset.ppo_kwargs["n_steps"]
    assert preset.total_timesteps >= gail.gen_train_timesteps
    with pytest.raises(ValueError, match="no GAIL preset"):
        gail_preset(env_id, "jax")
