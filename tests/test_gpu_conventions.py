"""GPU-simulator conventions through VectorBufferingWrapper, on torch-native envs.

ManiSkill3 and Isaac Lab need a GPU, so their conventions are emulated here exactly as
their documentation describes them, on top of the torch-native CartPole:

- ManiSkill3 (``ManiSkillVectorEnv``): torch tensors, same-step autoreset,
  ``info["final_observation"]`` as a full batch with mask ``info["_final_observation"]``,
  partial reset by ``reset(options={"env_idx": ...})``, dict observations.
- Isaac Lab (``ManagerBasedRLEnv``): observations are a dict of groups
  (``{"policy": ...}``), ``step`` returns ``(obs, rew, terminated, time_outs, extras)``,
  same-step reset, and no final observation in ``extras``.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.helpers import assert_obs_equal, to_numpy, torch_route
from tests.reference import ListRecorder
from tests.synccount import count_ops
from torchbuf.envs import TorchCartPole
from torchbuf.wrappers.vector import VectorBufferingWrapper


class ManiSkillStyle(TorchCartPole):
    """ManiSkill3's conventions: dict obs, ``final_observation`` keys, ``env_idx`` resets.

    As 3.0.1's ``ManiSkillVectorEnv.step`` does, the final observations (full batch) come
    only on steps where some episode ended. The real env is tested in ``tests/sims``.
    """

    metadata = {"render_modes": [], "autoreset_mode": "SameStep"}  # ManiSkill3 3.0.1 declares SAME_STEP

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        box = self.single_observation_space
        self.single_observation_space = gym.spaces.Dict({"agent": box, "extra": gym.spaces.Box(-1, 1, (1,))})
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)

    def _dict(self, obs):
        return {"agent": obs, "extra": obs[:, :1].clamp(-1, 1)}

    def reset(self, *, seed=None, options=None):
        if options and "env_idx" in options:
            mask = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
            options = {"reset_mask": mask.index_fill_(0, options["env_idx"], True)}
        obs, info = super().reset(seed=seed, options=options)
        return self._dict(obs), info

    def step(self, actions):
        obs, rew, term, trunc, info = super().step(actions)
        done = info["_final_obs"]
        info = {"final_observation": self._dict(info["final_obs"]), "_final_observation": done}
        return self._dict(obs), rew, term, trunc, info if bool(done.any()) else {}


class IsaacStyle(TorchCartPole):
    """Isaac Lab's conventions: obs groups, ``time_outs``, no final observation in extras."""

    metadata = {"render_modes": []}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.single_observation_space = gym.spaces.Dict({"policy": self.single_observation_space})
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return {"policy": obs}, info

    def step(self, actions):
        obs, rew, terminated, time_outs, _ = super().step(actions)
        return {"policy": obs}, rew, terminated, time_outs, {"log": {}}


def _policy(obs):
    return (obs[:, 2] < 0).long()  # pushes the pole over: episodes of 8 to 30 steps


def _drive(envs, steps, key=None):
    obs, _ = envs.reset(seed=0)
    pick = (lambda o: o[key]) if key else (lambda o: o)
    ref = ListRecorder([{k: v[e] for k, v in obs.items()} if key else obs[e] for e in range(envs.num_envs)])
    for _ in range(steps):
        acts = torch.randint(0, 2, (envs.num_envs,)) if key else _policy(pick(obs))
        obs, rew, term, trunc, info = envs.step(acts)
        finals = info.get("final_obs", info.get("final_observation", obs))  # ManiSkill: none where none ended
        rows = list(range(envs.num_envs))
        as_obs = (lambda b, e: {k: v[e] for k, v in b.items()}) if key else (lambda b, e: b[e])
        ref.step(
            list(acts), [as_obs(obs, e) for e in rows], list(rew), list(term), list(trunc),
            [as_obs(finals, e) for e in rows], [None] * len(rows),
        )  # fmt: skip
    return ref


def _check(envs, ref):
    trajs, ep_lens = envs.pop_trajectories()
    expected = ref.pop_trajectories()
    assert any(t.terminal for t in trajs) and ep_lens == [n for *_, n in expected if n]
    for traj, (_, obs, steps, _) in zip(trajs, expected):
        want = (
            {k: torch.stack([o[k] for o in obs]) for k in obs[0]}
            if isinstance(obs[0], dict)
            else torch.stack(obs)
        )
        assert_obs_equal(traj.obs, to_numpy(want))
        assert torch.equal(traj.acts, torch.stack([s[0] for s in steps]))
        assert torch.equal(traj.truncated, torch.stack([s[3] for s in steps]))


def test_torch_cartpole_recorded_exactly():
    envs = VectorBufferingWrapper(TorchCartPole(5, seed=0))
    ref = _drive(envs, 80)
    assert envs.device == torch.device("cpu")
    _check(envs, ref)


