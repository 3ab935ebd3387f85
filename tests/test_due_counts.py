"""Full-batch steps leave their host counts due; every reader sees them settled.

The expected counts are worked out by hand from the slot layout: a step adds one
transition and one slot to every row, an episode end one more slot (the final
observation); a device step, whose ends the host cannot see, bounds two slots.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import torch

from tests.helpers import torch_route
from torchbuf.buffer.record import StepRecord
from torchbuf.buffer.storage import SlotStorage


def _host_step(n: int, dones: list[bool]) -> StepRecord:
    done = np.array(dones)
    return StepRecord(
        obs=np.ones((n, 3), np.float32),
        acts=np.zeros(n, np.int64),
        rews=np.ones(n, np.float32),
        terminated=done.copy(),
        truncated=np.zeros(n, bool),
        final_obs=np.full((int(done.sum()), 3), 7, np.float32) if done.any() else None,
        final_rows=np.flatnonzero(done) if done.any() else None,
        dones_host=done,
    )


def _device_step(n: int) -> StepRecord:
    return StepRecord(
        obs=torch.ones(n, 3),
        acts=torch.zeros(n, dtype=torch.int64),
        rews=torch.ones(n),
        terminated=torch.zeros(n, dtype=torch.bool),
        truncated=torch.zeros(n, dtype=torch.bool),
    )


def test_host_full_batches_count_transitions_and_the_final_observations_slots():
    storage = SlotStorage(3, capacity=4)
    storage.start(torch.zeros(3, 3))
    for dones in ([False] * 3, [False, True, False], [False] * 3, [True, True, False]):
        storage.write(_host_step(3, dones))
    assert storage.n_unpopped.tolist() == [4, 4, 4]
    assert storage._bound.tolist() == [5, 6, 4]
    assert storage.capacity >= 7  # grown on the way: the bound plus 2 slots fit
    assert len(storage.take_transitions()["obs"]) == 12


def test_device_full_batches_bound_two_slots_a_step():
    storage = SlotStorage(2, capacity=4)
    storage.start(torch.zeros(2, 3))
    for _ in range(5):
        storage.write(_device_step(2))
    assert storage.n_unpopped.tolist() == [5, 5]
    assert storage._bound.tolist() == [10, 10]


def test_a_device_storage_fed_host_flags_counts_as_a_cpu_one():
    """SB3 or envpool recording to a GPU: the host flags' full-batch steps count exactly (on ``meta``)."""
    counts = {}
    for device in ("cpu", "meta"):
        storage = SlotStorage(3, device=device, capacity=4)
        storage.start(torch.zeros(3, 3, device=device))
        for dones in ([False] * 3, [False, True, False], [False] * 3, [True, True, False]):
            rec = _host_step(3, dones)
            for name in ("obs", "acts", "rews", "terminated", "truncated", "final_obs"):
                value = getattr(rec, name)
                setattr(rec, name, None if value is None else torch.as_tensor(value, device=device))
            storage.write(rec)
        counts[device] = (storage.n_unpopped.tolist(), storage._bound.tolist(), storage.capacity)
    assert counts["meta"] == counts["cpu"]  # the same counts, and grown alike
    assert counts["cpu"][:2] == ([4, 4, 4], [5, 6, 4])


def _tensor_step(obs: float, dones: list[bool], final: float, final_in_obs: bool = False) -> StepRecord:
    """A full batch of CPU tensors, final observations as a full batch (a torch-native env's step).

    The host flags are given, as the vector wrapper gives them for CPU tensors on a CPU storage.
    """
    n = len(dones)
    return StepRecord(
        dones_host=np.array(dones),
        obs=torch.full((n, 3), obs),
        acts=torch.zeros(n, dtype=torch.int64),
        rews=torch.ones(n),
        terminated=torch.tensor(dones),
        truncated=torch.zeros(n, dtype=torch.bool),
        final_obs=None if final_in_obs else torch.full((n, 3), final),
        final_in_obs=final_in_obs,
    )


