"""ManiSkill 3 trajectory files: trajectories out as ``RecordEpisode`` writes them, and back in.

:func:`save_maniskill` writes the two files that ManiSkill 3.0's ``RecordEpisode``
wrapper writes and its ``ManiSkillTrajectoryDataset``, ``replay_trajectory`` and
``mani_skill.trajectory.utils`` read: ``<name>.h5`` holds one group per episode::

    traj_0/
        obs                (T + 1, ...) every observation, the final one included;
                           a dict observation is a group of them, nested as the dict
        actions            (T, ...)  (a group for dict actions)
        terminated         (T,) bool
        truncated          (T,) bool
        success, fail      (T,) bool, each step's info flag, where the infos hold it
        env_states         (T + 1, ...) groups of the sim's states, where given
        rewards            (T,)  (for trajectories with rewards)
    traj_1/ ...

and ``<name>.json`` the episodes' metadata: ``env_info`` (``env_id``, ``env_kwargs``,
``max_episode_steps``), ``commit_info``, and per episode ``episode_id``,
``episode_seed``, ``control_mode``, ``elapsed_steps`` (T), ``reset_kwargs`` and the
last step's ``success`` / ``fail``. Groups keep their keys' order, and ``rgb``,
``depth`` and ``seg`` observations are gzip-compressed (level 5), as ManiSkill does.

Every array keeps its dtype and shape, so a round trip is exact (``RecordEpisode``
casts actions and rewards to float32; ManiSkill's controllers and rewards are float32
already, and other dtypes are kept, not cast). ManiSkill keeps both flags at every
step, so ``terminated`` / ``truncated`` anywhere round trip; ``terminal`` is whether
the last step is either (``RecordEpisode``'s reading: otherwise a partial episode).

What ManiSkill files cannot carry is refused with a ``ValueError`` naming the
trajectory: infos other than the ``success`` / ``fail`` flags (pass
``drop_infos=True``; the flags are read first), a flag present at some steps only,
trajectories without steps or whose ``terminal`` disagrees with their flags, dict
keys holding ``"/"``, dtypes numpy has no name for (bfloat16).

Writing and reading need h5py: ``pip install 'torchbuf[maniskill]'``. Loading reads
arrays, attributes and json only, never code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchbuf.data.types import Trajectory, TrajectoryWithRew
from torchbuf.formats.ends import check_end
from torchbuf.formats.h5 import h5py_module
from torchbuf.io import atomic

PathLike = str | os.PathLike[str]
COMPRESSED_KEYS = frozenset({"rgb", "depth", "seg"})
"""Datasets ``RecordEpisode`` gzip-compresses (level 5), by their key."""
FIELDS = ("obs", "actions", "terminated", "truncated", "success", "fail", "env_states", "rewards")
"""A trajectory group's members, in ``RecordEpisode``'s order."""
_OWN_KEYS = ("episode_id", "elapsed_steps", "success", "fail")


def save_maniskill(
    path: PathLike,
    trajs: Sequence[Trajectory],
    *,
    env_info: Mapping[str, Any] | None = None,
    control_mode: str | None = None,
    episodes: Sequence[Mapping[str, Any]] | None = None,
    env_states: Sequence[Any] | None = None,
    success_key: str | None = "success",
    fail_key: str | None = "fail",
    keep: Callable[[Trajectory], bool] | None = None,
    drop_infos: bool = False,
    source_type: str | None = None,
    source_desc: str | None = None,
) -> list[str]:
    """Writes trajectories as a ManiSkill trajectory file and its json, one episode each.

    Args:
        path: The ``.h5`` file; the json goes beside it (``<name>.json``). Each file
            is created or replaced once complete; the parent must exist.
        trajs: Trajectories, e.g. ``pop_finished_trajectories()[0]``.
        env_info: The json's ``env_info``: ``{"env_id": ..., "env_kwargs": {...},
            "max_episode_steps": ...}`` (what ``gym.make`` was given), or ``None``.
        control_mode: Each episode's ``control_mode`` (e.g. ``"pd_ee_delta_pos"``).
        episodes: One mapping per trajectory in ``trajs`` with more of its episode's
            json, e.g. ``{"episode_seed": 3, "reset_kwargs": {"seed": 3}}``
            (``episode_seed`` defaults to ``None``, ``reset_kwargs`` to ``{}``).
        env_states: One per trajectory in ``trajs``: ``None`` or a (nested) dict or
            TensorDict of arrays with ``T + 1`` rows (``env.get_state_dict()`` after
            ``reset`` and each step), written as ``env_states``.
        success_key: The info key whose per-step flag is written as ``success``
            (where a step's info holds ``final_info``, gymnasium's and ManiSkill's
            same-step autoreset, it is read from there); ``None``: not written.
        fail_key: The same for ``fail``.
        keep: Write only the trajectories for which this is true (e.g.
            ``info_flag("success")``); episodes are numbered in the order kept.
        drop_infos: Save without the infos' other keys, which the file cannot hold.
        source_type: The json's ``source_type`` (e.g. ``"rl"``, ``"motionplanning"``).
        source_desc: The json's ``source_desc``.

    Returns:
        The trajectory group names written (``traj_0, traj_1, ...``), in order.

    Raises:
        ImportError: h5py is missing (``pip install 'torchbuf[maniskill]'``).
        TypeError: ``env_info`` or an episode's json is not json-serializable.
        ValueError: a trajectory the file cannot carry (see the module); ``path``
            not ending in ``.h5``; ``episodes`` or ``env_states`` of another length
            than ``trajs``, an episode naming a key torchbuf writes, env states
            without ``T + 1`` rows.
        OSError: ``path``'s parent is missing or not writable.
    """
    h5py = h5py_module("maniskill")
    h5_path = Path(path)
    if h5_path.suffix != ".h5":
        raise ValueError(f"{h5_path} does not end in .h5, where ManiSkill's readers find its json beside it")
    _check_lengths(len(trajs), episodes=episodes, env_states=env_states)
    chosen = [i for i, t in enumerate(trajs) if keep is None or keep(t)]
    flags = {i: _flags(trajs[i], i, success_key, fail_key, drop_infos) for i in chosen}
    records = []
    for k, i in enumerate(chosen):
        check_end(trajs[i], i, "ManiSkill", flags_only_at_end=False)
        extra = {} if episodes is None else dict(episodes[i])
        records.append(_episode(k, len(trajs[i]), control_mode, extra, flags[i], i))
    info = None if env_info is None else dict(env_info)
    meta: dict[str, Any] = {"env_info": info, "commit_info": None, "episodes": records}
    meta.update({k: v for k, v in (("source_type", source_type), ("source_desc", source_desc)) if v})
    text = _json(meta)
    with atomic.replacing_file(h5_path) as tmp, h5py.File(tmp, "w") as f:
        for k, i in enumerate(chosen):
            states = None if env_states is None else env_states[i]
            _write_traj(f.create_group(f"traj_{k}", track_order=True), trajs[i], i, flags[i], states)
    with atomic.replacing_file(json_path(h5_path)) as tmp:
        tmp.write_text(text)
    return [f"traj_{k}" for k in range(len(chosen))]


def load_maniskill(path: PathLike, *, device: torch.device | str = "cpu") -> list[Trajectory]:
    """Reads a ManiSkill trajectory file's episodes as trajectories, in the json's order.

    Args:
        path: The ``.h5`` file (its json beside it, as ``RecordEpisode`` writes them).
        device: Where the tensors go.

    Returns:
        One trajectory per episode of the json (``traj_<episode_id>``):
        :class:`~torchbuf.TrajectoryWithRew` where the group has ``rewards``, else
        :class:`~torchbuf.Trajectory`; ``obs`` all ``T + 1`` observations (a
        TensorDict for a group), ``terminal`` whether the last step is terminated or
        truncated, and infos ``{"success": ..., "fail": ...}`` per step where the
        group has those flags (else ``None``). ``env_states`` are not read (see
        :func:`load_maniskill_env_states`).

    Raises:
        ImportError: h5py is missing.
        ValueError: an episode without its group, or whose group holds other members
            than ManiSkill's, arrays whose lengths disagree with ``elapsed_steps``,
            flags that are not bool.
    """
    h5py = h5py_module("maniskill")
    device = torch.device(device)
    episodes = json.loads(json_path(Path(path)).read_text())["episodes"]
    with h5py.File(path, "r") as f:
        return [_read_traj(_group(f, ep), int(ep["elapsed_steps"]), device) for ep in episodes]


def load_maniskill_env_states(path: PathLike) -> list[TensorDict | None]:
    """Reads each episode's ``env_states`` (``T + 1`` rows), in the json's order.

    Args:
        path: The ``.h5`` file.

    Returns:
        One (nested) TensorDict of CPU tensors per episode, or ``None`` where it has none.

    Raises:
        ImportError: h5py is missing.
        ValueError: an episode without its group.
    """
    h5py = h5py_module("maniskill")
    episodes = json.loads(json_path(Path(path)).read_text())["episodes"]
    with h5py.File(path, "r") as f:
        groups = [_group(f, ep) for ep in episodes]
        return [
            _tensordict(g["env_states"], int(ep["elapsed_steps"]) + 1) if "env_states" in g else None
            for g, ep in zip(groups, episodes)
        ]


def json_path(path: Path) -> Path:
    """The json beside a ManiSkill ``.h5`` file, as ``RecordEpisode`` names it."""
    return path.with_suffix(".json")


# ------------------------------------------------------------------------ outwards
def _check_lengths(n: int, **per_traj: Sequence[Any] | None) -> None:
    for name, values in per_traj.items():
        if values is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries for {n} trajectories (one per trajectory)")


def _flags(
    traj: Trajectory, index: int, success_key: str | None, fail_key: str | None, drop_infos: bool
) -> dict[str, np.ndarray]:
    """The per-step ``success`` / ``fail`` flags read from the infos, where they hold them."""
    infos = traj.infos
    if infos is None:
        return {}
    keys = {name: key for name, key in (("success", success_key), ("fail", fail_key)) if key is not None}
    if not drop_infos:
        other = sorted({str(k) for info in infos for k in info} - set(keys.values()))
        if other:
            raise ValueError(
                f"trajectory {index}: its infos hold {other}, which a ManiSkill file cannot carry (only "
                "the success and fail flags per step): pass drop_infos=True to save without them"
            )
    out = {}
    for name, key in keys.items():
        values = [_step_value(info, key) for info in infos]
        present = [v is not None for v in values]
        if any(present) and not all(present):
            raise ValueError(
                f"trajectory {index}: step {present.index(not present[0])}'s info "
                f"{'has' if present[0] is False else 'lacks'} {key!r}, unlike step 0's; ManiSkill "
                "records a flag at every step or none"
            )
        if all(present):
            out[name] = np.array([_one_flag(v, key, index, t) for t, v in enumerate(values)], dtype=bool)
    return out


def _step_value(info: Mapping[str, Any], key: str) -> Any:
    """``info[key]``; at a same-step autoreset, the ended episode's own (``final_info``)."""
    final = info.get("final_info")
    if isinstance(final, Mapping) and key in final:
        return final[key]
    return info.get(key)


