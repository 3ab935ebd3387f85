"""Rollout helpers: torch-native counterparts of ``imitation.data.rollout``.

:func:`generate_trajectories` runs a policy in a vectorized env through a buffering
wrapper and returns complete episodes as :class:`~torchbuf.data.types.TrajectoryWithRew`
(tensors on the storage device); :func:`make_sample_until` builds its stopping
rule; :func:`rollout_stats` summarises episodes with imitation's keys;
:func:`flatten_trajectories` concatenates episodes into one transitions batch.

The env may be an SB3 ``VecEnv`` (wrapped in :class:`~torchbuf.BufferingWrapper`),
a gymnasium vector env, numpy or torch-native (wrapped in
:class:`~torchbuf.VectorBufferingWrapper`), or either wrapper already.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv
from tensordict import TensorDictBase

from torchbuf.buffer.popapi import PopAPI
from torchbuf.data.convert import object_array, obs_to_numpy, obs_to_tensors
from torchbuf.data.types import Obs, Trajectory, TrajectoryWithRew, Transitions, TransitionsWithRew
from torchbuf.wrappers.sb3 import BufferingWrapper
from torchbuf.wrappers.vector import VectorBufferingWrapper

__all__ = [
    "AnyPolicy",
    "SampleUntil",
    "flatten_trajectories",
    "generate_trajectories",
    "make_min_episodes",
    "make_min_timesteps",
    "make_sample_until",
    "rollout_stats",
]

SampleUntil = Callable[[Sequence[TrajectoryWithRew]], bool]
"""A stopping rule: ``True`` once the trajectories collected so far are enough."""

AnyPolicy = BaseAlgorithm | BasePolicy | Callable[[Obs], Any] | None
"""An SB3 algorithm or policy, a callable from an observation batch (tensor or
TensorDict) to an action batch (tensor or numpy), or ``None`` for random actions."""


def make_min_episodes(n: int) -> SampleUntil:
    """Stops once at least ``n`` episodes are collected.

    Raises:
        ValueError: ``n`` is not positive.
    """
    if n <= 0:
        raise ValueError(f"min_episodes={n} must be positive")
    return lambda trajs: len(trajs) >= n


def make_min_timesteps(n: int) -> SampleUntil:
    """Stops once the episodes collected hold at least ``n`` transitions.

    Raises:
        ValueError: ``n`` is not positive.
    """
    if n <= 0:
        raise ValueError(f"min_timesteps={n} must be positive")
    return lambda trajs: sum(len(t) for t in trajs) >= n


def make_sample_until(min_timesteps: int | None = None, min_episodes: int | None = None) -> SampleUntil:
    """Stops once every given minimum (transitions, episodes) is reached, as imitation's.

    Args:
        min_timesteps: Minimum number of transitions over the complete episodes.
        min_episodes: Minimum number of complete episodes.

    Returns:
        The stopping rule.

    Raises:
        ValueError: neither is given, or one is not positive.

    Examples:
        >>> until = make_sample_until(min_episodes=2)
        >>> until([]), until([None, None])
        (False, True)
    """
    if min_timesteps is None and min_episodes is None:
        raise ValueError("At least one of min_timesteps and min_episodes needs to be non-None")
    conditions = []
    if min_timesteps is not None:
        conditions.append(make_min_timesteps(min_timesteps))
    if min_episodes is not None:
        conditions.append(make_min_episodes(min_episodes))
    return lambda trajs: all(cond(trajs) for cond in conditions)


def generate_trajectories(
    policy: AnyPolicy,
    venv: VecEnv | gym.vector.VectorEnv,
    sample_until: SampleUntil,
    *,
    deterministic_policy: bool = False,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
    check_every: int = 1,
) -> list[TrajectoryWithRew]:
    """Runs ``policy`` in ``venv`` and returns complete episodes until ``sample_until``.

    As imitation's: the env is reset, then stepped until ``sample_until(trajs)``
    holds; after that every env finishes the episode it is running (so short
    episodes are not favoured) and its later episodes are dropped. Partial
    episodes are discarded, so a wrapper passed in ends with nothing unpopped.

    Episodes come from :meth:`pop_finished_trajectories`; to attribute them to envs
    the done flags are read on the host every ``check_every`` steps (for a
    torch-native env that is the one sync, of ``check_every x n_envs`` flags).

    Args:
        policy: An SB3 algorithm or policy (``predict`` on numpy observations; on
            tensor observations its ``_predict`` runs where the tensors are), a
            callable from an observation batch (a tensor, or a TensorDict for dict
            spaces, on the storage device) to actions, or ``None`` for random
            actions.
        venv: An SB3 ``VecEnv`` or gymnasium vector env (numpy or torch tensors),
            or one already wrapped in a torchbuf buffering wrapper.
        sample_until: The stopping rule, e.g. from :func:`make_sample_until`.
        deterministic_policy: Ask an SB3 policy for its deterministic action.
        rng: Shuffles the episodes (imitation shuffles; ``None`` keeps the order
            in which they ended).
        seed: Seeds the env before its reset.
        device: Storage device when ``venv`` gets wrapped here (default: CPU for an
            SB3 ``VecEnv``, the env's tensors' device for a vector env).
        check_every: Steps between reads of the done flags (and pops).

    Returns:
        Complete episodes (``terminal`` true), tensors on the storage device.

    Raises:
        TypeError: ``venv`` or ``policy`` is of an unsupported kind.
        ValueError: ``deterministic_policy`` with a callable policy, or
            ``check_every`` is not positive.

    Examples:
        >>> from torchbuf.envs import TorchCartPole
        >>> from torchbuf.envs.experts import scripted_cartpole
        >>> trajs = generate_trajectories(
        ...     scripted_cartpole, TorchCartPole(4, seed=0), make_sample_until(min_episodes=4)
        ... )
        >>> len(trajs), int(trajs[0].rews.sum())
        (4, 500)
    """
    if check_every < 1:
        raise ValueError(f"check_every={check_every} must be positive")
    env = _buffered(venv, device)
    act = _action_fn(policy, env, deterministic_policy)
    obs = _reset(env, seed)
    collector = _Collector(env.num_envs, sample_until)
    pending: list[Any] = []
    dones = None
    while collector.active.any():
        obs, dones = _step(env, act(obs, dones))
        pending.append(dones)
        if len(pending) >= check_every:
            collector.add(env, _dones_on_host(pending))
            pending = []
    if env.n_unpopped:
        PopAPI.pop_transitions(env)  # partial episodes: dropped, as imitation drops them
    trajs = collector.trajs
    return [trajs[i] for i in rng.permutation(len(trajs))] if rng is not None else trajs


class _Collector:
    """Attributes popped episodes to envs and applies imitation's stopping rule."""

    def __init__(self, n_envs: int, sample_until: SampleUntil):
        self.active = np.ones(n_envs, dtype=bool)
        self.sample_until = sample_until
        self.trajs: list[TrajectoryWithRew] = []

    def add(self, env: PopAPI, dones: np.ndarray) -> None:
        """Pops the episodes that ended in the steps ``dones`` (shape ``(k, n_envs)``)."""
        if not dones.any():
            return
        # Pops come env by env, each env's episodes in time order.
        popped, _ = PopAPI.pop_finished_trajectories(env)
        env_ids, steps = np.nonzero(dones.T)
        if len(popped) != len(env_ids):
            raise RuntimeError(f"{len(env_ids)} episodes ended but {len(popped)} were popped")
        for t in range(dones.shape[0]):
            ended = dones[t] & self.active
            if not ended.any():
                continue
            self.trajs += [popped[int(i)] for i in np.flatnonzero(steps == t) if ended[env_ids[i]]]
            if self.sample_until(self.trajs):
                self.active &= ~ended


