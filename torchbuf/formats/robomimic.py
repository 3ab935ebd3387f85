"""robomimic HDF5 datasets (and Isaac Lab's variant): trajectories out as demos, demos in.

:func:`save_robomimic` writes the layout robomimic's ``SequenceDataset`` reads and
Isaac Lab's ``HDF5DatasetFileHandler`` writes::

    data/                      attrs: total (steps in all demos), env_args (json)
        demo_0/                attrs: num_samples (steps); success (with ``success=``)
            obs/<key>          the observation before each action, (T, ...)
            next_obs/<key>     the observation after it, (T, ...)
            actions            (T, ...)
            rewards            (T,)
            dones              (T,) int64: 1 where the step terminated the episode
        demo_1/ ...
    mask/<filter key>          the names of the demos in a subset (e.g. train, valid, successful)

A vector observation is stored under one key (``obs_key``, default ``"state"``); a
dict observation's keys are the obs keys, nested dicts as nested groups (as Isaac
Lab writes them; robomimic's reader reads top-level keys only). uint8 images stay
uint8 ``(H, W, C)``, robomimic's own layout for ``rgb`` observations. Every array
keeps its dtype and shape, so a round trip is exact. The final observation (after
the last action) is ``next_obs[-1]``: ``next_obs[t]`` is ``obs[t + 1]``.

What robomimic cannot carry is refused with a ``ValueError`` naming the trajectory:

- ``truncated``: robomimic keeps only ``dones``. Pass ``drop_truncated=True`` to
  store a truncated end as not done (the bootstrap-correct reading, with its final
  observation in ``next_obs``); it loads as a fragment (``terminal=False``);
- ``infos`` (pass ``drop_infos=True``; ``success=`` reads them first);
- a step terminated or truncated before the trajectory's last; trajectories
  without steps, or whose ``terminal`` disagrees with their flags; trajectories
  without rewards (``TypeError``); dict keys holding ``"/"``.

Writing and reading need h5py: ``pip install 'torchbuf[robomimic]'``. Loading reads
arrays and attributes only, never code; a demo's ``success`` attribute loads as its last
step's info ``{"success": flag}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchbuf.data.types import Obs, Trajectory, TrajectoryWithRew
from torchbuf.formats.ends import check_end, check_rewards_and_infos, host_flags
from torchbuf.formats.h5 import h5py_module
from torchbuf.io import atomic

DEFAULT_ENV_ARGS: Mapping[str, Any] = {"env_name": "", "type": 2, "env_kwargs": {}}
"""``env_args`` when none are given: robomimic's gym env type (2), as Isaac Lab writes it."""

SUCCESS_MASK = "successful"
"""The filter key listing the successful demos when ``save_robomimic(success=...)``."""

PathLike = str | os.PathLike[str]


def save_robomimic(
    path: PathLike,
    trajs: Sequence[TrajectoryWithRew],
    *,
    env_args: Mapping[str, Any] | None = None,
    obs_key: str = "state",
    masks: Mapping[str, Sequence[int]] | None = None,
    success: Callable[[Trajectory], bool] | None = None,
    keep: Callable[[Trajectory], bool] | None = None,
    drop_truncated: bool = False,
    drop_infos: bool = False,
    compression: str | None = None,
) -> list[str]:
    """Writes trajectories as a robomimic HDF5 file, one demo per trajectory, atomically.

    Args:
        path: The ``.hdf5`` file (created or replaced once complete; its parent must exist).
        trajs: :class:`~torchbuf.TrajectoryWithRew`, e.g. ``pop_finished_trajectories()[0]``.
        env_args: The env's metadata, stored as json in ``data``'s ``env_args``
            (robomimic's ``env_name``, ``type``, ``env_kwargs``); default
            :data:`DEFAULT_ENV_ARGS`.
        obs_key: The obs key of a vector (non-dict) observation.
        masks: Filter keys: ``{name: positions in trajs}`` (e.g. ``{"train": [...],
            "valid": [...]}``), written under ``mask/``; trajectories not kept are left out.
        success: A predicate (e.g. :func:`~torchbuf.formats.info_flag`) whose value is
            each demo's ``success`` attribute (Isaac Lab's variant); the successful
            demos are also listed under ``mask/successful``.
        keep: Write only the trajectories for which this is true (e.g.
            ``info_flag("success")`` for Isaac Lab's succeeded-only export); demos are
            numbered ``demo_0, demo_1, ...`` in the order kept.
        drop_truncated: Store a truncated end as not done (robomimic has no ``truncated``).
        drop_infos: Save without the infos, which robomimic cannot hold.
        compression: h5py's compression of every dataset (``"gzip"`` as Isaac Lab, ``"lzf"``).

    Returns:
        The demo names written, in order.

    Raises:
        ImportError: h5py is missing (``pip install 'torchbuf[robomimic]'``).
        TypeError: a trajectory has no rewards, or ``env_args`` is not json.
        ValueError: a trajectory robomimic cannot carry (see the module), or a mask
            position out of range.
        OSError: ``path``'s parent is missing or not writable.
    """
    h5py = h5py_module("robomimic")
    chosen = [i for i, t in enumerate(trajs) if keep is None or keep(t)]
    flags = {i: bool(success(trajs[i])) for i in chosen} if success is not None else None
    for i in chosen:
        _check(trajs[i], i, drop_truncated, drop_infos)
    names = {i: f"demo_{k}" for k, i in enumerate(chosen)}
    subsets = _masks(masks, names, len(trajs), flags)
    env_json = _env_json(env_args)
    with atomic.replacing_file(path) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = env_json
        for i in chosen:
            demo = data.create_group(names[i])
            _write_demo(demo, trajs[i], obs_key, compression)
            if flags is not None:
                demo.attrs["success"] = flags[i]
        data.attrs["total"] = sum(len(trajs[i]) for i in chosen)
        for key, demos in subsets.items():
            f.create_dataset(f"mask/{key}", data=np.array(demos, dtype="S"))
    return [names[i] for i in chosen]


