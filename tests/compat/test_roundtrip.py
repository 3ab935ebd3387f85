"""torchbuf <-> imitation conversion: exact round trips, dtypes, dict keys, done flags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict, TensorDictBase

pytest.importorskip("imitation", reason="imitation is not installed (the compat environment has 1.0.1)")
from imitation.data import types as im  # noqa: E402

from torchbuf import Trajectory, TrajectoryWithRew, Transitions, TransitionsWithRew  # noqa: E402
from torchbuf.compat.imitation import from_imitation  # noqa: E402

GEN = torch.Generator().manual_seed(0)


def _box(n):
    return torch.randn(n, 3, generator=GEN)


def _image(n):
    return torch.randint(0, 256, (n, 6, 6, 3), generator=GEN, dtype=torch.uint8)


def _dict(n):
    return TensorDict({"pos": _box(n), "img": _image(n)}, batch_size=[n])


def _nested(n):
    inner = TensorDict({"c": torch.randn(n, 2, generator=GEN, dtype=torch.float64)}, batch_size=[n])
    return TensorDict({"a": torch.randint(0, 3, (n,), generator=GEN), "b": inner}, batch_size=[n])


OBS = {"box": _box, "image": _image, "dict": _dict, "nested": _nested}
# What imitation's DictObs must hold for each dict kind: flat keys, nested ones joined by ".".
FLAT_KEYS = {"dict": {"pos", "img"}, "nested": {"a", "b.c"}}


def _infos(n, truncated_last=False):
    infos = [{"t": t, "arr": np.arange(t)} for t in range(n)]
    if truncated_last:
        infos[-1]["TimeLimit.truncated"] = True
    out = np.empty(n, dtype=object)
    out[:] = infos
    return out


def _flags(n, terminal, truncated):
    done = torch.zeros(n, dtype=torch.bool)
    done[-1] = terminal
    return (
        (done, torch.zeros(n, dtype=torch.bool))
        if not truncated
        else (torch.zeros(n, dtype=torch.bool), done)
    )


def _trajectory(obs_kind, n=5, *, rews=True, terminal=True, truncated=False, infos=True):
    terminated, trunc = _flags(n, terminal, truncated)
    fields = dict(
        obs=OBS[obs_kind](n + 1),
        acts=torch.randint(0, 4, (n,), generator=GEN),
        terminated=terminated,
        truncated=trunc,
        infos=_infos(n, truncated) if infos else None,
        terminal=terminal,
        batch_size=[],
    )
    if rews:
        return TrajectoryWithRew(rews=torch.randn(n, generator=GEN), **fields)
    return Trajectory(**fields)


def _transitions(obs_kind, n=7, *, rews=True, infos=True):
    terminated = torch.tensor([False, True, False, False, False, False, False])[:n]
    truncated = torch.tensor([False, False, False, True, False, False, True])[:n]
    infos_arr = None
    if infos:
        infos_arr = _infos(n)
        for i in np.flatnonzero(truncated.numpy()):
            infos_arr[i]["TimeLimit.truncated"] = True
    fields = dict(
        obs=OBS[obs_kind](n),
        acts=torch.randn(n, 2, generator=GEN),
        next_obs=OBS[obs_kind](n),
        dones=terminated | truncated,
        terminated=terminated,
        truncated=truncated,
        infos=infos_arr,
        batch_size=[n],
    )
    if rews:
        return TransitionsWithRew(rews=torch.randn(n, generator=GEN, dtype=torch.float64), **fields)
    return Transitions(**fields)


# ------------------------------------------------------------------ comparisons
def assert_obs_equal(a, b):
    assert type(a) is type(b) or (isinstance(a, TensorDictBase) and isinstance(b, TensorDictBase))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
        return
    assert set(a.keys()) == set(b.keys())
    assert a.batch_size == b.batch_size
    for key in a.keys():  # noqa: SIM118 (iterating a TensorDict yields rows)
        assert_obs_equal(a[key], b[key])


def assert_infos_equal(a, b):
    if a is None or b is None:
        assert a is None and b is None
        return
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def assert_batch_equal(a, b):
    assert type(a) is type(b)
    names = ["obs", "acts", "terminated", "truncated"]
    names += ["next_obs", "dones"] if isinstance(a, Transitions) else []
    names += ["rews"] if isinstance(a, (TrajectoryWithRew, TransitionsWithRew)) else []
    for name in names:
        assert_obs_equal(getattr(a, name), getattr(b, name))
    if isinstance(a, Trajectory):
        assert a.terminal is b.terminal
    assert_infos_equal(a.infos, b.infos)


def assert_imitation_obs_matches(im_obs, obs, obs_kind):
    """imitation's side checked against the torch source, not against a round trip."""
    if obs_kind not in FLAT_KEYS:
        assert isinstance(im_obs, np.ndarray)
        assert im_obs.dtype == obs.numpy().dtype
        np.testing.assert_array_equal(im_obs, obs.numpy())
        return
    assert isinstance(im_obs, im.DictObs)
    assert set(im_obs.keys()) == FLAT_KEYS[obs_kind]
    for key in im_obs.keys():  # noqa: SIM118 (DictObs iterates rows, not keys)
        source = obs[tuple(key.split("."))].numpy()
        assert im_obs.get(key).dtype == source.dtype
        np.testing.assert_array_equal(im_obs.get(key), source)


