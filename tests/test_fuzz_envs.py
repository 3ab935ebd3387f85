"""Differential fuzz: every popped transition against the env's own record.

Hypothesis draws the episode lengths (1 included), the number of envs, the capacity
(1 included), box or dict observations (for the counting env) and a program of
steps, partial resets, full resets and pops of every kind in any order; each
convention runs it on real vector envs: SB3's ``DummyVecEnv``, gymnasium's
``SyncVectorEnv`` in its three autoreset modes with random
``reset(options={"reset_mask": ...})`` (in the compat environment gymnasium 0.29's,
without partial resets), envpool's CartPole sync and async with int32 and int64
actions, and torchbuf's own torch envs. The ground truth is the env's:
:class:`tests.truth.CountingEnv` tells a :class:`tests.truth.Truth` what it did, and
for envpool and the torch envs a driver reads only what the env returned (envpool's
``elapsed_step`` names its reset steps; the torch envs' ``final_obs`` their last
observations). The list-reference tests (``test_buffering_property.py``) check the
wrapper against a model of the same conventions; these check it against the envs.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.vec_env import DummyVecEnv

from tests.truth import CountingEnv, Truth, check_pop, full_reset
from torchbuf import BufferingWrapper, VectorBufferingWrapper
from torchbuf.envs import TorchCartPole, TorchPendulum

AutoresetMode = getattr(gymnasium.vector, "AutoresetMode", None)  # None: gymnasium 0.29

POPS = ("transitions", "trajectories", "finished")
FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ACT_SPACES = {
    "discrete": spaces.Discrete(4),
    "box": spaces.Box(np.float32(-1), np.float32(1), (2,), np.float32),
}

# A program: ("step",), ("reset", mask bits), ("pop", kind) or ("full",) (a full reset).
op = st.one_of(
    st.just(("step",)),
    st.just(("step",)),
    st.just(("step",)),
    st.tuples(st.just("reset"), st.integers(1, 7)),
    st.tuples(st.just("pop"), st.sampled_from(POPS)),
    st.tuples(st.just("pop"), st.sampled_from(POPS)),
    st.just(("full",)),
)
program = st.lists(op, min_size=1, max_size=30)
ep_lens = st.lists(st.integers(1, 4), min_size=1, max_size=3)
truncs = st.lists(st.booleans(), min_size=1, max_size=3)
capacity = st.sampled_from([1, 2, 64])


def _finish(wrapper, truth: Truth) -> None:
    for kind in ("finished", "trajectories", "transitions"):
        check_pop(wrapper, truth, kind)
    assert truth.unpopped() == set() and truth.popped == set(truth.rows)


def _counting(truth, schedules, act_key, dict_obs):
    return [
        lambda i=i, lens=lens, trunc=trunc: CountingEnv(
            i, truth, lens, trunc, ACT_SPACES[act_key], seed=i, dict_obs=dict_obs
        )
        for i, (lens, trunc) in enumerate(schedules)
    ]


def _mask(bits: int, n: int) -> np.ndarray:
    return np.array([bool(bits >> e & 1) for e in range(n)])


# ---------------------------------------------------------------------- SB3
@FUZZ
@given(
    schedules=st.lists(st.tuples(ep_lens, truncs), min_size=1, max_size=3),
    act_key=st.sampled_from(sorted(ACT_SPACES)),
    dict_obs=st.booleans(),
    prog=program,
    cap=capacity,
)
def test_sb3_dummy_vec_env(schedules, act_key, dict_obs, prog, cap):
    truth = Truth(len(schedules))
    venv = BufferingWrapper(DummyVecEnv(_counting(truth, schedules, act_key, dict_obs)), capacity=cap)
    venv.reset()
    space = ACT_SPACES[act_key]
    space.seed(0)
    for o in prog:
        if o[0] == "step":
            venv.step(np.stack([space.sample() for _ in range(venv.num_envs)]))
        elif o[0] == "pop":
            check_pop(venv, truth, o[1])
        elif o[0] == "full":
            full_reset(truth, venv.reset)
    _finish(venv, truth)


# ---------------------------------------------------------------------- gymnasium
def _gym_run(mode, schedules, act_key, dict_obs, prog, cap):
    """``mode=None``: gymnasium 0.29 (same-step autoreset, ``final_observation``, no partial resets)."""
    truth = Truth(len(schedules))
    fns = _counting(truth, schedules, act_key, dict_obs)
    env = SyncVectorEnv(fns) if mode is None else SyncVectorEnv(fns, autoreset_mode=mode)
    envs = VectorBufferingWrapper(env, capacity=cap)
    n = envs.num_envs
    envs.reset(seed=0)
    space = ACT_SPACES[act_key]
    space.seed(0)
    disabled = mode is not None and mode is AutoresetMode.DISABLED
    ended = np.zeros(n, dtype=bool)  # DISABLED: the caller must reset these
    for o in prog:
        if o[0] == "step":
            if disabled and ended.any():
                envs.reset(options={"reset_mask": ended})
            _, _, term, trunc, _ = envs.step(np.stack([space.sample() for _ in range(n)]))
            ended = term | trunc
        elif o[0] == "reset" and mode is not None:
            mask = _mask(o[1], n) | (ended if disabled else False)
            if mask.any():  # gymnasium refuses a mask without a True
                envs.reset(options={"reset_mask": mask})
            ended &= ~mask
        elif o[0] == "pop":
            check_pop(envs, truth, o[1])
        elif o[0] == "full" and full_reset(truth, envs.reset):
            ended[:] = False
    _finish(envs, truth)


@pytest.mark.parametrize("mode", ["NEXT_STEP", "SAME_STEP", "DISABLED"] if AutoresetMode else ["0.29"])
@settings(FUZZ, max_examples=200)
@given(
    schedules=st.lists(st.tuples(ep_lens, truncs), min_size=1, max_size=3),
    act_key=st.sampled_from(sorted(ACT_SPACES)),
    dict_obs=st.booleans(),
    prog=program,
    cap=capacity,
)
# Issue 13 item 1: a partial reset right after a one-step episode ended (NEXT_STEP lost the next step).
@example(
    schedules=[([1], [False])],
    act_key="discrete",
    dict_obs=False,
    prog=[("step",), ("reset", 1), ("step",)],
    cap=1,
)
def test_gymnasium_sync_vector_env(mode, schedules, act_key, dict_obs, prog, cap):
    _gym_run(None if mode == "0.29" else AutoresetMode[mode], schedules, act_key, dict_obs, prog, cap)


# ---------------------------------------------------------------------- torch envs
def _torch_actions(env, n, gen):
    if isinstance(env, TorchCartPole):
        return torch.randint(0, 2, (n,), generator=gen)
    return torch.rand((n, 1), generator=gen) * 4 - 2


def _torch_step(envs, truth: Truth, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    nxt, rew, term, trunc, info = envs.step(acts)
    for e in range(envs.num_envs):
        last = info["final_obs"][e] if info["_final_obs"][e] else nxt[e]
        truth.step(e, obs[e], acts[e], last, rew[e], term[e], trunc[e])
        if term[e] or trunc[e]:
            truth.reset(e)
    return nxt.clone()


@pytest.mark.parametrize("make", [TorchCartPole, TorchPendulum], ids=["cartpole", "pendulum"])
@FUZZ
@given(n=st.integers(1, 3), max_steps=st.integers(1, 4), prog=program, cap=capacity, seed=st.integers(0, 99))
def test_torch_envs(make, n, max_steps, prog, cap, seed):
    """Ground truth from the env's returns: ``final_obs`` where ``_final_obs``, else ``obs``."""
    env = make(n, seed=seed, max_episode_steps=max_steps)
    envs = VectorBufferingWrapper(env, capacity=cap)
    truth = Truth(n)
    obs, _ = envs.reset(seed=seed)
    for e in range(n):
        truth.reset(e)
    gen = torch.Generator().manual_seed(seed)
    got: list[torch.Tensor] = []
    for o in prog:
        if o[0] == "step":
            obs = _torch_step(envs, truth, obs, _torch_actions(env, n, gen))
        elif o[0] == "reset":
            mask = torch.as_tensor(_mask(o[1], n))
            obs, _ = envs.reset(options={"reset_mask": mask})
            obs = obs.clone()
            for e in np.flatnonzero(mask.numpy()):
                truth.reset(int(e))
        elif o[0] == "pop":
            check_pop(envs, truth, o[1])
        elif full_reset(truth, lambda: got.append(envs.reset()[0].clone())):
            obs = got.pop()
            for e in range(n):
                truth.reset(e)
    _finish(envs, truth)