def _buffered(venv: Any, device: torch.device | str | None) -> Any:
    """Returns ``venv`` wrapped in the buffering wrapper of its kind, if not already."""
    if isinstance(venv, PopAPI):
        return venv
    if isinstance(venv, VecEnv):
        return BufferingWrapper(venv, device=device or "cpu")
    if isinstance(venv, gym.vector.VectorEnv):
        return VectorBufferingWrapper(venv, device=device)
    raise TypeError(f"venv must be an SB3 VecEnv or a gymnasium vector env, got {type(venv).__name__}")


def _reset(env: Any, seed: int | None) -> Any:
    if isinstance(env, VecEnv):
        if seed is not None:
            env.seed(seed)
        return env.reset()
    return env.reset(seed=seed)[0]


def _step(env: Any, actions: Any) -> tuple[Any, Any]:
    """Steps either kind of env; returns the observations and done flags."""
    if isinstance(env, VecEnv):
        obs, _, dones, _ = env.step(actions)
        return obs, dones
    obs, _, terminated, truncated, _ = env.step(actions)
    return obs, terminated | truncated


def _dones_on_host(pending: list[Any]) -> np.ndarray:
    """Stacks the done flags of the last steps on the host (one read for tensors)."""
    if isinstance(pending[0], torch.Tensor):
        return torch.stack(pending).cpu().numpy().astype(bool)
    return np.stack([np.asarray(d) for d in pending]).astype(bool)


