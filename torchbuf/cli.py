"""The ``torchbuf`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from torchbuf.demo import run_demo


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="torchbuf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="record CartPole through torchbuf and print a summary")
    demo.add_argument("--n-envs", type=int, default=8)
    demo.add_argument("--steps", type=int, default=1200)
    demo.add_argument("--device", default=None, help="storage device (default: cuda if present, else cpu)")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = run_demo(args.n_envs, args.steps, args.device, args.seed)
    print("\n".join(summary.lines()))
    return 0
