"""One epoch of behaviour cloning: torchbuf's BC against imitation 1.0.1's, same data and policy.

Both learners train a copy of the same SB3 ``ActorCriticPolicy`` with 32-32 hidden
layers (imitation's default ``FeedForward32Policy`` architecture) with Adam at
imitation's defaults (lr 1e-3, ``ent_weight`` 1e-3, ``l2_weight`` 0), on the same
scripted-expert CartPole episodes, with the same batch size and so the same number
of batches per epoch (both drop the last partial batch):

- torchbuf: ``learners.BC`` over a ``TransitionLoader`` of the recorded tensors;
- imitation: ``algorithms.bc.BC(demonstrations=Transitions)`` (its torch
  ``DataLoader`` with its collate function), ``train(n_epochs=1)`` without a
  progress bar.

Time per epoch comes from ``torch.utils.benchmark.Timer`` (the epoch is the
statement; each run continues training from where the last left off).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.utils.benchmark import Timer

from torchbuf.envs import TorchCartPole
from torchbuf.envs.experts import scripted_cartpole
from torchbuf.learners import BC
from torchbuf.loader import TransitionLoader
from torchbuf.rollout import flatten_trajectories, generate_trajectories, make_sample_until

EPISODES = 10
NET_ARCH = [32, 32]


def expert_data(episodes: int) -> tuple[list[Any], Any]:
    """Scripted CartPole episodes recorded through torchbuf, and the same as imitation's Transitions."""
    trajs = generate_trajectories(
        scripted_cartpole, TorchCartPole(episodes, seed=0), make_sample_until(min_episodes=episodes)
    )
    return trajs, flatten_trajectories(trajs).to_imitation()


def _policy() -> Any:
    from stable_baselines3.common.policies import ActorCriticPolicy

    env = gym.make("CartPole-v1")
    torch.manual_seed(0)
    return ActorCriticPolicy(env.observation_space, env.action_space, lambda _: 1e-3, net_arch=NET_ARCH)


def _torchbuf_epoch(policy: Any, trajs: list[Any], batch_size: int) -> tuple[Any, int]:
    bc = BC(policy)
    loader = TransitionLoader(trajs, batch_size, seed=0, epochs=1, keys=("obs", "acts"))
    return (lambda: bc.train(loader)), loader.batches_per_epoch


def _imitation_epoch(policy: Any, transitions: Any, batch_size: int) -> tuple[Any, int]:
    from imitation.algorithms import bc as imitation_bc

    env = gym.make("CartPole-v1")
    trainer = imitation_bc.BC(
        observation_space=env.observation_space,
        action_space=env.action_space,
        rng=np.random.default_rng(0),
        policy=policy,
        demonstrations=transitions,
        batch_size=batch_size,
        device="cpu",
    )
    epoch = lambda: trainer.train(n_epochs=1, progress_bar=False, log_interval=10**9)  # noqa: E731
    return epoch, len(transitions) // batch_size


def bc_rows(args: argparse.Namespace, skipped: dict[str, str]) -> dict[str, Any]:
    """Times an epoch of each learner for each batch size.

    Returns:
        ``{"episodes", "transitions", "net_arch", "rows": [...]}``; a row per
        (learner, batch size) with ms per epoch, batches and the ``Measurement``.
    """
    if args.device != "cpu":
        skipped.setdefault("bc [imitation]", "imitation's BC is timed on the CPU only")
    if importlib.util.find_spec("imitation") is None:
        skipped.setdefault("bc [imitation]", "imitation is not installed in this environment")
    trajs, transitions = expert_data(args.bc_episodes)
    base = _policy()
    rows = []
    for batch_size in args.bc_batch_sizes:
        learners = {"torchbuf": lambda p, b=batch_size: _torchbuf_epoch(p, trajs, b)}
        if "bc [imitation]" not in skipped:
            learners["imitation"] = lambda p, b=batch_size: _imitation_epoch(p, transitions, b)
        for name, make in learners.items():
            epoch, batches = make(copy.deepcopy(base))
            epoch()  # warm-up: optimizer state, first allocations
            timer = Timer(
                "epoch()",
                globals={"epoch": epoch},
                label=f"BC epoch [CartPole, {len(transitions)} transitions, {NET_ARCH} policy]",
                sub_label=f"batch {batch_size:>4}",
                description=name,
                num_threads=args.threads,
            )
            m = timer.blocked_autorange(min_run_time=args.bc_min_time)
            rows.append(
                {
                    "peer": name,
                    "batch_size": batch_size,
                    "batches": batches,
                    "epoch_ms": m.median * 1e3,
                    "epoch_iqr_ms": m.iqr * 1e3,
                    "batch_us": m.median / batches * 1e6,
                    "measurement": m,
                }
            )
            print(f"  bc epoch batch={batch_size:>4} {name:>10}: {m.median * 1e3:10.1f} ms", flush=True)
    return {"episodes": args.bc_episodes, "transitions": len(transitions), "net_arch": NET_ARCH, "rows": rows}


def ratios(bc: dict[str, Any]) -> list[dict[str, Any]]:
    """imitation's epoch time over torchbuf's, per batch size (``None`` if either is missing)."""
    out = []
    for b in dict.fromkeys(r["batch_size"] for r in bc["rows"]):
        ms = {r["peer"]: r["epoch_ms"] for r in bc["rows"] if r["batch_size"] == b}
        tb, im = ms.get("torchbuf"), ms.get("imitation")
        out.append({"batch_size": b, "speedup": None if tb is None or im is None else im / tb})
    return out


def markdown(results: dict[str, Any]) -> str:
    """The report section (empty when the run had no BC section)."""
    bc = results.get("bc")
    if not bc:
        return ""
    speedups = {r["batch_size"]: r["speedup"] for r in ratios(bc)}
    lines = [
        "| batch size | batches/epoch | learner | ms per epoch (IQR) | µs per batch | imitation / torchbuf |",
        "|---|---|---|---|---|---|",
    ]
    for r in bc["rows"]:
        s = speedups.get(r["batch_size"])
        ratio = "" if r["peer"] != "torchbuf" or s is None else f"**{s:.2f}×**"
        lines.append(
            f"| {r['batch_size']} | {r['batches']} | {r['peer']} | {r['epoch_ms']:.1f} "
            f"({r['epoch_iqr_ms']:.1f}) | {r['batch_us']:.0f} | {ratio} |"
        )
    rerun = results.get("reruns", {}).get("bc")
    when = "" if rerun is None else f" (rerun alone: {rerun['machine']['date']}, {rerun['seconds']:.0f} s)"
    return f"""
## BC epoch{when}

One epoch of behaviour cloning over {bc["episodes"]} scripted-expert CartPole episodes
({bc["transitions"]:,} transitions), torchbuf's `learners.BC` from a `TransitionLoader`
against imitation 1.0.1's `algorithms.bc.BC` from its `Transitions`: a copy of the same
SB3 `ActorCriticPolicy` ({bc["net_arch"]} hidden units, imitation's default size), Adam
at imitation's defaults (torchbuf's Adam is the fused implementation, imitation's is
torch's default), the same batch size and number of batches, in this process.
The last column is imitation's time per epoch over torchbuf's (above 1: torchbuf is faster).

{chr(10).join(lines)}
"""
