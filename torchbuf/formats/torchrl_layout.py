"""torchrl's layout: trajectories and transitions as one flat TensorDict of steps.

torchrl's collectors, replay buffers and losses read a TensorDict with one row per
step::

    observation                      the observation before the action
    action                           the action
    ("next", "observation")          the observation after it
    ("next", "reward")               shape (n, 1)
    ("next", "done")                 terminated | truncated, shape (n, 1)
    ("next", "terminated")           shape (n, 1)
    ("next", "truncated")            shape (n, 1)
    ("collector", "traj_ids")        one id per trajectory (trajectories only)

Dict observations (and actions) are nested TensorDicts under those keys.
``("collector", "traj_ids")`` is the key torchrl's collectors write and the one
``SliceSampler`` looks for first (torchrl 0.14: then ``"episode"``, then it cuts at
``("next", "done")``), so a ``ReplayBuffer(storage=LazyTensorStorage(...),
sampler=SliceSampler(...))`` extended with :func:`to_torchrl`'s output samples
slices that never cross a trajectory's end, truncations and fragments included.

Only tensordict is needed (torchrl itself is not imported). Everything stays on the
data's device: :func:`to_torchrl` of a :class:`~torchbuf.Transitions` batch is made
of views of its tensors (no copy at all); of trajectories, one concatenation per
field on their device.

What torchrl's layout cannot carry is refused with a ``ValueError``: ``infos``
(Python objects; pass ``drop_infos=True`` to leave them out) and trajectories
without steps or whose ``terminal`` disagrees with their last step's flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey

from torchbuf.data.types import Obs, Trajectory, TrajectoryWithRew, Transitions, TransitionsWithRew
from torchbuf.formats.ends import check_end

TRAJ_KEY: tuple[str, str] = ("collector", "traj_ids")
"""The trajectory-id key of torchrl's collectors, which ``SliceSampler`` reads."""

_FLAGS = ("done", "terminated", "truncated")


def to_torchrl(
    data: Transitions | Sequence[Trajectory],
    *,
    traj_key: NestedKey = TRAJ_KEY,
    first_traj_id: int = 0,
    drop_infos: bool = False,
) -> TensorDict:
    """Converts transitions or trajectories to torchrl's flat TensorDict of steps.

    Args:
        data: A :class:`~torchbuf.Transitions` batch (e.g. ``pop_transitions()``),
            or trajectories (e.g. ``pop_trajectories()[0]``), all on one device.
        traj_key: Where trajectory ids go (trajectories only).
        first_traj_id: The first trajectory's id; the others count up from it
            (e.g. the number of trajectories already in a replay buffer).
        drop_infos: Leave out the infos, which torchrl's layout cannot hold.

    Returns:
        A TensorDict of batch size ``(n,)`` on the data's device, keyed as in the
        module's docstring; ``("next", "reward")`` only where there are rewards.
        From a Transitions batch, every entry is a view of the batch's tensors.

    Raises:
        ValueError: no trajectories; infos without ``drop_infos``; a trajectory
            without steps or whose ``terminal`` disagrees with its last step.
        TypeError: ``data`` is neither transitions nor trajectories.

    Examples:
        >>> from torchbuf import TrajectoryWithRew
        >>> traj = TrajectoryWithRew(
        ...     obs=torch.arange(4.0)[:, None], acts=torch.tensor([0, 1, 0]),
        ...     rews=torch.ones(3), terminated=torch.tensor([False, False, True]),
        ...     truncated=torch.zeros(3, dtype=torch.bool), batch_size=[])
        >>> td = to_torchrl([traj])
        >>> td["next", "observation"][:, 0].tolist(), td["next", "done"].shape
        ([1.0, 2.0, 3.0], torch.Size([3, 1]))
        >>> td["collector", "traj_ids"].tolist()
        [0, 0, 0]
    """
    if isinstance(data, Transitions):
        _check_infos(data.infos, drop_infos, "the transitions")
        return _steps(data.obs, data.acts, data.next_obs, getattr(data, "rews", None), data)
    if isinstance(data, TensorDictBase) or not all(isinstance(t, Trajectory) for t in data):
        raise TypeError("to_torchrl expects a Transitions batch or a sequence of Trajectory objects")
    trajs = list(data)
    if not trajs:
        raise ValueError("to_torchrl needs at least one trajectory")
    for i, traj in enumerate(trajs):
        check_end(traj, i, "torchrl's layout", flags_only_at_end=False)
        _check_infos(traj.infos, drop_infos, f"trajectory {i}")
    with_rew = all(getattr(t, "rews", None) is not None for t in trajs)
    flat = Transitions(
        obs=torch.cat([t.obs[:-1] for t in trajs]),
        acts=torch.cat([t.acts for t in trajs]),
        next_obs=torch.cat([t.obs[1:] for t in trajs]),
        terminated=torch.cat([t.terminated for t in trajs]),
        truncated=torch.cat([t.truncated for t in trajs]),
        dones=torch.cat([t.terminated | t.truncated for t in trajs]),
        batch_size=[sum(len(t) for t in trajs)],
    )
    rews = torch.cat([t.rews for t in trajs]) if with_rew else None  # type: ignore[attr-defined]
    out = _steps(flat.obs, flat.acts, flat.next_obs, rews, flat)
    out.set(traj_key, _traj_ids(trajs, first_traj_id, flat.terminated.device))
    return out


