"""torchbuf -> ManiSkill 3 trajectory files (.h5 and .json) -> torchbuf, with h5py.

ManiSkill's own readers (``ManiSkillTrajectoryDataset``) and a file its ``RecordEpisode``
writes are compared in ``tests/sims/test_maniskill_format.py`` (the sims venv).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from tensordict import TensorDict

h5py = pytest.importorskip("h5py", reason="h5py is not installed (pip install 'torchbuf[maniskill]')")

from tests.format_cases import episodes  # noqa: E402
from tests.helpers import ACT_SPACES, OBS_SPACES  # noqa: E402
from tests.test_io import assert_batches_equal  # noqa: E402
from torchbuf import Trajectory, TrajectoryWithRew  # noqa: E402
from torchbuf.formats import info_flag, load_maniskill, load_maniskill_env_states, save_maniskill  # noqa: E402

FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def traj(n=3, *, success=None, end="terminated", **fields):
    terminated, truncated = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    if n:
        terminated[-1], truncated[-1] = end == "terminated", end == "truncated"
    base = dict(
        obs=torch.arange(3 * (n + 1), dtype=torch.float32).reshape(n + 1, 3),
        acts=torch.arange(2 * n, dtype=torch.float32).reshape(n, 2) / 4,
        rews=torch.arange(n, dtype=torch.float32) - 0.5,
        terminated=terminated,
        truncated=truncated,
        infos=None if success is None else np.array([{"success": s} for s in success], dtype=object),
        terminal=end != "running",
        batch_size=[],
    )
    base.update(fields)
    return TrajectoryWithRew(**base)


@FEW
@given(case=episodes(sorted(OBS_SPACES), sorted(ACT_SPACES), infos=False, mid_flags=True))
def test_every_observation_and_action_space_round_trips_exactly(case, tmp_path_factory):
    """Box, image, discrete, multidiscrete, dict, nested dict; flags at any step; with and without rewards."""
    _, _, trajs = case
    path = tmp_path_factory.mktemp("ms") / "t.h5"
    assert save_maniskill(path, trajs) == [f"traj_{i}" for i in range(len(trajs))]
    loaded = load_maniskill(path)
    assert len(loaded) == len(trajs)
    for got, want in zip(loaded, trajs):
        assert_batches_equal(got, want)


def test_the_files_hold_record_episodes_layout(tmp_path):
    """Every member, dtype and json key, checked by hand against RecordEpisode 3.0.1's source."""
    obs = TensorDict(
        {"agent": {"qpos": torch.randn(4, 2)}, "rgb": torch.zeros(4, 5, 5, 3, dtype=torch.uint8)}, [4]
    )
    t = traj(obs=obs, success=[False, False, True])
    info = {"env_id": "PickCube-v1", "env_kwargs": {"obs_mode": "state"}, "max_episode_steps": 50}
    save_maniskill(
        tmp_path / "t.h5", [t], env_info=info, control_mode="pd_ee_delta_pos",
        episodes=[{"episode_seed": 7, "reset_kwargs": {"seed": np.int64(7)}}], source_type="rl",
    )  # fmt: skip
    with h5py.File(tmp_path / "t.h5", "r") as f:
        g = f["traj_0"]
        assert list(g) == ["obs", "actions", "terminated", "truncated", "success", "rewards"]
        assert list(g["obs"]) == ["agent", "rgb"] and g["obs/rgb"].compression == "gzip"
        assert g["obs/rgb"].compression_opts == 5 and g["obs/agent/qpos"].shape == (4, 2)
        assert g["terminated"].dtype == bool and g["success"][()].tolist() == [False, False, True]
        np.testing.assert_array_equal(g["actions"][()], t.acts.numpy())
        np.testing.assert_array_equal(g["rewards"][()], np.array([-0.5, 0.5, 1.5], dtype=np.float32))
    meta = json.loads((tmp_path / "t.json").read_text())
    assert meta == {
        "env_info": info,
        "commit_info": None,
        "episodes": [
            {"episode_id": 0, "episode_seed": 7, "control_mode": "pd_ee_delta_pos", "elapsed_steps": 3,
             "reset_kwargs": {"seed": 7}, "success": True}
        ],
        "source_type": "rl",
    }  # fmt: skip
    assert list(meta["episodes"][0]) == [
        "episode_id", "episode_seed", "control_mode", "elapsed_steps", "reset_kwargs", "success",
    ]  # fmt: skip


def test_success_and_fail_per_step_come_back_as_infos(tmp_path):
    infos = np.array(
        [{"success": False, "fail": torch.tensor(True)}, {"success": 1, "fail": False}], dtype=object
    )
    save_maniskill(tmp_path / "t.h5", [traj(2, infos=infos)])
    (got,) = load_maniskill(tmp_path / "t.h5")
    assert list(got.infos) == [{"success": False, "fail": True}, {"success": True, "fail": False}]
    save_maniskill(tmp_path / "again.h5", [got])  # what a ManiSkill file holds saves again as it is
    assert list(load_maniskill(tmp_path / "again.h5")[0].infos) == list(got.infos)


