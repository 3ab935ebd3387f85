"""The main job's learning curves (needs matplotlib, the ``demo`` extra).

Imported lazily: torchbuf itself does not need matplotlib.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["MISSING_MATPLOTLIB", "learning_curves"]

MISSING_MATPLOTLIB = "matplotlib is not installed (pip install 'torchbuf[demo]'): no plot written"


def learning_curves(results: dict[str, Any], path: Path) -> Path | None:
    """Plots BC's loss per epoch and GAIL's generator return per round, each seed a line.

    The GAIL panel also draws the expert's and the random policy's evaluation
    returns as horizontal lines; while GAIL is not available it says so.

    Args:
        results: The job's record (:meth:`torchbuf.app.demo.JobResult.to_dict`).
        path: The PNG to write.

    Returns:
        ``path``, or ``None`` when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax_bc, ax_gail) = plt.subplots(1, 2, figsize=(10, 3.8))
    _bc_panel(ax_bc, results)
    _gail_panel(ax_gail, results)
    c = results["config"]
    fig.suptitle(f"{c['env_id']} — {c['backend']} backend, {c['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bc_panel(ax: Any, results: dict[str, Any]) -> None:
    for s in results["seeds"]:
        if s["bc"] is not None and s["bc"]["epoch_losses"]:
            losses = s["bc"]["epoch_losses"]
            ax.plot(range(1, len(losses) + 1), losses, label=f"seed {s['seed']}")
    ax.set(title="BC training loss", xlabel="epoch", ylabel="loss (mean over the epoch)")
    if ax.lines:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "BC skipped", ha="center", va="center", transform=ax.transAxes)


def _gail_panel(ax: Any, results: dict[str, Any]) -> None:
    for s in results["seeds"]:
        points, total = [], 0.0
        for r in s["gail"]["rounds"]:
            total += r["gen_timesteps"]
            if math.isfinite(r["gen_return_mean"]):  # NaN: no episode ended in that round
                points.append((total / 1000, r["gen_return_mean"]))
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", markersize=3, label=f"seed {s['seed']}")
    for name, style in (("expert", "--"), ("random", ":")):
        returns = [r for s in results["seeds"] if name in s["eval"] for r in s["eval"][name]["returns"]]
        if returns:
            ax.axhline(sum(returns) / len(returns), color="gray", linestyle=style, label=name)
    ax.set(
        title="GAIL generator return (episodes ended in each round)",
        xlabel="generator env steps (thousands)",
        ylabel="episode return",
    )
    if not any(s["gail"]["rounds"] for s in results["seeds"]):
        why = results.get("gail_reason") or results.get("gail_status", "")
        ax.text(0.5, 0.5, f"GAIL: {why}", ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.legend(fontsize=7)
