"""mjlab 1.6 (Isaac Lab's manager-based API on MuJoCo-Warp, CPU) recorded by ``VectorBufferingWrapper(env)``.

The wrapper is given the real env (``ManagerBasedRlEnv``) or mjlab's real
``RslRlVecEnvWrapper`` and detects the API. The ground truth is the env's own record,
kept beside the wrapper: every observation group returned by ``reset`` / ``step``, the
rewards, ``terminated`` and ``time_outs`` (rsl_rl: ``dones`` and
``extras["time_outs"]``). Under auto-reset the env reports no terminal observation, so
the expected terminal observation is the stand-in (NaN) with ``final_obs_unknown``;
with ``auto_reset=False`` it is the done step's own observation. Every popped
transition is compared with it, in mixed pop orders; the mismatch count must be 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("mjlab", reason="needs mjlab (the sims venv: tests/sims/requirements.txt)")

import mjlab.tasks  # noqa: E402, F401  (registers the tasks)
from mjlab.envs import ManagerBasedRlEnv  # noqa: E402
from mjlab.managers.termination_manager import TerminationTermCfg  # noqa: E402
from mjlab.rl import RslRlVecEnvWrapper  # noqa: E402
from mjlab.tasks.registry import load_env_cfg  # noqa: E402

from torchbuf import VectorBufferingWrapper  # noqa: E402
from torchbuf.adapters.detect import detect_api  # noqa: E402
from torchbuf.adapters.gymnasium import Autoreset  # noqa: E402
from torchbuf.rollout import generate_trajectories, make_sample_until  # noqa: E402

N_ENVS, N_STEPS = 4, 300
POPS = ("transitions", "trajectories", "finished")


def cart_far(env: Any, limit: float = 0.2) -> torch.Tensor:
    """A termination for the cartpole task (it has only a time limit): the cart left ``|x| <= limit``."""
    return env.scene["cartpole"].data.joint_pos[:, 0].abs() > limit


def make_env(auto_reset: bool = True) -> ManagerBasedRlEnv:
    """Mjlab-Cartpole-Balance, 4 envs on CPU, 20-step episodes that also end terminated."""
    cfg = load_env_cfg("Mjlab-Cartpole-Balance")
    cfg.scene.num_envs, cfg.episode_length_s, cfg.auto_reset = N_ENVS, 1.0, auto_reset
    cfg.terminations["cart_far"] = TerminationTermCfg(func=cart_far)
    return ManagerBasedRlEnv(cfg, device="cpu")


def groups(obs: Any, e: int) -> dict[str, torch.Tensor]:
    """Env ``e``'s observation groups, copied."""
    return {k: v[e].detach().clone() for k, v in obs.items()}


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal, NaN where NaN."""
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


class Run:
    """The env's own record per env, random pops, mismatch counts."""

    def __init__(self, envs: VectorBufferingWrapper, seed: int):
        self.envs, self.rng = envs, np.random.default_rng(seed)
        self.steps: list[list[dict[str, Any]]] = [[] for _ in range(N_ENVS)]
        self.taken = [0] * N_ENVS
        self.compared = self.bad = 0
        self.pops = dict.fromkeys(POPS, 0)

    def add(self, e: int, **step: Any) -> None:
        self.steps[e].append(step)

    def cut(self, e: int) -> None:
        """A partial reset ends env ``e``'s running episode without a terminal state."""
        if len(self.steps[e]) > self.taken[e]:
            self.steps[e][-1]["ends"] = True

    def want(self, finished: bool) -> list[dict[str, Any]]:
        out = []
        for e, steps in enumerate(self.steps):
            end = len(steps)
            if finished:
                ends = [i + 1 for i in range(self.taken[e], end) if steps[i]["ends"]]
                end = ends[-1] if ends else self.taken[e]
            out += steps[self.taken[e] : end]
            self.taken[e] = end
        return out

    def pop(self, how: str | None = None) -> None:
        how = how or POPS[sum(self.pops.values()) % 3]  # every kind, in turn
        if not self.envs.n_unpopped:
            return
        want = self.want(how == "finished")
        got = popped(self.envs, how)
        self.compared += len(got)
        self.bad += mismatches(got, want)
        self.pops[how] += 1

    def summary(self) -> str:
        flat = [s for steps in self.steps for s in steps]
        n_term, n_trunc = sum(s["term"] for s in flat), sum(s["trunc"] for s in flat)
        ends = f"{n_term} terminated, {n_trunc} truncated"
        return f"{self.compared} compared ({ends}), pops {self.pops}, mismatches {self.bad}"


