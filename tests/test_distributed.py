"""torchbuf on torch.distributed: collective pops, the sharded loader, DDP-BC, failures.

Multi-process tests fork two ranks from the test process (they inherit the
imported modules, so a launch costs no import time) and join them over gloo
through a ``FileStore`` in a temporary folder (no ports to collide). A child
forked from a process whose OpenMP pool has run hangs in its first parallel op,
so ranks are forked single-threaded, from a parent whose pool has always run
(as it has in a full test run, so the condition is the same in every run). Each rank
saves what it saw; the assertions run here. Every launch has an outer deadline,
and every process group a timeout, so a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import dataclasses
import datetime
import faulthandler
import functools
import gc
import multiprocessing
import os
import socket
import time
import traceback
import weakref
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.distributed as dist
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torch.utils.data import DistributedSampler

from tests.helpers import ACT_SPACES, OBS_SPACES, ScheduleEnv, assert_obs_equal
from torchbuf import BufferingWrapper, TransitionsWithRew, VectorBufferingWrapper
from torchbuf.app import cli
from torchbuf.distributed import (
    CollectiveError,
    all_gather_trajectories,
    all_gather_transitions,
    gather_trajectories,
    gather_transitions,
)
from torchbuf.distributed.collectives import _transition_parts
from torchbuf.distributed.ddp import ddp_policy, unwrap_policy
from torchbuf.distributed.job import DDPBCConfig, run_ddp_bc
from torchbuf.distributed.launch import env_seed, shutdown
from torchbuf.distributed.loader import DistributedTransitionLoader
from torchbuf.envs import TorchCartPole
from torchbuf.envs.experts import scripted_cartpole
from torchbuf.learners import BC, GAIL, PPO
from torchbuf.learners.reward_nets import BasicRewardNet

WORLD = 2
DEADLINE_S = 120  # outer limit on one launch; a healthy one takes seconds
CARTPOLE = gym.make("CartPole-v1")


# --- launching ranks ------------------------------------------------------------------


def launch(fn, folder: Path, *, timeout_s: float = 30, env: dict[str, str] | None = None) -> list[int | None]:
    """Runs ``fn(rank)`` in WORLD forked processes joined by a gloo group; returns exit codes."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_rank_main, args=(fn, r, folder, timeout_s, env)) for r in range(WORLD)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.tanh(torch.ones(1 << 20))  # the OpenMP pool has run (a full test run does this somewhere)
    torch.set_num_threads(1)  # else a forked child hangs in the parent's pool at its first parallel op
    try:
        for p in procs:
            p.start()
    finally:
        torch.set_num_threads(threads)
    deadline = time.monotonic() + DEADLINE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


def _rank_main(fn, rank, folder, timeout_s, env):
    faulthandler.dump_traceback_later(DEADLINE_S - 15)  # a hung rank shows where, before the kill
    try:
        if env is not None:  # torchrun's variables: the function sets up its own group
            os.environ.update({**env, "RANK": str(rank), "LOCAL_RANK": str(rank)})
            result = fn(rank)
        else:
            timeout = datetime.timedelta(seconds=timeout_s)
            store = f"file://{folder / 'store'}"
            dist.init_process_group("gloo", init_method=store, rank=rank, world_size=WORLD, timeout=timeout)
            result = fn(rank)
            shutdown()
        torch.save(result, folder / f"rank{rank}.pt")
    except BaseException:
        traceback.print_exc()
        raise


def results(folder: Path) -> list[dict]:
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- what each rank does ----------------------------------------------------------------


def sb3_dict_batches(rank):
    """Dict observations, infos, terminated and truncated episodes; rank 1 records more."""
    fns = [
        lambda i=i: ScheduleEnv(
            OBS_SPACES["dict"], ACT_SPACES["box"], [2, 3], [False, True], seed=10 * rank + i
        )
        for i in range(2)
    ]
    venv = BufferingWrapper(DummyVecEnv(fns))
    venv.reset()
    for _ in range(5 + 3 * rank):
        venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
    return venv.pop_transitions()


def nested_trajectories(rank):
    """Nested dict observations and dict actions from a gymnasium vector env."""
    fns = [
        lambda i=i: ScheduleEnv(
            OBS_SPACES["nested"], ACT_SPACES["dict"], [2, 4], [False, True], seed=10 * rank + i
        )
        for i in range(2)
    ]
    envs = VectorBufferingWrapper(gym.vector.SyncVectorEnv(fns))
    envs.reset(seed=rank)
    envs.action_space.seed(rank)
    for _ in range(6 + rank):
        envs.step(envs.action_space.sample())
    trajs, _ = envs.pop_trajectories()
    return trajs


