"""Runs the benchmark grid and writes ``benchmarks.json``, ``benchmarks.md`` and plots.

Usage::

    python -m benchmarks.run            # full grid (about 15 minutes on 2 CPU cores)
    python -m benchmarks.run --quick    # smoke run (under 2 minutes)
    python -m benchmarks.run --device cuda --out /somewhere
    python -m benchmarks.run --sections bc   # rerun one section, keep the others of --out

Step times come from ``torch.utils.benchmark.Timer`` (``timeit`` over one window of
steps between two pops; each window adds the Timer's own warm-up steps). Pops consume
what they time, so each pop is timed once after refilling and wrapped in a
``Measurement`` by hand. All peers run in this one process, with ``--threads`` torch
threads (default 1, the Timer's default).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.benchmark import Compare, Measurement, Timer
from torch.utils.benchmark.utils.common import TaskSpec

from benchmarks.bc import bc_rows
from benchmarks.envs import OBS_KINDS, make_env, raw_obs_bytes
from benchmarks.machine import cpu_model
from benchmarks.peers import PEERS, available, make_peer

N_ENVS = (8, 64, 256, 1024, 4096)
WINDOW = 100
WINDOW_BYTES = 480e6
"""Cap on one window's observation bytes: big image cases get fewer steps between pops."""
ACT_BYTES, REW_BYTES, FLAG_BYTES = 8, 4, 2
"""Raw bytes per transition besides the observation: int64 action, float32 reward,
terminated and truncated bools."""


