"""imitation's trajectory files: its HuggingFace ``datasets`` directories and legacy files.

Three formats, all of which imitation 1.0.1's ``imitation.data.serialize.load``
reads (telling them apart itself):

- ``"datasets"``: a directory written by ``imitation.data.serialize.save`` (a
  HuggingFace ``datasets.Dataset``; infos jsonpickled). imitation's own loader
  builds every array from Python lists, as int64 / float64; :func:`load_imitation`
  reads the Arrow columns instead, in the dtypes they record (uint8 images stay
  uint8), and decodes the infos as data (:mod:`torchbuf.formats.jsonpickled`),
  to the values imitation's ``jsonpickle.decode`` gives, without running code.
- ``"npz"``: the single ``.npz`` file of older imitation releases
  (``np.savez_compressed`` of the concatenated ``obs``, ``acts``, ``infos``,
  ``rews``, the ``terminal`` flags and the split ``indices``).
- ``"pickle"``: the oldest one, a pickled list of imitation ``Trajectory`` objects.
  The only one of the three that holds dict observations (as imitation's
  ``DictObs``, nested keys joined with ``"."``).

imitation keeps no ``terminated`` / ``truncated``: a trajectory ends with
``terminal`` only. On the way out, a truncated end is recorded as SB3 does it, with
``info["TimeLimit.truncated"] = True`` on the last step (added to a copy of that
info where missing); on the way in, a terminal trajectory's last step is truncated
where its info says so and terminated otherwise (see :mod:`torchbuf.data.imitation`).
Trajectories that this cannot express exactly are refused with a ``ValueError``
(see :func:`torchbuf.formats.ends.check_end`).

Loading a ``datasets`` directory runs no code from it (unless ``allow_pickle=True``);
loading a pickle or npz file unpickles it: load only files you trust.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchbuf.data.convert import object_array
from torchbuf.data.imitation import TRUNCATED_KEY, imitation_module
from torchbuf.data.types import Trajectory
from torchbuf.formats import jsonpickled
from torchbuf.formats.ends import check_end, host_flags, is_dict
from torchbuf.formats.select import select_trajectories
from torchbuf.io import atomic
from torchbuf.io.savedir import UnsafeLoadError

IMITATION_FORMATS = ("datasets", "npz", "pickle")
"""The formats :func:`save_imitation` writes."""

_SEPARATOR = "."  # nested dict observation keys, joined in imitation's flat DictObs
PathLike = str | os.PathLike[str]


def save_imitation(
    path: PathLike,
    trajs: Sequence[Trajectory],
    format: str = "datasets",
    *,
    keep: Callable[[Trajectory], bool] | None = None,
) -> None:
    """Saves trajectories in one of imitation's formats, atomically.

    Args:
        path: A directory for ``"datasets"``, a file for ``"npz"`` / ``"pickle"``
            (created or replaced once the new one is complete; the parent must exist).
        trajs: :class:`~torchbuf.Trajectory` or :class:`~torchbuf.TrajectoryWithRew`
            (all of one class), e.g. what ``pop_finished_trajectories()`` returned.
        format: One of :data:`IMITATION_FORMATS`.
        keep: Save only the trajectories for which this is true (e.g. ``info_flag("success")``).

    Raises:
        ImportError: imitation is not installed (``pip install 'torchbuf[imitation]'``).
        ValueError: ``format`` is unknown, or a trajectory cannot be carried: dict
            observations (except ``"pickle"``), dict actions, no steps, an end that
            imitation cannot express, or (``"datasets"``) no trajectories at all;
            the message names the trajectory.
        TypeError: the trajectories mix classes or are not torchbuf trajectories.
        OSError: ``path``'s parent is missing or not writable.
    """
    if format not in IMITATION_FORMATS:
        raise ValueError(f"format must be one of {IMITATION_FORMATS}, got {format!r}")
    trajs = list(trajs) if keep is None else select_trajectories(trajs, keep)
    _check_classes(trajs)
    converted = [_to_imitation(traj, i, format) for i, traj in enumerate(trajs)]
    _WRITERS[format](Path(path), converted)


def load_imitation(
    path: PathLike, device: torch.device | str = "cpu", *, allow_pickle: bool = False
) -> list[Trajectory]:
    """Loads trajectories in any of imitation's formats.

    A ``datasets`` directory is read through its Arrow columns (exact dtypes, no
    detour through Python lists); npz and pickle files through
    ``imitation.data.serialize.load``.

    The infos of a ``datasets`` directory are jsonpickle text. By default they are
    decoded as data only (:func:`torchbuf.formats.jsonpickled.decode`): JSON values,
    tuples, sets, bytes and numpy arrays, scalars and dtypes, which is all that
    imitation's rollouts write, giving the values ``jsonpickle.decode`` gives;
    nothing named in the file is imported or called. Any other jsonpickle tag
    (``py/reduce`` of anything but numpy's, ``py/object``, ``py/function``,
    ``py/type``, ``py/repr``, ...) is refused. ``allow_pickle=True`` decodes the
    infos with ``jsonpickle.decode`` as imitation does, which runs code named in
    the file: only for files you trust.

    Args:
        path: A ``datasets`` directory, or an npz or pickle file.
        device: Where the tensors go.
        allow_pickle: Decode ``datasets`` infos with ``jsonpickle.decode`` (arbitrary
            objects; runs code from the file).

    Returns:
        :class:`~torchbuf.TrajectoryWithRew` (or :class:`~torchbuf.Trajectory` for
        files without rewards) in the file's order, with the dtypes the file
        records; ``terminated`` / ``truncated`` from ``terminal`` and the last
        step's ``"TimeLimit.truncated"`` info.

    Raises:
        ImportError: imitation is not installed.
        FileNotFoundError: nothing at ``path``.
        UnsafeLoadError: (:class:`torchbuf.io.UnsafeLoadError`, a ``ValueError``) an
            info of a ``datasets`` directory holds a jsonpickle tag that is not
            data and ``allow_pickle`` is false; the message names the trajectory
            (its row in the dataset), the step, the info key and the tag.
        ValueError: the file is not one of imitation's trajectory formats.
    """
    serialize = imitation_module("imitation.data.serialize")
    if not os.path.exists(path):
        raise FileNotFoundError(2, "no imitation trajectories here", str(path))
    if os.path.isdir(path):
        loaded = _read_datasets(Path(path), allow_pickle)
    else:
        with warnings.catch_warnings():  # reading the legacy formats is the point here
            warnings.filterwarnings("ignore", "Loading old", DeprecationWarning)
            loaded = serialize.load(path)
    return [Trajectory.from_imitation(traj, device) for traj in loaded]


# ------------------------------------------------------------------------ outwards
def _check_classes(trajs: list[Trajectory]) -> None:
    if not all(isinstance(t, Trajectory) for t in trajs):
        raise TypeError("save_imitation expects torchbuf Trajectory / TrajectoryWithRew objects")
    classes = {type(t).__name__ for t in trajs}
    if len(classes) > 1:
        raise TypeError(f"save_imitation expects trajectories of one class, got {sorted(classes)}")


def _to_imitation(traj: Trajectory, index: int, fmt: str) -> Any:
    """The imitation trajectory for ``traj``, its truncated end recorded in its infos."""
    name = f"imitation's {fmt} format"
    if is_dict(traj.acts):
        raise ValueError(f"trajectory {index}: dict actions; imitation's trajectories hold one action array")
    if is_dict(traj.obs):
        _check_dict_obs(traj, index, fmt)
    check_end(traj, index, name, flags_only_at_end=True)
    converted = traj.to_imitation(_SEPARATOR)
    terminated, truncated = host_flags(traj)
    infos = converted.infos
    last = infos[-1] if infos is not None else {}
    if terminated[-1] and isinstance(last, Mapping) and last.get(TRUNCATED_KEY, False):
        raise ValueError(
            f"trajectory {index}: its last step is terminated but its info says {TRUNCATED_KEY!r}; "
            f"{name} reads the end from that info"
        )
    if truncated[-1] and not (isinstance(last, Mapping) and last.get(TRUNCATED_KEY, False)):
        infos = np.array([{}] * len(terminated) if infos is None else infos, dtype=object)
        infos[-1] = {**(last if isinstance(last, Mapping) else {}), TRUNCATED_KEY: True}
        converted = dataclasses.replace(converted, infos=infos)
    return converted


def _check_dict_obs(traj: Any, index: int, fmt: str) -> None:
    if fmt != "pickle":
        raise ValueError(
            f"trajectory {index}: dict observations; imitation's {fmt} format holds arrays only "
            "(imitation 1.0.1: 'DictObs are not currently supported'): use format='pickle' or torchbuf.io"
        )
    for key in traj.obs.keys(include_nested=True, leaves_only=True):
        parts = key if isinstance(key, tuple) else (key,)
        if any(_SEPARATOR in part for part in parts):
            raise ValueError(
                f"trajectory {index}: dict observation key {key!r} contains {_SEPARATOR!r}, which "
                "separates nested keys in imitation's flat DictObs"
            )


def _write_datasets(path: Path, trajs: list[Any]) -> None:
    if not trajs:
        raise ValueError("imitation's datasets format cannot hold zero trajectories (it fails to load)")
    serialize = imitation_module("imitation.data.serialize")
    with atomic.replacing_dir(path) as tmp:
        serialize.save(tmp, trajs)


def _write_npz(path: Path, trajs: list[Any]) -> None:
    """Older imitation's ``types.save``: the fields concatenated, split at ``indices``."""
    lengths = [len(t) for t in trajs]
    condensed: dict[str, Any] = {
        "obs": _concat([t.obs for t in trajs]),
        "acts": _concat([t.acts for t in trajs]),
        "infos": _concat([_infos(t) for t in trajs], dtype=object),
        "terminal": np.array([t.terminal for t in trajs], dtype=bool),
        "indices": np.cumsum(lengths[:-1], dtype=np.int64),
    }
    if trajs and getattr(trajs[0], "rews", None) is not None:
        condensed["rews"] = _concat([t.rews for t in trajs])
    with atomic.replacing_file(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **condensed)