def load_robomimic(
    path: PathLike,
    *,
    obs_key: str | None = None,
    filter_key: str | None = None,
    device: torch.device | str = "cpu",
) -> list[TrajectoryWithRew]:
    """Reads a robomimic HDF5 file's demos as trajectories (with h5py, as robomimic does).

    Args:
        path: The ``.hdf5`` file.
        obs_key: Read this obs key as the (vector) observation; default: all keys,
            as a TensorDict.
        filter_key: Read only the demos listed under ``mask/<filter_key>``.
        device: Where the tensors go.

    Returns:
        One :class:`~torchbuf.TrajectoryWithRew` per demo, in robomimic's order
        (by demo number), with ``obs`` (``num_samples + 1`` rows: ``obs`` and the
        last ``next_obs``), ``acts``, ``rews``, ``terminated`` (``dones``),
        ``truncated`` (all false), ``terminal`` (the last step is done). A demo with
        a ``success`` attribute (Isaac Lab's variant) has infos: ``{}`` per step, and
        ``{"success": flag}`` at the last (as :func:`~torchbuf.formats.info_flag`
        reads it); a demo without one has none.

    Raises:
        ImportError: h5py is missing.
        KeyError: ``obs_key`` or ``filter_key`` is not in the file.
        ValueError: a group in ``data`` not named ``demo_<number>``; a demo that
            has no ``next_obs``, whose ``next_obs`` is not its following ``obs``,
            whose ``dones`` mark a step before the last or hold values other than
            0 and 1, whose ``success`` attribute is not one flag, or whose arrays'
            lengths disagree with ``num_samples``.
    """
    h5py = h5py_module("robomimic")
    device = torch.device(device)
    with h5py.File(path, "r") as f:
        data = f["data"]
        names = list(data) if filter_key is None else [n.decode() for n in f[f"mask/{filter_key}"][()]]
        odd = [n for n in names if not (n.startswith("demo_") and n[5:].isdigit())]
        if odd:
            raise ValueError(f"groups {odd} are not demos: robomimic names them demo_<number>")
        names.sort(key=lambda name: int(name[5:]))
        return [_read_demo(data[name], name, obs_key, device) for name in names]


# ------------------------------------------------------------------------ outwards
def _check(traj: Trajectory, index: int, drop_truncated: bool, drop_infos: bool) -> None:
    check_rewards_and_infos(traj, index, "robomimic", "demos", drop_infos=drop_infos)
    check_end(traj, index, "robomimic", flags_only_at_end=True)
    if bool(traj.truncated[-1]) and not drop_truncated:
        raise ValueError(
            f"trajectory {index} ends truncated, which robomimic cannot mark (it keeps only dones): "
            "pass drop_truncated=True to store it as not done (it loads as a fragment)"
        )
    if isinstance(traj.obs, TensorDictBase):
        for key in traj.obs.keys(include_nested=True):
            parts = key if isinstance(key, tuple) else (key,)
            if any("/" in part for part in parts):
                raise ValueError(f"trajectory {index}: obs key {key!r} holds '/', which HDF5 nests")


def _masks(
    masks: Mapping[str, Sequence[int]] | None, names: dict[int, str], n: int, flags: dict[int, bool] | None
) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, positions in (masks or {}).items():
        bad = [int(p) for p in positions if not 0 <= int(p) < n]
        if bad:
            raise ValueError(f"mask {key!r}: positions {bad} are not trajectories (there are {n})")
        out[key] = [names[int(p)] for p in positions if int(p) in names]
    if flags is not None:
        out.setdefault(SUCCESS_MASK, [names[i] for i, ok in flags.items() if ok])
    return out


def _env_json(env_args: Mapping[str, Any] | None) -> str:
    try:
        return json.dumps(dict(DEFAULT_ENV_ARGS if env_args is None else env_args))
    except TypeError as err:
        raise TypeError(f"env_args must be json-serializable: {err}") from err