def window_for(env: str, n_envs: int, cap: int = WINDOW) -> int:
    """Steps between pops for a cell: ``cap``, fewer where one window's obs exceed ``WINDOW_BYTES``."""
    obs_bytes = 16 if env == "cartpole" else raw_obs_bytes(env)
    return int(max(4, min(cap, WINDOW_BYTES // (n_envs * obs_bytes))))


def rss_bytes() -> int:
    """Resident memory of this process (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_start(device: str) -> int:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return int(torch.cuda.memory_allocated())
    return rss_bytes()


def _peak_now(device: str) -> int:
    return int(torch.cuda.max_memory_allocated()) if device.startswith("cuda") else rss_bytes()


def time_once(fn: Callable[[], Any], device: str) -> float:
    """Seconds one call of ``fn`` takes (device work included)."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


# ------------------------------------------------------------------ step cells
def step_cell(peer_name: str, env: str, n_envs: int, args: argparse.Namespace) -> dict[str, Any]:
    """Times ``step()`` of one peer on one env, window by window.

    Returns:
        A result row: median/IQR µs per step, steps per window, storage bytes per
        transition held, peak memory growth, and the merged ``Measurement``.
    """
    window = window_for(env, n_envs, args.window)
    base = _peak_start(args.device)
    peer = make_peer(peer_name, make_env(env, n_envs), args.device, window)
    peer.reset()
    timer = Timer(
        "peer.step()",
        globals={"peer": peer},
        label=f"step [{env}]",
        sub_label=f"{n_envs:>5} envs",
        description=peer_name,
        num_threads=args.threads,
    )
    peak, spent, stored, measurements = 0, 0.0, None, []
    for i in range(args.max_windows + 1):
        m = timer.timeit(window)  # also runs max(window // 100, 2) warm-up steps
        peak = max(peak, _peak_now(args.device) - base)
        stored = peer.storage_bytes()
        peer.pop_transitions()
        if i == 0:
            continue  # the first window allocates and grows storage: not timed
        measurements.append(m)
        spent += m.median * window
        if spent >= args.min_time and i >= 2:
            break
    held = peer.held_transitions(window + max(window // 100, 2))
    merged = Measurement.merge(measurements)[0]
    return {
        "peer": peer_name,
        "env": env,
        "n_envs": n_envs,
        "window": window,
        "step_us": merged.median * 1e6,
        "step_iqr_us": merged.iqr * 1e6,
        "transitions_per_s": n_envs / merged.median,
        "bytes_per_transition": None if stored is None or not held else stored / held,
        "peak_mem_bytes": peak,
        "measurement": merged,
    }


def step_grid(args: argparse.Namespace, skipped: dict[str, str]) -> list[dict[str, Any]]:
    """Runs every (env, n_envs, peer) step cell the grid holds."""
    rows = []
    for env in (*OBS_KINDS, "cartpole"):
        for n_envs in args.n_envs:
            if env == "cartpole" and n_envs > args.cartpole_max:
                continue
            for peer_name in PEERS:
                if peer_name in skipped:
                    continue
                try:
                    row = step_cell(peer_name, env, n_envs, args)
                except ValueError as err:  # the peer does not support this env
                    skipped.setdefault(f"{peer_name} [{env}]", str(err))
                    continue
                rows.append(row)
                print(f"  step {env:>8} n={n_envs:>5} {peer_name:>10}: {row['step_us']:10.1f} µs", flush=True)
                gc.collect()
    return rows


# ------------------------------------------------------------------ pop cells
def pop_cell(
    peer_name: str, n_envs: int, steps: int, env: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Times ``pop_transitions`` and ``pop_trajectories`` after ``steps`` steps of ``n_envs`` envs.

    Returns:
        One row per pop kind the peer has.
    """
    peer = make_peer(peer_name, make_env(env, n_envs), args.device, steps)
    peer.reset()
    kinds = ("pop_transitions", "pop_trajectories") if peer_name != "raw" else ("pop_transitions",)
    rows = []
    for kind in kinds:
        times = []
        for _ in range(args.pop_reps + 1):
            for _ in range(steps):
                peer.step()
            times.append(time_once(getattr(peer, kind), args.device))
        spec = TaskSpec(
            f"peer.{kind}()",
            "",
            label=f"{kind} [{env}, {steps} steps]",
            sub_label=f"{n_envs:>5} envs",
            description=peer_name,
            num_threads=args.threads,
        )
        m = Measurement(1, times[1:], spec)  # the first pop also warms up
        rows.append(
            {
                "peer": peer_name,
                "kind": kind,
                "env": env,
                "n_envs": n_envs,
                "steps": steps,
                "ms": m.median * 1e3,
                "measurement": m,
            }
        )
        print(
            f"  {kind:>16} {env} n={n_envs:>5} steps={steps:>4} {peer_name:>10}: {m.median * 1e3:10.2f} ms",
            flush=True,
        )
    return rows


def pop_grid(args: argparse.Namespace, skipped: dict[str, str]) -> list[dict[str, Any]]:
    """Pops against n_envs (1 and the step grid's, ``WINDOW`` steps) and against steps between pops."""
    cells = {(n, args.window, "vec4") for n in (1, *args.n_envs)}
    cells |= {(args.pop_n_envs, s, "vec4") for s in args.pop_steps}
    cells.add((64, args.window, "img84"))
    rows = []
    for n_envs, steps, env in sorted(cells):
        for peer_name in ("torchbuf", "imitation", "raw"):
            if peer_name not in skipped:
                rows += pop_cell(peer_name, n_envs, steps, env, args)
                gc.collect()
    return rows


# ------------------------------------------------------------------ storage
def storage_rows(args: argparse.Namespace, skipped: dict[str, str]) -> list[dict[str, Any]]:
    """Storage bytes per transition after one window of 64 envs, against raw bytes.

    ``torchbuf (sized)`` passes ``capacity`` equal to the window plus the slots that
    episode ends take, as a caller who knows its pop schedule would; ``torchbuf (after
    a pop)`` is the default after one window was popped (the pop gives back what
    doubling overshot), measured at the end of a second window.
    """
    rows = []
    for env in OBS_KINDS:
        window = window_for(env, 64, args.window)
        raw = raw_obs_bytes(env) + ACT_BYTES + REW_BYTES + FLAG_BYTES
        for peer_name in (
            "torchbuf",
            "torchbuf (after a pop)",
            "torchbuf (sized)",
            "sb3",
            "sb3_optmem",
            "torchrl",
            "raw",
        ):
            if peer_name in skipped:
                continue
            try:
                peer = _storage_peer(peer_name, env, window)
            except ValueError:
                continue
            peer.reset()
            for _ in range(window):
                peer.step()
            if peer_name == "torchbuf (after a pop)":
                peer.pop_transitions()
                for _ in range(window):
                    peer.step()
            stored = peer.storage_bytes() or 0
            per = stored / peer.held_transitions(window)
            rows.append(
                {
                    "peer": peer_name,
                    "env": env,
                    "window": window,
                    "bytes_per_transition": per,
                    "raw_bytes": raw,
                    "ratio": per / raw,
                }
            )
    return rows


def _storage_peer(peer_name: str, env: str, window: int) -> Any:
    from benchmarks.peers import TorchbufPeer

    if peer_name == "torchbuf (sized)":
        return TorchbufPeer(make_env(env, 64), "cpu", window, capacity=window + window // 50 + 2)
    name = "torchbuf" if peer_name == "torchbuf (after a pop)" else peer_name  # the default, popped once
    return make_peer(name, make_env(env, 64), "cpu", window)


# ------------------------------------------------------------------ machine, main
def machine() -> dict[str, Any]:
    """CPU model, cores, memory, library versions and date of this run."""
    cpu = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("tensordict", "gymnasium", "stable_baselines3", "imitation", "torchrl"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem / 2**30, 1),
        "load_avg_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` shrinks the grid to a smoke run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small grid, short timings")
    p.add_argument("--device", default="cpu", help="storage device of the peers that have one")
    p.add_argument("--out", default="docs", help="folder for benchmarks.json/.md and img/*.png")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="sections to run; the others are kept from --out's benchmarks.json (default: all)",
    )
    args = p.parse_args(argv)
    full = not args.quick
    args.n_envs = N_ENVS if full else (8, 256)
    args.window = WINDOW if full else 20
    args.min_time = 0.3 if full else 0.02
    args.max_windows = 4 if full else 1
    args.cartpole_max = 1024 if full else 8
    args.pop_reps = 3 if full else 1
    args.pop_n_envs = 256 if full else 8
    args.pop_steps = (10, 100, 1000) if full else (10,)
    args.bc_episodes = 10
    args.bc_batch_sizes = (32, 256) if full else (32,)
    args.bc_min_time = 2.0 if full else 0.05
    return args


SECTIONS = ("steps", "pops", "storage", "bc")
"""The parts of a run, in the order they run."""


def run_sections(args: argparse.Namespace, skipped: dict[str, str]) -> dict[str, Any]:
    """Runs the chosen sections; returns their results (with ``Measurement`` objects)."""
    runners: dict[str, Callable[[argparse.Namespace, dict[str, str]], Any]] = {
        "steps": step_grid,
        "pops": pop_grid,
        "storage": storage_rows,
        "bc": bc_rows,
    }
    return {name: runners[name](args, skipped) for name in SECTIONS if name in args.sections}


def _without_measurements(section: Any) -> Any:
    if isinstance(section, list):
        return [_without_measurements(r) for r in section]
    if isinstance(section, dict):
        return {k: _without_measurements(v) for k, v in section.items() if k != "measurement"}
    return section


def _measurements(sections: dict[str, Any]) -> list[Measurement]:
    rows = [*sections.get("steps", []), *sections.get("pops", []), *sections.get("bc", {}).get("rows", [])]
    return [r["measurement"] for r in rows]


def main(argv: list[str] | None = None) -> None:
    """Runs the grid, prints ``Compare`` tables, writes the results and the report."""
    from benchmarks.report import write_report

    warnings.filterwarnings("ignore")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    skipped = {p: why for p in PEERS if (why := available(p)) is not None}
    if args.device != "cpu":
        skipped.setdefault("imitation", "imitation records numpy arrays on the host only")
    started = time.perf_counter()
    sections = run_sections(args, skipped)
    Compare(_measurements(sections)).print()
    fresh = {
        "machine": machine(),
        "device": args.device,
        "threads": args.threads,
        "quick": args.quick,
        "unavailable": skipped,
        **{name: _without_measurements(value) for name, value in sections.items()},
        "seconds": time.perf_counter() - started,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = _merged(out / "benchmarks.json", fresh, args.sections)
    write_report(results, out)
    (out / "benchmarks.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'benchmarks.json'}, {out / 'benchmarks.md'} in {fresh['seconds']:.0f} s")


def _merged(path: Path, fresh: dict[str, Any], sections: list[str]) -> dict[str, Any]:
    """``fresh`` when every section ran; else the saved results with the rerun sections replaced.

    A partial rerun records its own machine, date and run time under
    ``"reruns"``, so the report can say which sections are newer.
    """
    if set(sections) == set(SECTIONS):
        return fresh
    if not path.exists():
        raise SystemExit(f"--sections {' '.join(sections)} updates {path}, which is missing: run all first")
    results = json.loads(path.read_text())
    for name in sections:
        results[name] = fresh[name]
    results["unavailable"] = {**results.get("unavailable", {}), **fresh["unavailable"]}
    reruns = {k: v for k, v in results.get("reruns", {}).items() if k not in sections}
    info = {k: fresh[k] for k in ("machine", "quick", "seconds")}
    results["reruns"] = {**reruns, **{name: info for name in sections}}
    return results


if __name__ == "__main__":
    main()
