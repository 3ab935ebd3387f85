"""gymnasium ``VectorEnv`` conventions: the three autoreset modes, 0.29's keys, envpool.

- NEXT_STEP (gymnasium's default, envpool): the done step's observation is the final
  one; the env's next step is a reset step whose action is ignored and which is not a
  transition.
- SAME_STEP: the done step already returns the reset observation; the final one is
  in ``info["final_obs"]`` (gymnasium 1.x, an object array of per-env observations,
  mask ``info["_final_obs"]``) or ``info["final_observation"]`` (gymnasium 0.29, and
  ManiSkill3 as a full-batch tensor with mask ``info["_final_observation"]``).
- DISABLED: the caller resets ended envs with ``reset(options={"reset_mask": ...})``.

A SAME_STEP env that reports no final observation (Isaac Lab without
``extras["final_obs"]``) cannot tell the buffer what its episodes ended on: the
terminal slots then hold :func:`unknown_like` stand-ins (NaN for floats), never the
reset observation.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from torchbuf.data.convert import cast_like, obs_to_tensors, stack_obs
from torchbuf.data.spaces import BatchFit, batch_of_one, check_batch, check_one, fit_space
from torchbuf.data.types import Obs

FINAL_KEYS = (("final_obs", "_final_obs"), ("final_observation", "_final_observation"))
# Keys whose content the buffer stores already; not kept again in infos.
CONSUMED_KEYS = frozenset(k for pair in FINAL_KEYS for k in pair)


class Autoreset(str, enum.Enum):
    """How a vector env starts a new episode after one ends."""

    NEXT_STEP = "next_step"
    SAME_STEP = "same_step"
    DISABLED = "disabled"


_NAMES = {
    "nextstep": Autoreset.NEXT_STEP,
    "samestep": Autoreset.SAME_STEP,
    "disabled": Autoreset.DISABLED,
}


def autoreset_mode(env: Any, override: str | None = None) -> Autoreset:
    """Reads the env's autoreset mode (``metadata["autoreset_mode"]``).

    Args:
        env: The vector env.
        override: A mode name that replaces what the env declares.

    Returns:
        The mode.

    Raises:
        ValueError: the mode is unknown, or the env declares none and gymnasium is
            1.x (where no default can be assumed).
    """
    mode = override if override is not None else getattr(env, "metadata", {}).get("autoreset_mode")
    if mode is None:
        if gym.__version__.startswith("0."):
            return Autoreset.SAME_STEP  # gymnasium 0.29 vector envs reset in the same step
        raise ValueError(
            f"{type(env).__name__} declares no metadata['autoreset_mode']; pass autoreset_mode="
            "'next_step', 'same_step' or 'disabled'"
        )
    name = str(getattr(mode, "value", mode)).replace("_", "").lower()
    if name not in _NAMES:
        raise ValueError(
            f"unsupported autoreset mode {mode!r}: expected one of {[m.value for m in Autoreset]}"
        )
    return _NAMES[name]


def final_obs(
    info: Mapping[str, Any], obs: Obs, device: torch.device, fit: BatchFit | None = None
) -> tuple[Obs | None, np.ndarray | None]:
    """The true final observations of a SAME_STEP step.

    Args:
        info: The step's info dict.
        obs: The step's observations (reset observations where episodes ended).
        device: Storage device.
        fit: The observations' :class:`~torchbuf.data.spaces.BatchFit` (a full
            batch's); where given, every final observation is checked against its
            space (shape, dict keys, dtype) like ``obs``.

    Returns:
        A tuple ``(final, rows)`` of the ended rows' final observations and their host
        positions (per-env object arrays), or the env's full batch and ``None``
        (full-batch tensors, read where episodes ended), or ``(None, None)`` when the
        info carries no final observation.
    """
    keys = next(((k, m) for k, m in FINAL_KEYS if k in info), None)
    if keys is None:
        return None, None
    value, mask_key = info[keys[0]], keys[1]
    if not (isinstance(value, np.ndarray) and value.dtype == object):
        if fit is not None and not (_batch(obs) == fit.n_envs and fit.fits(value)):
            check_batch(fit.space, value, _batch(obs), keys[0])
            value = fit_space(fit.space, value, keys[0])
        return cast_like(obs_to_tensors(value, _batch(obs), device), obs), None
    rows = np.flatnonzero(np.asarray(info[mask_key], dtype=bool))
    if rows.size == 0:
        return None, None
    ends = [value[i] for i in rows]
    if fit is not None:
        space = fit.space
        for i, end in zip(rows.tolist(), ends):
            check_one(space, end, f"{keys[0]} of env {i}")
        ones = [
            fit_space(space, batch_of_one(end), f"{keys[0]} of env {i}")
            for i, end in zip(rows.tolist(), ends)
        ]
        return cast_like(obs_to_tensors(_concat(ones), len(rows), device), obs), rows
    return cast_like(stack_obs(ends, device), obs), rows


def _concat(batches: Sequence[Any]) -> Any:
    """Concatenates batches (arrays, tensors, or mappings of them) along their first axis."""
    if isinstance(batches[0], Mapping):
        return {k: _concat([b[k] for b in batches]) for k in batches[0]}
    if isinstance(batches[0], torch.Tensor):
        return torch.cat(list(batches))
    return np.concatenate(batches)


def unknown_like(obs: Obs) -> Obs:
    """Stand-ins for final observations the env did not report.

    Floating leaves hold NaN; integer leaves the dtype's minimum (signed) or maximum
    (unsigned), never a real observation, in particular never the reset one.
    """
    if isinstance(obs, torch.Tensor):
        return torch.full_like(obs, _missing_value(obs.dtype))
    return obs.apply(lambda x: torch.full_like(x, _missing_value(x.dtype)))  # type: ignore[return-value]


def _missing_value(dtype: torch.dtype) -> float | int | bool:
    if dtype.is_floating_point:
        return float("nan")
    if dtype == torch.bool:
        return False
    info = torch.iinfo(dtype)
    return info.min if info.min < 0 else info.max


def _batch(obs: Obs) -> int:
    return int(obs.shape[0]) if isinstance(obs, torch.Tensor) else int(obs.batch_size[0])


class BatchedInfos(Sequence[dict[str, Any]]):
    """One step's batched info dict, read as one dict per env when popped.

    Built per step without a loop over envs and without a host sync: tensors and
    arrays are copied where they live (an env that updates its info tensors in place,
    as GPU simulators do, cannot change what was recorded). A value with a leading
    env axis (an array or tensor of ``n`` rows) is sliced per env; any other value
    (a scalar, a 0-dim tensor, a string, a Python object, an array of another length)
    has no env axis and is given whole to every env's dict. Python objects other than
    arrays, tensors and dicts are kept as the env gave them, not copied. The per-env
    dicts (only the keys whose ``_key`` mask holds for that env) are made at pop time.

    Args:
        info: The step's info dict.
        n: Number of envs in the step.
    """

    def __init__(self, info: Mapping[str, Any], n: int):
        self._info = snapshot({k: v for k, v in info.items() if k not in CONSUMED_KEYS}, n)
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        return _row(self._info, i)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(self._n))


class _Shared:
    """An info value without an env axis: every env's dict gets it whole."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def snapshot(info: Mapping[str, Any], n: int) -> dict[str, Any]:
    """A copy of ``info`` that later in-place updates by the env cannot reach.

    Tensors are cloned on their device (no host sync), numpy arrays copied, nested
    mappings copied key by key; values without a leading axis of ``n`` are marked as
    shared by every env.
    """
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, Mapping):
            out[key] = snapshot(value, n)
        elif isinstance(value, torch.Tensor):
            copy = value.detach().clone()
            out[key] = copy if copy.dim() and copy.shape[0] == n else _Shared(copy)
        elif isinstance(value, np.ndarray):
            array = value.copy()
            out[key] = array if array.ndim and array.shape[0] == n else _Shared(array)
        else:
            out[key] = _Shared(value)
    return out


def _row(info: Mapping[str, Any], i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get("_" + key)
        if mask is not None and not isinstance(mask, (Mapping, _Shared)) and not mask[i]:
            continue
        if isinstance(value, Mapping):
            out[key] = _row(value, i)
        else:
            out[key] = value.value if isinstance(value, _Shared) else value[i]
    return out
