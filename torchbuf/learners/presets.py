"""GAIL settings that reach the targets on CartPole-v1 and Pendulum-v1, per generator path.

A preset names the env, the number of envs, the generator's and GAIL's keyword
arguments and the generator env steps to train for; :meth:`GAILPreset.make_env`
and :meth:`GAILPreset.make_gail` build the pieces, so a run is::

    preset = gail_preset("CartPole-v1", "torch")
    gail = preset.make_gail(expert_trajectories, seed=0)
    gail.train(preset.total_timesteps)

``"torch"`` is torchbuf's :class:`~torchbuf.learners.PPO` on a torch-native env
(:class:`~torchbuf.envs.TorchCartPole`, :class:`~torchbuf.envs.TorchPendulum`);
``"sb3"`` is ``stable_baselines3.PPO`` on a ``DummyVecEnv`` of the gymnasium env.
The measured results are in ``docs/learners.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

import gymnasium as gym
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from torchbuf.data.types import Trajectory, Transitions
from torchbuf.envs import TorchCartPole, TorchPendulum
from torchbuf.learners.gail import GAIL
from torchbuf.learners.ppo import PPO

__all__ = ["GAIL_PRESETS", "GAILPreset", "gail_preset"]

Backend = Literal["torch", "sb3"]

_TORCH_ENVS = {"CartPole-v1": TorchCartPole, "Pendulum-v1": TorchPendulum}


@dataclasses.dataclass(frozen=True)
class GAILPreset:
    """How to run GAIL on one env with one generator path.

    Attributes:
        env_id: The gymnasium env id.
        backend: ``"torch"`` (torchbuf's PPO, torch-native env) or ``"sb3"`` (SB3's PPO,
            ``DummyVecEnv``).
        n_envs: Envs stepped together by the generator.
        total_timesteps: Generator env steps to train for (``GAIL.train``'s argument).
        ppo_kwargs: Keyword arguments of the generator's PPO.
        gail_kwargs: Keyword arguments of :class:`~torchbuf.learners.GAIL`.
    """

    env_id: str
    backend: Backend
    n_envs: int
    total_timesteps: int
    ppo_kwargs: Mapping[str, Any]
    gail_kwargs: Mapping[str, Any]

    def make_env(self, seed: int | None = None, device: torch.device | str = "cpu") -> Any:
        """The generator's env: a torch-native vector env, or a seeded SB3 ``DummyVecEnv``.

        Args:
            seed: Seeds the env.
            device: Device of a torch-native env (the SB3 env is on the host).

        Returns:
            The env, not yet wrapped (GAIL wraps it).
        """
        if self.backend == "torch":
            return _TORCH_ENVS[self.env_id](self.n_envs, device=device, seed=seed)
        venv = DummyVecEnv([lambda: gym.make(self.env_id)] * self.n_envs)
        venv.seed(seed)
        return venv

    def make_gail(
        self,
        demonstrations: Transitions | Sequence[Trajectory],
        seed: int = 0,
        device: torch.device | str = "cpu",
        venv: Any = None,
    ) -> GAIL:
        """GAIL with this preset's generator, env and settings.

        Args:
            demonstrations: The expert's trajectories or transitions.
            seed: Seeds the env, the generator's PPO and GAIL.
            device: Where the env (torch path), the generator and the discriminator live.
            venv: The env to use instead of :meth:`make_env`'s (e.g. already wrapped).

        Returns:
            The trainer; call ``train(self.total_timesteps)``.
        """
        venv = self.make_env(seed, device) if venv is None else venv
        if self.backend == "torch":
            gen: Any = PPO(venv, seed=seed, device=device, **self.ppo_kwargs)
        else:
            from stable_baselines3 import PPO as SB3PPO

            gen = SB3PPO("MlpPolicy", venv, seed=seed, device=device, verbose=0, **self.ppo_kwargs)
        return GAIL(demonstrations, venv, gen, seed=seed, **self.gail_kwargs)


def _preset(env_id: str, backend: Backend, n_envs: int, total: int, ppo: dict, gail: dict) -> GAILPreset:
    return GAILPreset(env_id, backend, n_envs, total, MappingProxyType(ppo), MappingProxyType(gail))


GAIL_PRESETS: Mapping[tuple[str, Backend], GAILPreset] = MappingProxyType(
    {
        ("CartPole-v1", "torch"): _preset(
            "CartPole-v1",
            "torch",
            n_envs=16,
            total=150_000,
            ppo={"n_steps": 64, "batch_size": 256, "n_epochs": 4, "learning_rate": 1e-3},
            gail={"demo_batch_size": 1024, "n_disc_updates_per_round": 4, "disc_lr": 1e-3},
        ),
        ("CartPole-v1", "sb3"): _preset(
            "CartPole-v1",
            "sb3",
            n_envs=8,
            total=150_000,
            ppo={"n_steps": 128, "batch_size": 256, "n_epochs": 10, "learning_rate": 1e-3},
            gail={"demo_batch_size": 1024, "n_disc_updates_per_round": 4, "disc_lr": 1e-3},
        ),
        ("Pendulum-v1", "torch"): _preset(
            "Pendulum-v1",
            "torch",
            n_envs=16,
            total=500_000,
            # n_steps = the episode length: every rollout holds whole episodes of every env;
            # bound_mean: a mean beyond the torque limit would stop exploring there (all samples clip)
            ppo={
                "n_steps": 200,
                "batch_size": 400,
                "n_epochs": 10,
                "gamma": 0.95,
                "gae_lambda": 0.9,
                "learning_rate": 3e-4,
                "net_arch": (128, 128),
                "bound_mean": True,
            },
            gail={"demo_batch_size": 512, "n_disc_updates_per_round": 4, "disc_lr": 1e-3},
        ),
    }
)
"""The presets by ``(env_id, backend)``."""


def gail_preset(env_id: str, backend: Backend = "torch") -> GAILPreset:
    """The preset for ``env_id`` on the ``backend`` generator path.

    Args:
        env_id: ``"CartPole-v1"`` or ``"Pendulum-v1"``.
        backend: ``"torch"`` or ``"sb3"``.

    Returns:
        The preset.

    Raises:
        ValueError: no preset for that pair (the message lists those there are).

    Examples:
        >>> p = gail_preset("CartPole-v1", "torch")
        >>> p.n_envs, p.total_timesteps > 0
        (16, True)
    """
    try:
        return GAIL_PRESETS[(env_id, backend)]
    except KeyError:
        raise ValueError(
            f"no GAIL preset for env_id={env_id!r}, backend={backend!r}; have {sorted(GAIL_PRESETS)}"
        ) from None
