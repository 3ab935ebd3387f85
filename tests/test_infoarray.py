"""Popped infos are made when read, and behave as a numpy object array of dicts.

That the popped dicts equal the envs' own infos is checked with every pop of the
differential tests (``tests/truth.py``).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchbuf import VectorBufferingWrapper
from torchbuf.adapters import gymnasium as gym_adapter
from torchbuf.data.infos import InfoArray
from torchbuf.envs import TorchCartPole


class Counted:
    """A sequence of dicts that counts how many it made."""

    def __init__(self, n: int, tag: str):
        self.n, self.tag, self.made = n, tag, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.made += 1
        return {"tag": self.tag, "i": i}


def test_entries_are_made_once_when_read_and_shared_by_every_slice():
    a, b = Counted(3, "a"), Counted(2, "b")
    infos = InfoArray.gather([a, b], np.array([0, 1, 0, 1, 0]), np.array([0, 0, 1, 1, 2]))
    assert a.made == b.made == 0 and len(infos) == 5 and infos.shape == (5,)
    assert infos[1] == {"tag": "b", "i": 0} and (a.made, b.made) == (0, 1)
    tail = infos[1:]
    assert tail[0] is infos[1] and infos[[1]][0] is infos[1] and infos[-4] is infos[1]
    infos[1]["seen"] = True  # a mutation persists, as in an object array
    assert tail[0]["seen"] and b.made == 1
    assert [d["i"] for d in infos] == [0, 0, 1, 1, 2] and (a.made, b.made) == (3, 2)
    arr = np.asarray(infos)
    assert arr.dtype == object and arr.shape == (5,) and arr[1] is infos[1]
    assert [d["tag"] for d in infos[np.array([True, False, True, False, False])]] == ["a", "a"]
    with pytest.raises(IndexError):
        infos[5]


@pytest.mark.parametrize("clone", [pickle.loads, copy.deepcopy], ids=["pickle", "deepcopy"])
def test_a_copy_is_an_object_array_of_equal_dicts(clone):
    infos = InfoArray.of([{"x": 1}, {"x": np.arange(2)}])
    copied = clone(pickle.dumps(infos)) if clone is pickle.loads else clone(infos)
    assert isinstance(copied, np.ndarray) and copied.dtype == object
    assert copied[0] == {"x": 1} and np.array_equal(copied[1]["x"], np.arange(2))


def test_concatenating_parts_of_different_logs_keeps_their_entries():
    first = InfoArray.of([{"k": 0}, {"k": 1}])
    made = first[0]
    both = InfoArray.concatenate([first[1:], np.array([{"k": 2}], dtype=object), first[:1]])
    assert [d["k"] for d in both] == [1, 2, 0] and both[2] is made


def test_a_pop_makes_no_info_dict_until_its_infos_are_read(monkeypatch):
    made = []
    row = gym_adapter._row
    monkeypatch.setattr(gym_adapter, "_row", lambda info, i: made.append(i) or row(info, i))
    envs = VectorBufferingWrapper(TorchCartPole(64, seed=0))
    envs.reset(seed=0)
    for _ in range(30):
        envs.step(torch.zeros(64, dtype=torch.int64))
    batch = envs.pop_transitions()
    assert len(batch.infos) == 64 * 30 and made == []
    assert set(batch.infos[5]) >= set() and len(made) == 1  # one read, one dict
    sub = batch[10:20]
    assert len(made) == 1 and len(sub.infos) == 10
    list(sub.infos)
    assert len(made) == 11


@pytest.mark.parametrize("as_array", [False, True], ids=["popped", "object-array"])
def test_indexing_a_batch_indexes_its_infos(as_array):
    envs = VectorBufferingWrapper(TorchCartPole(3, seed=0))
    envs.reset(seed=0)
    for _ in range(4):
        envs.step(torch.zeros(3, dtype=torch.int64))
    batch = envs.pop_transitions()
    for e, info in enumerate(batch.infos):
        info["n"] = e  # tags each entry (it is the same dict wherever it is read)
    if as_array:
        batch.infos = np.asarray(batch.infos)
    mask = torch.arange(12) % 3 == 0
    for index, want in [
        (slice(2, 5), [2, 3, 4]),
        (torch.tensor([7, 0]), [7, 0]),
        (mask, [0, 3, 6, 9]),
        (np.array([11]), [11]),
    ]:
        part = batch[index]
        assert len(part) == len(want) and [d["n"] for d in part.infos] == want
    assert batch[5].infos["n"] == 5


index_op = st.one_of(
    st.tuples(
        st.just("slice"),
        st.integers(-6, 6) | st.none(),
        st.integers(-6, 6) | st.none(),
        st.sampled_from([None, 1, 2, -1]),
    ),
    st.tuples(st.just("array"), st.lists(st.integers(0, 30), max_size=6)),
    st.tuples(st.just("mask"), st.integers(0, 2**12)),
)


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(0, 5), min_size=1, max_size=4), ops=st.lists(index_op, max_size=4))
def test_indexing_chains_read_what_an_object_array_reads(sizes, ops):
    parts = [[{"part": p, "i": i} for i in range(n)] for p, n in enumerate(sizes)]
    lazy = InfoArray.concatenate([InfoArray.of(part) for part in parts])
    eager = np.empty(sum(sizes), dtype=object)
    eager[:] = [d for part in parts for d in part]
    for op in ops:
        if op[0] == "slice":
            key = slice(op[1], op[2], op[3])
        elif op[0] == "array":
            key = np.array([i % len(eager) for i in op[1]] if len(eager) else [], dtype=np.int64)
        else:
            key = np.array([bool(op[1] >> i & 1) for i in range(len(eager))], dtype=bool)
        lazy, eager = lazy[key], eager[key]
        assert len(lazy) == len(eager)
    assert list(lazy) == list(eager) and all(a is b for a, b in zip(lazy, eager))
    if len(eager):
        assert lazy[-1] is eager[-1] and lazy[0] is eager[0]


@settings(max_examples=30, deadline=None)
@given(n_steps=st.integers(0, 6), n_envs=st.integers(1, 5), data=st.data())
def test_a_grid_of_every_env_in_every_step_reads_env_by_env_in_time_order(n_steps, n_envs, data):
    steps = [[{"step": t, "env": e} for e in range(n_envs)] for t in range(n_steps)]
    grid = InfoArray.grid(steps, n_envs)
    expected = [{"step": t, "env": e} for e in range(n_envs) for t in range(n_steps)]
    assert len(grid) == len(expected)
    if expected:
        index = data.draw(st.lists(st.integers(0, len(expected) - 1), max_size=8))
        assert grid[np.array(index, dtype=np.int64)].tolist() == [expected[i] for i in index]
    assert grid.tolist() == expected
    assert InfoArray.concatenate([grid[: len(expected) // 2], InfoArray.of([{"x": 1}])]).tolist() == [
        *expected[: len(expected) // 2],
        {"x": 1},
    ]