ActionFn = Callable[[Any, Any], Any]


def _action_fn(policy: AnyPolicy, env: Any, deterministic: bool) -> ActionFn:
    """Turns any policy into ``(obs as the env gave it, last dones) -> env actions``."""
    if policy is None:
        return lambda obs, _: _like_obs(_random_actions(env), obs, env.device)
    if isinstance(policy, BaseAlgorithm | BasePolicy):
        return _sb3_action_fn(policy, env, deterministic)
    if callable(policy):
        if deterministic:
            raise ValueError("deterministic_policy=True needs an SB3 policy, not a callable")
        return lambda obs, _: _like_obs(
            policy(obs_to_tensors(obs, env.num_envs, env.device)), obs, env.device
        )
    raise TypeError(f"policy must be None, an SB3 algorithm or policy, or a callable; got {type(policy)}")


def _random_actions(env: Any) -> Any:
    if isinstance(env, VecEnv):
        return np.stack([env.action_space.sample() for _ in range(env.num_envs)])
    return env.action_space.sample()


def _sb3_action_fn(policy: BaseAlgorithm | BasePolicy, env: Any, deterministic: bool) -> ActionFn:
    state: Any = None

    def act(obs: Any, dones: Any) -> Any:
        nonlocal state
        if _is_tensor_obs(obs):
            net = policy.policy if isinstance(policy, BaseAlgorithm) else policy
            return _predict_on_device(net, obs_to_tensors(obs, env.num_envs, env.device), deterministic)
        episode_start = None if dones is None else np.asarray(dones)
        acts, state = policy.predict(obs, state, episode_start, deterministic)
        return acts

    return act


def _predict_on_device(policy: BasePolicy, obs: Obs, deterministic: bool) -> torch.Tensor:
    """SB3's ``predict`` without leaving the device: ``_predict``, then scale or clip."""
    net_obs: Any = obs.to(policy.device)
    if isinstance(net_obs, TensorDictBase):
        net_obs = {str(k): net_obs[k] for k in net_obs.keys()}  # noqa: SIM118
    with torch.no_grad():
        acts = policy._predict(net_obs, deterministic=deterministic)
    space = policy.action_space
    if isinstance(space, gym.spaces.Box):
        low = torch.as_tensor(space.low, device=acts.device)
        high = torch.as_tensor(space.high, device=acts.device)
        if policy.squash_output:
            acts = low + 0.5 * (acts + 1.0) * (high - low)
        else:
            acts = torch.maximum(torch.minimum(acts, high), low)
    obs_device = obs.device if obs.device is not None else acts.device
    return acts.reshape((-1, *(space.shape or ()))).to(obs_device)


def _is_tensor_obs(obs: Any) -> bool:
    """Tensors, a TensorDict, or a dict of them (Isaac Lab's and mjlab's observation groups)."""
    if isinstance(obs, Mapping) and not isinstance(obs, TensorDictBase):
        return bool(obs) and all(_is_tensor_obs(v) for v in obs.values())
    return isinstance(obs, torch.Tensor | TensorDictBase)


def _obs_device(obs: Any) -> torch.device | None:
    """The device of tensor observations (of a dict's first tensor)."""
    if isinstance(obs, Mapping) and not isinstance(obs, TensorDictBase):
        return _obs_device(next(iter(obs.values())))
    return obs.device  # type: ignore[no-any-return]


def _like_obs(acts: Any, obs: Any, device: torch.device) -> Any:
    """Actions in the env's kind: tensors for a tensor env, numpy for a numpy one."""
    if _is_tensor_obs(obs):
        target = _obs_device(obs) or device
        return acts.to(target) if isinstance(acts, torch.Tensor) else torch.as_tensor(acts, device=target)
    if isinstance(acts, torch.Tensor):
        return acts.detach().cpu().numpy()
    if isinstance(acts, TensorDictBase):
        return obs_to_numpy(acts)
    return acts


