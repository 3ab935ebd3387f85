"""The rsl_rl ``VecEnv`` API (mjlab's ``RslRlVecEnvWrapper``, Playground's ``RSLRLBraxWrapper``).

``step(actions)`` returns ``(obs, rew, dones, extras)``: ``obs`` a TensorDict of
observation groups, ``dones`` (long or float) the end of an episode by termination or
time limit, ``extras["time_outs"]`` the time-limit ones where the env reports them
(mjlab leaves it out for finite-horizon tasks: every done is then a termination).
Envs reset in the same step and report no terminal observation: the terminal slots
hold stand-ins (NaN for floats) and each such transition's info has
``final_obs_unknown=True`` (see :mod:`torchbuf.adapters.isaaclab`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from torchbuf.adapters.spaces import space_of


def is_rsl_rl(env: Any) -> bool:
    """Duck type of rsl_rl's ``VecEnv``: ``get_observations``, ``num_envs``, ``num_actions``, ``step``."""
    return all(hasattr(env, a) for a in ("get_observations", "num_envs", "num_actions", "step"))


class RslRlVectorEnv(VectorEnv):
    """An rsl_rl ``VecEnv`` seen as a SAME_STEP gymnasium ``VectorEnv``.

    ``step`` returns ``(obs, rew, terminated, truncated, extras)``: the env's ``obs``,
    ``rew`` and ``extras`` unchanged, ``truncated = extras["time_outs"]`` (zeros where
    absent) and ``terminated = dones & ~truncated``. The observation space is read
    from ``get_observations()`` (unbounded boxes of its shapes and dtypes), the
    action space is an unbounded float32 box of ``num_actions``.

    Args:
        env: The rsl_rl ``VecEnv``.
    """

    def __init__(self, env: Any):
        self.env = env
        self.num_envs = int(env.num_envs)
        self.single_observation_space = space_of(env.get_observations())
        self.single_action_space = spaces.Box(-np.inf, np.inf, (int(env.num_actions),), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {"autoreset_mode": "same_step"}
        self.render_mode = getattr(env, "render_mode", None)

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Resets every env (``env.reset()``; ``env.seed(seed)`` first where a seed is given).

        Raises:
            ValueError: a partial reset is asked for (the rsl_rl API has none).
        """
        if options and (options.get("env_idx") is not None or options.get("reset_mask") is not None):
            raise ValueError("the rsl_rl VecEnv API has no partial reset (env_idx / reset_mask)")
        if seed is not None and hasattr(self.env, "seed"):
            self.env.seed(seed)
        if hasattr(self.env, "reset"):
            obs, extras = self.env.reset()
            return obs, extras
        return self.env.get_observations(), {}

    def step(self, actions: Any) -> tuple[Any, Any, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Steps the env and splits its ``dones`` by ``extras["time_outs"]``."""
        obs, rew, dones, extras = self.env.step(actions)
        done = dones.bool()
        time_outs = extras.get("time_outs")
        truncated = torch.zeros_like(done) if time_outs is None else time_outs.bool() & done
        return obs, rew, done & ~truncated, truncated, extras

    def close(self, **kwargs: Any) -> None:
        """Closes the env."""
        self.env.close()
