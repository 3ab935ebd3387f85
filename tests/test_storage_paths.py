"""The storage's two routes to the same bytes agree: numpy views (CPU) and torch index ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from tests.helpers import ACT_SPACES, OBS_SPACES, ScheduleEnv, torch_route
from torchbuf import BufferingWrapper


def _run(obs_key):
    spaces = OBS_SPACES[obs_key], ACT_SPACES["box"]
    fns = [lambda i=i: ScheduleEnv(*spaces, [3, 5], [False, True], i) for i in range(3)]
    venv = BufferingWrapper(DummyVecEnv(fns), capacity=4)
    venv.reset()
    space = ACT_SPACES["box"]
    space.seed(0)
    for _ in range(11):
        venv.step(np.stack([space.sample() for _ in range(3)]))
    trajs, _ = venv.pop_finished_trajectories()
    for _ in range(4):
        venv.step(np.stack([space.sample() for _ in range(3)]))
    return [t.clone() for t in trajs], venv.pop_transitions()


def _leaves(batch):
    return {k: v for k, v in batch._tensordict.items(True, True) if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("obs_key", ["box", "image", "dict", "multidiscrete"])
def test_torch_index_route_equals_numpy_route(obs_key, monkeypatch):
    trajs_np, trans_np = _run(obs_key)
    torch_route(monkeypatch)
    trajs_t, trans_t = _run(obs_key)
    assert len(trajs_np) == len(trajs_t) > 0
    for a, b in [(trans_np, trans_t), *zip(trajs_np, trajs_t)]:
        la, lb = _leaves(a), _leaves(b)
        assert la.keys() == lb.keys()
        for key in la:
            assert la[key].dtype == lb[key].dtype and torch.equal(la[key], lb[key]), key


@pytest.mark.parametrize(
    "shape, dtype",
    [((), torch.float32), ((4,), torch.float32), ((3,), torch.bool), ((7,), torch.float64),
     ((2, 3), torch.int64), ((5, 5, 3), torch.uint8)],
)  # fmt: skip
def test_rows_write_and_read_the_bytes_index_put_and_indexing_do(shape, dtype):
    """The CPU route (one np.void element per row) against torch's own ops, on the same slots."""
    from torchbuf.buffer.rows import Rows

    gen = torch.Generator().manual_seed(0)
    slots, n = 40, 12
    index = torch.randperm(slots, generator=gen)[:n]
    value = (torch.rand((n, *shape), generator=gen) * 200).to(dtype)
    if len(shape) >= 2:  # a value that is not contiguous in memory
        value = value.transpose(-1, -2).contiguous().transpose(-1, -2)
    want = torch.zeros((slots, *shape), dtype=dtype)
    want.index_put_((index,), value)
    rows = Rows(None, torch.zeros((slots, *shape), dtype=dtype))
    assert (rows.slots is not None) == (len(shape) >= 1)
    rows.put(index, value)
    assert torch.equal(rows.leaf, want)
    rows.put(index.numpy(), value.numpy())  # host indices and values: the same bytes
    assert torch.equal(rows.leaf, want)
    back = rows.take(index)
    assert back.shape == value.shape and back.dtype == dtype and torch.equal(back, value)
    assert back.data_ptr() != rows.leaf.data_ptr()  # a copy, never a view of the storage
