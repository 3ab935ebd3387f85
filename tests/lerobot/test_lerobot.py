"""torchbuf -> LeRobot v3.0 datasets, read back by lerobot's own ``LeRobotDataset`` (offline).

The writer needs pyarrow, pandas and Pillow (``torchbuf[lerobot]``); the reader tests
need lerobot itself, which pins torch<2.11 and so lives in its own venv, installed with
--no-deps beside the CPU torch: they skip where lerobot is not importable.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from tensordict import TensorDict

for _module in ("pyarrow", "pandas", "PIL"):
    pytest.importorskip(_module, reason=f"{_module} is not installed (pip install 'torchbuf[lerobot]')")

from tests.format_cases import episodes, samples  # noqa: E402
from tests.helpers import ACT_SPACES, OBS_SPACES  # noqa: E402
from torchbuf import Trajectory, TrajectoryWithRew, VectorBufferingWrapper  # noqa: E402
from torchbuf.envs import TorchCartPole  # noqa: E402
from torchbuf.formats import load_lerobot, save_lerobot  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the reader must never reach for the hub
FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _lerobot():
    return pytest.importorskip(
        "lerobot.datasets.lerobot_dataset",
        reason="lerobot is not installed (it pins torch<2.11: its own venv, with --no-deps)",
    )


# ------------------------------------------------------------------ what each frame must hold
def _leaves(value, prefix):
    """``{feature name: tensor}`` of a tensor or (nested) TensorDict, as LeRobot names them."""
    if not isinstance(value, TensorDict):
        return {prefix: value}
    out = {}
    for key in value.keys(include_nested=True, leaves_only=True):
        parts = key if isinstance(key, tuple) else (key,)
        out[".".join((prefix, *parts))] = value.get(key)
    return out


def _obs_name(obs):
    image = obs.dtype == torch.uint8 and obs.dim() == 4 and obs.shape[-1] == 3
    return "observation.image" if image else "observation.state"


def expected_frames(trajs, tasks, fps):
    """The frames a LeRobot dataset of ``trajs`` holds, built step by step from the trajectories."""
    frames = []
    for e, (traj, task) in enumerate(zip(trajs, tasks)):
        obs = traj.obs if isinstance(traj.obs, TensorDict) else None
        for t in range(len(traj)):
            frame = _leaves(obs[t], "observation") if obs is not None else {_obs_name(traj.obs): traj.obs[t]}
            frame.update(
                _leaves(traj.acts[t], "action")
                if isinstance(traj.acts, TensorDict)
                else {"action": traj.acts[t]}
            )
            if isinstance(traj, TrajectoryWithRew):
                frame["next.reward"] = traj.rews[t]
            frame["next.done"] = traj.terminated[t] | traj.truncated[t]
            frame["next.truncated"] = traj.truncated[t]
            frame.update(
                frame_index=torch.tensor(t),
                episode_index=torch.tensor(e),
                index=torch.tensor(len(frames)),
                timestamp=torch.tensor(t / fps, dtype=torch.float32),
                task_index=torch.tensor(list(dict.fromkeys(tasks)).index(task)),  # in order of first use
                task=task,
            )
            frames.append(frame)
    return frames


def _as_recorded(theirs, want):
    """LeRobot's reader value back in the recorded form: images float CHW in [0, 1] -> uint8 HWC."""
    if (
        isinstance(want, torch.Tensor)
        and want.dtype == torch.uint8
        and want.dim() == 3
        and want.shape[-1] == 3
    ):
        assert theirs.dtype == torch.float32 and theirs.shape == (3, *want.shape[:2])
        return (theirs * 255).round().to(torch.uint8).permute(1, 2, 0)
    return theirs


