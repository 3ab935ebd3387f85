"""The stages of the main job: record an expert, clone it, train GAIL, evaluate.

What each stage does is set by a :class:`~torchbuf.app.config.JobConfig`.

Each stage is a function of a :class:`JobConfig` and a seed and returns a small
result record; :mod:`torchbuf.app.demo` runs them in order for every seed, and
:mod:`torchbuf.app.report` turns the records into a table, a JSON file and a plot.

Two backends give the same stages: ``"torch"`` runs the torch-native envs
(:class:`~torchbuf.envs.TorchCartPole`, :class:`~torchbuf.envs.TorchPendulum`) through
:class:`~torchbuf.VectorBufferingWrapper` with torchbuf's PPO as GAIL's generator;
``"sb3"`` runs gymnasium envs in an SB3 ``DummyVecEnv`` through
:class:`~torchbuf.BufferingWrapper` with SB3's PPO. A simulator task
(:mod:`torchbuf.app.sim`, e.g. ``"mjlab:Mjlab-Cartpole-Balance"``) runs the
simulator's own env through :class:`~torchbuf.VectorBufferingWrapper`, on the torch
backend.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from tqdm import tqdm

from torchbuf.app import sim
from torchbuf.app.config import (
    TORCH_ENVS,
    JobConfig,
    Policy,
)
from torchbuf.data.types import Obs, TrajectoryWithRew
from torchbuf.envs import TorchVectorEnv
from torchbuf.envs.experts import EXPERTS
from torchbuf.learners import BC, GAIL, BCMetrics
from torchbuf.learners.policies import mlp_policy
from torchbuf.learners.presets import GAILPreset
from torchbuf.loader import TransitionLoader
from torchbuf.rollout import SampleUntil, generate_trajectories, make_sample_until, rollout_stats
from torchbuf.wrappers.sb3 import BufferingWrapper
from torchbuf.wrappers.vector import VectorBufferingWrapper

__all__ = [
    "BCRun",
    "Evaluation",
    "GAILRun",
    "Recording",
    "evaluate",
    "env_spaces",
    "make_venv",
    "random_policy",
    "record_expert",
    "train_bc",
    "train_gail",
]


# ------------------------------------------------------------------ envs and policies
def make_venv(
    config: JobConfig, seed: int, n_envs: int | None = None
) -> TorchVectorEnv | VecEnv | VectorBufferingWrapper:
    """A fresh vector env of the config's backend (not yet reset; a simulator's already wrapped).

    Args:
        config: The job.
        seed: Seeds the torch-native env's generator (an SB3 env is seeded at reset).
        n_envs: Envs; default ``config.rollout_envs``.

    Returns:
        A torch-native vector env on ``config.device``, an SB3 ``DummyVecEnv``, or
        a simulator's env in a ``VectorBufferingWrapper``
        (:func:`torchbuf.app.sim.make_sim_env`).
    """
    n = n_envs or config.rollout_envs
    if config.sim:
        return sim.make_sim_env(config.env_id, n, config.device, config.episode_steps)
    if config.backend == "torch":
        return TORCH_ENVS[config.env_id](n, device=config.device, seed=seed)
    return DummyVecEnv([functools.partial(gym.make, config.env_id)] * n)


def env_spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    """The observation and action space of one env ``env_id`` (the torch twins share them)."""
    env = gym.make(env_id)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def random_policy(action_space: gym.Space, n_envs: int, seed: int) -> Policy:
    """Uniformly random actions for ``n_envs`` envs, seeded.

    Args:
        action_space: One env's action space.
        n_envs: Batch size of each call's actions.
        seed: Seeds the sampler.

    Returns:
        A callable from an observation batch (ignored) to a numpy action batch.
    """
    space = batch_space(action_space, n_envs)
    space.seed(seed)
    return lambda _obs: space.sample()


class _Counted:
    """Counts the calls of a batch policy: env steps = calls x n_envs."""

    def __init__(self, policy: Policy, n_envs: int):
        self.policy, self.n_envs, self.calls = policy, n_envs, 0

    def __call__(self, obs: Obs) -> Any:
        self.calls += 1
        return self.policy(obs)

    @property
    def env_steps(self) -> int:
        return self.calls * self.n_envs


def _until_with_bar(n_episodes: int, bar: tqdm | None) -> SampleUntil:
    """``make_sample_until(min_episodes=n_episodes)`` that also moves a progress bar."""
    until = make_sample_until(min_episodes=n_episodes)

    def check(trajs: Sequence[TrajectoryWithRew]) -> bool:
        if bar is not None:
            bar.update(min(len(trajs), n_episodes) - bar.n)
        return until(trajs)

    return check


def _rollouts(
    policy: Policy, config: JobConfig, seed: int, n_episodes: int, bar: tqdm | None
) -> tuple[list[TrajectoryWithRew], int, float]:
    """At least ``n_episodes`` complete episodes of ``policy``, shuffled: (episodes, env steps, seconds).

    imitation's stopping rule lets every env finish its running episode, so there
    may be up to ``n_envs - 1`` more; they come in a seeded random order.
    """
    venv = make_venv(config, seed)
    counted = _Counted(policy, config.rollout_envs)
    start = time.perf_counter()
    trajs = generate_trajectories(
        counted,
        venv,
        _until_with_bar(n_episodes, bar),
        seed=seed,
        device=config.device,
        rng=np.random.default_rng(seed),
    )
    seconds = _synced_seconds(start, config.device)
    venv.close()
    return trajs, counted.env_steps, seconds


def _synced_seconds(start: float, device: str) -> float:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


# ------------------------------------------------------------------ stage results
@dataclasses.dataclass
class Recording:
    """Expert episodes recorded through torchbuf.

    Attributes:
        trajs: The kept episodes (tensors on the storage device).
        stats: :func:`~torchbuf.rollout.rollout_stats` of ``trajs``.
        env_steps: Steps the expert took, every one recorded by the buffer
            (including episodes not kept and partial episodes at the end).
        seconds: Wall time of the recording.
    """

    trajs: list[TrajectoryWithRew]
    stats: dict[str, float]
    env_steps: int
    seconds: float

    @property
    def transitions(self) -> int:
        """Transitions in the complete episodes (what the learners get)."""
        return sum(len(t) for t in self.trajs)


@dataclasses.dataclass
class BCRun:
    """A trained BC learner and its curve.

    Attributes:
        learner: The :class:`~torchbuf.learners.BC` learner.
        epoch_losses: Mean training loss of each epoch.
        batches: Gradient steps taken.
        transitions: Transitions seen (batches x batch size).
        seconds: Wall time of the training.
    """

    learner: BC
    epoch_losses: list[float]
    batches: int
    transitions: int
    seconds: float


@dataclasses.dataclass
class GAILRun:
    """A GAIL run, or why there is none.

    Attributes:
        status: ``"done"`` or ``"skipped"`` (budget 0, or no preset).
        reason: Why the stage did not run (empty when done).
        learner: The GAIL trainer (``None`` unless done).
        rounds: Each round's statistics (``gen_timesteps``, ``gen_return_mean``, ...).
        env_steps: Generator env steps.
        seconds: Wall time of the training.
    """

    status: str
    reason: str = ""
    learner: Any = None
    rounds: list[dict[str, float]] = dataclasses.field(default_factory=list)
    env_steps: int = 0
    seconds: float = 0.0


@dataclasses.dataclass
class Evaluation:
    """Episodes of one policy and what they took.

    Attributes:
        returns: Each episode's return.
        stats: :func:`~torchbuf.rollout.rollout_stats` of the episodes.
        env_steps: Env steps taken (all of them recorded by the buffer).
        seconds: Wall time, policy included.
    """

    returns: list[float]
    stats: dict[str, float]
    env_steps: int
    seconds: float


# ------------------------------------------------------------------ stages
def record_expert(config: JobConfig, seed: int, bar: tqdm | None = None) -> Recording:
    """Records ``expert_episodes`` episodes of the scripted expert through torchbuf.

    The env runs until that many episodes are complete and every env has finished
    the episode it was in (imitation's rule, which favours no episode length);
    ``expert_episodes`` of them, drawn at random with ``seed``, are kept.

    Args:
        config: The job.
        seed: Env seed.
        bar: A progress bar counting episodes.

    Returns:
        The recording.
    """
    n = config.b.expert_episodes
    trajs, env_steps, seconds = _rollouts(expert_policy(config.env_id), config, seed, n, bar)
    return Recording(trajs[:n], rollout_stats(trajs[:n]), env_steps, seconds)


def train_bc(
    trajs: Sequence[TrajectoryWithRew], config: JobConfig, seed: int, bar: tqdm | None = None
) -> BCRun:
    """Behaviour cloning of the expert's episodes: :func:`mlp_policy` trained by BC.

    Batches come from a :class:`~torchbuf.loader.TransitionLoader` on
    ``config.device``; the losses stay on the device until the end (one host read).

    Args:
        trajs: Expert episodes.
        config: The job (``bc_epochs``, ``bc_batch_size``, ``bc_lr``).
        seed: Seeds the network's initialisation and the loader's shuffles.
        bar: A progress bar counting epochs.

    Returns:
        The trained learner and its per-epoch losses.
    """
    b = config.b
    torch.manual_seed(seed)
    policy = sim.sim_bc_policy(config.env_id, trajs) if config.sim else mlp_policy(*env_spaces(config.env_id))
    bc = BC(policy.to(config.device), optimizer_kwargs={"lr": b.bc_lr})
    batch_size = min(b.bc_batch_size, sum(len(t) for t in trajs))
    loader = TransitionLoader(trajs, batch_size, seed=seed, device=config.device, keys=("obs", "acts"))
    start = time.perf_counter()
    losses: list[torch.Tensor] = []

    def keep_loss(_i: int, metrics: BCMetrics) -> None:
        losses.append(metrics.loss.detach())

    for _ in range(b.bc_epochs):
        bc.train(loader, on_batch_end=keep_loss)
        if bar is not None:
            bar.update()
    curve = torch.stack(losses).reshape(b.bc_epochs, -1).mean(1).cpu().tolist() if losses else []
    batches = b.bc_epochs * loader.batches_per_epoch
    return BCRun(bc, curve, batches, batches * batch_size, _synced_seconds(start, config.device))


def train_gail(
    trajs: Sequence[TrajectoryWithRew], config: JobConfig, seed: int, bar: tqdm | None = None
) -> GAILRun:
    """GAIL from the expert's episodes, with the backend's PPO as generator.

    The generator's PPO and GAIL's settings are the preset's
    (:func:`torchbuf.learners.presets.gail_preset`); its discriminator batch is
    capped at the number of expert transitions.

    Args:
        trajs: Expert episodes.
        config: The job (``gail_steps``, ``gail_envs``).
        seed: Seeds the env, the generator and the discriminator.
        bar: A progress bar counting generator env steps.

    Returns:
        The run; ``status="skipped"`` with the reason when ``gail_steps`` is 0.
    """
    preset = config.preset
    if config.gail_steps == 0 or preset is None:
        why = "gail_steps=0" if preset is not None else f"no GAIL preset for {config.env_id}/{config.backend}"
        return GAILRun("skipped", why)
    gail = _make_gail(preset, trajs, config, seed)
    rounds: list[dict[str, float]] = []

    def on_round(_index: int, stats: Mapping[str, float]) -> None:
        rounds.append(dict(stats))
        if bar is not None:
            bar.update(int(stats["gen_timesteps"]))
            bar.set_postfix(ret=f"{stats['gen_return_mean']:.1f}", refresh=False)

    start = time.perf_counter()
    gail.train(config.gail_steps, callback=on_round)
    seconds = _synced_seconds(start, config.device)
    env_steps = int(sum(r["gen_timesteps"] for r in rounds))
    return GAILRun("done", learner=gail, rounds=rounds, env_steps=env_steps, seconds=seconds)


def _make_gail(preset: GAILPreset, trajs: Sequence[TrajectoryWithRew], config: JobConfig, seed: int) -> GAIL:
    n_expert = sum(len(t) for t in trajs)
    preset = dataclasses.replace(
        preset,
        n_envs=config.gail_envs,
        gail_kwargs={
            **preset.gail_kwargs,
            "demo_batch_size": min(preset.gail_kwargs["demo_batch_size"], n_expert),
        },
    )
    venv = preset.make_env(seed, config.device)
    if isinstance(venv, VecEnv):
        venv = BufferingWrapper(venv, device=config.device)
    return preset.make_gail(trajs, seed=seed, device=config.device, venv=venv)


def evaluate(policy: Policy, config: JobConfig, seed: int, bar: tqdm | None = None) -> Evaluation:
    """Runs ``eval_episodes`` episodes of ``policy`` on a fresh env, through torchbuf.

    Args:
        policy: A callable from an observation batch to actions.
        config: The job (``eval_episodes``).
        seed: Env seed (use one the training did not).
        bar: A progress bar counting episodes.

    Returns:
        The returns, their statistics, env steps and wall time.
    """
    trajs, env_steps, seconds = _rollouts(policy, config, seed, config.b.eval_episodes, bar)
    stats = rollout_stats(trajs)
    returns = torch.stack([t.rews.sum(dtype=torch.float64) for t in trajs]).cpu().tolist()
    return Evaluation(returns, stats, env_steps, seconds)


def policy_of(learner: Any) -> Policy:
    """A learner's deterministic policy as a callable on observation batches."""
    return lambda obs: learner.act(obs)


EVAL_SEED_OFFSET = 10_000
"""Evaluation envs are seeded ``seed + EVAL_SEED_OFFSET``: never the training episodes."""


def expert_policy(env_id: str) -> Policy:
    """The scripted expert of ``env_id``."""
    return sim.sim_expert(env_id) if sim.is_sim(env_id) else EXPERTS[env_id]


def random_policy_for(config: JobConfig, seed: int) -> Policy:
    """Random actions for the config's env."""
    space = sim.SIM_TASKS[config.env_id].action_space if config.sim else env_spaces(config.env_id)[1]
    return random_policy(space, config.rollout_envs, seed)
