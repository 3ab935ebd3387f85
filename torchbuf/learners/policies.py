"""Small MLP policies for behaviour cloning, for discrete and box action spaces.

:func:`mlp_policy` builds the network that :class:`torchbuf.learners.BC` trains in
the main job: for a ``Discrete`` action space it returns logits (BC reads them as a
``Categorical``), for a ``Box`` action space a :class:`GaussianMLP` that returns an
``Independent(Normal)`` distribution whose mode is its mean. :class:`GroupPolicy` runs
one of them on one group of a dict observation (an Isaac Lab / mjlab ``"actor"`` group).
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDictBase
from torch import nn
from torch.distributions import Distribution, Independent, Normal

__all__ = ["GaussianMLP", "GroupPolicy", "mlp", "mlp_policy"]


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int] = (64, 64)) -> nn.Sequential:
    """A tanh MLP ``in_dim -> hidden... -> out_dim`` with a linear last layer.

    Args:
        in_dim: Input features.
        out_dim: Output features.
        hidden: Widths of the hidden layers.

    Returns:
        The network.

    Examples:
        >>> mlp(4, 2, (8,))
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): Tanh()
          (2): Linear(in_features=8, out_features=2, bias=True)
        )
    """
    layers: list[nn.Module] = []
    widths = [in_dim, *hidden]
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.Tanh()]
    layers.append(nn.Linear(widths[-1], out_dim))
    return nn.Sequential(*layers)


class GaussianMLP(nn.Module):
    """A diagonal Gaussian policy: an MLP for the mean, a learned state-independent log std.

    Args:
        obs_dim: Observation features.
        act_dim: Action dimensions.
        hidden: Widths of the hidden layers.
        log_std: Initial log standard deviation.

    Examples:
        >>> policy = GaussianMLP(3, 1)
        >>> policy(torch.zeros(5, 3)).mode.shape
        torch.Size([5, 1])
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64), log_std: float = 0.0):
        super().__init__()
        self.mean = mlp(obs_dim, act_dim, hidden)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std)))

    def forward(self, obs: torch.Tensor) -> Distribution:
        """The action distribution for an observation batch, shape ``(batch, act_dim)``."""
        return Independent(Normal(self.mean(obs), self.log_std.exp(), validate_args=False), 1)


def mlp_policy(
    observation_space: gym.Space, action_space: gym.Space, hidden: Sequence[int] = (64, 64)
) -> nn.Module:
    """The BC policy for one env's spaces: logits for ``Discrete``, a Gaussian for ``Box``.

    Args:
        observation_space: A flat ``Box`` observation space (of one env).
        action_space: A ``Discrete`` or flat ``Box`` action space (of one env).
        hidden: Widths of the hidden layers.

    Returns:
        The policy module (on the CPU).

    Raises:
        ValueError: a space of another kind, or not one-dimensional.

    Examples:
        >>> policy = mlp_policy(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
        >>> policy(torch.zeros(3, 4)).shape
        torch.Size([3, 2])
    """
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(f"observation_space must be a flat Box, got {observation_space}")
    obs_dim = int(observation_space.shape[0])
    if isinstance(action_space, gym.spaces.Discrete):
        return mlp(obs_dim, int(action_space.n), hidden)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianMLP(obs_dim, int(np.prod(action_space.shape)), hidden)
    raise ValueError(f"action_space must be Discrete or a flat Box, got {action_space}")


class GroupPolicy(nn.Module):
    """A policy that reads one group of a dict observation.

    Args:
        group: The key of the group (e.g. ``"actor"``).
        policy: The module run on that group's tensor.

    Examples:
        >>> from tensordict import TensorDict
        >>> policy = GroupPolicy("actor", GaussianMLP(5, 1))
        >>> obs = TensorDict({"actor": torch.zeros(3, 5), "critic": torch.zeros(3, 7)}, batch_size=[3])
        >>> policy(obs).mode.shape
        torch.Size([3, 1])
    """

    def __init__(self, group: str, policy: nn.Module):
        super().__init__()
        self.group, self.policy = group, policy

    def forward(self, obs: TensorDictBase) -> Distribution:
        """The inner policy's output for ``obs[group]``."""
        return self.policy(obs[self.group])  # type: ignore[no-any-return]
