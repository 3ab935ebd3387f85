"""Collection throughput on 1 and 2 processes (torchrun, gloo), and the cost of the gather.

Usage::

    python -m benchmarks.dist_bench                 # 1 and 2 processes, writes docs/distributed_benchmarks.md
    python -m benchmarks.dist_bench --nprocs 1 2 4 --out /somewhere.md

The parent starts ``torchrun --standalone --nproc_per_node=N -m benchmarks.dist_bench
--worker`` for each N. Every rank records its own envs through torchbuf's wrappers
(weak scaling: the work per rank is fixed), then the ranks all-gather the popped
transitions (and gather them to rank 0). Each measurement sits between two
barriers, so it is the slowest rank's time; each is repeated and the median kept.
Every process runs one torch thread.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist
from stable_baselines3.common.vec_env import DummyVecEnv

from torchbuf import BufferingWrapper, VectorBufferingWrapper
from torchbuf.distributed import all_gather_transitions, gather_transitions
from torchbuf.distributed.launch import env_seed, init_from_env
from torchbuf.envs import TorchCartPole
from torchbuf.envs.experts import scripted_cartpole

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # name: (n_envs per rank, steps per rank)
    "TorchCartPole, VectorBufferingWrapper": (256, 200),
    "the same, keep_infos=False": (256, 200),
    "SB3 DummyVecEnv CartPole-v1, BufferingWrapper": (8, 250),
}


def collect_torch(n_envs: int, steps: int, rank: int, keep_infos: bool = True) -> Any:
    envs = VectorBufferingWrapper(
        TorchCartPole(n_envs, seed=env_seed(0, n_envs, rank)), keep_infos=keep_infos
    )
    obs, _ = envs.reset()
    for _ in range(steps):
        obs, *_ = envs.step(scripted_cartpole(obs))
    return envs.pop_transitions()


def collect_sb3(n_envs: int, steps: int, rank: int) -> Any:
    venv = BufferingWrapper(DummyVecEnv([lambda: gym.make("CartPole-v1")] * n_envs))
    venv.seed(env_seed(0, n_envs, rank))
    obs = venv.reset()
    for _ in range(steps):
        obs, *_ = venv.step(scripted_cartpole(np.asarray(obs)))
    return venv.pop_transitions()


def collect_torch_no_infos(n_envs: int, steps: int, rank: int) -> Any:
    return collect_torch(n_envs, steps, rank, keep_infos=False)


COLLECTORS: dict[str, Callable[[int, int, int], Any]] = dict(
    zip(CASES, (collect_torch, collect_torch_no_infos, collect_sb3))
)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Runs ``fn`` between two barriers: the slowest rank's seconds."""
    dist.barrier()
    start = time.perf_counter()
    out = fn()
    dist.barrier()
    return out, time.perf_counter() - start


def worker(repeats: int, out: str) -> None:
    torch.set_num_threads(1)
    info = init_from_env("gloo", datetime.timedelta(minutes=2))
    rows = []
    for case, (n_envs, steps) in CASES.items():
        collect = COLLECTORS[case]
        times: dict[str, list[float]] = {"collect": [], "all_gather": [], "gather": []}
        args = (n_envs, steps, info.rank)
        for _ in range(repeats + 1):  # the first run warms up
            batch, t_collect = timed(lambda c=collect, a=args: c(*a))  # type: ignore[misc]
            _, t_all = timed(lambda b=batch: all_gather_transitions(b))  # type: ignore[misc]
            _, t_one = timed(lambda b=batch: gather_transitions(b, dst=0))  # type: ignore[misc]
            for key, t in zip(times, (t_collect, t_all, t_one)):
                times[key].append(t)
        n = int(batch.batch_size[0]) * info.world_size
        med = {k: statistics.median(v[1:]) for k, v in times.items()}
        spread = {"collect_min": min(times["collect"][1:]), "collect_max": max(times["collect"][1:])}
        rows.append({"case": case, "n_envs": n_envs, "steps": steps, "transitions": n, **med, **spread})
    if info.rank == 0:
        Path(out).write_text(json.dumps({"world_size": info.world_size, "rows": rows}))
    dist.destroy_process_group()


def launch(nprocs: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nprocs}"]
        cmd += ["-m", "benchmarks.dist_bench", "--worker", "--repeats", str(repeats), "--json", str(out)]
        subprocess.run(cmd, check=True, cwd=ROOT, timeout=1200, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads(out.read_text())  # type: ignore[no-any-return]


def markdown(runs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    base = {r["case"]: r["transitions"] / r["collect"] for r in runs[0]["rows"]}
    lines = [
        "# Distributed collection: measured throughput",
        "",
        "Written by `python -m benchmarks.dist_bench` (see [distributed.md](distributed.md)).",
        f"Run on {meta['date']}: {meta['machine']}, {meta['cpus']} CPU cores, torch {meta['torch']}, gloo,",
        f"one torch thread per process. Load average before the run: {meta['load']}.",
        "",
        "Each rank records its own envs (the work per rank is fixed); the times are the",
        "slowest rank's, medians of the repeats. `all_gather` and `gather to 0` move the",
        "popped transitions of every rank (`all_gather_transitions`, `gather_transitions(dst=0)`).",
        "",
        "| envs per rank | processes | transitions | collection (min–max) | throughput | speed-up "
        "| all_gather | gather to 0 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        for r in run["rows"]:
            rate = r["transitions"] / r["collect"]
            low, high = r["collect_min"] * 1e3, r["collect_max"] * 1e3
            lines.append(
                f"| {r['case']}: {r['n_envs']} × {r['steps']} steps | {run['world_size']} "
                f"| {r['transitions']:,} "
                f"| {r['collect'] * 1e3:,.0f} ms ({low:,.0f}–{high:,.0f}) "
                f"| {rate:,.0f} /s | {rate / base[r['case']]:.2f}× "
                f"| {r['all_gather'] * 1e3:.1f} ms | {r['gather'] * 1e3:.1f} ms |"
            )
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "docs" / "distributed_benchmarks.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.repeats, args.json)
        return
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": cpu_model(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    runs = [launch(n, args.repeats) for n in args.nprocs]
    text = markdown(runs, meta)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
