"""ManiSkill3 on its CPU backend for the sims tests: the env, a scripted PickCube policy.

ManiSkill's SAPIEN needs a Vulkan device even without rendering. :func:`require_maniskill`
skips a test module, naming the exact reason, where ManiSkill is not installed or this
machine gives it no Vulkan device (Debian 12's own lavapipe, Mesa 22.3, lacks
``VK_KHR_external_semaphore_fd``; ``tests/sims/install_vulkan.sh`` installs Mesa 25).
"""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
import torch

ENV_ID = "PickCube-v1"
CONTROL = "pd_ee_delta_pos"  # actions: TCP (dx, dy, dz) and the gripper, in [-1, 1]
# PickCube-v1's flat "state" observation (agent qpos 9, qvel 9, then the task's extras).
GRASPED, TCP_TO_OBJ, OBJ_TO_GOAL = 18, slice(36, 39), slice(39, 42)

_PROBE = f"""
import gymnasium as gym, mani_skill.envs
env = gym.make({ENV_ID!r}, num_envs=1, obs_mode="state", sim_backend="physx_cpu")
env.reset(seed=0)
env.close()
"""


@functools.cache
def vulkan_problem() -> str | None:
    """Why ManiSkill cannot make a CPU env here (its last error line), or ``None``."""
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300)
    if run.returncode == 0:
        return None
    lines = [line for line in (run.stderr or run.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {run.returncode}"


def require_maniskill() -> None:
    """Skips the calling module where ManiSkill 3 or its Vulkan device is missing."""
    pytest.importorskip("mani_skill", reason="needs mani-skill (make test-sims installs it)")
    problem = vulkan_problem()
    if problem is not None:
        pytest.skip(
            f"ManiSkill cannot create a Vulkan device on this machine ({problem}); "
            "it needs Mesa >= 25's lavapipe (bookworm-backports mesa-vulkan-drivers) or a GPU driver",
            allow_module_level=True,
        )


def make_cpu_env(max_episode_steps: int):
    """One PickCube-v1 env on ManiSkill's CPU backend (batched torch tensors, ``num_envs=1``)."""
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers the envs)

    return gym.make(
        ENV_ID,
        num_envs=1,
        obs_mode="state",
        sim_backend="physx_cpu",
        control_mode=CONTROL,
        max_episode_steps=max_episode_steps,
    )


def make_gym_env(max_episode_steps: int):
    """The same env behind ManiSkill's ``CPUGymWrapper`` (numpy, unbatched), for gymnasium's vector envs."""
    from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper

    return CPUGymWrapper(make_cpu_env(max_episode_steps))


def scripted(obs: np.ndarray, rng: np.random.Generator, random: np.ndarray) -> np.ndarray:
    """Actions for a batch of PickCube observations: reach, grasp, carry to the goal.

    Rows where ``random`` holds act at random instead (their episodes run to the
    time limit: truncations); the others mostly succeed (terminations).
    """
    obs = np.asarray(obs, dtype=np.float32)
    to_obj, to_goal = obs[:, TCP_TO_OBJ], obs[:, OBJ_TO_GOAL]
    grasped = obs[:, GRASPED] > 0.5
    move = np.where(grasped[:, None], to_goal, to_obj) * 15
    move[grasped & (np.linalg.norm(to_goal, axis=1) < 0.01)] = 0
    grip = np.where(grasped | (np.linalg.norm(to_obj, axis=1) <= 0.01), -1.0, 1.0)
    acts = np.concatenate([move + rng.normal(0, 0.05, move.shape), grip[:, None]], axis=1)
    acts[random] = rng.uniform(-1, 1, (int(random.sum()), 4))
    return np.clip(acts, -1, 1).astype(np.float32)


def as_torch(x) -> torch.Tensor:
    """An env output as a CPU torch tensor copy (the ground truth keeps its own copy)."""
    return x.detach().clone() if isinstance(x, torch.Tensor) else torch.as_tensor(np.array(x))
