"""The time a buffering wrapper adds to one SB3 ``VecEnv`` step at few envs, in one process.

Usage::

    python -m benchmarks.step_overhead               # 1 and 8 envs, 4-float observations
    python -m benchmarks.step_overhead --n-envs 1 8 64 --env dict

The env is the synthetic ``VecEnv`` of :mod:`benchmarks.envs` (its own step is free);
torchbuf's ``BufferingWrapper`` and imitation 1.0.1's run side by side through the
benchmark peers. Each figure is the least, over ``--repeats`` blocks of ``--steps``
steps, of a block's mean step time in the thread's CPU time (``time.thread_time``):
at a few µs a step, wall-clock minima on a shared machine move by 2x between runs,
the thread's own time much less. A pop between blocks keeps the storage small. The
added time is the wrapper's step minus the bare env's.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
import timeit

import torch

from benchmarks.envs import OBS_KINDS, make_env
from benchmarks.machine import cpu_model
from benchmarks.peers import Peer, available, make_peer

PEERS = ("bare", "torchbuf", "imitation")


def step_us(peer: Peer, steps: int, repeats: int) -> float:
    """The least mean thread time of one ``peer.step()`` over ``repeats`` blocks, in µs."""
    peer.reset()
    best = float("inf")
    for _ in range(repeats):
        best = min(best, timeit.timeit(peer.step, number=steps, timer=time.thread_time) / steps)
        if peer.can_pop:
            peer.pop_transitions()
    return best * 1e6


def main(argv: list[str] | None = None) -> None:
    """Prints a markdown table of step times and of the time each wrapper adds."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-envs", type=int, nargs="+", default=[1, 8])
    p.add_argument("--env", choices=OBS_KINDS, default="vec4")
    p.add_argument("--steps", type=int, default=300, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=40, help="timed blocks per cell")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    peers = [name for name in PEERS if available(name) is None]
    versions = f"Python {platform.python_version()}, torch {torch.__version__}"
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, {versions}")
    print(f"env {args.env}, min over {args.repeats} blocks of {args.steps} steps, thread time\n")
    times = " | ".join(f"{name} µs" for name in peers)
    print(f"| envs | {times} | added µs: {' / '.join(peers[1:])} (ratio) |")
    print("| --- " * (len(peers) + 2) + "|")
    for n_envs in args.n_envs:
        us = {
            name: step_us(
                make_peer(name, make_env(args.env, n_envs), "cpu", args.steps), args.steps, args.repeats
            )
            for name in peers
        }
        added = [us[name] - us["bare"] for name in peers[1:]]
        ratio = f" ({added[0] / added[1]:.1f}x)" if len(added) == 2 else ""
        cells = " | ".join(f"{us[name]:.1f}" for name in peers)
        print(f"| {n_envs} | {cells} | " + " / ".join(f"{a:.1f}" for a in added) + f"{ratio} |")


if __name__ == "__main__":
    main()