def from_torchrl(td: TensorDictBase, *, traj_key: NestedKey = TRAJ_KEY) -> list[Trajectory]:
    """Splits torchrl's flat TensorDict of steps into trajectories.

    A trajectory is a run of consecutive rows with one id under ``traj_key``;
    without that key, a run ends at each ``("next", "done")``. Its observations
    are the run's ``observation`` rows and the last row's ``("next", "observation")``.

    Args:
        td: Batch size ``(n,)``, keyed as :func:`to_torchrl` writes (torchrl's
            collectors write the same keys; ``("next", "terminated")`` and
            ``("next", "truncated")`` may be missing, and follow from ``done``).
        traj_key: The trajectory-id key.

    Returns:
        :class:`~torchbuf.TrajectoryWithRew` (or :class:`~torchbuf.Trajectory`
        without ``("next", "reward")``) in row order, on ``td``'s device;
        ``terminal`` is whether the last step is done; ``infos`` is ``None``.

    Raises:
        KeyError: ``observation``, ``action``, ``("next", "observation")`` or
            ``("next", "done")`` is missing.
        ValueError: ``td`` is not one-dimensional (reshape a collector's
            ``(envs, steps)`` batch with ``td.reshape(-1)``); a row's
            ``("next", "observation")`` is not the next row's ``observation``
            within a trajectory; or ``done`` is not ``terminated | truncated``.
    """
    _check_flat(td)
    obs, next_obs = td.get("observation"), td.get(("next", "observation"))
    terminated, truncated = _flags(td)
    cuts = _cuts(td, traj_key, terminated | truncated)
    _check_chain(obs, next_obs, cuts)
    rews = _squeezed(td, ("next", "reward"))
    acts = td.get("action")
    last_rows = [c - 1 for c in cuts[1:]]
    done_at_end = (terminated | truncated)[last_rows].tolist()  # a host read, one flag per trajectory
    trajs: list[Trajectory] = []
    for start, stop, terminal in zip(cuts[:-1], cuts[1:], done_at_end):
        fields: dict[str, Any] = {
            "obs": torch.cat([obs[start:stop], next_obs[stop - 1 : stop]]),
            "acts": acts[start:stop],
            "terminated": terminated[start:stop],
            "truncated": truncated[start:stop],
            "batch_size": [],
        }
        if rews is None:
            trajs.append(Trajectory(**fields, terminal=terminal))
        else:
            trajs.append(TrajectoryWithRew(**fields, rews=rews[start:stop], terminal=terminal))
    return trajs


def transitions_from_torchrl(td: TensorDictBase) -> Transitions:
    """Reads torchrl's flat TensorDict of steps as a transitions batch (views, no copy).

    Args:
        td: Batch size ``(n,)``, keyed as :func:`to_torchrl` writes.

    Returns:
        A :class:`~torchbuf.TransitionsWithRew` (or :class:`~torchbuf.Transitions`
        without ``("next", "reward")``) whose tensors are views of ``td``'s;
        ``dones`` is ``("next", "done")``; ``infos`` is ``None``.

    Raises:
        KeyError: a key :func:`from_torchrl` needs is missing.
        ValueError: ``td`` is not one-dimensional, or ``done`` is not
            ``terminated | truncated``.
    """
    _check_flat(td)
    terminated, truncated = _flags(td)
    fields: dict[str, Any] = {
        "obs": td.get("observation"),
        "acts": td.get("action"),
        "next_obs": td.get(("next", "observation")),
        "dones": _squeezed(td, ("next", "done")),
        "terminated": terminated,
        "truncated": truncated,
        "batch_size": td.batch_size,
    }
    rews = _squeezed(td, ("next", "reward"))
    return Transitions(**fields) if rews is None else TransitionsWithRew(**fields, rews=rews)


