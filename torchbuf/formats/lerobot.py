"""LeRobot datasets, codebase version 3.0: trajectories out as frames, frames in.

:func:`save_lerobot` writes the v3.0 layout that ``lerobot``'s ``LeRobotDataset``
reads (``LeRobotDataset(repo_id, root=path)``, offline)::

    <root>/
        data/chunk-000/file-000.parquet        one row per frame (step)
        meta/info.json                         codebase_version "v3.0", fps, features, totals
        meta/episodes/chunk-000/file-000.parquet   one row per episode: its frames, tasks, stats
        meta/tasks.parquet                     the task strings and their task_index
        meta/stats.json                        per-feature min, max, mean, std, count, quantiles

A frame is one step: the observation before the action (``observation.state`` for
an array observation, ``observation.image`` for an RGB image; a dict observation's
leaves as ``observation.<key>[.<subkey>...]``), ``action`` (dict actions as
``action.<key>...``), ``next.reward``, ``next.done`` (terminated or truncated) and
``next.truncated`` (LeRobot's own keys), and LeRobot's ``timestamp``,
``frame_index``, ``episode_index``, ``index`` and ``task_index``. uint8 observations
of shape ``(H, W, 3)`` are stored as LeRobot's ``image`` features (lossless PNG
frames in the parquet file); every other field as its array, in its dtype.

What LeRobot cannot carry is refused with a ``ValueError`` naming the trajectory:

- the final observation (after the last action): a frame holds the observation
  *before* its action, so the last one has no frame. Pass ``drop_final_obs=True``
  to save without it (LeRobot's own recorder keeps no final observation either);
- ``infos`` (pass ``drop_infos=True``); a step both terminated and truncated
  (LeRobot keeps ``done`` and ``truncated``, so ``terminated = done & ~truncated``);
- trajectories without steps, or whose ``terminal`` disagrees with their flags;
  fields whose dtype has no LeRobot name (bfloat16, complex); dict keys with ``.``
  or ``/``; trajectories whose fields differ in keys, dtypes or shapes.

:func:`load_lerobot` reads any v3.0 dataset without video features (it needs no
lerobot) as one TensorDict of frames. Writing and reading need pyarrow, pandas and
Pillow: ``pip install 'torchbuf[lerobot]'``. Loading reads parquet, JSON and PNG
only, never code, and only the files under ``root``.
"""

from __future__ import annotations

import importlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchbuf.data.types import Obs, Trajectory
from torchbuf.formats.ends import check_end, host_flags
from torchbuf.formats.lerobot_stats import feature_stats
from torchbuf.io import atomic

CODEBASE_VERSION = "v3.0"
"""The LeRobot dataset version :func:`save_lerobot` writes and :func:`load_lerobot` reads."""

DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
"""LeRobot's per-frame bookkeeping features, present in every dataset."""

DATA_FILE = "data/chunk-000/file-000.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
_IMAGE_NAMES = ["height", "width", "channels"]
_DTYPES = {
    getattr(torch, n)
    for n in ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
}
_FORBIDDEN = (".", "/")  # "." nests LeRobot's feature names; LeRobot refuses "/" in them
PathLike = str | os.PathLike[str]


