"""Counting the ops that make the host wait for the device."""

from __future__ import annotations

import contextlib
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = {
    "aten._local_scalar_dense",  # .item(), int(t), float(t)
    "aten.nonzero",  # data-dependent output size
    "aten.is_nonzero",  # bool(t)
    "aten.item",
    "aten.equal",
    "aten.masked_select",
    "aten.unique",
    "aten._unique2",
}


class OpCounter(TorchDispatchMode):
    """Records every aten op, and which of them synchronise with the host.

    A copy to the CPU from another device counts as a sync; the host reads that
    bypass dispatch are counted by :func:`count_ops`.
    """

    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.syncs: Counter[str] = Counter()
        self.counting = True

    @contextlib.contextmanager
    def paused(self):
        """Ops run inside this block are not counted (an env's own step, say)."""
        self.counting = False
        try:
            yield
        finally:
            self.counting = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.counting:
            name = str(func.overloadpacket)
            self.ops[name] += 1
            if name in SYNC_OPS or _to_host_copy(name, args, kwargs):
                self.syncs[name] += 1
        return func(*args, **kwargs)


def _to_host_copy(name, args, kwargs):
    if name not in ("aten._to_copy", "aten.copy_"):
        return False
    src = args[1] if name == "aten.copy_" else args[0]
    dst = args[0].device if name == "aten.copy_" else kwargs.get("device", src.device)
    return src.device.type != "cpu" and torch.device(dst).type == "cpu"


@contextlib.contextmanager
def count_ops():
    """Counts aten ops and host syncs.

    Host reads that bypass dispatch count too: every ``Tensor.cpu()`` and
    ``Tensor.tolist()`` (on a CPU tensor ``.cpu()`` is free, but the same code on a
    GPU would wait there), and ``Tensor.numpy()`` of a tensor that is not on the CPU.
    A numpy view of CPU memory is not a read from a device.
    """
    counter = OpCounter()
    originals = {name: getattr(torch.Tensor, name) for name in ("numpy", "tolist", "cpu")}

    def wrap(name):
        def reader(self, *args, **kwargs):
            if counter.counting and (name != "numpy" or self.device.type != "cpu"):
                counter.syncs[f"Tensor.{name}"] += 1
            return originals[name](self, *args, **kwargs)

        return reader

    for name in originals:
        setattr(torch.Tensor, name, wrap(name))
    try:
        with counter:
            yield counter
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)
