"""envpool (NEXT_STEP), synchronous and asynchronous, through VectorBufferingWrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import assert_obs_equal
from tests.reference import ListRecorder
from torchbuf.wrappers.vector import VectorBufferingWrapper

envpool = pytest.importorskip(
    "envpool", reason="envpool is not installed (extra 'envpool'; gymnasium >= 1.0)"
)


def _actions(space, n, rng):
    if hasattr(space, "n"):
        return rng.integers(0, space.n, n)
    return rng.uniform(space.low, space.high, (n, *space.shape)).astype(space.dtype)


def _drive_sync(task, n, steps, seed=0):
    env = envpool.make(task, env_type="gymnasium", num_envs=n, seed=seed, max_episode_steps=40)
    envs = VectorBufferingWrapper(env)
    obs, _ = envs.reset()
    ref = ListRecorder(list(obs))
    ended = np.zeros(n, dtype=bool)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        acts = _actions(env.single_action_space, n, rng)
        obs, rews, term, trunc, info = envs.step(acts)
        _feed(ref, np.arange(n), ended, acts, obs, rews, term, trunc, info)
    return envs, ref


def _feed(ref, ids, ended, acts, obs, rews, term, trunc, info):
    """NEXT_STEP, read from what envpool returned: a step after a done is a reset."""
    assert (info["elapsed_step"][ended[ids]] == 0).all()  # envpool's own word for a reset step
    rows = [j for j, e in enumerate(ids) if not ended[e]]
    for j, e in enumerate(ids):
        if ended[e]:
            ref.reset_env(e, obs[j])
    ref.step_rows(
        [ids[j] for j in rows], [acts[j] for j in rows], [obs[j] for j in rows], [rews[j] for j in rows],
        [bool(term[j]) for j in rows], [bool(trunc[j]) for j in rows], [None] * len(rows), [None] * len(rows),
    )  # fmt: skip
    ended[ids] = (term | trunc) & ~ended[ids]


def _check(envs, ref):
    trajs, ep_lens = envs.pop_trajectories()
    expected = ref.pop_trajectories()
    assert ep_lens == [n for *_, n in expected if n] and len(trajs) == len(expected)
    assert any(t.terminal for t in trajs), "the run should end some episodes"
    for traj, (_, obs, steps, n) in zip(trajs, expected):
        assert traj.terminal == bool(n)
        assert_obs_equal(traj.obs, np.stack(obs))
        np.testing.assert_array_equal(traj.acts.numpy(), np.stack([s[0] for s in steps]))
        np.testing.assert_array_equal(traj.rews.numpy(), np.array([s[1] for s in steps]))
        np.testing.assert_array_equal(traj.truncated.numpy(), [s[3] for s in steps])


@pytest.mark.parametrize("task", ["CartPole-v1", "HalfCheetah-v4"])
def test_sync_matches_reference(task):
    envs, ref = _drive_sync(task, n=3, steps=120)
    _check(envs, ref)


def test_async_records_only_the_envs_that_stepped():
    n, batch = 6, 3
    env = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=n, batch_size=batch, seed=3)
    envs = VectorBufferingWrapper(env)
    envs.async_reset()
    obs, rews, term, trunc, info = envs.recv()
    ref = ListRecorder([None] * n)
    ended = np.ones(n, dtype=bool)  # every env owes its reset observation
    _feed(ref, info["env_id"], ended, None, obs, rews, term, trunc, info)
    rng = np.random.default_rng(0)
    seen, sent = set(), {}
    for _ in range(150):
        ids = info["env_id"]
        acts = rng.integers(0, 2, len(ids))
        envs.send(acts, ids)
        obs, rews, term, trunc, info = envs.recv()
        seen.update(info["env_id"].tolist())
        sent.update(zip(ids.tolist(), acts))  # recv may return envs sent earlier
        acts_for = np.array([sent.get(e, 0) for e in info["env_id"].tolist()])
        _feed(ref, info["env_id"], ended, acts_for, obs, rews, term, trunc, info)
    assert seen == set(range(n))
    _check(envs, ref)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_async_send_takes_the_integer_actions_envpool_takes(dtype):
    """int32 actions (envpool accepts them) crashed send() with an index_put dtype error."""
    env = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=4, batch_size=2, seed=1)
    envs = VectorBufferingWrapper(env)
    envs.async_reset()
    *_, info = envs.recv()
    sent = {}
    for step in range(20):
        ids = info["env_id"]
        acts = np.array([(step + int(e)) % 2 for e in ids], dtype=dtype)
        envs.send(acts, ids)
        sent.update({int(e): int(a) for e, a in zip(ids, acts)})
        *_, info = envs.recv()
    tr = envs.pop_transitions()
    assert tr.acts.dtype == torch.int64  # Discrete's declared dtype
    assert len(tr) > 0 and set(tr.acts.tolist()) <= {0, 1}