def popped(envs: VectorBufferingWrapper, how: str) -> list[dict[str, Any]]:
    """The pop's transitions, in pop order (env by env), as plain dicts."""
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
    """Transitions that differ in any field (every observation group), plus the count difference."""
    bad = abs(len(got) - len(want))
    for g, w in zip(got, want):
        ok = set(g["obs"].keys()) == set(w["obs"]) == set(g["next"].keys())
        ok = ok and all(same(g["obs"][k], w["obs"][k]) and same(g["next"][k], w["next"][k]) for k in w["obs"])
        ok &= same(g["act"], w["act"])
        ok &= float(g["rew"]) == float(w["rew"])
        ok &= bool(g["term"]) == w["term"] and bool(g["trunc"]) == w["trunc"]
        ok &= bool(g["info"].get("final_obs_unknown", False)) == w["unknown"]
        ok &= "log" in g["info"]
        bad += not ok
    return bad


def unknown(obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.full_like(v, float("nan")) for k, v in obs.items()}


def test_manager_based_env_auto_reset():
    """Same-step reset without final obs: stand-ins (never the reset obs) and ``final_obs_unknown``."""
    env = make_env(auto_reset=True)
    assert detect_api(env) == "isaaclab"
    envs = VectorBufferingWrapper(env)
    assert envs.mode is Autoreset.SAME_STEP
    run = Run(envs, seed=1)
    obs, extras = envs.reset(seed=0)
    current = [groups(obs, e) for e in range(N_ENVS)]
    with pytest.warns(UserWarning, match="no final observations"):
        for t in range(1, N_STEPS + 1):
            acts = torch.as_tensor(run.rng.uniform(-1, 1, (N_ENVS, 1)), dtype=torch.float32)
            obs, rew, term, time_outs, extras = envs.step(acts)
            assert isinstance(extras["log"], dict)
            for e in range(N_ENVS):
                done = bool(term[e] | time_outs[e])
                nxt = groups(obs, e)
                run.add(e, obs=current[e], act=acts[e].clone(), next=unknown(nxt) if done else nxt,
                        rew=float(rew[e]), term=bool(term[e]), trunc=bool(time_outs[e]),
                        ends=done, unknown=done)  # fmt: skip
                current[e] = nxt
            if t % 70 == 0:  # a partial reset (Isaac Lab's env_ids) cuts env 1's running episode
                run.cut(1)
                obs, _ = envs.reset(options={"env_idx": torch.tensor([1])})
                current[1] = groups(obs, 1)
            if t % int(run.rng.integers(20, 60)) == 0:
                run.pop()
        run.pop("transitions")
    print("mjlab ManagerBasedRlEnv(auto_reset=True):", run.summary())
    flat = [s for steps in run.steps for s in steps]
    assert run.compared == len(flat) == N_ENVS * N_STEPS >= 1000 and run.bad == 0
    assert any(s["term"] for s in flat) and any(s["trunc"] for s in flat)
    assert all(run.pops.values())