def odd_dtypes_batch(rank):
    """Dtypes gloo has no collective for (int16, bool) and half floats, rank-dependent sizes."""
    n = 3 + 2 * rank
    g = torch.Generator().manual_seed(rank)
    flags = torch.rand(n, generator=g) > 0.5
    return TransitionsWithRew(
        obs=torch.randint(-300, 300, (n, 2, 3), generator=g, dtype=torch.int16),
        acts=torch.randn(n, generator=g).to(torch.bfloat16),
        next_obs=torch.randint(-300, 300, (n, 2, 3), generator=g, dtype=torch.int16),
        dones=flags,
        terminated=flags,
        truncated=torch.zeros(n, dtype=torch.bool),
        rews=torch.randn(n, generator=g, dtype=torch.float64).half(),
        batch_size=[n],
    )


def gather_everything(rank):
    sb3 = sb3_dict_batches(rank)
    trajs = nested_trajectories(rank)
    odd = odd_dtypes_batch(rank)
    out = {"sb3": sb3, "trajs": list(trajs), "odd": odd}
    out["sb3_all"] = all_gather_transitions(sb3)
    out["sb3_to_1"] = gather_transitions(sb3, dst=1)
    out["odd_all"] = all_gather_transitions(odd)
    out["none_rank0"] = all_gather_transitions(None if rank == 0 else odd)
    out["trajs_all"] = list(all_gather_trajectories(trajs if rank == 0 else list(trajs)))
    out["trajs_rank1_to_0"] = gather_trajectories(trajs if rank == 1 else [], dst=0)
    out["nothing"] = all_gather_transitions(None), all_gather_trajectories([])
    try:
        all_gather_transitions(odd if rank == 0 else sb3)
    except ValueError as err:
        out["mismatch"] = str(err)
    return out


def shard_indices(rank):
    n = 11  # not a multiple of the world size: the last indices wrap around
    data = {"obs": torch.arange(float(n))[:, None], "acts": torch.arange(n)}
    loader = DistributedTransitionLoader(data, 2, seed=7, drop_last=False)
    epochs = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        epochs.append(torch.cat([b["acts"] for b in loader]).tolist())
    try:
        DistributedTransitionLoader({"acts": torch.arange(n + rank)}, 2)
    except ValueError as err:
        mismatch = str(err)
    return {"epochs": epochs, "mismatch": mismatch}


def cartpole_transitions(rank):
    envs = VectorBufferingWrapper(TorchCartPole(4, seed=env_seed(0, 4, rank)))
    obs, _ = envs.reset(seed=env_seed(0, 4, rank))
    for _ in range(16):
        obs, *_ = envs.step(scripted_cartpole(obs))
    return envs.pop_transitions()


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))


def sb3_policy():
    torch.manual_seed(0)
    return ActorCriticPolicy(CARTPOLE.observation_space, CARTPOLE.action_space, lambda _: 1e-3, net_arch=[16])


BC_STEPS, BC_BATCH = 5, 8


def ddp_bc(rank):
    data = all_gather_transitions(cartpole_transitions(rank))
    out = {"data": data}
    for name, make in (("mlp", mlp), ("sb3", sb3_policy)):
        bc = BC(ddp_policy(make()), l2_weight=1e-3)
        bc.train(DistributedTransitionLoader(data, BC_BATCH, seed=3), n_batches=BC_STEPS)
        out[name] = {k: v.detach().clone() for k, v in unwrap_policy(bc.policy).state_dict().items()}
    out["gail"] = gail_discriminator(rank, data, ddp=True)
    return out


