"""Recording ManiSkill trajectory files: ManiSkill's own ``RecordEpisode`` vs torchbuf, and the env alone.

Usage (in the sims venv, ``make bench-maniskill``, where ManiSkill 3 runs on its CPU backend)::

    python -m benchmarks.maniskill_bench                  # writes docs/maniskill_benchmarks.{json,md}
    python -m benchmarks.maniskill_bench --quick --out /somewhere

One real ManiSkill env (PickCube-v1, ``sim_backend="physx_cpu"``, ``obs_mode="state"``,
``pd_ee_delta_pos``, episodes cut at 50 steps) is stepped with the same actions (seeded,
uniform in the action box) and the same seeds (``reset(seed=0)``; torch's, from which
ManiSkill draws the episodes after an autoreset) three ways, each behind
``ManiSkillVectorEnv`` (same-step autoreset):

- the env alone, nothing recorded (the floor);
- ManiSkill's ``RecordEpisode`` around the env (``save_video=False``,
  ``record_env_state=False``: the same content as torchbuf's file), which writes each
  episode into its ``.h5`` and rewrites its ``.json`` at the episode's autoreset and
  finishes both at ``close()``;
- torchbuf's ``VectorBufferingWrapper`` around the vector env, then
  ``pop_trajectories()`` and ``save_maniskill(...)`` into the same two files.

Each timed block runs from ``reset(seed=0)`` through every step to the files on disk and
``close()`` (which ``RecordEpisode`` needs to finish its files; the other two close the
same env); making the env is not timed. The three alternate, one warm-up round and then
``--reps`` rounds, each with a fresh env; the median is reported, as wall time and as the
process's CPU time outside the simulator (the env ``gym.make`` returned is clocked), which
shared cores disturb less. After the last round, torchbuf's file is read back with
ManiSkill's own ``ManiSkillTrajectoryDataset`` and compared with the actions fed and with
the file ``RecordEpisode`` wrote in the same round (a sanity check, not a timing): a
mismatch exits with an error. Where ManiSkill has no Vulkan device the run says why and
writes nothing, as the sims tests skip.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from benchmarks.report import write_results
from benchmarks.run import machine
from tests.sims.maniskill_env import CONTROL, ENV_ID, make_cpu_env, vulkan_problem
from torchbuf import VectorBufferingWrapper
from torchbuf.formats import save_maniskill

EPISODE = 50
"""Steps per episode: the time limit (the seeded random actions do not solve PickCube before it)."""
STEPS = {"full": 2000, "quick": 100}
"""Steps per timed run."""
RECORDERS = (
    "env alone (floor)",
    "ManiSkill RecordEpisode",
    "torchbuf VectorBufferingWrapper + save_maniskill",
)
OWN, TORCHBUF = RECORDERS[1], RECORDERS[2]
FILES = {OWN: "own.h5", TORCHBUF: "torchbuf.h5"}


def actions(steps: int, seed: int = 0) -> torch.Tensor:
    """``steps`` batches of one PickCube action, uniform in ``pd_ee_delta_pos``'s box [-1, 1]^4."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(-1, 1, (steps, 1, 4)).astype(np.float32))


# -------------------------------------------------------------------------- recorders
def vector_env(env: Any) -> Any:
    from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv

    return ManiSkillVectorEnv(env, ignore_terminations=False)


def drive(env: Any, acts: torch.Tensor) -> None:
    torch.manual_seed(0)  # ManiSkill draws the autoreset episodes (reset without a seed) from torch's RNG
    env.reset(seed=0)
    for act in acts:
        env.step(act)