# ------------------------------------------------------------------------ outwards
def _steps(obs: Obs, acts: Obs, next_obs: Obs, rews: torch.Tensor | None, flat: Transitions) -> TensorDict:
    """The TensorDict of steps, each entry a view of the given tensors."""
    nxt: dict[str, Any] = {
        "observation": next_obs,
        "done": flat.dones.unsqueeze(-1),
        "terminated": flat.terminated.unsqueeze(-1),
        "truncated": flat.truncated.unsqueeze(-1),
    }
    if rews is not None:
        nxt["reward"] = rews.unsqueeze(-1)
    n = int(flat.dones.shape[0])
    device = flat.dones.device
    return TensorDict(
        {"observation": obs, "action": acts, "next": TensorDict(nxt, batch_size=[n], device=device)},
        batch_size=[n],
        device=device,
    )


def _traj_ids(trajs: list[Trajectory], first: int, device: torch.device) -> torch.Tensor:
    """One id per step: ``first + i`` for the steps of trajectory ``i`` (made on the device)."""
    ids = [torch.full((len(t),), first + i, dtype=torch.int64, device=device) for i, t in enumerate(trajs)]
    return torch.cat(ids)


def _check_infos(infos: Any, drop_infos: bool, what: str) -> None:
    if infos is not None and not drop_infos:
        raise ValueError(
            f"{what} has infos, which torchrl's layout cannot hold (Python objects, not tensors): "
            "pass drop_infos=True to convert without them"
        )


# ------------------------------------------------------------------------- inwards
def _check_flat(td: TensorDictBase) -> None:
    if td.batch_dims != 1:
        raise ValueError(
            f"expected a flat TensorDict of steps (batch size (n,)), got batch size {tuple(td.batch_size)}: "
            "reshape a collector's (envs, steps) batch with td.reshape(-1)"
        )
    for key in ("observation", "action", ("next", "observation"), ("next", "done")):
        if key not in td.keys(include_nested=True):
            raise KeyError(f"torchrl's layout needs the key {key!r}; the TensorDict has none")


def _squeezed(td: TensorDictBase, key: NestedKey) -> torch.Tensor | None:
    """``td[key]`` without torchrl's trailing singleton dimension (``None`` where missing)."""
    value = td.get(key, None)
    if value is None:
        return None
    return value.squeeze(-1) if value.dim() == 2 and value.shape[-1] == 1 else value


def _flags(td: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
    """``(terminated, truncated)`` per step; a missing one follows from ``done`` and the other."""
    done = _squeezed(td, ("next", "done"))
    assert done is not None
    terminated, truncated = _squeezed(td, ("next", "terminated")), _squeezed(td, ("next", "truncated"))
    if terminated is None:
        terminated = done & ~truncated if truncated is not None else done
    if truncated is None:
        truncated = done & ~terminated
    bad = torch.nonzero(done.bool() != (terminated.bool() | truncated.bool())).flatten()
    if len(bad):
        raise ValueError(
            f"step {int(bad[0])}: ('next', 'done') is not ('next', 'terminated') | ('next', 'truncated')"
        )
    return terminated.bool(), truncated.bool()


def _cuts(td: TensorDictBase, traj_key: NestedKey, done: torch.Tensor) -> list[int]:
    """Row indices where trajectories start, and the number of rows (a host read of the cuts)."""
    n = int(td.batch_size[0])
    ids = td.get(traj_key, None)
    ends = (ids[1:] != ids[:-1]) if ids is not None else done[:-1]
    inner = (torch.nonzero(ends.reshape(n - 1, -1).any(-1)).flatten() + 1).tolist() if n > 1 else []
    return [0, *inner, n] if n else [0]


def _check_chain(obs: Obs, next_obs: Obs, cuts: list[int]) -> None:
    """Raises where a row's next observation is not the next row's observation, within a trajectory."""
    n = cuts[-1]
    if n < 2:
        return
    if isinstance(obs, TensorDictBase) and isinstance(next_obs, TensorDictBase):
        keys = obs.keys(include_nested=True, leaves_only=True)
        leaves = [(obs.get(k), next_obs.get(k)) for k in keys]
    else:
        leaves = [(obs, next_obs)]
    same = torch.ones(n - 1, dtype=torch.bool, device=leaves[0][0].device)
    same[[c - 1 for c in cuts[1:-1]]] = False  # the last row of each trajectory but the last
    for a, b in leaves:
        differs = _differs(b[:-1], a[1:]).reshape(n - 1, -1).any(-1) & same
        bad = torch.nonzero(differs).flatten()
        if len(bad):
            row = int(bad[0])
            raise ValueError(
                f"step {row}: ('next', 'observation') is not step {row + 1}'s observation, "
                "yet both are in one trajectory"
            )


def _differs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise ``a != b``, where NaN equals NaN (a recorded NaN is not a mismatch)."""
    ne = a != b
    return ne & ~(a.isnan() & b.isnan()) if a.is_floating_point() else ne
