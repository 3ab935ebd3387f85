"""Reproduces the learners' targets table (issue 5) and writes ``eval.md`` / ``eval.json``.

Usage::

    python -m benchmarks.eval                       # every job, 3 seeds, into docs/
    python -m benchmarks.eval --jobs Pendulum-v1/torch --out docs   # rerun one job, keep the others
    python -m benchmarks.eval --report-only                         # rewrite eval.md and plots

Each job is the main job (:func:`torchbuf.app.demo.run_job`) for one env and backend,
with seeds 0, 1, 2 and 50 evaluation episodes per policy and seed; the targets read
its evaluations. A target is met when the mean return over all evaluation episodes
of the three seeds reaches it; the per-seed means are listed beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.machine import cpu_model
from torchbuf.app.config import DEFAULT_BUDGETS, JobConfig, default_device
from torchbuf.app.demo import run_job
from torchbuf.app.plots import learning_curves
from torchbuf.app.report import policy_rows, results_markdown

SEEDS = (0, 1, 2)
EVAL_EPISODES = 50

JOBS: dict[str, tuple[str, str, dict[str, int]]] = {
    "CartPole-v1/torch": ("CartPole-v1", "torch", {}),
    "CartPole-v1/sb3": ("CartPole-v1", "sb3", {"bc_epochs": 0}),  # BC's target is read on the torch job
    "Pendulum-v1/torch": ("Pendulum-v1", "torch", {}),
    "Pendulum-v1/sb3": ("Pendulum-v1", "sb3", {"bc_epochs": 0}),
}
"""Job name -> (env, backend, budget overrides)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A target of the issue, read from one policy's evaluation in one job.

    Attributes:
        name: What the target says.
        job: The job (key of :data:`JOBS`) that measures it.
        policy: ``"BC"`` or ``"GAIL"``.
        at_least: A fixed return to reach, or ``None``.
        of_expert: Reach within this fraction of the expert's mean return, or ``None``.
    """

    name: str
    job: str
    policy: str
    at_least: float | None = None
    of_expert: float | None = None

    def threshold(self, rows: dict[str, dict[str, Any]]) -> float:
        """The return to reach, given the job's pooled rows (the expert's for relative targets)."""
        if self.at_least is not None:
            return self.at_least
        assert self.of_expert is not None
        expert = rows["expert"]["return_mean"]
        return expert - self.of_expert * abs(expert)


TARGETS = (
    Target("CartPole-v1: BC from 10 expert episodes", "CartPole-v1/torch", "BC", at_least=475),
    Target("CartPole-v1: GAIL from 10 expert episodes, SB3 path", "CartPole-v1/sb3", "GAIL", at_least=450),
    Target(
        "CartPole-v1: GAIL from 10 expert episodes, torch path", "CartPole-v1/torch", "GAIL", at_least=450
    ),
    Target("Pendulum-v1: BC within 20% of the expert", "Pendulum-v1/torch", "BC", of_expert=0.2),
    Target("Pendulum-v1: GAIL within 20% of the expert, SB3 path", "Pendulum-v1/sb3", "GAIL", of_expert=0.2),
    Target(
        "Pendulum-v1: GAIL within 20% of the expert, torch path", "Pendulum-v1/torch", "GAIL", of_expert=0.2
    ),
)


def check(target: Target, job: dict[str, Any] | None) -> dict[str, Any]:
    """The target against a job's results: threshold, measured, per-seed means, verdict, gap."""
    out: dict[str, Any] = {"name": target.name, "job": target.job, "policy": target.policy}
    if job is None:
        return {**out, "verdict": "not run"}
    rows = policy_rows(job)
    out["threshold"] = target.threshold(rows)
    row = rows[target.policy]
    if "missing" in row:
        return {**out, "verdict": row["missing"]}
    measured = row["return_mean"]
    met = measured >= out["threshold"]
    return {
        **out,
        "measured": measured,
        "std": row["return_std"],
        "seed_means": row["seed_means"],
        "episodes": row["episodes"],
        "met": met,
        "verdict": "met" if met else "missed",
        "gap": 0.0 if met else out["threshold"] - measured,
    }


def _target_text(t: Target) -> str:
    if t.at_least is not None:
        return f"≥ {t.at_least:g}"
    return f"within {t.of_expert:.0%} of the expert's return"


def targets_table(checks: list[dict[str, Any]]) -> str:
    """Target / threshold / measured / per-seed / verdict, one row per target."""
    lines = [
        "| target | goal | threshold | measured (mean ± std) | seed means | met? |",
        "|---|---|---|---|---|---|",
    ]
    for t, c in zip(TARGETS, checks, strict=True):
        if "measured" not in c:
            threshold = f"{c['threshold']:.1f}" if "threshold" in c else "—"
            lines.append(f"| {t.name} | {_target_text(t)} | {threshold} | — | — | {c['verdict']} |")
            continue
        seeds = ", ".join(f"{m:.1f}" for m in c["seed_means"])
        verdict = "**met**" if c["met"] else f"**missed** by {c['gap']:.1f}"
        lines.append(
            f"| {t.name} | {_target_text(t)} | {c['threshold']:.1f} | {c['measured']:.1f} ± {c['std']:.1f} "
            f"| {seeds} | {verdict} |"
        )
    return "\n".join(lines)


QUICK = {"expert_episodes": 2, "bc_epochs": 1, "eval_episodes": 2}
"""``--quick``: a smoke run of the script with seed 0 only; its numbers mean nothing."""


