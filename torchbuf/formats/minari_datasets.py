"""Minari datasets: trajectories out as Minari episodes, and Minari episodes in.

:func:`save_minari` writes with ``minari.create_dataset_from_buffers`` (one episode
per trajectory, in order; raw arrays, never JPEG-encoded, so images stay exact);
:func:`load_minari` reads any Minari dataset with ``minari.load_dataset`` and
``iterate_episodes()``. Minari keeps per-step ``terminations`` / ``truncations``,
which map to ``terminated`` / ``truncated`` exactly; ``terminal`` is whether the
last step is either.

What Minari cannot carry is refused with a ``ValueError`` naming the trajectory:

- ``infos``: a Minari episode's infos are per-key arrays with one row per
  observation, the first from ``reset()``, which a torchbuf trajectory does not
  hold. Pass ``drop_infos=True`` to save without them (they load as ``None``).
  :func:`load_minari` turns a dataset's infos into one dict per step, the reset
  row left out.
- trajectories without rewards (:class:`~torchbuf.Trajectory`), without steps, or
  whose ``terminal`` disagrees with the last step's flags;
- data whose dtype or shape is not the space's (Minari stores the spaces).

Datasets live under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDict, TensorDictBase

from torchbuf.data.types import Obs, TrajectoryWithRew
from torchbuf.formats.ends import check_end, check_rewards_and_infos, host_flags
from torchbuf.formats.select import select_trajectories

_ARRAY_SPACES = (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)


def save_minari(
    dataset_id: str,
    trajs: Sequence[TrajectoryWithRew],
    *,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    env: Any = None,
    drop_infos: bool = False,
    keep: Callable[[TrajectoryWithRew], bool] | None = None,
    **metadata: Any,
) -> Any:
    """Creates a Minari dataset with one episode per trajectory.

    Args:
        dataset_id: Minari's id, ``(namespace/)(env_name/)dataset_name-v<version>``;
            it must not exist yet.
        trajs: :class:`~torchbuf.TrajectoryWithRew`, each a whole episode or a
            fragment (``terminal=False``), e.g. ``pop_finished_trajectories()``.
        observation_space: The env's (single) observation space; default ``env``'s.
        action_space: The env's (single) action space; default ``env``'s.
        env: The env (a gymnasium env, its id or spec), recorded by Minari.
        drop_infos: Save without the trajectories' infos (which Minari cannot hold).
        keep: Write only the trajectories for which this is true (e.g.
            ``info_flag("success")``); checked before ``drop_infos``.
        **metadata: Passed to ``minari.create_dataset_from_buffers`` (``author``,
            ``description``, ``algorithm_name``, ``data_format``, ...).

    Returns:
        The ``minari.MinariDataset``.

    Raises:
        ImportError: minari is not installed (``pip install 'torchbuf[minari]'``).
        TypeError: a trajectory has no rewards.
        ValueError: a trajectory cannot be carried (see the module), or the
            spaces are missing; Minari's own ``ValueError`` if ``dataset_id`` exists.
    """
    minari = _minari()
    obs_space, act_space = _spaces(observation_space, action_space, env)
    trajs = trajs if keep is None else select_trajectories(trajs, keep)
    buffers = [_episode(t, i, obs_space, act_space, drop_infos) for i, t in enumerate(trajs)]
    create = minari.create_dataset_from_buffers
    if "jpeg_encoding" in inspect.signature(create).parameters:
        metadata.setdefault("jpeg_encoding", False)  # JPEG is lossy: keep the raw arrays
    return create(
        dataset_id, buffers, env=env, observation_space=obs_space, action_space=act_space, **metadata
    )


def load_minari(dataset: Any, device: torch.device | str = "cpu") -> list[TrajectoryWithRew]:
    """Reads a Minari dataset's episodes as trajectories, through Minari's own API.

    Args:
        dataset: A dataset id (``minari.load_dataset(dataset)``) or a ``MinariDataset``.
        device: Where the tensors go.

    Returns:
        One :class:`~torchbuf.TrajectoryWithRew` per episode, in Minari's order, with
        ``obs`` (``len + 1`` rows; dict spaces as TensorDicts), ``acts``,
        ``rews``, ``terminated`` / ``truncated`` (Minari's ``terminations`` /
        ``truncations``), ``terminal`` (the last step is either), ``infos`` (one
        dict per step, or ``None`` when the dataset has none).

    Raises:
        ImportError: minari is not installed.
        ValueError: an episode's observations or actions are of a space that has
            no tensor form here (Tuple, Text, ...), or its infos have an
            unexpected number of rows.
    """
    minari = _minari()
    if isinstance(dataset, str):
        dataset = minari.load_dataset(dataset)
    device = torch.device(device)
    return [_trajectory(episode, device) for episode in dataset.iterate_episodes()]


# ------------------------------------------------------------------------ outwards
def _spaces(obs_space: Any, act_space: Any, env: Any) -> tuple[gym.Space, gym.Space]:
    if (obs_space is None or act_space is None) and env is not None:
        made = gym.make(env) if isinstance(env, str | gym.envs.registration.EnvSpec) else env
        obs_space = obs_space or made.observation_space
        act_space = act_space or made.action_space
    if obs_space is None or act_space is None:
        raise ValueError("save_minari needs observation_space and action_space (or env)")
    return obs_space, act_space


def _episode(
    traj: TrajectoryWithRew, index: int, obs_space: gym.Space, act_space: gym.Space, drop_infos: bool
) -> Any:
    """Minari's ``EpisodeBuffer`` for one trajectory, after checking that it fits."""
    from minari.data_collector import EpisodeBuffer

    why = " (its infos start with the reset's, one row per observation)"
    check_rewards_and_infos(traj, index, "Minari", "episodes", drop_infos=drop_infos, why=why)
    check_end(traj, index, "Minari", flags_only_at_end=False)
    obs, acts = _numpy(traj.obs), _numpy(traj.acts)
    _check_space(obs, obs_space, f"trajectory {index}: obs", "observation space")
    _check_space(acts, act_space, f"trajectory {index}: acts", "action space")
    terminated, truncated = host_flags(traj)
    return EpisodeBuffer(
        id=index,
        observations=obs,
        actions=acts,
        rewards=_numpy(traj.rews),
        terminations=terminated,
        truncations=truncated,
    )


