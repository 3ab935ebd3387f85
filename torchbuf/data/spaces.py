"""Checks of env data against gymnasium spaces, with errors that name env and field."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces


def check_batch(space: spaces.Space, value: Any, n_envs: int, field: str) -> None:
    """Checks that ``value`` is a batch of ``n_envs`` elements of ``space``.

    Shapes, dtype kinds and dict keys are checked on every call; values only where
    the check is cheap and exact (discrete ranges of host arrays). Integer kinds are
    interchangeable (int/uint), and integers may fill float spaces.

    Args:
        space: The single-env space.
        value: The batch (numpy array, tensor, or mapping for dict spaces).
        n_envs: Expected batch size.
        field: Name used in error messages (``"obs"``, ``"actions"``, ...).

    Raises:
        ValueError: the batch does not fit, naming the field and, where known, the
            env index.
    """
    if isinstance(space, spaces.Dict):
        if not isinstance(value, Mapping):
            raise ValueError(
                f"{field}: expected a mapping with keys {sorted(space.spaces)}, got {type(value).__name__}"
            )
        if set(value.keys()) != set(space.spaces):
            raise ValueError(
                f"{field}: keys {sorted(value.keys())} do not match the space's {sorted(space.spaces)}"
            )
        for key, sub in space.spaces.items():
            check_batch(sub, value[key], n_envs, f"{field}[{key!r}]")
        return
    shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
    if shape[:1] != (n_envs,) or shape[1:] != (space.shape or ()):
        expected = (n_envs, *(space.shape or ()))
        raise ValueError(f"{field}: expected shape {expected} (n_envs, *space.shape), got {shape}")
    if space.dtype is not None:
        kind, want = _kind(value), space.dtype.kind
        if kind != want and not (kind in "iu" and want in "iuf"):
            raise ValueError(f"{field}: dtype {value.dtype} does not fit the space's {space.dtype}")
    if isinstance(space, spaces.Discrete) and isinstance(value, np.ndarray):
        _check_discrete(space, value, field)


class BatchFit:
    """:func:`check_batch`, then :func:`fit_space`, for one space, batch size and field.

    Made once per wrapper: a step's batch that already has the batch's shape and the
    space's dtype (the common case) is checked by comparing those two, and a discrete
    space's values by their range, without walking the space; anything else takes
    :func:`check_batch` and :func:`fit_space`, which cast or raise naming the field
    and the env.

    Args:
        space: The single-env space.
        n_envs: The batch size, or ``None`` for batches of any size (the
            terminal observations of the envs that ended a step).
        field: Name used in error messages.
    """

    def __init__(self, space: spaces.Space, n_envs: int | None, field: str):
        self.space, self.n_envs, self.field = space, n_envs, field
        leaf = not isinstance(space, spaces.Dict) and space.dtype is not None
        self._row = tuple(space.shape or ()) if leaf else None
        self._shape = None if n_envs is None or not leaf else (n_envs, *(space.shape or ()))
        self._dtype = np.dtype(space.dtype) if leaf else None
        self._torch_dtype = (
            _torch_dtype(self._dtype) if self._dtype is not None and self._dtype.kind in "biuf" else None
        )
        self._range = None
        if isinstance(space, spaces.Discrete):
            self._range = (int(space.start), int(space.start) + int(space.n))

    def __call__(self, value: Any) -> Any:
        """Returns ``value`` checked and in the space's dtype.

        Raises:
            ValueError: it does not fit, naming the field and, where known, the env.
        """
        if self.fits(value):
            return value
        n = self.n_envs if self.n_envs is not None else _batch_len(value)
        check_batch(self.space, value, n, self.field)
        return fit_space(self.space, value, self.field)

    def fits(self, value: Any) -> bool:
        """Whether ``value`` is a batch of the space as it is: the exact shape and dtype (and range).

        A ``False`` says only that the quick test cannot tell: :func:`check_batch` and
        :func:`fit_space` decide.
        """
        if isinstance(value, torch.Tensor):  # values are checked on the host only, as check_batch does
            return value.dtype is self._torch_dtype and self._fits_shape(value.shape)
        return (
            type(value) is np.ndarray
            and value.dtype == self._dtype
            and self._fits_shape(value.shape)
            and (self._range is None or _in_range(value, *self._range))
        )

    def _fits_shape(self, shape: tuple[int, ...]) -> bool:
        if self._shape is not None:
            return shape == self._shape
        return self._row is not None and len(shape) > 0 and shape[1:] == self._row


def _batch_len(value: Any) -> int:
    """The leading size of a batch (a mapping's: its first leaf's)."""
    while isinstance(value, Mapping) and value:
        value = next(iter(value.values()))
    return len(value) if hasattr(value, "__len__") else 0


_FEW = 32


def _in_range(value: np.ndarray, lo: int, hi: int) -> bool:
    """Whether every value lies in ``[lo, hi)``."""
    if value.size <= _FEW:  # a few values: Python's min and max of a list beat two numpy reductions
        values = value.ravel().tolist()
        return not values or (lo <= min(values) and max(values) < hi)
    if lo == 0 and value.dtype.kind in "iu":  # negatives read as unsigned are huge: one reduction
        return bool(value.view(f"u{value.dtype.itemsize}").max() < hi)
    return bool(value.min() >= lo and value.max() < hi)


def _check_discrete(space: spaces.Discrete, value: np.ndarray, field: str) -> None:
    lo, hi = int(space.start), int(space.start + space.n)
    if not _in_range(value, lo, hi):
        bad = np.flatnonzero((value < lo) | (value >= hi))
        raise ValueError(f"{field}: env {int(bad[0])} gave {value[bad[0]]}, outside {space}")


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool:
            return "b"
        return "f" if value.dtype.is_floating_point else ("i" if value.dtype.is_signed else "u")
    kind: str = value.dtype.kind if isinstance(value, np.ndarray) else np.asarray(value).dtype.kind
    return kind


def fit_space(space: spaces.Space, value: Any, field: str, env: int | None = None) -> Any:
    """Returns ``value`` in the space's declared dtype, refusing values that do not fit.

    Storage takes the space's dtype, not whatever dtype a step happens to carry, so a
    later step can never be truncated or wrapped into an earlier one's dtype. A value
    already in that dtype is returned as is (no copy, no device work); a cast that
    would change a value (``0.5`` into an integer space, ``300`` into ``uint8``) raises.

    Args:
        space: The single-env space.
        value: A batch (numpy array, tensor, or mapping for dict spaces).
        field: Name used in error messages.
        env: The env of a batch of one (for its error messages); ``None``: row ``i``
            is env ``i``.

    Returns:
        The batch in the space's dtype (mappings key by key).

    Raises:
        ValueError: a value does not fit the dtype, naming the field and the env.
    """
    if isinstance(space, spaces.Dict) and isinstance(value, Mapping):
        fitted = {k: fit_space(sub, value[k], f"{field}[{k!r}]", env) for k, sub in space.spaces.items()}
        if all(fitted[k] is value[k] for k in fitted):
            return value
        return type(value)(fitted) if isinstance(value, dict) else fitted
    if space.dtype is None or not hasattr(value, "dtype"):
        return value
    want = np.dtype(space.dtype)
    if isinstance(value, torch.Tensor):
        target = _torch_dtype(want)
        if value.dtype == target:
            return value
        cast = value.to(target)
        lossy = want.kind in "iub" or not value.dtype.is_floating_point
        if lossy and not torch.equal(cast.to(value.dtype), value):  # only on a dtype mismatch
            bad_rows = (cast.to(value.dtype) != value).reshape(len(value), -1).any(1)
            _refuse(field, int(bad_rows.nonzero()[0]), value, want, env)
        return cast
    arr: np.ndarray = np.asarray(value)
    if arr.dtype == want:
        return value
    out = arr.astype(want)
    if (want.kind in "iub" or arr.dtype.kind not in "f") and not np.array_equal(out.astype(arr.dtype), arr):
        bad = (out.astype(arr.dtype) != arr).reshape(len(arr), -1).any(1)
        _refuse(field, int(np.flatnonzero(bad)[0]), arr, want, env)
    return out


@functools.cache
def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype of a numpy dtype (looked up once: a step issues no op for it)."""
    return torch.from_numpy(np.zeros(0, dtype)).dtype