def run(job_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs one job with the evaluation's seeds and episodes; returns its record."""
    env_id, backend, overrides = JOBS[job_name]
    budgets = dataclasses.replace(DEFAULT_BUDGETS[env_id], eval_episodes=EVAL_EPISODES, **overrides)
    seeds = SEEDS
    if args.quick:
        budgets = dataclasses.replace(budgets, **{k: min(v, getattr(budgets, k)) for k, v in QUICK.items()})
        seeds = (0,)
    config = JobConfig(env_id, backend, device=args.device, seeds=seeds, budgets=budgets)
    if args.quick and config.gail_steps:  # two GAIL rounds, whatever the preset's round is
        budgets = dataclasses.replace(budgets, gail_steps=2 * config.gail_round_steps)
        config = dataclasses.replace(config, budgets=budgets)
    return run_job(config, progress=not args.no_progress).to_dict()


def _stem(job_name: str) -> str:
    return "eval_" + job_name.replace("/", "_").replace("-", "_").lower()


def machine() -> dict[str, Any]:
    """Where and when the evaluation ran."""
    return {
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _tenths(values: list[float]) -> tuple[float, float]:
    """Means of the last and the previous tenth of ``values`` (NaN-free)."""
    k = max(1, len(values) // 10)
    last, previous = values[-k:], values[-2 * k : -k] or values[-k:]
    return sum(last) / len(last), sum(previous) / len(previous)


def miss_notes(results: dict[str, Any]) -> str:
    """For each missed target, per seed: the evaluation mean and the end of the training curve."""
    notes = []
    for c in results["targets"]:
        if c.get("met") is not False:
            continue
        job = results["jobs"][c["job"]]
        lines = [f"- **{c['name']}** (missed by {c['gap']:.1f}):"]
        for s in job["seeds"]:
            ev = sum(s["eval"][c["policy"]]["returns"]) / len(s["eval"][c["policy"]]["returns"])
            if c["policy"] == "GAIL":
                rets = [
                    r["gen_return_mean"] for r in s["gail"]["rounds"] if math.isfinite(r["gen_return_mean"])
                ]
                last, prev = _tenths(rets)
                curve = (
                    f"generator return over its last tenth of rounds {last:.1f} (the tenth before {prev:.1f})"
                )
            else:
                losses = s["bc"]["epoch_losses"]
                curve = f"BC loss in the last epoch {losses[-1]:.3f} (first {losses[0]:.3f})"
            lines.append(f"  - seed {s['seed']}: evaluation {ev:.1f}; {curve}.")
        notes.append("\n".join(lines))
    if not notes:
        return ""
    return (
        "## Where a target is missed\n\n"
        + "\n".join(notes)
        + "\n\nWhy, and what would help: [Learners](learners.md#targets-make-eval).\n\n"
    )


def markdown(results: dict[str, Any]) -> str:
    """``eval.md``: the targets table, then each job's tables and plot."""
    checks = results["targets"]
    met = sum(1 for c in checks if c.get("met"))
    jobs = []
    for name, job in results["jobs"].items():
        info = job["machine"]
        jobs.append(
            f"{results_markdown(job)}\nRun {info['date']} on {info['cpu']}, torch {info['torch']}, "
            f"{info['threads']} thread(s).\n\n![{name}](img/{_stem(name)}.png)\n"
        )
    return f"""# Learner evaluation

Generated by `make eval` (`python -m benchmarks.eval`); do not edit by hand.

Each job runs the main job (`torchbuf demo`) with seeds {", ".join(map(str, SEEDS))}: the
scripted expert's episodes recorded through torchbuf, BC, GAIL, and {EVAL_EPISODES} evaluation
episodes of every policy and seed on envs seeded apart from training. "Measured" pools the
evaluation episodes of the three seeds; a target is met when that mean reaches the threshold.

## Targets: {met} of {len(checks)} met

{targets_table(checks)}

{miss_notes(results)}## Jobs

{chr(10).join(jobs)}"""


ROUND_KEYS = ("gen_timesteps", "gen_return_mean", "disc_loss", "disc_acc_expert", "disc_acc_gen")
"""The GAIL round statistics ``eval.json`` keeps (``torchbuf demo``'s results.json has them all)."""


def _rounded(value: Any) -> Any:
    """``value`` with every float rounded to 4 decimals and GAIL rounds trimmed (a smaller ``eval.json``)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        if "gen_timesteps" in value:
            value = {k: v for k, v in value.items() if k in ROUND_KEYS}
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> None:
    """Runs the jobs, checks the targets, writes ``eval.json``, ``eval.md`` and the plots."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs", help="folder for eval.json, eval.md and img/eval_*.png")
    p.add_argument("--jobs", nargs="+", choices=list(JOBS), default=list(JOBS), help="jobs to (re)run")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from --out's eval.json")
    p.add_argument("--device", default=default_device())
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: seed 0, tiny budgets (meaningless numbers)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    saved = out / "eval.json"
    jobs = json.loads(saved.read_text())["jobs"] if saved.exists() else {}
    for name in [] if args.report_only else args.jobs:
        start = time.perf_counter()
        jobs[name] = {**run(name, args), "machine": machine()}
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    jobs = {name: jobs[name] for name in JOBS if name in jobs}
    results = {"targets": [check(t, jobs.get(t.job)) for t in TARGETS], "jobs": jobs}
    (out / "img").mkdir(parents=True, exist_ok=True)
    for name, job in jobs.items():
        learning_curves(job, out / "img" / f"{_stem(name)}.png")
    (out / "eval.json").write_text(json.dumps(_rounded(results), indent=None, separators=(",", ":")))
    (out / "eval.md").write_text(markdown(results))
    print(targets_table(results["targets"]))
    print(f"wrote {out / 'eval.json'}, {out / 'eval.md'}")


if __name__ == "__main__":
    main()
