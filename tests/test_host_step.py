"""A step into a CPU storage is numpy writes into the storage's memory: no torch op.

For SB3, the env is SB3's ``DummyVecEnv`` of gymnasium's CartPole (numpy, no torch op
of its own); every aten op dispatched while ``BufferingWrapper.step`` runs is counted,
in steps where episodes end and where none does. For a torch-native env on the CPU
(``TorchCartPole``), the env's own ops are left out, and what is left are the numpy
views of its tensors (``Tensor.numpy()`` dispatches one ``detach``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from tests.synccount import count_ops
from tests.test_op_count import _paused
from torchbuf import BufferingWrapper, VectorBufferingWrapper
from torchbuf.envs import TorchCartPole


@pytest.mark.parametrize("n_envs", [1, 8, 64])
def test_a_cpu_sb3_step_issues_no_torch_op(n_envs):
    venv = BufferingWrapper(DummyVecEnv([lambda: gym.make("CartPole-v1")] * n_envs), capacity=8)
    venv.seed(0)
    venv.reset()
    left = np.zeros(n_envs, dtype=np.int64)
    venv.step(left)  # the first step allocates the per-step fields
    ops_by_end: dict[bool, list] = {False: [], True: []}
    for _ in range(40):  # pushing left, every pole falls within 40 steps; the storage grows on the way
        with count_ops() as counter:
            _, _, dones, _ = venv.step(left)
        ops_by_end[bool(dones.any())].append(dict(counter.ops))
    assert ops_by_end[True] and ops_by_end[False], "both kinds of step were taken"
    grew = {k: [ops for ops in v if ops] for k, v in ops_by_end.items()}
    # growth reallocates (a handful of steps); every other step issues nothing
    assert sum(map(len, grew.values())) <= 3, grew
    assert len(venv.pop_transitions()) == 41 * n_envs


@pytest.mark.parametrize("n_envs", [1, 8, 256])
def test_a_cpu_step_of_a_torch_env_takes_numpy_views_and_issues_no_other_op(n_envs):
    import torch

    env = TorchCartPole(n_envs, seed=0)
    envs = VectorBufferingWrapper(env, capacity=100)  # no growth on the way
    envs.reset(seed=0)
    left = torch.zeros(n_envs, dtype=torch.int64)
    envs.step(left)  # the first step allocates the per-step fields
    env_step, ops_by_end = env.step, {False: [], True: []}
    for _ in range(40):  # pushing left, every pole falls within 40 steps
        with count_ops() as counter:
            env.step = _paused(env_step, counter)
            _, _, terminated, truncated, _ = envs.step(left)
        ops_by_end[bool((terminated | truncated).any())].append(dict(counter.ops))
    env.step = env_step
    assert ops_by_end[True] and ops_by_end[False], "both kinds of step were taken"
    for ended, steps in ops_by_end.items():
        for ops in steps:
            # the numpy views of obs, actions, rewards and both flags (each read once), and of the
            # final observations where an episode ended
            assert set(ops) <= {"aten.detach"} and ops.get("aten.detach", 0) <= (6 if ended else 5), ops
    assert len(envs.pop_transitions()) == 41 * n_envs


@pytest.mark.parametrize("n_envs", [8, 64])
@pytest.mark.parametrize("bad", [-1, 2])
def test_an_action_outside_a_discrete_space_names_the_env(n_envs, bad):
    venv = BufferingWrapper(DummyVecEnv([lambda: gym.make("CartPole-v1")] * n_envs))
    venv.reset()
    acts = np.ones(n_envs, dtype=np.int64)
    acts[n_envs - 3] = bad
    with pytest.raises(ValueError, match=rf"actions: env {n_envs - 3} gave {bad}, outside Discrete\(2\)"):
        venv.step(acts)


@pytest.mark.parametrize("small", [1 << 40, 0], ids=["numpy-result", "torch-memory"])
@pytest.mark.parametrize("shape", [(), (4,), (3, 5)])
def test_a_cpu_row_take_copies_exactly_the_indexed_rows(monkeypatch, small, shape):
    import torch

    from torchbuf.buffer import rows as rows_module

    monkeypatch.setattr(rows_module, "_NUMPY_SMALL", small)
    monkeypatch.setattr(rows_module, "_NUMPY_HUGE", 1 << 40)
    leaf = torch.arange(40 * int(np.prod(shape, dtype=int)), dtype=torch.float32).reshape(40, *shape)
    rows = rows_module.Rows(None, leaf)
    index = torch.tensor([39, 0, 7, 7, 12])
    out = rows.take(index)
    assert torch.equal(out, leaf[index])
    assert out.data_ptr() != leaf.data_ptr()
    out.zero_()  # a copy: the storage keeps its rows
    assert leaf[39].sum() > 0
    assert rows.take(torch.tensor([], dtype=torch.long)).shape == (0, *shape)
    for bad in ([0, 40], [-1, 3]):  # numpy would clamp (mode="clip") or wrap (a negative index)
        with pytest.raises(IndexError, match="slot index out of range"):
            rows.take(torch.tensor(bad))


def test_one_range_check_covers_the_next_slots_too():
    """A pop checks its host index once for all leaves, next observations (``index + 1``) included."""
    from torchbuf.buffer.rows import check_slots

    check_slots(np.array([0, 3, 8]), 10, after=1)  # 8 + 1 is the last slot: in range
    with pytest.raises(IndexError, match=r"slot index out of range: 0\.\.10 of 10 slots"):
        check_slots(np.array([0, 3, 9]), 10, after=1)
    with pytest.raises(IndexError, match="out of range"):
        check_slots(np.array([-1, 3]), 10)
