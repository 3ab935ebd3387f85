"""torchbuf -> robomimic HDF5 -> torchbuf, read back by robomimic's own ``SequenceDataset``.

The writer and torchbuf's reader need h5py (``torchbuf[robomimic]``); the reader tests
need robomimic itself, which requires torchvision, tensorboard, egl_probe and more
that its dataset class never imports, so it lives in its own venv, installed with
--no-deps beside h5py, tqdm, termcolor and psutil (``make test-robomimic``): they skip
where robomimic is not importable.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from stable_baselines3.common.vec_env import DummyVecEnv
from tensordict import TensorDict

h5py = pytest.importorskip("h5py", reason="h5py is not installed (pip install 'torchbuf[robomimic]')")

from tests.format_cases import episodes, samples  # noqa: E402
from tests.helpers import ACT_SPACES, OBS_SPACES, ScheduleEnv, assert_obs_equal  # noqa: E402
from tests.test_io import assert_batches_equal  # noqa: E402
from torchbuf import BufferingWrapper, Trajectory, TrajectoryWithRew  # noqa: E402
from torchbuf.formats import info_flag, load_robomimic, save_robomimic  # noqa: E402

FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ARRAY_ACTS = sorted(k for k in ACT_SPACES if k != "dict")  # robomimic's actions are one array


def traj(n=3, *, obs=None, end="terminated", success=None, rews=True, **fields):
    terminated, truncated = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    terminated[-1], truncated[-1] = end == "terminated", end == "truncated"
    base = dict(
        obs=torch.arange(3 * (n + 1), dtype=torch.float32).reshape(n + 1, 3) if obs is None else obs,
        acts=torch.arange(2 * n, dtype=torch.float32).reshape(n, 2) / 4,
        terminated=terminated,
        truncated=truncated,
        infos=None if success is None else np.array([{"success": s} for s in success], dtype=object),
        terminal=end != "running",
        batch_size=[],
    )
    base.update(fields)
    if not rews:
        return Trajectory(**base)
    return TrajectoryWithRew(**base, rews=torch.arange(n, dtype=torch.float32) - 0.5)


def _as_fragment(t):
    """What robomimic keeps of ``t`` saved with drop_truncated: a truncated end is not done."""
    names = ("obs", "acts", "rews", "terminated")
    fields = {k: getattr(t, k) for k in names}
    return TrajectoryWithRew(
        **fields,
        truncated=torch.zeros_like(t.truncated),
        terminal=bool(t.terminated[-1]),
        batch_size=[],
    )


# ----------------------------------------------------------------------------- round trips
@FEW
@given(case=episodes(sorted(OBS_SPACES), ARRAY_ACTS, rewards=(True,), infos=False))
def test_every_observation_space_round_trips_exactly(case, tmp_path_factory):
    """Box, uint8 image, discrete, multidiscrete, dict and nested dict observations; truncated ends
    stored as robomimic can (not done), so they load as fragments."""
    obs_key, _, trajs = case
    path = tmp_path_factory.mktemp("rm") / "demo.hdf5"
    save_robomimic(path, trajs, drop_truncated=True)
    vector = not isinstance(trajs[0].obs, TensorDict)
    loaded = load_robomimic(path, obs_key="state" if vector else None)
    assert len(loaded) == len(trajs)
    for got, want in zip(loaded, trajs):
        assert_batches_equal(got, _as_fragment(want))


def test_the_file_holds_robomimics_layout(tmp_path):
    """Every group, dataset and attribute, checked against the documented schema by hand."""
    a, b = traj(2), traj(3, end="truncated")
    path = tmp_path / "demo.hdf5"
    names = save_robomimic(
        path,
        [a, b],
        env_args={"env_name": "Lift", "type": 1, "env_kwargs": {}},
        obs_key="x",
        masks={"train": [1], "valid": [0]},
        drop_truncated=True,
    )
    assert names == ["demo_0", "demo_1"]
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["data", "mask"]
        data = f["data"]
        assert json.loads(data.attrs["env_args"]) == {"env_name": "Lift", "type": 1, "env_kwargs": {}}
        assert data.attrs["total"] == 5
        assert sorted(data) == ["demo_0", "demo_1"]
        demo = data["demo_1"]
        assert demo.attrs["num_samples"] == 3
        assert sorted(demo) == ["actions", "dones", "next_obs", "obs", "rewards"]
        assert list(demo["obs"]) == ["x"] and list(demo["next_obs"]) == ["x"]
        np.testing.assert_array_equal(demo["obs/x"][()], np.arange(12, dtype=np.float32).reshape(4, 3)[:3])
        np.testing.assert_array_equal(
            demo["next_obs/x"][()], np.arange(12, dtype=np.float32).reshape(4, 3)[1:]
        )
        np.testing.assert_array_equal(demo["actions"][()], np.arange(6, dtype=np.float32).reshape(3, 2) / 4)
        np.testing.assert_array_equal(demo["rewards"][()], np.array([-0.5, 0.5, 1.5], dtype=np.float32))
        assert demo["dones"].dtype == np.int64
        assert data["demo_0/dones"][()].tolist() == [0, 1] and demo["dones"][()].tolist() == [0, 0, 0]
        assert [n.decode() for n in f["mask/train"][()]] == ["demo_1"]
        assert [n.decode() for n in f["mask/valid"][()]] == ["demo_0"]


def test_default_env_args_are_isaac_labs_gym_type(tmp_path):
    save_robomimic(tmp_path / "d.hdf5", [traj()])
    with h5py.File(tmp_path / "d.hdf5", "r") as f:
        assert json.loads(f["data"].attrs["env_args"]) == {"env_name": "", "type": 2, "env_kwargs": {}}


def test_nested_dict_observations_are_nested_groups_as_isaac_lab_writes_them(tmp_path):
    obs = samples(OBS_SPACES["nested"], 3, 0)
    save_robomimic(tmp_path / "d.hdf5", [traj(2, obs=obs)])
    with h5py.File(tmp_path / "d.hdf5", "r") as f:
        np.testing.assert_array_equal(f["data/demo_0/obs/b/c"][()], obs["b", "c"][:2].numpy())
        np.testing.assert_array_equal(f["data/demo_0/next_obs/a"][()], obs["a"][1:].numpy())


def test_popped_trajectories_go_to_robomimic_and_back(tmp_path):
    schedules = [([2, 3], [False, True]), ([4], [False])]
    venv = BufferingWrapper(
        DummyVecEnv(
            [
                lambda lens=lens, trunc=trunc, i=i: ScheduleEnv(
                    copy.deepcopy(OBS_SPACES["dict"]), ACT_SPACES["box"], lens, trunc, i
                )
                for i, (lens, trunc) in enumerate(schedules)
            ]
        )
    )
    venv.reset()
    for _ in range(8):
        venv.step(np.zeros((2, 2), dtype=np.float32))
    trajs, _ = venv.pop_finished_trajectories()
    save_robomimic(tmp_path / "d.hdf5", trajs, drop_truncated=True, drop_infos=True, compression="gzip")
    loaded = load_robomimic(tmp_path / "d.hdf5")
    assert len(loaded) == len(trajs) >= 3 and any(t.truncated.any() for t in trajs)
    for got, want in zip(loaded, trajs):
        assert_batches_equal(got, _as_fragment(want))


# ---------------------------------------------------------------- success and selection
def test_success_is_isaac_labs_per_demo_attribute_and_a_filter_key(tmp_path):
    trajs = [traj(success=[False, False, True]), traj(success=[True, False, False]), traj(success=[0, 0, 1])]
    save_robomimic(tmp_path / "d.hdf5", trajs, success=info_flag("success"), drop_infos=True)
    with h5py.File(tmp_path / "d.hdf5", "r") as f:
        assert [bool(f[f"data/demo_{i}"].attrs["success"]) for i in range(3)] == [True, False, True]
        assert [n.decode() for n in f["mask/successful"][()]] == ["demo_0", "demo_2"]
    assert len(load_robomimic(tmp_path / "d.hdf5", obs_key="state", filter_key="successful")) == 2


def test_the_per_demo_success_is_read_back_as_the_last_steps_info(tmp_path):
    """Isaac Lab's ``success`` attribute loads where ``info_flag`` reads it: the last step's info."""
    trajs = [traj(success=[False, False, True]), traj(2, success=[True, False])]
    save_robomimic(tmp_path / "d.hdf5", trajs, success=info_flag("success"), drop_infos=True)
    loaded = load_robomimic(tmp_path / "d.hdf5", obs_key="state")
    assert [list(t.infos) for t in loaded] == [[{}, {}, {"success": True}], [{}, {"success": False}]]
    assert all(type(t.infos[-1]["success"]) is bool for t in loaded)
    assert [info_flag()(t) for t in loaded] == [True, False]
    save_robomimic(tmp_path / "again.hdf5", loaded, success=info_flag(), drop_infos=True)
    with h5py.File(tmp_path / "again.hdf5", "r") as f:
        assert [bool(f[f"data/demo_{i}"].attrs["success"]) for i in range(2)] == [True, False]
        assert [n.decode() for n in f["mask/successful"][()]] == ["demo_0"]


def test_demos_without_a_success_attribute_load_without_infos(tmp_path):
    save_robomimic(tmp_path / "d.hdf5", [traj()])
    assert load_robomimic(tmp_path / "d.hdf5", obs_key="state")[0].infos is None


def test_keep_writes_only_the_selected_demos_numbered_in_order(tmp_path):
    """Isaac Lab's succeeded-only export; masks name positions in the trajectories given."""
    trajs = [traj(2, success=[0, 0]), traj(3, success=[0, 0, 1]), traj(4, success=[0, 0, 0, 1])]
    names = save_robomimic(
        tmp_path / "d.hdf5", trajs, keep=info_flag(), drop_infos=True, masks={"valid": [0, 2]}
    )
    assert names == ["demo_0", "demo_1"]
    loaded = load_robomimic(tmp_path / "d.hdf5", obs_key="state")
    assert [len(t) for t in loaded] == [3, 4]
    with h5py.File(tmp_path / "d.hdf5", "r") as f:
        assert f["data"].attrs["total"] == 7
        assert [n.decode() for n in f["mask/valid"][()]] == ["demo_1"]


