"""JAX simulators (MuJoCo Playground / MJX, Brax) as a gymnasium ``VectorEnv`` of torch tensors.

A Playground ``MjxEnv`` or a Brax ``Env`` is a pair of pure functions ``reset(key) ->
State`` and ``step(state, action) -> State``. The state carries ``obs`` (an array or a
dict of arrays), ``reward``, a float ``done`` and ``info``; Brax's ``EpisodeWrapper``
(which Playground uses too) sets ``info["truncation"]`` to 1 where the time limit ended an
episode that did not terminate, so ``terminated = done & ~truncation``.

:class:`JaxVectorEnv` jits ``reset`` and ``step`` over a batch of keys (``jax.vmap``,
unless the env is batched already by a ``VmapWrapper``) and hands every output to torch
through DLPack, without a copy (the tensor's ``data_ptr()`` is the jax buffer's
``unsafe_buffer_pointer()``); torch actions reach jax the same way. Its convention is
gymnasium's SAME_STEP:

- A bare env (``brax.envs.create(..., auto_reset=False)``, or a Playground env wrapped in
  ``EpisodeWrapper`` only): the adapter resets the ended envs itself, with fresh keys,
  after the step, so the true final observations are known; they come in
  ``info["final_obs"]`` (full batch) and ``info["_final_obs"]`` (mask).
- An env with its own auto-reset (Brax's ``AutoResetWrapper``, Playground's
  ``BraxAutoResetWrapper``, i.e. ``brax.envs.training.wrap`` /
  ``wrap_for_brax_training``): its step already returns the reset (cached first)
  observation and keeps no copy of the final one (``info["first_obs"]`` /
  ``info["AutoResetWrapper_first_obs"]`` hold the *reset* observation). The final
  observations are then unknown: no ``final_obs`` is reported, and the buffer stores
  stand-ins (NaN) with a warning, never the reset observation.

Each step's infos are the step's own ``state.metrics`` (``info["metrics"]``) and
``state.info`` (``info["state_info"]``: ``truncation``, ``steps``, ``episode_metrics``
and the env's own entries), read before the adapter's resets. Left out of
``state_info``: the auto-reset wrappers' caches of the reset state (:data:`RESET_CACHES`,
the reset observation and physics state, not the step's) and, with one warning naming
the key, entries that are no array (a physics-state pytree). PRNG key arrays come as
their raw ``uint32`` key data.

The batch size is the ``num_envs`` argument, or the ``batch_size`` of a Brax
``VmapWrapper`` in the env (``brax.envs.create(..., batch_size=N)``): only such an env
can be given to ``VectorBufferingWrapper`` as it is. Any other JAX env has no batch
size of its own; the wrapper then asks for ``JaxVectorEnv(env, num_envs=N)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from torchbuf.data.spaces import fit_space

_AutoresetMode = getattr(gymnasium.vector, "AutoresetMode", None)
SAME_STEP: Any = _AutoresetMode.SAME_STEP if _AutoresetMode is not None else "same_step"
RESET_CACHES = frozenset(
    {"first_obs", "first_pipeline_state", "AutoResetWrapper_first_obs", "AutoResetWrapper_first_data"}
)
"""``state.info`` keys of Brax's ``AutoResetWrapper`` and Playground's ``BraxAutoResetWrapper``
that cache the reset state: not recorded as the step's infos."""


def _chain(env: Any) -> list[Any]:
    """The env and the envs it wraps (``.env``), outermost first."""
    out = [env]
    while hasattr(out[-1], "env") and len(out) < 64:
        out.append(out[-1].env)
    return out


def _has_wrapper(env: Any, name: str) -> bool:
    return any(name in type(e).__name__ for e in _chain(env))


def batch_size(env: Any) -> int | None:
    """The ``batch_size`` of a Brax ``VmapWrapper`` in ``env`` (``envs.create(..., batch_size=N)``)."""
    sizes = [getattr(e, "batch_size", None) for e in _chain(env) if "Vmap" in type(e).__name__]
    return next((int(n) for n in sizes if n is not None), None)


