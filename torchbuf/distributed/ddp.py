"""Modules wrapped in ``DistributedDataParallel`` for torchbuf's learners.

``BC(ddp_policy(policy))`` trains on every rank; DDP averages the gradients across
ranks during ``backward``, so ranks that each see their shard of a global batch
(:class:`~torchbuf.distributed.loader.DistributedTransitionLoader`) take the step
that one process would take on the whole global batch: BC's loss is a mean over
the batch, and the shards are of equal size. DDP broadcasts rank 0's parameters
when it wraps the module, so every rank starts from the same policy.

BC calls a plain module's ``forward``, which DDP needs to see (it prepares the
gradient reduction there). An SB3 ``ActorCriticPolicy`` is scored through
``evaluate_actions``, which DDP would not see, so :func:`ddp_policy` first wraps
it in :class:`PolicyDistribution`, whose ``forward`` returns the policy's action
distribution.

GAIL's discriminator is a plain module too: ``GAIL(..., reward_net=ddp_policy(net))``
averages the discriminator's gradients over the ranks at every discriminator step
(each rank's generator stays its own).
"""

from __future__ import annotations

from typing import Any

import torch
from stable_baselines3.common.distributions import Distribution as SB3Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from tensordict import TensorDictBase
from torch import nn
from torch.distributions import Distribution
from torch.nn.parallel import DistributedDataParallel

from torchbuf.data.types import Obs

__all__ = ["PolicyDistribution", "ddp_policy", "unwrap_policy"]


def ddp_policy(policy: nn.Module, **ddp_kwargs: Any) -> DistributedDataParallel:
    """Wraps a policy in ``DistributedDataParallel`` so that ``BC`` trains it on every rank.

    Also wraps any other module a learner calls through ``forward``, such as
    GAIL's discriminator (``reward_net``).

    Args:
        policy: A plain module (e.g. observations to logits or a distribution) or
            an SB3 ``ActorCriticPolicy``, on this rank's device.
        **ddp_kwargs: Passed to ``DistributedDataParallel``; ``device_ids``
            defaults to the policy's CUDA device (none on CPU).

    Returns:
        The wrapped policy, for ``torchbuf.learners.BC(...)``; :func:`unwrap_policy`
        gives the original back (e.g. to save it). End the job with
        :func:`torchbuf.distributed.launch.shutdown`, not
        ``destroy_process_group()``: a DDP wrapper is freed by the garbage
        collector, and one freed after its gloo group deadlocks
        (pytorch/pytorch#56297).

    Raises:
        RuntimeError: ``torch.distributed`` is not initialized.

    Examples:
        >>> bc = BC(ddp_policy(nn.Sequential(nn.Linear(4, 2))))  # doctest: +SKIP
    """
    module = PolicyDistribution(policy) if isinstance(policy, ActorCriticPolicy) else policy
    device = next(policy.parameters()).device
    if device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [device])
    return DistributedDataParallel(module, **ddp_kwargs)


def unwrap_policy(policy: nn.Module) -> nn.Module:
    """The policy that :func:`ddp_policy` wrapped (``policy`` itself if not wrapped)."""
    if isinstance(policy, DistributedDataParallel):
        policy = policy.module
    return policy.policy if isinstance(policy, PolicyDistribution) else policy


class PolicyDistribution(nn.Module):
    """An SB3 ``ActorCriticPolicy`` whose ``forward`` returns its action distribution.

    Its log-probabilities and entropy are those of ``evaluate_actions`` (SB3's
    ``get_distribution`` computes the same actor path), so ``BC`` computes
    imitation's loss through it.

    Args:
        policy: The SB3 policy.
    """

    def __init__(self, policy: ActorCriticPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, obs: Obs) -> Distribution:
        """The action distribution for a batch of observations (TensorDicts for dicts)."""
        if isinstance(obs, TensorDictBase):
            obs = {str(k): obs[k] for k in obs.keys()}  # type: ignore[assignment]  # noqa: SIM118
        return _TorchView(self.policy.get_distribution(obs))


class _TorchView(Distribution):
    """A ``torch.distributions.Distribution`` face on an SB3 distribution."""

    def __init__(self, dist: SB3Distribution):
        self.sb3 = dist
        super().__init__(validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.sb3.log_prob(value)

    def entropy(self) -> torch.Tensor:
        entropy = self.sb3.entropy()
        if entropy is None:  # SB3's squashed Gaussian has none
            raise NotImplementedError
        return entropy

    @property
    def mode(self) -> torch.Tensor:
        return self.sb3.mode()

    def sample(self, sample_shape: Any = ()) -> torch.Tensor:
        return self.sb3.sample()
