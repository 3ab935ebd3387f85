"""Save/load throughput of rollouts: torchbuf.io vs torch.save vs imitation's serialize.

Usage (in the compat environment, where imitation 1.0.1 is importable)::

    python -m benchmarks.io_bench                  # writes docs/io_benchmarks.{json,md}
    python -m benchmarks.io_bench --quick --out /somewhere

The same trajectories (popped from a ``BufferingWrapper``, infos kept) go through
each method. A save is timed from the trajectories in memory to the files on disk;
a load from the files to every trajectory's observations read once (several
loaders are lazy: torchbuf maps files, imitation's datasets convert on access), so
each load row pays for the bytes it hands over. Each operation runs once to warm
up, then ``--reps`` times (once if the warm-up took over ``--budget`` seconds), timed
with ``time.perf_counter`` and wrapped in a
``torch.utils.benchmark.Measurement`` by hand (one call is far longer than a Timer
block). Files are written to ``--dir`` (the page cache stays warm: reads come from
memory, so load rows measure decoding, not the disk).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv
from torch.utils.benchmark import Compare, Measurement
from torch.utils.benchmark.utils.common import TaskSpec

from benchmarks.report import write_results
from benchmarks.run import machine
from torchbuf import BufferingWrapper, TrajectoryWithRew, io
from torchbuf.formats import load_imitation, save_imitation

N_ENVS = 8


class NoiseImages(gym.Env):
    """84x84x3 uint8 frames of random pixels (incompressible), episodes of 100 steps."""

    observation_space = spaces.Box(0, 255, (84, 84, 3), np.uint8)
    action_space = spaces.Discrete(4)

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def _frame(self) -> np.ndarray:
        return self.rng.integers(0, 256, self.observation_space.shape, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        return self._frame(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self._frame(), 1.0, False, False, {}


def _env(workload: str) -> DummyVecEnv:
    if workload == "cartpole":
        return DummyVecEnv([lambda: gym.make("CartPole-v1")] * N_ENVS)
    fns = [lambda i=i: gym.wrappers.TimeLimit(NoiseImages(i), 100) for i in range(N_ENVS)]
    return DummyVecEnv(fns)


def rollouts(workload: str, steps: int) -> list[TrajectoryWithRew]:
    """``steps`` steps of ``N_ENVS`` envs with random actions, popped as trajectories."""
    venv = BufferingWrapper(_env(workload))
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(steps):
        venv.step(rng.integers(0, venv.action_space.n, N_ENVS))
    trajs, _ = venv.pop_trajectories()
    return list(trajs)


def raw_bytes(trajs: list[TrajectoryWithRew]) -> int:
    """Bytes of the tensors (obs, acts, rews, terminated, truncated): the payload every method moves."""
    names = ("obs", "acts", "rews", "terminated", "truncated")
    return sum(getattr(t, k).numel() * getattr(t, k).element_size() for t in trajs for k in names)


def touch(trajs: Any) -> float:
    """Reads every trajectory's observations once (forces lazy loaders to deliver)."""
    return float(sum(np.asarray(t.obs, dtype=np.float64).sum() for t in trajs))


# ------------------------------------------------------------------ methods
def _imitation() -> Any:
    from imitation.data import serialize

    return serialize


def methods() -> dict[str, tuple[Callable[[Path, Any], None], Callable[[Path], Any], str]]:
    """Name -> (save, load, what the save takes: ``"torch"`` or ``"imitation"`` trajectories)."""
    return {
        "torchbuf.io": (io.save, io.load, "torch"),
        "torchbuf.io (verify=False)": (io.save, lambda p: io.load(p, verify=False), "torch"),
        "torch.save": (lambda p, t: torch.save(t, p), lambda p: torch.load(p, weights_only=False), "torch"),
        "imitation serialize (datasets)": (
            lambda p, t: _imitation().save(p, t),
            lambda p: _imitation().load(p),
            "imitation",
        ),
        "torchbuf.formats (datasets)": (save_imitation, load_imitation, "torch"),
        "torchbuf.formats (npz)": (
            lambda p, t: save_imitation(p, t, format="npz"),
            load_imitation,
            "torch",
        ),
    }


