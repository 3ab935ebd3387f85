"""The envs' own record of every transition they made, and pops checked against it.

A :class:`Truth` is told by an env (or by a driver that reads only what the env
returned) each reset and each real step of each env. Transitions are keyed by their
observation's bytes, so the observations must be unique within a run (the counting
env encodes env id, episode and step in them; CartPole's float states differ).
:func:`check_pop` then pops a wrapper and compares every popped transition, field by
field, with the env's record: nothing missing, nothing twice, nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from tensordict import TensorDictBase


@dataclass
class Row:
    """One transition as the env made it."""

    env: int
    episode: int
    obs: np.ndarray
    act: np.ndarray
    next_obs: np.ndarray
    rew: float
    terminated: bool
    truncated: bool
    info: dict | None = None  # what the env's step returned, where the driver knows it


@dataclass
class Episode:
    keys: list[bytes] = field(default_factory=list)
    closed: bool = False  # ended (terminated / truncated) or cut by a reset
    ended: bool = False


def _np(x):
    """Numpy, or a dict of numpy for dict observations (dicts and TensorDicts)."""
    if isinstance(x, dict | TensorDictBase):
        return {k: _np(v) for k, v in x.items()}
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _index(x, i):
    return {k: _index(v, i) for k, v in x.items()} if isinstance(x, dict) else x[i]


def _copy(x):
    return {k: _copy(v) for k, v in x.items()} if isinstance(x, dict) else x.copy()


def _key(obs) -> bytes:
    """The bytes that name an observation (a dict's ``"id"`` entry)."""
    return np.ascontiguousarray(obs["id"] if isinstance(obs, dict) else obs, dtype=np.float32).tobytes()


def _assert_equal(got, want, what: str, dtype: bool = False) -> None:
    """Equal values (dicts key by key); with ``dtype`` the same dtypes too."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{what}: keys {got} != {want}"
        for k in want:
            _assert_equal(got[k], want[k], f"{what}[{k!r}]", dtype)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)
        assert not dtype or got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"


class Truth:
    """Every transition of ``n_envs`` envs, in the envs' own words."""

    def __init__(self, n_envs: int):
        self.rows: dict[bytes, Row] = {}
        self.episodes: list[Episode] = []
        self.current: list[int | None] = [None] * n_envs
        self.popped: set[bytes] = set()
        self.ended_lens: list[int] = []  # lengths of episodes ended since the last pop
        self.since_pop = 0  # transitions made since the last pop (``n_transitions``)

    def reset(self, env: int) -> None:
        """Env ``env`` starts a new episode (a running one is cut there)."""
        cur = self.current[env]
        if cur is not None:
            self.episodes[cur].closed = True
        self.current[env] = len(self.episodes)
        self.episodes.append(Episode())

    def step(self, env, obs, act, next_obs, rew, terminated, truncated, info=None) -> None:
        """Env ``env`` made the transition ``obs --act--> next_obs``."""
        ep_id = self.current[env]
        assert ep_id is not None, f"env {env} stepped before a reset"
        ep = self.episodes[ep_id]
        assert not ep.closed, f"env {env} stepped a closed episode"
        obs = _copy(_np(obs))
        key = _key(obs)
        assert key not in self.rows, "observations must be unique within a run"
        act, next_obs = _np(act).copy(), _copy(_np(next_obs))
        self.rows[key] = Row(
            env, ep_id, obs, act, next_obs, float(rew), bool(terminated), bool(truncated), info
        )
        ep.keys.append(key)
        self.since_pop += 1
        if terminated or truncated:
            ep.closed = ep.ended = True
            self.ended_lens.append(len(ep.keys))

    def discard_unpopped(self) -> None:
        """A full reset of the wrapper discards what no pop returned (as imitation's does)."""
        self.popped |= self.unpopped()

    def unpopped(self, finished_only: bool = False) -> set[bytes]:
        """Keys not yet popped (of closed episodes only, with ``finished_only``)."""
        out = set()
        for ep in self.episodes:
            if ep.closed or not finished_only:
                out.update(k for k in ep.keys if k not in self.popped)
        return out


def full_reset(truth: Truth, reset) -> bool:
    """Calls ``reset()`` (a full reset of the wrapper); returns whether it was allowed.

    It must raise when transitions made since the last pop are unpopped; otherwise it
    discards what no pop returned (running episodes left by ``pop_finished_trajectories``).
    """
    if truth.since_pop:
        with pytest.raises(RuntimeError, match="before samples were accessed"):
            reset()
        return False
    truth.discard_unpopped()
    reset()
    return True


def _rows(obs, acts, next_obs, rews, terminated, truncated, infos) -> list[tuple]:
    obs, acts, next_obs = _np(obs), _np(acts), _np(next_obs)
    rews, terminated, truncated = _np(rews), _np(terminated), _np(truncated)
    return [
        (
            _index(obs, i),
            acts[i],
            _index(next_obs, i),
            float(rews[i]),
            bool(terminated[i]),
            bool(truncated[i]),
            {} if infos is None else infos[i],  # keep_infos=False pops no infos
        )
        for i in range(len(rews))
    ]


def _match(truth: Truth, got: tuple) -> Row:
    obs, act, next_obs, rew, term, trunc, info = got
    row = truth.rows.get(_key(obs))
    assert row is not None, f"popped a transition the env never made: obs={obs}"
    where = f"env {row.env}, obs {row.obs}"
    _assert_equal(obs, row.obs, where, dtype=True)
    _assert_equal(act, row.act, f"acts of {where}")
    _assert_equal(next_obs, row.next_obs, f"next_obs of {where}", dtype=True)
    assert rew == row.rew, f"rews of {where}: {rew} != {row.rew}"
    assert (term, trunc) == (row.terminated, row.truncated), f"terminated/truncated of {where}"
    if (row.terminated or row.truncated) and isinstance(info, dict) and "final_info" in info:
        info = info["final_info"]  # same-step autoreset: the done step's own infos (docs/conventions.md)
    for k, v in (row.info or {}).items():
        assert k in info and np.array_equal(info[k], v), f"infos of {where}: {info} lacks {k}={v}"
    return row


def check_pop(wrapper, truth: Truth, kind: str) -> None:
    """Pops ``wrapper`` (``"transitions"``, ``"trajectories"`` or ``"finished"``) and checks it.

    Every popped transition is one the env made, equal in all six fields (and carrying
    the env's infos where the driver knows them), popped once;
    the pop returns all that it should: everything unpopped, or for ``"finished"`` all
    of the episodes that ended or were cut; ``n_transitions`` counted the transitions
    made since the last pop. Trajectories are contiguous, end in their
    terminal state when ``terminal`` and carry the lengths of the episodes that ended.
    """
    assert wrapper.n_transitions == truth.since_pop, "n_transitions"
    truth.since_pop = 0
    expected = truth.unpopped(finished_only=kind == "finished")
    if kind == "transitions":
        if not expected:
            with pytest.raises(RuntimeError, match="empty"):
                wrapper.pop_transitions()
            return
        t = wrapper.pop_transitions()
        got = _rows(t.obs, t.acts, t.next_obs, t.rews, t.terminated, t.truncated, t.infos)
        np.testing.assert_array_equal(_np(t.dones), _np(t.terminated) | _np(t.truncated))
    else:
        trajs, ep_lens = (
            wrapper.pop_finished_trajectories() if kind == "finished" else wrapper.pop_trajectories()
        )
        got = []
        for traj in trajs:
            assert len(traj.obs) == len(traj.acts) + 1
            rows = _rows(
                traj.obs[:-1], traj.acts, traj.obs[1:], traj.rews, traj.terminated, traj.truncated, traj.infos
            )
            last = _match(truth, rows[-1])
            assert bool(traj.terminal) == (last.terminated or last.truncated), "terminal flag"
            if kind == "finished":
                assert truth.episodes[last.episode].closed, "a running episode came out of pop_finished"
            assert len({_match(truth, r).episode for r in rows}) == 1, "a trajectory spans episodes"
            got += rows
        assert sorted(ep_lens) == sorted(truth.ended_lens), "ep_lens"
    keys = [_key(_match(truth, r).obs) for r in got]
    assert len(set(keys)) == len(keys), "a transition popped twice in one pop"
    assert not set(keys) & truth.popped, "a transition popped again"
    missing = expected - set(keys)
    assert not missing, (
        f"{len(missing)} transitions the env made were not popped, e.g. {truth.rows[next(iter(missing))]}"
    )
    assert set(keys) == expected
    truth.popped.update(keys)
    truth.ended_lens = []
    assert wrapper.n_transitions == 0


class CountingEnv(gym.Env):
    """Observations ``[env id, episode, step]``; tells its :class:`Truth` every reset and step.

    With ``dict_obs`` the observation is ``{"id": [env id, episode, step], "img": uint8 (2, 2)}``.

    Episodes last as scheduled (cycling through ``ep_lens``), ending terminated or
    truncated as scheduled; rewards are drawn from a seeded generator; each step's info
    holds its episode and step, which the popped infos must carry. A step of an
    episode that ended without a reset raises, as a real env's checker would.
    """

    def __init__(self, env_id: int, truth: Truth, ep_lens, truncate, act_space, seed: int, dict_obs=False):
        ids = spaces.Box(np.float32(-1), np.float32(1e6), (3,), np.float32)
        img = spaces.Box(0, 255, (2, 2), np.uint8)
        self.observation_space = spaces.Dict({"id": ids, "img": img}) if dict_obs else ids
        self.action_space = act_space
        self.env_id, self.truth = env_id, truth
        self.ep_lens, self.truncate = list(ep_lens), list(truncate)
        self.rng = np.random.default_rng(seed)
        self.episode, self.t, self.over = -1, 0, True

    def _obs(self):
        ids = np.array([self.env_id, self.episode, self.t], dtype=np.float32)
        if isinstance(self.observation_space, spaces.Dict):
            img = (self.env_id * 31 + self.episode * 7 + self.t * 3 + np.arange(4)) % 256
            return {"id": ids, "img": img.reshape(2, 2).astype(np.uint8)}
        return ids

    def reset(self, *, seed=None, options=None):
        self.episode, self.t, self.over = self.episode + 1, 0, False
        self.truth.reset(self.env_id)
        return self._obs(), {}

    def step(self, action):
        if self.over:
            raise RuntimeError(f"env {self.env_id}: step() after the episode ended, without reset()")
        obs = self._obs()
        self.t += 1
        k = self.episode % len(self.ep_lens)
        end = self.t >= self.ep_lens[k]
        trunc = end and self.truncate[k % len(self.truncate)]
        rew = float(np.float32(self.rng.normal()))
        self.over = end
        info = {"episode": self.episode, "t": self.t}
        self.truth.step(self.env_id, obs, action, self._obs(), rew, end and not trunc, trunc, info)
        return self._obs(), rew, end and not trunc, trunc, dict(info)
