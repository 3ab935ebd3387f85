"""Episode selection on export: select_trajectories with info_flag or any predicate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchbuf.data.types import Trajectory
from torchbuf.formats import info_flag, select_trajectories


def traj(flags, *, infos=True, key="success"):
    n = len(flags)
    return Trajectory(
        obs=torch.arange(n + 1, dtype=torch.float32)[:, None],
        acts=torch.zeros(n, 1),
        terminated=torch.tensor([False] * (n - 1) + [True]),
        truncated=torch.zeros(n, dtype=torch.bool),
        infos=np.array([{key: f} for f in flags], dtype=object) if infos else None,
    )


@pytest.mark.parametrize(
    "value", [True, np.bool_(True), torch.tensor(True), torch.tensor([True]), np.array([1]), 1]
)
def test_info_flag_reads_the_last_step_in_any_form_an_env_gives(value):
    assert info_flag()(traj([False, value]))
    assert not info_flag()(traj([value, False]))


def test_info_flag_any_step_and_nested_key():
    t = traj([{"b": True}, {"b": False}], key="a")
    assert not info_flag("a/b")(t)
    assert info_flag("a/b", at="any")(t)


def test_select_keeps_order_and_objects():
    trajs = [traj([True]), traj([False]), traj([False, True])]
    kept = select_trajectories(trajs, info_flag("success"))
    assert kept == [trajs[0], trajs[2]]
    assert select_trajectories(trajs, lambda t: len(t.acts) == 2) == [trajs[2]]


@pytest.mark.parametrize(
    ("t", "match"),
    [
        (traj([True], infos=False), "recorded without infos"),
        (traj([True], key="fail"), r"step 0's info has no 'success' \(keys: \['fail'\]\)"),
        (traj(["yes"]), "is not one flag"),
        (traj([torch.tensor([True, False])]), "is not one flag"),
        (traj([0.5]), "is not one flag"),
    ],
)
def test_info_flag_refuses_what_it_cannot_read(t, match):
    with pytest.raises(ValueError, match=match):
        info_flag()(t)


def test_info_flag_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="'last' or 'any'"):
        info_flag(at="first")  # type: ignore[arg-type]


def test_info_flag_reads_the_ended_episodes_flag_at_a_same_step_autoreset():
    """ManiSkillVectorEnv (and gymnasium's SAME_STEP) return the reset's info at a done step, the
    ended episode's as ``final_info``: the flag is the ended episode's (a row as torchbuf records it)."""
    t = traj([False, False])
    t.infos[-1] = {"success": torch.tensor(False), "final_info": {"success": torch.tensor(True)}}
    assert info_flag()(t)
    assert info_flag(at="any")(t)