def time_reps(fn: Callable[[int], Any], reps: int, budget_s: float) -> list[float]:
    """Seconds of ``fn(i)`` for ``reps`` calls after one warm-up call (one call if the warm-up
    alone took over ``budget_s``: a slow operation is timed once, not ``reps`` times)."""
    times = []
    for i in range(reps + 1):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
        if i == 0 and times[0] > budget_s:
            reps = 1
        if i >= reps:
            break
    return times[1:]


def method_row(
    name: str, workload: str, trajs: dict[str, Any], payload: int, args: argparse.Namespace, root: Path
) -> dict[str, Any]:
    """Times one method's save and load on one workload's trajectories."""
    save, load, takes = methods()[name]
    data = trajs[takes]
    folder = root / f"{workload}-{name}".replace(" ", "_").replace("(", "").replace(")", "")
    folder.mkdir()
    save_times = time_reps(lambda i: save(folder / f"s{i}", data), args.reps, args.budget)
    size, saved = _size(folder / "s0"), len(save_times) + 1
    load_times = time_reps(lambda i: touch(load(folder / f"s{i % saved}")), args.reps, args.budget)
    shutil.rmtree(folder)
    n = sum(len(t) for t in trajs["torch"])
    rows = {}
    for op, times in (("save", save_times), ("load", load_times)):
        spec = TaskSpec(
            f"{op}()",
            "",
            label=f"{op} [{workload}]",
            sub_label=name,
            description="ms",
            num_threads=args.threads,
        )
        m = Measurement(1, times, spec)
        rows[op] = m
        print(
            f"  {op:>4} {workload:>8} {name:>32}: {m.median * 1e3:9.1f} ms "
            f"{payload / m.median / 1e6:8.1f} MB/s {n / m.median:12.0f} transitions/s",
            flush=True,
        )
    return {
        "method": name,
        "workload": workload,
        "transitions": n,
        "payload_bytes": payload,
        "bytes_on_disk": size,
        "save_reps": len(save_times),
        "load_reps": len(load_times),
        **{
            f"{op}_{key}": value
            for op, m in rows.items()
            for key, value in (
                ("ms", m.median * 1e3),
                ("iqr_ms", m.iqr * 1e3),
                ("mb_per_s", payload / m.median / 1e6),
                ("transitions_per_s", n / m.median),
            )
        },
        "measurements": list(rows.values()),
    }


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------ report
def markdown(results: dict[str, Any]) -> str:
    """The report: one table per workload, then how it was measured."""
    m = results["machine"]
    lines = [
        "# Save/load throughput",
        "",
        f"`python -m benchmarks.io_bench{' --quick' if results['quick'] else ''}` on {m['cpu']} "
        f"({m['cores']} cores), torch {m['versions']['torch']}, imitation {m['versions']['imitation']}, "
        f"{results['reps']} timed repetitions after a warm-up (one where the warm-up took over "
        f"{results['budget']:.0f} s; median, IQR in `io_benchmarks.json`), {m['date'][:10]}. "
        "Throughput counts the trajectories' tensor bytes (`obs`, `acts`, `rews`, `terminated`, "
        "`truncated`), the same for every method, over the median time. The 1-minute load average "
        f"was {m['load_avg_1min_at_start']:.1f} at the start (other jobs shared the cores): differences "
        "under about 1.5x between rows are within this run's noise.",
        "",
    ]
    for workload, about in WORKLOADS_ABOUT.items():
        rows = [r for r in results["rows"] if r["workload"] == workload]
        if not rows:
            continue
        first = rows[0]
        lines += [
            f"## {workload}: {about}",
            "",
            f"{first['transitions']} transitions, {len(results['trajectories'][workload])} trajectories, "
            f"{first['payload_bytes'] / 1e6:.1f} MB of tensors.",
            "",
            "| method | save MB/s | save transitions/s | load MB/s | load transitions/s | save ms | load ms "
            "| MB on disk |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            lines.append(
                f"| {r['method']} | {r['save_mb_per_s']:.0f} | {r['save_transitions_per_s']:,.0f} "
                f"| {r['load_mb_per_s']:.0f} | {r['load_transitions_per_s']:,.0f} | {r['save_ms']:.0f} "
                f"| {r['load_ms']:.0f} | {r['bytes_on_disk'] / 1e6:.1f} |"
            )
        lines.append("")
    lines += NOTES
    return "\n".join(lines) + "\n"


