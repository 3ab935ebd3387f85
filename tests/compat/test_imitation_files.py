"""torchbuf -> imitation's files -> torchbuf, read by imitation 1.0.1's own ``serialize.load``."""

from __future__ import annotations

import tempfile
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("imitation", reason="imitation is not installed (the compat environment has 1.0.1)")
from imitation.data import serialize  # noqa: E402
from imitation.data import types as im  # noqa: E402

from tests.format_cases import episodes, samples  # noqa: E402
from tests.helpers import ACT_SPACES, OBS_SPACES  # noqa: E402
from tests.test_io import assert_batches_equal  # noqa: E402
from torchbuf import Trajectory, TrajectoryWithRew  # noqa: E402
from torchbuf.formats import IMITATION_FORMATS, load_imitation, save_imitation  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:keys will default:DeprecationWarning"
)  # imitation's jsonpickle
FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ARRAY_OBS = ["box", "image", "discrete", "multidiscrete"]
ARRAY_ACTS = ["discrete", "multidiscrete", "box"]


def _target(tmp, fmt):
    return f"{tmp}/demos" + {"datasets": "", "npz": ".npz", "pickle": ".pkl"}[fmt]


def expected(traj, fmt):
    """What the format gives back: infos as imitation stores them, a truncated end marked in them."""
    infos = traj.infos
    if bool(traj.truncated[-1]) and not (infos is not None and infos[-1].get("TimeLimit.truncated")):
        infos = np.array([{}] * len(traj) if infos is None else list(infos), dtype=object)
        infos[-1] = {**infos[-1], "TimeLimit.truncated": True}
    if infos is None and fmt != "pickle":  # datasets and npz store a dict per step
        infos = np.array([{} for _ in range(len(traj))], dtype=object)
    names = ["obs", "acts", "terminated", "truncated"] + (
        ["rews"] if isinstance(traj, TrajectoryWithRew) else []
    )
    return type(traj)(
        **{k: getattr(traj, k) for k in names}, infos=infos, terminal=traj.terminal, batch_size=[]
    )


