"""The actor-critic network PPO trains: an MLP policy head and value head, orthogonal init.

Discrete spaces get logits, ``Box`` spaces a Gaussian with a state-independent
log-std (optionally a mean bounded inside the action box).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
from gymnasium import spaces
from torch import nn

__all__ = ["ActorCritic"]


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs with tanh units and CleanRL's orthogonal init.

    Discrete actions: the actor gives a ``Categorical``'s logits. Box actions: the
    actor gives a diagonal Gaussian's mean, with a state-independent ``log_std``
    parameter; samples are clipped to the space only when sent to the env.

    Args:
        observation_space: A Box space of one env (flattened for the MLPs).
        action_space: A Discrete or Box space of one env.
        net_arch: Hidden layer sizes of both MLPs.
        log_std_init: Initial ``log_std`` of a Gaussian policy.
        bound_mean: Squash a Gaussian's mean into the action box
            (``center + half_width * tanh``). Without it the mean can drift out of
            the box, where every sample is clipped to the same action and the
            policy stops exploring there.

    Raises:
        ValueError: a space of another kind.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        net_arch: Sequence[int] = (64, 64),
        log_std_init: float = 0.0,
        bound_mean: bool = False,
    ):
        super().__init__()
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(f"observation_space: PPO needs a Box, got {observation_space}")
        if not isinstance(action_space, spaces.Discrete | spaces.Box):
            raise ValueError(f"action_space: PPO needs Discrete or Box, got {action_space}")
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.bound_mean = bound_mean and not self.discrete
        low: Any = 0.0
        high: Any = 0.0
        if isinstance(action_space, spaces.Discrete):
            self.action_shape: tuple[int, ...] = ()
            n_out = int(action_space.n)
        else:
            self.action_shape = tuple(action_space.shape)
            n_out = math.prod(self.action_shape)
            low, high = action_space.low, action_space.high
        obs_dim = math.prod(observation_space.shape)
        self.critic = _mlp(obs_dim, net_arch, 1, out_gain=1.0)
        self.actor = _mlp(obs_dim, net_arch, n_out, out_gain=0.01)
        self.log_std = None if self.discrete else nn.Parameter(torch.full((n_out,), float(log_std_init)))
        self.low: torch.Tensor
        self.high: torch.Tensor
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def _head(self, obs: torch.Tensor) -> torch.Tensor:
        """The actor's output: logits, or the Gaussian's mean (squashed into the box with ``bound_mean``)."""
        out = self.actor(_flat(obs))
        if not self.bound_mean:
            return out
        low, high = self.low.flatten(), self.high.flatten()
        return (high + low) / 2 + (high - low) / 2 * torch.tanh(out)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """State values, shape ``(batch,)``."""
        return self.critic(_flat(obs)).squeeze(-1)

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples actions and their log-probabilities (shape ``(batch,)``), no host read."""
        out = self._head(obs)
        if self.discrete:
            logp_all = torch.log_softmax(out, -1)
            u = torch.rand(out.shape, generator=generator, device=out.device).clamp_(1e-20, 1.0)
            actions = torch.argmax(logp_all - torch.log(-torch.log(u)), -1)  # Gumbel-max
            return actions, logp_all.gather(-1, actions[:, None]).squeeze(-1)
        assert self.log_std is not None
        noise = torch.randn(out.shape, generator=generator, device=out.device)
        flat = out + self.log_std.exp() * noise
        return flat.reshape((-1, *self.action_shape)), _gaussian_logp(flat, out, self.log_std)

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of ``actions`` and entropies, each shape ``(batch,)``."""
        out = self._head(obs)
        if self.discrete:
            logp_all = torch.log_softmax(out, -1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            return logp_all.gather(-1, actions.long()[:, None]).squeeze(-1), entropy
        assert self.log_std is not None
        logp = _gaussian_logp(_flat(actions), out, self.log_std)
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(len(out))
        return logp, entropy

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The most likely actions (in the env's form: clipped for Box spaces)."""
        out = self._head(obs)
        if self.discrete:
            return out.argmax(-1)
        return self.env_actions(out.reshape((-1, *self.action_shape)))

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as the env takes them: Box samples clipped to the space."""
        if self.discrete:
            return actions
        return torch.maximum(torch.minimum(actions, self.high), self.low)


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [_orthogonal(nn.Linear(in_dim, width), math.sqrt(2)), nn.Tanh()]
        in_dim = width
    layers.append(_orthogonal(nn.Linear(in_dim, out_dim), out_gain))
    return nn.Sequential(*layers)


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.float().flatten(1)


def _gaussian_logp(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
