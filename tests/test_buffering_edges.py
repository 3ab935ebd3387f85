"""The reference page's edge cases, bad input, and popped data staying intact."""

from __future__ import annotations

from collections import OrderedDict

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnvWrapper

from tests.helpers import ACT_SPACES, OBS_SPACES, ScheduleEnv
from torchbuf import BufferingWrapper, RolloutInfoWrapper


def _venv(n=2, ep_lens=(3,), obs="box", act="discrete", **kw):
    fns = [
        lambda i=i: ScheduleEnv(OBS_SPACES[obs], ACT_SPACES[act], ep_lens, [False] * len(ep_lens), i)
        for i in range(n)
    ]
    return BufferingWrapper(DummyVecEnv(fns), **kw)


def _zeros(venv):
    return np.zeros((venv.num_envs, *venv.action_space.shape), dtype=venv.action_space.dtype)


def test_n_transitions_counts_and_is_none_before_reset():
    venv = _venv(n=3)
    assert venv.n_transitions is None
    venv.reset()
    assert venv.n_transitions == 0
    venv.step(_zeros(venv))
    venv.step(_zeros(venv))
    assert venv.n_transitions == 6
    venv.pop_trajectories()
    assert venv.n_transitions == 0


def test_n_transitions_can_be_set_as_in_imitation():
    """imitation's preference-comparisons test sets the counter to fake a count."""
    venv = _venv(n=2)
    venv.reset()
    venv.n_transitions = 2
    assert venv.n_transitions == 2
    with pytest.raises(RuntimeError, match="before samples were accessed"):
        venv.reset()
    venv.step(_zeros(venv))
    assert venv.n_transitions == 4
    assert len(venv.pop_transitions().obs) == 2  # the data is what was recorded
    assert venv.n_transitions == 0
    venv.n_transitions = 0
    venv.reset()
    for bad in (-1, 1.5, None, True):
        with pytest.raises(ValueError, match="n_transitions must be a non-negative int"):
            venv.n_transitions = bad


def test_reset_rules():
    venv = _venv()
    for _ in range(3):
        venv.reset()  # before any step: fine
    venv.step(_zeros(venv))
    with pytest.raises(RuntimeError, match="before samples were accessed"):
        venv.reset()
    venv.pop_transitions()
    venv.reset()
    relaxed = _venv(error_on_premature_reset=False)
    relaxed.reset()
    relaxed.step(_zeros(relaxed))
    relaxed.reset()
    assert relaxed.n_transitions == 0
    assert relaxed.error_on_premature_event is False and venv.error_on_premature_event is True


def test_finished_pop_then_reset_is_allowed_and_discards_partial():
    venv = _venv(ep_lens=(2,))
    venv.reset()
    for _ in range(3):
        venv.step(_zeros(venv))
    trajs, ep_lens = venv.pop_finished_trajectories()
    assert ep_lens == [2, 2] and all(len(t) == 2 for t in trajs)
    venv.reset()  # as imitation's preference-comparisons trainer does
    with pytest.raises(RuntimeError, match="empty"):
        venv.pop_transitions()


def test_empty_pops():
    venv = _venv()
    venv.reset()
    assert venv.pop_trajectories() == ([], [])
    assert venv.pop_finished_trajectories() == ([], [])
    with pytest.raises(RuntimeError, match="empty"):
        venv.pop_transitions()


def test_ep_lens_of_episodes_spanning_pops_are_full_lengths():
    venv = _venv(n=1, ep_lens=(7,))
    venv.reset()
    lens = []
    for t in range(1, 15):
        venv.step(_zeros(venv))
        if t % 3 == 0:
            lens += venv.pop_trajectories()[1]
        if t == 4:
            venv.pop_transitions()
    lens += venv.pop_trajectories()[1]
    assert lens == [7, 7]


def test_terminal_obs_is_not_the_reset_obs():
    venv = _venv(n=2, ep_lens=(2,))
    venv.reset()
    venv.step(_zeros(venv))
    obs, _, dones, infos = venv.step(_zeros(venv))
    assert dones.all()
    trajs, _ = venv.pop_trajectories()
    for e, traj in enumerate(trajs):
        np.testing.assert_array_equal(traj.obs[-1].numpy(), infos[e]["terminal_observation"])
        assert not np.array_equal(traj.obs[-1].numpy(), obs[e])


def test_popped_tensors_never_change():
    venv = _venv(n=3, ep_lens=(2, 5), obs="dict", capacity=4)
    venv.reset()
    for _ in range(4):
        venv.step(_zeros(venv))
    trans = venv.pop_transitions()
    for _ in range(3):
        venv.step(_zeros(venv))
    trajs, _ = venv.pop_finished_trajectories()
    snapshot = [trans.clone(), [t.clone() for t in trajs]]
    for _ in range(5):
        for _ in range(20):  # capacity 4: forces growth and slot reuse
            venv.step(_zeros(venv))
        venv.pop_trajectories()
    _assert_same_tensors(trans, snapshot[0])
    for t, s in zip(trajs, snapshot[1], strict=False):
        _assert_same_tensors(t, s)


def _assert_same_tensors(a, b):
    leaves = [(k, v) for k, v in a._tensordict.items(True, True) if isinstance(v, torch.Tensor)]
    assert len(leaves) >= 5
    for key, value in leaves:
        assert torch.equal(value, b._tensordict.get(key)), key


def test_keep_infos_off():
    venv = _venv(keep_infos=False)
    venv.reset()
    venv.step(_zeros(venv))
    assert venv.pop_transitions().infos is None


