"""Compact on-device PPO for torch-native vector envs (CleanRL's recipe).

The rollout lives in tensors preallocated on the env's device (``(n_steps, n_envs)``
leading dims), advantages come from GAE, and the update is the clipped surrogate
with a value loss, an entropy bonus and gradient-norm clipping. Nothing in the
rollout or the update reads a value back to the host: actions are sampled with the
learner's own ``torch.Generator``, episode ends are masks, and Adam is the fused
implementation (as in :class:`~torchbuf.learners.BC`). The only host reads are the
statistics handed to a ``callback``, once per iteration.

Envs auto-reset on the same step (gymnasium's ``SAME_STEP``): the observation a
step returns is already the next episode's first one where an episode ended, and
``info["final_obs"]`` holds the true last observation. A truncated episode is
bootstrapped from the value of that final observation; a terminated one is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from torchbuf.adapters.gymnasium import Autoreset, autoreset_mode
from torchbuf.learners.actor_critic import ActorCritic
from torchbuf.learners.bc import _make_optimizer
from torchbuf.loader import device_generator

__all__ = ["PPO", "ActorCritic", "RewardFn"]

RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``reward_fn(obs, acts, next_obs, dones) -> rewards`` of shape ``(n_envs,)``.

``acts`` are the actions the env received (clipped to a Box space), ``next_obs``
the true next observations (the final one where an episode ended), ``dones``
``terminated | truncated``."""

_FINAL_KEYS = (("final_obs", "_final_obs"), ("final_observation", "_final_observation"))


