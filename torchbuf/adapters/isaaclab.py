"""Isaac Lab's manager-based API (``ManagerBasedRLEnv``; mjlab's ``ManagerBasedRlEnv``).

The env's step returns ``(obs, rew, terminated, time_outs, extras)`` with ``obs`` a
dict of observation groups (``"policy"`` / ``"actor"``, ``"critic"``, ...; a group is a
tensor, or a dict of terms when its terms are not concatenated). What is recorded:

- every observation group, as a nested TensorDict (the step's ``obs`` as returned);
- ``terminated`` / ``time_outs`` as terminated / truncated;
- with auto-reset (the default; mjlab's ``cfg.auto_reset=True``) the env resets ended
  envs in the same step and returns their reset observation. The terminal one is known
  only where the env puts it in ``extras["final_obs"]`` (full batch, read where an
  episode ended); otherwise the terminal slots hold stand-ins (NaN for floats), never
  the reset observation, the wrapper warns once, and each such transition's info has
  ``final_obs_unknown=True``;
- the mode is the one the env declares (recent Isaac Lab: ``metadata["autoreset_mode"]``,
  SAME_STEP or DISABLED from ``cfg.autoreset_mode``), else mjlab's ``cfg.auto_reset``;
- with mjlab's ``cfg.auto_reset=False`` (or Isaac Lab's DISABLED) the done step returns
  the true terminal observation and the caller resets the ended envs
  (``reset(options={"env_idx": ids})`` or ``{"reset_mask": mask}`` on the wrapper,
  passed on as ``env_ids``): gymnasium's DISABLED mode. Reset them before the next
  step (mjlab refuses to step otherwise; Isaac Lab steps retired envs with zero
  rewards, and those steps would be recorded as transitions);
- ``extras`` as the step's infos (``extras["log"]`` holds 0-dim tensors and ints
  without an env axis: each is kept once per step and given to every env's dict).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from torchbuf.adapters.spaces import to_gym_space


def is_manager_based(env: Any) -> bool:
    """Duck type of Isaac Lab's ``ManagerBasedRLEnv`` and mjlab's ``ManagerBasedRlEnv``."""
    return all(hasattr(env, a) for a in ("observation_manager", "num_envs", "step", "reset"))


class IsaacLabVectorEnv(VectorEnv):
    """A manager-based env seen as a gymnasium ``VectorEnv`` (torch tensors on the env's device).

    ``step`` and ``reset`` return what the env returns (``reset`` passes the wrapper's
    partial-reset options on as ``env_ids``).

    Args:
        env: A ``ManagerBasedRLEnv`` (Isaac Lab) or ``ManagerBasedRlEnv`` (mjlab).
    """

    def __init__(self, env: Any):
        self.env = env
        self.num_envs = int(env.num_envs)
        self.single_observation_space = to_gym_space(env.single_observation_space)
        self.single_action_space = to_gym_space(env.single_action_space)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        metadata = dict(getattr(env, "metadata", {}))
        if metadata.get("autoreset_mode") is None:  # mjlab declares none: its cfg.auto_reset decides
            auto_reset = bool(getattr(getattr(env, "cfg", None), "auto_reset", True))
            metadata["autoreset_mode"] = "same_step" if auto_reset else "disabled"
        self.metadata = metadata
        self.render_mode = getattr(env, "render_mode", None)

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Resets all envs, or those in ``options["env_idx"]`` / ``options["reset_mask"]``."""
        env_ids = _env_ids(options, getattr(self.env, "device", "cpu"))
        return self.env.reset(seed=seed, env_ids=env_ids)  # type: ignore[no-any-return]

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Steps the env: ``(obs, rew, terminated, time_outs, extras)`` as the env returns them."""
        return self.env.step(actions)  # type: ignore[no-any-return]

    def close(self, **kwargs: Any) -> None:
        """Closes the env."""
        self.env.close()


def _env_ids(options: dict[str, Any] | None, device: Any) -> torch.Tensor | None:
    """The env indices of a partial reset (``env_idx`` or ``reset_mask``), or ``None`` for all."""
    if not options:
        return None
    if options.get("env_idx") is not None:
        idx = options["env_idx"]
        idx = idx if isinstance(idx, torch.Tensor) else torch.as_tensor(np.asarray(idx))
        return idx.to(device).long().reshape(-1)
    if options.get("reset_mask") is not None:
        mask = torch.as_tensor(options["reset_mask"], device=device).bool()
        return mask.nonzero().reshape(-1)
    return None
