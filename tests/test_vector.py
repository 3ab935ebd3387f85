"""VectorBufferingWrapper on real gymnasium vector envs, every autoreset mode, vs the list reference."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.checks import check_trajectories, check_transitions
from tests.helpers import ACT_SPACES, OBS_SPACES, ScheduleEnv, index_obs, stack_obs
from tests.reference import ListRecorder
from torchbuf.wrappers.vector import VectorBufferingWrapper

GYM1 = not gym.__version__.startswith("0.")
MODES = ["NextStep", "SameStep", "Disabled"] if GYM1 else ["SameStep"]
FINAL = ("final_obs", "_final_obs") if GYM1 else ("final_observation", "_final_observation")


def make_vec(obs_key, act_key, schedules, mode, seed=0):
    fns = [
        (
            lambda lens=lens, trunc=trunc, i=i: ScheduleEnv(
                OBS_SPACES[obs_key], ACT_SPACES[act_key], lens, trunc, seed + i
            )
        )
        for i, (lens, trunc) in enumerate(schedules)
    ]
    if GYM1:
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode(mode))
    return gym.vector.SyncVectorEnv(fns)


class Driver:
    """Steps a wrapped vector env and feeds the list reference what the env returned."""

    def __init__(self, envs, mode):
        self.envs, self.mode = envs, mode
        obs, _ = envs.reset(seed=1)
        self.n = envs.num_envs
        self.ref = ListRecorder([index_obs(obs, e) for e in range(self.n)])
        self.ended = np.zeros(self.n, dtype=bool)

    def step(self, acts):
        obs, rews, term, trunc, info = self.envs.step(acts)
        done = term | trunc
        rows = [e for e in range(self.n) if not (self.mode == "NextStep" and self.ended[e])]
        for e in range(self.n):
            if self.mode == "NextStep" and self.ended[e]:
                self.ref.reset_env(e, index_obs(obs, e))
        finals = [self._final(info, e) for e in rows]
        infos = [None] * len(rows)  # checked through the rewards: see _info_t
        self.ref.step_rows(
            rows, [index_obs(acts, e) for e in rows], [index_obs(obs, e) for e in rows],
            [rews[e] for e in rows], [bool(term[e]) for e in rows],
            [bool(trunc[e]) for e in rows], finals, infos,
        )  # fmt: skip
        self.ended = done & ~self.ended if self.mode == "NextStep" else done
        if self.mode == "Disabled" and done.any():
            obs, _ = self.envs.reset(options={"reset_mask": done})
            for e in np.flatnonzero(done):
                self.ref.reset_env(e, index_obs(obs, e))

    def _final(self, info, e):
        if self.mode != "SameStep" or not info.get(FINAL[1], np.zeros(self.n, bool))[e]:
            return None
        return info[FINAL[0]][e]


def _info_t(info, ended):
    """The step index ScheduleEnv put in the step's info (its reward is episode * 1000 + t).

    Where SAME_STEP reset the env in the step, the step's own info is ``final_info``.
    """
    return info["t"] if "t" in info else info["final_info"]["t"]


def _step_t_matches(info, step):
    return _info_t(info, step[2] or step[3]) == int(step[1]) % 1000


def pop(driver, kind):
    envs, ref = driver.envs, driver.ref
    if kind == "transitions":
        if ref.n_unpopped() == 0:
            with pytest.raises(RuntimeError, match="empty"):
                envs.pop_transitions()
        else:
            check_transitions(envs.pop_transitions(), ref.pop_transitions(), _step_t_matches)
    else:
        finished = kind == "finished"
        got = envs.pop_finished_trajectories() if finished else envs.pop_trajectories()
        check_trajectories(got, ref.pop_trajectories(finished_only=finished), _step_t_matches)
    assert envs.n_unpopped == ref.n_unpopped()


schedule = st.tuples(
    st.lists(st.integers(1, 5), min_size=1, max_size=3), st.lists(st.booleans(), min_size=3, max_size=3)
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(MODES),
    obs_key=st.sampled_from(sorted(OBS_SPACES)),
    act_key=st.sampled_from(sorted(ACT_SPACES)),
    schedules=st.lists(schedule, min_size=1, max_size=3),
    pops=st.lists(
        st.tuples(st.integers(0, 20), st.sampled_from(["transitions", "trajectories", "finished"])),
        max_size=5,
    ),
    n_steps=st.integers(1, 20),
    capacity=st.sampled_from([4, 64]),
)
def test_matches_list_reference(mode, obs_key, act_key, schedules, pops, n_steps, capacity):
    schedules = [(lens, trunc[: len(lens)]) for lens, trunc in schedules]
    envs = VectorBufferingWrapper(make_vec(obs_key, act_key, schedules, mode), capacity=capacity)
    driver = Driver(envs, mode)
    space = ACT_SPACES[act_key]
    space.seed(0)
    for t in range(1, n_steps + 1):
        driver.step(stack_obs([space.sample() for _ in range(envs.num_envs)]))
        for when, kind in pops:
            if when == t:
                pop(driver, kind)
    for kind in ("finished", "trajectories", "transitions"):
        pop(driver, kind)


@pytest.mark.skipif(not GYM1, reason="gymnasium 0.29 has no DISABLED autoreset mode")
def test_disabled_mode_partial_reset_of_a_running_env_cuts_its_fragment():
    envs = VectorBufferingWrapper(make_vec("box", "discrete", [([9], [False])] * 2, "Disabled"))
    driver = Driver(envs, "Disabled")
    for _ in range(3):
        driver.step(np.zeros(2, dtype=np.int64))
    obs, _ = envs.reset(options={"reset_mask": np.array([True, False])})
    driver.ref.reset_env(0, index_obs(obs, 0))
    driver.step(np.zeros(2, dtype=np.int64))
    trajs, ep_lens = envs.pop_trajectories()
    assert ep_lens == [] and [len(t) for t in trajs] == [3, 1, 4]
    assert not any(t.terminal for t in trajs)


def test_unknown_autoreset_mode_is_a_value_error():
    env = make_vec("box", "discrete", [([3], [False])], MODES[0])
    with pytest.raises(ValueError, match="unsupported autoreset mode"):
        VectorBufferingWrapper(env, autoreset_mode="sometimes")


@pytest.mark.skipif(not GYM1, reason="gymnasium 0.29 envs declare no autoreset mode")
def test_undeclared_autoreset_mode_is_a_value_error():
    env = make_vec("box", "discrete", [([3], [False])], "NextStep")
    env.metadata = {k: v for k, v in env.metadata.items() if k != "autoreset_mode"}
    with pytest.raises(ValueError, match="declares no metadata"):
        VectorBufferingWrapper(env)


def test_step_before_reset_and_bad_actions():
    envs = VectorBufferingWrapper(make_vec("box", "discrete", [([3], [False])] * 2, MODES[0]))
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.zeros(2, dtype=np.int64))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions: expected shape \(2,\)"):
        envs.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="env 1 gave 7"):
        envs.step(np.array([0, 7]))


@pytest.mark.skipif(not GYM1, reason="gymnasium 0.29 has no NEXT_STEP autoreset mode")
def test_a_next_step_torch_env_on_the_cpu_keeps_its_infos_and_records_as_its_numpy_twin():
    """A CPU tensor's flags are host memory: the reset steps are known on the host, no info is dropped."""
    import warnings

    import torch

    class TorchOutputs(gym.vector.VectorWrapper):  # gymnasium 1.x only
        """A numpy vector env's outputs as CPU tensors, as gymnasium's ``NumpyToTorch`` gives them.

        (``NumpyToTorch`` itself needs ``array_api_compat``, which nothing else here needs.)
        """

        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            return torch.from_numpy(obs), info

        def step(self, actions):
            obs, rew, term, trunc, info = self.env.step(actions.numpy())
            return tuple(torch.from_numpy(x) for x in (obs, rew, term, trunc)) + (info,)

    def make():
        return gym.make_vec(
            "CartPole-v1", 3, vectorization_mode="sync", vector_kwargs={"autoreset_mode": "NextStep"}
        )

    numpy_envs, torch_envs = VectorBufferingWrapper(make()), VectorBufferingWrapper(TorchOutputs(make()))
    for envs in (numpy_envs, torch_envs):
        envs.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, (80, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was: "infos are not kept: ... known only on the device"
        for acts in actions:
            numpy_envs.step(acts)
            torch_envs.step(torch.from_numpy(acts))
    want, got = numpy_envs.pop_transitions(), torch_envs.pop_transitions()
    assert len(got) == len(want) > 200 and got.infos is not None and len(got.infos) == len(got)
    for field in ("obs", "acts", "next_obs", "dones", "rews"):
        assert np.array_equal(np.asarray(getattr(got, field)), np.asarray(getattr(want, field))), field
