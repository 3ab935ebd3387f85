"""MuJoCo Playground (MJX) and Brax recorded through ``JaxVectorEnv`` and ``VectorBufferingWrapper``.

The ground truth is the env's own jax step, run by the test beside the recording: from
the adapter's current jax state (before the step) the test calls ``jax.vmap(env.step)``
itself and writes down, per env, the jax arrays it returned (converted by numpy, not by
DLPack): ``obs`` before and after (the true final observation where the episode ended),
``reward``, ``done`` and ``info["truncation"]``, and the step's infos: ``state.metrics``
and ``state.info`` (Brax's ``EpisodeWrapper`` entries ``truncation``, ``steps``,
``episode_done``, ``episode_metrics``, and the env's own) without the two entries in
which Brax's ``AutoResetWrapper`` caches the reset state (``first_obs``,
``first_pipeline_state``). For an env with its own auto-reset the final observation is
unknown: the truth is a NaN stand-in there, and the info says ``final_obs_unknown``.
Every popped transition is compared with it in mixed pop orders; the mismatch count
must be 0.

On this CPU machine the first jit of an MJX env takes about 30 s (MuJoCo Warp compiles
its kernels; later runs load them from the kernel cache), a Brax one about 25 s.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

jax = pytest.importorskip("jax", reason="needs jax, playground and brax: run make test-sims-jax")
import jax.numpy as jnp  # noqa: E402

from tests.sims.groundtruth import Run  # noqa: E402
from torchbuf import VectorBufferingWrapper  # noqa: E402
from torchbuf.adapters.detect import detect_api  # noqa: E402
from torchbuf.adapters.gymnasium import Autoreset  # noqa: E402
from torchbuf.adapters.jax import JaxVectorEnv, matches, to_jax  # noqa: E402

# Brax's AutoResetWrapper caches the reset state in these state.info entries (the reset
# obs and physics state, not the step's): the recording leaves them out.
RESET_CACHES = ("first_obs", "first_pipeline_state")


def playground_cartpole(episode_length: int):
    pytest.importorskip("mujoco_playground", reason="needs playground: make test-sims-jax")
    from brax.envs.wrappers.training import EpisodeWrapper
    from mujoco_playground import registry

    return EpisodeWrapper(registry.load("CartpoleBalance"), episode_length, 1)


def brax_pendulum(episode_length: int, auto_reset: bool, batch_size=None):
    pytest.importorskip("brax", reason="needs brax: make test-sims-jax")
    from brax import envs
    from brax.envs.wrappers import training

    if auto_reset:  # Brax's training wrappers: vmap, episode limit, the env's own auto-reset
        return training.wrap(envs.get_environment("inverted_pendulum"), episode_length=episode_length)
    return envs.create(
        "inverted_pendulum", episode_length=episode_length, auto_reset=False, batch_size=batch_size
    )


def dict_obs(env):
    """The env with dict observations, as Playground's locomotion envs give (``state``, ``privileged_state``).

    A Brax ``Wrapper`` over the real env that only splits its observation: no
    Playground dict-obs env compiles in reasonable time on a CPU.
    """
    from brax.envs.base import Wrapper

    class DictObs(Wrapper):
        def _split(self, state):
            return state.replace(obs={"state": state.obs[..., :2], "privileged_state": state.obs})

        def reset(self, rng):
            return self._split(self.env.reset(rng))

        def step(self, state, action):
            return self._split(self.env.step(state.replace(obs=state.obs["privileged_state"]), action))

    return DictObs(env)


def np_tree(x):
    """A jax array (or dict of them) as CPU torch tensors, through numpy (a copy)."""
    if isinstance(x, dict):
        return {k: np_tree(v) for k, v in x.items()}
    return torch.from_numpy(np.array(x))


def row(x, e):
    return {k: row(v, e) for k, v in x.items()} if isinstance(x, dict) else x[e]


def nan_like(x):
    return {k: nan_like(v) for k, v in x.items()} if isinstance(x, dict) else torch.full_like(x, float("nan"))


def step_infos(ref, env_resets, done):
    """The step's own infos per env, as the env returned them (numpy copies)."""
    state_info = np_tree({k: v for k, v in ref.info.items() if k not in RESET_CACHES})
    metrics = np_tree(ref.metrics)
    infos = [{"metrics": row(metrics, e), "state_info": row(state_info, e)} for e in range(len(done))]
    if env_resets:  # the wrapper flags the stand-in final obs, every step (done is device data)
        for e, info in enumerate(infos):
            info["final_obs_unknown"] = torch.tensor(done[e])
    return infos


