"""Scripted experts for CartPole, Pendulum and mjlab's cartpole: demonstrations without a download.

Each expert is a pure function of a batch of observations. It accepts a numpy array
(returns numpy) or a torch tensor (returns a tensor on the same device, with no
host synchronisation), so the same expert drives an SB3 ``VecEnv`` and a
torch-native env such as :class:`torchbuf.envs.TorchCartPole`.

Measured over 200 episodes (seeded resets of the torch-native envs):
``scripted_cartpole`` keeps CartPole-v1 up for the full 500 steps in all but a rare
episode (mean return above 499.9);
``scripted_pendulum`` reaches a mean return of about -150 on Pendulum-v1 (200
steps), where a random policy gets about -1200;
``lqr_cartpole_balance`` holds mjlab's ``Mjlab-Cartpole-Balance`` at a return of
49.998 of the 50.0 possible (1000 steps of at most 0.05: mjlab scales rewards by the
step's 0.05 s), where zero actions get 29.9 and uniform random ones 10.9 (16 envs,
seed 0).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

__all__ = ["EXPERTS", "lqr_cartpole_balance", "scripted_cartpole", "scripted_pendulum"]

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# Pendulum-v1: theta'' = 15 sin(theta) + 3 u (g = 10, l = 1, m = 1), |u| <= 2, theta = 0 upright.
_PEND_GAIN = 15.0
_PEND_TORQUE_GAIN = 3.0
_MAX_TORQUE = 2.0
_UPRIGHT_ENERGY = _PEND_GAIN  # 0.5 * theta_dot**2 + 15 cos(theta) at rest at the top
_BALANCE_COS = 0.8  # hand over to the balance controller above this cos(theta)
_KP, _KD = 10.0, 2.0  # closed loop near the top: theta'' + 6 theta' + 15 theta = 0

# Mjlab-Cartpole-Balance: the discrete LQR gain of state (x, theta, x_dot, theta_dot) for the
# task's model (its cartpole.xml, contacts off), linearised upright by mujoco.mjd_transitionFD
# over one 0.05 s control step (5 steps of 0.01 s, zero-order hold), with Q = diag(1, 10, 0.1,
# 0.1) and R = 1; its closed-loop eigenvalues have moduli 0.73 and 0.93. u = K . state pushes
# the cart (gear 10 N) toward +x when the pole leans to +x (theta > 0).
_CARTPOLE_LQR_GAIN = (0.683, 5.96, 0.849, 1.44)
_CARTPOLE_CTRL = 1.0  # the motor's ctrlrange is [-1, 1]


def scripted_cartpole(obs: Array) -> Array:
    """A CartPole controller: push toward where the pole is falling.

    Args:
        obs: Observations ``(x, x_dot, theta, theta_dot)``, shape ``(n_envs, 4)``,
            numpy or torch.

    Returns:
        Actions, shape ``(n_envs,)``, int64 (1 pushes right), of the input's kind.

    Examples:
        >>> scripted_cartpole(np.array([[0.0, 0.0, 0.05, 0.0]]))
        array([1])
    """
    push_right = obs[:, 2] + 0.5 * obs[:, 3] > 0
    if isinstance(push_right, torch.Tensor):
        return push_right.long()
    return np.asarray(push_right).astype(np.int64)


def scripted_pendulum(obs: Array) -> Array:
    """A Pendulum swing-up: pump energy, then balance with a PD controller at the top.

    Far from the top the torque pumps the pendulum's energy
    ``0.5 * theta_dot**2 + 15 cos(theta)`` toward that of resting upright
    (``dE/dt = 3 u theta_dot``, so ``u = 2 sign(theta_dot (E* - E))``). Once
    ``cos(theta) > 0.8`` a PD law ``u = -(10 theta + 2 theta_dot)`` holds it there.

    Args:
        obs: Observations ``(cos theta, sin theta, theta_dot)``, shape ``(n_envs, 3)``,
            numpy or torch (float).

    Returns:
        Torques in ``[-2, 2]``, shape ``(n_envs, 1)``, float32, of the input's kind.

    Examples:
        >>> scripted_pendulum(np.array([[-1.0, 0.0, 0.0]], dtype=np.float32))  # at rest, hanging
        array([[2.]], dtype=float32)
    """
    if isinstance(obs, torch.Tensor):
        return _pendulum_torch(obs.to(torch.float32))
    return _pendulum_torch(torch.as_tensor(np.asarray(obs, dtype=np.float32))).numpy()


def _pendulum_torch(obs: torch.Tensor) -> torch.Tensor:
    cos, sin, theta_dot = obs.unbind(-1)
    theta = torch.atan2(sin, cos)
    energy = 0.5 * theta_dot * theta_dot + _PEND_GAIN * cos
    pump = _MAX_TORQUE * torch.sign(theta_dot * (_UPRIGHT_ENERGY - energy))
    # At rest at the bottom sign(0) == 0: give it a kick to start the swing.
    pump = torch.where(pump == 0, torch.full_like(pump, _MAX_TORQUE), pump)
    balance = -(_KP * theta + _KD * theta_dot)
    torque = torch.where(cos > _BALANCE_COS, balance, pump)
    return torque.clamp(-_MAX_TORQUE, _MAX_TORQUE).unsqueeze(-1)


def lqr_cartpole_balance(actor: torch.Tensor) -> torch.Tensor:
    """An LQR controller for mjlab's ``Mjlab-Cartpole-Balance``.

    Args:
        actor: The task's ``"actor"`` observation group ``(x, cos theta, sin theta,
            x_dot, theta_dot)``, shape ``(n_envs, 5)``, a float tensor.

    Returns:
        Motor efforts in ``[-1, 1]``, shape ``(n_envs, 1)``, of the input's dtype and device.

    Examples:
        >>> lqr_cartpole_balance(torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]]))  # at rest, upright
        tensor([[0.]])
        >>> lqr_cartpole_balance(torch.tensor([[0.0, 0.995, 0.0998, 0.0, 0.0]]))  # leaning to +x
        tensor([[0.5958]])
    """
    x, cos, sin, x_dot, theta_dot = actor.unbind(-1)
    state = torch.stack([x, torch.atan2(sin, cos), x_dot, theta_dot], -1)
    gain = torch.tensor(_CARTPOLE_LQR_GAIN, dtype=actor.dtype, device=actor.device)
    return (state @ gain).clamp(-_CARTPOLE_CTRL, _CARTPOLE_CTRL).unsqueeze(-1)


EXPERTS = {"CartPole-v1": scripted_cartpole, "Pendulum-v1": scripted_pendulum}
"""The scripted experts by gymnasium env id."""
