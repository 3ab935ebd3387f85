"""A real ManiSkill3 PickCube recording saved with ``save_maniskill`` and read by ManiSkill.

One run records both ways at once: ManiSkill's own ``RecordEpisode`` wraps the env (it
writes its file), ``ManiSkillVectorEnv`` autoresets it and ``VectorBufferingWrapper``
records it for torchbuf. torchbuf's file is read back with ManiSkill's
``ManiSkillTrajectoryDataset`` and ``load_h5_data``, and every field is compared with
what the env returned; its layout (members, dtypes, shapes, json keys) with the file
``RecordEpisode`` wrote for the same episodes.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from tests.sims.maniskill_env import CONTROL, ENV_ID, as_torch, make_cpu_env, require_maniskill, scripted

require_maniskill()

import h5py  # noqa: E402
from mani_skill.trajectory.dataset import ManiSkillTrajectoryDataset, load_h5_data  # noqa: E402
from mani_skill.utils.wrappers.record import RecordEpisode  # noqa: E402
from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv  # noqa: E402

from torchbuf import VectorBufferingWrapper  # noqa: E402
from torchbuf.formats import info_flag, load_maniskill, save_maniskill  # noqa: E402

STEPS = 120


def record(tmp_path):
    """Steps PickCube; returns (torchbuf's finished trajectories, the env's own record per episode)."""
    env = RecordEpisode(
        make_cpu_env(max_episode_steps=30), str(tmp_path / "own"), trajectory_name="own",
        save_video=False, record_env_state=False,
    )  # fmt: skip
    envs = VectorBufferingWrapper(ManiSkillVectorEnv(env, ignore_terminations=False))
    rng = np.random.default_rng(0)
    obs, _ = envs.reset(seed=0)
    truth, episode = (
        [],
        {"obs": [as_torch(obs[0])], "act": [], "rew": [], "term": [], "trunc": [], "success": []},
    )
    for _ in range(STEPS):
        acts = torch.from_numpy(scripted(obs, rng, np.array([len(truth) % 2 == 1])))
        obs, rew, term, trunc, info = envs.step(acts)
        done = bool(term[0] | trunc[0])
        step_info = info["final_info"] if done else info
        episode["obs"].append(as_torch(info["final_observation"][0] if done else obs[0]))
        for key, value in (("act", acts[0]), ("rew", rew[0]), ("term", term[0]), ("trunc", trunc[0])):
            episode[key].append(as_torch(value))
        episode["success"].append(bool(step_info["success"][0]))
        if done:
            truth.append({k: torch.stack(v) if k != "success" else v for k, v in episode.items()})
            episode = {k: [] for k in episode} | {"obs": [as_torch(obs[0])]}
    trajs, _ = envs.pop_finished_trajectories()
    envs.close()
    return trajs, truth


def test_save_maniskill_is_read_by_maniskill_as_the_env_returned_it_and_has_record_episodes_layout(tmp_path):
    trajs, truth = record(tmp_path)
    assert len(trajs) == len(truth) >= 3
    assert any(t["term"].any() for t in truth) and any(t["trunc"].any() for t in truth)
    env_info = {"env_id": ENV_ID, "env_kwargs": {}, "max_episode_steps": 30}
    path = tmp_path / "mine.h5"
    save_maniskill(path, trajs, env_info=env_info, control_mode=CONTROL, drop_infos=True)

    ds = ManiSkillTrajectoryDataset(str(path))
    cat = {k: torch.cat([t[k] for t in truth]) for k in ("act", "rew", "term", "trunc")}
    assert torch.equal(torch.from_numpy(ds.obs), torch.cat([t["obs"][:-1] for t in truth]))
    assert torch.equal(torch.from_numpy(ds.actions), cat["act"])
    assert torch.equal(torch.from_numpy(ds.rewards), cat["rew"])
    assert torch.equal(torch.from_numpy(ds.terminated), cat["term"])
    assert torch.equal(torch.from_numpy(ds.truncated), cat["trunc"])
    assert ds.success.tolist() == [s for t in truth for s in t["success"]]
    assert any(ds.success) and [e["success"] for e in ds.episodes] == [t["success"][-1] for t in truth]
    with h5py.File(path, "r") as f:
        for i, t in enumerate(truth):
            assert torch.equal(
                torch.from_numpy(load_h5_data(f[f"traj_{i}"])["obs"]), t["obs"]
            )  # final obs too
    for got, t in zip(load_maniskill(path), truth):
        assert torch.equal(got.obs, t["obs"]) and torch.equal(got.rews, t["rew"])
        assert [i["success"] for i in got.infos] == t["success"]

    own = tmp_path / "own" / "own.h5"
    with h5py.File(own, "r") as theirs, h5py.File(path, "r") as mine:
        for i in range(len(truth)):
            a, b = theirs[f"traj_{i}"], mine[f"traj_{i}"]
            assert list(a) == list(b)
            for key in a:
                assert (a[key].dtype, a[key].shape) == (b[key].dtype, b[key].shape), key
                np.testing.assert_array_equal(a[key][()], b[key][()])
    ours, theirs_json = (
        json.loads(path.with_suffix(".json").read_text()),
        json.loads(own.with_suffix(".json").read_text()),
    )
    assert list(ours) == list(theirs_json)
    for a, b in zip(theirs_json["episodes"], ours["episodes"]):
        assert list(a) == list(b)
        assert {k: a[k] for k in ("episode_id", "control_mode", "elapsed_steps", "success")} == {
            k: b[k] for k in ("episode_id", "control_mode", "elapsed_steps", "success")
        }


def test_keep_info_flag_exports_the_episodes_that_ended_successful(tmp_path):
    """At ManiSkillVectorEnv's done step the info is the reset's; the outcome is in final_info."""
    trajs, truth = record(tmp_path)
    wins = [t["success"][-1] for t in truth]
    assert any(wins) and not all(wins)
    env_info = {"env_id": ENV_ID, "env_kwargs": {}, "max_episode_steps": 30}
    kept = save_maniskill(
        tmp_path / "ok.h5", trajs, env_info=env_info, keep=info_flag("success"), drop_infos=True
    )
    assert len(kept) == sum(wins)
    ds = ManiSkillTrajectoryDataset(str(tmp_path / "ok.h5"), success_only=True)
    assert len(ds.episodes) == sum(wins) and all(e["success"] for e in ds.episodes)
    want = torch.cat([t["act"] for t, win in zip(truth, wins) if win])
    assert torch.equal(torch.from_numpy(ds.actions), want)
