"""Turns the results of :mod:`benchmarks.run` into a markdown report, target checks and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.bc import markdown as bc_markdown


def write_results(out: str | Path, name: str, results: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Writes ``<out>/<name>.json`` (the results) and ``<out>/<name>.md`` (their report).

    Args:
        out: The folder (created if missing).
        name: The files' stem, e.g. ``"io_benchmarks"``.
        results: The measured rows, with the machine and the date.
        markdown: The report made from them.

    Returns:
        The paths of the JSON and markdown files.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    data, text = folder / f"{name}.json", folder / f"{name}.md"
    data.write_text(json.dumps(results, indent=1) + "\n")
    text.write_text(markdown)
    return data, text


TARGET_ENV = "vec4"
"""The synthetic env the step and pop targets are checked on (4 float32 observations)."""


def _step(results: dict[str, Any], peer: str, env: str, n_envs: int) -> dict[str, Any] | None:
    return next(
        (r for r in results["steps"] if (r["peer"], r["env"], r["n_envs"]) == (peer, env, n_envs)),
        None,
    )


def overhead_us(results: dict[str, Any], peer: str, env: str, n_envs: int) -> float | None:
    """Step time of ``peer`` minus the bare env's, µs (``None`` if either is missing)."""
    row, bare = _step(results, peer, env, n_envs), _step(results, "bare", env, n_envs)
    return None if row is None or bare is None else row["step_us"] - bare["step_us"]


