"""Property-based tests: BufferingWrapper agrees with the list reference recorder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.vec_env import DummyVecEnv

from tests.helpers import (
    ACT_SPACES,
    OBS_SPACES,
    ScheduleEnv,
    assert_obs_equal,
    index_obs,
    stack_obs,
    to_numpy,
)
from tests.reference import ListRecorder
from torchbuf import BufferingWrapper

POPS = ("transitions", "trajectories", "finished")
# SB3 VecEnvs reject nested dict spaces; nested dicts are covered by the vector-env tests.
SB3_OBS = sorted(k for k in OBS_SPACES if k != "nested")
SB3_ACTS = sorted(k for k in ACT_SPACES if k != "dict")  # SB3 has no dict action spaces


def _make(obs_key, act_key, schedules, seed):
    fns = [
        (
            lambda lens=lens, trunc=trunc, i=i: ScheduleEnv(
                OBS_SPACES[obs_key], ACT_SPACES[act_key], lens, trunc, seed + i
            )
        )
        for i, (lens, trunc) in enumerate(schedules)
    ]
    return DummyVecEnv(fns)


def _check_transitions(got, expected):
    assert got.batch_size[0] == len(expected)
    for i, (obs, (act, rew, term, trunc, info), next_obs) in enumerate(expected):
        assert_obs_equal(index_obs(to_numpy(got.obs), i), obs)
        assert_obs_equal(index_obs(to_numpy(got.next_obs), i), next_obs)
        np.testing.assert_array_equal(to_numpy(got.acts[i]), act)
        assert float(got.rews[i]) == rew
        assert bool(got.terminated[i]) == term and bool(got.truncated[i]) == trunc
        assert bool(got.dones[i]) == (term or trunc)
        assert got.infos[i] is info


def _check_trajectories(got, expected):
    trajs, ep_lens = got
    assert [n for *_, n in expected if n] == ep_lens
    assert len(trajs) == len(expected)
    for traj, (_, obs, steps, n) in zip(trajs, expected, strict=False):
        assert traj.terminal == bool(n)
        assert len(traj) == len(steps) and len(traj.obs) == len(obs) if hasattr(traj.obs, "__len__") else True
        assert_obs_equal(traj.obs, stack_obs(obs))
        np.testing.assert_array_equal(to_numpy(traj.acts), np.stack([s[0] for s in steps]))
        np.testing.assert_array_equal(to_numpy(traj.rews), np.array([s[1] for s in steps], dtype=np.float32))
        np.testing.assert_array_equal(to_numpy(traj.terminated), [s[2] for s in steps])
        np.testing.assert_array_equal(to_numpy(traj.truncated), [s[3] for s in steps])
        assert all(a is s[4] for a, s in zip(traj.infos, steps, strict=False))


def _pop(venv, ref, kind):
    if kind == "transitions":
        if ref.n_unpopped() == 0:
            with pytest.raises(RuntimeError, match="empty"):
                venv.pop_transitions()
            return
        _check_transitions(venv.pop_transitions(), ref.pop_transitions())
    else:
        _check_trajectories(
            venv.pop_finished_trajectories() if kind == "finished" else venv.pop_trajectories(),
            ref.pop_trajectories(finished_only=kind == "finished"),
        )
    assert venv.n_transitions == 0


schedule = st.tuples(
    st.lists(st.integers(1, 6), min_size=1, max_size=4), st.lists(st.booleans(), min_size=4, max_size=4)
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    obs_key=st.sampled_from(SB3_OBS),
    act_key=st.sampled_from(SB3_ACTS),
    schedules=st.lists(schedule, min_size=1, max_size=4),
    pops=st.lists(st.tuples(st.integers(0, 25), st.sampled_from(POPS)), max_size=6),
    n_steps=st.integers(1, 25),
    capacity=st.sampled_from([4, 64]),
)
def test_matches_list_reference(obs_key, act_key, schedules, pops, n_steps, capacity):
    schedules = [(lens, trunc[: len(lens)]) for lens, trunc in schedules]
    venv = BufferingWrapper(_make(obs_key, act_key, schedules, seed=3), capacity=capacity)
    obs = venv.reset()
    ref = ListRecorder([index_obs(obs, e) for e in range(venv.num_envs)])
    act_space = ACT_SPACES[act_key]
    act_space.seed(0)
    for t in range(1, n_steps + 1):
        acts = np.stack([act_space.sample() for _ in range(venv.num_envs)])
        obs, rews, dones, infos = venv.step(acts)
        assert venv.n_transitions is not None and venv.n_transitions > 0
        trunc = [bool(i.get("TimeLimit.truncated", False)) for i in infos]
        finals = [i["terminal_observation"] if d else None for i, d in zip(infos, dones, strict=False)]
        obs_list = [index_obs(obs, e) for e in range(venv.num_envs)]
        term = [bool(d) and not tr for d, tr in zip(dones, trunc, strict=False)]
        ref.step(list(acts), obs_list, list(rews), term, trunc, finals, infos)
        for when, kind in pops:
            if when == t:
                _pop(venv, ref, kind)
    for kind in ("finished", "trajectories", "transitions"):
        _pop(venv, ref, kind)
    assert ref.n_unpopped() == 0
