"""torchbuf pops in torchrl 0.14's own replay buffer, slice sampler and imitation losses.

Runs where torchrl 0.14 is installed (``make test-sims``); skipped elsewhere.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

torchrl = pytest.importorskip(
    "torchrl",
    minversion="0.14",
    reason="needs torchrl>=0.14 (torchbuf[torchrl]; the sims venv has it), where BCLoss and GAILLoss live",
)
from tensordict import TensorDict  # noqa: E402
from tensordict.nn import TensorDictModule  # noqa: E402
from torchrl.data import LazyTensorStorage, ReplayBuffer  # noqa: E402
from torchrl.data.replay_buffers.samplers import SliceSampler  # noqa: E402
from torchrl.objectives import BCLoss, GAILLoss  # noqa: E402

from tests.synccount import count_ops  # noqa: E402
from torchbuf import VectorBufferingWrapper  # noqa: E402
from torchbuf.envs import TorchCartPole  # noqa: E402
from torchbuf.formats import TRAJ_KEY, to_torchrl  # noqa: E402

NO_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=NO_GPU)]
SLICE = 4


# ------------------------------------------------------------------ slices
class Tagged(gym.ObservationWrapper):
    """CartPole whose observation carries ``tag = (env, episode, t)``, counted by the env itself."""

    def __init__(self, env, index):
        super().__init__(env)
        self.index, self.episode, self.t = index, -1, 0
        box = gym.spaces.Box(0, np.iinfo(np.int64).max, (3,), np.int64)
        self.observation_space = gym.spaces.Dict({"state": env.observation_space, "tag": box})

    def reset(self, **kwargs):
        self.episode, self.t = self.episode + 1, -1
        return super().reset(**kwargs)

    def observation(self, observation):
        self.t += 1
        return {"state": observation, "tag": np.array([self.index, self.episode, self.t], dtype=np.int64)}


def _tagged_envs(n_envs=4, max_steps=10):
    """Episodes end terminated (the pole falls) or truncated (``max_steps``), both often."""
    fns = [lambda i=i: Tagged(gym.make("CartPole-v1", max_episode_steps=max_steps), i) for i in range(n_envs)]
    return VectorBufferingWrapper(gym.vector.SyncVectorEnv(fns), keep_infos=False)


def _record(envs, steps, rng):
    """Half the envs always push right (the pole falls within ~10 steps), half act at random."""
    for _ in range(steps):
        actions = rng.integers(0, 2, envs.num_envs)
        actions[: envs.num_envs // 2] = 1
        envs.step(actions)


def _assert_within_episodes(sample):
    """Each slice's tags come from one env and one episode, at consecutive steps."""
    tags = sample["observation", "tag"].reshape(-1, SLICE, 3)
    assert (tags[:, :, :2] == tags[:, :1, :2]).all(), "a slice crosses from one episode into another"
    assert (tags[:, 1:, 2] - tags[:, :-1, 2] == 1).all(), "a slice skips or repeats a step"


def test_slices_never_cross_an_episode_end():
    """Trajectories of three pops (whole episodes, fragments, truncations) extend one buffer."""
    envs, rng = _tagged_envs(), np.random.default_rng(0)
    envs.reset(seed=0)
    rb = ReplayBuffer(
        storage=LazyTensorStorage(10_000),
        sampler=SliceSampler(slice_len=SLICE, strict_length=True),
        batch_size=32 * SLICE,
    )
    n_trajs, truncated_ends = 0, 0
    for _ in range(3):
        _record(envs, 20, rng)
        trajs, _ = envs.pop_trajectories()
        truncated_ends += sum(bool(t.truncated[-1]) for t in trajs)
        rb.extend(to_torchrl(trajs, first_traj_id=n_trajs))
        n_trajs += len(trajs)
    assert truncated_ends > 0 and n_trajs > 12
    ends_seen = {"terminated": 0, "truncated": 0}
    for _ in range(200):
        sample = rb.sample()
        _assert_within_episodes(sample)
        last = sample["next"].reshape(-1, SLICE)[:, -1]
        ends_seen["terminated"] += int(last["terminated"].sum())
        ends_seen["truncated"] += int(last["truncated"].sum())
    assert rb.sampler.traj_key == TRAJ_KEY  # torchrl found the ids it looks for first
    assert ends_seen["terminated"] > 0 and ends_seen["truncated"] > 0  # slices reach both kinds of end


def test_whole_episodes_split_at_done_without_ids():
    """``SliceSampler(end_key=("next", "done"))``: torchbuf's done counts truncations as ends."""
    envs, rng = _tagged_envs(), np.random.default_rng(1)
    envs.reset(seed=1)
    _record(envs, 60, rng)
    trajs, _ = envs.pop_finished_trajectories()
    assert any(t.truncated[-1] for t in trajs) and any(t.terminated[-1] for t in trajs)
    td = to_torchrl(trajs).exclude("collector")
    rb = ReplayBuffer(
        storage=LazyTensorStorage(len(td)),
        sampler=SliceSampler(slice_len=SLICE, end_key=("next", "done"), strict_length=True),
        batch_size=32 * SLICE,
    )
    rb.extend(td)
    for _ in range(200):
        _assert_within_episodes(rb.sample())


# ------------------------------------------------------------------ losses
def _expert(obs):
    """CartPole's textbook controller: push towards the pole's lean (the demonstrator)."""
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).long()


