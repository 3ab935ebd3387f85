"""The slot storage's state for checkpoints: saved, restored, converted from the first layout.

The first layout marked each terminal slot with its episode's length and each cut
slot with -1 in an ``ep_len`` field, and kept each row's running episode steps in
``ep_t``; the current one reads run ends from the done and ``cut`` flags and carries
the steps made before a row's first slot (see :mod:`torchbuf.buffer.storage`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchbuf.buffer.slotstate import SlotState


class StorageState(SlotState):
    """:class:`~torchbuf.buffer.storage.SlotStorage`'s ``state_dict`` and ``load_state_dict``."""

    def state_dict(self) -> dict[str, Any]:
        """The unpopped state: live slots, cursors and host counts.

        Only the slots up to the host bound on the cursors are kept (the rest of
        each row holds nothing unpopped). Tensors are views of the storage, on its
        device: copy or save them before the next step.

        Returns:
            A dict with ``n_envs``, ``capacity``, ``data`` (a TensorDict of batch
            ``(n_envs, width)``, or ``None`` before the first start), ``cur``,
            ``ep_carry``, ``awaiting`` (tensors of shape ``(n_envs,)``) and the host
            values ``counts_exact``, ``n_unpopped``, ``bound``.
        """
        width = int(self._bound.max()) + 1
        return {
            "n_envs": self.n_envs,
            "capacity": self.capacity,
            "data": None if self.data is None else self.data[:, :width],
            "cur": self._cur,
            "ep_carry": self._ep_carry,
            "awaiting": self._awaiting,
            "counts_exact": self.counts_exact,
            "n_unpopped": self.n_unpopped.copy(),
            "bound": self._bound.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` (possibly saved from another device).

        A state of the first slot layout (an ``ep_len`` field marking each episode
        end with its length, and ``ep_t`` for each row's running episode) is
        converted to the current one.

        Args:
            state: What :meth:`state_dict` returned.

        Raises:
            ValueError: the state holds another number of envs, or more slots
                than its capacity.
        """
        if int(state["n_envs"]) != self.n_envs:
            raise ValueError(f"the state has {state['n_envs']} envs, the storage {self.n_envs}")
        data = state["data"]
        width = 0 if data is None else int(data.batch_size[1])
        if width > int(state["capacity"]) + 1:
            raise ValueError(f"the state holds {width} slots per env, more than its capacity")
        cur = state["cur"].to(self.device, torch.long)
        if "ep_t" in state:
            data, carry = from_first_layout(data, cur, state["ep_t"].to(self.device, torch.long))
        else:
            carry = state["ep_carry"].to(self.device, torch.long).clone()
        self.capacity = max(int(state["capacity"]), self.capacity)
        self.data = None if data is None else self._padded(data)
        self._ep_carry = carry
        self._awaiting = state["awaiting"].to(self.device, self._awaiting.dtype).clone()
        self.counts_exact = bool(state["counts_exact"])
        self.n_unpopped = np.array(state["n_unpopped"], dtype=np.int64)
        self._bound = np.array(state["bound"], dtype=np.int64)
        self._slack, self._shift = 0, 0
        self._base = self._rows * (self.capacity + 1)
        self._pos = self._base + cur
        if self.data is not None:
            self._refresh_views()
            self._clear_flags_past(cur, self.capacity + 1)

    def _padded(self, data: TensorDictBase) -> TensorDict:
        """``data`` (batch ``(n_envs, width)``) in a fresh zeroed storage of ``capacity + 1`` slots."""
        slots = self.capacity + 1
        full = TensorDict(
            {
                key: torch.zeros((self.n_envs, slots, *leaf.shape[2:]), dtype=leaf.dtype, device=self.device)
                for key, leaf in data.items(True, True)
            },
            batch_size=[self.n_envs, slots],
            device=self.device,
        )
        full[:, : data.batch_size[1]] = data.to(self.device)
        return full


def from_first_layout(
    data: TensorDictBase | None, cur: torch.Tensor, ep_t: torch.Tensor
) -> tuple[TensorDictBase | None, torch.Tensor]:
    """The slots and carried episode steps of a first-layout state, in the current layout.

    The first layout marked a terminal slot with its episode's length and a cut slot
    with -1 (``ep_len``), and left the flags of those slots and of the slots past the
    cursor as they were (unread); here those flags are cleared (so that only done
    transitions are done) and the cuts become ``cut`` flags. A row's carried steps
    are its first episode end's length less the transitions before it, or with no end
    its running episode's steps less its transitions in the slots.
    """
    if data is None:
        return None, torch.zeros_like(ep_t)
    data = data.clone()
    ep_len: torch.Tensor = data.pop("ep_len").to(cur.device, torch.long)  # type: ignore[assignment]
    col = torch.arange(ep_len.shape[1], device=cur.device)
    live = col < cur[:, None]
    unread = (ep_len != 0) | ~live
    for name in ("terminated", "truncated"):
        if name in data.keys():  # noqa: SIM118 (a TensorDict's keys are not its rows)
            data[name] = data[name].masked_fill(unread.to(data.device), False)
    data["cut"] = (ep_len == -1) & live
    marked = (ep_len != 0) & live
    first = torch.where(marked, col, ep_len.shape[1]).amin(1).clamp_(max=ep_len.shape[1] - 1)
    first_len = ep_len.gather(1, first[:, None]).squeeze(1)
    carry = torch.where(marked.any(1), (first_len - first).clamp_(min=0), ep_t - cur)
    return data, carry