def gail_discriminator(rank, demos, ddp):
    """A GAIL discriminator after a few steps on this rank's generator samples."""
    env = TorchCartPole(4, seed=env_seed(1, 4, rank))
    torch.manual_seed(0)
    net = BasicRewardNet(env.single_observation_space, env.single_action_space)
    ppo = PPO(env, n_steps=8, batch_size=16, seed=rank)
    gail = GAIL(demos, env, ppo, demo_batch_size=32, reward_net=ddp_policy(net) if ddp else net, seed=rank)
    mine = cartpole_transitions(rank)
    gen = {k: getattr(mine, k) for k in ("obs", "acts", "next_obs", "dones")}
    gen["acts"] = 1 - gen["acts"]  # not the expert's actions
    for _ in range(BC_STEPS):
        gail.train_disc(gen)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def fail_midway(rank, folder):
    """Rank 1 stays away from a collective on a group with a short timeout, then raises."""
    dist.barrier()
    short = dist.new_group(list(range(WORLD)), timeout=datetime.timedelta(seconds=2))
    stalled = folder / "rank0_timed_out"
    if rank == 1:
        deadline = time.monotonic() + DEADLINE_S
        while not stalled.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        raise RuntimeError("rank 1 fails on purpose")
    batch = odd_dtypes_batch(rank)
    errors = {}
    for name, group in (("stalled", short), ("exited", None)):
        try:
            all_gather_transitions(batch, group=group)
        except CollectiveError as err:
            errors[name] = str(err)
        stalled.touch()
    return errors


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gather")
    assert launch(gather_everything, folder) == [0, 0]
    return results(folder)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    assert launch(ddp_bc, folder) == [0, 0]
    return results(folder)


# --- helpers -------------------------------------------------------------------------------


def assert_batch_is_union(got, parts):
    """``got`` holds every part's rows, rank by rank, exactly (dtypes, dict obs, infos)."""
    assert type(got) is type(parts[0])
    assert got.batch_size[0] == sum(p.batch_size[0] for p in parts)
    for field in dataclasses.fields(got):
        mine = [getattr(p, field.name) for p in parts]
        if field.name == "infos":
            assert (got.infos is None) == (mine[0] is None)
            if got.infos is not None:
                assert_infos_equal(got.infos, [i for p in mine for i in p])
        elif isinstance(mine[0], torch.Tensor | TensorDictBase):
            assert_same(getattr(got, field.name), torch.cat(mine))


