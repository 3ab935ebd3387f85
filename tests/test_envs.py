"""torchbuf.envs against gymnasium's own CartPole-v1 / Pendulum-v1, autoreset, and sync-freedom."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from torchbuf.envs import TorchCartPole, TorchPendulum

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]
SYNC_OPS = {"aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.item"}
OBS_ATOL = 1e-5
REW_ATOL = 1e-4


def _gym_state(env: gym.Env) -> np.ndarray:
    return np.array(env.unwrapped.state, dtype=np.float64)


def _assert_pendulum_initial(state: torch.Tensor) -> None:
    assert torch.all(state[:, 0].abs() <= np.pi) and torch.all(state[:, 1].abs() <= 1.0)


def _cartpole_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2, size=n, dtype=np.int64)


def _pendulum_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    # beyond [-2, 2] on purpose: both sides must clip
    return rng.uniform(-2.5, 2.5, size=(n, 1)).astype(np.float32)


def _gym_cartpole_action(a: np.ndarray) -> int:
    return int(a)


def _gym_pendulum_action(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32)


@dataclass
class Comparison:
    max_obs_diff: float = 0.0
    max_final_obs_diff: float = 0.0
    max_rew_diff: float = 0.0
    n_terminated: int = 0
    n_truncated: int = 0
    rows_done: set[int] = field(default_factory=set)


def _step_gym(envs: list[gym.Env], actions: np.ndarray, to_gym: Callable[[np.ndarray], Any]) -> tuple:
    """Step each gymnasium env; reset the finished ones. Returns last obs, rews, term, trunc."""
    results = [env.step(to_gym(a)) for env, a in zip(envs, actions, strict=True)]
    obs = np.stack([r[0] for r in results])
    rews = np.array([float(r[1]) for r in results])
    term = np.array([bool(r[2]) for r in results])
    trunc = np.array([bool(r[3]) for r in results])
    for env, done in zip(envs, term | trunc, strict=True):
        if done:
            env.reset()
    return obs, rews, term, trunc


def _compare_with_gymnasium(
    torch_env: TorchCartPole | TorchPendulum,
    gym_envs: list[gym.Env],
    sample_actions: Callable[[np.random.Generator, int], np.ndarray],
    to_gym: Callable[[np.ndarray], Any],
    n_steps: int,
    seed: int,
) -> Comparison:
    """Run both in lockstep; after each finished episode copy gymnasium's new state into the row."""
    rng = np.random.default_rng(seed)
    n = torch_env.num_envs
    for i, env in enumerate(gym_envs):
        env.reset(seed=seed * 1000 + i)
    torch_env.reset(seed=seed)
    torch_env.set_state(np.stack([_gym_state(e) for e in gym_envs]))
    out = Comparison()
    for _ in range(n_steps):
        actions = sample_actions(rng, n)
        obs, rew, term, trunc, info = torch_env.step(torch.as_tensor(actions, device=torch_env.device))
        g_obs, g_rew, g_term, g_trunc = _step_gym(gym_envs, actions, to_gym)
        done = g_term | g_trunc
        np.testing.assert_array_equal(term.cpu().numpy(), g_term)
        np.testing.assert_array_equal(trunc.cpu().numpy(), g_trunc)
        np.testing.assert_array_equal(info["_final_obs"].cpu().numpy(), done)
        obs_np, final_np = obs.cpu().numpy(), info["final_obs"].cpu().numpy()
        assert obs_np.dtype == np.float32 and rew.dtype == torch.float32
        out.max_rew_diff = max(out.max_rew_diff, float(np.abs(rew.cpu().numpy() - g_rew).max()))
        if (~done).any():
            out.max_obs_diff = max(out.max_obs_diff, float(np.abs(obs_np[~done] - g_obs[~done]).max()))
        if done.any():
            diff = float(np.abs(final_np[done] - g_obs[done]).max())
            out.max_final_obs_diff = max(out.max_final_obs_diff, diff)
            out.rows_done.update(np.flatnonzero(done).tolist())
            torch_env.set_state(np.stack([_gym_state(e) for e in gym_envs]), mask=done)
        out.n_terminated += int(g_term.sum())
        out.n_truncated += int(g_trunc.sum())
    return out