def test_maniskill_conventions():
    envs = VectorBufferingWrapper(ManiSkillStyle(4, seed=1))
    with warnings.catch_warnings():
        # no final observation on a step where none ended: no warning (gymnasium 0.29's own
        # deprecation warnings about wrapper attributes are not torchbuf's)
        warnings.filterwarnings("error", message=".*final observations")
        ref = _drive(envs, 60, key="agent")
    _check(envs, ref)
    envs.pop_transitions() if envs.n_unpopped else None
    obs, _ = envs.reset(options={"env_idx": torch.tensor([2])})  # partial reset keeps data
    envs.step(torch.zeros(4, dtype=torch.long))
    trajs, _ = envs.pop_trajectories()
    assert sorted(len(t) for t in trajs) == [1, 1, 1, 1]


def test_isaac_lab_without_final_obs_records_unknown_not_the_reset_obs():
    envs = VectorBufferingWrapper(IsaacStyle(3, seed=2), autoreset_mode="same_step")
    obs, _ = envs.reset(seed=0)
    with pytest.warns(UserWarning, match="no final observations"):
        for _ in range(60):
            obs, rew, term, trunc, _ = envs.step(_policy(obs["policy"]))
        trajs, _ = envs.pop_trajectories()  # dones on the device: known at the pop, without a sync before
    ended = [t for t in trajs if t.terminal]
    assert ended
    for traj in ended:
        assert torch.isnan(traj.obs["policy"][-1]).all()
        assert not torch.isnan(traj.obs["policy"][:-1]).any()
    # the batch says which terminal observations are unknown: the ended steps, no others
    for traj in trajs:
        flags = [bool(info.get("final_obs_unknown", False)) for info in traj.infos]
        assert flags == [bool(d) for d in (traj.terminated | traj.truncated)]


@pytest.mark.parametrize("route", ["cpu", "gpu"])
def test_torch_env_step_and_pop_transitions_never_sync(route, monkeypatch):
    if route == "gpu":
        torch_route(monkeypatch)  # the storage's GPU route: its reads are device reads
    envs = VectorBufferingWrapper(TorchCartPole(16, seed=0), keep_infos=False, capacity=8)
    obs, _ = envs.reset(seed=0)
    actions = [torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(t)) for t in range(60)]
    with count_ops() as counter:
        for acts in actions:
            obs, *_ = envs.step(acts)
        trans = envs.pop_transitions()
    print(
        f"60 steps x 16 torch envs + pop_transitions: {sum(counter.ops.values())} ops, "
        f"syncs={dict(counter.syncs)}"
    )
    assert counter.syncs == {}
    assert trans.batch_size[0] == 60 * 16 and bool(trans.dones.any())
    for _ in range(30):
        envs.step(torch.zeros(16, dtype=torch.long))
    with count_ops() as counter:
        trajs, ep_lens = envs.pop_trajectories()
    print(f"pop_trajectories: syncs={dict(counter.syncs)}")
    # the GPU route reads the run ends and cursors back once; the CPU's reads numpy views
    assert sum(counter.syncs.values()) == (1 if route == "gpu" else 0) and trajs


def test_torch_env_whole_path_on_meta():
    envs = VectorBufferingWrapper(TorchCartPole(8, device="meta"), keep_infos=False, capacity=4)
    assert envs.reset(seed=0)[0].device.type == "meta"
    for _ in range(20):
        envs.step(torch.zeros(8, dtype=torch.long, device="meta"))
    trans = envs.pop_transitions()
    assert trans.obs.device.type == "meta" and trans.batch_size[0] == 160


def test_ops_per_step_do_not_depend_on_n_envs(monkeypatch):
    torch_route(monkeypatch)  # the device's route: on the CPU the host reads the flags and branches on them

    def ops(n):
        envs = VectorBufferingWrapper(TorchCartPole(n, seed=0), capacity=64)
        envs.reset(seed=0)
        with count_ops() as counter:
            for _ in range(10):
                envs.step(torch.zeros(n, dtype=torch.long))
        return counter.ops

    assert ops(4) == ops(256)


@pytest.mark.skipif(gym.__version__.startswith("0."), reason="gymnasium 0.29 has no AutoresetMode")
def test_numpy_flags_never_fill_unknown_when_nothing_ended():
    """A numpy SAME_STEP env omits final_obs when nothing ended: no warning then."""
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})  # fmt: skip
    envs = VectorBufferingWrapper(env)
    envs.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            envs.step(np.zeros(2, dtype=np.int64))


def test_actions_on_another_device_than_the_env_are_an_error():
    envs = VectorBufferingWrapper(TorchCartPole(2, seed=0))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="actions: on meta, but the env's tensors are on cpu"):
        envs.step(torch.zeros(2, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match="actions: dtype torch.float32 does not fit"):
        envs.step(torch.zeros(2))
    assert envs.n_transitions == 0
