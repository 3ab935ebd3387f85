"""One adapter per compared recorder, all with the same ``reset / step / pop`` interface.

Each peer owns a VecEnv and a fixed action batch. ``step()`` steps the env once and
records the step the way that library's users record it; ``pop_transitions()`` and
``pop_trajectories()`` return everything recorded since the last pop (peers without
that notion, the circular replay buffers, do nothing there). ``storage_bytes()`` is
the memory the peer holds for its recorded data, where it can be told.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv

PEERS = ("bare", "torchbuf", "imitation", "sb3", "sb3_optmem", "torchrl", "raw")
"""Peer names: ``bare`` steps the env without recording; ``raw`` is the copy floor."""


def available(name: str) -> str | None:
    """Why peer ``name`` cannot run in this process, or ``None`` when it can."""
    module = {"imitation": "imitation", "torchrl": "torchrl"}.get(name)
    if module is not None and importlib.util.find_spec(module) is None:
        return f"{module} is not installed in this environment"
    return None


def _actions(venv: VecEnv) -> np.ndarray:
    n = venv.action_space.n  # type: ignore[attr-defined]
    return (np.arange(venv.num_envs) % n).astype(np.int64)


def _terminal_split(dones: np.ndarray, infos: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Host ``(ended env indices, truncated flags)`` of an SB3 step."""
    ended = np.flatnonzero(dones)
    truncated = np.zeros(len(dones), dtype=bool)
    for i in ended:
        truncated[i] = bool(infos[i].get("TimeLimit.truncated", False))
    return ended, truncated


def _nbytes(x: Any) -> int:
    if isinstance(x, dict):
        return sum(_nbytes(v) for v in x.values())
    if hasattr(x, "items") and callable(x.items):  # a TensorDict
        return sum(v.numel() * v.element_size() for _, v in x.items(True, True))
    return int(x.nbytes) if isinstance(x, np.ndarray) else x.numel() * x.element_size()


class Peer:
    """Base adapter: steps the bare env and records nothing.

    Args:
        venv: The env to step.
        device: Storage device for the peers that have one.
        window: Steps between pops; circular buffers are sized to hold that many.
    """

    name = "bare"
    can_pop = False
    capacity_steps: int | None = None

    def __init__(self, venv: VecEnv, device: str, window: int):
        self.venv = venv
        self.device = device
        self.window = window
        self.acts = _actions(venv)
        self.n = venv.num_envs

    def reset(self) -> None:
        """Resets the env (pops first where unpopped data would make that fail)."""
        self.venv.reset()

    def step(self) -> None:
        """Steps the env once."""
        self.venv.step(self.acts)

    def pop_transitions(self) -> Any:
        """Pops the transitions recorded since the last pop."""
        return None

    def pop_trajectories(self) -> Any:
        """Pops the trajectories recorded since the last pop."""
        return None

    def storage_bytes(self) -> int | None:
        """Bytes held for recorded data, or ``None`` when not known."""
        return None

    def held_transitions(self, steps: int) -> int:
        """Transitions held after ``steps`` steps since the last pop (circular buffers cap it)."""
        return self.n * (steps if self.capacity_steps is None else min(steps, self.capacity_steps))


class TorchbufPeer(Peer):
    """``torchbuf.BufferingWrapper`` (its default initial capacity unless ``capacity``)."""

    name = "torchbuf"
    can_pop = True

    def __init__(self, venv: VecEnv, device: str, window: int, capacity: int | None = None):
        from torchbuf import BufferingWrapper

        super().__init__(venv, device, window)
        kwargs = {} if capacity is None else {"capacity": capacity}
        self.venv = BufferingWrapper(venv, device=device, **kwargs)

    def reset(self) -> None:
        """Resets the wrapper (after popping anything unpopped)."""
        if self.venv.n_transitions:
            self.venv.pop_transitions()
        self.venv.reset()

    def pop_transitions(self) -> Any:
        """Pops transitions."""
        return self.venv.pop_transitions()

    def pop_trajectories(self) -> Any:
        """Pops trajectories."""
        return self.venv.pop_trajectories()

    def storage_bytes(self) -> int | None:
        """Bytes of the slot storage's tensors."""
        data = self.venv._recorder.storage.data
        return None if data is None else _nbytes(data)


