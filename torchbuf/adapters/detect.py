"""One entry point: which env API an env speaks, and the adapter the wrapper records.

:data:`ADAPTERS` is tried in order; the first entry whose test accepts the env wraps
it. An env none of them claims is taken as a gymnasium ``VectorEnv`` (or envpool, or a
torch-native vector env) and recorded as it is. To add a convention, add a
``(name, test, adapter)`` entry before the ones it could be confused with.

A JAX env (Brax ``Env``, Playground ``MjxEnv``) is a pair of pure functions without a
batch size: it is detected, but only one created with ``brax.envs.create(...,
batch_size=N)`` carries its ``N``; for any other the adapter raises ``ValueError``
asking for ``JaxVectorEnv(env, num_envs=N)`` (a gymnasium ``VectorEnv``, recorded as
it is).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torchbuf.adapters import jax as jax_env
from torchbuf.adapters import torchrl_env
from torchbuf.adapters.isaaclab import IsaacLabVectorEnv, is_manager_based
from torchbuf.adapters.rsl_rl import RslRlVectorEnv, is_rsl_rl

Adapter = tuple[str, Callable[[Any], bool], Callable[[Any], Any]]

ADAPTERS: tuple[Adapter, ...] = (
    # torchrl first: its wrappers forward attribute look-ups to the env they wrap (an
    # Isaac Lab env inside torchrl's IsaacLabWrapper has an observation_manager too).
    ("torchrl", torchrl_env.matches, torchrl_env.TorchRLVectorEnv),
    # No num_envs (Brax / Playground envs have none), so never an Isaac Lab or rsl_rl env.
    ("jax", jax_env.matches, jax_env.JaxVectorEnv),
    # Isaac Lab / mjlab envs also have get_observations(): test them before rsl_rl.
    ("isaaclab", is_manager_based, IsaacLabVectorEnv),
    ("rsl_rl", is_rsl_rl, RslRlVectorEnv),
)
GYMNASIUM = "gymnasium"


def detect_api(env: Any) -> str:
    """The name of the API ``env`` speaks: an :data:`ADAPTERS` name, or ``"gymnasium"``."""
    return next((name for name, test, _ in ADAPTERS if test(env)), GYMNASIUM)


def as_vector_env(env: Any, api: str | None = None) -> Any:
    """The env as a gymnasium-``VectorEnv``-like object the wrapper records.

    Args:
        env: A gymnasium ``VectorEnv`` (or envpool, or a torch-native vector env), a
            torchrl ``EnvBase``, a Brax / Playground env with a batch size, an Isaac
            Lab / mjlab manager-based env, or an rsl_rl ``VecEnv``.
        api: The API's name, where detection by duck type cannot be sure
            (``"gymnasium"``, ``"torchrl"``, ``"jax"``, ``"isaaclab"``, ``"rsl_rl"``).
            Default: detected.

    Returns:
        ``env`` itself for gymnasium, else its adapter.

    Raises:
        ValueError: ``api`` names no known API, or ``env`` is a JAX env without a
            batch size (wrap it as ``JaxVectorEnv(env, num_envs=N)``).
    """
    name = detect_api(env) if api is None else api
    if name == GYMNASIUM:
        return env
    for known, _, adapter in ADAPTERS:
        if known == name:
            return adapter(env)
    raise ValueError(f"unknown env api {api!r}: expected one of {[GYMNASIUM] + [a[0] for a in ADAPTERS]}")