class PPO:
    """Proximal policy optimisation on a torch-native gymnasium vector env.

    Args:
        env: A vector env whose ``reset``/``step`` return torch tensors and that
            auto-resets on the same step with ``info["final_obs"]`` (e.g.
            :class:`torchbuf.envs.TorchCartPole`, possibly inside a
            :class:`~torchbuf.VectorBufferingWrapper`). Box observations;
            Discrete or Box actions.
        n_steps: Steps per env per rollout.
        batch_size: Minibatch size (the last minibatch of an epoch may be smaller).
        n_epochs: Passes over each rollout.
        learning_rate: Adam's learning rate.
        gamma: Discount factor.
        gae_lambda: GAE's lambda.
        clip_range: Clipping of the probability ratio.
        ent_coef: Weight of the entropy bonus.
        vf_coef: Weight of the value loss (mean squared error, as SB3's).
        max_grad_norm: Gradient-norm clipping.
        net_arch: Hidden layer sizes of the actor and the critic.
        seed: Seeds the network's initialisation, the sampling generator and the
            env's first reset. ``None`` draws from torch's global generator.
        normalize_advantage: Normalise advantages per minibatch.
        log_std_init: Initial log standard deviation of a Gaussian policy.
        bound_mean: Keep a Gaussian policy's mean inside the action box (see
            :class:`ActorCritic`).
        device: Device of the policy and rollout; default: the env's ``device``
            attribute, else CPU.

    Raises:
        ValueError: unsupported spaces or autoreset mode, or non-positive sizes.

    Examples:
        >>> from torchbuf.envs import TorchCartPole
        >>> ppo = PPO(TorchCartPole(4, seed=0), n_steps=8, batch_size=16, seed=0)
        >>> ppo.learn(64).num_timesteps
        64
        >>> ppo.act(torch.zeros(3, 4)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        *,
        n_steps: int = 128,
        batch_size: int = 256,
        n_epochs: int = 4,
        learning_rate: float = 3e-4,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float = 0.2,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        net_arch: Sequence[int] = (64, 64),
        seed: int | None = None,
        normalize_advantage: bool = True,
        log_std_init: float = 0.0,
        bound_mean: bool = False,
        device: torch.device | str | None = None,
    ):
        for name, value in (("n_steps", n_steps), ("batch_size", batch_size), ("n_epochs", n_epochs)):
            if value < 1:
                raise ValueError(f"{name}={value} must be positive")
        _check_autoreset(env)
        self.n_steps, self.batch_size, self.n_epochs = n_steps, batch_size, n_epochs
        self.gamma, self.gae_lambda, self.clip_range = gamma, gae_lambda, clip_range
        self.ent_coef, self.vf_coef, self.max_grad_norm = ent_coef, vf_coef, max_grad_norm
        self.normalize_advantage = normalize_advantage
        self.seed = seed
        self.device = torch.device(device if device is not None else _env_device(env))
        self.env = env
        self.num_envs = int(env.num_envs)
        self.num_timesteps = 0
        self.policy = _build_policy(env, net_arch, log_std_init, bound_mean, seed).to(self.device)
        self.optimizer = _make_optimizer(self.policy, torch.optim.Adam, {"lr": learning_rate, "eps": 1e-5})
        self.generator = device_generator(self.device, seed)
        self._rollout = _Rollout(
            n_steps, self.num_envs, env.single_observation_space, self.policy, self.device
        )
        self._episodes = _EpisodeStats(self.num_envs, self.device)
        self._obs: torch.Tensor | None = None
        self.last_stats: dict[str, torch.Tensor] = {}
        """The statistics of the last iteration, as tensors on the device (see :meth:`learn`)."""

    def set_env(self, env: gym.vector.VectorEnv) -> None:
        """Trains on ``env`` from now on (reset at the next :meth:`learn`), as SB3's ``set_env``.

        Raises:
            ValueError: the env's number of envs or spaces differ from the current env's.
        """
        _check_autoreset(env)
        for name in ("num_envs", "single_observation_space", "single_action_space"):
            new, old = getattr(env, name), getattr(self.env, name)
            if new != old:
                raise ValueError(f"{name}: the new env has {new}, PPO has {old}")
        self.env = env
        self._episodes = _EpisodeStats(self.num_envs, self.device)
        self._obs = None

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """The policy's actions for an observation batch, in the env's form, on the policy's device.

        Args:
            obs: Observations, shape ``(batch,) + obs_shape`` (moved to the policy's device).
            deterministic: The distribution's mode rather than a sample.

        Returns:
            Actions, shape ``(batch,) + action_shape`` (Box actions clipped to the space).
        """
        obs = torch.as_tensor(obs).to(self.device)
        with torch.no_grad():
            if deterministic:
                return self.policy.mode(obs)
            return self.policy.env_actions(self.policy.sample(obs, self.generator)[0])

    def learn(
        self,
        total_timesteps: int,
        *,
        reward_fn: RewardFn | None = None,
        callback: Callable[[dict[str, float]], None] | None = None,
    ) -> PPO:
        """Collects rollouts and updates the policy until ``total_timesteps`` more steps are taken.

        As SB3's ``learn(reset_num_timesteps=False)``: whole rollouts of ``n_steps``
        steps of every env, until at least ``total_timesteps`` env steps were
        taken in this call. The env is reset on the first call only.

        Args:
            total_timesteps: Env steps (summed over envs) to take at least.
            reward_fn: Replaces the env's rewards (e.g. GAIL's discriminator reward).
            callback: Called after each iteration with its statistics (floats,
                one host read): ``ep_return_mean`` / ``ep_len_mean`` of the episodes
                that ended (env rewards; NaN when none ended), ``n_episodes``,
                ``loss``, ``pg_loss``, ``value_loss``, ``entropy``, ``approx_kl``,
                ``clip_fraction``, ``num_timesteps``.

        Returns:
            This learner.
        """
        per_rollout = self.n_steps * self.num_envs
        for _ in range(max(1, -(-total_timesteps // per_rollout))):
            episodes = self._collect(reward_fn)
            self.last_stats = {**episodes, **self._update()}
            self.num_timesteps += per_rollout
            if callback is not None:
                callback(_stats_to_floats(self.last_stats, self.num_timesteps))
        return self

    # ------------------------------------------------------------------ rollout
    def _collect(self, reward_fn: RewardFn | None) -> dict[str, torch.Tensor]:
        """Runs ``n_steps`` steps of every env into the rollout tensors (no host read)."""
        obs = self._reset() if self._obs is None else self._obs
        buf, episodes = self._rollout, self._episodes
        self.policy.train(False)
        for t in range(self.n_steps):
            with torch.no_grad():
                actions, logp = self.policy.sample(obs, self.generator)
                env_actions = self.policy.env_actions(actions)
                next_obs, rews, terminated, truncated, info = self.env.step(env_actions)
                dones = terminated | truncated
                final = _final_obs(info, next_obs, dones)
                episodes.add(rews, dones)
                if reward_fn is not None:
                    rews = reward_fn(obs, env_actions, final, dones)
                bootstrap = truncated & ~terminated
                rews = rews.float() + self.gamma * self.policy.value(final) * bootstrap
                buf.store(t, obs, actions, logp, self.policy.value(obs), rews, dones)
            obs = next_obs
        self._obs = obs
        with torch.no_grad():
            buf.compute_returns(self.policy.value(obs), self.gamma, self.gae_lambda)
        return episodes.pop()

    def _reset(self) -> torch.Tensor:
        self._episodes = _EpisodeStats(self.num_envs, self.device)
        obs, _ = self.env.reset(seed=self.seed)
        if not isinstance(obs, torch.Tensor):
            raise ValueError(f"obs: PPO needs an env that returns torch tensors, got {type(obs).__name__}")
        return obs.to(self.device)

    # ------------------------------------------------------------------ update
    def _update(self) -> dict[str, torch.Tensor]:
        """``n_epochs`` passes of clipped-PPO minibatch steps over the rollout (no host read)."""
        self.policy.train(True)
        data = self._rollout.flat()
        n = self._rollout.size
        sums: dict[str, torch.Tensor] = {}
        n_batches = 0
        for _ in range(self.n_epochs):
            order = torch.randperm(n, generator=self.generator, device=self.device)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                stats = self._train_step({k: v.index_select(0, idx) for k, v in data.items()})
                for k, v in stats.items():
                    sums[k] = sums[k] + v if k in sums else v
                n_batches += 1
        return {k: v / n_batches for k, v in sums.items()}

    def _train_step(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logp, entropy = self.policy.evaluate(mb["obs"], mb["actions"])
        values = self.policy.value(mb["obs"])
        adv = mb["advantages"]
        if self.normalize_advantage and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        log_ratio = logp - mb["logp"]
        ratio = log_ratio.exp()
        clipped = ratio.clamp(1 - self.clip_range, 1 + self.clip_range)
        pg_loss = torch.maximum(-adv * ratio, -adv * clipped).mean()
        value_loss = (mb["returns"] - values).square().mean()
        entropy_mean = entropy.mean()
        loss = pg_loss - self.ent_coef * entropy_mean + self.vf_coef * value_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clip_fraction = ((ratio - 1).abs() > self.clip_range).float().mean()
        return {
            "loss": loss.detach(),
            "pg_loss": pg_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": entropy_mean.detach(),
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
        }


class _Rollout:
    """Preallocated rollout tensors, shape ``(n_steps, n_envs, ...)``, on one device."""

    def __init__(
        self, n_steps: int, n_envs: int, obs_space: gym.Space, policy: ActorCritic, device: torch.device
    ):
        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros((n_steps, n_envs, *shape), dtype=dtype, device=device)

        self.size = n_steps * n_envs
        self.obs = zeros(*(obs_space.shape or ()))
        self.actions = zeros(dtype=torch.int64) if policy.discrete else zeros(*policy.action_shape)
        self.logp, self.values, self.rews = zeros(), zeros(), zeros()
        self.dones = zeros(dtype=torch.bool)
        self.advantages, self.returns = zeros(), zeros()

    def store(self, t: int, *row: torch.Tensor) -> None:
        """Writes step ``t``: obs, actions, log-probs, values, rewards, dones."""
        for dst, src in zip((self.obs, self.actions, self.logp, self.values, self.rews, self.dones), row):
            dst[t].copy_(src)

    def compute_returns(self, last_value: torch.Tensor, gamma: float, lam: float) -> None:
        """GAE advantages and returns; ``dones[t]`` cuts the bootstrap after step ``t``."""
        next_value, gae = last_value, torch.zeros_like(last_value)
        for t in reversed(range(self.rews.shape[0])):
            live = (~self.dones[t]).float()
            delta = self.rews[t] + gamma * next_value * live - self.values[t]
            gae = delta + gamma * lam * live * gae
            self.advantages[t] = gae
            next_value = self.values[t]
        torch.add(self.advantages, self.values, out=self.returns)

    def flat(self) -> dict[str, torch.Tensor]:
        """The rollout as ``(n_steps * n_envs, ...)`` views."""
        names = ("obs", "actions", "logp", "advantages", "returns")
        return {k: getattr(self, k).flatten(0, 1) for k in names}


class _EpisodeStats:
    """Env returns and lengths of episodes, on the device; running ones carry over rollouts."""

    def __init__(self, n_envs: int, device: torch.device):
        self.ret = torch.zeros(n_envs, dtype=torch.float64, device=device)
        self.len = torch.zeros(n_envs, dtype=torch.float64, device=device)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # returns, lengths, count

    def add(self, rews: torch.Tensor, dones: torch.Tensor) -> None:
        """Adds a step's env rewards; episodes that ended go into the sums."""
        self.ret += rews
        self.len += 1
        ended = torch.stack((self.ret, self.len, torch.ones_like(self.len))) * dones
        self.sums += ended.sum(1)
        self.ret *= ~dones
        self.len *= ~dones

    def pop(self) -> dict[str, torch.Tensor]:
        """Means over the episodes that ended since the last pop (NaN when none), and their count."""
        ret_sum, len_sum, count = self.sums.clone().unbind()
        self.sums.zero_()
        return {"ep_return_mean": ret_sum / count, "ep_len_mean": len_sum / count, "n_episodes": count}