class Clocked(gym.Wrapper):
    """The env ``gym.make`` returned, counting the process's CPU seconds spent in it (the simulator's)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.cpu = 0.0

    def _clock(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return call(*args, **kwargs)
        finally:
            self.cpu += time.process_time() - start

    def step(self, action: Any) -> Any:
        return self._clock(self.env.step, action)

    def reset(self, **kwargs: Any) -> Any:
        return self._clock(self.env.reset, **kwargs)

    def close(self) -> None:
        self._clock(self.env.close)


Setup = tuple[Any, Callable[[], None], Clocked]
"""A recorder ready to run: the env to drive, what finishes its files after the last step, the simulator."""


def floor(folder: Path) -> Setup:
    """The env alone: records nothing, closes."""
    sim = Clocked(make_cpu_env(EPISODE))
    env = vector_env(sim)
    return env, env.close, sim


def record_episode(folder: Path) -> Setup:
    """ManiSkill's ``RecordEpisode`` under the vector env (as ManiSkill's own examples wrap it)."""
    from mani_skill.utils.wrappers.record import RecordEpisode

    sim = Clocked(make_cpu_env(EPISODE))
    recorder = RecordEpisode(
        sim, str(folder), trajectory_name="own", save_video=False, record_env_state=False
    )
    env = vector_env(recorder)
    return (
        env,
        env.close,
        sim,
    )  # close() flushes the partial episode, prunes and closes the .h5, writes the .json


def torchbuf_recorder(folder: Path) -> Setup:
    """torchbuf's wrapper over the vector env; one pop and ``save_maniskill`` after the last step."""
    sim = Clocked(make_cpu_env(EPISODE))
    env = VectorBufferingWrapper(vector_env(sim))
    spec = env.unwrapped.spec
    env_info = {"env_id": spec.id, "env_kwargs": spec.kwargs, "max_episode_steps": spec.max_episode_steps}

    def finish() -> None:
        trajs, _ = env.pop_trajectories()
        save_maniskill(
            folder / FILES[TORCHBUF], trajs, env_info=env_info, control_mode=CONTROL, drop_infos=True
        )
        env.close()

    return env, finish, sim


SETUPS: dict[str, Callable[[Path], Setup]] = dict(zip(RECORDERS, (floor, record_episode, torchbuf_recorder)))
Times = tuple[float, float, float, float]
"""One run's seconds: wall, CPU (the process's), the wall time after the last step, the simulator's CPU."""


def timed(name: str, acts: torch.Tensor, folder: Path) -> Times:
    """The seconds of one run of ``name`` into ``folder``; making its env is not timed."""
    folder.mkdir(parents=True)
    env, finish, sim = SETUPS[name](folder)
    wall, cpu = time.perf_counter(), time.process_time()
    drive(env, acts)
    stepped = time.perf_counter()
    finish()
    end = time.perf_counter()
    return end - wall, time.process_time() - cpu, end - stepped, sim.cpu


def rounds(acts: torch.Tensor, root: Path, reps: int) -> tuple[dict[str, list[Times]], Path]:
    """``reps`` timed rounds of every recorder after a warm-up: the times, and the last round's folder.

    Each round starts one recorder later than the one before, so none always runs first.
    """
    times: dict[str, list[Times]] = {name: [] for name in RECORDERS}
    for i in range(reps + 1):
        last = root / f"round-{i}"
        for name in RECORDERS[i % 3 :] + RECORDERS[: i % 3]:
            seconds = timed(name, acts, last / str(RECORDERS.index(name)))
            if i:
                times[name].append(seconds)
            label = f"round {i}{'' if i else ' (warm-up)'}"
            print(f"{label:17} {name:50} {len(acts) / seconds[0]:8,.0f} steps/s", flush=True)
        if i < reps:
            shutil.rmtree(last)
    return times, last


# ---------------------------------------------------------------------- sanity check
def check_files(acts: torch.Tensor, last: Path) -> dict[str, Any]:
    """Reads torchbuf's file with ManiSkill's reader; compares it with the actions and RecordEpisode's file.

    Raises:
        SystemExit: the reader's actions, episode count or any dataset differ.
    """
    import h5py
    from mani_skill.trajectory.dataset import ManiSkillTrajectoryDataset

    ours = last / str(RECORDERS.index(TORCHBUF)) / FILES[TORCHBUF]
    theirs = last / str(RECORDERS.index(OWN)) / FILES[OWN]
    ds = ManiSkillTrajectoryDataset(str(ours))
    problems = []
    if not torch.equal(torch.from_numpy(ds.actions), acts[:, 0]):
        problems.append("the actions ManiSkill's reader returns differ from those fed")
    if ds.env_id != ENV_ID:
        problems.append(f"env_id {ds.env_id!r}")
    with h5py.File(ours, "r") as mine, h5py.File(theirs, "r") as own:
        if list(mine) != list(own):
            problems.append(f"groups {list(mine)} vs RecordEpisode's {list(own)}")
        compared, differ = _compare_groups(mine, own)
    problems += [f"{path} differs from RecordEpisode's" for path in differ]
    checked = {
        "reader": "mani_skill.trajectory.dataset.ManiSkillTrajectoryDataset",
        "transitions": len(ds.actions),
        "episodes": len(ds.episodes),
        "datasets_compared": compared,
        "datasets_differing": len(differ),
    }
    print(f"read back: {checked}")
    if problems:
        sys.exit("ManiSkill's reader disagrees with torchbuf's file: " + "; ".join(problems))
    return checked