def _assert_close(result: Comparison) -> None:
    print(result)
    assert result.max_obs_diff < OBS_ATOL
    assert result.max_final_obs_diff < OBS_ATOL
    assert result.max_rew_diff < REW_ATOL


# ---------------------------------------------------------------------------- gymnasium equivalence


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_matches_gymnasium(device: str, seed: int) -> None:
    n = 8
    gym_envs = [gym.make("CartPole-v1", disable_env_checker=True) for _ in range(n)]
    env = TorchCartPole(n, device=device)
    result = _compare_with_gymnasium(
        env, gym_envs, _cartpole_actions, _gym_cartpole_action, n_steps=300, seed=seed
    )
    _assert_close(result)
    assert result.n_terminated > 20  # random actions end episodes after ~20 steps
    assert result.rows_done == set(range(n))


@pytest.mark.parametrize("device", DEVICES)
def test_cartpole_truncation_matches_gymnasium(device: str) -> None:
    n, limit = 8, 15
    gym_envs = [gym.make("CartPole-v1", max_episode_steps=limit, disable_env_checker=True) for _ in range(n)]
    env = TorchCartPole(n, device=device, max_episode_steps=limit)
    result = _compare_with_gymnasium(
        env, gym_envs, _cartpole_actions, _gym_cartpole_action, n_steps=200, seed=7
    )
    _assert_close(result)
    assert result.n_truncated > 10 and result.n_terminated > 10


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pendulum_matches_gymnasium(device: str, seed: int) -> None:
    n = 6
    gym_envs = [gym.make("Pendulum-v1", disable_env_checker=True) for _ in range(n)]
    env = TorchPendulum(n, device=device)
    result = _compare_with_gymnasium(
        env, gym_envs, _pendulum_actions, _gym_pendulum_action, n_steps=450, seed=seed
    )
    _assert_close(result)
    assert result.n_terminated == 0
    assert result.n_truncated == 2 * n  # at steps 200 and 400


# ---------------------------------------------------------------------------- autoreset


@pytest.mark.parametrize("device", DEVICES)
def test_cartpole_autoreset_same_step(device: str) -> None:
    n, ending_row = 4, 1
    env = TorchCartPole(n, device=device, seed=0)
    env.reset()
    state = env.state
    state[ending_row] = torch.tensor([2.399, 1.0, 0.0, 0.0], dtype=torch.float64)
    env.set_state(state)
    actions = torch.tensor([0, 1, 1, 0], device=device)

    gym_envs = [gym.make("CartPole-v1", disable_env_checker=True) for _ in range(n)]
    expected = []
    for i, g in enumerate(gym_envs):
        g.reset(seed=i)
        g.unwrapped.state = state[i].cpu().numpy().copy()
        expected.append(g.step(int(actions[i]))[:3])

    obs, rew, term, trunc, info = env.step(actions)
    mask = np.array([False, True, False, False])
    np.testing.assert_array_equal(term.cpu().numpy(), [bool(e[2]) for e in expected])
    np.testing.assert_array_equal(term.cpu().numpy(), mask)
    np.testing.assert_array_equal(trunc.cpu().numpy(), np.zeros(n, bool))
    np.testing.assert_array_equal(info["_final_obs"].cpu().numpy(), mask)
    np.testing.assert_allclose(rew.cpu().numpy(), [e[1] for e in expected])
    np.testing.assert_allclose(
        info["final_obs"][ending_row].cpu().numpy(), expected[ending_row][0], atol=1e-6
    )
    # the ended row already holds a fresh initial state; the others hold the dynamics' result
    assert torch.all(obs[ending_row].abs() <= 0.05)
    for i in np.flatnonzero(~mask):
        np.testing.assert_allclose(obs[i].cpu().numpy(), expected[i][0], atol=1e-6)
    np.testing.assert_array_equal(env.elapsed_steps.cpu().numpy(), [1, 0, 1, 1])


