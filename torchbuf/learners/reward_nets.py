"""Reward networks on transitions, as imitation's ``BasicRewardNet``, and GAIL's reward.

A reward net maps a batch ``(obs, acts, next_obs, dones)`` as the buffer stores it
(integer actions for a Discrete space) to one value per transition. GAIL reads it
as the discriminator's logit (high: expert-like) and gives the generator
``-log(1 - D) = -logsigmoid(-logit)``, imitation's ``RewardNetFromDiscriminatorLogit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

__all__ = ["BasicRewardNet", "gail_reward", "preprocess"]


class BasicRewardNet(nn.Module):
    """An MLP over the flattened, concatenated inputs, as imitation's ``BasicRewardNet``.

    Discrete observations and actions are one-hot encoded (without a host read),
    Box ones flattened and cast to float32, ``dones`` cast to float.

    Args:
        observation_space: The observation space of one env (Box or Discrete).
        action_space: The action space of one env (Box or Discrete).
        use_state: Feed the observation.
        use_action: Feed the action.
        use_next_state: Feed the next observation.
        use_done: Feed the done flag.
        hid_sizes: Hidden layer sizes (ReLU units), imitation's default ``(32, 32)``.

    Raises:
        ValueError: a space of another kind, or no input used.

    Examples:
        >>> net = BasicRewardNet(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
        >>> net(torch.zeros(5, 4), torch.ones(5, dtype=torch.long), torch.zeros(5, 4), torch.zeros(5)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        use_state: bool = True,
        use_action: bool = True,
        use_next_state: bool = False,
        use_done: bool = False,
        hid_sizes: Sequence[int] = (32, 32),
    ):
        super().__init__()
        self.observation_space, self.action_space = observation_space, action_space
        self.use_state, self.use_action = use_state, use_action
        self.use_next_state, self.use_done = use_next_state, use_done
        obs_dim = _flat_dim(observation_space, "observation_space")
        act_dim = _flat_dim(action_space, "action_space")
        in_dim = (use_state + use_next_state) * obs_dim + use_action * act_dim + use_done
        if in_dim == 0:
            raise ValueError("BasicRewardNet: at least one of use_state, use_action, ... must be true")
        layers: list[nn.Module] = []
        for width in hid_sizes:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        layers.append(nn.Linear(in_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(
        self, obs: torch.Tensor, acts: torch.Tensor, next_obs: torch.Tensor, dones: torch.Tensor
    ) -> torch.Tensor:
        """The logits of a batch of transitions, shape ``(batch,)``."""
        inputs = []
        if self.use_state:
            inputs.append(preprocess(obs, self.observation_space))
        if self.use_action:
            inputs.append(preprocess(acts, self.action_space))
        if self.use_next_state:
            inputs.append(preprocess(next_obs, self.observation_space))
        if self.use_done:
            inputs.append(dones.reshape(-1, 1).float())
        return self.mlp(torch.cat(inputs, dim=1)).squeeze(-1)


def gail_reward(logits: torch.Tensor) -> torch.Tensor:
    """GAIL's generator reward ``-log(1 - sigmoid(logits))``: positive, rising with the logit."""
    return -F.logsigmoid(-logits)


def preprocess(x: torch.Tensor, space: gym.Space) -> torch.Tensor:
    """A batch as float32 features ``(batch, dim)``: Discrete one-hot, Box flattened."""
    if isinstance(space, spaces.Discrete):
        classes = torch.arange(int(space.n), device=x.device) + int(space.start)
        return (x.reshape(-1, 1) == classes).float()
    return x.reshape(len(x), -1).float()


def _flat_dim(space: gym.Space, name: str) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return math.prod(space.shape)
    raise ValueError(f"{name}: BasicRewardNet takes Box or Discrete spaces, got {space}")