def test_manager_based_env_manual_reset():
    """``auto_reset=False``: the done step's obs is the true terminal one; the caller resets by env_idx."""
    env = make_env(auto_reset=False)
    envs = VectorBufferingWrapper(env)
    assert envs.mode is Autoreset.DISABLED
    run = Run(envs, seed=2)
    obs, _ = envs.reset(seed=0)
    current = [groups(obs, e) for e in range(N_ENVS)]
    for t in range(1, N_STEPS + 1):
        acts = torch.as_tensor(run.rng.uniform(-1, 1, (N_ENVS, 1)), dtype=torch.float32)
        obs, rew, term, time_outs, _ = envs.step(acts)
        done = term | time_outs
        for e in range(N_ENVS):
            run.add(e, obs=current[e], act=acts[e].clone(), next=groups(obs, e), rew=float(rew[e]),
                    term=bool(term[e]), trunc=bool(time_outs[e]), ends=bool(done[e]),
                    unknown=False)  # fmt: skip
            current[e] = groups(obs, e)
        if done.any():
            ids = done.nonzero().reshape(-1)
            obs, _ = envs.reset(options={"env_idx": ids})
            for e in ids.tolist():
                current[e] = groups(obs, e)
        if t % int(run.rng.integers(20, 60)) == 0:
            run.pop()
    run.pop("transitions")
    print("mjlab ManagerBasedRlEnv(auto_reset=False):", run.summary())
    flat = [s for steps in run.steps for s in steps]
    assert run.compared == len(flat) == N_ENVS * N_STEPS >= 1000 and run.bad == 0
    assert any(s["term"] for s in flat) and any(s["trunc"] for s in flat)
    assert all(run.pops.values())


def test_rsl_rl_vec_env_wrapper():
    """mjlab's ``RslRlVecEnvWrapper``: TensorDict obs, long ``dones``, ``extras["time_outs"]``."""
    venv = RslRlVecEnvWrapper(make_env(auto_reset=True))
    assert detect_api(venv) == "rsl_rl"
    envs = VectorBufferingWrapper(venv)
    run = Run(envs, seed=3)
    obs, _ = envs.reset(seed=0)
    current = [groups(obs, e) for e in range(N_ENVS)]
    with pytest.warns(UserWarning, match="no final observations"):
        for t in range(1, N_STEPS + 1):
            acts = torch.as_tensor(run.rng.uniform(-1, 1, (N_ENVS, 1)), dtype=torch.float32)
            obs, rew, term, trunc, extras = envs.step(acts)
            dones, time_outs = term | trunc, extras["time_outs"]  # the env's own: dones = term | trunc
            for e in range(N_ENVS):
                done, to = bool(dones[e]), bool(time_outs[e])
                nxt = groups(obs, e)
                run.add(e, obs=current[e], act=acts[e].clone(), next=unknown(nxt) if done else nxt,
                        rew=float(rew[e]), term=done and not to, trunc=to, ends=done,
                        unknown=done)  # fmt: skip
                current[e] = nxt
            if t % int(run.rng.integers(20, 60)) == 0:
                run.pop()
        run.pop("transitions")
    print("mjlab RslRlVecEnvWrapper:", run.summary())
    flat = [s for steps in run.steps for s in steps]
    assert run.compared == len(flat) == N_ENVS * N_STEPS >= 1000 and run.bad == 0
    assert any(s["term"] for s in flat) and any(s["trunc"] for s in flat)
    assert all(run.pops.values())


def test_mismatches_are_counted():
    """The comparison can fail: one changed field of one transition is one mismatch."""
    obs = {"actor": torch.zeros(2), "critic": torch.ones(2)}
    step = dict(obs=obs, act=torch.ones(1), next=unknown(obs), rew=0.5, term=True, trunc=False, unknown=True)
    want = [step]
    got = [dict(want[0], info={"log": {}, "final_obs_unknown": torch.tensor(True)})]
    assert mismatches(got, want) == 0
    for key, value in [("next", obs), ("rew", 0.25), ("trunc", True), ("info", {"log": {}})]:
        assert mismatches([dict(got[0], **{key: value})], want) == 1
    assert mismatches([dict(got[0], obs={"actor": torch.zeros(2)})], want) == 1
    assert mismatches(got + got, want) == 1


def test_generate_trajectories_steps_the_env_with_tensors():
    """The env's observations are a dict of tensor groups: a callable policy's actions reach it as tensors."""
    envs = VectorBufferingWrapper(make_env(auto_reset=True))
    seen = []

    def policy(obs: Any) -> torch.Tensor:
        seen.append(obs)
        return torch.zeros(N_ENVS, 1)

    with pytest.warns(UserWarning, match="no final observations"):
        trajs = generate_trajectories(policy, envs, make_sample_until(min_episodes=N_ENVS), seed=0)
    assert len(trajs) == N_ENVS and all(len(t) == 20 and bool(t.truncated[-1]) for t in trajs)
    assert len(seen) == 20 and set(seen[0].keys()) == {"actor", "critic"}