def assert_reader_matches(root, trajs, tasks, fps):
    """Every frame of ``LeRobotDataset(root=root)`` equals the trajectory step it came from."""
    dataset = _lerobot().LeRobotDataset("torchbuf/test", root=root)
    want = expected_frames(trajs, tasks, fps)
    assert len(dataset) == len(want) and dataset.num_episodes == len(trajs) and dataset.fps == fps
    for i, frame in enumerate(want):
        item = dataset[i]
        assert set(item) == set(frame), set(item) ^ set(frame)
        for name, value in frame.items():
            if name == "task":
                assert item[name] == value
                continue
            got = _as_recorded(item[name], value)
            value = value.reshape(()) if value.shape == (1,) else value  # LeRobot: shape (1,) is a scalar
            if got.dtype != torch.uint8 or value.dtype != torch.uint8:
                # LeRobot's reader builds tensors from Python values: float32, int64 or bool
                assert got.dtype == _python_dtype(value.dtype), (name, got.dtype, value.dtype)
                value = value.to(got.dtype)
            assert torch.equal(got, value) or (got.isnan() == value.isnan()).all(), (i, name)
    return dataset


def _python_dtype(dtype):
    """The dtype ``torch.tensor`` gives a Python value of ``dtype``."""
    if dtype == torch.bool:
        return torch.bool
    return torch.float32 if dtype.is_floating_point else torch.int64


def assert_load_matches(root, trajs, tasks, fps):
    """torchbuf's reader gives the frames in their recorded dtypes and shapes, exactly."""
    frames = load_lerobot(root)
    want = expected_frames(trajs, tasks, fps)
    assert frames.batch_size == (len(want),)
    for i, frame in enumerate(want):
        for name, value in frame.items():
            if name != "task":
                got = frames[i].get(tuple(name.split(".")))
                value = value.reshape(()) if value.shape == (1,) else value
                assert got.dtype == value.dtype and got.shape == value.shape, (i, name)
                assert torch.equal(got, value) or (got.isnan() == value.isnan()).all(), (i, name)


# ------------------------------------------------------------------ read back by lerobot
@FEW
@given(case=episodes(sorted(OBS_SPACES), sorted(ACT_SPACES), infos=False, mid_flags=True))
def test_lerobot_reads_every_frame_of_every_space(case, tmp_path_factory):
    _lerobot()
    _, _, trajs = case
    assume(not any((t.terminated & t.truncated).any() for t in trajs))
    root = tmp_path_factory.mktemp("lerobot") / "ds"
    tasks = [f"task {i % 2}" for i in range(len(trajs))]
    save_lerobot(root, trajs, fps=15, task=tasks, drop_final_obs=True)
    assert_reader_matches(root, trajs, tasks, 15)
    assert_load_matches(root, trajs, tasks, 15)


def test_popped_episodes_go_to_lerobot_with_their_truncations(tmp_path):
    _lerobot()
    envs = VectorBufferingWrapper(TorchCartPole(4, seed=0, max_episode_steps=12), keep_infos=False)
    obs, _ = envs.reset(seed=0)
    balance = torch.tensor([True, True, False, False])  # two envs keep the pole up, two let it fall
    for _ in range(60):
        obs, *_ = envs.step(((obs[:, 2] > 0) == balance).long())
    trajs, _ = envs.pop_finished_trajectories()
    assert any(t.truncated[-1] for t in trajs) and any(t.terminated[-1] for t in trajs)
    save_lerobot(tmp_path / "cartpole", trajs, fps=50, task="balance the pole", drop_final_obs=True)
    dataset = assert_reader_matches(tmp_path / "cartpole", trajs, ["balance the pole"] * len(trajs), 50)
    meta = dataset.meta
    assert meta.total_episodes == len(trajs) and meta.total_frames == sum(len(t) for t in trajs)
    ep = meta.episodes[1]
    assert ep["dataset_to_index"] - ep["dataset_from_index"] == len(trajs[1]) == ep["length"]
    state = torch.cat([t.obs[:-1] for t in trajs]).double()
    assert np.allclose(meta.stats["observation.state"]["mean"], state.mean(0).numpy())
    assert np.allclose(meta.stats["observation.state"]["std"], state.std(0, unbiased=False).numpy())


