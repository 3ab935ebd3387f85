"""The main job on a real simulator: mjlab tasks, their experts, their envs.

``torchbuf demo --env mjlab:Mjlab-Cartpole-Balance`` runs the main job on an mjlab
task (Isaac Lab's manager-based API on MuJoCo Warp; its CPU backend works): the env
is mjlab's own ``ManagerBasedRlEnv`` made from the task's registered config and
recorded through :class:`~torchbuf.VectorBufferingWrapper`, which detects the API
(:mod:`torchbuf.adapters.isaaclab`) and keeps every step's ``extras``. Observations
are the env's groups (a TensorDict with ``"actor"`` and ``"critic"``); the expert and
the BC policy act on the task's policy group.

mjlab auto-resets ended envs in the same step and reports no final observation: the
recorded episodes end in a stand-in (NaN) observation, their last step's info says
``final_obs_unknown``. BC reads observations and actions only, so it is not affected.

mjlab is not a dependency of torchbuf: without it, :func:`make_sim_env` and
:func:`require_simulator` raise ``ModuleNotFoundError`` naming what to install.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from torchbuf.data.types import Obs, TrajectoryWithRew
from torchbuf.envs.experts import lqr_cartpole_balance
from torchbuf.learners.policies import GroupPolicy, mlp_policy
from torchbuf.wrappers.vector import VectorBufferingWrapper

__all__ = [
    "MISSING_MJLAB",
    "SIM_ENV_IDS",
    "SIM_TASKS",
    "SimTask",
    "is_sim",
    "make_sim_env",
    "require_simulator",
    "sim_bc_policy",
    "sim_expert",
]

SIM_PREFIX = "mjlab:"
"""Env ids of the main job that start with this name an mjlab task."""

MISSING_MJLAB = (
    "the mjlab envs need mjlab, which is not installed: pip install mjlab==1.6.0 "
    "(install torch first, e.g. pip install torch==2.13.0, so pip keeps that build; "
    "mjlab runs on the CPU through MuJoCo Warp)"
)


@dataclasses.dataclass(frozen=True)
class SimTask:
    """What the main job knows of one mjlab task.

    Attributes:
        expert: The scripted expert, from the policy group's tensor to actions.
        group: The observation group the expert and the BC policy read.
        act_dim: Action dimensions.
        act_low: Low end of the actuator's range (the random policy's uniform actions).
        act_high: High end of it.
    """

    expert: Callable[[torch.Tensor], torch.Tensor]
    group: str = "actor"
    act_dim: int = 1
    act_low: float = -1.0
    act_high: float = 1.0

    @property
    def action_space(self) -> gym.spaces.Box:
        """One env's actions: ``act_dim`` efforts in ``[act_low, act_high]``."""
        return gym.spaces.Box(self.act_low, self.act_high, (self.act_dim,), np.float32)


SIM_TASKS = {"mjlab:Mjlab-Cartpole-Balance": SimTask(lqr_cartpole_balance)}
"""The mjlab tasks the main job runs, by env id (each has a scripted expert)."""

SIM_ENV_IDS = tuple(SIM_TASKS)


def is_sim(env_id: str) -> bool:
    """Whether ``env_id`` names a simulator task (``"mjlab:..."``)."""
    return env_id.startswith(SIM_PREFIX)


def require_simulator(env_id: str) -> None:
    """Raises ``ModuleNotFoundError`` naming what to install when ``env_id``'s simulator is missing.

    Args:
        env_id: An env id of the main job; ids that name no simulator pass.

    Raises:
        ModuleNotFoundError: mjlab is not installed (the message says how to install it).
    """
    if is_sim(env_id) and importlib.util.find_spec("mjlab") is None:
        raise ModuleNotFoundError(f"--env {env_id}: {MISSING_MJLAB}", name="mjlab")


def make_sim_env(
    env_id: str, n_envs: int, device: str, episode_steps: int | None = None
) -> VectorBufferingWrapper:
    """The task's own ``ManagerBasedRlEnv``, recorded by a ``VectorBufferingWrapper``.

    Args:
        env_id: One of :data:`SIM_ENV_IDS`.
        n_envs: Envs of the scene.
        device: Where mjlab simulates and the wrapper stores (``"cpu"`` or ``"cuda"``).
        episode_steps: Episode length in env steps (default: the task's own).

    Returns:
        The wrapped env, not yet reset.

    Raises:
        ModuleNotFoundError: mjlab is not installed.
        ValueError: ``episode_steps`` that the task's step does not give exactly.
    """
    require_simulator(env_id)
    import mjlab.tasks  # noqa: F401  (registers the tasks)
    from mjlab.envs import ManagerBasedRlEnv
    from mjlab.tasks.registry import load_env_cfg

    cfg = load_env_cfg(env_id.removeprefix(SIM_PREFIX))
    cfg.scene.num_envs = n_envs
    if episode_steps is not None:
        # mjlab's max_episode_length is ceil(episode_length_s / step_dt).
        cfg.episode_length_s = (episode_steps - 0.5) * cfg.sim.mujoco.timestep * cfg.decimation
    with contextlib.redirect_stdout(io.StringIO()):  # mjlab prints its managers' tables
        env: Any = ManagerBasedRlEnv(cfg, device=device)  # the wrapper detects its API
    if episode_steps is not None and env.max_episode_length != episode_steps:
        raise ValueError(f"episode_steps={episode_steps}: the env's episodes have {env.max_episode_length}")
    return VectorBufferingWrapper(env)


def sim_expert(env_id: str) -> Callable[[Obs], Any]:
    """The task's scripted expert on the env's observation groups."""
    task = SIM_TASKS[env_id]
    return lambda obs: task.expert(obs[task.group])  # type: ignore[index]


def sim_bc_policy(env_id: str, trajs: Sequence[TrajectoryWithRew]) -> nn.Module:
    """The BC policy for the task: :func:`mlp_policy` on the policy group, sized by the recording."""
    task = SIM_TASKS[env_id]
    obs_dim = int(trajs[0].obs[task.group].shape[-1])  # type: ignore[index]
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    return GroupPolicy(task.group, mlp_policy(obs_space, task.action_space))
