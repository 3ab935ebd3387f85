"""The main job's configuration: the envs it knows, its backends, and each stage's budget.

Besides the embedded envs (:data:`ENV_IDS`) the job runs the simulator tasks of
:mod:`torchbuf.app.sim` (:data:`~torchbuf.app.sim.SIM_ENV_IDS`, e.g.
``"mjlab:Mjlab-Cartpole-Balance"``) on the torch backend.

:mod:`torchbuf.app.pipeline` runs the stages a :class:`JobConfig` describes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from torchbuf.app.sim import SIM_ENV_IDS, is_sim
from torchbuf.data.types import Obs
from torchbuf.envs import TorchCartPole, TorchPendulum, TorchVectorEnv
from torchbuf.learners.presets import GAIL_PRESETS, GAILPreset

__all__ = [
    "BACKENDS",
    "DEFAULT_BUDGETS",
    "DEFAULT_N_ENVS",
    "ENV_IDS",
    "SIM_N_ENVS",
    "TORCH_ENVS",
    "Budgets",
    "JobConfig",
    "Policy",
    "default_device",
]

ENV_IDS = ("CartPole-v1", "Pendulum-v1")
"""The envs the job knows: each has a scripted expert and a torch-native twin."""

BACKENDS = ("torch", "sb3")
"""``torch``: torch-native env + torchbuf's PPO; ``sb3``: SB3 ``DummyVecEnv`` + SB3's PPO."""

TORCH_ENVS: dict[str, Callable[..., TorchVectorEnv]] = {
    "CartPole-v1": TorchCartPole,
    "Pendulum-v1": TorchPendulum,
}

Policy = Callable[[Obs], Any]


@dataclasses.dataclass(frozen=True)
class Budgets:
    """How much work each stage does (per seed).

    Attributes:
        expert_episodes: Expert episodes recorded for the learners.
        bc_epochs: Passes of BC over the expert transitions (0 skips BC).
        bc_batch_size: Transitions per BC batch.
        bc_lr: BC's Adam learning rate.
        gail_steps: Generator env steps of GAIL (0 skips GAIL); ``None``: those of
            the GAIL preset of the env and backend
            (:func:`torchbuf.learners.presets.gail_preset`), 0 where there is none.
        eval_episodes: Episodes per evaluated policy.
    """

    expert_episodes: int = 10
    bc_epochs: int = 40
    bc_batch_size: int = 64
    bc_lr: float = 3e-3
    gail_steps: int | None = None
    eval_episodes: int = 50


DEFAULT_BUDGETS = {
    "CartPole-v1": Budgets(),
    "Pendulum-v1": Budgets(bc_epochs=200),
    **{env_id: Budgets(expert_episodes=16, bc_epochs=10, eval_episodes=16) for env_id in SIM_ENV_IDS},
}
"""Default budgets per env (Pendulum's episodes are 200 steps, CartPole's expert's 500,
mjlab's cartpole's 1000)."""

_SB3_PPO_N_STEPS = 2048  # SB3 PPO's default n_steps, where a preset does not set it

DEFAULT_N_ENVS = 8
"""Envs of the recording and the evaluations unless ``n_envs`` is given."""

SIM_N_ENVS = 16
"""The same for a simulator task (on the CPU its step costs about the same for 8 or 64 envs)."""


def default_device() -> str:
    """``"cuda"`` when a GPU is present, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """What the main job runs.

    Args:
        env_id: One of :data:`ENV_IDS` or :data:`~torchbuf.app.sim.SIM_ENV_IDS`.
        backend: One of :data:`BACKENDS` (a simulator task: ``"torch"``).
        device: Where storage, learners and (torch backend) the envs live;
            default :func:`default_device`.
        n_envs: Envs stepped together in every stage; default
            :data:`DEFAULT_N_ENVS` (:data:`SIM_N_ENVS` for a simulator task) for the
            recording and the evaluations, the GAIL preset's for GAIL.
        seeds: One full run (record, BC, GAIL, evaluation) per seed.
        budgets: Stage budgets; default ``DEFAULT_BUDGETS[env_id]``. A
            ``gail_steps`` of ``None`` becomes the preset's (0 without a preset).
        episode_steps: A simulator task's episode length in env steps; default
            the task's own (``None``; the embedded envs have theirs).

    Raises:
        ValueError: an unknown env or backend, a simulator task on the sb3
            backend, ``episode_steps`` for an embedded env, no seeds, a budget out of range,
            GAIL steps for an env and backend without a GAIL preset, or fewer GAIL
            steps than one round (the message names the field).
    """

    env_id: str = "CartPole-v1"
    backend: str = "torch"
    device: str = dataclasses.field(default_factory=default_device)
    n_envs: int | None = None
    seeds: tuple[int, ...] = (0,)
    budgets: Budgets | None = None
    episode_steps: int | None = None

    def __post_init__(self) -> None:
        self._check_env()
        if self.n_envs is not None and self.n_envs < 1:
            raise ValueError(f"n_envs={self.n_envs} must be positive")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        budgets = self.budgets or DEFAULT_BUDGETS[self.env_id]
        preset = self.preset
        if budgets.gail_steps is None:
            budgets = dataclasses.replace(budgets, gail_steps=0 if preset is None else preset.total_timesteps)
        elif budgets.gail_steps and preset is None:
            raise ValueError(
                f"gail_steps={budgets.gail_steps}: no GAIL preset for {self.env_id} on the "
                f"{self.backend} backend (have {sorted(GAIL_PRESETS)})"
            )
        object.__setattr__(self, "budgets", budgets)
        _check_budgets(self.b)
        if 0 < self.gail_steps < self.gail_round_steps:
            raise ValueError(
                f"gail_steps={self.gail_steps} is less than one GAIL round "
                f"({self.gail_envs} envs x {self.gail_round_steps // self.gail_envs} steps)"
            )

    def _check_env(self) -> None:
        if self.env_id not in ENV_IDS + SIM_ENV_IDS:
            raise ValueError(f"env_id={self.env_id!r} is not one of {ENV_IDS + SIM_ENV_IDS}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is not one of {BACKENDS}")
        if self.sim and self.backend != "torch":
            raise ValueError(f"backend={self.backend!r}: {self.env_id} runs on the torch backend only")
        if self.episode_steps is not None and not self.sim:
            raise ValueError(f"episode_steps={self.episode_steps}: {self.env_id} has its own episode length")
        if self.episode_steps is not None and self.episode_steps < 1:
            raise ValueError(f"episode_steps={self.episode_steps} must be positive")

    @property
    def sim(self) -> bool:
        """Whether the env is a simulator task (:mod:`torchbuf.app.sim`)."""
        return is_sim(self.env_id)

    @property
    def b(self) -> Budgets:
        """The budgets, ``gail_steps`` resolved (never ``None`` after construction)."""
        assert self.budgets is not None
        return self.budgets

    @property
    def preset(self) -> GAILPreset | None:
        """The GAIL preset of this env and backend, if there is one."""
        return GAIL_PRESETS.get((self.env_id, self.backend))  # type: ignore[arg-type]

    @property
    def gail_steps(self) -> int:
        """GAIL's generator env steps, resolved (0: no GAIL)."""
        return self.b.gail_steps or 0

    @property
    def gail_round_steps(self) -> int:
        """Generator env steps of one GAIL round (one PPO rollout of every env); 0 without a preset."""
        if self.preset is None:
            return 0
        return int(self.preset.ppo_kwargs.get("n_steps", _SB3_PPO_N_STEPS)) * self.gail_envs

    @property
    def rollout_envs(self) -> int:
        """Envs of the recording and the evaluations."""
        return self.n_envs or (SIM_N_ENVS if self.sim else DEFAULT_N_ENVS)

    @property
    def gail_envs(self) -> int:
        """Envs of GAIL's generator."""
        if self.n_envs is not None or self.preset is None:
            return self.rollout_envs
        return self.preset.n_envs


def _check_budgets(b: Budgets) -> None:
    for name in ("expert_episodes", "bc_batch_size", "eval_episodes"):
        if getattr(b, name) < 1:
            raise ValueError(f"{name}={getattr(b, name)} must be positive")
    for name in ("bc_epochs", "gail_steps"):
        if (getattr(b, name) or 0) < 0:
            raise ValueError(f"{name}={getattr(b, name)} must be 0 (skip) or positive")
    if b.bc_lr <= 0:
        raise ValueError(f"bc_lr={b.bc_lr} must be positive")
