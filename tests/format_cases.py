"""Hypothesis strategies for trajectories that other tools' formats can carry."""

from __future__ import annotations

import copy

import numpy as np
import torch
from hypothesis import strategies as st

from tests.helpers import ACT_SPACES, OBS_SPACES, stack_obs
from torchbuf import Trajectory, TrajectoryWithRew
from torchbuf.data.convert import obs_to_tensors

CPU = torch.device("cpu")
ENDS = ["running", "terminated", "truncated"]


def samples(space, n, seed):
    """``n`` seeded samples of ``space`` as a tensor or TensorDict (dtypes as the space's)."""
    space = copy.deepcopy(space)
    space.seed(seed)
    return obs_to_tensors(stack_obs([space.sample() for _ in range(n + 1)]), n + 1, CPU)[:n]


def info_dicts(draw, n, end):
    """``n`` info dicts (string keys); at a truncated end, maybe SB3's truncation flag already."""
    items = st.dictionaries(st.sampled_from(["t", "ok", "name"]), st.integers() | st.booleans() | st.text())
    infos = draw(st.lists(items, min_size=n, max_size=n))
    if end == "truncated" and draw(st.booleans()):
        infos[-1] = {**infos[-1], "TimeLimit.truncated": True}
    out = np.empty(n, dtype=object)
    out[:] = infos
    return out


@st.composite
def episodes(draw, obs_keys, act_keys, *, rewards=(True, False), infos=True, mid_flags=False):
    """``(obs_key, act_key, trajs)``: 1-3 trajectories of 1-4 steps whose ``terminal`` matches
    their last step's flags (running, terminated or truncated); with ``mid_flags``, earlier
    steps may be flagged too."""
    obs_key, act_key = draw(st.sampled_from(obs_keys)), draw(st.sampled_from(act_keys))
    with_rew = draw(st.sampled_from(rewards))
    rew_dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    trajs = []
    for i, n in enumerate(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))):
        end = draw(st.sampled_from(ENDS))
        terminated, truncated = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
        if mid_flags and n > 1:
            terminated[:-1] = torch.tensor(draw(st.lists(st.booleans(), min_size=n - 1, max_size=n - 1)))
            truncated[:-1] = torch.tensor(draw(st.lists(st.booleans(), min_size=n - 1, max_size=n - 1)))
        terminated[-1], truncated[-1] = end == "terminated", end == "truncated"
        fields = dict(
            obs=samples(OBS_SPACES[obs_key], n + 1, 10 * i),
            acts=samples(ACT_SPACES[act_key], n, 10 * i + 1),
            terminated=terminated,
            truncated=truncated,
            infos=info_dicts(draw, n, end) if infos and draw(st.booleans()) else None,
            terminal=end != "running",
            batch_size=[],
        )
        if with_rew:
            trajs.append(TrajectoryWithRew(**fields, rews=torch.arange(n, dtype=rew_dtype) / 3 - 0.5))
        else:
            trajs.append(Trajectory(**fields))
    return obs_key, act_key, trajs
