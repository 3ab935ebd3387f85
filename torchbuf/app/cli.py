"""The ``torchbuf`` command line.

``torchbuf demo`` runs the main job (:mod:`torchbuf.app.demo`): scripted-expert episodes
recorded through torchbuf, behaviour cloning, GAIL, and an evaluation of expert,
BC, GAIL and random policies; it prints the results table and writes
``results.json``, ``results.md`` and ``learning_curves.png`` into ``--out``.
Budgets set to 0 skip a stage (``--bc-epochs 0``, ``--gail-steps 0``).

``--env mjlab:Mjlab-Cartpole-Balance`` runs the same job on mjlab's cartpole (a real
simulator, installed apart: ``pip install mjlab==1.6.0``) with an LQR expert;
``--episode-steps`` shortens its episodes (default: the task's 1000 steps).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

import torch

from torchbuf.app.config import (
    BACKENDS,
    DEFAULT_BUDGETS,
    DEFAULT_N_ENVS,
    ENV_IDS,
    JobConfig,
    default_device,
)
from torchbuf.app.sim import SIM_ENV_IDS, require_simulator

__all__ = ["main"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (skip the stage) or a positive integer, got {value}")
    return value


def _device(text: str) -> str:
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
    return text


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="the main job: record an expert, BC, GAIL, evaluate; print a table, write a plot and JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--env",
        choices=ENV_IDS + SIM_ENV_IDS,
        default="CartPole-v1",
        help="an embedded env, or an mjlab task (needs mjlab installed) (default: CartPole-v1)",
    )
    demo.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch: torch-native env + torchbuf PPO; sb3: SB3 DummyVecEnv + SB3 PPO (default: torch)",
    )
    demo.add_argument("--device", type=_device, default=None, help="default: cuda if present, else cpu")
    demo.add_argument(
        "--n-envs",
        type=_positive,
        default=None,
        help=f"envs stepped together (default: {DEFAULT_N_ENVS}, and the GAIL preset's for GAIL)",
    )
    demo.add_argument(
        "--episode-steps",
        type=_positive,
        default=None,
        help="an mjlab task's episode length in env steps (default: the task's own)",
    )
    demo.add_argument("--seeds", type=int, nargs="+", default=[0], help="one full run per seed (default: 0)")
    budgets = ", ".join(f"{k}: {dataclasses.asdict(v)}" for k, v in DEFAULT_BUDGETS.items())
    group = demo.add_argument_group("budgets (per seed; defaults depend on --env)", budgets)
    group.add_argument("--expert-episodes", type=_positive, help="expert episodes recorded")
    group.add_argument("--bc-epochs", type=_non_negative, help="BC epochs over them (0 skips BC)")
    group.add_argument(
        "--gail-steps",
        type=_non_negative,
        help="GAIL generator env steps (0 skips GAIL; default: the preset's)",
    )
    group.add_argument("--eval-episodes", type=_positive, help="evaluation episodes per policy")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument(
        "--threads", type=_positive, default=1, help="torch CPU threads (default 1: small nets run fastest)"
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> JobConfig:
    """The job that parsed ``torchbuf demo`` arguments describe."""
    overrides = {
        name: value
        for name in ("expert_episodes", "bc_epochs", "gail_steps", "eval_episodes")
        if (value := getattr(args, name)) is not None
    }
    return JobConfig(
        env_id=args.env,
        backend=args.backend,
        device=args.device or default_device(),
        n_envs=args.n_envs,
        seeds=tuple(args.seeds),
        budgets=dataclasses.replace(DEFAULT_BUDGETS[args.env], **overrides),
        episode_steps=args.episode_steps,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    from torchbuf.app.demo import run_job
    from torchbuf.app.plots import MISSING_MATPLOTLIB
    from torchbuf.app.report import results_markdown, write_outputs
    from torchbuf.distributed.job import add_parser as add_ddp_bc_parser

    parser = argparse.ArgumentParser(prog="torchbuf", description="torchbuf: a rollout buffer on the device.")
    sub = parser.add_subparsers(dest="command", required=True)
    _demo_parser(sub)
    add_ddp_bc_parser(sub)  # torchrun --nproc_per_node=N --no-python torchbuf ddp-bc ...
    args = parser.parse_args(argv)
    if args.command == "ddp-bc":
        return int(args.run(args))
    torch.set_num_threads(args.threads)
    try:
        config = config_from_args(args)
        require_simulator(config.env_id)
    except (ValueError, ModuleNotFoundError) as err:  # e.g. GAIL's rounds, or mjlab missing
        sub.choices["demo"].error(str(err))
    result = run_job(config, progress=not args.no_progress).to_dict()
    files = write_outputs(result, args.out)
    print(results_markdown(result))
    if "plot" not in files:
        print(MISSING_MATPLOTLIB)
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0