def _write_pickle(path: Path, trajs: list[Any]) -> None:
    with atomic.replacing_file(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(trajs, f, protocol=pickle.HIGHEST_PROTOCOL)


_WRITERS: dict[str, Callable[[Path, list[Any]], None]] = {
    "datasets": _write_datasets,
    "npz": _write_npz,
    "pickle": _write_pickle,
}


def _concat(arrays: list[np.ndarray], dtype: Any = None) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)


def _infos(traj: Any) -> np.ndarray:
    """A trajectory's infos as an object array, one fresh ``{}`` per step where none were kept."""
    return object_array([{} for _ in range(len(traj))] if traj.infos is None else list(traj.infos))


# ------------------------------------------------------------------------- inwards
def _read_datasets(path: Path, allow_pickle: bool) -> list[Any]:
    """The trajectories (imitation's types) of a ``datasets`` directory, read through Arrow.

    imitation's own loader builds each array from Python lists (int64 / float64,
    seconds per image trajectory); the Arrow columns hold the recorded dtypes, so
    they are reshaped instead. Infos are decoded as data, or with jsonpickle as
    imitation does where ``allow_pickle``.
    """
    datasets = imitation_module("datasets")
    types = imitation_module("imitation.data.types")
    table = datasets.load_from_disk(str(path)).with_format("arrow")[:]
    columns = {
        name: _rows(table.column(name)) for name in ("obs", "acts", "rews") if name in table.column_names
    }
    infos = table.column("infos").to_pylist()
    terminal = table.column("terminal").to_pylist()
    cls = types.TrajectoryWithRew if "rews" in columns else types.Trajectory
    decoded = _decode_infos(infos, allow_pickle)
    return [
        cls(
            **{name: rows[i] for name, rows in columns.items()},
            infos=object_array(decoded[i]),
            terminal=bool(terminal[i]),
        )
        for i in range(table.num_rows)
    ]


