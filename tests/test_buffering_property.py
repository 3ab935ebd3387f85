"""Property-based tests: BufferingWrapper agrees with the list reference recorder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.vec_env import DummyVecEnv

from tests.checks import check_trajectories, check_transitions
from tests.helpers import ACT_SPACES, OBS_SPACES, ScheduleEnv, index_obs
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


def _same_info(got, step):
    return got is step[4]  # the VecEnv's own info dict, kept as is


def _pop(venv, ref, kind):
    if kind == "transitions":
        if ref.n_unpopped() == 0:
            with pytest.raises(RuntimeError, match="empty"):
                venv.pop_transitions()
            return
        check_transitions(venv.pop_transitions(), ref.pop_transitions(), _same_info)
    else:
        check_trajectories(
            venv.pop_finished_trajectories() if kind == "finished" else venv.pop_trajectories(),
            ref.pop_trajectories(finished_only=kind == "finished"),
            _same_info,
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