# ---------------------------------------------------------------------- envpool
# envpool's own spaces warn that gymnasium lowered their bounds to float32.
envpool_warnings = pytest.mark.filterwarnings("ignore:.*precision lowered by casting to float32")


def _envpool():
    return pytest.importorskip("envpool", reason="envpool is not installed (extra 'envpool')")


def _feed(truth, prev, sent, obs, rew, term, trunc, info):
    """NEXT_STEP as envpool reports it: ``elapsed_step == 0`` is a reset step, no transition."""
    for j, e in enumerate(np.asarray(info["env_id"])):
        if info["elapsed_step"][j] == 0:
            truth.reset(int(e))
        else:
            truth.step(int(e), prev[e], sent[e], obs[j], rew[j], term[j], trunc[j])
        prev[e] = obs[j].copy()


@envpool_warnings
@pytest.mark.parametrize("dtype", [np.int32, np.int64], ids=["int32", "int64"])
@FUZZ
@given(
    n=st.integers(1, 3),
    max_steps=st.integers(1, 4),
    prog=program,
    cap=capacity,
    seed=st.integers(0, 99),
)
def test_envpool_sync(dtype, n, max_steps, prog, cap, seed):
    envpool = _envpool()
    env = envpool.make(
        "CartPole-v1", env_type="gymnasium", num_envs=n, seed=seed, max_episode_steps=max_steps
    )
    envs = VectorBufferingWrapper(env, capacity=cap)
    truth, prev, sent = Truth(n), {}, {}
    obs, info = envs.reset()
    for e in range(n):
        truth.reset(e)
        prev[e] = obs[e].copy()
    rng = np.random.default_rng(seed)
    got: list[np.ndarray] = []
    for o in prog:
        if o[0] == "step":
            acts = rng.integers(0, 2, n).astype(dtype)
            sent.update(enumerate(acts))
            _feed(truth, prev, sent, *envs.step(acts))
        elif o[0] == "pop":
            check_pop(envs, truth, o[1])
        elif o[0] == "full" and full_reset(truth, lambda: got.append(envs.reset()[0])):
            obs = got.pop()
            for e in range(n):
                truth.reset(e)
                prev[e] = obs[e].copy()
    _finish(envs, truth)