# ----------------------------------------------------------------------- what is refused
@pytest.mark.parametrize(
    ("t", "kwargs", "error", "match"),
    [
        (traj(end="truncated"), {}, ValueError, "trajectory 0 ends truncated.*drop_truncated=True"),
        (traj(success=[0, 0, 1]), {}, ValueError, "trajectory 0 has infos.*drop_infos=True"),
        (traj(rews=False), {}, TypeError, "trajectory 0 has no rewards"),
        (traj(terminated=torch.tensor([True, False, True])), {}, ValueError, "step 0 is terminated"),
        (traj(terminal=False), {}, ValueError, "terminal=False"),
        (
            traj(2, acts=TensorDict({"a": torch.zeros(2)}, [2])),
            {},
            ValueError,
            "dict actions have no robomimic form",
        ),
        (
            traj(2, obs=TensorDict({"a/b": torch.zeros(3)}, [3])),
            {},
            ValueError,
            "obs key 'a/b' holds '/'",
        ),
        (traj(), {"masks": {"train": [0, 3]}}, ValueError, r"mask 'train': positions \[3\]"),
        (traj(), {"env_args": {"f": object()}}, TypeError, "env_args must be json-serializable"),
    ],
)
def test_what_robomimic_cannot_carry_is_refused_and_nothing_is_written(tmp_path, t, kwargs, error, match):
    with pytest.raises(error, match=match):
        save_robomimic(tmp_path / "d.hdf5", [t], **kwargs)
    assert list(tmp_path.iterdir()) == []


