"""The tensor path: what recording adds to a torch-native env's step, against a raw-copy floor.

Usage::

    python -m benchmarks.tensor_path                            # CPU: 8, 256, 4096 envs
    python -m benchmarks.tensor_path --device cuda --n-envs 4096 65536 --out docs

The env is :class:`torchbuf.envs.TorchCartPole` (the stand-in for a GPU simulator: its
state, actions and outputs live on ``--device``). Three ways to step it are timed in one
process, taking turns window by window (``--window`` steps between two pops; each
way's first window is not timed):

- **env**: the env alone;
- **raw**: the env, then one ``copy_`` per field into preallocated time-major
  ``(T, N)`` tensors (obs, actions, rewards, terminated, truncated) — no recorder can do
  less;
- **torchbuf**: ``VectorBufferingWrapper(env, keep_infos=...)``, popped after each window.

The report gives each one's µs per step and the time each recorder *adds* to the env's
step, with torchbuf's added time over the raw floor's. On CUDA every window ends with a
``torch.cuda.synchronize()`` (its cost is inside the figure). Writes
``<out>/tensor_path[_cuda].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from typing import Any

import torch

from benchmarks.machine import cpu_model
from benchmarks.report import write_results
from torchbuf import VectorBufferingWrapper
from torchbuf.envs import TorchCartPole

WAYS = ("env", "raw", "torchbuf")


class RawFloor:
    """The env, then one ``copy_`` per field into time-major ``(T, N)`` tensors."""

    def __init__(self, env: TorchCartPole, window: int):
        self.env, self.cap, self.t = env, window, 0
        obs, _ = env.reset(seed=0)
        n, dev = env.num_envs, obs.device
        self.obs = torch.ones((window + 1, *obs.shape), dtype=obs.dtype, device=dev)
        self.acts = torch.ones((window, n), dtype=torch.int64, device=dev)
        self.rews = torch.ones((window, n), dtype=torch.float32, device=dev)
        self.term = torch.ones((window, n), dtype=torch.bool, device=dev)
        self.trunc = torch.ones((window, n), dtype=torch.bool, device=dev)
        self.obs[0].copy_(obs)

    def step(self, actions: torch.Tensor) -> None:
        """Steps the env and copies each field into its slot (wrapping around)."""
        obs, rew, term, trunc, _ = self.env.step(actions)
        t = self.t % self.cap
        self.obs[t + 1].copy_(obs)
        self.acts[t].copy_(actions)
        self.rews[t].copy_(rew)
        self.term[t].copy_(term)
        self.trunc[t].copy_(trunc)
        self.t += 1

    def pop(self) -> None:
        """Nothing to copy out: the floor keeps no episodes."""


class EnvAlone:
    """The env's own step."""

    def __init__(self, env: TorchCartPole):
        self.env = env
        env.reset(seed=0)

    def step(self, actions: torch.Tensor) -> None:
        """Steps the env."""
        self.env.step(actions)

    def pop(self) -> None:
        """Nothing recorded."""


class Torchbuf:
    """``VectorBufferingWrapper`` over the env, popped after each window."""

    def __init__(self, env: TorchCartPole, keep_infos: bool):
        self.venv = VectorBufferingWrapper(env, keep_infos=keep_infos)
        self.venv.reset(seed=0)

    def step(self, actions: torch.Tensor) -> None:
        """Steps and records."""
        self.venv.step(actions)

    def pop(self) -> None:
        """Pops every transition recorded (the storage is reused)."""
        self.venv.pop_transitions()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_window(way: Any, actions: torch.Tensor, window: int) -> float:
    """Seconds per step of one window of ``way``, then its pop (not timed)."""
    _sync(actions.device)
    start = time.perf_counter()
    for _ in range(window):
        way.step(actions)
    _sync(actions.device)
    seconds = (time.perf_counter() - start) / window
    way.pop()
    return seconds


