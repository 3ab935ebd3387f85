"""What popped data shares memory with, checked on storage pointers."""

from __future__ import annotations

import torch

from torchbuf import VectorBufferingWrapper
from torchbuf.envs import TorchCartPole


def _storages(td):
    return {v.untyped_storage().data_ptr() for v in td.values(True, True) if isinstance(v, torch.Tensor)}


def _recorded(n_envs=4, steps=50):
    envs = VectorBufferingWrapper(TorchCartPole(n_envs, seed=0), keep_infos=False)
    obs, _ = envs.reset(seed=0)
    for _ in range(steps):
        obs, *_ = envs.step((obs[:, 2] < 0).long())
    return envs


def test_trajectories_are_views_of_one_popped_copy():
    envs = _recorded()
    buffer = _storages(envs._recorder.storage.data)
    trajs, _ = envs.pop_trajectories()
    assert len(trajs) > 4
    obs_storages = {t.obs.untyped_storage().data_ptr() for t in trajs}
    act_storages = {t.acts.untyped_storage().data_ptr() for t in trajs}
    assert len(obs_storages) == 1 and len(act_storages) == 1  # one gather per field, then views
    assert not (obs_storages | act_storages) & buffer  # never a view of the buffer's slots


def test_transitions_are_one_copy_each_field():
    envs = _recorded()
    buffer = _storages(envs._recorder.storage.data)
    trans = envs.pop_transitions()
    fields = [trans.obs, trans.next_obs, trans.acts, trans.rews, trans.terminated, trans.truncated]
    ptrs = [f.untyped_storage().data_ptr() for f in fields]
    assert len(set(ptrs)) == len(fields)  # obs and next_obs are separate copies
    assert not set(ptrs) & buffer
