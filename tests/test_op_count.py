"""A full-batch step of the tensor path issues a fixed number of aten ops, at any n_envs.

The env is :class:`torchbuf.envs.TorchCartPole`, the torch-native stand-in for a GPU
simulator (same-step autoreset, episode ends known only on the device). Its own ops
are not counted: only what ``VectorBufferingWrapper.step`` adds around ``env.step``.
On the CPU the storage is made to take its GPU route (``index_put_`` and integer-word
views, not the numpy views it uses there), so the count is the number of ops a CUDA
step launches; where a CUDA device exists the same counts are taken on it.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from tests.helpers import torch_route
from tests.synccount import count_ops
from torchbuf import VectorBufferingWrapper
from torchbuf.envs import TorchCartPole

OPS_PER_STEP = 8
"""The budget: what a full-batch step issues today. Lower it when a change saves ops."""

N_ENVS = (1, 8, 256, 4096)
STEPS = 40


def _step_ops(n_envs: int, device: str = "cpu") -> dict[bool, list[Counter[str]]]:
    """The ops of each of ``STEPS`` steps, keyed by whether an episode ended in the step."""
    env = TorchCartPole(n_envs, device=device, seed=0)
    envs = VectorBufferingWrapper(env, capacity=2 * STEPS + 8)  # no growth on the way
    envs.reset(seed=0)
    push_left = torch.zeros(n_envs, dtype=torch.int64, device=device)  # every pole falls within STEPS
    envs.step(push_left)  # the first step allocates the per-step fields
    env_step = env.step
    by_end: dict[bool, list[Counter[str]]] = {False: [], True: []}
    for _ in range(STEPS):
        with count_ops() as counter:
            env.step = _paused(env_step, counter)  # type: ignore[method-assign]
            _, _, terminated, truncated, _ = envs.step(push_left)
        assert counter.syncs == {}, f"n_envs={n_envs}: the step waited for the device: {dict(counter.syncs)}"
        by_end[bool((terminated | truncated).any())].append(counter.ops)
    env.step = env_step  # type: ignore[method-assign]
    return by_end


def _paused(step, counter):
    def env_step(actions):
        with counter.paused():
            return step(actions)

    return env_step


def _listing(ops: Counter[str]) -> str:
    return ", ".join(f"{name} x{k}" for name, k in sorted(ops.items()))


NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=NO_CUDA)])
def ops_by_n_envs(request):
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "cpu":
            torch_route(mp)
        return {n: _step_ops(n, request.param) for n in N_ENVS}


@pytest.mark.parametrize("ended", [False, True], ids=["running", "episode-ends"])
def test_step_ops_within_budget_and_equal_at_every_n_envs(ops_by_n_envs, ended):
    reference = None
    for n_envs, by_end in ops_by_n_envs.items():
        steps = by_end[ended]
        assert steps, f"n_envs={n_envs}: no step {'with' if ended else 'without'} episode ends"
        for ops in steps:
            total = sum(ops.values())
            assert total <= OPS_PER_STEP, (
                f"n_envs={n_envs}: {total} aten ops per step, budget {OPS_PER_STEP}: {_listing(ops)}"
            )
            reference = reference or (n_envs, ops)
            assert ops == reference[1], (
                f"ops differ between n_envs={reference[0]} ({_listing(reference[1])}) "
                f"and n_envs={n_envs} ({_listing(ops)})"
            )


def test_steps_with_and_without_episode_ends_issue_the_same_ops(ops_by_n_envs):
    by_end = ops_by_n_envs[N_ENVS[-1]]
    running, ending = by_end[False][0], by_end[True][0]
    assert running == ending, f"running: {_listing(running)}; episode ends: {_listing(ending)}"