def _refuse(field: str, row: int, value: Any, want: np.dtype, env: int | None) -> None:
    raise ValueError(
        f"{field}: env {row if env is None else env} gave {value[row].tolist()} ({value.dtype}), "
        "which does not fit the "
        f"space's dtype {want}: torchbuf stores the declared dtype and never truncates or wraps"
    )


def check_one(space: spaces.Space, value: Any, field: str) -> None:
    """Checks that ``value`` is one element of ``space`` (shape, dtype kind, dict keys).

    Args:
        space: The single-env space.
        value: One env's value (array, tensor, scalar, or mapping for dict spaces).
        field: Name used in error messages, e.g. ``"final_obs of env 3"``.

    Raises:
        ValueError: the value does not fit, naming the field.
    """
    check_batch(space, batch_of_one(value), 1, field)


def fit_one(space: spaces.Space, value: Any, field: str, env: int) -> Any:
    """One env's ``value`` (e.g. a final observation) in the space's dtype, as :func:`fit_space`.

    Args:
        space: The single-env space.
        value: The env's value (array, tensor, scalar, or mapping for dict spaces).
        field: Name used in error messages.
        env: The env's index, for error messages.

    Returns:
        The value in the space's dtype (mappings key by key).

    Raises:
        ValueError: it does not fit the dtype, naming the field and the env.
    """
    fitted = fit_space(space, batch_of_one(value), field, env)
    return {k: v[0] for k, v in fitted.items()} if isinstance(fitted, Mapping) else fitted[0]


def batch_of_one(value: Any) -> Any:
    """``value`` with a leading batch axis of 1 (mappings key by key)."""
    if isinstance(value, Mapping):
        return {k: batch_of_one(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.unsqueeze(0)
    return np.asarray(value)[None]