def _numpy(value: Any) -> Any:
    """Host numpy arrays, nested dicts of them for TensorDicts."""
    if isinstance(value, TensorDictBase):
        return {str(key): _numpy(leaf) for key, leaf in value.items()}
    return value.detach().cpu().numpy()


def _check_space(value: Any, space: gym.Space, what: str, space_name: str) -> None:
    """Raises ``ValueError`` where ``value`` (rows of a space's samples) does not fit ``space``."""
    if isinstance(space, spaces.Dict) and isinstance(value, dict) and set(value) == set(space.spaces):
        for key, sub in space.spaces.items():
            _check_space(value[key], sub, f"{what}[{key!r}]", space_name)
        return
    if not isinstance(space, (spaces.Dict, *_ARRAY_SPACES, spaces.Discrete)):
        raise ValueError(f"{what}: {type(space).__name__} spaces are not supported")
    if isinstance(space, spaces.Dict) or isinstance(value, dict):
        raise ValueError(f"{what}: {_describe(value)}, the {space_name} is {space}")
    shape = () if isinstance(space, spaces.Discrete) else tuple(space.shape)
    if (value.dtype, tuple(value.shape[1:])) != (np.dtype(space.dtype), shape):
        raise ValueError(
            f"{what}: {_describe(value)}, the {space_name} holds {np.dtype(space.dtype)} {shape} "
            "(Minari stores the space: the data must match it)"
        )


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"a dict of {sorted(value)}"
    return f"{value.dtype} {tuple(value.shape[1:])}"


# ------------------------------------------------------------------------- inwards
def _trajectory(episode: Any, device: torch.device) -> TrajectoryWithRew:
    n = len(episode.rewards)
    terminated = np.asarray(episode.terminations, dtype=bool)
    truncated = np.asarray(episode.truncations, dtype=bool)
    return TrajectoryWithRew(
        obs=_tensors(episode.observations, n + 1, device, f"episode {episode.id}: observations"),
        acts=_tensors(episode.actions, n, device, f"episode {episode.id}: actions"),
        rews=_tensor(episode.rewards, device),
        terminated=_tensor(terminated, device),
        truncated=_tensor(truncated, device),
        infos=_step_infos(episode.infos, n, episode.id),
        terminal=bool(n and (terminated[-1] or truncated[-1])),
        batch_size=[],
        device=device,
    )


def _tensors(value: Any, n: int, device: torch.device, what: str) -> Obs:
    if isinstance(value, dict):
        tree = {key: _tensors(sub, n, device, f"{what}[{key!r}]") for key, sub in value.items()}
        return TensorDict(tree, batch_size=[n], device=device)
    if not isinstance(value, np.ndarray) or value.dtype == object:
        raise ValueError(f"{what}: a {type(value).__name__}, not an array (its space has no tensor form)")
    return _tensor(value, device)


def _tensor(array: Any, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.array(array, copy=True)).to(device)


def _step_infos(infos: Any, n: int, episode_id: Any) -> np.ndarray | None:
    """Minari's per-key info arrays as one dict per step (the reset's row left out)."""
    if not infos:
        return None
    rows = _info_rows(infos)
    if rows not in (n, n + 1):
        raise ValueError(f"episode {episode_id}: infos have {rows} rows, expected {n + 1} (or {n})")
    first = rows - n
    out = np.empty(n, dtype=object)
    out[:] = [_info_row(infos, first + t) for t in range(n)]
    return out


def _info_rows(infos: dict[str, Any]) -> int:
    value = next(iter(infos.values()))
    return _info_rows(value) if isinstance(value, dict) else len(value)


def _info_row(infos: dict[str, Any], t: int) -> dict[str, Any]:
    return {key: _info_row(value, t) if isinstance(value, dict) else value[t] for key, value in infos.items()}


def _minari() -> ModuleType:
    try:
        return importlib.import_module("minari")
    except ImportError as err:
        raise ImportError(
            "reading or writing Minari datasets needs the optional dependency minari: "
            "pip install 'torchbuf[minari]'"
        ) from err
