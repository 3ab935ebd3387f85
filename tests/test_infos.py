"""Infos never break a recording, and never alias the env's buffers.

The envs here are torchbuf's own ``TorchCartPole`` (a real gymnasium ``VectorEnv`` of
torch tensors, SAME_STEP) with infos added the way the GPU simulators give them:
ManiSkill3 3.0.1 puts a plain bool ``info["reconfigure"]`` into reset infos and keeps
per-env tensors (``success``, ``elapsed_steps``) that its ``BaseEnv`` updates in place;
Isaac Lab and mjlab put 0-dim tensors into ``extras["log"]``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tests.synccount import count_ops
from torchbuf import VectorBufferingWrapper
from torchbuf.envs import TorchCartPole

N = 3


class Counter:
    """A Python object in an info (kept as given, never copied)."""


class InfoCartPole(TorchCartPole):
    """TorchCartPole whose infos hold every kind of value a simulator puts there.

    ``count`` is one tensor that the env updates in place each step and returns
    again (ManiSkill's and Isaac Lab's buffers); ``host_count`` the same as a numpy array.
    """

    def __init__(self, n: int = N, *, only_counts: bool = False, **kwargs):
        super().__init__(n, **kwargs)
        self.only_counts = only_counts
        self.count = torch.zeros(n, dtype=torch.long)
        self.host_count = np.zeros(n, dtype=np.int64)
        self.tag = Counter()
        self.t = 0

    def _infos(self, info):
        if self.only_counts:
            info.update(count=self.count, host_count=self.host_count)
            return info
        info.update(
            count=self.count,
            host_count=self.host_count,
            reconfigure=self.t == 0,
            scale=2.5,
            name="cart",
            step=torch.tensor(self.t),
            log={"episode_reward": torch.tensor(float(self.t)), "per_env": self.count * 10},
            obj=self.tag,
            matrix=np.eye(N + 1),
        )
        return info

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return obs, self._infos(dict(info))

    def step(self, actions):
        obs, rew, term, trunc, info = super().step(actions)
        self.t += 1
        self.count += 1  # in place, as the simulators do
        self.host_count += 1
        return obs, rew, term, trunc, self._infos(info)


def _run(steps: int = 40, **kwargs):
    envs = VectorBufferingWrapper(InfoCartPole(seed=0, **kwargs))
    envs.reset(seed=0)
    for t in range(steps):
        envs.step(torch.tensor([t % 2] * N))
    return envs


def test_info_tensors_the_env_updates_in_place_keep_the_recorded_values():
    envs = _run(10, only_counts=True)
    trans = envs.pop_transitions()
    counts = sorted(int(info["count"]) for info in trans.infos)
    host = sorted(int(info["host_count"]) for info in trans.infos)
    expected = sorted(t for t in range(1, 11) for _ in range(N))
    assert counts == expected  # aliased, every info would read the env's latest value (10)
    assert host == expected
    envs.env.count += 100  # after the pop, too
    assert sorted(int(info["count"]) for info in trans.infos) == expected


def test_values_without_an_env_axis_go_to_every_env():
    envs = _run(12)
    trans = envs.pop_transitions()
    assert len(trans.infos) == 12 * N
    by_env = [trans.infos[e * 12 : (e + 1) * 12] for e in range(N)]
    for infos in by_env:
        for t, info in enumerate(infos):
            assert info["reconfigure"] is False and info["scale"] == 2.5 and info["name"] == "cart"
            assert int(info["step"]) == t + 1 and info["step"].dim() == 0
            assert float(info["log"]["episode_reward"]) == t + 1
            assert int(info["log"]["per_env"]) == 10 * (t + 1)
            assert info["obj"] is envs.env.tag
            np.testing.assert_array_equal(info["matrix"], np.eye(N + 1))
            assert int(info["count"]) == t + 1


@pytest.mark.parametrize("order", ["finished", "trajectories", "transitions"])
def test_every_pop_keeps_infos_of_any_kind(order):
    envs = _run(60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if order == "finished":
            trajs, _ = envs.pop_finished_trajectories()
            infos = [info for t in trajs for info in t.infos]
            assert trajs and all(t.terminal for t in trajs)
        elif order == "trajectories":
            trajs, _ = envs.pop_trajectories()
            infos = [info for t in trajs for info in t.infos]
        else:
            infos = list(envs.pop_transitions().infos)
    assert infos and all(info["name"] == "cart" and "count" in info for info in infos)


def test_info_snapshot_makes_no_host_sync():
    envs = VectorBufferingWrapper(InfoCartPole(seed=0))
    envs.reset(seed=0)
    actions = [torch.tensor([t % 2] * N) for t in range(30)]
    with count_ops() as counter:
        for acts in actions:
            envs.step(acts)
    assert counter.syncs == {}
    assert counter.ops["aten.clone"] >= 30 * 4  # count, step, log's two tensors: copied each step