def test_a_same_step_autoreset_reads_the_ended_episodes_flag_from_final_info(tmp_path):
    """ManiSkillVectorEnv's done step: its info is the reset's, the ended episode's is ``final_info``."""
    infos = [{"success": False}, {"success": False, "final_info": {"success": True}}]
    save_maniskill(tmp_path / "t.h5", [traj(2, infos=np.array(infos, dtype=object))], drop_infos=True)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert f["traj_0/success"][()].tolist() == [False, True]


def test_keep_writes_only_the_selected_episodes_numbered_in_order(tmp_path):
    trajs = [traj(2, success=[0, 1]), traj(3, success=[0, 0, 0]), traj(4, success=[0, 0, 0, 1])]
    assert save_maniskill(tmp_path / "t.h5", trajs, keep=info_flag()) == ["traj_0", "traj_1"]
    assert [len(t) for t in load_maniskill(tmp_path / "t.h5")] == [2, 4]
    eps = json.loads((tmp_path / "t.json").read_text())["episodes"]
    assert [(e["episode_id"], e["elapsed_steps"], e["success"]) for e in eps] == [(0, 2, True), (1, 4, True)]


def test_env_states_are_written_and_read_back(tmp_path):
    states = {"actors": {"cube": np.arange(8.0).reshape(4, 2)}, "articulations": {"panda": np.zeros((4, 3))}}
    save_maniskill(tmp_path / "t.h5", [traj(), traj()], env_states=[states, None])
    got = load_maniskill_env_states(tmp_path / "t.h5")
    np.testing.assert_array_equal(got[0]["actors", "cube"].numpy(), states["actors"]["cube"])
    assert got[1] is None
    with pytest.raises(ValueError, match="trajectory 0: env_states have 3 rows, not 4"):
        save_maniskill(tmp_path / "u.h5", [traj()], env_states=[{"a": np.zeros((3, 1))}])


def test_trajectories_without_rewards_load_as_trajectories(tmp_path):
    t = traj()
    plain = Trajectory(obs=t.obs, acts=t.acts, terminated=t.terminated, truncated=t.truncated, batch_size=[])
    save_maniskill(tmp_path / "t.h5", [plain])
    (got,) = load_maniskill(tmp_path / "t.h5")
    assert type(got) is Trajectory
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert "rewards" not in f["traj_0"]


@pytest.mark.parametrize(
    ("trajs", "kwargs", "match"),
    [
        (
            [traj(infos=np.array([{"x": 1}] * 3, dtype=object))],
            {},
            r"trajectory 0: its infos hold \['x'\].*drop_infos=True",
        ),
        (
            [traj(success=[0, 0, 1], infos=np.array([{"success": 0}, {}, {}], dtype=object))],
            {},
            "step 1's info lacks 'success'",
        ),
        (
            [traj(infos=np.array([{"success": [1, 0]}] * 3, dtype=object))],
            {},
            "step 0's info 'success' is not one flag",
        ),
        ([traj(terminal=False)], {}, "terminal=False"),
        (
            [traj(0, obs=torch.zeros(1, 3), acts=torch.zeros(0, 2), rews=torch.zeros(0), terminal=False)],
            {},
            "trajectory 0 has no steps",
        ),
        ([traj(obs=TensorDict({"a/b": torch.zeros(4)}, [4]))], {}, "key 'a/b' holds '/'"),
        ([traj(obs=torch.zeros(4, 2, dtype=torch.bfloat16))], {}, "trajectory 0: obs: dtype torch.bfloat16"),
        ([traj()], {"episodes": [{"elapsed_steps": 9}]}, r"episodes\[0\] names \['elapsed_steps'\]"),
        ([traj()], {"episodes": []}, "episodes has 0 entries for 1 trajectories"),
    ],
)
def test_what_a_maniskill_file_cannot_carry_is_refused_and_nothing_is_written(tmp_path, trajs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        save_maniskill(tmp_path / "t.h5", trajs, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_path_without_h5_and_env_info_that_is_not_json_are_refused(tmp_path):
    with pytest.raises(ValueError, match="does not end in .h5"):
        save_maniskill(tmp_path / "t.hdf5", [traj()])
    with pytest.raises(TypeError, match="must be json-serializable"):
        save_maniskill(tmp_path / "t.h5", [traj()], env_info={"f": object()})
    assert list(tmp_path.iterdir()) == []


def test_a_file_torchbuf_cannot_read_exactly_is_refused_naming_the_episode(tmp_path):
    save_maniskill(tmp_path / "t.h5", [traj()])
    with h5py.File(tmp_path / "t.h5", "a") as f:
        del f["traj_0/rewards"]
        f["traj_0/rewards"] = np.zeros(5, dtype=np.float32)
    with pytest.raises(ValueError, match="traj_0: rewards: 5 rows, but elapsed_steps gives 3"):
        load_maniskill(tmp_path / "t.h5")
    with h5py.File(tmp_path / "t.h5", "a") as f:
        f["traj_0/extra"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"traj_0 holds \['extra'\]"):
        load_maniskill(tmp_path / "t.h5")
    meta = json.loads((tmp_path / "t.json").read_text())
    meta["episodes"][0]["episode_id"] = 4
    (tmp_path / "t.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="episode 4 of the json has no group traj_4"):
        load_maniskill(tmp_path / "t.h5")
