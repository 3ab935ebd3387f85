"""Regression tests for recording defects found by probing as a hostile user.

Each test failed before its fix; the expected values come from the env itself
(its own step counts and returned arrays), never from torchbuf.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from torchbuf import VectorBufferingWrapper

AutoresetMode = getattr(gym.vector, "AutoresetMode", None)
NEEDS_MODES = pytest.mark.skipif(AutoresetMode is None, reason="gymnasium 0.29 has no AutoresetMode")


class OneStep(gym.Env):
    """Episodes of one step; the observation counts the env's own steps."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([-1.0], np.float32), {}

    def step(self, action):
        self.steps += 1
        return np.array([float(self.steps)], np.float32), 1.0, True, False, {}


@NEEDS_MODES
def test_next_step_partial_reset_after_an_episode_end_keeps_the_next_transition() -> None:
    """Issue item 1: reset_mask clears gymnasium's autoreset flag; the next step is a transition."""
    inner = gym.vector.SyncVectorEnv([OneStep], autoreset_mode=AutoresetMode.NEXT_STEP)
    env = VectorBufferingWrapper(inner)
    env.reset(seed=0)
    env.step(np.array([0]))
    env.reset(options={"reset_mask": np.array([True])})
    env.step(np.array([1]))
    made = inner.envs[0].unwrapped.steps
    tr = env.pop_transitions()
    assert made == 2
    assert len(tr) == made
    assert tr.next_obs[:, 0].tolist() == [1.0, 2.0]
    assert tr.acts.tolist() == [0, 1]