# ------------------------------------------------------------------ trajectories
@pytest.mark.parametrize("obs_kind", list(OBS))
@pytest.mark.parametrize("rews", [True, False])
def test_trajectory_round_trip_is_exact(obs_kind, rews):
    traj = _trajectory(obs_kind, rews=rews)
    out = traj.to_imitation()
    assert type(out) is (im.TrajectoryWithRew if rews else im.Trajectory)
    assert_imitation_obs_matches(out.obs, traj.obs, obs_kind)
    assert out.acts.dtype == np.int64 and out.terminal is True
    if rews:
        assert out.rews.dtype == np.float32
    back = type(traj).from_imitation(out)
    assert_batch_equal(back, traj)


@pytest.mark.parametrize("obs_kind", list(OBS))
def test_trajectory_truncation_survives_through_infos(obs_kind):
    traj = _trajectory(obs_kind, truncated=True)
    assert traj.truncated[-1] and not traj.terminated.any()
    back = TrajectoryWithRew.from_imitation(traj.to_imitation())
    assert_batch_equal(back, traj)


def test_trajectory_truncation_without_info_comes_back_terminated():
    # imitation has no truncated flag: without info["TimeLimit.truncated"] the end is a termination.
    traj = _trajectory("box", truncated=True, infos=False)
    back = TrajectoryWithRew.from_imitation(traj.to_imitation())
    assert back.terminated.tolist() == [False, False, False, False, True]
    assert not back.truncated.any()


def test_fragment_round_trip_keeps_terminal_false():
    traj = _trajectory("dict", terminal=False)
    out = traj.to_imitation()
    assert out.terminal is False
    back = TrajectoryWithRew.from_imitation(out)
    assert_batch_equal(back, traj)
    assert not back.terminated.any() and not back.truncated.any()


def test_infos_none_stays_none_for_trajectories():
    traj = _trajectory("image", infos=False)
    assert traj.to_imitation().infos is None
    assert TrajectoryWithRew.from_imitation(traj.to_imitation()).infos is None


def test_list_of_trajectories():
    trajs = [_trajectory("box", n=n) for n in (1, 3, 2)]
    back = from_imitation([t.to_imitation() for t in trajs])
    assert isinstance(back, list) and len(back) == 3
    for b, t in zip(back, trajs, strict=True):
        assert_batch_equal(b, t)


