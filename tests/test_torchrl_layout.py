"""torchbuf <-> torchrl's flat TensorDict of steps (needs only tensordict; torchrl's own
replay buffer, sampler and losses are exercised in tests/sims/test_torchrl.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from tensordict import TensorDict

from tests.format_cases import episodes, samples
from tests.helpers import ACT_SPACES, OBS_SPACES
from tests.test_io import assert_batches_equal
from torchbuf import Trajectory, TrajectoryWithRew, VectorBufferingWrapper
from torchbuf.envs import TorchCartPole
from torchbuf.formats import TRAJ_KEY, from_torchrl, to_torchrl, transitions_from_torchrl

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FEW
@given(case=episodes(sorted(OBS_SPACES), sorted(ACT_SPACES), infos=False, mid_flags=True))
def test_trajectories_round_trip_exactly(case):
    """Every observation and action space, with and without rewards, flags at any step, fragments."""
    _, _, trajs = case
    td = to_torchrl(trajs)
    assert td.batch_size == (sum(len(t) for t in trajs),)
    back = from_torchrl(td)
    assert len(back) == len(trajs)
    for got, want in zip(back, trajs):
        assert_batches_equal(got, want)


def test_the_layout_is_torchrls():
    """Keys, shapes and values written out by hand for two short trajectories."""
    first = TrajectoryWithRew(
        obs=torch.tensor([[0.0], [1.0], [2.0]]),
        acts=torch.tensor([5, 6]),
        rews=torch.tensor([0.5, 1.5]),
        terminated=torch.tensor([False, False]),
        truncated=torch.tensor([False, True]),
        batch_size=[],
    )
    second = TrajectoryWithRew(
        obs=torch.tensor([[10.0], [11.0]]),
        acts=torch.tensor([7]),
        rews=torch.tensor([2.5]),
        terminated=torch.tensor([True]),
        truncated=torch.tensor([False]),
        batch_size=[],
    )
    td = to_torchrl([first, second], first_traj_id=3)
    assert set(td.keys(include_nested=True, leaves_only=True)) == {
        "observation",
        "action",
        ("next", "observation"),
        ("next", "reward"),
        ("next", "done"),
        ("next", "terminated"),
        ("next", "truncated"),
        ("collector", "traj_ids"),
    }
    assert td["observation"].tolist() == [[0.0], [1.0], [10.0]]
    assert td["next", "observation"].tolist() == [[1.0], [2.0], [11.0]]
    assert td["action"].tolist() == [5, 6, 7]
    assert td["next", "reward"].tolist() == [[0.5], [1.5], [2.5]]
    assert td["next", "done"].tolist() == [[False], [True], [True]]
    assert td["next", "terminated"].tolist() == [[False], [False], [True]]
    assert td["next", "truncated"].tolist() == [[False], [True], [False]]
    assert td["collector", "traj_ids"].tolist() == [3, 3, 4]
    assert TRAJ_KEY == ("collector", "traj_ids")


def _recorded(steps=40):
    envs = VectorBufferingWrapper(TorchCartPole(3, seed=0, max_episode_steps=9), keep_infos=False)
    obs, _ = envs.reset(seed=0)
    for _ in range(steps):
        obs, *_ = envs.step((obs[:, 2] < 0).long())
    return envs


def test_popped_transitions_convert_to_views_without_a_copy():
    batch = _recorded().pop_transitions()
    td = to_torchrl(batch)
    pairs = [
        ("observation", batch.obs),
        ("action", batch.acts),
        (("next", "observation"), batch.next_obs),
        (("next", "reward"), batch.rews),
        (("next", "done"), batch.dones),
        (("next", "terminated"), batch.terminated),
        (("next", "truncated"), batch.truncated),
    ]
    for key, tensor in pairs:
        assert td[key].data_ptr() == tensor.data_ptr(), key
    assert td["next", "reward"].shape == (len(batch.rews), 1)
    back = transitions_from_torchrl(td)
    assert back.obs.data_ptr() == batch.obs.data_ptr()
    assert_batches_equal(back, batch)


def test_popped_trajectories_with_truncations_and_fragments_come_back():
    envs = _recorded()
    trajs, _ = envs.pop_trajectories()
    assert any(t.truncated.any() for t in trajs) and any(not t.terminal for t in trajs)
    for got, want in zip(from_torchrl(to_torchrl(trajs)), trajs, strict=True):
        assert_batches_equal(got, want)


def test_without_trajectory_ids_runs_end_at_done():
    """As torchrl's SliceSampler falls back to ("next", "done"): whole episodes split the same."""
    trajs = [_traj(3, end="terminated", seed=0), _traj(2, end="truncated", seed=1), _traj(2, seed=2)]
    td = to_torchrl(trajs)
    del td["collector"]
    for got, want in zip(from_torchrl(td), trajs, strict=True):
        assert_batches_equal(got, want)