class Scripted(gym.vector.VectorEnv):
    """A two-env vector env that returns, step by step, the arrays a test scripts.

    A fake on purpose: it returns observations and rewards of dtypes a real env should
    not, which is the hostile input under test.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP} if AutoresetMode else {}

    def __init__(self, space: gym.spaces.Box, obs: list[np.ndarray], rews: list[np.ndarray]) -> None:
        self.num_envs = 2
        self.single_observation_space = space
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(space, 2)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, 2)
        self._obs, self._rews = list(obs), list(rews)

    def reset(self, *, seed=None, options=None):
        return self._obs.pop(0), {}

    def step(self, actions):
        no = np.zeros(2, dtype=bool)
        return self._obs.pop(0), self._rews.pop(0), no, no, {}


BOX = gym.spaces.Box(-1000.0, 1000.0, (2,), np.float32)
FLOATS = [np.zeros((2, 2), np.float32)] * 3
RAND = [np.zeros(2)] * 2


@NEEDS_MODES
def test_actions_are_stored_in_the_space_dtype_not_the_first_steps() -> None:
    """Issue item 2: integer actions first must not truncate later float actions."""
    env = VectorBufferingWrapper(Scripted(BOX, FLOATS, RAND))
    env.reset()
    env.step(np.array([[0, 1], [1, 0]]))
    env.step(np.array([[0.5, -0.75], [0.25, 0.125]], np.float32))
    acts = env.pop_transitions().acts
    assert acts.dtype.is_floating_point
    assert acts.tolist() == [[0.0, 1.0], [0.5, -0.75], [1.0, 0.0], [0.25, 0.125]]


@NEEDS_MODES
def test_observations_that_do_not_fit_the_space_dtype_raise_naming_env_and_field() -> None:
    """Issue item 2: 300 into a uint8 space is refused, not wrapped to 44."""
    space = gym.spaces.Box(0, 255, (2,), np.uint8)
    obs = [np.zeros((2, 2), np.uint8), np.array([[1, 2], [300, 4]], np.int64)]
    env = VectorBufferingWrapper(Scripted(space, obs, RAND))
    env.reset()
    with pytest.raises(ValueError, match=r"obs: env 1 gave \[300, 4\].*uint8"):
        env.step(np.zeros((2, 2), np.float32))


@NEEDS_MODES
def test_float_observations_after_integer_reset_obs_are_kept() -> None:
    """Issue item 2: an int64 reset obs must not make later float obs integers."""
    obs = [np.array([[1, 2], [3, 4]], np.int64), np.array([[0.5, 1.5], [2.5, 3.5]])]
    env = VectorBufferingWrapper(Scripted(BOX, obs, RAND))
    env.reset()
    env.step(np.zeros((2, 2), np.float32))
    tr = env.pop_transitions()
    assert tr.obs.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert tr.next_obs.tolist() == [[0.5, 1.5], [2.5, 3.5]]


@NEEDS_MODES
def test_integer_rewards_first_do_not_truncate_later_float_rewards() -> None:
    """Issue item 2: rewards [1, 2] then [0.5, 2.5] are recorded as given."""
    rews = [np.array([1, 2]), np.array([0.5, 2.5])]
    env = VectorBufferingWrapper(Scripted(BOX, FLOATS, rews))
    env.reset()
    env.step(np.zeros((2, 2), np.float32))
    env.step(np.zeros((2, 2), np.float32))
    assert env.pop_transitions().rews.tolist() == [1.0, 0.5, 2.0, 2.5]


@NEEDS_MODES
@pytest.mark.parametrize("shape", [(2, 1), (3,)])
def test_rewards_of_the_wrong_shape_raise_naming_the_field(shape: tuple[int, ...]) -> None:
    """Issue item 9: (n, 1) rewards were stored as (n, 1); (n + 1,) gave a raw broadcast error."""
    env = VectorBufferingWrapper(Scripted(BOX, FLOATS, [np.zeros(shape)]))
    env.reset()
    with pytest.raises(ValueError, match=r"rewards: expected shape \(2,\)"):
        env.step(np.zeros((2, 2), np.float32))


def _cartpole() -> gym.Env:
    return gym.make("CartPole-v1")


def _cartpoles(n: int) -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv([_cartpole] * n)


@pytest.mark.parametrize("capacity", [0, -5, 2.5, True])
def test_capacity_that_is_not_a_positive_count_is_refused(capacity: object) -> None:
    """Issue item 13: 0 and -5 were silently clamped."""
    with pytest.raises(ValueError, match="capacity: expected a positive number of slots per env"):
        VectorBufferingWrapper(_cartpoles(1), capacity=capacity)  # type: ignore[arg-type]


def test_capacity_larger_than_memory_is_refused_before_allocating() -> None:
    """Issue item 13: 10**12 slots for one env tried to allocate terabytes."""
    env = VectorBufferingWrapper(_cartpoles(1), capacity=10**12)
    with pytest.raises(ValueError, match=r"capacity: 1000000000000 slots for each of 1 envs need about"):
        env.reset(seed=0)


def test_a_pop_while_another_thread_steps_raises_instead_of_losing_data() -> None:
    """Issue item 10: concurrent step and pop corrupted the cursors; now the second call raises."""
    import threading

    entered, release = threading.Event(), threading.Event()

    class Slow(gym.Wrapper):
        def step(self, action):
            entered.set()
            release.wait(5)
            return self.env.step(action)

    inner = gym.vector.SyncVectorEnv([lambda: Slow(gym.make("CartPole-v1"))])
    env = VectorBufferingWrapper(inner)
    env.reset(seed=0)
    worker = threading.Thread(target=env.step, args=(np.array([0]),))
    worker.start()
    assert entered.wait(5)
    try:
        with pytest.raises(RuntimeError, match=r"pop_transitions\(\) called while step\(\) is running"):
            env.pop_transitions()
    finally:
        release.set()
        worker.join()
    assert len(env.pop_transitions()) == 1  # the step itself was recorded


@pytest.mark.parametrize("copy_with", ["deepcopy", "pickle"])
def test_a_copied_wrapper_records_into_its_own_storage(copy_with: str) -> None:
    """Issue item 4: a copy's storage views were pickled as independent arrays.

    The copy's later writes went to arrays its trajectory pops never read, so its pops
    mixed stale and new rows and failed. Expected values are the env's own observations.
    """
    import copy
    import pickle

    env = VectorBufferingWrapper(_cartpoles(2))
    env.reset(seed=0)
    env.step(np.array([0, 1]))
    twin = copy.deepcopy(env) if copy_with == "deepcopy" else pickle.loads(pickle.dumps(env))
    seen = []
    for _ in range(30):
        obs, _, term, trunc, _ = twin.step(np.array([1, 1]))
        seen.append(obs[0])
        if term[0] or trunc[0]:
            break
    trajs, _ = twin.pop_trajectories()
    first = trajs[0]  # env 0's first episode: reset obs, the original's step, then the copy's
    n = len(first.obs) - 2
    assert n > 0
    assert np.array_equal(first.obs[2:-1].numpy(), np.stack(seen[: n - 1]))
    assert len(env.pop_transitions()) == 2  # the original keeps only its own step


class ShortEpisodes(gym.Wrapper):
    """CartPole that ends every third step (truncation), so final observations come often."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.t = 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        self.t += 1
        obs, rew, term, trunc, info = self.env.step(action)
        return obs, rew, term, trunc or self.t % 3 == 0, info


def _bad_final(value: object) -> object:
    return {"a": value} if value == "dict" else np.asarray(value, np.float32)