def test_the_layout_is_lerobots_own(tmp_path):
    """The same frames written by lerobot's own ``add_frame`` / ``save_episode`` make the same dataset."""
    module = _lerobot()
    trajs = [_image_traj(3, seed=0), _image_traj(2, seed=1, end="truncated")]
    ours = tmp_path / "ours"
    save_lerobot(ours, trajs, fps=10, task=["reach", "push"], drop_final_obs=True)
    info = json.loads((ours / "meta" / "info.json").read_text())
    features = {k: {**v, "shape": tuple(v["shape"])} for k, v in info["features"].items()}
    writer = module.LeRobotDataset.create(
        "torchbuf/theirs", fps=10, features=features, root=tmp_path / "theirs", use_videos=False
    )
    for traj, task in zip(trajs, ["reach", "push"]):
        for t in range(len(traj)):
            writer.add_frame(
                {
                    "observation.image": traj.obs["image"][t].numpy(),
                    "observation.state": traj.obs["state"][t].numpy(),
                    "action": traj.acts[t : t + 1].numpy(),
                    "next.reward": traj.rews[t : t + 1].numpy(),
                    "next.done": (traj.terminated | traj.truncated)[t : t + 1].numpy(),
                    "next.truncated": traj.truncated[t : t + 1].numpy(),
                    "task": task,
                }
            )
        writer.save_episode()
    writer.finalize()
    a = module.LeRobotDataset("torchbuf/ours", root=ours)
    b = module.LeRobotDataset("torchbuf/theirs", root=tmp_path / "theirs")
    assert a.meta.info == b.meta.info
    assert a.meta.tasks.equals(b.meta.tasks)
    assert a.meta.episodes.to_list() == b.meta.episodes.to_list()
    for i in range(len(b)):
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for k in y:
            assert x[k] == y[k] if k == "task" else torch.equal(x[k], y[k]), (i, k)
    for name, theirs in b.meta.stats.items():
        for stat in ("min", "max", "mean", "std", "count"):  # quantiles: theirs are histogram estimates
            assert np.shape(a.meta.stats[name][stat]) == np.shape(theirs[stat]), (name, stat)
            if (name, stat) != ("observation.image", "std"):
                assert np.allclose(a.meta.stats[name][stat], theirs[stat]), (name, stat)
    # lerobot 0.4.4 squares uint8 frames in uint8 (RunningQuantileStats: batch**2 wraps at 256), so
    # its image std is off; ours is the std of the frames' values, per channel, in [0, 1]
    frames = torch.cat([t.obs["image"][:-1] for t in trajs]).double() / 255
    want = frames.reshape(-1, 3).std(0, unbiased=False).numpy().reshape(3, 1, 1)
    assert np.allclose(a.meta.stats["observation.image"]["std"], want)


def _image_traj(n, seed, end="terminated"):
    """RGB frames and a state vector as observations."""
    terminated = torch.zeros(n, dtype=torch.bool)
    truncated = torch.zeros(n, dtype=torch.bool)
    (terminated if end == "terminated" else truncated)[-1] = True
    state = torch.randn(n + 1, 2, generator=torch.Generator().manual_seed(seed))
    obs = TensorDict({"image": samples(OBS_SPACES["image"], n + 1, seed), "state": state}, batch_size=[n + 1])
    return TrajectoryWithRew(
        obs=obs,
        acts=torch.arange(n) % 2,
        rews=torch.arange(n, dtype=torch.float32) + seed,
        terminated=terminated,
        truncated=truncated,
        batch_size=[],
    )