def _pop(device, policy, steps=150, seed=0):
    envs = VectorBufferingWrapper(TorchCartPole(8, device=device, seed=seed), keep_infos=False)
    obs, _ = envs.reset(seed=seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    for _ in range(steps):
        obs, *_ = envs.step(policy(obs, gen))
    return envs.pop_transitions()


def _expert_policy(obs, gen):
    return _expert(obs)


def _random_policy(obs, gen):
    return torch.randint(0, 2, (len(obs),), generator=gen, device=obs.device)


def _data_pointers(td):
    return {k: v.data_ptr() for k, v in td.items(include_nested=True, leaves_only=True)}


def _batch(td, batch_size, gen):
    """A minibatch drawn on the data's device: one index draw and one gather per field."""
    return td[torch.randint(0, len(td), (batch_size,), generator=gen, device=gen.device)]


@pytest.mark.parametrize("device", DEVICES)
def test_bc_loss_trains_from_pops_on_the_device(device):
    batch = _pop(device, _expert_policy)
    td = to_torchrl(batch)
    assert _data_pointers(td)["observation"] == batch.obs.data_ptr()  # a view of the pop, not a copy
    assert _data_pointers(td)["action"] == batch.acts.data_ptr()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2)).to(device)
    actor = TensorDictModule(net, in_keys=["observation"], out_keys=["action"])  # logits at "action"
    loss_fn = BCLoss(actor)
    opt = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    before = loss_fn(td)["loss_bc"].detach()
    syncs, gen = 0, torch.Generator(device=device).manual_seed(0)
    for _ in range(400):
        opt.zero_grad()
        with count_ops() as ops:  # the batch and the loss (Adam reads its step count, a host scalar)
            loss_fn(_batch(td, 256, gen))["loss_bc"].backward()
        syncs += sum(ops.syncs.values())
        opt.step()
    assert syncs == 0  # no device->host copy and no value read on the way from the pop to the loss
    after = loss_fn(td)["loss_bc"].detach()
    assert after < 0.5 * before
    agree = (net(batch.obs).argmax(-1) == _expert(batch.obs)).float().mean()  # the demonstrator, not the data
    assert agree > 0.9


class Discriminator(nn.Module):
    """D(s, a) in (0, 1): the probability that ``(s, a)`` is the expert's (GAILLoss's ``d_logits``)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 64), nn.Tanh(), nn.Linear(64, 1))

    def forward(self, obs, act):
        # one-hot by comparison: F.one_hot reads the actions' range on the host, a sync per call
        one_hot = (act.unsqueeze(-1) == torch.arange(2, device=act.device)).to(obs.dtype)
        return torch.sigmoid(self.net(torch.cat([obs, one_hot], -1)))


def _gail_batch(expert, collected, batch_size, gen):
    """GAILLoss's input: expert pairs under its default keys, the policy's under ``collector_*``."""
    e, c = _batch(expert, batch_size, gen), _batch(collected, batch_size, gen)
    return TensorDict(
        {
            "observation": e["observation"],
            "action": e["action"],
            "collector_observation": c["observation"],
            "collector_action": c["action"],
        },
        batch_size=[batch_size],
    )


@pytest.mark.parametrize("device", DEVICES)
def test_gail_loss_trains_from_pops_on_the_device(device):
    expert, collected = _pop(device, _expert_policy, seed=0), _pop(device, _random_policy, seed=1)
    expert_td, collected_td = to_torchrl(expert), to_torchrl(collected)
    assert _data_pointers(expert_td)["observation"] == expert.obs.data_ptr()
    assert _data_pointers(collected_td)["action"] == collected.acts.data_ptr()
    torch.manual_seed(0)
    disc = Discriminator().to(device)
    loss_fn = GAILLoss(TensorDictModule(disc, in_keys=["observation", "action"], out_keys=["d_logits"]))
    opt = torch.optim.Adam(loss_fn.parameters(), lr=3e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    first = _gail_batch(expert_td, collected_td, 1024, gen)
    before = loss_fn(first)["loss"].detach()
    syncs = 0
    for _ in range(300):
        opt.zero_grad()
        with count_ops() as ops:
            loss_fn(_gail_batch(expert_td, collected_td, 256, gen))["loss"].backward()
        syncs += sum(ops.syncs.values())
        opt.step()
    assert syncs == 0
    assert loss_fn(first)["loss"].detach() < 0.9 * before
    with torch.no_grad():  # the expert's pairs score above the random policy's
        assert disc(expert.obs, expert.acts).mean() > disc(collected.obs, collected.acts).mean() + 0.2


def test_the_losses_make_no_hidden_host_read_on_the_meta_device():
    """On ``meta`` any read of a value would fail: the loss steps run on shapes alone."""
    meta = torch.device("meta")
    batch = _pop("cpu", _expert_policy, steps=20).to(meta)
    td = to_torchrl(batch)
    actor = TensorDictModule(nn.Linear(4, 2).to(meta), in_keys=["observation"], out_keys=["action"])
    BCLoss(actor)(td)["loss_bc"].backward()
    gail = TensorDict(
        {
            "observation": td["observation"],
            "action": td["action"],
            "collector_observation": td["observation"],
            "collector_action": td["action"],
        },
        batch_size=td.batch_size,
    )
    disc = Discriminator().to(meta)
    GAILLoss(TensorDictModule(disc, in_keys=["observation", "action"], out_keys=["d_logits"]))(gail)[
        "loss"
    ].backward()