@pytest.mark.parametrize("bad", [[0.5], 0.5, "dict"])
def test_sb3_terminal_observations_that_do_not_fit_the_space_raise_naming_env(bad: object) -> None:
    """Issue item 8: a (1,) or scalar terminal_observation for Box(4,) was broadcast into 4 copies."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnvWrapper

    from torchbuf import BufferingWrapper

    class Corrupt(VecEnvWrapper):
        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            obs, rews, dones, infos = self.venv.step_wait()
            for info in infos:
                if "terminal_observation" in info:
                    info["terminal_observation"] = _bad_final(bad)
            return obs, rews, dones, infos

    env = BufferingWrapper(Corrupt(DummyVecEnv([ShortEpisodes, ShortEpisodes])))
    env.reset()
    env.step(np.array([0, 1]))
    env.step(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"terminal_observation'\] of env 0"):
        env.step(np.array([0, 1]))


@NEEDS_MODES
@pytest.mark.parametrize("bad", [[0.5], 0.5])
def test_same_step_final_obs_that_do_not_fit_the_space_raise_naming_env(bad: object) -> None:
    """Issue item 8, gymnasium SAME_STEP: info['final_obs'] is checked like obs."""

    class Corrupt(gym.vector.VectorWrapper):
        def step(self, actions):
            obs, rews, term, trunc, info = self.env.step(actions)
            if "final_obs" in info:
                ends = np.empty(self.num_envs, dtype=object)
                ends[:] = [np.asarray(bad, np.float32) for _ in range(self.num_envs)]
                info["final_obs"] = ends
            return obs, rews, term, trunc, info

    inner = gym.vector.SyncVectorEnv([ShortEpisodes] * 2, autoreset_mode=AutoresetMode.SAME_STEP)
    env = VectorBufferingWrapper(Corrupt(inner))
    env.reset(seed=0)
    env.step(np.array([0, 1]))
    env.step(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"final_obs of env 0"):
        env.step(np.array([0, 1]))


def test_sb3_rewards_of_the_wrong_shape_raise() -> None:
    """Issue item 9 on the SB3 path: (n, 1) rewards were stored as (n, 1)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnvWrapper

    from torchbuf import BufferingWrapper

    class Column(VecEnvWrapper):
        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            obs, rews, dones, infos = self.venv.step_wait()
            return obs, rews[:, None], dones, infos

    env = BufferingWrapper(Column(DummyVecEnv([ShortEpisodes, ShortEpisodes])))
    env.reset()
    with pytest.raises(ValueError, match=r"rewards: expected shape \(2,\)"):
        env.step(np.array([0, 1]))


class _ByteEnd(gym.Env):
    """A uint8 Box env whose second step ends the episode with ``final`` (int64 or float) as obs."""

    observation_space = gym.spaces.Box(0, 255, (2,), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, final: object) -> None:
        self.final, self.t = final, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.uint8), {}

    def step(self, action):
        self.t += 1
        obs = np.asarray(self.final) if self.t == 2 else np.ones(2, np.uint8)
        return obs, 0.0, self.t == 2, False, {}


@pytest.mark.parametrize(
    ("final", "match"),
    [
        (np.array([300, 4], np.int64), r"\[300"),
        (np.array([-1, 4], np.int64), r"\[-1"),
        (np.array([0.5, 4.0]), r"float64 does not fit"),
    ],
)
def test_sb3_terminal_observations_out_of_a_uint8_space_raise_naming_env(final: object, match: str) -> None:
    """Issue item 2 for SB3's terminal_observation (DummyVecEnv passes it raw in the info)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from torchbuf import BufferingWrapper

    env = BufferingWrapper(DummyVecEnv([lambda: _ByteEnd(np.ones(2, np.uint8)), lambda: _ByteEnd(final)]))
    env.reset()
    env.step(np.array([0, 1]))
    with pytest.raises(ValueError, match=rf"terminal_observation'\](: env| of env) 1.*{match}"):
        env.step(np.array([0, 1]))


@pytest.mark.parametrize(
    ("finals", "bad_env", "match"),
    [
        ([[1, 4], [2, 5], [300, 4]], 3, r"\[300"),  # one dtype: the batch's cast fails, the env is named
        ([[1, 4], [2, 5], [0.5, 4.0]], 3, r"float64 does not fit"),  # mixed dtypes: checked one by one
        ([[1, 4], [True, False], [2, 5]], 2, r"bool does not fit"),
    ],
)
def test_sb3_terminal_observations_checked_as_one_batch_still_name_the_env(finals, bad_env, match) -> None:
    """The ended envs' terminal observations are checked and cast as one batch; errors name the env."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from torchbuf import BufferingWrapper

    class Running(_ByteEnd):  # never ends: the ended envs' batch positions are not their env ids
        def step(self, action):
            return np.ones(2, np.uint8), 0.0, False, False, {}

    fns = [lambda: Running(None)] + [lambda f=f: _ByteEnd(np.asarray(f)) for f in finals]
    env = BufferingWrapper(DummyVecEnv(fns))
    env.reset()
    env.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=rf"terminal_observation'\](: env| of env) {bad_env}.*{match}"):
        env.step(np.zeros(4, dtype=np.int64))
