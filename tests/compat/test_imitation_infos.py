"""imitation ``datasets`` infos: loaded as data by default, never running code from the file.

The crafted datasets are built the way ``imitation.data.serialize.save`` builds one
(``huggingface_utils.trajectories_to_dict`` then ``datasets.Dataset.save_to_disk``),
with one info's jsonpickle text replaced by a payload an attacker would write.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("imitation", reason="imitation is not installed (the compat environment has 1.0.1)")
import datasets  # noqa: E402
import gymnasium as gym  # noqa: E402
from imitation.data import huggingface_utils, rollout, serialize  # noqa: E402
from imitation.data import types as im  # noqa: E402
from imitation.data.wrappers import RolloutInfoWrapper  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

from tests.test_jsonpickled import LIVE, _same  # noqa: E402
from torchbuf.formats import load_imitation  # noqa: E402
from torchbuf.io import UnsafeLoadError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:keys will default:DeprecationWarning")  # jsonpickle


def _crafted(path, payload):
    """Two trajectories; trajectory 1's step 2 info is ``{"ok": 1, "evil": {"x": payload}}``."""
    trajs = [
        im.TrajectoryWithRew(
            obs=np.zeros((n + 1, 2), np.float32),
            acts=np.zeros(n, np.int64),
            infos=np.array([{"i": i} for i in range(n)]),
            terminal=True,
            rews=np.zeros(n, np.float32),
        )
        for n in (2, 4)
    ]
    columns = huggingface_utils.trajectories_to_dict(trajs)
    columns["infos"][1][2] = json.dumps({"ok": 1, "evil": {"x": payload}})
    datasets.Dataset.from_dict(columns).save_to_disk(str(path))


@pytest.mark.parametrize("kind", sorted(LIVE))
def test_a_dataset_whose_info_would_run_code_is_refused_and_never_run(tmp_path, kind):
    marker = tmp_path / "ran"
    _crafted(tmp_path / "d", LIVE[kind](marker))
    with pytest.raises(UnsafeLoadError) as err:
        load_imitation(tmp_path / "d")
    assert not marker.exists()
    message = str(err.value)
    assert message.startswith("trajectory 1, step 2, info['evil']['x']: jsonpickle tag 'py/reduce'")
    assert "allow_pickle=True" in message


@pytest.mark.parametrize("kind", sorted(LIVE))
def test_allow_pickle_decodes_with_jsonpickle_and_runs_what_the_file_holds(tmp_path, kind):
    marker = tmp_path / "ran"
    _crafted(tmp_path / "d", LIVE[kind](marker))
    loaded = load_imitation(tmp_path / "d", allow_pickle=True)
    assert marker.exists()  # imitation's own decoding: the file's code ran
    assert [len(t) for t in loaded] == [2, 4] and loaded[1].infos[1] == {"i": 1}


def _real_rollouts():
    """CartPole rollouts as imitation records them: RolloutInfoWrapper's arrays in the last infos."""
    venv = DummyVecEnv([lambda: RolloutInfoWrapper(gym.make("CartPole-v1")) for _ in range(2)])
    venv.seed(0)
    sample_until = rollout.make_sample_until(min_episodes=4)
    return rollout.generate_trajectories(None, venv, sample_until, rng=np.random.default_rng(0))


def test_real_imitation_rollouts_load_by_default_exactly_as_jsonpickle_decodes_them(tmp_path):
    trajs = _real_rollouts()
    serialize.save(tmp_path / "d", trajs)
    last = json.loads(datasets.load_from_disk(str(tmp_path / "d"))["infos"][0][-1])
    assert "py/reduce" in json.dumps(last["rollout"]["obs"])  # numpy arrays, as jsonpickle writes them
    safe = load_imitation(tmp_path / "d")
    legacy = load_imitation(tmp_path / "d", allow_pickle=True)
    theirs = serialize.load(tmp_path / "d")
    assert len(safe) == len(trajs) >= 4
    for ours, old, read, orig in zip(safe, legacy, theirs, trajs):
        _same(list(ours.infos), list(old.infos))
        _same(list(ours.infos), [read.infos[i] for i in range(len(read.infos))])
        np.testing.assert_array_equal(ours.infos[-1]["rollout"]["obs"], orig.obs)
        np.testing.assert_array_equal(ours.infos[-1]["terminal_observation"], orig.obs[-1])
