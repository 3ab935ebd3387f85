"""``torchbuf demo --env mjlab:Mjlab-Cartpole-Balance`` at a tiny size, checked against the env's own record.

The job runs mjlab's real ``ManagerBasedRlEnv`` (2 envs, 40-step episodes). The ground
truth is the same task stepped here, outside torchbuf, from the same seeded reset by
the same policy: its observation groups, actions and rewards. Every kept expert episode
must be one of the env's own, step for step; the evaluations of the expert and of BC's
trained learner must give the returns that those policies get in the env's own record.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tensordict import TensorDict

pytest.importorskip("mjlab", reason="needs mjlab (the sims venv: tests/sims/requirements.txt)")

import mjlab.tasks  # noqa: E402, F401  (registers the tasks)
from mjlab.envs import ManagerBasedRlEnv  # noqa: E402
from mjlab.tasks.registry import load_env_cfg  # noqa: E402

from torchbuf.app.config import Budgets, JobConfig  # noqa: E402
from torchbuf.app.demo import run_job  # noqa: E402
from torchbuf.app.pipeline import EVAL_SEED_OFFSET, policy_of  # noqa: E402
from torchbuf.envs.experts import lqr_cartpole_balance  # noqa: E402

TASK, N_ENVS, STEPS, SEED = "Mjlab-Cartpole-Balance", 2, 40, 0
TINY = Budgets(expert_episodes=2, bc_epochs=2, gail_steps=0, eval_episodes=2)


def make_env(n_envs: int = N_ENVS, steps: int = STEPS) -> ManagerBasedRlEnv:
    """The task as mjlab makes it, ``steps``-step episodes (its step is 5 x 0.01 s)."""
    cfg = load_env_cfg(TASK)
    cfg.scene.num_envs, cfg.episode_length_s = n_envs, steps * 0.05
    env = ManagerBasedRlEnv(cfg, device="cpu")
    assert env.max_episode_length == steps
    return env


def expert(obs: Any) -> torch.Tensor:
    return lqr_cartpole_balance(obs["actor"])


def own_record(policy: Any, seed: int) -> list[dict[str, torch.Tensor]]:
    """One episode of every env from ``reset(seed=seed)``: each env's obs groups, actions, rewards.

    The policy sees the groups as a TensorDict, as policies of the job do.
    """
    env = make_env()
    obs, _ = env.reset(seed=seed)
    steps = []
    for t in range(STEPS):
        acts = policy(TensorDict(obs, batch_size=[N_ENVS])).detach().clone()
        record = {k: v.clone() for k, v in obs.items()}
        obs, rew, term, time_outs, _ = env.step(acts)
        ends = {"term": term.clone(), "trunc": time_outs.clone()}
        steps.append({**record, "acts": acts, "rews": rew.clone(), **ends})
        assert bool(time_outs.all()) == (t == STEPS - 1) and not term.any()
    env.close()
    return [{k: torch.stack([s[k][e] for s in steps]) for k in steps[0]} for e in range(N_ENVS)]


@pytest.fixture(scope="module")
def job():
    config = JobConfig(
        env_id=f"mjlab:{TASK}", device="cpu", n_envs=N_ENVS, seeds=(SEED,), budgets=TINY, episode_steps=STEPS
    )
    return run_job(config, progress=False).seeds[0]


def test_recording_is_the_envs_own(job):
    own = own_record(expert, SEED)
    rec = job.recording
    assert rec.env_steps == N_ENVS * STEPS and rec.transitions == N_ENVS * STEPS and len(rec.trajs) == 2
    matched = set()
    for traj in rec.trajs:
        (e,) = [e for e in range(N_ENVS) if torch.equal(traj.obs["actor"][0], own[e]["actor"][0])]
        matched.add(e)
        for group in ("actor", "critic"):
            assert torch.equal(traj.obs[group][:-1], own[e][group])
            assert traj.obs[group][-1].isnan().all()  # mjlab reports no terminal obs: a stand-in
        assert torch.equal(traj.acts, own[e]["acts"]) and torch.equal(traj.rews, own[e]["rews"])
        assert torch.equal(traj.terminated, own[e]["term"]) and torch.equal(traj.truncated, own[e]["trunc"])
        assert all("log" in info for info in traj.infos)  # the env's extras, kept
        unknown = [bool(info.get("final_obs_unknown", False)) for info in traj.infos]
        assert unknown == [False] * (STEPS - 1) + [True]
    assert matched == set(range(N_ENVS))
    returns = sorted(float(own[e]["rews"].sum(dtype=torch.float64)) for e in range(N_ENVS))
    assert rec.stats["return_mean"] == pytest.approx(sum(returns) / N_ENVS, rel=1e-12)


def test_expert_and_bc_evaluated_in_the_sim(job):
    assert set(job.evals) == {"expert", "BC", "random"}  # GAIL: no preset for the task
    assert job.gail.status == "skipped"
    for e in job.evals.values():
        assert e.env_steps == N_ENVS * STEPS and e.stats["n_traj"] == 2
    eval_seed = SEED + EVAL_SEED_OFFSET
    for name, policy in [("expert", expert), ("BC", policy_of(job.bc.learner))]:
        own = own_record(policy, eval_seed)
        want = sorted(float(own[e]["rews"].sum(dtype=torch.float64)) for e in range(N_ENVS))
        assert sorted(job.evals[name].returns) == pytest.approx(want, rel=1e-12), name
    assert min(job.evals["expert"].returns) > max(job.evals["random"].returns)


def test_expert_holds_the_pole():
    """Over 100 steps from seeded resets the LQR expert keeps every step's reward near its 0.05 maximum."""
    env = make_env(n_envs=4, steps=200)
    obs, _ = env.reset(seed=1)
    rews = []
    for _ in range(100):
        obs, rew, _, _, _ = env.step(expert(obs))
        rews.append(rew)
    env.close()
    assert torch.stack(rews).min() > 0.049
