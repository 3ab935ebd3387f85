"""Comparisons of popped batches with what the list reference recorder popped."""

from __future__ import annotations

import numpy as np

from tests.helpers import assert_obs_equal, index_obs, stack_obs, to_numpy


def check_transitions(got, expected, info_ok):
    """``got``: a popped Transitions batch; ``expected``: ``ListRecorder.pop_transitions()``.

    ``info_ok(got_info, step)`` judges each kept info against the reference step tuple.
    """
    assert got.batch_size[0] == len(expected)
    obs, next_obs, acts = to_numpy(got.obs), to_numpy(got.next_obs), to_numpy(got.acts)
    for i, (o, step, next_o) in enumerate(expected):
        act, rew, term, trunc, _ = step
        assert_obs_equal(index_obs(obs, i), o)
        assert_obs_equal(index_obs(next_obs, i), next_o)
        assert_obs_equal(index_obs(acts, i), act)
        assert float(got.rews[i]) == rew
        assert bool(got.terminated[i]) == term and bool(got.truncated[i]) == trunc
        assert bool(got.dones[i]) == (term or trunc)
        assert info_ok(got.infos[i], step)


def check_trajectories(got, expected, info_ok):
    """``got``: ``(trajs, ep_lens)`` from a pop; ``expected``: ``ListRecorder.pop_trajectories()``."""
    trajs, ep_lens = got
    assert [n for *_, n in expected if n] == ep_lens
    assert len(trajs) == len(expected)
    for traj, (_, obs, steps, n) in zip(trajs, expected):
        assert traj.terminal == bool(n) and len(traj) == len(steps)
        assert_obs_equal(traj.obs, stack_obs(obs))
        assert_obs_equal(traj.acts, stack_obs([s[0] for s in steps]))
        np.testing.assert_array_equal(to_numpy(traj.rews), np.array([s[1] for s in steps]))
        np.testing.assert_array_equal(to_numpy(traj.terminated), [s[2] for s in steps])
        np.testing.assert_array_equal(to_numpy(traj.truncated), [s[3] for s in steps])
        assert all(info_ok(info, s) for info, s in zip(traj.infos, steps))