def _compare_groups(mine: Any, own: Any) -> tuple[int, list[str]]:
    """(datasets compared, paths of those whose members, dtype, shape or values differ)."""
    compared, differ = 0, []

    def visit(path: str, node: Any) -> None:
        nonlocal compared
        if not hasattr(node, "shape"):
            if path in mine and list(node) != list(mine[path]):
                differ.append(f"{path} (members)")
            return
        compared += 1
        other = mine.get(path)
        same = other is not None and (other.dtype, other.shape) == (node.dtype, node.shape)
        if not (same and np.array_equal(other[()], node[()])):
            differ.append(path)

    own.visititems(visit)
    return compared, differ


# ----------------------------------------------------------------------------- report
def summarize(times: dict[str, list[Times]], steps: int) -> list[dict[str, Any]]:
    """One row per recorder: medians, transitions/s, ratios and the CPU time outside the simulator."""
    wall = {name: statistics.median(t[0] for t in times[name]) for name in RECORDERS}
    outside = {name: statistics.median(t[1] - t[3] for t in times[name]) for name in RECORDERS}
    floor_name = RECORDERS[0]
    return [
        dict(
            recorder=name,
            transitions=steps,
            ms=wall[name] * 1e3,
            after_last_step_ms=statistics.median(t[2] for t in times[name]) * 1e3,
            transitions_per_s=steps / wall[name],
            transitions_per_s_range=[
                steps / max(t[0] for t in times[name]),
                steps / min(t[0] for t in times[name]),
            ],
            vs_record_episode=wall[OWN] / wall[name] if name == TORCHBUF else None,
            vs_env_alone=wall[floor_name] / wall[name],
            cpu_us_outside_sim=outside[name] / steps * 1e6,
            recording_cpu_us=(outside[name] - outside[floor_name]) / steps * 1e6
            if name != floor_name
            else None,
            wall_s=[t[0] for t in times[name]],
            cpu_s=[t[1] for t in times[name]],
            after_last_step_s=[t[2] for t in times[name]],
            sim_cpu_s=[t[3] for t in times[name]],
        )
        for name in RECORDERS
    ]


