"""ManiSkill3 3.0.1 recorded through ``VectorBufferingWrapper`` with its defaults (infos kept).

The ground truth is the env's own record, kept beside the wrapper: each step's returned
observation, and on a step where episodes ended ManiSkill's full-batch
``info["final_observation"]`` (``ManiSkillVectorEnv``, SAME_STEP) or the done step's own
observation (gymnasium's ``AsyncVectorEnv``, NEXT_STEP). Every popped transition is
compared with it, in mixed pop orders; the mismatch count must be 0.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from tests.sims.maniskill_env import as_torch, make_cpu_env, make_gym_env, require_maniskill, scripted

require_maniskill()

import gymnasium as gym  # noqa: E402
from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv  # noqa: E402

from torchbuf import VectorBufferingWrapper  # noqa: E402
from torchbuf.adapters.gymnasium import Autoreset  # noqa: E402

POPS = ("transitions", "trajectories", "finished")


@dataclass
class Truth:
    """One env's transitions as the env reported them; ``ends``: an episode ends (or is cut) there."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    popped: int = 0

    def add(self, **step: Any) -> None:
        self.steps.append(step)

    def cut(self) -> None:
        if len(self.steps) > self.popped and not self.steps[-1]["ends"]:
            self.steps[-1]["ends"] = True

    def take(self, finished_only: bool) -> list[dict[str, Any]]:
        end = len(self.steps)
        if finished_only:
            ends = [i + 1 for i in range(self.popped, end) if self.steps[i]["ends"]]
            end = ends[-1] if ends else self.popped
        out, self.popped = self.steps[self.popped : end], end
        return out


def popped(envs: VectorBufferingWrapper, how: str) -> list[dict[str, Any]]:
    """The pop's transitions, in pop order, as plain dicts."""
    if how == "transitions":
        t = envs.pop_transitions()
        return [
            dict(obs=t.obs[i], act=t.acts[i], next=t.next_obs[i], rew=t.rews[i], term=t.terminated[i],
                 trunc=t.truncated[i], info=t.infos[i])
            for i in range(len(t))
        ]  # fmt: skip
    trajs, _ = envs.pop_trajectories() if how == "trajectories" else envs.pop_finished_trajectories()
    return [
        dict(obs=tr.obs[i], act=tr.acts[i], next=tr.obs[i + 1], rew=tr.rews[i], term=tr.terminated[i],
             trunc=tr.truncated[i], info=tr.infos[i])
        for tr in trajs
        for i in range(len(tr.acts))
    ]  # fmt: skip


