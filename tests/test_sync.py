"""The hot path never waits for the device: counted, and run on the meta device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv
from tensordict import TensorDict

from tests.helpers import ACT_SPACES, OBS_SPACES, ScheduleEnv, torch_route
from tests.synccount import count_ops
from torchbuf import BufferingWrapper
from torchbuf.buffer.record import StepRecord
from torchbuf.buffer.recorder import Recorder


def _record(n, device, t, with_dict=True, host_dones=False):
    """A step of n envs where every third env ends its episode on every fifth step."""
    gen = torch.arange(n, device=device)
    done = ((gen % 3) == 0) & (t % 5 == 4)
    obs = torch.full((n, 4), float(t), device=device)
    if with_dict:
        obs = TensorDict({"x": obs, "img": torch.zeros(n, 2, 2, dtype=torch.uint8, device=device)}, [n])
    final = obs.clone() if with_dict else obs + 0.5
    return StepRecord(
        obs=obs,
        acts=torch.ones(n, 2, device=device),
        rews=torch.ones(n, device=device),
        terminated=done & (gen % 2 == 0),
        truncated=done & (gen % 2 == 1),
        final_obs=final,
        dones_host=None,
    )


def _start(rec, n, device):
    rec.start(_record(n, device, 0).obs)


@pytest.mark.parametrize("n_envs", [4, 64])
def test_step_and_pop_transitions_do_not_sync(n_envs):
    rec = Recorder(n_envs, "cpu", keep_infos=False, capacity=8)
    _start(rec, n_envs, "cpu")
    with count_ops() as counter:
        for t in range(40):  # capacity 8: grows several times on the way
            rec.record(_record(n_envs, "cpu", t), None)
        trans = rec.pop_transitions()
    print(f"n_envs={n_envs}: {sum(counter.ops.values())} ops, syncs={dict(counter.syncs)}")
    assert counter.syncs == {}
    assert trans.batch_size[0] == 40 * n_envs


@pytest.mark.parametrize("route", ["gpu", "cpu"])
def test_pop_trajectories_syncs_once(route, monkeypatch):
    """On the storage's GPU route one read of run ends and cursors; on the CPU's, numpy views: none."""
    if route == "gpu":
        torch_route(monkeypatch)
    rec = Recorder(16, "cpu", keep_infos=False)
    _start(rec, 16, "cpu")
    for t in range(30):
        rec.record(_record(16, "cpu", t), None)
    for finished_only in (True, False):
        with count_ops() as counter:
            trajs, ep_lens = rec.pop_trajectories(finished_only=finished_only)
        print(f"finished_only={finished_only}: syncs={dict(counter.syncs)}")
        assert sum(counter.syncs.values()) == (1 if route == "gpu" else 0)
        assert trajs and (ep_lens or not finished_only)


def test_tensor_path_runs_on_meta():
    """Meta tensors hold no data: any hidden data-dependent op raises."""
    rec = Recorder(8, "meta", keep_infos=False, capacity=4)
    _start(rec, 8, "meta")
    for t in range(25):
        rec.record(_record(8, "meta", t), None)
    trans = rec.pop_transitions()
    assert trans.obs["x"].device.type == "meta" and trans.batch_size[0] == 200
    rec.record(_record(8, "meta", 25), None)
    assert rec.pop_transitions().batch_size[0] == 8


def _step_ops(n_envs):
    rec = Recorder(n_envs, "cpu", keep_infos=False, capacity=256)
    _start(rec, n_envs, "cpu")
    records = [_record(n_envs, "cpu", t) for t in range(10)]
    with count_ops() as counter:
        for r in records:
            rec.record(r, None)
    return counter.ops


def test_ops_per_step_do_not_depend_on_n_envs():
    small, large = _step_ops(3), _step_ops(300)
    print(f"ops for 10 steps: {sum(small.values())} at 3 envs, {sum(large.values())} at 300 envs")
    assert small == large


def _sb3_ops(n_envs):
    fns = [
        lambda i=i: ScheduleEnv(OBS_SPACES["dict"], ACT_SPACES["box"], [3, 4], [False, True], i)
        for i in range(n_envs)
    ]
    venv = BufferingWrapper(DummyVecEnv(fns), capacity=256)
    venv.reset()
    acts = np.zeros((n_envs, 2), dtype=np.float32)
    with count_ops() as counter:
        for _ in range(12):
            venv.step(acts)
    return counter


def test_sb3_wrapper_ops_do_not_depend_on_n_envs_and_never_sync():
    small, large = _sb3_ops(2), _sb3_ops(40)
    assert small.ops == large.ops
    assert small.syncs == {} and large.syncs == {}