class ImitationPeer(TorchbufPeer):
    """imitation 1.0.1's ``BufferingWrapper`` (numpy, per-env Python lists).

    It keeps references to the arrays the env returns, so its storage cannot be
    told apart from the env's: ``storage_bytes`` is ``None``.
    """

    name = "imitation"

    def __init__(self, venv: VecEnv, device: str, window: int):
        from imitation.data.wrappers import BufferingWrapper

        Peer.__init__(self, venv, device, window)
        self.venv = BufferingWrapper(venv)

    def storage_bytes(self) -> int | None:
        """Unknown: the wrapper holds references to the env's arrays."""
        return None


class _NextObsPeer(Peer):
    """A peer fed ``(obs, next_obs, ...)`` tuples: patches terminal observations on the host.

    ``next_obs`` is the step's observation with ``terminal_observation`` put in for
    the envs that ended, copied into a preallocated buffer (SB3's off-policy
    algorithms deep-copy instead).
    """

    def reset(self) -> None:
        """Resets the env and keeps the first observations."""
        self.last = _copy(self.venv.reset())
        self.next = _copy(self.last)

    def _transition(self) -> tuple[Any, Any, np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, rews, dones, infos = self.venv.step(self.acts)
        ended, truncated = _terminal_split(dones, infos)
        _copy_into(self.next, obs)
        for i in ended:
            _set_row(self.next, i, infos[i]["terminal_observation"])
        return obs, self.next, rews, dones, truncated, infos


class SB3Peer(_NextObsPeer):
    """SB3's ``ReplayBuffer.add`` (``DictReplayBuffer`` for dict observations).

    Args:
        optimize_memory_usage: SB3's option that stores each observation once
            (not available for dict observations; it excludes timeout handling).
    """

    name = "sb3"

    def __init__(self, venv: VecEnv, device: str, window: int, optimize_memory_usage: bool = False):
        from gymnasium import spaces
        from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer

        super().__init__(venv, device, window)
        is_dict = isinstance(venv.observation_space, spaces.Dict)
        if is_dict and optimize_memory_usage:
            raise ValueError("SB3's DictReplayBuffer has no optimize_memory_usage")
        cls = DictReplayBuffer if is_dict else ReplayBuffer
        self.rb = cls(
            (window + 1) * self.n,
            venv.observation_space,
            venv.action_space,
            device=device,
            n_envs=self.n,
            optimize_memory_usage=optimize_memory_usage,
            handle_timeout_termination=not optimize_memory_usage,
        )
        self.capacity_steps = window + 1
        if optimize_memory_usage:
            self.name = "sb3_optmem"

    def step(self) -> None:
        """Steps the env and adds the transition to the replay buffer."""
        obs, nxt, rews, dones, _, infos = self._transition()
        self.rb.add(self.last, nxt, self.acts, rews, dones, infos)
        self.last = obs

    def storage_bytes(self) -> int | None:
        """Bytes of the replay buffer's arrays."""
        names = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
        return sum(_nbytes(getattr(self.rb, k)) for k in names if getattr(self.rb, k, None) is not None)


class TorchRLPeer(_NextObsPeer):
    """torchrl's ``ReplayBuffer(storage=LazyTensorStorage(...))``, one ``extend`` per step."""

    name = "torchrl"

    def __init__(self, venv: VecEnv, device: str, window: int):
        from torchrl.data import LazyTensorStorage, ReplayBuffer

        super().__init__(venv, device, window)
        self.storage = LazyTensorStorage((window + 1) * self.n, device=torch.device(device))
        self.rb = ReplayBuffer(storage=self.storage, batch_size=self.n)
        self.capacity_steps = window + 1

    def step(self) -> None:
        """Steps the env and extends the buffer with the step as a TensorDict."""
        from tensordict import TensorDict

        obs, nxt, rews, dones, truncated, _ = self._transition()
        td = TensorDict(
            {
                "observation": _to_torch(self.last),
                "action": torch.from_numpy(self.acts),
                "next": {
                    "observation": _to_torch(nxt),
                    "reward": torch.from_numpy(rews),
                    "done": torch.from_numpy(dones),
                    "terminated": torch.from_numpy(dones & ~truncated),
                    "truncated": torch.from_numpy(truncated),
                },
            },
            batch_size=[self.n],
        )
        self.rb.extend(td)
        self.last = obs

    def storage_bytes(self) -> int | None:
        """Bytes of the lazily allocated storage."""
        data = getattr(self.storage, "_storage", None)
        return None if data is None else _nbytes(data)


class RawPeer(Peer):
    """The floor: time-major preallocated tensors, one ``copy_`` per field per step.

    The tensors are filled once at construction so no page is first touched while
    timing. No terminal observation is kept and nothing is indexed: no recorder
    can do less.
    """

    name = "raw"
    can_pop = True

    def __init__(self, venv: VecEnv, device: str, window: int):
        super().__init__(venv, device, window)
        self.cap = self.capacity_steps = window + 4
        first = _to_torch(venv.reset())
        self.obs = _map(lambda x: x.new_empty((self.cap + 1, *x.shape), device=device).fill_(1), first)
        self.acts_t = torch.ones((self.cap, self.n), dtype=torch.int64, device=device)
        self.rews = torch.ones((self.cap, self.n), dtype=torch.float32, device=device)
        self.terminated = torch.ones((self.cap, self.n), dtype=torch.bool, device=device)
        self.truncated = torch.ones((self.cap, self.n), dtype=torch.bool, device=device)
        self.t = 0

    def reset(self) -> None:
        """Resets the env and writes the first observations at slot 0."""
        _copy_slot(self.obs, 0, _to_torch(self.venv.reset()))
        self.t = 0

    def step(self) -> None:
        """Steps the env and copies each field into its slot (wrapping around)."""
        obs, rews, dones, _ = self.venv.step(self.acts)
        t = self.t % self.cap
        _copy_slot(self.obs, t + 1, _to_torch(obs))
        self.acts_t[t].copy_(torch.from_numpy(self.acts))
        self.rews[t].copy_(torch.from_numpy(rews))
        self.terminated[t].copy_(torch.from_numpy(dones))
        self.truncated[t].copy_(torch.from_numpy(dones))
        self.t += 1

    def pop_transitions(self) -> Any:
        """Copies the recorded steps out, flattened (obs and next_obs by slicing)."""
        t = min(self.t, self.cap)
        out = {
            "obs": _map(lambda x: x[:t].flatten(0, 1).clone(), self.obs),
            "next_obs": _map(lambda x: x[1 : t + 1].flatten(0, 1).clone(), self.obs),
            "acts": self.acts_t[:t].flatten().clone(),
            "rews": self.rews[:t].flatten().clone(),
            "terminated": self.terminated[:t].flatten().clone(),
            "truncated": self.truncated[:t].flatten().clone(),
        }
        self.t = 0
        return out

    def storage_bytes(self) -> int | None:
        """Bytes of the preallocated tensors."""
        return sum(_nbytes(x) for x in (self.obs, self.acts_t, self.rews, self.terminated, self.truncated))


def make_peer(name: str, venv: VecEnv, device: str, window: int) -> Peer:
    """Builds peer ``name`` around ``venv``.

    Raises:
        ValueError: the peer does not support this env (e.g. SB3's optimized buffer
            with dict observations).
    """
    if name == "bare":
        return Peer(venv, device, window)
    if name == "sb3_optmem":
        return SB3Peer(venv, device, window, optimize_memory_usage=True)
    classes: dict[str, type[Peer]] = {
        "torchbuf": TorchbufPeer,
        "imitation": ImitationPeer,
        "sb3": SB3Peer,
        "torchrl": TorchRLPeer,
        "raw": RawPeer,
    }
    return classes[name](venv, device, window)


# ---------------------------------------------------------------- small helpers
def _map(fn: Any, x: Any) -> Any:
    return {k: fn(v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


def _to_torch(x: Any) -> Any:
    return _map(torch.from_numpy, x)


def _copy(x: Any) -> Any:
    return _map(np.copy, x)


def _copy_into(dst: Any, src: Any) -> None:
    if isinstance(dst, dict):
        for k in dst:
            np.copyto(dst[k], src[k])
    else:
        np.copyto(dst, src)


def _set_row(dst: Any, i: int, value: Any) -> None:
    if isinstance(dst, dict):
        for k in dst:
            dst[k][i] = value[k]
    else:
        dst[i] = value


def _copy_slot(store: Any, t: int, value: Any) -> None:
    if isinstance(store, dict):
        for k in store:
            store[k][t].copy_(value[k])
    else:
        store[t].copy_(value)
