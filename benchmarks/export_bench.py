"""Export throughput: torchbuf's writers vs each tool's own (LeRobot) or a plain h5py floor (robomimic).

Usage (in the lerobot venv, ``make bench-export``, where lerobot and h5py are importable)::

    python -m benchmarks.export_bench                  # writes docs/export_benchmarks.{json,md}
    python -m benchmarks.export_bench --quick --out /somewhere

The same trajectories (episodes of a 7-dof arm: a float32 state, an optional 84x84x3
uint8 camera frame, float32 actions) go through every writer, from torchbuf
trajectories in memory to the files on disk. robomimic has no writer of its own:
its row of reference is a plain h5py loop writing the same groups and datasets per
demo (the least any writer does). LeRobot's own writer is ``LeRobotDataset.create``
then ``add_frame`` per step and ``save_episode`` per episode and ``finalize``, fed
host arrays converted from the same trajectories inside the timed block (what a
recorder that holds torch tensors pays). Rows whose package is missing are left out.
Each writer runs once to warm up, then ``--reps`` times; the median is reported.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from benchmarks.report import write_results
from benchmarks.run import machine
from torchbuf import TrajectoryWithRew
from torchbuf.formats import save_lerobot, save_robomimic

EPISODE = 100
"""Steps per episode."""

WORKLOADS = {"state": "a 32-d float32 state", "image": "a 32-d float32 state and an 84x84x3 uint8 frame"}
EPISODES = {"state": (100, 10), "image": (20, 4)}
"""Episodes per workload: full run, quick run."""


def trajectories(workload: str, n: int, seed: int = 0) -> list[TrajectoryWithRew]:
    """``n`` episodes of ``EPISODE`` steps with random data (images incompressible)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        state = torch.randn(EPISODE + 1, 32, generator=gen)
        obs: Any = state
        if workload == "image":
            frames = torch.randint(0, 256, (EPISODE + 1, 84, 84, 3), dtype=torch.uint8, generator=gen)
            obs = TensorDict({"state": state, "image": frames}, [EPISODE + 1])
        terminated = torch.zeros(EPISODE, dtype=torch.bool)
        terminated[-1] = True
        out.append(
            TrajectoryWithRew(
                obs=obs,
                acts=torch.randn(EPISODE, 7, generator=gen),
                rews=torch.randn(EPISODE, generator=gen),
                terminated=terminated,
                truncated=torch.zeros(EPISODE, dtype=torch.bool),
                batch_size=[],
            )
        )
    return out


# ---------------------------------------------------------------------------- writers
def torchbuf_robomimic(path: Path, trajs: list[TrajectoryWithRew]) -> None:
    save_robomimic(path / "demo.hdf5", trajs)


