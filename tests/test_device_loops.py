"""The step and pop loops on the torch envs, on every device: no host sync, and the env's own record.

On CUDA the loops run under ``torch.cuda.set_sync_debug_mode("error")`` (any op that
waits for the device raises); on the CPU the same loops run under
:func:`tests.synccount.count_ops`, which counts the ops that would wait on a GPU. Every
popped transition is then compared with what the env returned (``final_obs`` where
``_final_obs``, else the next ``obs``), with :class:`tests.truth.Truth`. The CUDA cases
skip where there is no CUDA device (``make gpu-check`` runs them on one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

from tests.helpers import torch_route
from tests.synccount import count_ops
from tests.truth import Truth, check_pop
from torchbuf import VectorBufferingWrapper
from torchbuf.buffer import storage as storage_module
from torchbuf.envs import TorchCartPole, TorchPendulum

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]
N_ENVS, STEPS, EPISODE = 64, 30, 7


@contextlib.contextmanager
def no_sync(device: str) -> Iterator[None]:
    """Fails if the block makes the host wait for ``device``."""
    if device == "cuda":
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return
    with count_ops() as counter:
        yield
    assert counter.syncs == {}, f"host syncs: {dict(counter.syncs)}"


class PopsWithoutSync:
    """The wrapper, its ``pop_transitions`` run under :func:`no_sync` (for :func:`check_pop`)."""

    def __init__(self, wrapper: VectorBufferingWrapper, device: str):
        self.wrapper, self.device = wrapper, device

    @property
    def n_transitions(self) -> int | None:
        return self.wrapper.n_transitions

    def pop_transitions(self):
        with no_sync(self.device):
            return self.wrapper.pop_transitions()


def _actions(env, gen: torch.Generator, device: str) -> torch.Tensor:
    n = env.num_envs
    if isinstance(env, TorchCartPole):
        return torch.randint(0, 2, (n,), generator=gen).to(device)
    return (torch.rand((n, 1), generator=gen) * 4 - 2).to(device)


def _feed(truth: Truth, step: tuple) -> None:
    obs, acts, nxt, rew, term, trunc, final, has_final = (x.cpu() for x in step)
    for e in range(len(rew)):
        last = final[e] if has_final[e] else nxt[e]
        truth.step(e, obs[e], acts[e], last, rew[e], term[e], trunc[e])
        if term[e] or trunc[e]:
            truth.reset(e)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("keep_infos", [False, True], ids=["no-infos", "infos"])
@pytest.mark.parametrize("make", [TorchCartPole, TorchPendulum], ids=["cartpole", "pendulum"])
@pytest.mark.parametrize("variant", ["default", "rebase-every-3-steps", "gpu-route"])
def test_steps_never_sync_and_pops_return_the_envs_record(make, keep_infos, device, variant, monkeypatch):
    if variant != "default" and device != "cpu":
        pytest.skip("CPU-only variant: on CUDA the default case already takes the GPU route and rebases")
    if variant == "rebase-every-3-steps":  # the cursors' shift folded in every third full-batch step
        monkeypatch.setattr(storage_module, "_SHIFTS", 3)
    if variant == "gpu-route":
        torch_route(monkeypatch)
    env = make(N_ENVS, device=device, seed=0, max_episode_steps=EPISODE)
    envs = VectorBufferingWrapper(env, keep_infos=keep_infos)
    truth, gen = Truth(N_ENVS), torch.Generator().manual_seed(0)
    obs, _ = envs.reset(seed=0)
    obs = obs.clone()
    for e in range(N_ENVS):
        truth.reset(e)
    steps = []
    for _ in range(STEPS):  # episodes end every EPISODE steps at most: several ends per env
        acts = _actions(env, gen, device)
        with no_sync(device):
            nxt, rew, term, trunc, info = envs.step(acts)
            step = (obs, acts, nxt, rew, term, trunc, info["final_obs"], info["_final_obs"])
            steps.append(tuple(x.clone() for x in step))  # the env may reuse its buffers
        obs = nxt.clone()
    for step in steps:
        _feed(truth, step)
    assert sum(r.terminated or r.truncated for r in truth.rows.values()) >= N_ENVS * (STEPS // EPISODE)
    if keep_infos:  # infos are built on the host at pop time: only the steps are checked for syncs
        check_pop(envs, truth, "transitions")
    else:
        check_pop(PopsWithoutSync(envs, device), truth, "transitions")
    assert truth.popped == set(truth.rows) and len(truth.rows) == N_ENVS * STEPS