def test_nan_rewards_are_recorded_faithfully():
    class NanEnv(ScheduleEnv):
        def step(self, action):
            obs, _, term, trunc, info = super().step(action)
            return obs, float("nan"), term, trunc, info

    venv = BufferingWrapper(
        DummyVecEnv([lambda: NanEnv(OBS_SPACES["box"], ACT_SPACES["discrete"], [3], [False])])
    )
    venv.reset()
    venv.step(_zeros(venv))
    assert torch.isnan(venv.pop_transitions().rews).all()


# ----------------------------------------------------------------- bad input
def test_step_before_reset():
    venv = _venv()
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(_zeros(venv))


def test_step_wait_without_step_async():
    venv = _venv()
    venv.reset()
    with pytest.raises(RuntimeError, match="step_async"):
        venv.step_wait()


def test_step_async_twice():
    venv = _venv()
    venv.reset()
    venv.step_async(_zeros(venv))
    with pytest.raises(RuntimeError, match="step_wait"):
        venv.step_async(_zeros(venv))


@pytest.mark.parametrize(
    ("act", "actions", "match"),
    [
        ("discrete", np.zeros((3,), dtype=np.int64), r"actions: expected shape \(2,\)"),
        ("box", np.zeros((2, 3), dtype=np.float32), r"actions: expected shape \(2, 2\)"),
        ("discrete", np.array([0, 9]), "env 1 gave 9"),
        ("discrete", np.array([0.5, 1.0]), "dtype float64"),
    ],
)
def test_bad_actions(act, actions, match):
    venv = _venv(act=act)
    venv.reset()
    with pytest.raises(ValueError, match=match):
        venv.step(actions)
    assert venv.n_transitions == 0


class _MangleObs(VecEnvWrapper):
    """A misbehaving VecEnv wrapper whose observations stop fitting the space."""

    def __init__(self, venv, mangle):
        super().__init__(venv)
        self.mangle = mangle

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, *rest = self.venv.step_wait()
        return self.mangle(obs), *rest


@pytest.mark.parametrize(
    ("obs", "mangle", "match"),
    [
        ("box", lambda o: o[:, :2], r"obs: expected shape \(2, 3\)"),
        ("image", lambda o: o.astype(np.float32), "obs: dtype float32 does not fit the space's uint8"),
        ("dict", lambda o: {"pos": o["pos"], "img": o["img"][:, :2]}, r"obs\['img'\]: expected shape"),
    ],
)
def test_obs_that_does_not_fit_the_space(obs, mangle, match):
    inner = _venv(obs=obs).venv
    venv = BufferingWrapper(_MangleObs(inner, mangle))
    venv.reset()
    with pytest.raises(ValueError, match=match):
        venv.step(_zeros(venv))


def test_dict_obs_whose_keys_change():
    venv = _venv(obs="dict")
    venv.reset()
    venv.venv.buf_obs = OrderedDict(pos=venv.venv.buf_obs["pos"])  # a key disappears
    venv.venv.keys = ["pos"]
    with pytest.raises(ValueError, match=r"keys \['pos'\] do not match"):
        venv.step(_zeros(venv))


# ----------------------------------------------------------------- RolloutInfoWrapper
@pytest.mark.parametrize("as_torch", [False, True])
def test_rollout_info_wrapper(as_torch):
    env = RolloutInfoWrapper(ScheduleEnv(OBS_SPACES["dict"], ACT_SPACES["discrete"], [3], [True]))
    first, _ = env.reset()
    seen, rews = [first], []
    for t in range(3):
        obs, rew, term, trunc, info = env.step(0)
        seen.append(obs)
        rews.append(rew)
        assert ("rollout" in info) == (t == 2)
    np.testing.assert_array_equal(info["rollout"]["rews"], rews)
    for key in ("pos", "img"):
        np.testing.assert_array_equal(info["rollout"]["obs"][key], np.stack([o[key] for o in seen]))
    if as_torch:
        wrapped = RolloutInfoWrapper(
            gym.wrappers.TransformObservation(
                ScheduleEnv(OBS_SPACES["box"], ACT_SPACES["discrete"], [2], [False]),
                torch.as_tensor,
                OBS_SPACES["box"],
            )
            if _transform_takes_space()
            else _TorchObs(ScheduleEnv(OBS_SPACES["box"], ACT_SPACES["discrete"], [2], [False]))
        )
        wrapped.reset()
        wrapped.step(0)
        *_, info = wrapped.step(0)
        assert isinstance(info["rollout"]["obs"], torch.Tensor) and info["rollout"]["obs"].shape == (3, 3)


def _transform_takes_space():
    import inspect

    return "observation_space" in inspect.signature(gym.wrappers.TransformObservation.__init__).parameters


class _TorchObs(gym.ObservationWrapper):
    def observation(self, observation):
        return torch.as_tensor(observation)


def test_terminal_obs_of_another_dtype_is_cast_like_the_venv_casts_the_others():
    class Float64Env(ScheduleEnv):
        """Returns float64 observations for a float32 space (SB3 casts all but the terminal one)."""

        def step(self, action):
            obs, *rest = super().step(action)
            return obs.astype(np.float64) + 0.25, *rest

    fns = [lambda: Float64Env(OBS_SPACES["box"], ACT_SPACES["discrete"], [2], [False])]
    venv = BufferingWrapper(DummyVecEnv(fns))
    venv.reset()
    venv.step(np.zeros(1, dtype=np.int64))
    _, _, dones, infos = venv.step(np.zeros(1, dtype=np.int64))
    assert dones[0] and infos[0]["terminal_observation"].dtype == np.float64
    (traj,), _ = venv.pop_trajectories()
    assert traj.obs.dtype == torch.float32
    np.testing.assert_array_equal(traj.obs[-1].numpy(), infos[0]["terminal_observation"].astype(np.float32))
