"""Differential test: torchbuf's drop-in against imitation 1.0.1's own ``BufferingWrapper``.

Two identical SB3 ``DummyVecEnv``\\ s get the same actions and the same schedule of pops
and resets; everything each wrapper returns is compared field by field (dtypes
included). The pops' orders differ by design (imitation: by completion; torchbuf: env
by env), so transitions are compared as multisets of rows and trajectories as
multisets of trajectories.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.vec_env import DummyVecEnv

pytest.importorskip("imitation", reason="imitation is not installed (the compat environment has 1.0.1)")
from imitation.data import types as im  # noqa: E402
from imitation.data import wrappers as im_wrappers  # noqa: E402

from torchbuf.compat.imitation import BufferingWrapper  # noqa: E402

ImitationBufferingWrapper = im_wrappers.BufferingWrapper


class SeededEnv(gym.Env):
    """Random observations and rewards, episodes of random length (1 to 6), some truncated.

    Everything comes from a generator seeded at construction, so two instances made
    alike produce the same stream. Infos name the env, episode and step.
    """

    def __init__(self, obs_space: spaces.Space, act_space: spaces.Space, env_id: int, seed: int):
        self.observation_space, self.action_space = obs_space, act_space
        self.env_id, self.rng = env_id, np.random.default_rng([seed, env_id])
        self.episode, self.t, self.ep_len = -1, 0, 0

    def _obs(self, space=None):
        space = space or self.observation_space
        if isinstance(space, spaces.Dict):
            return {key: self._obs(sub) for key, sub in space.spaces.items()}
        if space.dtype == np.uint8:
            return self.rng.integers(0, 256, space.shape, dtype=np.uint8)
        return self.rng.normal(size=space.shape).astype(space.dtype)

    def reset(self, *, seed=None, options=None):
        self.episode, self.t, self.ep_len = self.episode + 1, 0, int(self.rng.integers(1, 7))
        return self._obs(), {"env": self.env_id, "episode": self.episode}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.t += 1
        end = self.t >= self.ep_len
        truncated = end and bool(self.rng.random() < 0.3)
        info = {"env": self.env_id, "episode": self.episode, "t": self.t}
        return self._obs(), float(self.rng.normal()), end and not truncated, truncated, info


BOX = spaces.Box(-5.0, 5.0, (3,), np.float32)
IMAGE = spaces.Box(0, 255, (6, 6, 3), np.uint8)
DICT = spaces.Dict(
    {"pos": spaces.Box(-1.0, 1.0, (2,), np.float32), "img": spaces.Box(0, 255, (4, 4), np.uint8)}
)
ENVS = {
    # name: (observation space, action space); None means gymnasium's CartPole-v1.
    "cartpole": None,
    "box_obs_box_act": (BOX, spaces.Box(-1.0, 1.0, (2,), np.float32)),
    "image_obs_discrete_act": (IMAGE, spaces.Discrete(3)),
    "dict_obs_multidiscrete_act": (DICT, spaces.MultiDiscrete([2, 3])),
    "box_obs_multidiscrete_act": (BOX, spaces.MultiDiscrete([3, 4, 2])),
}


def make_venv(kind: str, n_envs: int, seed: int) -> DummyVecEnv:
    if ENVS[kind] is None:
        venv = DummyVecEnv([lambda: gym.make("CartPole-v1")] * n_envs)
        venv.seed(seed)
        return venv
    obs_space, act_space = ENVS[kind]
    return DummyVecEnv([lambda i=i: SeededEnv(obs_space, act_space, i, seed) for i in range(n_envs)])


def random_actions(space: spaces.Space, n_envs: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(space, spaces.Discrete):
        return rng.integers(0, space.n, n_envs)
    if isinstance(space, spaces.MultiDiscrete):
        return rng.integers(0, space.nvec, (n_envs, len(space.nvec)))
    return rng.uniform(space.low, space.high, (n_envs, *space.shape)).astype(space.dtype)


# ------------------------------------------------------------------ equality
def assert_value_equal(a, b, where="value"):
    """Equality of info values: numpy-aware, dtype-strict, recursing into dicts."""
    if isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_value_equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype, (where, a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def assert_array_equal(a, b, where):
    if isinstance(a, im.DictObs) or isinstance(b, im.DictObs):
        assert isinstance(a, im.DictObs) and isinstance(b, im.DictObs), where
        assert a.keys() == b.keys(), where
        for key in a.keys():  # noqa: SIM118 (iterating a DictObs yields rows)
            assert_array_equal(a.get(key), b.get(key), f"{where}[{key!r}]")
        return
    assert type(a) is np.ndarray and type(b) is np.ndarray, (where, type(a), type(b))
    assert a.dtype == b.dtype, (where, a.dtype, b.dtype)
    np.testing.assert_array_equal(a, b, err_msg=where)


def assert_infos_equal(a, b, where):
    assert len(a) == len(b), where
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert_value_equal(x, y, f"{where}[{i}]")


def row_bytes(x, i) -> bytes:
    if isinstance(x, im.DictObs):
        return b"".join(key.encode() + x.get(key)[i].tobytes() for key in sorted(x.keys()))
    return np.ascontiguousarray(x[i]).tobytes()


def take(x, index):
    return x[index] if isinstance(x, im.DictObs) else x[np.asarray(index, dtype=np.int64)]


def transition_order(trans) -> np.ndarray:
    """Indices sorting the rows by their content (the multiset's canonical order)."""
    keys = [
        b"|".join(row_bytes(getattr(trans, f), i) for f in ("obs", "acts", "next_obs", "rews", "dones"))
        for i in range(len(trans))
    ]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def assert_transitions_equal(ours, theirs):
    assert type(ours) is type(theirs) is im.TransitionsWithRew
    assert len(ours) == len(theirs)
    io, it = transition_order(ours), transition_order(theirs)
    for name in ("obs", "acts", "next_obs", "rews", "dones"):
        assert_array_equal(take(getattr(ours, name), io), take(getattr(theirs, name), it), name)
    assert_infos_equal(ours.infos[io], theirs.infos[it], "infos")


def trajectory_key(traj) -> bytes:
    return b"".join(row_bytes(traj.obs, i) for i in range(len(traj.obs))) + traj.acts.tobytes()


def assert_trajectories_equal(ours, theirs):
    ours_trajs, ours_lens = ours
    theirs_trajs, theirs_lens = theirs
    assert isinstance(ours_lens, list) and all(type(n) is int for n in ours_lens)
    assert sorted(ours_lens) == sorted(int(n) for n in theirs_lens)
    assert len(ours_trajs) == len(theirs_trajs)
    for a, b in zip(
        sorted(ours_trajs, key=trajectory_key), sorted(theirs_trajs, key=trajectory_key), strict=True
    ):
        assert type(a) is type(b) is im.TrajectoryWithRew
        assert a.terminal is b.terminal
        for name in ("obs", "acts", "rews"):
            assert_array_equal(getattr(a, name), getattr(b, name), name)
        assert_infos_equal(a.infos, b.infos, "infos")


# ------------------------------------------------------------------ the run
def call(fn):
    """``("ok", result)`` or ``("error", exception type)``: the two wrappers must agree."""
    try:
        return "ok", fn()
    except (RuntimeError, AssertionError) as err:
        return "error", type(err)


def do(op, ours, theirs):
    (o_status, o_out), (t_status, t_out) = call(getattr(ours, op)), call(getattr(theirs, op))
    assert (o_status, op) == (t_status, op), (o_out, t_out)
    if o_status == "error":
        assert o_out is t_out is RuntimeError
    elif op == "pop_transitions":
        assert_transitions_equal(o_out, t_out)
    elif op == "reset":
        assert_value_equal(o_out, t_out, "reset obs")
    else:
        assert_trajectories_equal(o_out, t_out)


def run_schedule(kind, n_envs, seed, n_steps, ops_at, last_op):
    ours = BufferingWrapper(make_venv(kind, n_envs, seed))
    theirs = ImitationBufferingWrapper(make_venv(kind, n_envs, seed))
    assert_value_equal(ours.reset(), theirs.reset(), "reset obs")
    rng = np.random.default_rng(seed)
    for t in range(1, n_steps + 1):
        acts = random_actions(ours.action_space, n_envs, rng)
        o_step, t_step = ours.step(acts), theirs.step(acts.copy())
        for name, a, b in zip(("obs", "rews", "dones", "infos"), o_step, t_step, strict=True):
            assert_value_equal(a, b, name) if name != "infos" else assert_infos_equal(a, b, name)
        assert ours.n_transitions == theirs.n_transitions
        for op in ops_at.get(t, []):
            do(op, ours, theirs)
            assert ours.n_transitions == theirs.n_transitions
    do(last_op, ours, theirs)


@st.composite
def schedules(draw, ops):
    n_steps = draw(st.integers(1, 40))
    pops = draw(st.lists(st.tuples(st.integers(1, n_steps), st.sampled_from(ops)), max_size=5))
    ops_at: dict[int, list[str]] = {}
    for t, op in pops:
        ops_at.setdefault(t, []).append(op)
    last_op = draw(st.sampled_from([op for op in ops if op != "reset"]))
    return draw(st.integers(0, 2**16)), n_steps, ops_at, last_op


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("kind", list(ENVS))
@pytest.mark.parametrize("n_envs", [1, 3])
@SETTINGS
@given(schedule=schedules(["pop_transitions", "pop_trajectories", "reset"]))
def test_transitions_and_trajectories_match_imitation(kind, n_envs, schedule):
    run_schedule(kind, n_envs, *schedule)


@pytest.mark.parametrize("kind", list(ENVS))
@pytest.mark.parametrize("n_envs", [1, 3])
@SETTINGS
@given(schedule=schedules(["pop_finished_trajectories", "reset"]))
def test_finished_trajectories_match_imitation(kind, n_envs, schedule):
    run_schedule(kind, n_envs, *schedule)


def test_compared_against_imitations_own_class():
    assert ImitationBufferingWrapper.__module__ == "imitation.data.wrappers"
    assert not issubclass(ImitationBufferingWrapper, BufferingWrapper)