def _decode_infos(rows: list[list[str]], allow_pickle: bool) -> list[list[Any]]:
    """Each trajectory's infos, decoded as data or (``allow_pickle``) by jsonpickle."""
    if allow_pickle:
        jsonpickle = imitation_module("jsonpickle")
        with warnings.catch_warnings():  # jsonpickle's note on a future default; imitation's encoding
            warnings.filterwarnings("ignore", "keys will default", DeprecationWarning)
            return [[jsonpickle.decode(info) for info in row] for row in rows]
    try:
        return [
            [jsonpickled.decode(info, f"trajectory {i}, step {t}, info") for t, info in enumerate(row)]
            for i, row in enumerate(rows)
        ]
    except UnsafeLoadError as err:
        raise UnsafeLoadError(
            f"{err}: decoding it would import and call what the file names; "
            "load_imitation(..., allow_pickle=True) decodes it with jsonpickle anyway "
            "(runs code from the file: only for files you trust)"
        ) from None


def _rows(column: Any) -> list[np.ndarray]:
    """One array per row of an Arrow column of nested lists of one shape per step."""
    array = column.combine_chunks()
    bounds = np.asarray(array.offsets) - int(array.offsets[0].as_py())
    values, inner = array.flatten(), []
    while hasattr(values, "flatten"):  # list levels below the steps: a fixed shape
        lengths = np.asarray(values.value_lengths())
        inner.append(int(lengths[0]) if len(lengths) else 0)
        if len(lengths) and (lengths != inner[-1]).any():
            raise ValueError(f"{column}: steps of different shapes")
        values = values.flatten()
    steps = values.to_numpy(zero_copy_only=False).reshape(-1, *inner)
    return [steps[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]
