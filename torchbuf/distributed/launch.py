"""Process-group setup for a torchbuf job started by ``torchrun``, and per-rank seeds.

``torchrun`` starts one process per device and gives each ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_from_env` reads them, picks NCCL when CUDA is present (binding each
process to GPU ``LOCAL_RANK``) and gloo otherwise, and sets the timeout after which
a collective that another rank never joins raises instead of waiting forever.
Run without ``torchrun``, it starts a one-process group so the same script runs
on its own.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import os

import torch
import torch.distributed as dist

__all__ = ["DEFAULT_TIMEOUT", "RankInfo", "env_seed", "init_from_env", "shutdown"]

DEFAULT_TIMEOUT = datetime.timedelta(minutes=5)
"""How long a collective waits for the other ranks before it raises."""


@dataclasses.dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank, ``0 <= rank < world_size``.
        local_rank: Rank on this node (the GPU index under NCCL).
        world_size: Number of processes in the job.
        device: This rank's device: ``cuda:<local_rank>`` under NCCL, else ``cpu``.
        backend: The process group's backend.
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str


def init_from_env(
    backend: str | None = None, timeout: datetime.timedelta | float = DEFAULT_TIMEOUT
) -> RankInfo:
    """Initializes the default process group from ``torchrun``'s environment.

    Without ``RANK`` in the environment (a plain ``python`` run), starts a group of
    one process on a free local port.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default: NCCL when CUDA is available.
        timeout: How long a collective waits for the other ranks (a
            ``timedelta`` or seconds).

    Returns:
        This process's rank, world size, device and backend.

    Raises:
        ValueError: NCCL asked for without CUDA.
    """
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend='nccl' needs CUDA; use 'gloo' on CPU")
    if not isinstance(timeout, datetime.timedelta):
        timeout = datetime.timedelta(seconds=timeout)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if "RANK" in os.environ:
        dist.init_process_group(backend, timeout=timeout)
    else:
        dist.init_process_group(
            backend, init_method="tcp://127.0.0.1:0", rank=0, world_size=1, timeout=timeout
        )
    return RankInfo(dist.get_rank(), local_rank, dist.get_world_size(), device, backend)


def shutdown() -> None:
    """Destroys the default process group once no ``DistributedDataParallel`` outlives it.

    A DDP wrapper sits in reference cycles, so it is freed by the garbage collector,
    not when its last name goes. Freed after ``destroy_process_group()``, its reducer
    destroys the gloo group while holding the GIL, which can deadlock with gloo's
    worker thread (pytorch/pytorch#56297). Collecting garbage first frees every
    wrapper nothing refers to any more; call this instead of
    ``dist.destroy_process_group()`` once training is done.
    """
    gc.collect()
    dist.destroy_process_group()


def env_seed(seed: int, n_envs: int, rank: int | None = None) -> int:
    """The seed of this rank's envs: ``seed + rank * n_envs``.

    A vectorized env seeded with ``s`` seeds its sub-envs ``s, s + 1, ...`` (SB3's
    ``VecEnv.seed``), so ranks seeded this way never share a sub-env seed and the
    job as a whole is seeded like one env of ``world_size * n_envs`` sub-envs.

    Args:
        seed: The job's seed.
        n_envs: Sub-envs per rank.
        rank: This rank (default: its rank in the default group, 0 without one).

    Returns:
        The seed for this rank's vectorized env.

    Examples:
        >>> [env_seed(100, 8, rank) for rank in range(3)]
        [100, 108, 116]
    """
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return seed + rank * n_envs