def save_lerobot(
    root: PathLike,
    trajs: Sequence[Trajectory],
    *,
    fps: int,
    task: str | Sequence[str],
    drop_final_obs: bool = False,
    drop_infos: bool = False,
    robot_type: str | None = None,
    keep: Callable[[Trajectory], bool] | None = None,
) -> None:
    """Writes trajectories as a LeRobot v3.0 dataset, one episode per trajectory, atomically.

    Episodes are written in the order given; ``keep`` exports only some of them
    (e.g. the successful ones).

    Args:
        root: The dataset's directory (created or replaced once the new one is
            complete; its parent must exist). Open it with
            ``LeRobotDataset(repo_id, root=root)``.
        trajs: :class:`~torchbuf.Trajectory` or :class:`~torchbuf.TrajectoryWithRew`
            (all of one class), e.g. ``pop_finished_trajectories()[0]``.
        fps: Frames per second (LeRobot's ``timestamp = frame_index / fps``).
        task: The task of every episode, or one per trajectory (LeRobot's
            natural-language task strings).
        drop_final_obs: Save without each trajectory's final observation, which
            LeRobot's frames cannot hold.
        drop_infos: Save without the infos, which LeRobot cannot hold.
        robot_type: Recorded in ``meta/info.json``.
        keep: Write only the trajectories for which this is true (e.g.
            ``info_flag("success")``, as Isaac Lab's succeeded-only export); with one
            task per trajectory, their tasks go with them. Checked before ``drop_infos``.

    Raises:
        ImportError: pyarrow, pandas or Pillow is missing (``pip install 'torchbuf[lerobot]'``).
        ValueError: no trajectories, ``fps`` not a positive integer, a task list of
            another length, or a trajectory LeRobot cannot carry (see the module).
        TypeError: the trajectories mix classes or are not torchbuf trajectories.
        OSError: ``root``'s parent is missing or not writable.
    """
    pa, pq, pd, image = _modules()
    tasks = _tasks(task, len(trajs))
    if keep is not None:
        chosen = [i for i, t in enumerate(trajs) if keep(t)]
        trajs, tasks = [trajs[i] for i in chosen], [tasks[i] for i in chosen]
    trajs = _checked(trajs, fps, drop_final_obs, drop_infos)
    columns, features = _frames(trajs, tasks, fps)
    lengths = [len(t) for t in trajs]
    with atomic.replacing_dir(root) as tmp:
        _write_data(tmp, columns, features, pa, pq, image)
        _write_meta(tmp, columns, features, lengths, tasks, fps, robot_type, pa, pq, pd)


