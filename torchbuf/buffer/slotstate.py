"""The state every part of the slot storage shares: its tensors, counts and cursors.

:class:`~torchbuf.buffer.storage.SlotStorage` writes, :class:`~torchbuf.buffer.reading.SlotReading`
pops, :class:`~torchbuf.buffer.checkpoint.StorageState` saves and restores; each works on
the attributes declared here, which ``SlotStorage.__init__`` sets.
"""

from __future__ import annotations

from typing import Any, overload

import numpy as np
import torch
from tensordict import TensorDict

from torchbuf.buffer.rows import Rows
from torchbuf.data.types import Obs


class _Settled:
    """A per-row host count of the storage, read and set with the full-batch steps left due added first.

    Args:
        attr: The attribute holding the array (less what is due).
        doc: What the count is.
    """

    def __init__(self, attr: str, doc: str):
        self.attr, self.__doc__ = attr, doc

    @overload
    def __get__(self, state: None, owner: type) -> _Settled: ...

    @overload
    def __get__(self, state: SlotState, owner: type | None = None) -> np.ndarray: ...

    def __get__(self, state: SlotState | None, owner: type | None = None) -> np.ndarray | _Settled:
        if state is None:  # looked up on the class (docs, introspection)
            return self
        state._settle()
        count: np.ndarray = getattr(state, self.attr)
        return count

    def __set__(self, state: SlotState, value: np.ndarray) -> None:
        state._settle()
        setattr(state, self.attr, value)


class SlotState:
    """The storage's attributes, its cursors, and the leaf writes and reads the parts share."""

    n_envs: int
    device: torch.device
    capacity: int
    data: TensorDict | None
    counts_exact: bool
    _unpopped: np.ndarray  # each row's unpopped transitions, less ``_due_steps``
    _rows: torch.Tensor
    _base: torch.Tensor
    _pos: torch.Tensor  # each row's cursor as a flat slot index, less ``_shift``
    _host_views: dict[str, tuple[torch.Tensor, np.ndarray]]  # see _host
    _shift: int
    _slack: int
    _bounds: np.ndarray  # each row's cursor bound, less ``_due_steps + _due_ends``
    _due_steps: int  # full-batch steps not yet added to the host counts
    _due_ends: int  # full-batch device steps, each of which may have ended every row's episode
    _ep_carry: torch.Tensor
    _awaiting: torch.Tensor
    _initial: int
    _peak: int
    _flat: dict[str, list[Rows]]  # each field's leaves as flat slots

    n_unpopped = _Settled("_unpopped", "Each row's unpopped transitions (exact while ``counts_exact``).")
    _bound = _Settled("_bounds", "An upper bound on each row's cursor (column), known on the host.")

    def _settle(self) -> None:
        """Adds the full-batch steps a step left due to the host counts.

        A full-batch step adds 1 to every row's counts; adding it to two arrays would be
        two numpy calls of a few µs each in a step that costs tens, so the step counts
        it here and the counts take it when next read.
        """
        if self._due_steps:
            self._unpopped += self._due_steps
            self._bounds += self._due_steps + self._due_ends
            self._due_steps = self._due_ends = 0

    @property
    def _cur(self) -> torch.Tensor:
        """Each row's cursor as a column (for pops and checkpoints; steps use the flat slot)."""
        return self._pos + self._shift - self._base

    def _host(self, name: str) -> np.ndarray:
        """A numpy view of the memory of CPU tensor attribute ``name`` (``_pos``, ``_base``...).

        Made once per tensor object (``numpy()`` is an op, a few µs) and re-made when the
        attribute holds another tensor; writes through it change the tensor.
        """
        tensor: torch.Tensor = getattr(self, name)
        made = self._host_views.get(name)
        if made is None or made[0] is not tensor:
            made = self._host_views[name] = (tensor, tensor.numpy())
        return made[1]

    def _rebase(self) -> None:
        """Folds the shift into the cursors (one op), for the steps and pops that index them."""
        if self._shift:
            self._pos, self._shift = self._pos + self._shift, 0

    def _refresh_views(self) -> None:
        raise NotImplementedError

    def _fit(self, top: int) -> None:
        raise NotImplementedError

    def _clear_flags_past(self, cur: torch.Tensor, upto: int) -> None:
        raise NotImplementedError

    def _put(self, name: str, index: Any, value: Any, shift: int = 0) -> None:
        raise NotImplementedError

    def _take(self, name: str, index: Any, checked: bool = False) -> Obs:
        raise NotImplementedError

    def _take_fields(self, names: tuple[str, ...], index: Any, checked: bool = False) -> TensorDict:
        raise NotImplementedError