def report(results: dict[str, Any]) -> str:
    """The markdown page: machine and date, the table, the sanity check, what each row does."""
    m, c = results["machine"], results["check"]
    lines = [
        "# Recording ManiSkill trajectory files",
        "",
        f"`python -m benchmarks.maniskill_bench{' --quick' if results['quick'] else ''}` on {m['cpu']} "
        f"({m['cores']} cores), torch {m['versions']['torch']}, {results['versions']}, "
        f"{_runs(results['reps'])} after a warm-up, {m['date'][:10]}. {results['env']}, "
        f"{results['steps']} steps of the same seeded random actions per run ({c['episodes']} "
        f"episodes, cut at {EPISODE} steps), timed from `reset` to the files on disk "
        "and the env closed. The 1-minute load average was "
        f"{m['load_avg_1min_at_start']:.1f} at the start (other jobs shared the cores; the range "
        "column shows how far the wall times varied), so the process's CPU time spent outside the "
        "simulator is given beside them.",
        "",
        "| recorder | transitions/s | range over the runs | ms after the last step | vs RecordEpisode "
        "| vs env alone | CPU µs / transition outside the simulator | recording's share |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["rows"]:
        ratio = "—" if r["vs_record_episode"] is None else f"{r['vs_record_episode']:.2f}x"
        share = "—" if r["recording_cpu_us"] is None else f"{r['recording_cpu_us']:,.0f}"
        low, high = r["transitions_per_s_range"]
        lines.append(
            f"| {r['recorder']} | {r['transitions_per_s']:,.0f} | {low:,.0f}–{high:,.0f} | "
            f"{r['after_last_step_ms']:,.0f} | {ratio} | "
            f"{r['vs_env_alone']:.2f}x | {r['cpu_us_outside_sim']:,.0f} | {share} |"
        )
    lines += [
        "",
        f"Read back (last run): ManiSkill's `ManiSkillTrajectoryDataset` reads torchbuf's file as "
        f"{c['transitions']} transitions in {c['episodes']} episodes, its actions equal to those fed; "
        f"{c['datasets_differing']} of the {c['datasets_compared']} datasets of the file `RecordEpisode` "
        "wrote in the same run differ from torchbuf's (members, dtype, shape or values).",
        "",
        *NOTES,
    ]
    return "\n".join(lines) + "\n"


def _runs(reps: int) -> str:
    return "one run" if reps == 1 else f"median of {reps} runs"


NOTES = [
    "The ratios are wall-time throughputs: the row's over `RecordEpisode`'s (above 1 is faster) and over "
    "the env alone (1 is free). *Of which after the last step* is the wall time from the last `step` "
    "returning to the end: closing the env in every row, and `RecordEpisode`'s last flush and closing "
    "of its `.h5`, or torchbuf's pop and `save_maniskill`. *CPU µs outside the simulator* is the "
    "process's CPU time minus the time spent in the env `gym.make` returned (its `reset`, `step` and "
    "`close`), per transition: `ManiSkillVectorEnv`, the recorder and its file writes; the "
    "*recording's share* is that minus the env alone's (medians over the runs).",
    "",
    "- **env alone (floor)**: `ManiSkillVectorEnv` over the env, stepped and closed; nothing recorded.",
    "- **ManiSkill RecordEpisode**: `RecordEpisode(env, save_video=False, record_env_state=False)` under "
    "`ManiSkillVectorEnv`: per step it appends obs, action, reward and flags to its numpy buffers; at each "
    "autoreset it writes the episode's group into its open `.h5` and rewrites the whole `.json`; "
    "`close()` writes the last episode, prunes and closes the `.h5`.",
    "- **torchbuf VectorBufferingWrapper + save_maniskill**: the wrapper over `ManiSkillVectorEnv` "
    "(preallocated torch storage, the final observation from `final_observation`), then "
    "`pop_trajectories()` and `save_maniskill(..., drop_infos=True)` (obs, actions, rewards, "
    "terminated / truncated and the success / fail flags: `RecordEpisode`'s members), each file written "
    "to a temporary file and renamed into place.",
]


# ------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` shrinks the run to a smoke run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"smoke run: {STEPS['quick']} steps, 1 repetition")
    p.add_argument("--out", default="docs", help="folder for maniskill_benchmarks.json/.md")
    p.add_argument("--dir", default=None, help="where the files are written (default: a temp dir)")
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 7, quick 1)")
    args = p.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 7)
    return args


def _versions() -> str:
    names = {"mani_skill": "mani-skill", "sapien": "sapien", "h5py": "h5py"}
    return ", ".join(f"{label} {importlib.import_module(mod).__version__}" for mod, label in names.items())


def main(argv: list[str] | None = None) -> None:
    """Times the three recorders, checks torchbuf's file with ManiSkill's reader, writes the report."""
    args = parse_args(argv)
    problem = vulkan_problem()
    if problem is not None:  # as the sims tests skip: nothing is timed or written
        print(f"skipped: ManiSkill cannot make a CPU env here ({problem}); see tests/sims/install_vulkan.sh")
        return
    host = machine()
    warnings.filterwarnings("ignore")
    logging.getLogger("mani_skill").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    acts = actions(STEPS["quick" if args.quick else "full"])
    root = Path(tempfile.mkdtemp(prefix="maniskill_bench-", dir=args.dir))
    try:
        times, last = rounds(acts, root, args.reps)
        check = check_files(acts, last)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = {
        "machine": host,
        "quick": args.quick,
        "reps": args.reps,
        "steps": len(acts),
        "env": f'{ENV_ID} (`sim_backend="physx_cpu"`, `obs_mode="state"`, `{CONTROL}`, one env)',
        "versions": _versions(),
        "rows": summarize(times, len(acts)),
        "check": check,
    }
    write_results(args.out, "maniskill_benchmarks", results, report(results))


if __name__ == "__main__":
    main()
