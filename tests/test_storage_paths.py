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