def _num_envs(env: Any, num_envs: int | None) -> int:
    own = batch_size(env)
    if num_envs is not None and own is not None and num_envs != own:
        raise ValueError(f"num_envs={num_envs}, but the env's VmapWrapper has batch_size={own}")
    n = own if num_envs is None else num_envs
    if n is None:
        raise ValueError(
            f"a JAX env ({type(env).__name__}) has no batch size: wrap it as "
            "JaxVectorEnv(env, num_envs=N), or create a Brax env with envs.create(..., batch_size=N)"
        )
    if n < 1:
        raise ValueError(f"num_envs must be positive, got {n}")
    return n


def matches(env: Any) -> bool:
    """Whether ``env`` looks like a Brax ``Env`` or a Playground ``MjxEnv`` (duck-typed).

    Both have ``reset(rng)``, ``step(state, action)``, ``observation_size`` and
    ``action_size``; a gymnasium ``VectorEnv`` does not count.
    """
    if isinstance(env, gymnasium.vector.VectorEnv):
        return False
    names = ("reset", "step", "observation_size", "action_size")
    return all(hasattr(type(env), n) or hasattr(env, n) for n in names) and not hasattr(env, "num_envs")


def to_torch(x: Any) -> torch.Tensor:
    """A jax array as a torch tensor over the same buffer (DLPack, no copy)."""
    return torch.from_dlpack(x)


def to_jax(x: torch.Tensor) -> Any:
    """A torch tensor as a jax array over the same buffer (DLPack, no copy)."""
    import jax.numpy as jnp

    return jnp.from_dlpack(x.contiguous())


def _tree_to_torch(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _tree_to_torch(v) for k, v in tree.items()}
    return to_torch(tree)


def _space(obs: Any) -> gymnasium.spaces.Space:
    """The single-env observation space of a batched observation (array or dict)."""
    if isinstance(obs, Mapping):
        return gymnasium.spaces.Dict({k: _space(v) for k, v in obs.items()})
    return gymnasium.spaces.Box(-np.inf, np.inf, tuple(obs.shape[1:]), np.dtype(obs.dtype))


