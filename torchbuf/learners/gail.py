"""GAIL whose generator rollouts come out of torchbuf's buffering wrappers.

As imitation's ``AdversarialTrainer`` / ``GAIL``: each round the generator trains
on the discriminator's reward ``-log(1 - D)`` for one rollout, the buffering
wrapper under it records that rollout, GAIL pops it (``pop_transitions()``) and
takes ``n_disc_updates_per_round`` discriminator steps, each on a batch of
expert transitions against as many of the round's generator transitions, with
a binary cross-entropy on the logits (expert = 1).

Two generator paths, chosen by ``gen_algo``:

- **SB3**: ``stable_baselines3`` PPO (any on-policy algorithm) on an SB3 ``VecEnv``.
  The env is wrapped in :class:`~torchbuf.BufferingWrapper` and then in a
  :class:`~torchbuf.learners.reward_wrapper.RewardVecEnvWrapper` whose rewards come
  from the discriminator, and the algorithm's env is set to that.
- **torch**: :class:`torchbuf.learners.PPO` on a torch-native vector env, wrapped
  in :class:`~torchbuf.VectorBufferingWrapper`; the discriminator's reward is
  PPO's ``reward_fn``. Rollout, pop, rewards and discriminator steps all stay on
  the env's device: one host read per round, of the round's statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.nn import functional as F

from torchbuf.buffer.popapi import PopAPI
from torchbuf.data.types import Obs, Trajectory, Transitions
from torchbuf.learners.bc import _make_optimizer
from torchbuf.learners.ppo import PPO
from torchbuf.learners.reward_nets import BasicRewardNet, gail_reward
from torchbuf.learners.reward_wrapper import RewardVecEnvWrapper
from torchbuf.loader import TransitionLoader, device_generator
from torchbuf.rollout import _predict_on_device, flatten_trajectories
from torchbuf.wrappers.sb3 import BufferingWrapper
from torchbuf.wrappers.vector import VectorBufferingWrapper

__all__ = ["GAIL"]

Batch = dict[str, torch.Tensor]
_FIELDS = ("obs", "acts", "next_obs", "dones")
_EPISODE_KEYS = {
    "ep_return_mean": "gen_return_mean",
    "ep_len_mean": "gen_ep_len_mean",
    "n_episodes": "gen_n_episodes",
}


class GAIL:
    """Generative adversarial imitation learning from buffered generator rollouts.

    Args:
        demonstrations: Expert transitions (:class:`~torchbuf.data.types.Transitions`) or
            trajectories (flattened here), e.g. from
            :func:`torchbuf.rollout.generate_trajectories`.
        venv: For SB3's PPO: an SB3 ``VecEnv`` or a :class:`~torchbuf.BufferingWrapper`.
            For torchbuf's PPO: a torch-native vector env or a
            :class:`~torchbuf.VectorBufferingWrapper`. A raw env is wrapped here.
        gen_algo: The generator: ``stable_baselines3.PPO`` or
            :class:`torchbuf.learners.PPO`; its env is set to the wrapped ``venv``.
        demo_batch_size: Expert (and generator) transitions per discriminator step.
        n_disc_updates_per_round: Discriminator steps after each generator rollout.
        disc_lr: Adam's learning rate for the discriminator.
        reward_net: The discriminator: a module from ``(obs, acts, next_obs, dones)``
            batches (as the buffer stores them) to logits of shape ``(batch,)``;
            default :class:`~torchbuf.learners.reward_nets.BasicRewardNet` on
            ``(obs, acts)``.
        seed: Seeds the default discriminator's initialisation and the sampling of
            expert and generator batches (seed ``gen_algo`` yourself).

    Raises:
        TypeError: ``gen_algo``, ``venv`` or ``demonstrations`` is of an unsupported kind.
        ValueError: the demonstrations do not fit the env's spaces (naming the
            field), or are fewer than ``demo_batch_size``.

    Examples:
        >>> from torchbuf.envs import TorchCartPole
        >>> from torchbuf.envs.experts import scripted_cartpole
        >>> from torchbuf.learners import PPO
        >>> from torchbuf.rollout import generate_trajectories, make_sample_until
        >>> demos = generate_trajectories(
        ...     scripted_cartpole, TorchCartPole(2, seed=0), make_sample_until(min_episodes=2)
        ... )
        >>> env = TorchCartPole(4, seed=1)
        >>> gail = GAIL(demos, env, PPO(env, n_steps=16, batch_size=32, seed=0), demo_batch_size=32, seed=0)
        >>> [int(r["gen_timesteps"]) for r in gail.train(128)]
        [64, 64]
    """

    def __init__(
        self,
        demonstrations: Transitions | Sequence[Trajectory],
        venv: Any,
        gen_algo: PPO | BaseAlgorithm,
        *,
        demo_batch_size: int = 1024,
        n_disc_updates_per_round: int = 4,
        disc_lr: float = 1e-3,
        reward_net: nn.Module | None = None,
        seed: int | None = None,
    ):
        if not isinstance(gen_algo, PPO | BaseAlgorithm):
            raise TypeError(
                f"gen_algo must be torchbuf.learners.PPO or an SB3 algorithm, got {type(gen_algo).__name__}"
            )
        self.gen_algo = gen_algo
        self.torch_path = isinstance(gen_algo, PPO)
        self.device = torch.device(gen_algo.device)
        obs_space, act_space = _single_spaces(venv)
        self.expert = _expert_fields(demonstrations, obs_space, act_space, self.device)
        n_expert = len(self.expert["obs"])
        if n_expert < demo_batch_size:
            raise ValueError(
                f"demonstrations: {n_expert} transitions are fewer than demo_batch_size={demo_batch_size}"
            )
        self.demo_batch_size, self.n_disc_updates_per_round = demo_batch_size, n_disc_updates_per_round
        self.reward_net = (reward_net or _seeded_net(obs_space, act_space, seed)).to(self.device)
        self.disc_optimizer = _make_optimizer(self.reward_net, torch.optim.Adam, {"lr": disc_lr})
        self.generator = device_generator(self.device, seed)
        loader = TransitionLoader(self.expert, demo_batch_size, epochs=None, generator=self.generator)
        self._expert_batches = iter(loader)
        self.venv_buffering, self.venv_train = self._wrap(venv)
        n_steps = int(getattr(gen_algo, "n_steps", 1))
        self.gen_train_timesteps = n_steps * int(venv.num_envs)
        """Generator env steps per round: one rollout of every env."""

    # ------------------------------------------------------------------ public API
    @property
    def policy(self) -> nn.Module:
        """The generator's policy."""
        return self.gen_algo.policy

    def train(
        self, total_timesteps: int, *, callback: Callable[[int, dict[str, float]], None] | None = None
    ) -> list[dict[str, float]]:
        """Alternates generator rollouts and discriminator steps for whole rounds.

        Runs ``total_timesteps // gen_train_timesteps`` rounds (:meth:`train_round`).

        Args:
            total_timesteps: Generator env steps to take at most (whole rounds).
            callback: Called after each round with its index and statistics.

        Returns:
            Each round's statistics (one host read per round), with ``gen_timesteps``
            (transitions popped that round), ``gen_return_mean`` /
            ``gen_ep_len_mean`` / ``gen_n_episodes`` (env returns of the episodes
            that ended in the round; NaN when none did), ``gen_reward_mean``
            (discriminator reward of the round's transitions), and the means over
            the round's discriminator steps of ``disc_loss``, ``disc_acc``,
            ``disc_acc_expert``, ``disc_acc_gen``.

        Raises:
            ValueError: ``total_timesteps`` is less than one round.
        """
        n_rounds = total_timesteps // self.gen_train_timesteps
        if n_rounds < 1:
            raise ValueError(
                f"total_timesteps={total_timesteps} is less than one round "
                f"(gen_train_timesteps={self.gen_train_timesteps})"
            )
        history = []
        for r in range(n_rounds):
            stats = self.train_round()
            history.append(stats)
            if callback is not None:
                callback(r, stats)
        return history

    def train_round(self) -> dict[str, float]:
        """One round: a generator rollout and update, the pop, the discriminator steps."""
        gen, episodes = self.train_gen()
        disc = [self.train_disc(gen) for _ in range(self.n_disc_updates_per_round)]
        with torch.no_grad():
            reward = self.reward(*(gen[k] for k in _FIELDS)).mean()
        stats = {**episodes, "gen_reward_mean": reward}
        for key in disc[0] if disc else ():
            stats[key] = torch.stack([d[key] for d in disc]).mean()
        values = torch.stack([v.double().reshape(()) for v in stats.values()]).cpu().tolist()
        return {"gen_timesteps": float(len(gen["obs"])), **dict(zip(stats, values, strict=True))}

    def train_gen(self) -> tuple[Batch, dict[str, torch.Tensor]]:
        """Trains the generator for one rollout and pops what the buffer recorded of it.

        Returns:
            The round's generator transitions (``obs``, ``acts``, ``next_obs``,
            ``dones`` on the discriminator's device) and the env returns of the
            episodes that ended (``gen_return_mean``, ``gen_ep_len_mean``,
            ``gen_n_episodes``; tensors).
        """
        if isinstance(self.gen_algo, PPO):
            self.gen_algo.learn(self.gen_train_timesteps, reward_fn=self.reward)
            last = self.gen_algo.last_stats
            episodes = {new: last[old] for old, new in _EPISODE_KEYS.items()}
        else:
            self.gen_algo.learn(self.gen_train_timesteps, reset_num_timesteps=False)
            assert isinstance(self.venv_train, RewardVecEnvWrapper)
            episodes = _host_episode_stats(*self.venv_train.pop_episode_returns(), self.device)
        trans = self.venv_buffering.pop_transitions()
        return {k: getattr(trans, k).to(self.device) for k in _FIELDS}, episodes

    def train_disc(self, gen_samples: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One discriminator step: an expert batch against generator transitions drawn from ``gen_samples``.

        Args:
            gen_samples: Generator transitions (``obs``, ``acts``, ``next_obs``,
                ``dones``), drawn with replacement as imitation's replay buffer does.

        Returns:
            ``disc_loss``, ``disc_acc``, ``disc_acc_expert``, ``disc_acc_gen`` of the
            batch before the step (tensors on the device; no host read).
        """
        expert = next(self._expert_batches)
        n = len(gen_samples["obs"])
        idx = torch.randint(n, (self.demo_batch_size,), generator=self.generator, device=self.device)
        batch = {k: torch.cat([expert[k], gen_samples[k].index_select(0, idx)]) for k in _FIELDS}
        labels = torch.cat([torch.ones(self.demo_batch_size), torch.zeros(self.demo_batch_size)]).to(
            self.device
        )
        self.reward_net.train(True)
        logits = self.reward_net(*(batch[k] for k in _FIELDS))
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_optimizer.step()
        correct = ((logits.detach() > 0) == labels.bool()).float()
        return {
            "disc_loss": loss.detach(),
            "disc_acc": correct.mean(),
            "disc_acc_expert": correct[: self.demo_batch_size].mean(),
            "disc_acc_gen": correct[self.demo_batch_size :].mean(),
        }

    def reward(
        self, obs: torch.Tensor, acts: torch.Tensor, next_obs: torch.Tensor, dones: torch.Tensor
    ) -> torch.Tensor:
        """GAIL's generator reward ``-log(1 - D)`` of a batch of transitions, shape ``(batch,)``."""
        self.reward_net.train(False)
        with torch.no_grad():
            return gail_reward(self.reward_net(obs, acts, next_obs, dones))

    def act(self, obs: Obs | np.ndarray, deterministic: bool = True) -> torch.Tensor:
        """The generator policy's actions for an observation batch.

        Args:
            obs: Observations, shape ``(batch,) + obs_shape``.
            deterministic: The policy's mode rather than a sample.

        Returns:
            Actions in the env's form, shape ``(batch,) + action_shape``.
        """
        obs_t = obs if isinstance(obs, torch.Tensor) else torch.as_tensor(obs)
        if isinstance(self.gen_algo, PPO):
            return self.gen_algo.act(obs_t, deterministic)
        return _predict_on_device(self.gen_algo.policy, obs_t, deterministic)

    # ------------------------------------------------------------------ setup
    def _wrap(self, venv: Any) -> tuple[PopAPI, Any]:
        """The buffering wrapper over ``venv`` and the env the generator trains on."""
        if isinstance(self.gen_algo, PPO):
            if isinstance(venv, VectorBufferingWrapper):
                buffering = venv
            elif isinstance(venv, gym.vector.VectorEnv):
                buffering = VectorBufferingWrapper(venv, keep_infos=False)
            else:
                raise TypeError(
                    f"venv: torchbuf's PPO needs a torch-native vector env, got {type(venv).__name__}"
                )
            if self.gen_algo.env is not buffering:
                self.gen_algo.set_env(buffering)
            return buffering, buffering
        if isinstance(venv, BufferingWrapper):
            sb3_buffering = venv
        elif isinstance(venv, VecEnv):
            sb3_buffering = BufferingWrapper(venv, device=self.device)
        else:
            raise TypeError(
                f"venv: SB3's {type(self.gen_algo).__name__} needs an SB3 VecEnv, got {type(venv).__name__}"
            )
        train = RewardVecEnvWrapper(sb3_buffering, self._host_reward)
        self.gen_algo.set_env(train)
        return sb3_buffering, train

    def _host_reward(
        self, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray, dones: np.ndarray
    ) -> np.ndarray:
        def put(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, device=self.device)

        return self.reward(put(obs), put(acts), put(next_obs), put(dones)).cpu().numpy()


def _expert_fields(
    demonstrations: Any, obs_space: gym.Space, act_space: gym.Space, device: torch.device
) -> Batch:
    """The expert's ``obs``, ``acts``, ``next_obs``, ``dones`` on ``device``, checked against the spaces."""
    if isinstance(demonstrations, Sequence) and not isinstance(demonstrations, str):
        if len(demonstrations) == 0:
            raise ValueError("demonstrations: no trajectories")
        if not all(isinstance(t, Trajectory) for t in demonstrations):
            raise TypeError(
                "demonstrations: expected torchbuf Trajectory objects (convert with from_imitation)"
            )
        demonstrations = flatten_trajectories(demonstrations)
    if not isinstance(demonstrations, Transitions):
        raise TypeError(
            f"demonstrations: expected torchbuf Transitions or a sequence of Trajectory, "
            f"got {type(demonstrations).__name__}"
        )
    fields = {k: getattr(demonstrations, k) for k in _FIELDS}
    for name, space in (("obs", obs_space), ("next_obs", obs_space), ("acts", act_space)):
        _check_rows(f"demonstrations.{name}", fields[name], space)
    return {k: v.to(device) for k, v in fields.items()}


def _check_rows(field: str, value: Any, space: gym.Space) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(
            f"{field}: expected a tensor (dict observations are not supported), got {type(value).__name__}"
        )
    expected = tuple(space.shape or ())
    if tuple(value.shape[1:]) != expected:
        raise ValueError(
            f"{field}: each row has shape {tuple(value.shape[1:])}, "
            f"but the env's space {space} has shape {expected}"
        )


def _host_episode_stats(
    returns: np.ndarray, lengths: np.ndarray, device: torch.device
) -> dict[str, torch.Tensor]:
    n = len(returns)
    values = [returns.mean() if n else np.nan, lengths.mean() if n else np.nan, n]
    names = ("gen_return_mean", "gen_ep_len_mean", "gen_n_episodes")
    return {k: torch.tensor(float(v), dtype=torch.float64, device=device) for k, v in zip(names, values)}


def _single_spaces(venv: Any) -> tuple[gym.Space, gym.Space]:
    """One env's observation and action spaces (an SB3 VecEnv's spaces are one env's)."""
    if isinstance(venv, VecEnv):
        return venv.observation_space, venv.action_space
    return venv.single_observation_space, venv.single_action_space


def _seeded_net(obs_space: gym.Space, act_space: gym.Space, seed: int | None) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return BasicRewardNet(obs_space, act_space)