@pytest.mark.parametrize("device", DEVICES)
def test_pendulum_truncation_autoreset_is_per_env(device: str) -> None:
    n = 3
    env = TorchPendulum(n, device=device, seed=0, max_episode_steps=3)
    env.reset()
    zeros = torch.zeros(n, 1, device=device)
    env.step(zeros)
    env.reset(options={"reset_mask": torch.tensor([True, False, False], device=device)})
    for _ in range(2):
        _, _, term, trunc, info = env.step(zeros)
    np.testing.assert_array_equal(trunc.cpu().numpy(), [False, True, True])
    np.testing.assert_array_equal(info["_final_obs"].cpu().numpy(), [False, True, True])
    assert not term.any()
    _assert_pendulum_initial(env.state[1:])
    _, _, _, trunc, info = env.step(zeros)
    np.testing.assert_array_equal(trunc.cpu().numpy(), [True, False, False])
    np.testing.assert_array_equal(env.elapsed_steps.cpu().numpy(), [0, 1, 1])


def test_final_obs_keys_present_when_nothing_ends() -> None:
    env = TorchCartPole(5, seed=0)
    obs0, _ = env.reset()
    obs, _, term, trunc, info = env.step(torch.ones(5, dtype=torch.int64))
    assert not (term | trunc).any()
    assert info["_final_obs"].dtype == torch.bool and info["_final_obs"].shape == (5,)
    assert not info["_final_obs"].any()
    assert info["final_obs"].shape == (5, 4) and info["final_obs"].dtype == torch.float32
    torch.testing.assert_close(info["final_obs"], obs)


# ---------------------------------------------------------------------------- reset


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("as_numpy", [False, True])
def test_partial_reset_only_touches_masked_rows(device: str, as_numpy: bool) -> None:
    n = 6
    env = TorchCartPole(n, device=device, seed=0)
    env.reset()
    for _ in range(5):
        env.step(torch.ones(n, dtype=torch.int64, device=device))
    before = env.state
    mask_np = np.array([True, False, False, True, False, False])
    mask = mask_np if as_numpy else torch.as_tensor(mask_np, device=device)
    obs, info = env.reset(options={"reset_mask": mask})
    after = env.state
    m = torch.as_tensor(mask_np, device=device)
    assert info == {}
    torch.testing.assert_close(after[~m], before[~m], rtol=0, atol=0)
    assert torch.all(after[m] != before[m])
    assert torch.all(after[m].abs() <= 0.05)
    torch.testing.assert_close(obs, after.to(torch.float32))
    np.testing.assert_array_equal(env.elapsed_steps.cpu().numpy(), np.where(mask_np, 0, 5))


def test_reset_bounds_and_seeding() -> None:
    env = TorchPendulum(2000, seed=3)
    obs_a, _ = env.reset()
    obs_b, _ = env.reset(seed=3)
    obs_c, _ = env.reset(seed=4)
    torch.testing.assert_close(obs_a, obs_b, rtol=0, atol=0)
    assert not torch.equal(obs_a, obs_c)
    state = env.state
    _assert_pendulum_initial(state)
    # uniform over the whole box, as gymnasium's np_random.uniform
    assert state[:, 0].min() < -3.0 and state[:, 0].max() > 3.0
    assert state[:, 1].min() < -0.95 and state[:, 1].max() > 0.95
    cart = TorchCartPole(2000, seed=3)
    cart_obs, _ = cart.reset()
    assert torch.all(cart_obs.abs() <= 0.05) and cart_obs.abs().max() > 0.049


# ---------------------------------------------------------------------------- no host sync