def _pop(results: dict[str, Any], peer: str, kind: str, env: str, n_envs: int, steps: int) -> float | None:
    key = (peer, kind, env, n_envs, steps)
    row = next(
        (r for r in results["pops"] if (r["peer"], r["kind"], r["env"], r["n_envs"], r["steps"]) == key), None
    )
    return None if row is None else row["ms"]


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None or den <= 0 else num / den


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Checks every target of the performance contract on these results.

    Returns:
        One row per target: ``name``, ``value`` (the measured ratio), ``goal`` and
        ``met`` (``None`` when a peer needed for it did not run).
    """
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: float, higher_is_better: bool) -> None:
        met = None if value is None else (value >= goal if higher_is_better else value <= goal)
        rows.append(
            {"name": name, "value": value, "goal": goal, "higher_is_better": higher_is_better, "met": met}
        )

    for n_envs, goal in ((1024, 1 / 50), (256, 1 / 10), (8, 1.0)):
        ratio = _ratio(
            overhead_us(results, "torchbuf", TARGET_ENV, n_envs),
            overhead_us(results, "imitation", TARGET_ENV, n_envs),
        )
        add(f"step overhead / imitation's, {n_envs} envs [{TARGET_ENV}]", ratio, goal, False)
    for kind, goal in (("pop_transitions", 100.0), ("pop_trajectories", 50.0)):
        speedup = _ratio(
            _pop(results, "imitation", kind, TARGET_ENV, 1024, 100),
            _pop(results, "torchbuf", kind, TARGET_ENV, 1024, 100),
        )
        add(f"{kind} speed-up over imitation, 1024 envs x 100 steps", speedup, goal, True)
        for n_envs in (1, 8):
            ratio = _ratio(
                _pop(results, "torchbuf", kind, TARGET_ENV, n_envs, 100),
                _pop(results, "imitation", kind, TARGET_ENV, n_envs, 100),
            )
            add(f"{kind} time / imitation's, {n_envs} envs x 100 steps", ratio, 1.0, False)
    add(
        "pop_transitions time / raw copy-out's, 1024 envs x 100 steps",
        _ratio(
            _pop(results, "torchbuf", "pop_transitions", TARGET_ENV, 1024, 100),
            _pop(results, "raw", "pop_transitions", TARGET_ENV, 1024, 100),
        ),
        3.0,
        False,
    )
    tb, raw = _step(results, "torchbuf", "img84", 64), _step(results, "raw", "img84", 64)
    add(
        "throughput / raw-copy floor's, 84x84x4 uint8, 64 envs",
        None if tb is None or raw is None else tb["transitions_per_s"] / raw["transitions_per_s"],
        0.8,
        True,
    )
    for row in results["storage"]:
        if row["peer"].startswith("torchbuf"):
            add(f"storage bytes / raw bytes, {row['peer']} [{row['env']}]", row["ratio"], 1.1, False)
    for peer in ("sb3", "torchrl"):
        for r in results["steps"]:
            if r["peer"] == peer and r["n_envs"] >= 256 and r["env"] != "cartpole":
                mine = _step(results, "torchbuf", r["env"], r["n_envs"])
                add(
                    f"step time / {peer}'s, {r['n_envs']} envs [{r['env']}]",
                    _ratio(None if mine is None else mine["step_us"], r["step_us"]),
                    1.0,
                    False,
                )
    return rows


# ------------------------------------------------------------------ markdown
def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if abs(x) >= 1 else f"{x:.3g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _step_tables(results: dict[str, Any]) -> str:
    peers = list(dict.fromkeys(r["peer"] for r in results["steps"]))
    out = []
    for env in dict.fromkeys(r["env"] for r in results["steps"]):
        ns = sorted({r["n_envs"] for r in results["steps"] if r["env"] == env})
        rows = []
        for n in ns:
            cells = [
                str(n),
                str(next(r["window"] for r in results["steps"] if (r["env"], r["n_envs"]) == (env, n))),
            ]
            for p in peers:
                row = _step(results, p, env, n)
                cells.append(
                    "—"
                    if row is None
                    else f"{_fmt(row['step_us'])} ({_fmt(row['transitions_per_s'] / 1e6, 2)})"
                )
            rows.append(cells)
        out.append(f"### {env}\n\n" + _table(["n_envs", "steps/pop", *peers], rows))
    return "\n\n".join(out)


def _pop_table(results: dict[str, Any]) -> str:
    keys = sorted({(r["env"], r["n_envs"], r["steps"]) for r in results["pops"]})
    peers = list(dict.fromkeys(r["peer"] for r in results["pops"]))
    rows = []
    for env, n, steps in keys:
        cells = [env, str(n), str(steps)]
        for kind in ("pop_transitions", "pop_trajectories"):
            cells += [_fmt(_pop(results, p, kind, env, n, steps), 2) for p in peers]
        rows.append(cells)
    header = [
        "obs",
        "n_envs",
        "steps",
        *(f"transitions: {p}" for p in peers),
        *(f"trajectories: {p}" for p in peers),
    ]
    return _table(header, rows)


def _storage_table(results: dict[str, Any]) -> str:
    rows = [
        [
            r["env"],
            r["peer"],
            str(r["window"]),
            _fmt(r["bytes_per_transition"]),
            str(r["raw_bytes"]),
            _fmt(r["ratio"], 2),
        ]
        for r in results["storage"]
    ]
    return _table(["obs", "peer", "steps", "bytes/transition", "raw bytes", "ratio"], rows)


def _memory_table(results: dict[str, Any]) -> str:
    rows = [
        [
            r["env"],
            str(r["n_envs"]),
            r["peer"],
            str(r["window"]),
            _fmt(r["peak_mem_bytes"] / 2**20),
            _fmt(r["bytes_per_transition"]),
        ]
        for r in results["steps"]
        if r["peer"] != "bare"
    ]
    return _table(
        ["obs", "n_envs", "peer", "steps/pop", "peak growth (MiB)", "storage bytes/transition"], rows
    )


def _targets_table(rows: list[dict[str, Any]]) -> str:
    verdict = {True: "**met**", False: "**missed**", None: "not run"}
    body = [
        [
            r["name"],
            _fmt(r["value"], 3),
            ("≥ " if r["higher_is_better"] else "≤ ") + _fmt(r["goal"], 3),
            verdict[r["met"]],
        ]
        for r in rows
    ]
    return _table(["target", "measured", "goal", "verdict"], body)


def markdown(results: dict[str, Any], checks: list[dict[str, Any]]) -> str:
    """The report: machine, targets, step/pop/storage/memory tables, plots."""
    m = results["machine"]
    met = sum(1 for c in checks if c["met"])
    missed = sum(1 for c in checks if c["met"] is False)
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    unavailable = "".join(f"\n- {k}: {v}" for k, v in results["unavailable"].items()) or " none"
    command = "python -m benchmarks.run" + (" --quick" if results["quick"] else "")
    return f"""# Benchmarks

Generated by `make bench` (`{command}`); do not edit by hand.