# ------------------------------------------------------------------ transitions
@pytest.mark.parametrize("obs_kind", list(OBS))
@pytest.mark.parametrize("rews", [True, False])
def test_transitions_round_trip_is_exact(obs_kind, rews):
    trans = _transitions(obs_kind, rews=rews)
    out = trans.to_imitation()
    assert type(out) is (im.TransitionsWithRew if rews else im.Transitions)
    assert_imitation_obs_matches(out.obs, trans.obs, obs_kind)
    assert_imitation_obs_matches(out.next_obs, trans.next_obs, obs_kind)
    assert out.dones.tolist() == [False, True, False, True, False, False, True]
    assert out.acts.dtype == np.float32
    if rews:
        assert out.rews.dtype == np.float64
    back = type(trans).from_imitation(out)
    assert_batch_equal(back, trans)


def test_transitions_without_infos_get_empty_dicts():
    trans = _transitions("box", infos=False)
    out = trans.to_imitation()
    assert out.infos.dtype == object and [dict(i) for i in out.infos] == [{}] * 7
    back = TransitionsWithRew.from_imitation(out)
    # Without the truncation info every done is a termination.
    assert back.terminated.tolist() == out.dones.tolist()
    assert not back.truncated.any()


# ------------------------------------------------------------------ imitation first
@pytest.mark.filterwarnings("error")  # imitation's arrays are read-only: no "not writable" warning
def test_imitation_data_round_trips_through_torchbuf():
    rng = np.random.default_rng(0)
    traj = im.TrajectoryWithRew(
        obs=im.DictObs({"img": rng.integers(0, 256, (4, 3, 3), dtype=np.uint8), "x": rng.random((4, 2))}),
        acts=rng.integers(0, 5, (3, 2)).astype(np.int32),
        infos=None,
        terminal=True,
        rews=rng.random(3).astype(np.float16),
    )
    trans = im.TransitionsWithRew(
        obs=rng.random((4, 2)).astype(np.float32),
        acts=np.array([0, 1, 2, 3], dtype=np.uint8),
        infos=np.array([{}, {}, {"TimeLimit.truncated": True}, {}]),
        next_obs=rng.random((4, 2)).astype(np.float32),
        dones=np.array([False, True, True, False]),
        rews=rng.random(4),
    )
    tb_traj = TrajectoryWithRew.from_imitation(traj)
    assert tb_traj.acts.dtype == torch.int32 and tb_traj.rews.dtype == torch.float16
    assert tb_traj.obs["img"].dtype == torch.uint8 and tb_traj.obs["x"].dtype == torch.float64
    assert tb_traj.to_imitation() == traj
    tb_trans = TransitionsWithRew.from_imitation(trans)
    assert tb_trans.acts.dtype == torch.uint8
    assert tb_trans.terminated.tolist() == [False, True, False, False]
    assert tb_trans.truncated.tolist() == [False, False, True, False]
    again = tb_trans.to_imitation()
    for name in ("obs", "acts", "next_obs", "dones", "rews"):
        assert getattr(again, name).dtype == getattr(trans, name).dtype
        np.testing.assert_array_equal(getattr(again, name), getattr(trans, name))
    assert list(again.infos) == list(trans.infos)


def test_from_imitation_copies():
    obs = np.zeros((3, 2), dtype=np.float32)
    traj = im.TrajectoryWithRew(obs=obs, acts=np.zeros(2), infos=None, terminal=False, rews=np.zeros(2))
    tb = TrajectoryWithRew.from_imitation(traj)
    obs[0, 0] = 1.0
    assert tb.obs[0, 0] == 0.0


def test_separator_none_keeps_imitation_keys_flat():
    traj = _trajectory("nested")
    back = TrajectoryWithRew.from_imitation(traj.to_imitation(), separator=None)
    assert set(back.obs.keys()) == {"a", "b.c"}
    assert torch.equal(back.obs["b.c"], traj.obs["b", "c"])


# ------------------------------------------------------------------ errors
def test_wrong_class_is_a_type_error():
    with pytest.raises(TypeError, match="not a TransitionsWithRew"):
        TransitionsWithRew.from_imitation(_trajectory("box").to_imitation())
    with pytest.raises(TypeError, match="not a TrajectoryWithRew"):
        TrajectoryWithRew.from_imitation(_trajectory("box", rews=False).to_imitation())
    with pytest.raises(TypeError, match="from_imitation expects"):
        from_imitation({"obs": np.zeros(3)})