def _write(path, **demo):
    with h5py.File(path, "w") as f:
        g = f.create_group("data/demo_0")
        g.attrs["num_samples"] = 3
        for key, value in demo.items():
            g.create_dataset(key, data=value)


GOOD = {
    "obs/s": np.arange(3.0)[:, None],
    "next_obs/s": np.arange(1.0, 4.0)[:, None],
    "actions": np.zeros((3, 1)),
    "rewards": np.zeros(3),
    "dones": np.array([0, 0, 1]),
}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"next_obs/s": np.arange(3.0)[:, None]}, r"demo_0: obs\['s'\]: next_obs is not the following obs"),
        ({"dones": np.array([1, 0, 1])}, "demo_0: dones mark step 0, before its last"),
        ({"dones": np.array([0, 0, 2])}, r"demo_0: dones hold \[0, 2\]"),
        ({"rewards": np.zeros(4)}, "demo_0: rewards: 4 rows, but num_samples is 3"),
    ],
)
def test_a_file_torchbuf_cannot_read_exactly_is_refused_naming_the_demo(tmp_path, change, match):
    _write(tmp_path / "d.hdf5", **{**GOOD, **change})
    with pytest.raises(ValueError, match=match):
        load_robomimic(tmp_path / "d.hdf5")


def test_a_success_attribute_that_is_not_one_flag_is_refused(tmp_path):
    _write(tmp_path / "d.hdf5", **GOOD)
    with h5py.File(tmp_path / "d.hdf5", "a") as f:
        f["data/demo_0"].attrs["success"] = np.array([1, 0])
    with pytest.raises(ValueError, match="demo_0: attribute success is"):
        load_robomimic(tmp_path / "d.hdf5")


def test_a_hand_written_isaac_lab_success_attribute_loads(tmp_path):
    _write(tmp_path / "d.hdf5", **GOOD)
    with h5py.File(tmp_path / "d.hdf5", "a") as f:
        f["data/demo_0"].attrs["success"] = np.bool_(True)
    (got,) = load_robomimic(tmp_path / "d.hdf5")
    assert list(got.infos) == [{}, {}, {"success": True}]