def test_cpu_tensors_with_host_flags_count_exactly_and_a_full_batch_of_finals_is_cut_to_the_ended_rows():
    storage = SlotStorage(2, capacity=8)
    storage.start(torch.zeros(2, 3))
    storage.write(_tensor_step(1.0, [False, True], final=9.0))
    storage.write(_tensor_step(2.0, [False, False], final=-1.0))
    assert storage.n_unpopped.tolist() == [2, 2]
    assert storage._bound.tolist() == [2, 3]  # exact: only the row that ended took a slot more
    assert storage._cur.tolist() == [2, 3]
    out = storage.take_transitions()
    # env 0: 0 -> 1 -> 2; env 1: 0 -> 9 (terminal), then its reset observation 1 -> 2
    assert out["obs"][:, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert out["next_obs"][:, 0].tolist() == [1.0, 2.0, 9.0, 2.0]
    assert out["terminated"].tolist() == [False, False, True, False]


def test_a_host_batch_whose_final_observations_are_in_obs_keeps_the_slot_after_them_free():
    storage = SlotStorage(2, capacity=8)
    storage.start(torch.zeros(2, 3))
    storage.write(_tensor_step(5.0, [True, False], final=0.0, final_in_obs=True))
    assert storage._cur.tolist() == [2, 1]  # row 0's reset observation comes later, in slot 2
    assert storage._awaiting.tolist() == [True, False]
    storage.restart(torch.full((2, 3), 7.0), torch.tensor([True, False]))
    storage.write(_tensor_step(8.0, [False, False], final=0.0, final_in_obs=True))
    out = storage.take_transitions()
    assert out["obs"][:, 0].tolist() == [0.0, 7.0, 0.0, 5.0]
    assert out["next_obs"][:, 0].tolist() == [5.0, 8.0, 5.0, 8.0]


def test_due_counts_survive_copies_and_state_dicts():
    storage = SlotStorage(2, capacity=4)
    storage.start(torch.zeros(2, 3))
    storage.write(_host_step(2, [False, True]))
    storage.write(_host_step(2, [False, False]))
    for twin in (copy.deepcopy(storage), pickle.loads(pickle.dumps(storage))):
        assert twin.n_unpopped.tolist() == [2, 2] and twin._bound.tolist() == [2, 3]
    restored = SlotStorage(2, capacity=4)
    restored.load_state_dict(storage.state_dict())
    assert restored.n_unpopped.tolist() == [2, 2] and restored._bound.tolist() == [2, 3]


def test_a_storage_pickled_with_its_counts_as_arrays_loads():
    storage = SlotStorage(2, capacity=4)
    storage.start(torch.zeros(2, 3))
    storage.write(_host_step(2, [True, False]))
    assert storage.n_unpopped.tolist() == [1, 1]  # read: settled, nothing left due
    state = storage.__getstate__()
    state["n_unpopped"], state["_bound"] = state.pop("_unpopped"), state.pop("_bounds")
    del state["_due_steps"], state["_due_ends"]  # the older layout: counts as arrays
    old = SlotStorage.__new__(SlotStorage)
    old.__setstate__(state)
    assert old.n_unpopped.tolist() == [1, 1] and old._bound.tolist() == [2, 1]


def test_a_loaded_state_clears_the_flags_past_each_cursor(monkeypatch):
    torch_route(monkeypatch)  # device steps: the bound runs two slots a step ahead of the cursor

    def step(value: float, ended: bool) -> StepRecord:
        done = torch.tensor([ended, False])
        return StepRecord(
            obs=torch.full((2, 3), value),
            acts=torch.full((2,), int(value)),
            rews=torch.full((2,), value),
            terminated=done,
            truncated=torch.zeros(2, dtype=torch.bool),
            final_obs=torch.full((2, 3), -value) if ended else None,
        )

    storage = SlotStorage(2, capacity=8)
    storage.start(torch.zeros(2, 3))
    storage.write(step(1.0, False))
    state = storage.state_dict()  # slots 0..2 of each row (bound 2); each cursor at slot 1
    data = state["data"].clone()
    data["terminated"][:, 2] = True  # a state whose slot past the cursors says "done"
    state["data"] = data
    loaded = SlotStorage(2, capacity=8)
    loaded.load_state_dict(state)
    loaded.write(step(2.0, True))  # row 0 ends: its final observation takes slot 2, the reset one slot 3
    loaded.write(step(3.0, False))
    out = loaded.take_transitions()
    # row 0: steps 1, 2 (terminated) and 3 (from the reset observation); row 1: steps 1, 2, 3
    assert out["acts"].tolist() == [1, 2, 3, 1, 2, 3]
    assert out["terminated"].tolist() == [False, True, False, False, False, False]
    assert out["obs"][:, 0].tolist() == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]
    assert out["next_obs"][:, 0].tolist() == [1.0, -2.0, 3.0, 1.0, 2.0, 3.0]