@envpool_warnings
@pytest.mark.parametrize("dtype", [np.int32, np.int64], ids=["int32", "int64"])
@FUZZ
@given(
    n=st.integers(1, 4),
    batch=st.integers(1, 4),
    max_steps=st.integers(1, 4),
    prog=program,
    cap=capacity,
    seed=st.integers(0, 99),
)
def test_envpool_async(dtype, n, batch, max_steps, prog, cap, seed):
    envpool = _envpool()
    batch = min(batch, n)
    env = envpool.make(
        "CartPole-v1",
        env_type="gymnasium",
        num_envs=n,
        batch_size=batch,
        seed=seed,
        max_episode_steps=max_steps,
    )
    envs = VectorBufferingWrapper(env, capacity=cap)
    truth, prev, sent = Truth(n), {}, {}
    envs.async_reset()
    rng = np.random.default_rng(seed)
    for o in prog:
        if o[0] == "step":
            obs, rew, term, trunc, info = envs.recv()
            _feed(truth, prev, sent, obs, rew, term, trunc, info)
            ids = np.asarray(info["env_id"])
            acts = rng.integers(0, 2, len(ids)).astype(dtype)
            sent.update(zip(ids.tolist(), acts))
            envs.send(acts, ids)
        elif o[0] == "pop":
            check_pop(envs, truth, o[1])
    _finish(envs, truth)
