"""``VectorBufferingWrapper``: the pop API for gymnasium vector envs and envpool.

Arrays may be numpy or torch tensors on any device: tensors are recorded where they
live, numpy is moved to the storage device once. The autoreset convention is read
from ``metadata["autoreset_mode"]`` (see :mod:`torchbuf.adapters.gymnasium`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import create_empty_array

try:
    from gymnasium.vector import VectorWrapper
except ImportError:  # gymnasium 0.29
    from gymnasium.vector import VectorEnvWrapper as VectorWrapper  # type: ignore[attr-defined,no-redef]

from torchbuf.adapters.detect import as_vector_env
from torchbuf.adapters.gymnasium import Autoreset, BatchedInfos, final_obs, unknown_like
from torchbuf.adapters.gymnasium import autoreset_mode as read_autoreset_mode
from torchbuf.buffer.guard import exclusive
from torchbuf.buffer.popapi import PopAPI
from torchbuf.buffer.record import StepRecord
from torchbuf.buffer.recorder import Recorder
from torchbuf.data.convert import as_tensor, obs_to_tensors
from torchbuf.data.spaces import BatchFit, check_batch, fit_space
from torchbuf.data.types import Obs

# In the recorded infos of a SAME_STEP env that reports no final observations: the
# transition ended an episode whose terminal observation is a stand-in.
UNKNOWN_KEY = "final_obs_unknown"


class VectorBufferingWrapper(PopAPI, VectorWrapper):
    """Records a gymnasium vector env into device storage; pops like ``BufferingWrapper``.

    Transparent: ``reset`` and ``step`` return exactly what the env returns.

    Args:
        env: The vector env: a gymnasium ``VectorEnv``, envpool, a torch-native env,
            a torchrl ``EnvBase``, a Brax env with a batch size
            (``envs.create(..., batch_size=N)``), an Isaac Lab / mjlab manager-based
            env or an rsl_rl ``VecEnv`` (each of the last four through its adapter,
            see :mod:`torchbuf.adapters.detect`; any other Brax / Playground env as
            ``JaxVectorEnv(env, num_envs=N)``).
        error_on_premature_reset: Error if a full ``reset()`` would discard
            transitions recorded since the last pop.
        device: Storage device. Default: the device of the env's tensors, or CPU
            for numpy envs.
        keep_infos: Keep each step's infos (sliced per env when popped). The final
            observations in them are not kept twice.
        capacity: Initial slots per env; storage doubles when a step could overflow,
            and a pop gives back what doubling overshot (never below ``capacity``).
        autoreset_mode: Override the env's declared mode (``"next_step"``,
            ``"same_step"``, ``"disabled"``).
        api: The env's API where detection by duck type cannot be sure
            (``"gymnasium"``, ``"torchrl"``, ``"jax"``, ``"isaaclab"``, ``"rsl_rl"``).
            Default: detected.

    Raises:
        ValueError: the env's autoreset mode is unknown or undeclared, ``api`` is
            unknown, or ``env`` is a JAX env without a batch size.

    Examples:
        >>> import gymnasium as gym
        >>> envs = VectorBufferingWrapper(gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2))
        >>> obs, info = envs.reset(seed=0)
        >>> obs, *_ = envs.step(np.zeros(2, dtype=np.int64))
        >>> envs.pop_transitions().obs.shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        env: VectorEnv,
        error_on_premature_reset: bool = True,
        *,
        device: torch.device | str | None = None,
        keep_infos: bool = True,
        capacity: int = 64,
        autoreset_mode: str | None = None,
        api: str | None = None,
    ):
        env = as_vector_env(env, api)
        super().__init__(env)
        self.error_on_premature_reset = error_on_premature_reset
        self.mode = read_autoreset_mode(env, autoreset_mode)
        self._device = None if device is None else torch.device(device)
        self._keep_infos, self._capacity = keep_infos, capacity
        self._recorder = Recorder(self.num_envs, self._device or "cpu", keep_infos, capacity)
        self._started = False
        self._ended_host = np.zeros(self.num_envs, dtype=bool)  # NEXT_STEP: reset step due
        self._ended: torch.Tensor | None = None
        self._sent: Obs | None = None  # envpool async: actions sent per env
        self._warned_unknown_final = False
        self._reports_final = False  # SAME_STEP: the env has reported a final observation
        self._unreported: torch.Tensor | None = None  # device: an episode ended with none reported
        self._tensor_env = False
        self._fit_acts = BatchFit(self.single_action_space, self.num_envs, "actions")
        self._fit_obs = BatchFit(self.single_observation_space, self.num_envs, "obs")

    def __del__(self) -> None:
        """Closes as gymnasium's wrapper does, and quietly when ``__init__`` failed before the env was set.

        (gymnasium 0.29's ``VectorEnvWrapper.__del__`` looks ``env`` up through its own
        ``__getattr__``, which recurses without end where ``env`` was never set.)
        """
        inherited = getattr(super(), "__del__", None)
        if "env" in self.__dict__ and inherited is not None:
            inherited()

    # ------------------------------------------------------------------ gymnasium API
    @exclusive
    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Resets the env; with ``options["reset_mask"]`` (or ``"env_idx"``) only those envs.

        A partial reset keeps all recorded data: the named envs start new episodes
        (a running one is cut, its fragment ends without a terminal state).

        Raises:
            RuntimeError: a full reset would discard unpopped transitions recorded
                since the last pop (with ``error_on_premature_reset``).
        """
        mask = _reset_mask(options, self.num_envs)
        if mask is None or not self._started:
            self._check_premature_reset("VectorBufferingWrapper")
        obs, info = self.env.reset(seed=seed, options=options)
        check_batch(self.single_observation_space, obs, self.num_envs, "obs")
        stored = fit_space(self.single_observation_space, obs, "obs")
        if mask is None or not self._started:
            self._start(stored)
        else:
            obs_t = obs_to_tensors(stored, self.num_envs, self.device)
            mask_t = as_tensor(mask, self.device)
            self._recorder.storage.restart(obs_t, mask_t)
            if self.mode is Autoreset.NEXT_STEP:  # the env cleared its autoreset flags there
                assert self._ended is not None
                self._ended_host[np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)] = False
                self._ended &= ~mask_t
        return obs, info

    @exclusive
    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Steps the env, records the step, and returns the env's result unchanged.

        Raises:
            RuntimeError: called before ``reset()``.
            ValueError: actions or observations do not fit the spaces.
        """
        self._require_started()
        acts = self._fit_acts(actions)  # before the env steps: a step that cannot be recorded is not taken
        if isinstance(actions, torch.Tensor) and self._tensor_env and actions.device != self.device:
            raise ValueError(f"actions: on {actions.device}, but the env's tensors are on {self.device}")
        obs, rews, terminated, truncated, info = self.env.step(actions)
        env_ids = _env_ids(info, self.num_envs)
        self._record(
            obs_to_tensors(acts, self.num_envs, self.device),
            obs,
            rews,
            terminated,
            truncated,
            info,
            env_ids,
        )
        return obs, rews, terminated, truncated, info

    # ------------------------------------------------------------------ envpool async
    @exclusive
    def async_reset(self) -> None:
        """Asynchronous reset (envpool): the reset observations arrive through ``recv``.

        Raises:
            RuntimeError: it would discard unpopped transitions recorded since the
                last pop (with ``error_on_premature_reset``).
        """
        self._check_premature_reset("VectorBufferingWrapper")
        self.env.async_reset()  # type: ignore[attr-defined]
        empty = create_empty_array(self.single_observation_space, self.num_envs, fn=np.zeros)
        self._start(empty, awaiting=True)
        no_acts = create_empty_array(self.single_action_space, self.num_envs, fn=np.zeros)
        self._sent = obs_to_tensors(
            no_acts, self.num_envs, self.device
        )  # reset steps' actions: never recorded

    @exclusive
    def send(self, actions: Any, env_id: Any = None) -> None:
        """Envpool's asynchronous ``send``: saves the actions of the envs in ``env_id``."""
        self._require_started()
        ids = np.arange(self.num_envs) if env_id is None else np.asarray(env_id)
        check_batch(self.single_action_space, actions, len(ids), "actions")
        acts = obs_to_tensors(fit_space(self.single_action_space, actions, "actions"), len(ids), self.device)
        if self._sent is None:
            self._sent = _alloc_rows(acts, self.num_envs)
        self._sent[torch.as_tensor(ids, device=self.device)] = acts
        self.env.send(actions, env_id)  # type: ignore[attr-defined]

    @exclusive
    def recv(self) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Envpool's asynchronous ``recv``: records the envs in ``info["env_id"]``."""
        obs, rews, terminated, truncated, info = self.env.recv()  # type: ignore[attr-defined]
        env_ids = np.asarray(info["env_id"])
        if self._sent is None:
            raise RuntimeError("VectorBufferingWrapper: send() or async_reset() before recv()")
        acts = self._sent[torch.as_tensor(env_ids, device=self.device)]
        self._record(acts, obs, rews, terminated, truncated, info, env_ids)
        return obs, rews, terminated, truncated, info

    # ------------------------------------------------------------------ checkpoints
    _state_kind = "vector"

    def _step_state(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "started": self._started,
            "tensor_env": self._tensor_env,
            "ended_host": self._ended_host.copy(),
            "ended": self._ended,
            "sent": self._sent,
        }

    def _check_step_state(self, state: dict[str, Any]) -> None:
        mode = state["step"]["mode"]
        if mode != self.mode.value:
            raise ValueError(f"the state's autoreset mode is {mode!r}, the wrapper's {self.mode.value!r}")
        if state["recorder"]["keep_infos"] and not self._keep_infos:
            raise ValueError("the state keeps infos: create the wrapper with keep_infos=True")

    def _restore_device(self, saved: torch.device) -> torch.device:
        if self._device is None:  # no device named: take the state's, as the first reset would
            self._device = saved
        return self._device

    def _load_step_state(self, step: dict[str, Any], device: torch.device) -> None:
        self._started = bool(step["started"])
        self._tensor_env = bool(step["tensor_env"])
        self._ended_host = np.array(step["ended_host"], dtype=bool)
        self._ended = None if step["ended"] is None else step["ended"].to(device).clone()
        self._sent = None if step["sent"] is None else step["sent"].to(device).clone()

    # ------------------------------------------------------------------ recording
    def _start(self, obs: Any, awaiting: bool = False) -> None:
        if self._device is None:
            device = _leaf(obs).device if _is_tensor(obs) else torch.device("cpu")
            self._recorder = Recorder(self.num_envs, device, self._keep_infos, self._capacity)
            self._device = device
        self._tensor_env = _is_tensor(obs)
        self._recorder.start(obs_to_tensors(obs, self.num_envs, self.device), awaiting)
        self._ended_host[:] = awaiting
        self._ended = torch.full((self.num_envs,), awaiting, dtype=torch.bool, device=self.device)
        self._started = True

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("VectorBufferingWrapper: call reset() before step()")

    def _record(
        self,
        acts: Obs,
        obs: Any,
        rews: Any,
        terminated: Any,
        truncated: Any,
        info: dict[str, Any],
        env_ids: np.ndarray | None,
    ) -> None:
        n = self.num_envs if env_ids is None else len(env_ids)
        fitted = (
            obs
            if n == self.num_envs and self._fit_obs.fits(obs)
            else fit_space(self._fit_obs.space, obs, "obs")
        )
        obs_t = obs_to_tensors(fitted, n, self.device)
        term, trunc = as_tensor(terminated, self.device).bool(), as_tensor(truncated, self.device).bool()
        flags = self._host_flags(terminated, truncated, term, trunc)
        host = flags is not None
        dones_host = None if flags is None else flags[0] | flags[1]
        # a CPU storage's writes take the host flags as they are (read once)
        rec_term, rec_trunc = flags if flags is not None and term.device.type == "cpu" else (term, trunc)
        rec = StepRecord(
            obs_t,
            acts,
            _rewards(rews, n, self.device),
            rec_term,
            rec_trunc,
            dones_host=dones_host,
            env_ids=env_ids,
        )
        if self.mode is Autoreset.SAME_STEP:
            rec.final_obs, rec.final_rows = final_obs(info, obs_t, self.device, self._fit_obs)
            if rec.final_obs is not None:
                self._reports_final, self._unreported = True, None
            elif not _none_ended(arrays := dones_host if isinstance(terminated, np.ndarray) else None):
                # a tensor env is treated as on a device: every step marked, the warning deferred to a pop
                rec.final_obs = unknown_like(obs_t)
                self._note_unreported(term | trunc, arrays)
                info = {**info, UNKNOWN_KEY: term | trunc}
        else:
            rec.final_in_obs = True
        if self.mode is Autoreset.NEXT_STEP:
            self._reset_step(rec, obs_t, host, term | trunc)
        infos = BatchedInfos(info, n) if self._keep_infos else None
        self._recorder.record(rec, infos)

    def _host_flags(
        self, terminated: Any, truncated: Any, term: torch.Tensor, trunc: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The step's ``terminated`` and ``truncated`` on the host, where the host has them, else ``None``.

        The host has host arrays, and CPU tensors where the storage reads and writes
        its CPU memory through numpy (their memory is the host's: no sync; their numpy
        views, which the storage's writes then take as they are); with them the counts
        are exact and NEXT_STEP reset steps are known on the host (their infos kept).
        """
        if isinstance(terminated, np.ndarray):
            return np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
        if term.device.type == "cpu" and self._recorder.storage.host_route():
            return term.numpy(), trunc.numpy()
        return None

    def _note_unreported(self, done: torch.Tensor, dones_host: np.ndarray | None) -> None:
        """A SAME_STEP step without final observations, where episodes may have ended.

        An env that leaves them out only where no episode ended (ManiSkill3) must not
        be warned about: host flags tell at once; device flags are gathered without a
        sync and read at the next pop, until the env reports a final observation.
        """
        if dones_host is not None:
            self._warn_unknown_final(stacklevel=5)
        elif not self._reports_final and not self._warned_unknown_final:
            ended = done.any()
            self._unreported = ended if self._unreported is None else self._unreported | ended

    def _before_pop(self) -> None:
        if self._unreported is not None and not self._reports_final and bool(self._unreported):
            self._warn_unknown_final(stacklevel=5)
            self._unreported = None

    def _warn_unknown_final(self, stacklevel: int) -> None:
        if not self._warned_unknown_final:
            warnings.warn(
                "the env reports no final observations (info['final_obs'] / info['final_observation']) "
                "for episodes that ended: terminal observations are recorded as unknown (NaN for floats), "
                "not as reset observations",
                stacklevel=stacklevel,
            )
            self._warned_unknown_final = True

    def _reset_step(self, rec: StepRecord, obs: Obs, host: bool, done: torch.Tensor) -> None:
        """NEXT_STEP: envs that ended last step only reset now; this is no transition."""
        assert self._ended is not None
        rows = slice(None) if rec.env_ids is None else rec.env_ids
        ended = (
            self._ended
            if rec.env_ids is None
            else self._ended[torch.as_tensor(rec.env_ids, device=self.device)]
        )
        if not host or self._ended_host[rows].any():
            self._recorder.storage.restart(obs, ended, rec.env_ids)
        rec.active = ~ended
        if host:
            rec.active_host = ~self._ended_host[rows]
            assert rec.dones_host is not None
            rec.dones_host = rec.dones_host & rec.active_host
            self._ended_host[rows] = rec.dones_host
        if rec.env_ids is None:
            self._ended = done & ~ended
        else:
            self._ended[torch.as_tensor(rec.env_ids, device=self.device)] = done & ~ended


def _rewards(rews: Any, n: int, device: torch.device) -> torch.Tensor:
    """Rewards as a float tensor of shape ``(n,)``: integers are exact in float64, never truncated."""
    shape = tuple(rews.shape) if hasattr(rews, "shape") else np.shape(rews)
    if shape != (n,):
        raise ValueError(f"rewards: expected shape ({n},) (one per env that stepped), got {shape}")
    r = as_tensor(rews, device)
    return r if r.is_floating_point() else r.to(torch.float64)


def _alloc_rows(acts: Obs, n: int) -> Obs:
    """Zeros for ``n`` rows shaped like one row of ``acts``."""
    if isinstance(acts, torch.Tensor):
        return torch.zeros((n, *acts.shape[1:]), dtype=acts.dtype, device=acts.device)
    return acts.new_zeros(torch.Size([n]))


def _leaf(obs: Any) -> Any:
    while isinstance(obs, dict):
        obs = next(iter(obs.values()))
    return obs


def _is_tensor(obs: Any) -> bool:
    """Whether the env returns torch tensors (a dict's first leaf decides)."""
    return isinstance(_leaf(obs), torch.Tensor)


def _reset_mask(options: dict[str, Any] | None, n: int) -> Any:
    """The envs a partial reset names: gymnasium's ``reset_mask`` or ManiSkill3's ``env_idx``."""
    if not options:
        return None
    if options.get("reset_mask") is not None:
        mask = options["reset_mask"]
        return mask.bool() if isinstance(mask, torch.Tensor) else np.asarray(mask, dtype=bool)
    if options.get("env_idx") is not None:
        idx = options["env_idx"]
        if isinstance(idx, torch.Tensor):
            return torch.zeros(n, dtype=torch.bool, device=idx.device).index_fill_(0, idx.long(), True)
        mask = np.zeros(n, dtype=bool)
        mask[np.asarray(idx)] = True
        return mask
    return None


def _none_ended(dones_host: np.ndarray | None) -> bool:
    """Whether the host knows that no episode ended in the step."""
    return dones_host is not None and not dones_host.any()


def _env_ids(info: dict[str, Any], n: int) -> np.ndarray | None:
    """Envpool names the envs that stepped in ``info["env_id"]``; ``None`` means all."""
    ids = info.get("env_id") if isinstance(info, dict) else None
    if ids is None:
        return None
    ids = np.asarray(ids)
    return None if len(ids) == n and (ids == np.arange(n)).all() else ids