def measure(n_envs: int, args: argparse.Namespace) -> dict[str, Any]:
    """One row: µs per step of each way at ``n_envs``, and the added times' ratio.

    The ways take turns window by window, so a change in the machine's load falls on
    all of them; each one's figure is its median window, and each time added is the
    median over rounds of that round's difference to the env alone (a difference of two
    medians of a few hundred µs would carry both their noise).
    """
    device = torch.device(args.device)
    actions = torch.randint(0, 2, (n_envs,), generator=torch.Generator().manual_seed(0)).to(device)

    def env() -> TorchCartPole:
        return TorchCartPole(n_envs, device=device, seed=0, max_episode_steps=args.episode)

    ways = {
        "env": EnvAlone(env()),
        "raw": RawFloor(env(), args.window),
        "torchbuf": Torchbuf(env(), args.keep_infos),
    }
    for way in ways.values():  # the first window allocates and grows storage: not timed
        time_window(way, actions, args.window)
    per_step: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.windows):
        for name, way in ways.items():
            per_step[name].append(time_window(way, actions, args.window))
    us = {name: statistics.median(times) * 1e6 for name, times in per_step.items()}
    added = {
        name: statistics.median(t - e for t, e in zip(per_step[name], per_step["env"], strict=True)) * 1e6
        for name in ("raw", "torchbuf")
    }
    return {
        "n_envs": n_envs,
        "us_per_step": us,
        "added_us": added,
        "added_ratio": added["torchbuf"] / added["raw"] if added["raw"] > 0 else None,
    }


def markdown(results: dict[str, Any]) -> str:
    """The report: one row per ``n_envs``."""
    lines = [
        f"# Tensor path on {results['device']}",
        "",
        f"**Machine:** {results['machine']}. **Date:** {results['date']}. **torch** {results['torch']}. "
        f"Window {results['window']} steps, episodes of at most {results['episode']} steps, "
        f"keep_infos={results['keep_infos']}. Written by `python -m benchmarks.tensor_path`.",
        "",
        "| envs | env µs/step | raw floor µs/step | torchbuf µs/step | raw adds | torchbuf adds "
        "| torchbuf added / raw added |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["rows"]:
        us, add, ratio = r["us_per_step"], r["added_us"], r["added_ratio"]
        ratio_text = "—" if ratio is None else f"{ratio:.2f}"
        lines.append(
            f"| {r['n_envs']} | {us['env']:.1f} | {us['raw']:.1f} | {us['torchbuf']:.1f} "
            f"| {add['raw']:.1f} | {add['torchbuf']:.1f} | {ratio_text} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-envs", type=int, nargs="+", default=[8, 256, 4096])
    p.add_argument("--window", type=int, default=100, help="steps between two pops")
    p.add_argument("--windows", type=int, default=15, help="timed windows per way")
    p.add_argument("--episode", type=int, default=50, help="max_episode_steps (episode ends in every window)")
    p.add_argument("--no-infos", dest="keep_infos", action="store_false", help="keep_infos=False")
    p.add_argument("--out", default="docs")
    p.add_argument("--quick", action="store_true", help="smoke run: 8 envs, 2 windows of 10 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.n_envs, args.window, args.windows = [8], 10, 2
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the grid, prints and writes the report; returns the results."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    results: dict[str, Any] = {
        "device": str(device),
        "machine": f"{machine} ({platform.machine()})",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "window": args.window,
        "episode": args.episode,
        "keep_infos": args.keep_infos,
        "rows": [],
    }
    for n_envs in args.n_envs:
        row = measure(n_envs, args)
        results["rows"].append(row)
        print(f"  {n_envs:>6} envs: " + ", ".join(f"{k} {v:.1f} µs" for k, v in row["us_per_step"].items()))
    name = "tensor_path_cuda" if device.type == "cuda" else "tensor_path"
    text = markdown(results)
    write_results(args.out, name, results, text)
    print(text)
    return results


if __name__ == "__main__":
    main()
