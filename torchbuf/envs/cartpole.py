"""Batched CartPole on torch tensors, step for step the same as gymnasium's ``CartPole-v1``."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import torch

from torchbuf.envs._base import TorchVectorEnv

__all__ = ["TorchCartPole"]

GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_POLE + MASS_CART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASS_POLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02  # seconds between state updates
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
RESET_BOUND = 0.05


class TorchCartPole(TorchVectorEnv):
    """``CartPole-v1`` for N envs at once, with same-step autoreset.

    State ``(x, x_dot, theta, theta_dot)`` is float64, shape ``(N, 4)``, integrated with
    gymnasium's Euler scheme; the obs is the state cast to float32, shape ``(N, 4)``. The
    reward is 1.0 on every step, the terminating one included. An episode terminates when
    ``|x| > 2.4`` or ``|theta| > 12°`` and is truncated after ``max_episode_steps``.

    Actions are an integer tensor of shape ``(N,)``: 1 pushes right, any other value pushes
    left (as gymnasium's ``force_mag if action == 1 else -force_mag``; values are not checked,
    which would need a device-to-host sync).

    Examples:
        >>> env = TorchCartPole(2, seed=0)
        >>> obs, info = env.reset()
        >>> obs, rew, terminated, truncated, info = env.step(torch.tensor([0, 1]))
        >>> obs.shape, rew.dtype, sorted(info)
        (torch.Size([2, 4]), torch.float32, ['_final_obs', 'final_obs'])
    """

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        max_episode_steps: int = 500,
    ) -> None:
        """Create N cart-poles on ``device``.

        Args:
            num_envs: Number of envs N.
            device: Device of the state and of every returned tensor.
            seed: Seed of the initial-state generator; ``None`` draws a random seed.
            max_episode_steps: Steps after which an episode is truncated.
        """
        high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
        bound = torch.full((4,), RESET_BOUND, dtype=torch.float64)
        super().__init__(
            num_envs,
            gymnasium.spaces.Box(-high, high, dtype=np.float32),
            gymnasium.spaces.Discrete(2),
            -bound,
            bound,
            device=device,
            seed=seed,
            max_episode_steps=max_episode_steps,
        )

    def _check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Check integer actions of shape ``(N,)``."""
        self._check_shape(actions, (self.num_envs,))
        if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
            raise ValueError(f"CartPole actions must be an integer tensor, got {actions.dtype}")
        return actions

    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One Euler step of the cart-pole equations, as gymnasium's ``CartPoleEnv.step``."""
        x, x_dot, theta, theta_dot = state.unbind(-1)
        force = torch.where(actions == 1, FORCE_MAG, -FORCE_MAG).to(torch.float64)
        costheta = torch.cos(theta)
        sintheta = torch.sin(theta)
        temp = (force + POLEMASS_LENGTH * theta_dot * theta_dot * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            LENGTH * (4.0 / 3.0 - MASS_POLE * costheta * costheta / TOTAL_MASS)
        )
        xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        next_state = torch.stack(
            (x + TAU * x_dot, x_dot + TAU * xacc, theta + TAU * theta_dot, theta_dot + TAU * thetaacc),
            dim=-1,
        )
        terminated = _out_of_bounds(next_state)
        return next_state, torch.ones_like(x), terminated

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        """The state cast to float32, shape ``(N, 4)``."""
        return state.to(torch.float32)


def _out_of_bounds(state: torch.Tensor) -> torch.Tensor:
    """Whether the cart left the track or the pole fell, bool of shape ``(N,)``."""
    x, theta = state[:, 0], state[:, 2]
    return (x < -X_THRESHOLD) | (x > X_THRESHOLD) | (theta < -THETA_THRESHOLD) | (theta > THETA_THRESHOLD)