**Machine:** {m["cpu"]}, {m["cores"]} cores, {m["ram_gib"]} GiB RAM; device `{results["device"]}`,
{results["threads"]} torch thread(s); 1-minute load average at start {m["load_avg_1min_at_start"]}.
**Versions:** {versions}. **Date:** {m["date"]}. **Run time:** {results["seconds"]:.0f} s.

Peers not run:{unavailable}

## Targets: {met} met, {missed} missed

{_targets_table(checks)}

## Step time

µs per `step()` of all envs (median over windows), and in parentheses millions of
transitions recorded per second. `bare` is the env alone; the synthetic env's own step
costs about a microsecond, so a peer's time is its overhead. `steps/pop` is the window
between pops; it is capped for the big image cases so that one window holds at most
{480} MB of observations (4096 envs x 84x84x4 uint8 is 115 MB per step).

{_step_tables(results)}

![step overhead](img/step_overhead.png)

## Pops

ms per pop (median), after `steps` steps of `n_envs` envs; `raw` copies its
time-major tensors out (a floor).

{_pop_table(results)}

![pops](img/pops.png)

## Storage

Bytes each peer holds per recorded transition, against the raw bytes of
(observation, int64 action, float32 reward, terminated and truncated flags).
torchbuf's default starts at 64 slots per env and doubles (`torchbuf`: the end of the
first window); a pop then fits the rows to the longest window seen, so `torchbuf (after a
pop)` is the default at the end of the second window; `torchbuf (sized)` passes
`capacity` for the pop window. imitation keeps references to the env's arrays, so its
storage cannot be told apart from the env's.

{_storage_table(results)}

## Memory

Peak growth of the process's resident memory (device memory on CUDA) while a peer
recorded its windows, and storage bytes per transition held.

{_memory_table(results)}
{bc_markdown(results)}"""


# ------------------------------------------------------------------ plots
def plots(results: dict[str, Any], img: Path) -> list[Path]:
    """Writes ``step_overhead.png`` and ``pops.png`` (needs matplotlib).

    Returns:
        The files written (none when matplotlib is missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    img.mkdir(parents=True, exist_ok=True)
    envs = list(dict.fromkeys(r["env"] for r in results["steps"]))
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for peer in dict.fromkeys(r["peer"] for r in results["steps"]):
            pts = sorted(
                (r["n_envs"], r["step_us"]) for r in results["steps"] if (r["peer"], r["env"]) == (peer, env)
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=peer)
        ax.set(xscale="log", yscale="log", title=env, xlabel="n_envs", ylabel="µs per step")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    files = [img / "step_overhead.png"]
    fig.savefig(files[0], dpi=110)
    plt.close(fig)
    files.append(_pop_plot(results, img, plt))
    return files


def _pop_plot(results: dict[str, Any], img: Path, plt: Any) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    pops = [r for r in results["pops"] if r["env"] == TARGET_ENV]
    by_n = max({r["steps"] for r in pops}, key=lambda s: len({r["n_envs"] for r in pops if r["steps"] == s}))
    by_steps = max(
        {r["n_envs"] for r in pops}, key=lambda n: len({r["steps"] for r in pops if r["n_envs"] == n})
    )
    for peer, kind in dict.fromkeys((r["peer"], r["kind"]) for r in pops):
        label = f"{peer} {kind.removeprefix('pop_')}"
        for ax, fixed, x in ((axes[0], ("steps", by_n), "n_envs"), (axes[1], ("n_envs", by_steps), "steps")):
            pts = sorted(
                (r[x], r["ms"])
                for r in pops
                if (r["peer"], r["kind"]) == (peer, kind) and r[fixed[0]] == fixed[1]
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    axes[0].set(
        xscale="log", yscale="log", xlabel="n_envs", ylabel="ms per pop", title=f"{by_n} steps [{TARGET_ENV}]"
    )
    axes[1].set(
        xscale="log", yscale="log", xlabel="steps between pops", title=f"{by_steps} envs [{TARGET_ENV}]"
    )
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = img / "pops.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: dict[str, Any], out: Path) -> None:
    """Adds the target checks to ``results`` and writes ``benchmarks.md`` and the plots under ``out``."""
    checks = targets(results)
    results["targets"] = checks
    plots(results, out / "img")
    (out / "benchmarks.md").write_text(markdown(results, checks))
