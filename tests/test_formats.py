"""torchbuf.formats without its optional dependencies: importable, and a clear ImportError on use."""

from __future__ import annotations

import sys

import pytest
import torch

from torchbuf import TrajectoryWithRew
from torchbuf.formats import (
    load_imitation,
    load_lerobot,
    load_maniskill,
    load_minari,
    load_robomimic,
    save_imitation,
    save_lerobot,
    save_maniskill,
    save_minari,
    save_robomimic,
)


def _traj():
    return TrajectoryWithRew(
        obs=torch.zeros(3, 2),
        acts=torch.zeros(2, dtype=torch.long),
        rews=torch.zeros(2),
        terminated=torch.tensor([False, True]),
        truncated=torch.zeros(2, dtype=torch.bool),
        batch_size=[],
    )


@pytest.mark.parametrize(
    ("missing", "call", "extra"),
    [
        (
            ["imitation", "imitation.data", "imitation.data.types"],
            lambda p: save_imitation(p, [_traj()]),
            "imitation",
        ),
        (
            ["imitation", "imitation.data", "imitation.data.serialize"],
            lambda p: load_imitation(p),
            "imitation",
        ),
        (["minari"], lambda p: save_minari("x/y-v0", [_traj()]), "minari"),
        (["minari"], lambda p: load_minari("x/y-v0"), "minari"),
        (["pyarrow"], lambda p: save_lerobot(p, [_traj()], fps=10, task="t", drop_final_obs=True), "lerobot"),
        (["pyarrow.parquet"], lambda p: load_lerobot(p), "lerobot"),
        (["pandas"], lambda p: save_lerobot(p, [_traj()], fps=10, task="t", drop_final_obs=True), "lerobot"),
        (["PIL.Image"], lambda p: load_lerobot(p), "lerobot"),
        (["h5py"], lambda p: save_robomimic(p, [_traj()]), "robomimic"),
        (["h5py"], lambda p: load_robomimic(p), "robomimic"),
        (["h5py"], lambda p: save_maniskill(f"{p}.h5", [_traj()]), "maniskill"),
        (["h5py"], lambda p: load_maniskill(f"{p}.h5"), "maniskill"),
    ],
)
def test_a_missing_optional_dependency_names_the_extra(tmp_path, monkeypatch, missing, call, extra):
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)  # makes ``import name`` raise ImportError
    with pytest.raises(ImportError, match=rf"pip install 'torchbuf\[{extra}\]'"):
        call(tmp_path / "x")