def mismatches(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> int:
    """Transitions that differ in any field, plus the count difference."""
    bad = abs(len(got) - len(want))
    for g, w in zip(got, want):
        same = all(torch.equal(torch.as_tensor(g[k]).cpu(), w[k]) for k in ("obs", "act", "next"))
        same &= float(g["rew"]) == float(w["rew"])
        same &= bool(g["term"]) == bool(w["term"]) and bool(g["trunc"]) == bool(w["trunc"])
        same &= bool(step_success(g["info"], w["done"])) == w["success"]
        bad += not same
    return bad


def step_success(info: dict[str, Any], done: bool) -> Any:
    """The step's ``success`` in a recorded SAME_STEP info (the done step's own info is ``final_info``)."""
    return info["final_info"]["success"] if done and "final_info" in info else info["success"]


class Run:
    """Steps a wrapped env, keeps the ground truth, pops every kind in turn, counts mismatches.

    The kinds take turns (not drawn at random) so that a run of a few pops pops each:
    the envs' own timing is not deterministic across runs (AsyncVectorEnv's processes),
    and a drawn order left one kind out of a run that way.
    """

    def __init__(self, envs: VectorBufferingWrapper, seed: int):
        self.envs, self.rng = envs, np.random.default_rng(seed)
        self.truth = [Truth() for _ in range(envs.num_envs)]
        self.compared = self.bad = 0
        self.pops = dict.fromkeys(POPS, 0)

    def pop(self, how: str | None = None) -> None:
        how = how or POPS[sum(self.pops.values()) % len(POPS)]
        if not self.envs.n_unpopped:
            return
        want = [s for t in self.truth for s in t.take(how == "finished")]
        got = popped(self.envs, how)
        self.compared += len(got)
        self.bad += mismatches(got, want)
        self.pops[how] += 1

    def drain(self) -> None:
        self.pop("transitions")

    def report(self, name: str) -> None:
        ended = [s for t in self.truth for s in t.steps]
        n_term = sum(bool(s["term"]) for s in ended)
        n_trunc = sum(bool(s["trunc"]) for s in ended)
        print(
            f"{name}: {self.compared} transitions compared ({n_term} terminated, {n_trunc} truncated), "
            f"pops {self.pops}, mismatches {self.bad}"
        )


def no_final_warning(record: pytest.WarningsRecorder) -> bool:
    return not any("final observations" in str(w.message) for w in record)


@pytest.mark.parametrize("ignore_terminations", [False, True])
def test_maniskill_vector_env_same_step(ignore_terminations, recwarn):
    venv = ManiSkillVectorEnv(make_cpu_env(max_episode_steps=30), ignore_terminations=ignore_terminations)
    envs = VectorBufferingWrapper(venv)
    assert envs.mode is Autoreset.SAME_STEP  # read from ManiSkill's own metadata
    run = Run(envs, seed=1)
    obs, _ = envs.reset(seed=0)
    current, episode, n_steps = as_torch(obs[0]), 0, 1100
    for t in range(1, n_steps + 1):
        acts = torch.from_numpy(scripted(obs, run.rng, np.array([episode % 3 == 2])))
        obs, rew, term, trunc, info = envs.step(acts)
        done = bool(term[0] | trunc[0])
        final = "final_observation" in info
        assert final == done  # ManiSkill reports final observations only where one ended
        step_info = info["final_info"] if done else info
        run.truth[0].add(
            obs=current, act=acts[0], next=as_torch(info["final_observation"][0] if done else obs[0]),
            rew=as_torch(rew[0]), term=bool(term[0]), trunc=bool(trunc[0]), ends=done, done=done,
            success=bool(step_info["success"][0]),
        )  # fmt: skip
        current, episode = as_torch(obs[0]), episode + done
        if t % 170 == 0:  # a partial reset by ManiSkill's env_idx cuts the running episode
            run.truth[0].cut()
            obs, _ = envs.reset(options={"env_idx": torch.tensor([0])})
            current, episode = as_torch(obs[0]), episode + 1
        if t % 97 == 0:  # 11 pops, each kind at least three times
            run.pop()
    run.drain()
    run.report(f"ManiSkillVectorEnv(ignore_terminations={ignore_terminations})")
    steps = run.truth[0].steps
    assert run.compared == n_steps >= 1000 and run.bad == 0
    assert any(s["trunc"] for s in steps)
    assert any(s["term"] for s in steps) != ignore_terminations
    assert all(run.pops.values())
    assert no_final_warning(recwarn)


@pytest.mark.parametrize("n_envs", [2])
def test_async_vector_env_of_cpu_maniskill_envs(n_envs, recwarn):
    """gymnasium's AsyncVectorEnv, one CPU ManiSkill env per process (NEXT_STEP)."""
    fns = [functools.partial(make_gym_env, max_episode_steps=25)] * n_envs
    venv = gym.vector.AsyncVectorEnv(fns, context="spawn")
    envs = VectorBufferingWrapper(venv)
    assert envs.mode is Autoreset.NEXT_STEP
    run = Run(envs, seed=2)
    obs, _ = envs.reset(seed=0)
    current = [as_torch(obs[e]) for e in range(n_envs)]
    episode, resetting = np.zeros(n_envs, dtype=int), np.zeros(n_envs, dtype=bool)
    try:
        for t in range(1, 701):
            acts = scripted(obs, run.rng, episode % 3 == 2)
            obs, rew, term, trunc, info = envs.step(acts)
            for e in range(n_envs):
                if not resetting[e]:
                    done = bool(term[e] or trunc[e])
                    run.truth[e].add(
                        obs=current[e], act=as_torch(acts[e]), next=as_torch(obs[e]), rew=as_torch(rew[e]),
                        term=bool(term[e]), trunc=bool(trunc[e]), ends=done, done=False,
                        success=bool(info["success"][e]),
                    )  # fmt: skip
                current[e] = as_torch(obs[e])
            episode += resetting
            resetting = term | trunc
            if t % 97 == 0:  # 7 pops, each kind at least twice
                run.pop()
        run.drain()
    finally:
        venv.close()
    run.report(f"AsyncVectorEnv({n_envs} CPU ManiSkill envs)")
    steps = [s for t in run.truth for s in t.steps]
    assert run.compared == len(steps) >= 1000 and run.bad == 0
    assert any(s["term"] for s in steps) and any(s["trunc"] for s in steps)
    assert all(run.pops.values())
    assert no_final_warning(recwarn)


def test_mismatches_are_counted():
    """The comparison can fail: one changed field of one transition is one mismatch."""
    want = [dict(obs=torch.zeros(2), act=torch.ones(1), next=torch.ones(2), rew=torch.tensor(0.5), term=True,
                 trunc=False, done=True, success=True)]  # fmt: skip
    got = [dict(want[0], info={"final_info": {"success": torch.tensor(True)}})]
    assert mismatches(got, want) == 0
    for key, value in [("next", torch.zeros(2)), ("rew", torch.tensor(0.25)), ("trunc", True)]:
        assert mismatches([dict(got[0], **{key: value})], want) == 1
    assert mismatches([dict(got[0], info={"final_info": {"success": torch.tensor(False)}})], want) == 1
    assert mismatches(got + got, want) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mismatches([], want) == 1