def rollout_stats(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Summarises episodes with imitation's keys.

    Args:
        trajectories: Trajectories with rewards.

    Returns:
        ``n_traj``; ``return_{min,mean,std,max}`` (std over the population, as
        numpy's) and ``len_{min,mean,std,max}``; ``monitor_return_*`` and
        ``monitor_return_len`` when infos carry SB3 ``Monitor``'s ``"episode"``.
        One host read of the episode returns, however many trajectories.

    Raises:
        ValueError: no trajectories, or a trajectory without rewards.
    """
    if not trajectories:
        raise ValueError("rollout_stats needs at least one trajectory")
    if any(getattr(t, "rews", None) is None for t in trajectories):
        raise ValueError("rollout_stats needs trajectories with rewards")
    sums = [t.rews.sum(dtype=torch.float64) for t in trajectories]  # type: ignore[attr-defined]
    returns = torch.stack([s.to(sums[0].device) for s in sums]).cpu().numpy()
    out: dict[str, float] = {"n_traj": len(trajectories)}
    described = {"return": returns, "len": np.asarray([len(t) for t in trajectories])}
    monitor = [r for t in trajectories if (r := _monitor_return(t)) is not None]
    if monitor:
        described["monitor_return"] = np.asarray(monitor)
        out["monitor_return_len"] = len(monitor)
    for name, values in described.items():
        for stat in ("min", "mean", "std", "max"):
            out[f"{name}_{stat}"] = getattr(np, stat)(values).item()
    return out


def _monitor_return(traj: Trajectory) -> float | None:
    infos = traj.infos
    if infos is None or len(infos) == 0:
        return None
    episode = infos[-1].get("episode")  # SB3 Monitor's {"r": ..., "l": ..., "t": ...}
    return episode.get("r") if isinstance(episode, dict) else None


def flatten_trajectories(trajectories: Sequence[Trajectory]) -> Transitions:
    """Concatenates trajectories into one transitions batch, as imitation's.

    ``obs`` are each trajectory's observations but the last, ``next_obs`` all but
    the first; ``dones`` is true only at the last step of a trajectory that ends
    its episode (``terminal``). ``terminated`` / ``truncated`` are kept as
    recorded. Everything stays on the trajectories' device (no host read).

    Args:
        trajectories: Trajectories on one device.

    Returns:
        A :class:`TransitionsWithRew` when every trajectory has rewards, else a
        :class:`Transitions`. ``infos`` are concatenated when any trajectory
        kept them (``{}`` for those that did not), else ``None``.

    Raises:
        ValueError: no trajectories.
    """
    if not trajectories:
        raise ValueError("flatten_trajectories needs at least one trajectory")
    fields: dict[str, Any] = {
        "obs": _cat([t.obs[:-1] for t in trajectories]),
        "next_obs": _cat([t.obs[1:] for t in trajectories]),
        "acts": _cat([t.acts for t in trajectories]),
        "dones": torch.cat([_dones(t) for t in trajectories]),
        "terminated": torch.cat([t.terminated for t in trajectories]),
        "truncated": torch.cat([t.truncated for t in trajectories]),
        "infos": _cat_infos(trajectories),
    }
    n = int(fields["dones"].shape[0])
    if all(getattr(t, "rews", None) is not None for t in trajectories):
        return TransitionsWithRew(**fields, rews=torch.cat([t.rews for t in trajectories]), batch_size=[n])  # type: ignore[attr-defined]
    return Transitions(**fields, batch_size=[n])


def _cat(parts: list[Any]) -> Any:
    return torch.cat(parts)


def _dones(traj: Trajectory) -> torch.Tensor:
    dones = torch.zeros(len(traj), dtype=torch.bool, device=traj.terminated.device)
    if len(traj):
        dones[-1] = bool(traj.terminal)
    return dones


def _cat_infos(trajectories: Sequence[Trajectory]) -> np.ndarray | None:
    if all(t.infos is None for t in trajectories):
        return None
    items: list[Any] = []
    for t in trajectories:
        items += list(t.infos) if t.infos is not None else [{}] * len(t)
    return object_array(items)