def record(env, n_envs, n_steps, seed, batched=False, detected=False):
    """Records ``n_steps`` random steps; returns the run (truth and counts) and the adapter.

    ``detected``: the env goes to ``VectorBufferingWrapper`` as it is (it has a batch size).
    """
    envs = VectorBufferingWrapper(env if detected else JaxVectorEnv(env, n_envs, seed=seed))
    venv = envs.env
    assert isinstance(venv, JaxVectorEnv) and venv.num_envs == n_envs
    assert envs.mode is Autoreset.SAME_STEP
    truth_step = jax.jit(env.step if batched else jax.vmap(env.step))
    run = Run(envs, seed)
    envs.reset(seed=seed)
    for t in range(1, n_steps + 1):
        before = venv.state
        acts = torch.from_numpy(run.rng.uniform(-1, 1, (n_envs, env.action_size)).astype(np.float32))
        ref = truth_step(before, jnp.asarray(acts.numpy()))
        obs, rew, term, trunc, info = envs.step(acts)
        r_obs, r_next = np_tree(before.obs), np_tree(ref.obs)
        done, cut = np.array(ref.done) > 0, np.array(ref.info["truncation"]) > 0
        infos = step_infos(ref, venv.env_resets, done)
        for e in range(n_envs):
            nxt = nan_like(row(r_next, e)) if venv.env_resets and done[e] else row(r_next, e)
            run.truth[e].add(
                obs=row(r_obs, e), act=acts[e], next=nxt, rew=np_tree(ref.reward)[e],
                term=torch.tensor(done[e] and not cut[e]), trunc=torch.tensor(done[e] and cut[e]),
                ends=bool(done[e]), info=infos[e],
            )  # fmt: skip
        if not venv.env_resets:  # where no episode ended, the adapter's state is the env's own step
            live, want = np_tree(venv.state.obs), r_next
            if isinstance(live, dict):
                live, want = live["privileged_state"], want["privileged_state"]
            run.bad += not torch.equal(live[~done], want[~done])
        if t % 97 == 0:  # a partial reset cuts a running episode
            run.truth[0].cut()
            envs.reset(options={"reset_mask": np.arange(n_envs) == 0})
        run.maybe_pop(t)
    run.pop("transitions")
    return run, venv


def check(run, n_steps, n_envs, want_term=True):
    n_term, n_trunc = run.ends()
    assert run.compared == run.infos_compared == n_steps * n_envs >= 1000
    assert all("truncation" in s["info"]["state_info"] for t in run.truth for s in t.steps)
    assert run.bad == 0
    assert n_trunc > 0 and (n_term > 0) == want_term
    assert all(run.pops.values())


def test_playground_cartpole_balance_true_final_obs(recwarn):
    """MuJoCo Playground's CartpoleBalance (MJX): truncations at the episode limit, true final obs."""
    env = playground_cartpole(episode_length=40)
    assert matches(env) and detect_api(env) == "jax"
    with pytest.raises(ValueError, match=r"no batch size: wrap it as JaxVectorEnv\(env, num_envs=N\)"):
        VectorBufferingWrapper(env)  # a Playground env has none
    run, _ = record(env, n_envs=4, n_steps=260, seed=0)
    run.report("Playground CartpoleBalance (own resets)")
    check(run, 260, 4, want_term=False)  # CartpoleBalance never terminates (only on NaN physics)
    assert not any("final observations" in str(w.message) for w in recwarn)