def _one_flag(value: Any, key: str, index: int, step: int) -> bool:
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    if array.size != 1 or array.dtype.kind not in "biu":
        raise ValueError(f"trajectory {index}: step {step}'s info {key!r} is not one flag: {value!r}")
    return bool(array.reshape(()))


def _episode(
    k: int, n: int, control_mode: str | None, extra: dict[str, Any], flags: dict[str, np.ndarray], index: int
) -> dict[str, Any]:
    own = sorted(set(extra) & set(_OWN_KEYS))
    if own:
        raise ValueError(f"episodes[{index}] names {own}, which save_maniskill writes itself")
    record: dict[str, Any] = {
        "episode_id": k,
        "episode_seed": None,
        "control_mode": control_mode,
        "elapsed_steps": n,
        "reset_kwargs": {},
    }
    record.update(extra)
    record.update({name: bool(values[-1]) for name, values in flags.items()})
    return record


def _json(meta: dict[str, Any]) -> str:
    try:
        return json.dumps(meta, indent=2, default=_json_value)
    except TypeError as err:
        raise TypeError(f"env_info and episodes must be json-serializable: {err}") from err


def _json_value(value: Any) -> Any:
    """Numpy values as ManiSkill's ``CustomJsonEncoder`` writes them (no other objects)."""
    if isinstance(value, np.bool_ | np.integer | np.floating | np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    raise TypeError(f"{type(value).__name__} is not json data")


def _write_traj(
    group: Any, traj: Trajectory, index: int, flags: dict[str, np.ndarray], states: Any | None
) -> None:
    n = len(traj)
    _write_tree(group, "obs", traj.obs, f"trajectory {index}: obs")
    _write_tree(group, "actions", traj.acts, f"trajectory {index}: acts")
    group.create_dataset("terminated", data=traj.terminated.cpu().numpy().astype(bool))
    group.create_dataset("truncated", data=traj.truncated.cpu().numpy().astype(bool))
    for name, values in flags.items():
        group.create_dataset(name, data=values)
    if states is not None:
        if _rows(states) != n + 1:
            raise ValueError(f"trajectory {index}: env_states have {_rows(states)} rows, not {n + 1} (T + 1)")
        _write_tree(group, "env_states", states, f"trajectory {index}: env_states")
    rews = getattr(traj, "rews", None)
    if rews is not None:
        group.create_dataset("rewards", data=_numpy(rews, f"trajectory {index}: rews"))


def _write_tree(group: Any, key: str, value: Any, what: str) -> None:
    """A tensor or array as a dataset, a dict as a group of them (``RecordEpisode``'s nesting)."""
    if "/" in key:
        raise ValueError(f"{what}: key {key!r} holds '/', which HDF5 nests")
    if isinstance(value, TensorDictBase | Mapping):
        sub = group.create_group(key, track_order=True)
        for k in value.keys():  # noqa: SIM118  (a TensorDict iterates over its rows)
            _write_tree(sub, k, value[k], f"{what}[{k!r}]")
        return
    compression = {"compression": "gzip", "compression_opts": 5} if key in COMPRESSED_KEYS else {}
    group.create_dataset(key, data=_numpy(value, what), **compression)


def _numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        try:
            return value.detach().cpu().numpy()
        except TypeError as err:
            raise ValueError(f"{what}: dtype {value.dtype} has no numpy (HDF5) form") from err
    return np.asarray(value)


def _rows(value: Any) -> int:
    if isinstance(value, TensorDictBase):
        return int(value.batch_size[0]) if value.batch_dims else 0
    if isinstance(value, Mapping):
        return _rows(next(iter(value.values()))) if value else 0
    return len(value)


# ------------------------------------------------------------------------- inwards
def _group(f: Any, episode: Mapping[str, Any]) -> Any:
    name = f"traj_{episode['episode_id']}"
    if name not in f:
        raise ValueError(f"episode {episode['episode_id']} of the json has no group {name} in the file")
    odd = sorted(set(f[name]) - set(FIELDS))
    if odd:
        raise ValueError(f"{name} holds {odd}, which are not ManiSkill trajectory data")
    return f[name]


def _read_traj(group: Any, n: int, device: torch.device) -> Trajectory:
    name = group.name.lstrip("/")
    flags = {key: _flag_rows(group, key, n, name) for key in ("terminated", "truncated", "success", "fail")}
    fields: dict[str, Any] = dict(
        obs=_read_tree(group["obs"], n + 1, f"{name}: obs").to(device),
        acts=_read_tree(group["actions"], n, f"{name}: actions").to(device),
        terminated=flags["terminated"].to(device),
        truncated=flags["truncated"].to(device),
        infos=_infos({k: flags[k] for k in ("success", "fail") if flags[k] is not None}, n),
        terminal=bool(n and (flags["terminated"][-1] or flags["truncated"][-1])),
        batch_size=[],
        device=device,
    )
    if "rewards" in group:
        rews = _read_tree(group["rewards"], n, f"{name}: rewards")
        return TrajectoryWithRew(**fields, rews=rews.to(device))
    return Trajectory(**fields)


def _flag_rows(group: Any, key: str, n: int, name: str) -> Any:
    if key not in group:
        if key in ("terminated", "truncated"):
            raise ValueError(f"{name} has no {key}")
        return None
    rows = _dataset(group[key], n, f"{name}: {key}")
    if rows.dtype != torch.bool:
        raise ValueError(f"{name}: {key} is {rows.dtype}, not bool")
    return rows


def _infos(flags: dict[str, torch.Tensor], n: int) -> np.ndarray | None:
    if not flags:
        return None
    infos = np.empty(n, dtype=object)
    infos[:] = [{k: bool(v[t]) for k, v in flags.items()} for t in range(n)]
    return infos


def _read_tree(node: Any, rows: int, what: str) -> Any:
    return _tensordict(node, rows, what) if not hasattr(node, "shape") else _dataset(node, rows, what)


def _tensordict(group: Any, rows: int, what: str = "env_states") -> TensorDict:
    return TensorDict({k: _read_tree(group[k], rows, f"{what}[{k!r}]") for k in group}, batch_size=[rows])


def _dataset(dataset: Any, rows: int, what: str) -> torch.Tensor:
    array = np.array(dataset[()], copy=True)
    if array.ndim == 0 or len(array) != rows:
        raise ValueError(f"{what}: {len(array) if array.ndim else 0} rows, but elapsed_steps gives {rows}")
    return torch.from_numpy(array)
