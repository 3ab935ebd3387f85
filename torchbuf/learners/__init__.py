"""Compact learners that train from torchbuf's device batches.

- :class:`BC`: behaviour cloning with imitation's loss, from a
  :class:`~torchbuf.loader.TransitionLoader` or any iterable of batch mappings.
"""

from torchbuf.learners.bc import BC, BCMetrics

__all__ = ["BC", "BCMetrics"]
