"""The main job: expert rollouts recorded through torchbuf → BC → GAIL → evaluation.

:func:`run_job` runs the stages of :mod:`torchbuf.app.pipeline` for every seed of a
:class:`~torchbuf.app.config.JobConfig`, with progress bars, and returns a
:class:`JobResult`; :func:`torchbuf.app.report.write_outputs` writes its table, JSON
and plot. ``torchbuf demo`` (``make demo``) is the command-line front.

Examples:
    >>> from torchbuf.app.config import Budgets, JobConfig
    >>> budgets = Budgets(expert_episodes=2, bc_epochs=1, gail_steps=0, eval_episodes=2)
    >>> result = run_job(JobConfig(device="cpu", n_envs=2, budgets=budgets), progress=False)
    >>> result.seeds[0].recording.stats["return_mean"], result.seeds[0].gail.status
    (500.0, 'skipped')
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from tqdm import tqdm

from torchbuf.app import pipeline as stages
from torchbuf.app.config import JobConfig
from torchbuf.app.pipeline import BCRun, Evaluation, GAILRun, Recording

__all__ = ["POLICIES", "JobResult", "SeedResult", "run_job"]

POLICIES = ("expert", "BC", "GAIL", "random")
"""The evaluated policies, in table order."""


@dataclasses.dataclass
class SeedResult:
    """Every stage of one seed.

    Attributes:
        seed: The seed.
        recording: The expert episodes.
        bc: The BC run (``None`` when ``bc_epochs`` is 0).
        gail: The GAIL run (its ``status`` says whether it ran).
        evals: Evaluation of each policy of :data:`POLICIES` that exists.
    """

    seed: int
    recording: Recording
    bc: BCRun | None
    gail: GAILRun
    evals: dict[str, Evaluation]


@dataclasses.dataclass
class JobResult:
    """The whole job: its configuration, each seed's stages, the total wall time."""

    config: JobConfig
    seeds: list[SeedResult]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record of the job (no tensors, no learners)."""
        return {
            "config": {
                **dataclasses.asdict(self.config),
                "budgets": dataclasses.asdict(self.config.b),
                "rollout_envs": self.config.rollout_envs,
                "gail_envs": self.config.gail_envs,
                "gail_preset": _preset_dict(self.config),
            },
            "seconds": self.seconds,
            "gail_status": self.seeds[0].gail.status,
            "gail_reason": self.seeds[0].gail.reason,
            "seeds": [_seed_dict(s) for s in self.seeds],
        }


def run_job(config: JobConfig, *, progress: bool = True) -> JobResult:
    """Runs record → BC → GAIL → evaluation for every seed of ``config``.

    Args:
        config: The job.
        progress: Show tqdm progress bars (on stderr).

    Returns:
        The results of every stage.
    """
    start = time.perf_counter()
    seeds = [_run_seed(config, seed, progress) for seed in config.seeds]
    return JobResult(config, seeds, time.perf_counter() - start)


def _bar(progress: bool, seed: int, desc: str, total: int, unit: str) -> tqdm:
    return tqdm(total=total, desc=f"seed {seed}: {desc}", unit=unit, disable=not progress, leave=True)


def _run_seed(config: JobConfig, seed: int, progress: bool) -> SeedResult:
    b = config.b
    with _bar(progress, seed, f"record expert [{config.backend}]", b.expert_episodes, "ep") as bar:
        recording = stages.record_expert(config, seed, bar)
    bc = None
    if b.bc_epochs:
        with _bar(progress, seed, "BC", b.bc_epochs, "epoch") as bar:
            bc = stages.train_bc(recording.trajs, config, seed, bar)
    with _bar(progress, seed, f"GAIL [{config.backend}]", config.gail_steps, "step") as bar:
        gail = stages.train_gail(recording.trajs, config, seed, bar)
    policies = {
        "expert": stages.expert_policy(config.env_id),
        "BC": None if bc is None else stages.policy_of(bc.learner),
        "GAIL": None if gail.learner is None else stages.policy_of(gail.learner),
        "random": stages.random_policy_for(config, seed),
    }
    eval_seed = seed + stages.EVAL_SEED_OFFSET
    evals = {}
    for name, policy in policies.items():
        if policy is not None:
            with _bar(progress, seed, f"evaluate {name}", b.eval_episodes, "ep") as bar:
                evals[name] = stages.evaluate(policy, config, eval_seed, bar)
    return SeedResult(seed, recording, bc, gail, evals)


def _preset_dict(config: JobConfig) -> dict[str, Any] | None:
    """The GAIL settings the job used (``None`` without a preset)."""
    p = config.preset
    if p is None:
        return None
    return {"ppo_kwargs": dict(p.ppo_kwargs), "gail_kwargs": dict(p.gail_kwargs), "preset_n_envs": p.n_envs}


def _seed_dict(s: SeedResult) -> dict[str, Any]:
    rec = s.recording
    return {
        "seed": s.seed,
        "record": {
            "episodes": len(rec.trajs),
            "env_steps": rec.env_steps,
            "transitions": rec.transitions,
            "seconds": rec.seconds,
            "stats": rec.stats,
        },
        "bc": None
        if s.bc is None
        else {
            "epoch_losses": s.bc.epoch_losses,
            "batches": s.bc.batches,
            "transitions": s.bc.transitions,
            "seconds": s.bc.seconds,
        },
        "gail": {
            "status": s.gail.status,
            "reason": s.gail.reason,
            "rounds": s.gail.rounds,
            "env_steps": s.gail.env_steps,
            "seconds": s.gail.seconds,
        },
        "eval": {
            name: {
                "returns": e.returns,
                "stats": e.stats,
                "env_steps": e.env_steps,
                "seconds": e.seconds,
            }
            for name, e in s.evals.items()
        },
    }
