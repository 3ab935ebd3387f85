"""The minibatch loader: seeded shuffles on the device, epochs, drop_last, dict observations."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv
from tensordict import TensorDict, TensorDictBase

from tests.synccount import count_ops
from torchbuf import BufferingWrapper
from torchbuf.envs import TorchCartPole
from torchbuf.envs.experts import scripted_cartpole
from torchbuf.loader import IMITATION_KEYS, TransitionLoader
from torchbuf.rollout import generate_trajectories, make_sample_until


def _data(n=10, device="cpu"):
    return {
        "obs": torch.arange(n, dtype=torch.float32, device=device)[:, None],
        "acts": torch.arange(n, device=device),
    }


def _rows(batches):
    return [b["acts"].tolist() for b in batches]


def test_same_seed_same_batches_and_each_epoch_reshuffles():
    a = _rows(TransitionLoader(_data(), 3, seed=7, epochs=3))
    assert a == _rows(TransitionLoader(_data(), 3, seed=7, epochs=3))
    assert a != _rows(TransitionLoader(_data(), 3, seed=8, epochs=3))
    assert a[:3] != a[3:6]  # a new permutation per epoch
    gen = torch.Generator().manual_seed(7)
    assert _rows(TransitionLoader(_data(), 3, generator=gen, epochs=3)) == a


def test_global_seed_makes_unseeded_loaders_reproducible():
    torch.manual_seed(3)
    a = _rows(TransitionLoader(_data(), 4))
    torch.manual_seed(3)
    assert _rows(TransitionLoader(_data(), 4)) == a


@pytest.mark.parametrize("drop_last", [True, False])
def test_epoch_covers_every_row_once(drop_last):
    loader = TransitionLoader(_data(10), 4, seed=0, drop_last=drop_last)
    rows = _rows(loader)
    assert [len(r) for r in rows] == ([4, 4] if drop_last else [4, 4, 2])
    assert len(loader) == loader.batches_per_epoch == len(rows)
    flat = sorted(sum(rows, []))
    assert flat == list(range(10)) if not drop_last else len(set(flat)) == 8


def test_epochs_and_endless():
    assert len(list(TransitionLoader(_data(10), 5, epochs=4, seed=0))) == 8
    endless = TransitionLoader(_data(10), 5, epochs=None, seed=0)
    assert len(list(itertools.islice(endless, 101))) == 101
    with pytest.raises(TypeError, match="endless"):
        len(endless)


def test_unshuffled_keeps_order():
    assert _rows(TransitionLoader(_data(6), 4, shuffle=False, drop_last=False)) == [[0, 1, 2, 3], [4, 5]]


def test_batches_are_copies_and_fields_stay_aligned():
    data = _data(12)
    for batch in TransitionLoader(data, 5, seed=1):
        assert torch.equal(batch["obs"][:, 0].long(), batch["acts"])
        batch["acts"].fill_(-1)
    assert torch.equal(data["acts"], torch.arange(12))


def test_dict_observations_are_tensordicts():
    obs = TensorDict(
        {"pos": torch.arange(8.0)[:, None], "nested": TensorDict({"id": torch.arange(8)}, [8])},
        batch_size=[8],
    )
    loader = TransitionLoader({"obs": obs, "acts": torch.arange(8)}, 3, seed=0)
    for batch in loader:
        assert isinstance(batch["obs"], TensorDictBase) and batch["obs"].batch_size == (3,)
        assert torch.equal(batch["obs"]["nested", "id"], batch["acts"])


def test_from_popped_transitions_and_trajectories():
    venv = BufferingWrapper(DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2))
    venv.reset()
    for _ in range(20):
        venv.step(np.zeros(2, dtype=np.int64))
    batch = next(iter(TransitionLoader(venv.pop_transitions(), 8, seed=0)))
    assert tuple(batch) == IMITATION_KEYS and batch["obs"].shape == (8, 4)
    trajs = generate_trajectories(
        scripted_cartpole, TorchCartPole(1, seed=0), make_sample_until(min_episodes=1)
    )
    loader = TransitionLoader(trajs, 100, seed=0, keys=["obs", "acts"])
    assert len(loader) == 5 and tuple(next(iter(loader))) == ("obs", "acts")


def test_numpy_mapping_moves_to_device():
    loader = TransitionLoader({"obs": np.zeros((6, 2)), "acts": np.arange(6)}, 2, seed=0)
    assert isinstance(next(iter(loader))["obs"], torch.Tensor)


def test_iteration_never_syncs():
    loader = TransitionLoader(_data(1000), 64, seed=0, epochs=2)
    with count_ops() as counter:
        batches = list(loader)
    assert counter.syncs == {} and len(batches) == 30


def test_meta_device():
    # No data exists on meta: any op that needs a value would raise.
    data = _data(100, device="meta")
    data["obs_td"] = TensorDict({"x": torch.empty(100, 3, device="meta")}, [100], device="meta")
    batches = list(TransitionLoader(data, 32, keys=["obs", "acts", "obs_td"]))
    assert len(batches) == 3 and batches[0]["obs_td"].batch_size == (32,)
    assert batches[0]["acts"].device.type == "meta"


def test_bad_input():
    with pytest.raises(ValueError, match="fewer than a batch"):
        TransitionLoader(_data(3), 4)
    assert len(TransitionLoader(_data(3), 4, drop_last=False)) == 1
    with pytest.raises(ValueError, match="different lengths"):
        TransitionLoader({"obs": torch.zeros(3, 1), "acts": torch.zeros(4)}, 2)
    with pytest.raises(ValueError, match="missing"):
        TransitionLoader({"obs": torch.zeros(3, 1)}, 2, keys=["obs", "acts"])
    with pytest.raises(ValueError, match="positive"):
        TransitionLoader(_data(), 0)
    with pytest.raises(ValueError, match="positive"):
        TransitionLoader(_data(), 2, epochs=0)