def load_lerobot(root: PathLike, device: torch.device | str = "cpu") -> TensorDict:
    """Reads a LeRobot v3.0 dataset's frames as one TensorDict (no lerobot needed).

    Args:
        root: The dataset's directory (``meta/info.json``, ``data/*/*.parquet``).
        device: Where the tensors go.

    Returns:
        A TensorDict of batch size ``(frames,)``, in the files' order, keyed by
        the feature names split at ``"."`` (``("observation", "state")``,
        ``"action"``, ``("next", "reward")``, ``"episode_index"``, ...). Values
        are in the dtypes ``meta/info.json`` declares; a feature of shape ``(1,)``
        is one scalar per frame, as LeRobot's reader returns it; images are uint8
        ``(H, W, C)`` as recorded (LeRobot's reader turns them into float
        ``(C, H, W)`` in ``[0, 1]``).

    Raises:
        ImportError: pyarrow or Pillow is missing.
        FileNotFoundError: ``root`` has no ``meta/info.json`` or no data files.
        ValueError: another codebase version, video or string features, a column
            that does not match its feature, or feature names that clash as keys.
    """
    _, pq, _, image = _modules()
    root = Path(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    version = str(info.get("codebase_version"))
    if not version.startswith("v3."):
        raise ValueError(
            f"{root}: codebase_version {version!r}; load_lerobot reads {CODEBASE_VERSION} datasets"
        )
    paths = sorted((root / "data").glob("*/*.parquet"))
    if not paths:
        raise FileNotFoundError(2, "no data/*/*.parquet files in the LeRobot dataset", str(root))
    tables = [pq.read_table(p) for p in paths]
    n = sum(t.num_rows for t in tables)
    out = TensorDict({}, batch_size=[n], device=torch.device(device))
    for name, feature in info["features"].items():
        if feature["dtype"] in ("video", "string"):
            raise ValueError(
                f"{name}: {feature['dtype']} features are not read here (LeRobotDataset decodes them)"
            )
        chunks = [_decode(t.column(name), name, feature, image) for t in tables]
        _set(out, name, torch.from_numpy(np.concatenate(chunks)).to(device))
    return out


# ------------------------------------------------------------------------ checks
def _checked(
    trajs: Sequence[Trajectory], fps: int, drop_final_obs: bool, drop_infos: bool
) -> list[Trajectory]:
    trajs = list(trajs)
    if not trajs:
        raise ValueError("save_lerobot needs at least one trajectory")
    if not isinstance(fps, int) or isinstance(fps, bool) or fps < 1:
        raise ValueError(f"fps must be a positive integer (LeRobot's info.json holds an int), got {fps!r}")
    if not all(isinstance(t, Trajectory) for t in trajs):
        raise TypeError("save_lerobot expects torchbuf Trajectory / TrajectoryWithRew objects")
    classes = {type(t).__name__ for t in trajs}
    if len(classes) > 1:
        raise TypeError(f"save_lerobot expects trajectories of one class, got {sorted(classes)}")
    for i, traj in enumerate(trajs):
        check_end(traj, i, "LeRobot", flags_only_at_end=False)
        _check_traj(traj, i, drop_final_obs, drop_infos)
    return trajs


def _check_traj(traj: Trajectory, index: int, drop_final_obs: bool, drop_infos: bool) -> None:
    if not drop_final_obs:
        raise ValueError(
            f"trajectory {index}: its final observation (after the last action) has no LeRobot frame "
            "(a frame holds the observation before its action): pass drop_final_obs=True to save without it"
        )
    if traj.infos is not None and not drop_infos:
        raise ValueError(
            f"trajectory {index} has infos, which LeRobot cannot hold: "
            "pass drop_infos=True to save without them"
        )
    terminated, truncated = host_flags(traj)
    both = np.flatnonzero(terminated & truncated)
    if len(both):
        raise ValueError(
            f"trajectory {index}: step {int(both[0])} is both terminated and truncated; LeRobot keeps "
            "next.done and next.truncated, so terminated = done and not truncated"
        )


def _tasks(task: str | Sequence[str], n: int) -> list[str]:
    tasks = [task] * n if isinstance(task, str) else list(task)
    if len(tasks) != n or not all(isinstance(t, str) for t in tasks):
        raise ValueError(f"task must be a string or one string per trajectory ({n}), got {task!r}")
    return tasks


# ------------------------------------------------------------------------ outwards
def _frames(
    trajs: list[Trajectory], tasks: list[str], fps: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every column of the frames (host arrays, one row per step) and LeRobot's feature specs."""
    per_traj = [_fields(t) for t in trajs]
    first = per_traj[0]
    for i, fields in enumerate(per_traj[1:], start=1):
        if _layout(fields) != _layout(first):
            raise ValueError(
                f"trajectory {i}: fields {_layout(fields)} differ from trajectory 0's {_layout(first)}; "
                "a LeRobot dataset has one set of features"
            )
    columns = {name: np.concatenate([f[name] for f in per_traj]) for name in first}
    features = {name: _feature(name, col) for name, col in columns.items()}
    lengths = np.array([len(t) for t in trajs])
    task_names = list(dict.fromkeys(tasks))
    frame_index = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    columns["timestamp"] = (frame_index / fps).astype(np.float32)
    columns["frame_index"] = frame_index
    columns["episode_index"] = np.repeat(np.arange(len(trajs), dtype=np.int64), lengths)
    columns["index"] = np.arange(int(lengths.sum()), dtype=np.int64)
    columns["task_index"] = np.repeat(np.array([task_names.index(t) for t in tasks], dtype=np.int64), lengths)
    for name in DEFAULT_FEATURES:
        features[name] = {"dtype": str(columns[name].dtype), "shape": [1], "names": None}
    return columns, features


def _fields(traj: Trajectory) -> dict[str, np.ndarray]:
    """One trajectory's frame fields on the host, keyed by LeRobot feature name."""
    fields = _leaves(traj.obs[:-1], "observation")
    fields.update(_leaves(traj.acts, "action"))
    rews = getattr(traj, "rews", None)
    if rews is not None:
        fields["next.reward"] = _host(rews, "next.reward")
    terminated, truncated = host_flags(traj)
    fields["next.done"] = terminated | truncated
    fields["next.truncated"] = truncated
    return fields


def _host(tensor: torch.Tensor, name: str) -> np.ndarray:
    if tensor.dtype not in _DTYPES:
        raise ValueError(
            f"{name}: dtype {str(tensor.dtype).removeprefix('torch.')} has no LeRobot feature dtype"
        )
    return tensor.detach().cpu().numpy()


def _leaves(value: Obs, prefix: str) -> dict[str, np.ndarray]:
    if not isinstance(value, TensorDictBase):
        array = _host(value, prefix)
        if prefix == "observation":
            prefix += ".image" if _is_image(array) else ".state"
        return {prefix: array}
    out = {}
    for key in value.keys(include_nested=True, leaves_only=True):
        parts = key if isinstance(key, tuple) else (key,)
        if any(c in part for part in parts for c in _FORBIDDEN):
            raise ValueError(
                f"{prefix} key {key!r} contains '.' or '/', which LeRobot's feature names cannot hold"
            )
        name = ".".join((prefix, *parts))
        out[name] = _host(value.get(key), name)
    return out


def _layout(fields: dict[str, np.ndarray]) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(name, str(a.dtype), tuple(a.shape[1:])) for name, a in fields.items()]


def _is_image(array: np.ndarray) -> bool:
    """uint8 steps of shape (H, W, 3): LeRobot's camera frames."""
    return array.dtype == np.uint8 and array.ndim == 4 and array.shape[-1] == 3


def _feature(name: str, column: np.ndarray) -> dict[str, Any]:
    if name.startswith("observation") and _is_image(column):
        return {"dtype": "image", "shape": list(column.shape[1:]), "names": _IMAGE_NAMES}
    return {"dtype": str(column.dtype), "shape": list(column.shape[1:]) or [1], "names": None}


def _write_data(
    root: Path, columns: dict[str, np.ndarray], features: dict[str, Any], pa: Any, pq: Any, image: Any
) -> None:
    arrays = {name: _arrow(columns[name], ft, pa, image) for name, ft in features.items()}
    table = pa.table(arrays).replace_schema_metadata(
        {"huggingface": json.dumps({"info": {"features": {k: _hf_feature(f) for k, f in features.items()}}})}
    )
    path = root / DATA_FILE
    path.parent.mkdir(parents=True)
    pq.write_table(table, path, compression="snappy")


def _arrow(column: np.ndarray, feature: dict[str, Any], pa: Any, image: Any) -> Any:
    """The Arrow column LeRobot's reader expects: values, fixed-size lists, or PNG structs."""
    if feature["dtype"] == "image":
        pngs = [_png(frame, image) for frame in column]
        return pa.StructArray.from_arrays(
            [pa.array(pngs, pa.binary()), pa.array([None] * len(pngs), pa.string())], names=["bytes", "path"]
        )
    array = pa.array(np.ascontiguousarray(column).reshape(-1))
    if list(feature["shape"]) == [1]:  # LeRobot's shape (1,) is one value per frame
        return array
    for size in reversed(column.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def _png(frame: np.ndarray, image: Any) -> bytes:
    buffer = io.BytesIO()
    image.fromarray(frame).save(buffer, format="PNG", compress_level=1)  # as lerobot's own image writer
    return buffer.getvalue()


def _hf_feature(feature: dict[str, Any]) -> dict[str, Any]:
    """HuggingFace ``datasets``' description of a feature (as LeRobot's writer records it)."""
    dtype, shape = feature["dtype"], list(feature["shape"])
    if dtype == "image":
        return {"_type": "Image"}
    if shape == [1]:
        return {"dtype": dtype, "_type": "Value"}
    if len(shape) == 1:
        return {"feature": {"dtype": dtype, "_type": "Value"}, "length": shape[0], "_type": "List"}
    return {"shape": shape, "dtype": dtype, "_type": f"Array{len(shape)}D"}


def _write_meta(
    root: Path,
    columns: dict[str, np.ndarray],
    features: dict[str, Any],
    lengths: list[int],
    tasks: list[str],
    fps: int,
    robot_type: str | None,
    pa: Any,
    pq: Any,
    pd: Any,
) -> None:
    task_names = list(dict.fromkeys(tasks))
    (root / "meta").mkdir()
    pd.DataFrame({"task_index": range(len(task_names))}, index=task_names).to_parquet(
        root / "meta" / "tasks.parquet"
    )
    bounds = np.cumsum([0, *lengths])
    rows: dict[str, list[Any]] = {
        "episode_index": list(range(len(lengths))),
        "tasks": [[t] for t in tasks],
        "length": list(lengths),
        "data/chunk_index": [0] * len(lengths),
        "data/file_index": [0] * len(lengths),
        "dataset_from_index": bounds[:-1].tolist(),
        "dataset_to_index": bounds[1:].tolist(),
    }
    for start, stop in zip(bounds[:-1], bounds[1:]):
        episode = {name: col[start:stop] for name, col in columns.items()}
        for key, value in _flat_stats(feature_stats(episode, features)).items():
            rows.setdefault(key, []).append(value)
    rows["meta/episodes/chunk_index"] = [0] * len(lengths)
    rows["meta/episodes/file_index"] = [0] * len(lengths)
    path = root / EPISODES_FILE
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table(rows), path, compression="snappy")
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(lengths),
        "total_frames": int(bounds[-1]),
        "total_tasks": len(task_names),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": None,
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    stats = {
        name: {k: v.tolist() for k, v in s.items()} for name, s in feature_stats(columns, features).items()
    }
    (root / "meta" / "stats.json").write_text(json.dumps(stats, indent=4))


def _flat_stats(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """The episodes file's ``stats/<feature>/<stat>`` columns."""
    return {f"stats/{name}/{key}": value.tolist() for name, s in stats.items() for key, value in s.items()}


# ------------------------------------------------------------------------- inwards
def _decode(column: Any, name: str, feature: dict[str, Any], image: Any) -> np.ndarray:
    """One feature's column as an array of ``(rows,) + shape`` (a scalar per row for shape (1,))."""
    dtype, shape = feature["dtype"], tuple(feature["shape"])
    n = len(column)
    array = column.combine_chunks()
    if dtype == "image":
        frames = [_image(png, name, image) for png in array.field("bytes").to_pylist()]
        return np.stack(frames).reshape(n, *shape) if frames else np.zeros((0, *shape), np.uint8)
    while hasattr(array, "storage") or hasattr(array, "flatten"):
        array = array.storage if hasattr(array, "storage") else array.flatten()
    values = array.to_numpy(zero_copy_only=False)
    if values.dtype != np.dtype(dtype):
        raise ValueError(f"{name}: the column holds {values.dtype}, info.json declares {dtype}")
    per_row = () if shape == (1,) else shape
    if values.size != n * int(np.prod(per_row, dtype=np.int64)):
        raise ValueError(f"{name}: {values.size} values in {n} rows do not fit the shape {list(shape)}")
    return values.reshape(n, *per_row)


def _image(png: bytes | None, name: str, image: Any) -> np.ndarray:
    if png is None:
        raise ValueError(f"{name}: a frame without embedded image bytes (only embedded images are read)")
    with image.open(io.BytesIO(png)) as img:
        return np.asarray(img)


def _set(out: TensorDict, name: str, value: torch.Tensor) -> None:
    key = tuple(name.split("."))
    try:
        out.set(key if len(key) > 1 else key[0], value)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise ValueError(f"feature {name!r} clashes with another feature's key {key}: {err}") from err


def _modules() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    try:
        return tuple(  # type: ignore[return-value]
            importlib.import_module(name) for name in ("pyarrow", "pyarrow.parquet", "pandas", "PIL.Image")
        )
    except ImportError as err:
        raise ImportError(
            "reading or writing LeRobot datasets needs the optional dependencies pyarrow, pandas and "
            f"Pillow ({err.name} is missing): pip install 'torchbuf[lerobot]'"
        ) from err
