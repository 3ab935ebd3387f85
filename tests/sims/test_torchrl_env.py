"""torchrl ``EnvBase`` recorded through ``TorchRLVectorEnv`` and ``VectorBufferingWrapper``.

The ground truth is torchrl's own record: a twin of the env, seeded alike, is stepped by
the test with torchrl's ``step_and_maybe_reset`` and the same actions; each step's
``td["observation"]``, ``td["action"]`` and ``td["next", ...]`` (observation, i.e. the
true final one where an episode ended, reward, terminated, truncated, and the entries
that are no observation, e.g. a ``StepCounter``'s ``step_count`` when only
``"observation"`` is observed: the step's infos) are written down per env. Every popped
transition, infos included, is compared with it, in mixed pop orders; the mismatch
count must be 0. The envs go to ``VectorBufferingWrapper`` as they are (detected as
torchrl), except where observation keys are chosen through ``TorchRLVectorEnv``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torchrl", minversion="0.14", reason="needs torchrl>=0.14 (the sims venv has it)")
from tensordict import TensorDict  # noqa: E402
from torchrl.envs import GymEnv, SerialEnv, StepCounter, TransformedEnv  # noqa: E402

from tests.sims.groundtruth import Run  # noqa: E402
from torchbuf import VectorBufferingWrapper  # noqa: E402
from torchbuf.adapters.detect import detect_api  # noqa: E402
from torchbuf.adapters.gymnasium import Autoreset  # noqa: E402
from torchbuf.adapters.torchrl_env import TorchRLVectorEnv, matches  # noqa: E402


def cartpoles(n_envs=3, max_steps=15):
    """A batched torchrl env: ``SerialEnv`` of gymnasium CartPoles with a ``StepCounter`` limit."""
    make = lambda: GymEnv("CartPole-v1", categorical_action_encoding=True)  # noqa: E731
    return TransformedEnv(SerialEnv(n_envs, make), StepCounter(max_steps=max_steps))


def pendulum():
    """An unbatched torchrl env (batch size ``[]``): gymnasium's Pendulum, truncated at 200 steps."""
    return GymEnv("Pendulum-v1")


def batched(x, unbatched):
    return x.unsqueeze(0) if unbatched else x


def record(make, n_steps, seed, actions, observation_keys=None, info_keys=()):
    """Steps a recorded env and its twin with the same actions; returns the run.

    ``info_keys``: the twin's ``td["next", key]`` entries the step's infos hold.
    """
    env, twin = make(), make()
    if observation_keys is None:
        assert detect_api(env) == "torchrl"
        envs = VectorBufferingWrapper(env)
    else:
        envs = VectorBufferingWrapper(TorchRLVectorEnv(env, observation_keys=observation_keys))
    venv = envs.env
    assert isinstance(venv, TorchRLVectorEnv)
    assert envs.mode is Autoreset.SAME_STEP
    n, unb = venv.num_envs, not env.batch_size
    keys = observation_keys or list(twin.observation_spec.keys(True, True))
    run = Run(envs, seed)
    envs.reset(seed=seed)
    twin.set_seed(seed)
    root = twin.reset()
    for t in range(1, n_steps + 1):
        acts = actions(run.rng, n)
        root.set("action", acts[0] if unb else acts)
        td, root = twin.step_and_maybe_reset(root)
        envs.step(acts)
        cols = [batched(x, unb) for x in (td.select(*keys), td["action"], td["next"].select(*keys),
                td["next", "reward"], td["next", "terminated"], td["next", "truncated"],
                td["next"].select(*info_keys))]  # fmt: skip
        for e in range(n):
            o, a, nx, r, term, trunc, info = (c[e] for c in cols)
            o, nx = (x["observation"] if keys == ["observation"] else x.to_dict() for x in (o, nx))
            ends = bool(term[0] | trunc[0])
            run.truth[e].add(
                obs=o, act=a, next=nx, rew=r[0], term=term[0], trunc=trunc[0], ends=ends, info=info.to_dict()
            )
        if t % 101 == 0 and not unb:  # a partial reset of env 0, in both
            mask = torch.arange(n) == 0
            run.truth[0].cut()
            envs.reset(options={"reset_mask": mask})
            request = root.clone().set("_reset", mask.unsqueeze(-1))
            fresh = twin.reset(request)
            root = root.clone()
            root[mask] = fresh.select(*root.keys(True, True))[mask]
        run.maybe_pop(t)
    run.pop("transitions")
    env.close()
    twin.close()
    return run


def check(run, want_term=True):
    n_term, n_trunc = run.ends()
    assert run.compared == run.infos_compared >= 1000 and run.bad == 0
    assert n_trunc > 0 and (n_term > 0) == want_term
    assert all(run.pops.values())


def test_serial_env_of_cartpoles():
    """Dict observations (CartPole's and ``StepCounter``'s ``step_count``), terminations and truncations."""
    run = record(cartpoles, 350, seed=0, actions=lambda rng, n: torch.from_numpy(rng.integers(0, 2, n)))
    run.report("torchrl SerialEnv(3 CartPole) + StepCounter(15)")
    check(run)


def test_step_count_as_info():
    """Only ``"observation"`` observed: the ``StepCounter``'s ``step_count`` is each step's info."""
    acts = lambda rng, n: torch.from_numpy(rng.integers(0, 2, n))  # noqa: E731
    run = record(
        cartpoles, 350, seed=4, actions=acts, observation_keys=["observation"], info_keys=["step_count"]
    )
    run.report("torchrl SerialEnv(3 CartPole) + StepCounter(15), step_count in infos")
    check(run)
    assert {int(s["info"]["step_count"]) for t in run.truth for s in t.steps} == set(range(1, 16))


def test_unbatched_pendulum():
    acts = lambda rng, n: torch.from_numpy(rng.uniform(-2, 2, (n, 1)).astype(np.float32))  # noqa: E731
    run = record(pendulum, 1000, seed=1, actions=acts)
    run.report("torchrl GymEnv(Pendulum-v1)")
    check(run, want_term=False)


def test_spaces_and_matches():
    env = cartpoles(2)
    venv = TorchRLVectorEnv(env)
    assert matches(env) and not matches(venv)
    assert venv.num_envs == 2 and venv.single_action_space.n == 2
    # StepCounter's step_count is in the observation spec: a dict observation
    assert venv.single_observation_space["observation"].shape == (4,)
    assert venv.single_observation_space["step_count"].shape == (1,)
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.ones(2, dtype=bool)})
    obs, _ = venv.reset(seed=0)
    assert obs["observation"].shape == (2, 4)
    obs, rew, term, trunc, info = venv.step(torch.zeros(2, dtype=torch.int64))
    assert rew.shape == term.shape == trunc.shape == (2,) and term.dtype == torch.bool
    assert info["final_obs"]["step_count"].shape == (2, 1)
    assert isinstance(venv.root, TensorDict)
    env.close()


def test_closing_after_the_torchrl_env_was_closed_is_quiet():
    """The caller may close the torchrl env itself; the adapter's close (and __del__) then leaves it."""
    env = cartpoles(2)
    venv = TorchRLVectorEnv(env)
    venv.reset(seed=0)
    env.close()
    venv.close()  # torchrl's batched envs raise "trying to close a closed environment" on a second close
    assert venv.closed and env.is_closed