def _write_demo(demo: Any, traj: TrajectoryWithRew, obs_key: str, compression: str | None) -> None:
    n = len(traj)
    demo.attrs["num_samples"] = n
    obs = traj.obs if isinstance(traj.obs, TensorDictBase) else TensorDict({obs_key: traj.obs}, [n + 1])
    _write_obs(demo.create_group("obs"), demo.create_group("next_obs"), obs, compression)
    terminated, _ = host_flags(traj)
    demo.create_dataset("actions", data=_host(traj.acts, "acts"), compression=compression)
    demo.create_dataset("rewards", data=traj.rews.cpu().numpy(), compression=compression)
    demo.create_dataset("dones", data=terminated.astype(np.int64), compression=compression)


def _write_obs(now: Any, after: Any, obs: TensorDictBase, compression: str | None) -> None:
    for key, value in obs.items():
        if isinstance(value, TensorDictBase):
            _write_obs(now.create_group(key), after.create_group(key), value, compression)
            continue
        rows = np.asarray(value.detach().cpu())
        now.create_dataset(key, data=rows[:-1], compression=compression)
        after.create_dataset(key, data=rows[1:], compression=compression)


def _host(acts: Any, what: str) -> np.ndarray:
    if isinstance(acts, TensorDictBase):
        raise ValueError(f"{what}: dict actions have no robomimic form (its actions are one array)")
    return acts.detach().cpu().numpy()


# ------------------------------------------------------------------------- inwards
def _read_demo(demo: Any, name: str, obs_key: str | None, device: torch.device) -> TrajectoryWithRew:
    n = int(demo.attrs["num_samples"])
    if "next_obs" not in demo:
        raise ValueError(f"{name} has no next_obs: its final observation is not in the file")
    group_now, group_after = demo["obs"], demo["next_obs"]
    if obs_key is not None:
        group_now, group_after = {obs_key: group_now[obs_key]}, {obs_key: group_after[obs_key]}
    tree = _read_obs(group_now, group_after, n, f"{name}: obs")
    obs: Obs = tree[obs_key] if obs_key is not None else _tensordict(tree, n + 1)
    dones = _rows(demo["dones"], n, f"{name}: dones")
    if not np.isin(dones, (0, 1)).all():
        raise ValueError(f"{name}: dones hold {sorted(set(dones.tolist()))}, not only 0 and 1")
    if dones[:-1].any():
        raise ValueError(f"{name}: dones mark step {int(np.flatnonzero(dones[:-1])[0])}, before its last")
    terminated = torch.from_numpy(dones.astype(bool))
    return TrajectoryWithRew(
        obs=obs.to(device),
        acts=_tensor(_rows(demo["actions"], n, f"{name}: actions"), device),
        rews=_tensor(_rows(demo["rewards"], n, f"{name}: rewards"), device),
        terminated=terminated.to(device),
        truncated=torch.zeros(n, dtype=torch.bool, device=device),
        infos=_success_infos(demo, n, name),
        terminal=bool(n and terminated[-1]),
        batch_size=[],
        device=device,
    )


def _success_infos(demo: Any, n: int, name: str) -> np.ndarray | None:
    """Isaac Lab's per-demo ``success`` as the last step's info (where ``info_flag`` reads it)."""
    if "success" not in demo.attrs:
        return None
    flag = np.asarray(demo.attrs["success"])
    if flag.size != 1 or flag.dtype.kind not in "biu" or n == 0:
        raise ValueError(f"{name}: attribute success is {flag!r}, not one flag of a demo with steps")
    infos = np.empty(n, dtype=object)
    infos[:] = [{} for _ in range(n - 1)] + [{"success": bool(flag.reshape(()))}]
    return infos


def _read_obs(now: Any, after: Any, n: int, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in now:
        if key not in after:
            raise ValueError(f"{what}[{key!r}] has no next_obs")
        if not hasattr(now[key], "shape"):
            out[key] = _tensordict(_read_obs(now[key], after[key], n, f"{what}[{key!r}]"), n + 1)
            continue
        rows, next_rows = _rows(now[key], n, f"{what}[{key!r}]"), _rows(after[key], n, f"{what}[{key!r}]")
        if not np.array_equal(rows[1:], next_rows[:-1], equal_nan=rows.dtype.kind in "fc"):
            raise ValueError(f"{what}[{key!r}]: next_obs is not the following obs (step by step)")
        out[key] = torch.from_numpy(np.concatenate([rows, next_rows[-1:]]))
    return out


def _tensordict(tree: dict[str, Any], rows: int) -> TensorDict:
    return TensorDict(tree, batch_size=[rows])


def _rows(dataset: Any, n: int, what: str) -> np.ndarray:
    array = np.asarray(dataset[()])
    if len(array) != n:
        raise ValueError(f"{what}: {len(array)} rows, but num_samples is {n}")
    return array


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.array(array, copy=True)).to(device)
