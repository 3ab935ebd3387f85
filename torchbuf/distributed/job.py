"""The distributed job: every rank records CartPole, the ranks gather, BC trains under DDP.

Run one process per device with ``torchrun``::

    torchrun --nproc_per_node=2 -m torchbuf.distributed --steps 200
    torchrun --nproc_per_node=2 --no-python torchbuf ddp-bc --steps 200

Each rank records its own envs under the scripted expert (seeded
``seed + rank * n_envs``), pops its transitions, and all ranks all-gather them;
a :class:`~torchbuf.distributed.loader.DistributedTransitionLoader` then gives each
rank its shard of every global batch, BC trains a policy wrapped in
``DistributedDataParallel``, and each rank evaluates the policy on fresh envs.
Rank 0 prints the summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from torchbuf.data.types import TransitionsWithRew
from torchbuf.distributed.collectives import all_gather_transitions
from torchbuf.distributed.ddp import ddp_policy
from torchbuf.distributed.launch import RankInfo, env_seed, init_from_env, shutdown
from torchbuf.distributed.loader import DistributedTransitionLoader
from torchbuf.envs import TorchCartPole
from torchbuf.envs.experts import scripted_cartpole
from torchbuf.learners import BC
from torchbuf.rollout import generate_trajectories, make_sample_until, rollout_stats
from torchbuf.wrappers.sb3 import BufferingWrapper
from torchbuf.wrappers.vector import VectorBufferingWrapper

__all__ = ["DDPBCConfig", "DDPBCSummary", "add_parser", "main", "run_ddp_bc"]

ENVS = ("torch", "sb3")


@dataclasses.dataclass(frozen=True)
class DDPBCConfig:
    """What the job does on each rank.

    Attributes:
        envs: ``"torch"``: :class:`~torchbuf.envs.TorchCartPole` on the rank's
            device; ``"sb3"``: SB3 ``DummyVecEnv`` of ``CartPole-v1``.
        n_envs: Envs per rank.
        steps: Steps recorded per rank.
        batch_size: Transitions per batch per rank.
        epochs: BC epochs over the gathered transitions.
        eval_episodes: Evaluation episodes per rank.
        seed: The job's seed.
        backend: ``torch.distributed`` backend (default: NCCL with CUDA, else gloo).
        timeout: Seconds a collective waits for the other ranks.
    """

    envs: str = "torch"
    n_envs: int = 16
    steps: int = 200
    batch_size: int = 128
    epochs: int = 2
    eval_episodes: int = 4
    seed: int = 0
    backend: str | None = None
    timeout: float = 300.0


@dataclasses.dataclass(frozen=True)
class DDPBCSummary:
    """What the job measured (the same on every rank but ``rank``).

    Attributes:
        rank: This rank.
        world_size: Number of ranks.
        backend: The process group's backend.
        transitions: Transitions each rank recorded, in rank order.
        collect_seconds: The slowest rank's recording time.
        gather_seconds: The slowest rank's time in ``all_gather_transitions``.
        batches: BC batches per rank.
        loss: The last batch's BC loss on rank 0.
        eval_return: Mean evaluation return over every rank's episodes.
    """

    rank: int
    world_size: int
    backend: str
    transitions: list[int]
    collect_seconds: float
    gather_seconds: float
    batches: int
    loss: float
    eval_return: float

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        total = sum(self.transitions)
        return [
            f"ranks                    {self.world_size} ({self.backend})",
            f"transitions per rank     {self.transitions}",
            f"collection, all ranks    {total / self.collect_seconds:,.0f} transitions/s",
            f"all_gather_transitions   {self.gather_seconds * 1e3:.1f} ms",
            f"BC batches per rank      {self.batches}",
            f"last BC loss             {self.loss:.4f}",
            f"BC policy, mean return   {self.eval_return:.1f}",
        ]


def run_ddp_bc(config: DDPBCConfig) -> DDPBCSummary:
    """Runs the job on this rank; every rank of the job must call it.

    Initializes the process group from ``torchrun``'s environment (a group of one
    without it) and destroys it at the end.

    Args:
        config: What to do.

    Returns:
        The summary, on every rank.
    """
    info = init_from_env(config.backend, config.timeout)
    try:
        return _run(config, info)
    except BaseException as exc:
        traceback.clear_frames(exc.__traceback__)  # the failed frames hold the DDP wrapper
        raise
    finally:
        shutdown()


def _run(config: DDPBCConfig, info: RankInfo) -> DDPBCSummary:
    batch, collect_s = collect(config, info)
    start = time.perf_counter()
    everything = all_gather_transitions(batch)
    gather_s = time.perf_counter() - start
    assert everything is not None
    torch.manual_seed(config.seed)
    net = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2)).to(info.device)
    bc = BC(ddp_policy(net))
    loader = DistributedTransitionLoader(everything, config.batch_size, seed=config.seed)
    metrics = None
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        metrics = bc.train(loader)
    assert metrics is not None
    trajs = generate_trajectories(
        bc.act,
        TorchCartPole(config.n_envs, device=info.device),
        make_sample_until(min_episodes=config.eval_episodes),
        seed=env_seed(config.seed + 1_000_000, config.n_envs),
    )
    per_rank: list[Any] = [None] * info.world_size
    mine = (int(batch.batch_size[0]), collect_s, gather_s, rollout_stats(trajs)["return_mean"])
    dist.all_gather_object(per_rank, mine)
    counts, collect_times, gather_times, returns = zip(*per_rank)
    loss = metrics.to_floats()["loss"]
    return DDPBCSummary(
        info.rank,
        info.world_size,
        info.backend,
        list(counts),
        max(collect_times),
        max(gather_times),
        len(loader),
        loss,
        float(np.mean(returns)),
    )


def collect(config: DDPBCConfig, info: RankInfo) -> tuple[TransitionsWithRew, float]:
    """Records ``config.steps`` steps of this rank's envs under the scripted expert.

    Args:
        config: The job (``envs``, ``n_envs``, ``steps``, ``seed``).
        info: This rank (its envs are seeded ``seed + rank * n_envs``).

    Returns:
        The popped transitions (on the rank's device) and the seconds it took.
    """
    seed = env_seed(config.seed, config.n_envs, info.rank)
    start = time.perf_counter()
    if config.envs == "torch":
        envs = VectorBufferingWrapper(TorchCartPole(config.n_envs, device=info.device, seed=seed))
        obs, _ = envs.reset(seed=seed)
        for _ in range(config.steps):
            obs, *_ = envs.step(scripted_cartpole(obs))
        batch = envs.pop_transitions()
    else:
        venv = BufferingWrapper(
            DummyVecEnv([lambda: gym.make("CartPole-v1")] * config.n_envs), device=info.device
        )
        venv.seed(seed)
        obs = venv.reset()
        for _ in range(config.steps):
            obs, *_ = venv.step(scripted_cartpole(np.asarray(obs)))
        batch = venv.pop_transitions()
    return batch, time.perf_counter() - start


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds the ``ddp-bc`` subcommand to the ``torchbuf`` command line.

    Args:
        sub: The command line's subparsers.

    Returns:
        The subcommand's parser; its ``run`` default runs the job.
    """
    parser = sub.add_parser(
        "ddp-bc",
        help="under torchrun: every rank records CartPole, all-gather, BC with DistributedDataParallel",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = DDPBCConfig()
    parser.add_argument("--envs", choices=ENVS, default=defaults.envs, help="torch-native or SB3 CartPole")
    helps = {
        "n_envs": "envs per rank",
        "steps": "steps recorded per rank",
        "batch_size": "transitions per BC batch per rank",
        "epochs": "BC epochs over the gathered transitions",
        "eval_episodes": "evaluation episodes per rank",
        "seed": "the job's seed (rank r's envs: seed + r * n_envs)",
    }
    for name, text in helps.items():
        default = getattr(defaults, name)
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=default, help=f"{text} ({default})"
        )
    parser.add_argument(
        "--dist-backend", choices=("gloo", "nccl"), default=None, help="default: nccl with CUDA"
    )
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="collective timeout (s)")
    parser.set_defaults(run=run_from_args)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Runs the job that parsed ``ddp-bc`` arguments describe; rank 0 prints the summary."""
    fields = {f.name for f in dataclasses.fields(DDPBCConfig)} - {"backend"}
    config = DDPBCConfig(backend=args.dist_backend, **{k: getattr(args, k) for k in fields})
    summary = run_ddp_bc(config)
    if summary.rank == 0:
        print("\n".join(summary.lines()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m torchbuf.distributed``: the ``ddp-bc`` job.

    Args:
        argv: The job's arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m torchbuf.distributed")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ddp-bc", *(sys.argv[1:] if argv is None else argv)])
    return int(args.run(args))
