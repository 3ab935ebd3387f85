"""torchbuf on ``torch.distributed``: one process per device, each recording its own envs.

- :mod:`~torchbuf.distributed.collectives`: gather popped transitions and
  trajectories to one rank or to all.
- :mod:`~torchbuf.distributed.loader`: :class:`DistributedTransitionLoader`,
  ``DistributedSampler``'s shards of shuffled minibatches, on the device.
- :mod:`~torchbuf.distributed.ddp`: :func:`ddp_policy`, a policy wrapped in
  ``DistributedDataParallel`` for :class:`torchbuf.learners.BC`.
- :mod:`~torchbuf.distributed.launch`: process-group setup under ``torchrun``
  and per-rank env seeds.

See ``docs/distributed.md``.
"""

from torchbuf.distributed.collectives import (
    CollectiveError,
    all_gather_trajectories,
    all_gather_transitions,
    gather_trajectories,
    gather_transitions,
)

__all__ = [
    "CollectiveError",
    "all_gather_trajectories",
    "all_gather_transitions",
    "gather_trajectories",
    "gather_transitions",
]