WORKLOADS_ABOUT = {
    "cartpole": f"CartPole-v1, {N_ENVS} envs, random actions (SB3 infos kept)",
    "img84": f"84x84x3 uint8 frames of random pixels, {N_ENVS} envs, 100-step episodes (SB3 infos kept)",
}

NOTES = [
    "## What each row does",
    "",
    "- **torchbuf.io**: `io.save(path, trajs)` (memory-mapped tensors, pickled infos, sha256 manifest, "
    "every file fsynced, atomic rename); `io.load(path)` checks every file's sha256 and maps the "
    "tensors. **verify=False** skips the checksums on load (sizes, shapes and dtypes are still "
    "checked); its save is the same call as the row above, so the gap between the two save columns "
    "is this run's noise.",
    "- **torch.save**: `torch.save(trajs, path)` of the same list of trajectories (one pickle; no fsync, "
    "no checks); `torch.load(path, weights_only=False)`.",
    "- **imitation serialize (datasets)**: imitation 1.0.1's `serialize.save` / `serialize.load` of the "
    "same trajectories as imitation's numpy types (converted before timing): a HuggingFace `datasets` "
    "directory, infos jsonpickled; its loader converts each trajectory from Python lists on access.",
    "- **torchbuf.formats (datasets)**: `save_imitation` / `load_imitation`: the same format from and "
    "to torchbuf trajectories, conversion included; the load reads the Arrow columns in their recorded "
    "dtypes and decodes every info up front (imitation's loader decodes infos lazily, and these loads "
    "read observations only, so imitation's row pays for no info).",
    "- **torchbuf.formats (npz)**: imitation's legacy compressed npz (written by torchbuf, read by "
    "imitation's `serialize.load`).",
    "",
    "Every load reads each trajectory's observations once, so lazy loaders pay for what they deliver. "
    "Files are read back from a warm page cache. Random pixels do not compress: the npz row shows the "
    "cost of compressing, not its gain, for images.",
]


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` shrinks the rollouts and repetitions."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small rollouts, 1 repetition")
    p.add_argument("--out", default="docs", help="folder for io_benchmarks.json/.md")
    p.add_argument("--dir", default=None, help="where the files are written (default: a temp dir)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5, quick 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--budget", type=float, default=10.0, help="time a call once if its warm-up took longer (s)"
    )
    p.add_argument("--methods", nargs="+", default=None, help="only these methods (default: all)")
    args = p.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 5)
    return args


STEPS = {"cartpole": (2500, 125), "img84": (250, 25)}
"""Steps of ``N_ENVS`` envs per workload: full run, quick run."""


def main(argv: list[str] | None = None) -> None:
    """Collects the rollouts, times every method, prints a Compare table, writes the report."""
    warnings.filterwarnings("ignore")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    _quiet_datasets()
    names = args.methods or list(methods())
    started = time.perf_counter()
    rows, trajectories = [], {}
    root = Path(tempfile.mkdtemp(prefix="io_bench-", dir=args.dir))
    try:
        for workload, (steps, quick_steps) in STEPS.items():
            trajs = rollouts(workload, quick_steps if args.quick else steps)
            data = {"torch": trajs, "imitation": [t.to_imitation() for t in trajs]}
            trajectories[workload] = [len(t) for t in trajs]
            payload = raw_bytes(trajs)
            rows += [method_row(name, workload, data, payload, args, root) for name in names]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    Compare([m for r in rows for m in r.pop("measurements")]).print()
    results = {
        "machine": machine(),
        "quick": args.quick,
        "reps": args.reps,
        "budget": args.budget,
        "threads": args.threads,
        "trajectories": trajectories,
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }
    data, text = write_results(args.out, "io_benchmarks", results, markdown(results))
    print(f"wrote {data}, {text} in {results['seconds']:.0f} s")


def _quiet_datasets() -> None:
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


if __name__ == "__main__":
    main()
