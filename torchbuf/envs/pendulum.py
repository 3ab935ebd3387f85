"""Batched Pendulum on torch tensors, step for step the same as gymnasium's ``Pendulum-v1``."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import torch

from torchbuf.envs._base import TorchVectorEnv

__all__ = ["TorchPendulum"]

GRAVITY = 10.0
MASS = 1.0
LENGTH = 1.0
DT = 0.05
MAX_SPEED = 8.0
MAX_TORQUE = 2.0

# gymnasium's ``3.0 * u`` and ``0.001 * u**2`` with ``u`` a numpy float32 scalar stay float32 under
# numpy 2's promotion rules and become float64 under numpy 1's; follow numpy so the two match.
_TORQUE_DTYPE = torch.float32 if (3.0 * np.float32(1.0)).dtype == np.float32 else torch.float64


class TorchPendulum(TorchVectorEnv):
    """``Pendulum-v1`` for N envs at once, with same-step autoreset.

    State ``(theta, theta_dot)`` is float64, shape ``(N, 2)``; the obs is
    ``(cos theta, sin theta, theta_dot)`` as float32, shape ``(N, 3)``. The reward is
    ``-(angle_normalize(theta)**2 + 0.1 * theta_dot**2 + 0.001 * u**2)`` of the state before
    the step. Episodes never terminate and are truncated after ``max_episode_steps``.

    Actions are a float tensor of shape ``(N, 1)``: the torque, cast to float32 (the action
    space's dtype) and clipped to ``[-2, 2]``. The state is float64; the torque terms are
    computed in the dtype numpy gives gymnasium for them (float32 under numpy 2), which keeps
    trajectories identical to gymnasium's over a whole episode.

    Examples:
        >>> env = TorchPendulum(2, seed=0)
        >>> obs, info = env.reset()
        >>> obs, rew, terminated, truncated, info = env.step(torch.zeros(2, 1))
        >>> obs.shape, rew.shape, terminated.dtype
        (torch.Size([2, 3]), torch.Size([2]), torch.bool)
    """

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        max_episode_steps: int = 200,
    ) -> None:
        """Create N pendulums on ``device``.

        Args:
            num_envs: Number of envs N.
            device: Device of the state and of every returned tensor.
            seed: Seed of the initial-state generator; ``None`` draws a random seed.
            max_episode_steps: Steps after which an episode is truncated.
        """
        high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
        reset_high = torch.tensor([math.pi, 1.0], dtype=torch.float64)
        super().__init__(
            num_envs,
            gymnasium.spaces.Box(-high, high, dtype=np.float32),
            gymnasium.spaces.Box(-MAX_TORQUE, MAX_TORQUE, shape=(1,), dtype=np.float32),
            -reset_high,
            reset_high,
            device=device,
            seed=seed,
            max_episode_steps=max_episode_steps,
        )

    def _check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Check float actions of shape ``(N, 1)``; return the clipped float32 torque, shape ``(N,)``."""
        self._check_shape(actions, (self.num_envs, 1))
        if not actions.dtype.is_floating_point:
            raise ValueError(f"Pendulum actions must be a float tensor, got {actions.dtype}")
        return actions[:, 0].to(torch.float32).clamp(-MAX_TORQUE, MAX_TORQUE)

    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One step of the pendulum equations, as gymnasium's ``PendulumEnv.step``."""
        th, thdot = state.unbind(-1)
        u = actions.to(_TORQUE_DTYPE)
        torque_cost = (0.001 * (u * u)).to(torch.float64)
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + torque_cost
        torque_acc = (3.0 / (MASS * LENGTH**2) * u).to(torch.float64)
        newthdot = thdot + (3 * GRAVITY / (2 * LENGTH) * torch.sin(th) + torque_acc) * DT
        newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED)
        next_state = torch.stack((th + newthdot * DT, newthdot), dim=-1)
        return next_state, -costs, torch.zeros_like(th, dtype=torch.bool)

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        """``(cos theta, sin theta, theta_dot)`` as float32, shape ``(N, 3)``."""
        th, thdot = state.unbind(-1)
        return torch.stack((torch.cos(th), torch.sin(th), thdot), dim=-1).to(torch.float32)


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles to ``[-pi, pi)``, as gymnasium's ``angle_normalize``."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi
