"""``DistributedTransitionLoader``: each rank's shard of shuffled minibatches, on the device.

Every rank holds the same transitions (e.g. from
:func:`~torchbuf.distributed.collectives.all_gather_transitions`) and draws the same
permutation from ``seed + epoch``; each takes every ``world_size``-th index of it,
starting at its rank. These are the indices ``torch.utils.data.DistributedSampler``
yields (the same on CPU, where both draw ``torch.randperm`` from a CPU generator),
computed on the data's device with one ``randperm`` and one ``index_select`` per
field per batch, so a GPU learner never waits for a host collate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

from torchbuf.data.types import Trajectory, Transitions
from torchbuf.distributed.collectives import Group, exchange_counts
from torchbuf.loader import TransitionLoader

__all__ = ["DistributedTransitionLoader"]


class DistributedTransitionLoader(TransitionLoader):
    """A :class:`~torchbuf.loader.TransitionLoader` that yields this rank's shard of each epoch.

    With ``n`` transitions and ``world_size`` ranks, an epoch holds
    ``ceil(n / world_size)`` indices per rank: the permutation is extended
    cyclically to a multiple of ``world_size`` (a few transitions appear twice),
    or, with ``drop_uneven=True``, cut to ``floor(n / world_size)`` per rank, as
    ``DistributedSampler(drop_last=...)`` does. Every rank thus yields the same
    number of batches, which ``DistributedDataParallel`` needs.

    Epoch ``e`` of a pass (``iter()``) draws its permutation from ``seed + epoch + e``,
    where ``epoch`` is what :meth:`set_epoch` set (0 at first): call ``set_epoch``
    before each pass with one epoch per pass, as with ``DistributedSampler``, or
    keep it at 0 and let ``epochs=k`` run k different epochs.

    Args:
        transitions: The same data on every rank: a
            :class:`~torchbuf.data.types.Transitions` batch, trajectories, or a mapping
            of tensors (see :class:`~torchbuf.loader.TransitionLoader`).
        batch_size: Transitions per batch on this rank (the global batch is
            ``world_size`` times larger).
        rank: This rank's index; default: its rank in ``group``.
        world_size: Number of shards; default: the size of ``group``.
        group: The process group that gives the defaults (default: the world).
        seed: The permutations' seed; must be the same on every rank.
        shuffle: Shuffle every epoch; otherwise the shards of ``0, 1, ..., n - 1``.
        drop_last: Drop the last, smaller batch of a rank's epoch.
        drop_uneven: Cut the epoch to a multiple of ``world_size`` instead of padding it.
        epochs: Epochs per pass, or ``None`` for an endless pass.
        device: Moves the data there once; default: where it is.
        keys: Fields to yield; default: imitation's keys that are present.

    Raises:
        ValueError: a ``rank`` outside ``[0, world_size)``, no process group and no
            ``rank``/``world_size``, ranks holding different numbers of
            transitions, or a shard smaller than a batch (with ``drop_last``);
            see also :class:`~torchbuf.loader.TransitionLoader`.

    Examples:
        >>> data = {"obs": torch.arange(10.0)[:, None], "acts": torch.arange(10)}
        >>> shards = [DistributedTransitionLoader(data, 5, rank=r, world_size=2) for r in (0, 1)]
        >>> sorted(torch.cat([next(iter(s))["acts"] for s in shards]).tolist())
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    def __init__(
        self,
        transitions: Transitions | Sequence[Trajectory] | Mapping[str, Any],
        batch_size: int,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        group: Group = None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        drop_uneven: bool = False,
        epochs: int | None = 1,
        device: torch.device | str | None = None,
        keys: Sequence[str] | None = None,
    ):
        from_group = rank is None or world_size is None
        self.rank, self.world_size = _rank_and_world(rank, world_size, group)
        self.seed, self.epoch, self.drop_uneven = seed, 0, drop_uneven
        super().__init__(
            transitions,
            batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            epochs=epochs,
            seed=seed,
            device=device,
            keys=keys,
        )
        if from_group:
            _check_same_length(self.n, group)

    @property
    def epoch_length(self) -> int:
        """Indices this rank reads per epoch (``DistributedSampler.num_samples``)."""
        if self.drop_uneven:
            return self.n // self.world_size
        return -(-self.n // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that the next pass starts from (as ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    def indices(self, epoch: int) -> torch.Tensor:
        """The data indices this rank reads in ``epoch``, in order, on the data's device.

        Args:
            epoch: The epoch (``DistributedSampler``'s, not counted from ``set_epoch``).

        Returns:
            An int64 tensor of :attr:`epoch_length` indices.
        """
        total = self.epoch_length * self.world_size
        positions = torch.arange(self.rank, total, self.world_size, device=self.device)
        if not self.shuffle:
            return positions % self.n
        if self.generator is not None:
            self.generator.manual_seed(self.seed + epoch)
        order = torch.randperm(self.n, generator=self.generator, device=self.device)
        return order[positions % self.n]  # padding repeats the permutation from its start

    def _order(self, epoch: int) -> torch.Tensor:
        return self.indices(self.epoch + epoch)


def _rank_and_world(rank: int | None, world_size: int | None, group: Group) -> tuple[int, int]:
    if rank is None or world_size is None:
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError("pass rank and world_size, or initialize torch.distributed first")
        rank = dist.get_rank(group) if rank is None else rank
        world_size = dist.get_world_size(group) if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    return rank, world_size


def _check_same_length(n: int, group: Group) -> None:
    """Raises on every rank alike unless all ranks hold ``n`` transitions."""
    counts = exchange_counts([n], group)[:, 0]
    if len(set(counts.tolist())) > 1:
        raise ValueError(
            f"ranks hold different numbers of transitions ({counts.tolist()}): each rank needs the "
            "same data (gather it first with all_gather_transitions), or use a TransitionLoader per rank"
        )