def test_a_nan_observation_is_recorded_not_a_broken_chain():
    traj = _traj(3, end="terminated")
    traj.obs[1, 0] = float("nan")
    (back,) = from_torchrl(to_torchrl([traj]))
    assert torch.equal(back.obs.isnan(), traj.obs.isnan())


# ------------------------------------------------------------------ refused, not mangled
def _traj(n, end="running", seed=0, infos=None, cls=TrajectoryWithRew):
    terminated = torch.zeros(n, dtype=torch.bool)
    truncated = torch.zeros(n, dtype=torch.bool)
    if n:
        terminated[-1], truncated[-1] = end == "terminated", end == "truncated"
    extra = {"rews": torch.arange(n, dtype=torch.float32)} if cls is TrajectoryWithRew else {}
    return cls(
        obs=samples(OBS_SPACES["box"], n + 1, seed),
        acts=torch.zeros(n, dtype=torch.long),
        terminated=terminated,
        truncated=truncated,
        terminal=end != "running",
        infos=infos,
        batch_size=[],
        **extra,
    )


@pytest.mark.parametrize(
    ("trajs", "error", "match"),
    [
        ([], ValueError, "at least one trajectory"),
        ([_traj(2), _traj(0)], ValueError, "trajectory 1 has no steps"),
        ([_traj(2), _traj(2, infos=np.array([{}, {}]))], ValueError, "trajectory 1 has infos.*drop_infos"),
        (
            [TrajectoryWithRew(**{**_traj(2, end="terminated").to_dict(), "terminal": False}, batch_size=[])],
            ValueError,
            "trajectory 0: terminal=False",
        ),
        (TensorDict({}, []), TypeError, "Transitions batch or a sequence of Trajectory"),
    ],
)
def test_what_the_layout_cannot_carry_is_refused(trajs, error, match):
    with pytest.raises(error, match=match):
        to_torchrl(trajs)


def test_infos_are_left_out_only_when_asked():
    traj = _traj(2, end="terminated", infos=np.array([{"a": 1}, {}], dtype=object))
    (back,) = from_torchrl(to_torchrl([traj], drop_infos=True))
    assert back.infos is None and torch.equal(back.obs, traj.obs)
    batch = _recorded().pop_transitions()
    assert batch.infos is None  # recorded with keep_infos=False
    batch.infos = np.array([{}] * len(batch.rews), dtype=object)
    with pytest.raises(ValueError, match="the transitions has infos"):
        to_torchrl(batch)


def test_trajectories_without_rewards_have_no_reward_key():
    traj = _traj(2, end="terminated", cls=Trajectory)
    td = to_torchrl([traj])
    assert ("next", "reward") not in td.keys(include_nested=True)
    (back,) = from_torchrl(td)
    assert type(back) is Trajectory
    assert_batches_equal(back, traj)


def test_bad_layouts_are_named():
    td = to_torchrl([_traj(3, end="terminated")])
    broken = td.clone()
    broken["next", "observation"][0] += 1
    with pytest.raises(ValueError, match=r"step 0: \('next', 'observation'\) is not step 1's observation"):
        from_torchrl(broken)
    flags = td.clone()
    flags["next", "done"][1] = True
    with pytest.raises(ValueError, match=r"step 1: \('next', 'done'\) is not"):
        from_torchrl(flags)
    with pytest.raises(ValueError, match=r"td.reshape\(-1\)"):
        from_torchrl(td.reshape(1, 3))
    with pytest.raises(KeyError, match="'action'"):
        from_torchrl(td.exclude("action"))


def test_missing_flags_follow_from_done():
    """A collector's TensorDict may hold done and terminated only."""
    trajs = [_traj(2, end="terminated"), _traj(3, end="truncated")]
    td = to_torchrl(trajs)
    del td["next", "truncated"]
    for got, want in zip(from_torchrl(td), trajs, strict=True):
        assert_batches_equal(got, want)