def test_brax_inverted_pendulum_true_final_obs(recwarn):
    """Brax inverted_pendulum, no auto-reset, batch size 8: detected, reset by the adapter, final obs kept."""
    # random pushes topple it in ~6 steps
    env = brax_pendulum(episode_length=6, auto_reset=False, batch_size=8)
    assert detect_api(env) == "jax"
    run, _ = record(env, n_envs=8, n_steps=130, seed=1, batched=True, detected=True)
    run.report("Brax inverted_pendulum (own resets)")
    check(run, 130, 8)
    assert not any("final observations" in str(w.message) for w in recwarn)


def test_brax_dict_observations():
    """Dict ``state.obs``: recorded as a TensorDict, final observations included."""
    env = dict_obs(brax_pendulum(episode_length=6, auto_reset=False))
    run, venv = record(env, n_envs=8, n_steps=130, seed=3)
    assert set(venv.single_observation_space.spaces) == {"state", "privileged_state"}
    run.report("Brax inverted_pendulum, dict obs (own resets)")
    check(run, 130, 8)


def test_brax_auto_reset_wrapper_final_obs_unknown():
    """Brax's ``AutoResetWrapper`` keeps no final obs: NaN stand-ins and one warning, never the reset obs."""
    env = brax_pendulum(episode_length=6, auto_reset=True)
    with pytest.warns(UserWarning, match="final observations"):
        run, venv = record(env, n_envs=8, n_steps=130, seed=2, batched=True)
    assert venv.env_resets
    run.report("Brax inverted_pendulum (AutoResetWrapper)")
    check(run, 130, 8)


def test_outputs_share_the_jax_buffers():
    """DLPack without a copy: each returned tensor's data_ptr is its jax buffer's pointer, both ways.

    And the step compiles once: no XLA compilation after the first step (jax's own
    compile events counted), resets of ended envs and partial resets included.
    """
    env = brax_pendulum(episode_length=30, auto_reset=False)
    venv = JaxVectorEnv(env, 4, seed=0)
    obs, _ = venv.reset(seed=0)
    assert obs.data_ptr() == venv.state.obs.unsafe_buffer_pointer()
    acts = torch.zeros(4, env.action_size)
    assert to_jax(acts).unsafe_buffer_pointer() == acts.data_ptr()
    venv.reset(options={"reset_mask": np.arange(4) == 0})  # compiles the partial reset
    venv.step(acts)  # compiles the step
    compiles, counting = [], [True]

    def listen(event, secs, **kwargs):  # jax's listeners stay registered: count while the test runs
        if counting and event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    checked = ended = 0
    for t in range(40):
        if t == 20:
            venv.reset(options={"reset_mask": np.arange(4) == 1})
        obs, rew, term, trunc, info = venv.step(torch.ones(4, env.action_size))
        out = venv.outputs
        pairs = [
            (obs, venv.state.obs),
            (rew, out["reward"]),
            (term, out["terminated"]),
            (trunc, out["truncated"]),
            (info["final_obs"], out["final_obs"]),
            (info["_final_obs"], out["done"]),
            (info["state_info"]["truncation"], out["state_info"]["truncation"]),
        ]
        for tensor, array in pairs:
            assert tensor.data_ptr() == array.unsafe_buffer_pointer()
            checked += 1
        ended += int(info["_final_obs"].sum())
    counting.clear()
    n_compiles = len(compiles)
    assert ended > 0 and n_compiles == 0
    print(f"data_ptr checks: {checked}, compilations after the first step: {n_compiles}")


def test_bad_actions_name_the_field():
    env = brax_pendulum(episode_length=30, auto_reset=False)
    venv = JaxVectorEnv(env, 2)
    assert venv.single_observation_space.shape == (4,)  # known before the first reset (jax.eval_shape)
    assert venv.observation_space.shape == (2, 4) and venv.action_space.shape == (2, 1)
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(torch.zeros(2, 1))
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        venv.step(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.ones(3, dtype=bool)})


def test_matches_is_duck_typed():
    env = brax_pendulum(episode_length=30, auto_reset=False)
    assert matches(env)
    assert not matches(JaxVectorEnv(env, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gymnasium as gym

        assert not matches(gym.make("CartPole-v1"))
