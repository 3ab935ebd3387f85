"""torchrl ``EnvBase`` as a SAME_STEP gymnasium ``VectorEnv`` of torch tensors.

torchrl steps with ``step_and_maybe_reset(td) -> (td, root)``: ``td["next", ...]`` holds
the step's outcome (``reward``, ``terminated``, ``truncated``, ``done`` and the true final
observation where an episode ended) and ``root`` is the next step's input, already reset
where ``done`` held. :class:`TorchRLVectorEnv` returns ``root``'s observations, reports the
final ones in ``info["final_obs"]`` (full batch, mask ``info["_final_obs"]``) and squeezes
torchrl's trailing ``1`` off ``reward`` / ``terminated`` / ``truncated``. An env with batch
size ``[N]`` (``SerialEnv``, ``ParallelEnv``, a batched env) gives ``N`` envs, an
unbatched one (``GymEnv("CartPole-v1")``) one.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

_AutoresetMode = getattr(gymnasium.vector, "AutoresetMode", None)
SAME_STEP: Any = _AutoresetMode.SAME_STEP if _AutoresetMode is not None else "same_step"
_DONE_KEYS = ("reward", "done", "terminated", "truncated")


def matches(env: Any) -> bool:
    """Whether ``env`` is a torchrl ``EnvBase`` (checked without importing torchrl)."""
    return any(c.__name__ == "EnvBase" and c.__module__.startswith("torchrl.") for c in type(env).__mro__)


def _np_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty((), dtype=dtype).numpy().dtype


def spec_space(spec: Any, n_batch: int) -> gymnasium.spaces.Space:
    """The gymnasium space of one env of a torchrl spec (batch dims ``n_batch`` dropped).

    ``Categorical`` specs of scalar shape become ``Discrete``; every other spec a ``Box``
    with the spec's bounds where it has them (``Bounded``), else the dtype's range.
    """
    shape = tuple(spec.shape[n_batch:])
    space: Any = getattr(spec, "space", None)
    if type(spec).__name__ == "Categorical" and shape == () and hasattr(space, "n"):
        return gymnasium.spaces.Discrete(int(space.n))
    dtype = _np_dtype(spec.dtype)
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if low is None or high is None:
        info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
        low_a, high_a = (-np.inf, np.inf) if dtype.kind == "f" else (info.min, info.max)
        return gymnasium.spaces.Box(low_a, high_a, shape, dtype)
    index = (0,) * n_batch
    return gymnasium.spaces.Box(low[index].cpu().numpy(), high[index].cpu().numpy(), shape, dtype)


def _name(key: Any) -> str:
    return key if isinstance(key, str) else "/".join(key)


class TorchRLVectorEnv(gymnasium.vector.VectorEnv):
    """A torchrl ``EnvBase`` seen as a SAME_STEP gymnasium vector env.

    ``step(actions)`` returns ``(obs, rewards, terminated, truncated, info)``: obs of
    ``root`` (a tensor for the single key ``"observation"``, else a dict keyed by the
    observation keys, nested keys joined by ``/``), rewards ``(N,)``, bool terminated /
    truncated ``(N,)``; ``info["final_obs"]`` is ``td["next", ...]``'s observations
    (the true final ones where an episode ended), and the other leaves of ``td["next"]``
    (a ``StepCounter``'s ``step_count``...) are in ``info`` under their names.

    Args:
        env: The torchrl env, batch size ``[]`` or ``[N]``.
        observation_keys: The observation keys to return (default: every leaf of the
            env's ``observation_spec``).

    Raises:
        ValueError: the env has more than one batch dimension.

    Examples:
        Needs torchrl (the ``torchrl`` extra), so it is not run by the doctests:

        >>> from torchrl.envs import GymEnv, SerialEnv  # doctest: +SKIP
        >>> from torchbuf import VectorBufferingWrapper  # doctest: +SKIP
        >>> venv = TorchRLVectorEnv(SerialEnv(4, lambda: GymEnv("CartPole-v1")))  # doctest: +SKIP
        >>> recorder = VectorBufferingWrapper(venv)  # doctest: +SKIP
    """

    metadata: dict[str, Any] = {"autoreset_mode": SAME_STEP, "render_modes": []}

    def __init__(self, env: Any, *, observation_keys: list[Any] | None = None):
        batch = tuple(env.batch_size)
        if len(batch) > 1:
            raise ValueError(f"TorchRLVectorEnv: batch size {batch}: only [] or [N] is supported")
        self.env, self.num_envs, self._n_batch = env, (batch[0] if batch else 1), len(batch)
        self._obs_keys = list(observation_keys or env.observation_spec.keys(True, True))
        self._action_key = env.action_key
        self._single = self._obs_keys == ["observation"]
        obs_spaces = {_name(k): spec_space(env.observation_spec[k], self._n_batch) for k in self._obs_keys}
        self.single_observation_space = (
            obs_spaces["observation"] if self._single else gymnasium.spaces.Dict(obs_spaces)
        )
        self.single_action_space = spec_space(env.full_action_spec[self._action_key], self._n_batch)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self.closed = False
        self.root: Any = None
        """The input of the next step (torchrl's ``root`` tensordict)."""

    # ------------------------------------------------------------------ conversions
    def _batched(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._n_batch else x.unsqueeze(0)

    def _obs(self, td: Any) -> Any:
        if self._single:
            return self._batched(td["observation"])
        return {_name(k): self._batched(td[k]) for k in self._obs_keys}

    def _flag(self, td: Any, key: str) -> torch.Tensor:
        if key not in td.keys():  # noqa: SIM118 (a TensorDict)
            return torch.zeros(self.num_envs, dtype=torch.bool, device=td.device)
        return self._batched(td[key]).reshape(self.num_envs)

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Resets every env, or those in ``options["reset_mask"]`` (torchrl's ``"_reset"``).

        Raises:
            ValueError: an unknown option, or a partial reset before the first full one.
        """
        unknown = set(options or {}) - {"reset_mask"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; only 'reset_mask' is supported")
        if seed is not None:
            self.env.set_seed(seed)
        mask = (options or {}).get("reset_mask")
        if mask is None:
            self.root = self.env.reset()
        else:
            if self.root is None:
                raise ValueError("reset_mask: a partial reset needs a full reset() first")
            self.root = self._partial_reset(
                mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.asarray(mask))
            )
        return self._obs(self.root), {}

    def _partial_reset(self, mask: torch.Tensor) -> Any:
        mask = mask.to(self.root.device, torch.bool).reshape(self.env.batch_size + (1,))
        request = self.root.clone()
        request.set("_reset", mask)
        fresh = self.env.reset(request)
        keys = [k for k in self.root.keys(True, True) if k in fresh.keys(True, True)]
        out = self.root.clone()
        for key in keys:  # the named envs take the reset's values, the others keep theirs
            new, old = fresh[key], self.root[key]
            m = mask.reshape(mask.shape[: self._n_batch] + (1,) * (old.dim() - self._n_batch))
            out.set(key, torch.where(m, new, old))
        return out

    def step(self, actions: Any) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Sets the actions and calls ``step_and_maybe_reset``.

        Raises:
            RuntimeError: called before ``reset()``.
        """
        if self.root is None:
            raise RuntimeError("TorchRLVectorEnv: call reset() before step()")
        acts = torch.as_tensor(actions, device=self.root.device)
        if not self._n_batch:
            acts = acts.reshape(acts.shape[1:])
        self.root.set(self._action_key, acts)
        td, self.root = self.env.step_and_maybe_reset(self.root)
        nxt = td["next"]
        info: dict[str, Any] = {
            _name(k): self._batched(nxt[k])
            for k in nxt.keys(True, True)
            if k not in self._obs_keys and _name(k) not in _DONE_KEYS
        }
        info["final_obs"] = self._obs(nxt)
        info["_final_obs"] = self._flag(nxt, "done")
        rews = self._batched(nxt["reward"]).reshape(self.num_envs)
        return self._obs(self.root), rews, self._flag(nxt, "terminated"), self._flag(nxt, "truncated"), info

    def close(self, **kwargs: Any) -> None:
        """Closes the torchrl env, unless it is closed already (by its caller, say)."""
        if not self.closed and not getattr(self.env, "is_closed", False):
            self.env.close()
        self.closed = True