def round_trip(trajs, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        save_imitation(_target(tmp, fmt), trajs, format=fmt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            by_imitation = serialize.load(_target(tmp, fmt))  # imitation reads it itself
        loaded = load_imitation(_target(tmp, fmt))
        assert len(by_imitation) == len(loaded)
        return loaded, list(by_imitation)


def check_round_trip(trajs, fmt):
    loaded, by_imitation = round_trip(trajs, fmt)
    assert len(loaded) == len(trajs)
    for got, want, theirs in zip(loaded, trajs, by_imitation):
        assert_batches_equal(got, expected(want, fmt))
        assert isinstance(theirs, im.TrajectoryWithRew) == isinstance(want, TrajectoryWithRew)
        assert theirs.terminal == want.terminal


@FEW
@given(case=episodes(ARRAY_OBS, ARRAY_ACTS), fmt=st.sampled_from(IMITATION_FORMATS))
def test_array_observations_round_trip_exactly_in_every_format(case, fmt):
    _, _, trajs = case
    check_round_trip(trajs, fmt)


@FEW
@given(case=episodes(["dict", "nested"], ARRAY_ACTS))
def test_dict_observations_round_trip_exactly_through_pickle(case):
    _, _, trajs = case
    check_round_trip(trajs, "pickle")


def test_dict_observations_are_imitations_dictobs_with_joined_keys(tmp_path):
    traj = _traj(obs=samples(OBS_SPACES["nested"], 4, 0))
    save_imitation(tmp_path / "t.pkl", [traj], format="pickle")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = serialize.load(tmp_path / "t.pkl")[0]
    assert isinstance(theirs.obs, im.DictObs) and sorted(theirs.obs.keys()) == ["a", "b.c"]
    assert_batches_equal(load_imitation(tmp_path / "t.pkl")[0], traj)


def test_datasets_keeps_dtypes_that_imitations_loader_widens(tmp_path):
    traj = TrajectoryWithRew(
        obs=samples(OBS_SPACES["image"], 4, 0),
        acts=torch.tensor([1, 2, 3]),
        rews=torch.ones(3, dtype=torch.float32),
        terminated=torch.tensor([False, False, True]),
        truncated=torch.zeros(3, dtype=torch.bool),
        terminal=True,
        batch_size=[],
    )
    save_imitation(tmp_path / "d", [traj])
    assert serialize.load(tmp_path / "d")[0].obs.dtype == np.int64  # imitation's own loader widens
    loaded = load_imitation(tmp_path / "d")[0]
    assert loaded.obs.dtype == torch.uint8 and loaded.rews.dtype == torch.float32
    assert_batches_equal(loaded, expected(traj, "datasets"))


def test_a_dataset_written_by_imitation_loads_as_imitation_reads_it(tmp_path):
    rng = np.random.default_rng(0)
    theirs = [
        im.TrajectoryWithRew(
            obs=rng.standard_normal((n + 1, 3)).astype(np.float32),
            acts=rng.integers(0, 5, (n, 2)),
            infos=np.array([{"a": np.float32(i), "TimeLimit.truncated": i == n - 1} for i in range(n)]),
            terminal=bool(n % 2),
            rews=rng.standard_normal(n),
        )
        for n in (3, 1, 4)
    ]
    serialize.save(tmp_path / "d", theirs)
    ours = load_imitation(tmp_path / "d")
    for mine, orig, read in zip(ours, theirs, serialize.load(tmp_path / "d")):
        assert mine.obs.dtype == torch.float32 and read.obs.dtype == np.float64  # imitation widens
        np.testing.assert_array_equal(mine.obs.numpy(), read.obs)
        assert mine.to_imitation() == orig  # imitation's own equality (values, infos, terminal)
        assert bool(mine.truncated[-1]) == (orig.terminal and orig.infos[-1]["TimeLimit.truncated"])


def test_legacy_files_are_read_by_imitation_as_its_own(tmp_path):
    """The npz layout is the one imitation's loader splits; the pickle one a list of its trajectories."""
    trajs = [
        TrajectoryWithRew(
            obs=torch.arange(n + 1, dtype=torch.float32)[:, None],
            acts=torch.arange(n),
            rews=torch.ones(n),
            terminated=torch.arange(n) == n - 1,
            truncated=torch.zeros(n, dtype=torch.bool),
            terminal=True,
            batch_size=[],
        )
        for n in (2, 1, 3)
    ]
    for fmt in ("npz", "pickle"):
        save_imitation(tmp_path / f"t.{fmt}", trajs, format=fmt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            theirs = serialize.load(tmp_path / f"t.{fmt}")
        assert [len(t) for t in theirs] == [2, 1, 3]
        assert [t.obs[:, 0].tolist() for t in theirs] == [[0, 1, 2], [0, 1], [0, 1, 2, 3]]
        assert theirs[0] == trajs[0].to_imitation()  # imitation's own equality
    npz = np.load(tmp_path / "t.npz", allow_pickle=True)
    assert sorted(npz.keys()) == ["acts", "indices", "infos", "obs", "rews", "terminal"]
    assert npz["indices"].tolist() == [2, 3]


def test_zero_trajectories(tmp_path):
    for fmt in ("npz", "pickle"):
        save_imitation(tmp_path / f"t.{fmt}", [], format=fmt)
        assert load_imitation(tmp_path / f"t.{fmt}") == []
    with pytest.raises(ValueError, match="zero trajectories"):
        save_imitation(tmp_path / "d", [])


# ------------------------------------------------------------------ refused, not mangled
def _traj(n=3, obs=None, acts=None, terminated=None, truncated=None, terminal=True, infos=None):
    terminated = torch.arange(n) == n - 1 if terminated is None else torch.tensor(terminated)
    truncated = torch.zeros(n, dtype=torch.bool) if truncated is None else torch.tensor(truncated)
    return TrajectoryWithRew(
        obs=samples(OBS_SPACES["box"], n + 1, 0) if obs is None else obs,
        acts=torch.zeros(n, dtype=torch.long) if acts is None else acts,
        rews=torch.zeros(n),
        terminated=terminated,
        truncated=truncated,
        terminal=terminal,
        infos=infos,
        batch_size=[],
    )


@pytest.mark.parametrize(
    ("fmt", "traj", "match"),
    [
        ("datasets", _traj(obs=samples(OBS_SPACES["dict"], 4, 0)), "trajectory 1: dict observations"),
        ("npz", _traj(obs=samples(OBS_SPACES["nested"], 4, 0)), "trajectory 1: dict observations"),
        ("pickle", _traj(acts=samples(ACT_SPACES["dict"], 3, 0)), "trajectory 1: dict actions"),
        ("pickle", _traj(terminated=[True, False, False], terminal=False), "step 0 is terminated"),
        ("pickle", _traj(terminated=[False, False, True], truncated=[False, False, True]), "both"),
        ("pickle", _traj(terminated=[False, False, False]), "terminal=True, but its last step is neither"),
        ("npz", _traj(terminal=False), "terminal=False, but its last step is done"),
        ("datasets", _traj(n=0, terminal=False), "no steps"),
        ("pickle", _traj(infos=np.array([{}, {}, {"TimeLimit.truncated": True}])), "terminated but its info"),
    ],
)
def test_what_imitation_cannot_carry_is_refused_naming_the_trajectory(tmp_path, fmt, traj, match):
    with pytest.raises(ValueError, match=match):
        save_imitation(tmp_path / "x", [_traj(), traj], format=fmt)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary


def test_dict_keys_with_the_separator_are_refused(tmp_path):
    from tensordict import TensorDict

    obs = TensorDict({"a.b": torch.zeros(4, 2)}, batch_size=[4])
    with pytest.raises(ValueError, match="'a.b' contains '.'"):
        save_imitation(tmp_path / "x", [_traj(obs=obs)], format="pickle")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        save_imitation(tmp_path / "x", [_traj()], format="hdf5")
    plain = Trajectory(
        **{k: getattr(_traj(), k) for k in ("obs", "acts", "terminated", "truncated")}, batch_size=[]
    )
    with pytest.raises(TypeError, match="one class"):
        save_imitation(tmp_path / "x", [_traj(), plain])
    with pytest.raises(FileNotFoundError, match="no imitation trajectories"):
        load_imitation(tmp_path / "missing")