def _stats_to_floats(stats: dict[str, torch.Tensor], num_timesteps: int) -> dict[str, float]:
    """Reads every statistic to the host at once (one sync on an accelerator)."""
    values = torch.stack([v.detach().double().reshape(()) for v in stats.values()]).cpu().tolist()
    return {**dict(zip(stats, values, strict=True)), "num_timesteps": float(num_timesteps)}


def _final_obs(info: Mapping[str, Any], next_obs: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
    """The true next observations: ``info``'s final observations where an episode ended."""
    for key, mask_key in _FINAL_KEYS:
        final = info.get(key)
        if isinstance(final, torch.Tensor):
            mask = info.get(mask_key, dones)
            mask = mask.reshape((-1,) + (1,) * (next_obs.dim() - 1))
            return torch.where(mask, final.to(next_obs), next_obs)
    raise ValueError(
        "info: a same-step autoreset env must give info['final_obs'] as a full-batch tensor "
        f"(with the mask info['_final_obs']); got keys {sorted(info)}"
    )


def _check_autoreset(env: Any) -> None:
    mode = autoreset_mode(env)
    if mode is not Autoreset.SAME_STEP:
        raise ValueError(f"autoreset_mode: PPO needs same-step autoreset, {env} declares {mode.value!r}")


def _env_device(env: Any) -> torch.device:
    device = getattr(getattr(env, "unwrapped", env), "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")


def _build_policy(
    env: Any, net_arch: Sequence[int], log_std_init: float, bound_mean: bool, seed: int | None
) -> ActorCritic:
    """Builds the actor-critic on the CPU, its initialisation seeded without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return ActorCritic(
            env.single_observation_space, env.single_action_space, net_arch, log_std_init, bound_mean
        )
