"""Episode selection on export: every format's ``save_*(keep=...)`` writes only the kept episodes.

Each case skips where its format's dependency is not installed (they live in different
venvs: h5py in the main and robomimic ones, pyarrow in the lerobot one, minari in the main
one, imitation in the compat one).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from tests.test_io import assert_batches_equal
from torchbuf import TrajectoryWithRew
from torchbuf.formats import info_flag

SUCCESS = [False, True, False, True]


def trajs():
    """Four episodes of lengths 1..4; the 2nd and 4th succeed at their last step."""
    out = []
    for i, ok in enumerate(SUCCESS):
        n = i + 1
        out.append(
            TrajectoryWithRew(
                obs=torch.arange(n + 1, dtype=torch.float32)[:, None] + 10 * i,
                acts=torch.full((n, 2), float(i)),
                rews=torch.arange(n, dtype=torch.float32),
                terminated=torch.tensor([False] * (n - 1) + [True]),
                truncated=torch.zeros(n, dtype=torch.bool),
                infos=np.array([{"success": False}] * (n - 1) + [{"success": ok}], dtype=object),
                batch_size=[],
            )
        )
    return out


def _without_infos(t):
    names = ("obs", "acts", "rews", "terminated", "truncated", "terminal")
    return TrajectoryWithRew(**{k: getattr(t, k) for k in names}, infos=None, batch_size=[])


def _need(module, extra):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'torchbuf[{extra}]')")


def robomimic(tmp_path, ts):
    _need("h5py", "robomimic")
    from torchbuf.formats import load_robomimic, save_robomimic

    save_robomimic(tmp_path / "d.hdf5", ts, keep=info_flag("success"), drop_infos=True)
    return load_robomimic(tmp_path / "d.hdf5", obs_key="state"), [_without_infos(t) for t in ts]


def lerobot(tmp_path, ts):
    for module in ("pyarrow", "pandas", "PIL"):
        _need(module, "lerobot")
    from torchbuf.formats import load_lerobot, save_lerobot

    tasks = [f"task {i}" for i in range(len(ts))]
    save_lerobot(
        tmp_path / "ds", ts, fps=10, task=tasks, keep=info_flag(), drop_final_obs=True, drop_infos=True
    )
    frames = load_lerobot(tmp_path / "ds")
    episodes = frames["episode_index"]
    got = [frames["observation", "state"][episodes == e] for e in range(int(episodes.max()) + 1)]
    return got, [t.obs[:-1, 0] for t in ts]  # a (1,) feature loads as one scalar per frame


def minari(tmp_path, ts, monkeypatch):
    _need("minari", "minari")
    import gymnasium as gym

    from torchbuf.formats import load_minari, save_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    spaces = dict(
        observation_space=gym.spaces.Box(-100, 100, (1,), np.float32),
        action_space=gym.spaces.Box(-100, 100, (2,), np.float32),
    )
    save_minari("torchbuf/keep-v0", ts, keep=info_flag(), drop_infos=True, **spaces)
    return load_minari("torchbuf/keep-v0"), [_without_infos(t) for t in ts]


def imitation(tmp_path, ts):
    _need("imitation", "imitation")
    from torchbuf.formats import load_imitation, save_imitation

    save_imitation(tmp_path / "t.pkl", ts, "pickle", keep=info_flag())
    return load_imitation(tmp_path / "t.pkl"), ts


@pytest.mark.parametrize("fmt", ["robomimic", "lerobot", "minari", "imitation"])
def test_keep_writes_only_the_successful_episodes_in_order(tmp_path, monkeypatch, fmt):
    if fmt == "minari":
        got, all_expected = minari(tmp_path, trajs(), monkeypatch)
    else:
        got, all_expected = globals()[fmt](tmp_path, trajs())
    expected = [e for e, ok in zip(all_expected, SUCCESS) if ok]
    assert len(got) == len(expected) == 2
    for g, e in zip(got, expected):
        if isinstance(e, torch.Tensor):
            torch.testing.assert_close(g, e, rtol=0, atol=0)
        else:
            assert_batches_equal(g, e)
