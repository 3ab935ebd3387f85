"""Shared machinery of the torch-native batched envs: state, seeding, same-step autoreset.

Every env holds its physical state as one float64 tensor of shape ``(num_envs, state_dim)``
and an int64 step counter of shape ``(num_envs,)`` on its device. ``step`` runs the batched
dynamics, then replaces the rows whose episode ended with freshly sampled initial states
(gymnasium's ``SAME_STEP`` autoreset), all without a device-to-host synchronisation.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

__all__ = ["AUTORESET_MODE", "TorchVectorEnv"]

_AutoresetMode = getattr(gymnasium.vector, "AutoresetMode", None)

AUTORESET_MODE: Any = _AutoresetMode.SAME_STEP if _AutoresetMode is not None else "same_step"
"""``AutoresetMode.SAME_STEP`` on gymnasium >= 1.0, the string ``"same_step"`` on gymnasium 0.29."""

StepResult = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]


class TorchVectorEnv(gymnasium.vector.VectorEnv):
    """Base class of a batched env whose state and outputs are torch tensors on one device.

    Subclasses define the reset bounds and three pure functions of tensors:
    ``_check_actions``, ``_dynamics`` and ``_observe``.

    ``step`` returns, with ``N = num_envs``:

    - ``obs``: float32, shape ``(N,) + single_observation_space.shape``; for an env whose
      episode ended on this step it is already the first obs of the next episode.
    - ``rewards``: float32, shape ``(N,)``.
    - ``terminated``, ``truncated``: bool, shape ``(N,)``.
    - ``info``: ``{"final_obs": obs-shaped float32, "_final_obs": bool (N,)}``. Rows where
      ``_final_obs`` is True hold the true last observation of the ended episode; the
      other rows hold the current obs and carry no meaning. Both keys are always present.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AUTORESET_MODE, "render_modes": []}

    def __init__(
        self,
        num_envs: int,
        single_observation_space: gymnasium.spaces.Space,
        single_action_space: gymnasium.spaces.Space,
        reset_low: torch.Tensor,
        reset_high: torch.Tensor,
        *,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        max_episode_steps: int,
    ) -> None:
        """Allocate the state on ``device``; call ``reset`` before ``step``.

        Args:
            num_envs: Number of envs N stepped together.
            single_observation_space: Observation space of one env.
            single_action_space: Action space of one env.
            reset_low: Lower bounds of the uniform initial state, shape ``(state_dim,)``.
            reset_high: Upper bounds of the uniform initial state, shape ``(state_dim,)``.
            device: Device of the state and of every returned tensor.
            seed: Seed of the env's ``torch.Generator``; ``None`` draws a random seed.
            max_episode_steps: Episode length at which ``truncated`` is set.

        Raises:
            ValueError: If ``num_envs`` or ``max_episode_steps`` is not positive.
        """
        if num_envs < 1 or max_episode_steps < 1:
            raise ValueError(
                f"num_envs and max_episode_steps must be positive, got {num_envs}, {max_episode_steps}"
            )
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.device = torch.empty(0, device=device).device  # "cuda" -> "cuda:0", for comparisons
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, num_envs)
        self.action_space = batch_space(single_action_space, num_envs)
        self.closed = False
        self.render_mode = None
        self.is_vector_env = True  # read by gymnasium 0.29
        self.viewer = None  # read by gymnasium 0.29's VectorEnv.close
        self._reset_low = reset_low.to(self.device, torch.float64)
        self._reset_span = reset_high.to(self.device, torch.float64) - self._reset_low
        self._generator = self._make_generator(seed)
        self._state = torch.zeros((num_envs, reset_low.numel()), dtype=torch.float64, device=self.device)
        self._elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._needs_reset = True

    # ----------------------------------------------------------------- subclass hooks

    def _check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Validate the actions' shape and dtype (metadata only) and return them ready for dynamics."""
        raise NotImplementedError

    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return ``(next_state, rewards_float64, terminated)`` for a batch of states and actions."""
        raise NotImplementedError

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        """Return the float32 observations of a batch of float64 states."""
        raise NotImplementedError

    # ----------------------------------------------------------------- public API

    def reset(
        self,
        *,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reset all envs, or only those in ``options["reset_mask"]``.

        Args:
            seed: Reseeds the env's generator before sampling.
            options: ``None`` or ``{"reset_mask": mask}`` with a bool tensor or numpy array of
                shape ``(N,)``; only the masked envs get a new initial state and step count 0.

        Returns:
            ``(obs, {})`` with obs of shape ``(N,) + single_observation_space.shape``, float32.

        Raises:
            ValueError: On an unknown option or a mask of the wrong shape or dtype.
            RuntimeError: On a masked reset before the first full reset.
        """
        if seed is not None:
            self._seed(seed)
        mask = self._parse_reset_options(options)
        if mask is None:
            self._state = self._sample_initial_state()
            self._elapsed = torch.zeros_like(self._elapsed)
            self._needs_reset = False
        else:
            self._apply_reset(mask)
        return self._observe(self._state), {}

    def step(self, actions: torch.Tensor | np.ndarray) -> StepResult:  # type: ignore[override]
        """Advance every env by one step, resetting those whose episode ends (same step).

        Args:
            actions: A batch of actions on the env's device (numpy arrays are copied over).

        Returns:
            ``(obs, rewards, terminated, truncated, info)`` as described in the class docstring.

        Raises:
            RuntimeError: If called before ``reset``.
            ValueError: If the actions' shape, dtype or device is wrong.
        """
        if self._needs_reset:
            raise RuntimeError("step() called before reset()")
        actions = self._check_actions(self._to_device(actions, "actions"))
        next_state, rewards, terminated = self._dynamics(self._state, actions)
        self._elapsed = self._elapsed + 1
        truncated = self._elapsed >= self.max_episode_steps
        done = terminated | truncated
        final_obs = self._observe(next_state)
        self._apply_reset(done, next_state)
        info = {"final_obs": final_obs, "_final_obs": done}
        return self._observe(self._state), rewards.to(torch.float32), terminated, truncated, info

    @property
    def state(self) -> torch.Tensor:
        """A copy of the physical state, float64, shape ``(N, state_dim)``."""
        return self._state.clone()

    @property
    def elapsed_steps(self) -> torch.Tensor:
        """A copy of the steps taken in the current episode of each env, int64, shape ``(N,)``."""
        return self._elapsed.clone()

    def set_state(
        self, state: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None
    ) -> None:
        """Overwrite the physical state of all envs, or of the envs in ``mask``.

        Step counters are left as they are.

        Args:
            state: New state, shape ``(N, state_dim)``; cast to float64 on the env's device.
            mask: Optional bool mask of shape ``(N,)``; unmasked rows keep their state.

        Raises:
            ValueError: If ``state`` or ``mask`` has the wrong shape.
        """
        new = torch.as_tensor(state).to(self.device, torch.float64)
        if new.shape != self._state.shape:
            raise ValueError(f"state must have shape {tuple(self._state.shape)}, got {tuple(new.shape)}")
        if mask is None:
            self._state = new.clone()
        else:
            self._state = torch.where(self._as_mask(mask)[:, None], new, self._state)
        self._needs_reset = False

    # ----------------------------------------------------------------- internals

    def _apply_reset(self, mask: torch.Tensor, state: torch.Tensor | None = None) -> None:
        """Give the envs in ``mask`` a fresh initial state and a zero step count (no sync)."""
        base = self._state if state is None else state
        self._state = torch.where(mask[:, None], self._sample_initial_state(), base)
        self._elapsed = torch.where(mask, torch.zeros_like(self._elapsed), self._elapsed)

    def _sample_initial_state(self) -> torch.Tensor:
        """Uniform initial states for all N envs, float64, shape ``(N, state_dim)``."""
        shape = (self.num_envs, self._reset_low.numel())
        u = torch.rand(shape, generator=self._generator, dtype=torch.float64, device=self.device)
        return self._reset_low + self._reset_span * u

    def _make_generator(self, seed: int | None) -> torch.Generator | None:
        """A generator on the env's device (none on ``meta``, which has no generator)."""
        if self.device.type == "meta":
            return None
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        return generator

    def _seed(self, seed: int) -> None:
        if self._generator is not None:
            self._generator.manual_seed(seed)

    def _parse_reset_options(self, options: dict[str, Any] | None) -> torch.Tensor | None:
        """Return the reset mask named in ``options``, or ``None`` for a full reset."""
        if not options:
            return None
        unknown = set(options) - {"reset_mask"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; only 'reset_mask' is supported")
        if self._needs_reset:
            raise RuntimeError("reset with a reset_mask needs a full reset() first")
        return self._as_mask(options["reset_mask"])

    def _as_mask(self, mask: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Check and move a bool mask of shape ``(N,)`` to the env's device."""
        tensor = torch.as_tensor(mask).to(self.device)
        if tensor.dtype != torch.bool or tensor.shape != (self.num_envs,):
            raise ValueError(
                f"mask must be a bool array of shape ({self.num_envs},), "
                f"got {tensor.dtype} of shape {tuple(tensor.shape)}"
            )
        return tensor

    def _to_device(self, value: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
        """Return ``value`` as a tensor on the env's device; a tensor elsewhere is an error."""
        if isinstance(value, torch.Tensor):
            if value.device != self.device:
                raise ValueError(f"{name} are on {value.device}, the env is on {self.device}")
            return value
        return torch.as_tensor(np.asarray(value), device=self.device)

    def _check_shape(self, actions: torch.Tensor, shape: tuple[int, ...]) -> None:
        if tuple(actions.shape) != shape:
            raise ValueError(f"actions must have shape {shape}, got {tuple(actions.shape)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_envs={self.num_envs}, device={self.device})"

    __str__ = __repr__