class JaxVectorEnv(gymnasium.vector.VectorEnv):
    """A Brax / MuJoCo Playground env as a SAME_STEP gymnasium vector env of torch tensors.

    ``step`` returns ``(obs, rewards, terminated, truncated, info)``, all torch tensors
    sharing the jax buffers: obs of shape ``(N, ...)`` (a dict for dict observations),
    float rewards ``(N,)``, bool ``terminated`` / ``truncated`` ``(N,)``; ``info`` holds the
    step's ``metrics`` and ``state_info`` and, where the adapter resets the envs itself,
    ``final_obs`` / ``_final_obs``. Record it with
    ``VectorBufferingWrapper(JaxVectorEnv(env, n))``.

    Args:
        env: A Brax ``Env`` or Playground ``MjxEnv``, unbatched (it is vmapped here) or
            batched by a ``VmapWrapper`` (then called with a batch of keys, or with
            one key where the wrapper has a ``batch_size``).
        num_envs: Number of envs N. Default: the ``batch_size`` of the env's
            ``VmapWrapper``.
        seed: Seed of the adapter's ``jax.random`` key stream (used by ``reset``
            without a seed and by the adapter's own resets).

    Raises:
        ValueError: ``num_envs`` is not positive, is not given for an env without a
            batch size, or differs from the env's.

    Examples:
        Needs brax and jax, so it is not run by the doctests:

        >>> from brax import envs  # doctest: +SKIP
        >>> from torchbuf import VectorBufferingWrapper  # doctest: +SKIP
        >>> env = envs.create("inverted_pendulum", episode_length=50, auto_reset=False)  # doctest: +SKIP
        >>> recorder = VectorBufferingWrapper(JaxVectorEnv(env, 8))  # doctest: +SKIP
    """

    metadata: dict[str, Any] = {"autoreset_mode": SAME_STEP, "render_modes": []}

    def __init__(self, env: Any, num_envs: int | None = None, *, seed: int = 0):
        self.env, self.num_envs = env, _num_envs(env, num_envs)
        import jax

        self.env_resets = _has_wrapper(env, "AutoReset")  # the env's own auto-reset
        batched = _has_wrapper(env, "Vmap")
        reset: Callable[..., Any] = env.reset if batched else jax.vmap(env.reset)
        if batch_size(env) is not None:  # the VmapWrapper splits one key into its batch
            reset = _first_key(env.reset)
        step: Callable[..., Any] = env.step if batched else jax.vmap(env.step)
        self._reset = jax.jit(_strongly_typed(reset))
        self._step = jax.jit(_stepper(step, reset, not self.env_resets))
        self._key = _committed_key(seed)
        self._masked_reset = jax.jit(_strongly_typed(_masked(reset)))
        self.state: Any = None
        """The current jax state (after this adapter's or the env's resets)."""
        self.outputs: dict[str, Any] = {}
        """The last step's jax outputs: ``reward``, ``terminated``, ``truncated``, ``done``,
        ``metrics``, ``state_info`` and (where the adapter resets) ``final_obs``."""
        self.render_mode = None
        self.closed = False
        self.single_action_space = gymnasium.spaces.Box(-1.0, 1.0, (int(env.action_size),), np.float32)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        shapes = jax.eval_shape(reset, jax.random.split(self._key, self.num_envs))  # traced, not compiled
        self.single_observation_space = _space(shapes.obs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    def _keys(self) -> Any:
        import jax

        self._key, sub = jax.random.split(self._key)
        return jax.random.split(sub, self.num_envs)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Resets all envs, or those in ``options["reset_mask"]`` (a bool array of ``(N,)``).

        Returns:
            ``(obs, {})``, obs as torch tensors over the jax buffers.

        Raises:
            ValueError: an unknown option, a mask of the wrong shape, or a partial
                reset before the first full one.
        """
        unknown = set(options or {}) - {"reset_mask"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; only 'reset_mask' is supported")
        if seed is not None:
            self._key = _committed_key(seed)
        mask = (options or {}).get("reset_mask")
        if mask is None:
            self.state = self._reset(self._keys())
        else:
            if self.state is None:
                raise ValueError("reset_mask: a partial reset needs a full reset() first")
            mask_j = _mask_to_jax(mask, self.num_envs)
            self.state = self._masked_reset(self.state, self._keys(), mask_j)
        return _tree_to_torch(self.state.obs), {}

    def step(self, actions: Any) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Steps every env once; ended envs start a new episode in the same step.

        Args:
            actions: ``(N, action_size)`` float32, a torch tensor (passed by DLPack) or
                a numpy array.

        Raises:
            RuntimeError: called before ``reset()``.
            ValueError: the actions do not fit the action space.
        """
        if self.state is None:
            raise RuntimeError("JaxVectorEnv: call reset() before step()")
        acts = fit_space(self.single_action_space, actions, "actions")
        want = (self.num_envs, int(self.env.action_size))
        if tuple(acts.shape) != want:
            raise ValueError(
                f"actions: expected shape {want} (num_envs, action_size), got {tuple(acts.shape)}"
            )
        acts_j = to_jax(acts) if isinstance(acts, torch.Tensor) else _numpy_to_jax(acts)
        self.state, out = self._step(self.state, acts_j, self._keys())
        self.outputs = out
        info: dict[str, Any] = {
            "metrics": _tree_to_torch(out["metrics"]),
            "state_info": _tree_to_torch(out["state_info"]),
        }
        if "final_obs" in out:
            info["final_obs"] = _tree_to_torch(out["final_obs"])
            info["_final_obs"] = to_torch(out["done"])
        obs = _tree_to_torch(self.state.obs)
        return obs, to_torch(out["reward"]), to_torch(out["terminated"]), to_torch(out["truncated"]), info

    def close(self, **kwargs: Any) -> None:
        """Drops the state."""
        self.state, self.closed = None, True


def _committed_key(seed: int) -> Any:
    """A ``jax.random`` key committed to the default device.

    A jitted call's compiled code depends on whether its inputs are committed to a
    device. Keys made by ``PRNGKey`` are not, the states the step returns are: from an
    uncommitted key stream the first state would differ from all later ones and the
    step would compile twice. With the keys committed, every state is.
    """
    import jax

    key = jax.random.PRNGKey(seed)
    return jax.device_put(key, next(iter(key.devices())))


def _numpy_to_jax(x: np.ndarray) -> Any:
    import jax.numpy as jnp

    return jnp.asarray(x)


def _mask_to_jax(mask: Any, n: int) -> Any:
    import jax.numpy as jnp

    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.shape != (n,) or m.dtype != bool:
        raise ValueError(f"reset_mask: expected a bool array of shape ({n},), got {m.dtype} {m.shape}")
    return jnp.asarray(m)


def _where(mask: Any, new: Any, old: Any) -> Any:
    """``new`` where ``mask`` (per env, leading axis), else ``old``, leaf by leaf."""
    import jax
    import jax.numpy as jnp

    def pick(a: Any, b: Any) -> Any:
        if not b.shape or b.shape[0] != mask.shape[0]:
            return b
        m = jnp.reshape(mask, (mask.shape[0],) + (1,) * (b.ndim - 1))
        return jnp.where(m, a, b).astype(b.dtype)

    try:
        return jax.tree.map(pick, new, old)
    except ValueError as err:
        raise ValueError(f"the env's reset and step states differ in structure ({err})") from err


def _first_key(reset: Callable[..., Any]) -> Callable[..., Any]:
    def reset_batch(keys: Any) -> Any:
        return reset(keys[0])

    return reset_batch


def _recordable(info: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """The arrays of a ``state.info`` (nested mappings kept), without the reset caches.

    Runs while the step is traced: a leaf that is no array warns once, naming its key.
    """
    import jax

    out: dict[str, Any] = {}
    for key, value in info.items():
        name = f"{path}{key}"
        if key in RESET_CACHES:
            continue
        if isinstance(value, Mapping):
            out[key] = _recordable(value, name + "/")
        elif isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            out[key] = jax.random.key_data(value)
        elif isinstance(value, (jax.Array, np.ndarray)):
            out[key] = value
        else:
            warnings.warn(
                f"JaxVectorEnv: state.info[{name!r}] ({type(value).__name__}) is no array: not recorded",
                stacklevel=2,
            )
    return out


def _strong(tree: Any) -> Any:
    """The state with no weakly typed array (same dtypes, same values).

    Brax's ``EpisodeWrapper`` returns some ``info`` entries and ``done`` weakly typed
    from ``step`` but not from ``reset``: fed back, they would make jax compile the
    step a second time. Every state the adapter keeps is strongly typed instead.
    """
    import jax
    from jax import lax

    def strong(x: Any) -> Any:
        if isinstance(x, jax.Array) and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return lax.convert_element_type(x, x.dtype)
        return x

    return jax.tree.map(strong, tree)


def _strongly_typed(fn: Callable[..., Any]) -> Callable[..., Any]:
    def typed(*args: Any) -> Any:
        return _strong(fn(*args))

    return typed


def _masked(reset: Callable[..., Any]) -> Callable[..., Any]:
    def masked(state: Any, keys: Any, mask: Any) -> Any:
        return _where(mask, reset(keys), state)

    return masked


def _stepper(step: Callable[..., Any], reset: Callable[..., Any], own_reset: bool) -> Callable[..., Any]:
    """The jitted step: the env's step, the step's outputs, and (``own_reset``) the resets."""
    import jax
    import jax.numpy as jnp

    def run(state: Any, actions: Any, keys: Any) -> tuple[Any, dict[str, Any]]:
        nxt = step(state, actions)
        done = nxt.done > 0
        trunc = done & (nxt.info["truncation"] > 0) if "truncation" in nxt.info else jnp.zeros_like(done)
        out = {
            "reward": nxt.reward,
            "terminated": done & ~trunc,
            "truncated": trunc,
            "done": done,
            "metrics": nxt.metrics,
            "state_info": _recordable(nxt.info),
        }
        if not own_reset:
            return _strong(nxt), out
        out["final_obs"] = nxt.obs
        after = jax.lax.cond(jnp.any(done), lambda: _where(done, reset(keys), nxt), lambda: nxt)
        return _strong(after), out

    return run