def assert_infos_equal(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.keys() == b.keys()
        for k in a:  # SB3's terminal_observation values are arrays (or dicts of arrays)
            assert_obs_equal(a[k], b[k]) if isinstance(a[k], dict | np.ndarray) else a[k] == b[k]


def assert_same(got, expected):
    """Exact equality of tensors or (nested) TensorDicts, dtypes included."""
    if isinstance(expected, TensorDictBase):
        assert isinstance(got, TensorDictBase) and set(got.keys()) == set(expected.keys())
        for k in expected.keys():  # noqa: SIM118  (iterating a TensorDict walks its rows)
            assert_same(got[k], expected[k])
        return
    assert got.dtype == expected.dtype and torch.equal(got, expected), (got, expected)


def assert_trajectories_equal(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        for name in ("obs", "acts", "rews", "terminated", "truncated"):
            assert_same(getattr(a, name), getattr(b, name))
        assert a.terminal == b.terminal
        assert_infos_equal(a.infos, b.infos)


# --- collective pops -------------------------------------------------------------------------


def test_all_gather_is_the_union_of_the_ranks_batches_in_rank_order(gathered):
    parts = [r["sb3"] for r in gathered]
    assert parts[0].batch_size != parts[1].batch_size  # padding was exercised
    assert parts[0].terminated.any() and parts[1].truncated.any()
    for r in gathered:
        assert_batch_is_union(r["sb3_all"], parts)


def test_gather_to_one_rank_reaches_it_alone(gathered):
    assert gathered[0]["sb3_to_1"] is None
    assert_batch_is_union(gathered[1]["sb3_to_1"], [r["sb3"] for r in gathered])


def test_dtypes_without_a_gloo_collective_travel_as_bytes(gathered):
    parts = [r["odd"] for r in gathered]
    for r in gathered:
        assert_batch_is_union(r["odd_all"], parts)
        assert r["odd_all"].obs.dtype == torch.int16 and r["odd_all"].acts.dtype == torch.bfloat16


def test_a_rank_with_nothing_receives_the_others_batches(gathered):
    for r in gathered:
        assert_batch_is_union(r["none_rank0"], [gathered[1]["odd"]])
        assert r["nothing"] == (None, [])


def test_all_gather_trajectories_keeps_nested_obs_and_infos(gathered):
    expected = [t for r in gathered for t in r["trajs"]]
    assert len(gathered[0]["trajs"]) and len(gathered[1]["trajs"])
    assert not all(t.terminal for t in expected)  # running fragments too
    for r in gathered:
        assert_trajectories_equal(r["trajs_all"], expected)


def test_gather_trajectories_from_one_rank(gathered):
    assert_trajectories_equal(gathered[0]["trajs_rank1_to_0"], gathered[1]["trajs"])
    assert gathered[1]["trajs_rank1_to_0"] is None


def test_ranks_whose_batches_differ_all_raise_the_same_error(gathered):
    for r in gathered:
        assert "ranks [1] pop batches whose fields, dtypes or shapes differ from rank 0's" in r["mismatch"]


def test_the_structure_fingerprint_is_the_same_in_every_process():
    # Ranks are separate interpreters: the fingerprint must not depend on insertion
    # order of dict keys, nor on anything whose order varies with the hash seed.
    a, b = odd_dtypes_batch(0), odd_dtypes_batch(0)
    a.obs = TensorDict({"x": a.obs, "y": {"z": a.acts}}, batch_size=a.batch_size)
    b.obs = TensorDict({"y": {"z": b.acts}, "x": b.obs}, batch_size=b.batch_size)
    schema_a, schema_b = _transition_parts(a).schema, _transition_parts(b).schema
    assert schema_a.fingerprint() == schema_b.fingerprint()
    assert not any(isinstance(v, set | frozenset | dict) for v in dataclasses.astuple(schema_a))


def test_collectives_need_a_process_group():
    with pytest.raises(RuntimeError, match="not initialized"):
        all_gather_transitions(odd_dtypes_batch(0))


# --- a rank that fails ---------------------------------------------------------------------


def test_a_failing_rank_makes_the_others_raise_instead_of_hang(tmp_path):
    codes = launch(functools.partial(fail_midway, folder=tmp_path), tmp_path, timeout_s=DEADLINE_S)
    assert codes[0] == 0 and codes[1] != 0
    errors = torch.load(tmp_path / "rank0.pt", weights_only=False)
    assert "rank 0 of 2" in errors["stalled"] and "Timed out" in errors["stalled"]
    # The world group's timeout is longer than a launch may take: rank 0 learnt that
    # rank 1 had exited from the lost connection. gloo's own wording of that loss varies
    # with how the peer's socket went down (on a loaded machine it was not "Connection
    # closed"), so only torchbuf's part of the message is asserted.
    assert "rank 0 of 2" in errors["exited"] and "another rank raised, exited" in errors["exited"]


# --- the sharded loader --------------------------------------------------------------------


@pytest.mark.parametrize("n", [8, 11, 3])
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("drop_uneven", [False, True])
@pytest.mark.parametrize("shuffle", [True, False])
def test_shards_are_distributed_samplers(n, world, drop_uneven, shuffle):
    data = {"obs": torch.arange(float(n))[:, None], "acts": torch.arange(n)}
    for rank in range(world):
        sampler = DistributedSampler(range(n), world, rank, shuffle=shuffle, seed=5, drop_last=drop_uneven)
        if len(sampler) == 0:
            with pytest.raises(ValueError, match="fewer than a batch"):
                DistributedTransitionLoader(data, 1, rank=rank, world_size=world, drop_uneven=drop_uneven)
            continue
        loader = DistributedTransitionLoader(
            data,
            2,
            rank=rank,
            world_size=world,
            seed=5,
            shuffle=shuffle,
            drop_last=False,
            drop_uneven=drop_uneven,
        )
        for epoch in (0, 4):
            sampler.set_epoch(epoch)
            loader.set_epoch(epoch)
            assert torch.cat([b["acts"] for b in loader]).tolist() == list(sampler)
            assert torch.equal(next(iter(loader))["obs"][:, 0], next(iter(loader))["acts"].float())


def test_shards_across_processes_are_disjoint_and_cover_each_epoch(tmp_path):
    assert launch(shard_indices, tmp_path) == [0, 0]
    out = results(tmp_path)
    for epoch in range(2):
        shards = [r["epochs"][epoch] for r in out]
        assert len(shards[0]) == len(shards[1]) == 6  # ceil(11 / 2)
        assert sorted(shards[0] + shards[1]) == sorted([*range(11), shards[0][0]])  # one index pads
        assert len(set(shards[0]) & set(shards[1])) == 1
    assert out[0]["epochs"][0] != out[0]["epochs"][1]
    for r in out:
        assert "ranks hold different numbers of transitions ([11, 12])" in r["mismatch"]


def test_loader_epochs_of_a_pass_continue_from_set_epoch():
    data = {"acts": torch.arange(10)}
    loader = DistributedTransitionLoader(data, 5, rank=1, world_size=2, epochs=3)
    loader.set_epoch(2)
    batches = [b["acts"].tolist() for b in loader]
    assert batches == [loader.indices(e).tolist() for e in (2, 3, 4)]


def test_loader_arguments_are_checked():
    data = {"acts": torch.arange(10)}
    with pytest.raises(ValueError, match="rank=2 must be in"):
        DistributedTransitionLoader(data, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="initialize torch.distributed"):
        DistributedTransitionLoader(data, 2)


# --- DDP-BC --------------------------------------------------------------------------------


def single_process_bc(policy, data):
    """BC in one process on the global batches: each the two ranks' shards, concatenated."""
    bc = BC(policy, l2_weight=1e-3)
    shards = [
        DistributedTransitionLoader(data, BC_BATCH, rank=r, world_size=WORLD, seed=3) for r in range(WORLD)
    ]
    for step, parts in enumerate(zip(*shards)):
        if step == BC_STEPS:
            break
        bc.train_step({k: torch.cat([p[k] for p in parts]) for k in ("obs", "acts")})
    return policy.state_dict()


@pytest.mark.parametrize("name, make", [("mlp", mlp), ("sb3", sb3_policy)])
def test_ddp_bc_on_two_ranks_is_bc_on_the_global_batches(trained, name, make):
    data = trained[0]["data"]
    assert_batch_is_union(trained[1]["data"], [data])  # every rank trained on the same data
    expected = single_process_bc(make(), data)
    assert any(not torch.equal(expected[k], make().state_dict()[k]) for k in expected)  # it trained
    for r in trained:
        assert expected.keys() == r[name].keys()
        for k, value in expected.items():
            torch.testing.assert_close(r[name][k], value, rtol=1e-5, atol=1e-6, msg=f"{name} rank {r} {k}")


def test_gail_discriminators_under_ddp_learn_from_every_ranks_samples(trained):
    local = gail_discriminator(0, trained[0]["data"], ddp=False)  # rank 0's samples only
    for k, value in trained[0]["gail"].items():
        torch.testing.assert_close(trained[1]["gail"][k], value, rtol=0, atol=0)  # ranks agree
    assert any(not torch.allclose(trained[0]["gail"][k], local[k]) for k in local)  # rank 1's samples count


def test_unwrap_policy_gives_the_module_back():
    net = mlp()
    assert unwrap_policy(net) is net


# --- the job under torchrun's environment ------------------------------------------------------


def job_rank(rank):
    summary = run_ddp_bc(
        DDPBCConfig(n_envs=4, steps=20, batch_size=16, epochs=1, eval_episodes=2, timeout=60)
    )
    return dataclasses.asdict(summary)


def test_the_job_runs_on_two_ranks_from_torchruns_variables(tmp_path):
    env = {"WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    assert launch(job_rank, tmp_path, env=env) == [0, 0]
    out = results(tmp_path)
    assert [r["rank"] for r in out] == [0, 1]
    assert out[0]["transitions"] == out[1]["transitions"] == [80, 80]
    assert out[0]["batches"] == 5  # 160 transitions, 80 per rank, 16 per batch
    assert out[0]["eval_return"] == out[1]["eval_return"] > 0


def test_the_job_runs_as_one_process_without_torchrun(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    summary = run_ddp_bc(DDPBCConfig(envs="sb3", n_envs=2, steps=20, batch_size=8, epochs=1, eval_episodes=1))
    assert summary.world_size == 1 and summary.transitions == [40] and summary.batches == 5
    assert not dist.is_initialized()


def test_the_command_line_runs_the_job(monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)
    assert (
        cli.main(["ddp-bc", "--n-envs", "2", "--steps", "10", "--batch-size", "4", "--eval-episodes", "1"])
        == 0
    )
    assert "transitions per rank     [20]" in capsys.readouterr().out


def test_shutdown_frees_ddp_wrappers_before_the_group_goes(tmp_path):
    """A DDP wrapper in a reference cycle is freed by a collection only (see shutdown).

    torch 2.13's first DDP wrapper in a process sits in such a cycle (a hook's
    closure cell holds it); the cycle is made explicit here, so the test does not
    depend on which wrapper is the process's first.
    """
    store = f"file://{tmp_path / 'store'}"
    dist.init_process_group(
        "gloo", init_method=store, rank=0, world_size=1, timeout=datetime.timedelta(seconds=30)
    )

    def train():
        policy = ddp_policy(mlp())
        policy(torch.randn(3, 4)).sum().backward()
        policy.cycle = [policy]
        return weakref.ref(policy)

    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        wrapper = train()
        assert wrapper() is not None  # still alive although nothing names it
        shutdown()
        assert wrapper() is None
        assert not dist.is_initialized()
    finally:
        if gc_was_enabled:
            gc.enable()