class OpRecorder(TorchDispatchMode):
    """Records every aten op and every copy that crosses devices."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()
        self.cross_device: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        self.ops.add(name)
        if name == "aten._to_copy" and "device" in kwargs and kwargs["device"] != args[0].device:
            self.cross_device.append(f"{name} {args[0].device}->{kwargs['device']}")
        if name == "aten.copy_" and args[0].device != args[1].device:
            self.cross_device.append(f"{name} {args[1].device}->{args[0].device}")
        return func(*args, **kwargs)


def test_op_recorder_catches_syncs() -> None:
    x = torch.ones(3)
    with OpRecorder() as rec:
        x.sum().item()
        bool(x[0])
        x.nonzero()
        x.to("meta")
    assert {"aten._local_scalar_dense", "aten.nonzero"} <= rec.ops
    assert rec.cross_device


ENV_CASES = [
    (TorchCartPole, lambda n, d: torch.randint(0, 2, (n,), device=d)),
    (TorchPendulum, lambda n, d: torch.rand(n, 1, device=d) * 5 - 2.5),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("env_cls", "make_actions"), ENV_CASES)
def test_step_never_syncs(device: str, env_cls: type, make_actions: Callable) -> None:
    n = 16
    env = env_cls(n, device=device, seed=0, max_episode_steps=10)
    env.reset()
    actions = [make_actions(n, device) for _ in range(25)]
    with OpRecorder() as rec:
        for a in actions:
            env.step(a)
    assert "aten.where" in rec.ops and rec.ops & {"aten.rand", "aten.uniform_"}  # the recorder saw step
    assert not (rec.ops & SYNC_OPS), rec.ops & SYNC_OPS
    assert rec.cross_device == []


@pytest.mark.parametrize(("env_cls", "make_actions"), ENV_CASES)
def test_step_runs_on_meta(env_cls: type, make_actions: Callable) -> None:
    n = 8
    env = env_cls(n, device="meta", max_episode_steps=3)
    obs, _ = env.reset()
    assert obs.device.type == "meta"
    for _ in range(5):
        obs, rew, term, trunc, info = env.step(make_actions(n, "meta"))
    env.reset(options={"reset_mask": torch.ones(n, dtype=torch.bool, device="meta")})
    obs_dim = env.single_observation_space.shape[0]
    assert obs.shape == (n, obs_dim) and obs.dtype == torch.float32 and obs.device.type == "meta"
    assert rew.shape == (n,) and rew.dtype == torch.float32
    assert term.dtype == torch.bool and trunc.dtype == torch.bool and term.shape == (n,)
    assert info["final_obs"].shape == (n, obs_dim) and info["_final_obs"].dtype == torch.bool


# ---------------------------------------------------------------------------- spaces, metadata, errors


@pytest.mark.parametrize("env_cls", [TorchCartPole, TorchPendulum])
def test_spaces_and_metadata(env_cls: type) -> None:
    n = 4
    env = env_cls(n, seed=0)
    gym_env = gym.make("CartPole-v1" if env_cls is TorchCartPole else "Pendulum-v1")
    space, gym_space = env.single_observation_space, gym_env.observation_space
    assert space.shape == gym_space.shape and space.dtype == gym_space.dtype
    # gymnasium 0.29 bounds CartPole's velocities by float32 max, later versions by inf
    np.testing.assert_array_equal(np.nan_to_num(space.low), np.nan_to_num(gym_space.low))
    np.testing.assert_array_equal(np.nan_to_num(space.high), np.nan_to_num(gym_space.high))
    assert env.single_action_space == gym_env.action_space
    assert env.observation_space == gym.vector.utils.batch_space(space, n)
    assert env.action_space == gym.vector.utils.batch_space(gym_env.action_space, n)
    assert isinstance(env, gym.vector.VectorEnv) and env.num_envs == n
    mode = getattr(gym.vector, "AutoresetMode", None)
    assert env.metadata["autoreset_mode"] == (mode.SAME_STEP if mode is not None else "same_step")
    obs, _ = env.reset()
    assert env.observation_space.contains(obs.numpy())


def test_bad_input_raises() -> None:
    cart = TorchCartPole(3, seed=0)
    with pytest.raises(RuntimeError, match="before reset"):
        cart.step(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="full reset"):
        cart.reset(options={"reset_mask": np.ones(3, bool)})
    cart.reset()
    with pytest.raises(ValueError, match="shape"):
        cart.step(torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer"):
        cart.step(torch.zeros(3))
    with pytest.raises(ValueError, match="meta"):
        cart.step(torch.zeros(3, dtype=torch.int64, device="meta"))
    with pytest.raises(ValueError, match="shape"):
        cart.reset(options={"reset_mask": np.ones(2, bool)})
    with pytest.raises(ValueError, match="bool"):
        cart.reset(options={"reset_mask": np.ones(3, int)})
    with pytest.raises(ValueError, match="unknown"):
        cart.reset(options={"low": -0.1})
    pend = TorchPendulum(3, seed=0)
    pend.reset()
    with pytest.raises(ValueError, match="shape"):
        pend.step(torch.zeros(3))
    with pytest.raises(ValueError, match="float"):
        pend.step(torch.zeros(3, 1, dtype=torch.int64))