def h5py_robomimic(path: Path, trajs: list[TrajectoryWithRew]) -> None:
    """The same file written by hand: one group per demo, numpy arrays, no checks, no atomic rename."""
    import h5py

    with h5py.File(path / "demo.hdf5", "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "", "type": 2, "env_kwargs": {}})
        for i, t in enumerate(trajs):
            demo = data.create_group(f"demo_{i}")
            demo.attrs["num_samples"] = len(t)
            leaves = t.obs.items() if isinstance(t.obs, TensorDict) else [("state", t.obs)]
            for key, value in leaves:
                rows = value.numpy()
                demo.create_dataset(f"obs/{key}", data=rows[:-1])
                demo.create_dataset(f"next_obs/{key}", data=rows[1:])
            demo.create_dataset("actions", data=t.acts.numpy())
            demo.create_dataset("rewards", data=t.rews.numpy())
            demo.create_dataset("dones", data=t.terminated.numpy().astype(np.int64))
        data.attrs["total"] = sum(len(t) for t in trajs)


def torchbuf_lerobot(path: Path, trajs: list[TrajectoryWithRew]) -> None:
    save_lerobot(path / "ds", trajs, fps=30, task="reach", drop_final_obs=True)


def lerobot_own(path: Path, trajs: list[TrajectoryWithRew], features: dict[str, Any]) -> None:
    """lerobot's ``create`` / ``add_frame`` / ``save_episode`` / ``finalize``, images as PNG frames."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    writer = LeRobotDataset.create("bench/own", fps=30, features=features, root=path / "ds", use_videos=False)
    for t in trajs:
        obs = t.obs if isinstance(t.obs, TensorDict) else TensorDict({"state": t.obs}, [len(t) + 1])
        leaves = {f"observation.{k}": v.numpy() for k, v in obs.items()}
        acts, rews = t.acts.numpy(), t.rews.numpy()
        done, trunc = (t.terminated | t.truncated).numpy(), t.truncated.numpy()
        for s in range(len(t)):
            frame = {k: v[s] for k, v in leaves.items()}
            frame.update(
                {
                    "action": acts[s],
                    "next.reward": rews[s : s + 1],
                    "next.done": done[s : s + 1],
                    "next.truncated": trunc[s : s + 1],
                    "task": "reach",
                }
            )
            writer.add_frame(frame)
        writer.save_episode()
    writer.finalize()


def lerobot_features(trajs: list[TrajectoryWithRew], root: Path) -> dict[str, Any]:
    """The features lerobot's writer needs, from a dataset torchbuf wrote (untimed)."""
    save_lerobot(root / "features", trajs[:1], fps=30, task="reach", drop_final_obs=True)
    info = json.loads((root / "features" / "meta" / "info.json").read_text())
    skip = {"timestamp", "frame_index", "episode_index", "index", "task_index"}
    return {k: {**v, "shape": tuple(v["shape"])} for k, v in info["features"].items() if k not in skip}


def writers(trajs: list[TrajectoryWithRew], root: Path) -> dict[str, tuple[str, Callable[[Path], None]]]:
    """``{row: (format, write(path))}`` for the packages this venv has."""
    out: dict[str, tuple[str, Callable[[Path], None]]] = {}
    if importlib.util.find_spec("h5py"):
        out["torchbuf save_robomimic"] = ("robomimic", lambda p: torchbuf_robomimic(p, trajs))
        out["plain h5py loop (floor)"] = ("robomimic", lambda p: h5py_robomimic(p, trajs))
    if importlib.util.find_spec("pyarrow"):
        out["torchbuf save_lerobot"] = ("lerobot", lambda p: torchbuf_lerobot(p, trajs))
    if importlib.util.find_spec("lerobot"):
        # lerobot imports torchvision, whose compiled ops do not load beside a CPU torch: the
        # lerobot tests' conftest defines the two operator schemas it needs (see there)
        importlib.import_module("tests.lerobot.conftest")
        features = lerobot_features(trajs, root)
        out["lerobot add_frame/save_episode"] = ("lerobot", lambda p: lerobot_own(p, trajs, features))
    return out


def timed(write: Callable[[Path], None], root: Path, reps: int) -> list[float]:
    """Seconds of each of ``reps`` writes after one warm-up, each into a fresh folder."""
    seconds = []
    for i in range(reps + 1):
        folder = root / f"run-{i}"
        folder.mkdir()
        start = time.perf_counter()
        write(folder)
        elapsed = time.perf_counter() - start
        shutil.rmtree(folder)
        if i:
            seconds.append(elapsed)
    return seconds


# ----------------------------------------------------------------------------- report
def report(results: dict[str, Any]) -> str:
    """The markdown page: machine and date, then one table per workload with ratios."""
    m = results["machine"]
    lines = [
        "# Export throughput",
        "",
        f"`python -m benchmarks.export_bench{' --quick' if results['quick'] else ''}` on {m['cpu']} "
        f"({m['cores']} cores), torch {m['versions']['torch']}, {results['versions']}, median of "
        f"{results['reps']} writes after a warm-up, {m['date'][:10]}. Episodes of {EPISODE} steps; "
        "transitions/s counts steps written per second of wall time, from torchbuf trajectories in "
        f"memory to files on disk. The 1-minute load average was {m['load_avg_1min_at_start']:.1f} at "
        "the start (other jobs shared the cores).",
        "",
    ]
    for workload, about in WORKLOADS.items():
        rows = [r for r in results["rows"] if r["workload"] == workload]
        lines += [f"## {workload}: {about}", "", f"{rows[0]['transitions'] if rows else 0} transitions.", ""]
        lines += [
            "| format | writer | transitions/s | ms | vs the tool's own / floor |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for r in rows:
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "—"
            lines.append(
                f"| {r['format']} | {r['writer']} | {r['transitions_per_s']:,.0f} | {r['ms']:.0f} | {ratio} |"
            )
        lines.append("")
    lines += NOTES
    return "\n".join(lines) + "\n"


NOTES = [
    "The ratio is the row's throughput over its format's reference row (lerobot's own writer; for "
    "robomimic, which has no writer, the plain h5py loop): above 1 is faster than the reference.",
    "",
    "- **torchbuf save_robomimic**: checks every trajectory (ends, keys), writes `obs` / `next_obs` "
    "/ `actions` / `rewards` / `dones` per demo to a temporary file, fsyncs it and renames it into place.",
    "- **plain h5py loop (floor)**: the same datasets written by hand, no checks, no fsync.",
    "- **torchbuf save_lerobot**: parquet frames with PNG-encoded images, episode metadata and stats in "
    "one pass over all frames, written atomically.",
    "- **lerobot add_frame/save_episode**: lerobot 0.4.4's `LeRobotDataset.create(..., use_videos=False)`, "
    "one `add_frame` per step (images saved as PNG files, then embedded), `save_episode` per episode "
    "(stats per episode), `finalize()`.",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` shrinks the episodes and repetitions."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few episodes, 1 repetition")
    p.add_argument("--out", default="docs", help="folder for export_benchmarks.json/.md")
    p.add_argument("--dir", default=None, help="where the files are written (default: a temp dir)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 3, quick 1)")
    args = p.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    return args


def _versions() -> str:
    found = []
    for name in ("h5py", "pyarrow", "lerobot"):
        if importlib.util.find_spec(name):
            found.append(f"{name} {importlib.import_module(name).__version__}")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> None:
    """Times every writer on every workload, prints the rows, writes the report."""
    warnings.filterwarnings("ignore")
    args = parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    root = Path(tempfile.mkdtemp(prefix="export_bench-", dir=args.dir))
    try:
        for workload in WORKLOADS:
            trajs = trajectories(workload, EPISODES[workload][1 if args.quick else 0])
            n = sum(len(t) for t in trajs)
            for writer, (fmt, write) in writers(trajs, root).items():
                seconds = statistics.median(timed(write, root, args.reps))
                rows.append(
                    dict(
                        workload=workload,
                        format=fmt,
                        writer=writer,
                        transitions=n,
                        ms=seconds * 1e3,
                        transitions_per_s=n / seconds,
                    )
                )
                print(f"{workload:6} {writer:32} {n / seconds:12,.0f} transitions/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for r in rows:
        ref = [
            x
            for x in rows
            if x["workload"] == r["workload"]
            and x["format"] == r["format"]
            and x is not r
            and not x["writer"].startswith("torchbuf")
        ]
        r["ratio"] = (
            r["transitions_per_s"] / ref[0]["transitions_per_s"]
            if ref and r["writer"].startswith("torchbuf")
            else None
        )
    results = {
        "machine": machine(),
        "quick": args.quick,
        "reps": args.reps,
        "versions": _versions(),
        "rows": rows,
    }
    write_results(args.out, "export_benchmarks", results, report(results))


if __name__ == "__main__":
    main()
