"""Tables and files of the main job's results: markdown, JSON, and the learning curves.

Everything here reads the JSON-able record of :meth:`torchbuf.app.demo.JobResult.to_dict`,
so a saved ``results.json`` can be reported again without rerunning the job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["policy_rows", "results_markdown", "results_table", "stages_table", "write_outputs"]

POLICIES = ("expert", "BC", "GAIL", "random")


def policy_rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each policy's evaluation pooled over the seeds.

    Returns:
        A mapping from each policy's name to its pooled evaluation, a dict with keys
        ``return_mean``, ``return_std``, ``episodes``, ``env_steps``, ``seconds``,
        ``transitions_per_s`` and ``seed_means``; a policy that was not evaluated
        maps to ``{"missing": why}`` instead.
    """
    rows: dict[str, dict[str, Any]] = {}
    for name in POLICIES:
        evals = [s["eval"][name] for s in results["seeds"] if name in s["eval"]]
        if not evals:
            rows[name] = {"missing": _why_missing(results, name)}
            continue
        returns = np.concatenate([np.asarray(e["returns"], dtype=np.float64) for e in evals])
        env_steps = sum(e["env_steps"] for e in evals)
        seconds = sum(e["seconds"] for e in evals)
        rows[name] = {
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "episodes": len(returns),
            "env_steps": env_steps,
            "seconds": seconds,
            "transitions_per_s": env_steps / seconds if seconds > 0 else float("nan"),
            "seed_means": [float(np.mean(e["returns"])) for e in evals],
        }
    return rows


def _why_missing(results: dict[str, Any], name: str) -> str:
    if name == "GAIL":
        status, reason = results.get("gail_status", "skipped"), results.get("gail_reason", "")
        return f"{status}: {reason}" if reason else status
    if name == "BC":
        return "skipped: bc_epochs=0"
    return "not run"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def results_table(results: dict[str, Any]) -> str:
    """The evaluation table: one row per policy (expert, BC, GAIL, random).

    Columns: mean return ± std over all evaluation episodes of all seeds, the
    episodes, the env steps taken, the wall time and the transitions recorded per
    second (every env step is a recorded transition).
    """
    header = ["policy", "return (mean ± std)", "episodes", "env steps", "wall time (s)", "transitions/s"]
    body = []
    for name, row in policy_rows(results).items():
        if "missing" in row:
            body.append([name, row["missing"], "—", "—", "—", "—"])
            continue
        body.append(
            [
                name,
                f"{row['return_mean']:.1f} ± {row['return_std']:.1f}",
                str(row["episodes"]),
                f"{row['env_steps']:,}",
                f"{row['seconds']:.1f}",
                f"{row['transitions_per_s']:,.0f}",
            ]
        )
    return _table(header, body)


def stages_table(results: dict[str, Any]) -> str:
    """The training stages summed over seeds: recording, BC, GAIL."""
    seeds = results["seeds"]
    rec = [s["record"] for s in seeds]
    rec_steps, rec_s = sum(r["env_steps"] for r in rec), sum(r["seconds"] for r in rec)
    body = [
        [
            "record expert",
            f"{rec_steps:,} env steps, {sum(r['transitions'] for r in rec):,} in "
            f"{sum(r['episodes'] for r in rec)} complete episodes",
            f"{rec_s:.1f}",
            f"{rec_steps / rec_s:,.0f}" if rec_s > 0 else "—",
        ]
    ]
    bcs = [s["bc"] for s in seeds if s["bc"] is not None]
    if bcs:
        n, sec = sum(b["transitions"] for b in bcs), sum(b["seconds"] for b in bcs)
        batches = sum(b["batches"] for b in bcs)
        body.append(["BC", f"{batches:,} batches, {n:,} transitions", f"{sec:.1f}", f"{n / sec:,.0f}"])
    gails = [s["gail"] for s in seeds if s["gail"]["status"] == "done"]
    if gails:
        n, sec = sum(g["env_steps"] for g in gails), sum(g["seconds"] for g in gails)
        rounds = sum(len(g["rounds"]) for g in gails)
        body.append(["GAIL", f"{rounds} rounds, {n:,} generator env steps", f"{sec:.1f}", f"{n / sec:,.0f}"])
    else:
        body.append(["GAIL", _why_missing(results, "GAIL"), "—", "—"])
    return _table(["stage", "work", "wall time (s)", "transitions/s"], body)


def results_markdown(results: dict[str, Any]) -> str:
    """Both tables under a heading that names the env, backend, device and seeds."""
    c = results["config"]
    seeds = ", ".join(str(s) for s in c["seeds"])
    return (
        f"### {c['env_id']}, {c['backend']} backend, device {c['device']}, "
        f"{c['rollout_envs']} envs (GAIL {c['gail_envs']}), seeds {seeds}\n\n"
        f"{results_table(results)}\n\n{stages_table(results)}\n\n"
        f"Total wall time: {results['seconds']:.1f} s.\n"
    )


def write_outputs(results: dict[str, Any], out: Path | str) -> dict[str, Path]:
    """Writes ``results.json``, ``results.md`` and ``learning_curves.png`` under ``out``.

    The plot needs matplotlib (``pip install torchbuf[demo]``); without it the
    other files are written and the plot is left out.

    Args:
        results: The job's record (:meth:`torchbuf.app.demo.JobResult.to_dict`).
        out: Output folder (created).

    Returns:
        The files written, by kind (``"json"``, ``"markdown"``, ``"plot"``).
    """
    from torchbuf.app.plots import learning_curves

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"json": folder / "results.json", "markdown": folder / "results.md"}
    files["json"].write_text(json.dumps(results, indent=1))
    files["markdown"].write_text(results_markdown(results))
    plot = learning_curves(results, folder / "learning_curves.png")
    if plot is not None:
        files["plot"] = plot
    return files