def test_a_demo_without_next_obs_is_refused(tmp_path):
    _write(tmp_path / "d.hdf5", **{k: v for k, v in GOOD.items() if not k.startswith("next_obs")})
    with pytest.raises(ValueError, match="demo_0 has no next_obs"):
        load_robomimic(tmp_path / "d.hdf5")


def test_a_group_not_named_as_robomimic_names_demos_is_refused(tmp_path):
    _write(tmp_path / "d.hdf5", **GOOD)
    with h5py.File(tmp_path / "d.hdf5", "a") as f:
        f.create_group("data/extra")
    with pytest.raises(ValueError, match=r"groups \['extra'\] are not demos"):
        load_robomimic(tmp_path / "d.hdf5")


def test_a_hand_written_file_loads_as_documented(tmp_path):
    _write(tmp_path / "d.hdf5", **GOOD)
    (got,) = load_robomimic(tmp_path / "d.hdf5", obs_key="s")
    assert_obs_equal(got.obs, np.arange(4.0)[:, None])
    assert got.terminal and got.terminated.tolist() == [False, False, True] and not got.truncated.any()


# -------------------------------------------------------------- robomimic's own reader
def _sequence_dataset():
    return pytest.importorskip(
        "robomimic.utils.dataset",
        reason="robomimic is not installed (its own venv, with --no-deps: make test-robomimic)",
    ).SequenceDataset


def _obs_utils(low_dim, rgb=()):
    import robomimic.utils.obs_utils as obs_utils

    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": list(low_dim), "rgb": list(rgb)}})


@pytest.mark.parametrize("cache", [None, "low_dim"])
def test_robomimics_sequence_dataset_reads_every_demo(tmp_path, cache):
    sequence_dataset = _sequence_dataset()
    obs = TensorDict(
        {"pos": samples(OBS_SPACES["box"], 5, 1), "image": samples(OBS_SPACES["image"], 5, 2)}, [5]
    )
    trajs = [traj(4, obs=obs), traj(2, obs=obs[:3], end="running")]
    save_robomimic(tmp_path / "d.hdf5", trajs, masks={"train": [0], "valid": [1]})
    _obs_utils(["pos"], ["image"])
    ds = sequence_dataset(
        hdf5_path=str(tmp_path / "d.hdf5"),
        obs_keys=("pos", "image"),
        dataset_keys=("actions", "rewards", "dones"),
        hdf5_cache_mode=cache,
        hdf5_use_swmr=False,
    )
    assert len(ds) == 6 and ds.n_demos == 2
    for i, t in enumerate(trajs):
        got = ds.get_trajectory_at_index(i)
        assert got["ep"] == f"demo_{i}"
        for key in ("pos", "image"):
            assert_obs_equal(got["obs"][key], t.obs[key][:-1])
            assert_obs_equal(got["next_obs"][key], t.obs[key][1:])
        dones = t.terminated.numpy().astype(np.int64)
        for key, want in (("actions", t.acts.numpy()), ("rewards", t.rews.numpy()), ("dones", dones)):
            # its in-memory cache casts these to float32; read from the file, they are as written
            assert_obs_equal(got[key], want.astype(np.float32) if cache else want)
    item = ds[5]  # the last step of demo_1
    np.testing.assert_array_equal(item["next_obs"]["pos"][0], obs["pos"][2].numpy())
    np.testing.assert_array_equal(item["actions"][0], trajs[1].acts[1].numpy())


def test_robomimic_reads_a_vector_observation_under_its_key_and_the_filter_keys(tmp_path):
    sequence_dataset = _sequence_dataset()
    trajs = [traj(2, success=[0, 1]), traj(3, success=[0, 0, 0]), traj(4, success=[0, 0, 0, 1])]
    save_robomimic(tmp_path / "d.hdf5", trajs, obs_key="robot0_eef_pos", success=info_flag(), drop_infos=True)
    _obs_utils(["robot0_eef_pos"])
    ds = sequence_dataset(
        hdf5_path=str(tmp_path / "d.hdf5"),
        obs_keys=("robot0_eef_pos",),
        dataset_keys=("actions",),
        filter_by_attribute="successful",
        seq_length=2,
        hdf5_use_swmr=False,
    )
    assert ds.demos == ["demo_0", "demo_2"] and len(ds) == 6
    got = ds.get_trajectory_at_index(1)["next_obs"]["robot0_eef_pos"]
    np.testing.assert_array_equal(got, trajs[2].obs[1:].numpy())
