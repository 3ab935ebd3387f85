"""torchbuf -> Minari -> torchbuf, read back with Minari's own ``load_dataset`` / ``iterate_episodes``."""

from __future__ import annotations

import copy
import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from stable_baselines3.common.vec_env import DummyVecEnv

pytest.importorskip(
    "minari", reason="minari is not installed (the main environment has it: torchbuf[minari])"
)
import minari  # noqa: E402

from tests.format_cases import episodes, samples  # noqa: E402
from tests.helpers import ACT_SPACES, OBS_SPACES, ScheduleEnv  # noqa: E402
from tests.test_io import assert_batches_equal  # noqa: E402
from torchbuf import BufferingWrapper, Trajectory, TrajectoryWithRew  # noqa: E402
from torchbuf.formats import load_minari, save_minari  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:minari")  # its metadata reminders
FEW = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IDS = itertools.count()
IMAGE32 = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)


@pytest.fixture(scope="module", autouse=True)
def datasets_path(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
        yield


def round_trip(trajs, obs_key, act_key, **kwargs):
    dataset_id = f"torchbuf/test-{next(IDS)}-v0"
    save_minari(
        dataset_id, trajs, observation_space=OBS_SPACES[obs_key], action_space=ACT_SPACES[act_key], **kwargs
    )
    episodes = list(minari.load_dataset(dataset_id).iterate_episodes())  # Minari reads it itself
    assert [len(e) for e in episodes] == [len(t) for t in trajs]
    return load_minari(dataset_id)


@FEW
@given(case=episodes(sorted(OBS_SPACES), sorted(ACT_SPACES), rewards=(True,), infos=False, mid_flags=True))
def test_every_space_round_trips_exactly(case):
    """Box, uint8 image, discrete, multidiscrete, dict and nested dict observations; dict actions too."""
    obs_key, act_key, trajs = case
    loaded = round_trip(trajs, obs_key, act_key)
    assert len(loaded) == len(trajs)
    for got, want in zip(loaded, trajs):
        assert_batches_equal(got, want)


def test_terminated_and_truncated_are_minaris_terminations_and_truncations():
    """With images large enough for Minari to JPEG-encode them by default (32x32 and up)."""
    flags = [
        ([False, True], [False, False]),
        ([False, False], [False, True]),
        ([True, False], [False, False]),
    ]
    trajs = [
        TrajectoryWithRew(
            obs=samples(IMAGE32, 3, i),
            acts=torch.tensor([0, 1]),
            rews=torch.tensor([1.0, 2.0]),
            terminated=torch.tensor(term),
            truncated=torch.tensor(trunc),
            terminal=term[-1] or trunc[-1],
            batch_size=[],
        )
        for i, (term, trunc) in enumerate(flags)
    ]
    dataset_id = f"torchbuf/test-{next(IDS)}-v0"
    save_minari(dataset_id, trajs, observation_space=IMAGE32, action_space=ACT_SPACES["discrete"])
    theirs = list(minari.load_dataset(dataset_id).iterate_episodes())
    assert [e.terminations.tolist() for e in theirs] == [f[0] for f in flags]
    assert [e.truncations.tolist() for e in theirs] == [f[1] for f in flags]
    assert np.array_equal(theirs[1].observations, trajs[1].obs.numpy())  # raw uint8, not JPEG
    loaded = load_minari(dataset_id)
    assert [t.terminal for t in loaded] == [True, True, False]
    for got, want in zip(loaded, trajs):
        assert_batches_equal(got, want)


def test_popped_trajectories_go_to_minari_and_back():
    schedules = [([2, 3], [False, True]), ([4], [True])]
    venv = BufferingWrapper(
        DummyVecEnv(
            [
                lambda lens=lens, trunc=trunc, i=i: ScheduleEnv(
                    copy.deepcopy(OBS_SPACES["dict"]), ACT_SPACES["discrete"], lens, trunc, i
                )
                for i, (lens, trunc) in enumerate(schedules)
            ]
        )
    )
    venv.reset()
    for _ in range(8):
        venv.step(np.zeros(2, dtype=np.int64))
    trajs, _ = venv.pop_finished_trajectories()
    loaded = round_trip(trajs, "dict", "discrete", drop_infos=True)
    assert len(loaded) == len(trajs) >= 3
    for got, want in zip(loaded, trajs):
        assert got.infos is None
        assert_batches_equal(got, TrajectoryWithRew(**_fields(want), infos=None))


def _fields(traj):
    names = ("obs", "acts", "rews", "terminated", "truncated", "terminal")
    return {**{k: getattr(traj, k) for k in names}, "batch_size": []}


def test_minaris_infos_load_as_one_dict_per_step_without_the_reset_row():
    """Infos as Minari's DataCollector records them: per-key arrays, the reset's row first.

    (The DataCollector itself needs jax, minari[create]; the buffer it would build is made here.)
    """
    from minari.data_collector import EpisodeBuffer

    obs = np.arange(8, dtype=np.float32).reshape(4, 2)
    infos = {"t": np.arange(4), "extra": {"ok": np.array([True, False, True, True])}}
    buffer = EpisodeBuffer(
        observations=obs,
        actions=np.zeros(3, dtype=np.int64),
        rewards=np.ones(3),
        terminations=np.array([False, False, False]),
        truncations=np.array([False, False, True]),
        infos=infos,
    )
    dataset = minari.create_dataset_from_buffers(
        f"torchbuf/collected-{next(IDS)}-v0",
        [buffer],
        observation_space=gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        action_space=gym.spaces.Discrete(2),
    )
    (traj,) = load_minari(dataset)
    assert [info["t"] for info in traj.infos] == [1, 2, 3]
    assert [info["extra"]["ok"] for info in traj.infos] == [False, True, True]
    assert torch.equal(traj.obs, torch.from_numpy(obs)) and traj.rews.dtype == torch.float64
    assert traj.truncated.tolist() == [False, False, True] and traj.terminal


# ------------------------------------------------------------------ refused, not mangled
def _traj(n=2, obs=None, infos=None, terminal=True, cls=TrajectoryWithRew):
    extra = {"rews": torch.zeros(n)} if cls is TrajectoryWithRew else {}
    return cls(
        obs=samples(OBS_SPACES["box"], n + 1, 0) if obs is None else obs,
        acts=torch.zeros(n, dtype=torch.long),
        terminated=torch.arange(n) == n - 1,
        truncated=torch.zeros(n, dtype=torch.bool),
        terminal=terminal,
        infos=infos,
        batch_size=[],
        **extra,
    )


@pytest.mark.parametrize(
    ("traj", "error", "match"),
    [
        (_traj(infos=np.array([{}, {}])), ValueError, "trajectory 1 has infos.*drop_infos=True"),
        (_traj(cls=Trajectory), TypeError, "trajectory 1 has no rewards"),
        (_traj(terminal=False), ValueError, "trajectory 1: terminal=False"),
        (_traj(n=0, terminal=False), ValueError, "trajectory 1 has no steps"),
        (
            _traj(obs=samples(OBS_SPACES["box"], 3, 0).double()),
            ValueError,
            r"obs: float64 \(3,\), the observation space holds float32 \(3,\)",
        ),
        (
            _traj(obs=samples(OBS_SPACES["dict"], 3, 0)),
            ValueError,
            r"obs: a dict of \['img', 'pos'\], the observation space is Box",
        ),
    ],
)
def test_what_minari_cannot_carry_is_refused_naming_the_trajectory(traj, error, match):
    dataset_id = f"torchbuf/test-{next(IDS)}-v0"
    with pytest.raises(error, match=match):
        save_minari(
            dataset_id,
            [_traj(), traj],
            observation_space=OBS_SPACES["box"],
            action_space=ACT_SPACES["discrete"],
        )
    assert dataset_id not in minari.list_local_datasets()


def test_spaces_come_from_the_env_or_are_required():
    trajs = [_traj(obs=torch.zeros(3, 4))]
    with pytest.raises(ValueError, match="observation_space and action_space"):
        save_minari(f"torchbuf/test-{next(IDS)}-v0", trajs)
    dataset = save_minari(f"torchbuf/test-{next(IDS)}-v0", trajs, env="CartPole-v1")
    assert dataset.spec.observation_space == gym.make("CartPole-v1").observation_space