# ------------------------------------------------------------------ refused, not mangled
def _traj(n=2, end="terminated", infos=None, cls=TrajectoryWithRew, obs=None, both=False):
    terminated, truncated = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    if n:
        terminated[-1], truncated[-1] = end == "terminated", end == "truncated" or both
    extra = {"rews": torch.zeros(n)} if cls is TrajectoryWithRew else {}
    return cls(
        obs=samples(OBS_SPACES["box"], n + 1, 0) if obs is None else obs,
        acts=torch.zeros(n, dtype=torch.long),
        terminated=terminated,
        truncated=truncated,
        terminal=end != "running",
        infos=infos,
        batch_size=[],
        **extra,
    )


@pytest.mark.parametrize(
    ("trajs", "kwargs", "error", "match"),
    [
        (
            [_traj()],
            {"drop_final_obs": False},
            ValueError,
            "trajectory 0: its final observation.*drop_final_obs=True",
        ),
        (
            [_traj(), _traj(infos=np.array([{}, {}]))],
            {},
            ValueError,
            "trajectory 1 has infos.*drop_infos=True",
        ),
        (
            [_traj(), _traj(both=True)],
            {},
            ValueError,
            "trajectory 1: step 1 is both terminated and truncated",
        ),
        ([_traj(), _traj(n=0, end="running")], {}, ValueError, "trajectory 1 has no steps"),
        ([], {}, ValueError, "at least one trajectory"),
        ([_traj()], {"fps": 2.5}, ValueError, "fps must be a positive integer"),
        ([_traj(), _traj()], {"task": ["a"]}, ValueError, r"one string per trajectory \(2\)"),
        ([_traj(), _traj(cls=Trajectory)], {}, TypeError, "of one class"),
        (
            [_traj(), _traj(obs=samples(OBS_SPACES["box"], 3, 0).double())],
            {},
            ValueError,
            r"trajectory 1: fields .*float64.* differ from trajectory 0's",
        ),
        (
            [_traj(obs=TensorDict({"a.b": torch.zeros(3, 2)}, batch_size=[3]))],
            {},
            ValueError,
            r"observation key 'a.b' contains '.' or '/'",
        ),
        ([_traj(obs=torch.zeros(3, 2, dtype=torch.bfloat16))], {}, ValueError, "bfloat16 has no LeRobot"),
    ],
)
def test_what_lerobot_cannot_carry_is_refused(tmp_path, trajs, kwargs, error, match):
    kwargs = {"fps": 10, "task": "t", "drop_final_obs": True, **kwargs}
    with pytest.raises(error, match=match):
        save_lerobot(tmp_path / "ds", trajs, **kwargs)
    assert not (tmp_path / "ds").exists()


def test_infos_are_left_out_only_when_asked(tmp_path):
    traj = _traj(infos=np.array([{"a": 1}, {}], dtype=object))
    save_lerobot(tmp_path / "ds", [traj], fps=10, task="t", drop_final_obs=True, drop_infos=True)
    frames = load_lerobot(tmp_path / "ds")
    assert torch.equal(frames["observation", "state"], traj.obs[:-1])
    assert frames["next", "done"].tolist() == [False, True]


def test_load_refuses_what_it_does_not_read(tmp_path):
    save_lerobot(tmp_path / "ds", [_traj()], fps=10, task="t", drop_final_obs=True)
    info_path = tmp_path / "ds" / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(ValueError, match="codebase_version 'v2.1'; load_lerobot reads v3.0"):
        load_lerobot(tmp_path / "ds")
    video = {
        **info["features"],
        "observation.images.cam": {"dtype": "video", "shape": [4, 4, 3], "names": None},
    }
    info_path.write_text(json.dumps({**info, "features": video}))
    with pytest.raises(ValueError, match="observation.images.cam: video features are not read here"):
        load_lerobot(tmp_path / "ds")
    info_path.write_text(
        json.dumps({**info, "features": {**info["features"], "action": {"dtype": "float32", "shape": [1]}}})
    )
    with pytest.raises(ValueError, match="action: the column holds int64, info.json declares float32"):
        load_lerobot(tmp_path / "ds")
