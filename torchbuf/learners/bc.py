"""Behaviour cloning from device minibatches, with imitation's loss.

The loss is imitation's ``BehaviorCloningLossCalculator``:
``neglogp - ent_weight * entropy + l2_weight * l2_norm``, with ``l2_norm`` half the
sum of the squared parameters. A training step runs entirely on the batch's device
and never reads a value back to the host: its metrics stay tensors until you ask
for them (:meth:`BCMetrics.to_floats`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from tensordict import TensorDictBase
from torch import nn
from torch.distributions import Categorical, Distribution

from torchbuf.data.types import Obs

__all__ = ["BC", "BCMetrics"]

DistributionFn = Callable[[torch.Tensor], Distribution]

_FUSED_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)
_FUSED_DEVICES = ("cpu", "cuda")


@dataclasses.dataclass(frozen=True)
class BCMetrics:
    """The loss of one batch and its parts (scalar tensors on the batch's device).

    Attributes:
        neglogp: Mean negative log-likelihood of the expert's actions.
        entropy: Mean entropy of the policy's action distribution (``None`` when
            the distribution has none, e.g. SB3's squashed Gaussian).
        ent_loss: ``-ent_weight * entropy``.
        prob_true_act: Mean probability (density) of the expert's actions.
        l2_norm: Half the sum of the squared parameters.
        l2_loss: ``l2_weight * l2_norm``.
        loss: ``neglogp + ent_loss + l2_loss``.
    """

    neglogp: torch.Tensor
    entropy: torch.Tensor | None
    ent_loss: torch.Tensor
    prob_true_act: torch.Tensor
    l2_norm: torch.Tensor
    l2_loss: torch.Tensor
    loss: torch.Tensor

    def to_floats(self) -> dict[str, float]:
        """Reads every metric to the host at once (one sync on an accelerator)."""
        names = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]
        values = torch.stack([getattr(self, n).detach().reshape(()) for n in names]).cpu().tolist()
        return dict(zip(names, values, strict=True))


class BC:
    """Behaviour cloning of an SB3 ``ActorCriticPolicy`` or a plain ``nn.Module``.

    An ``ActorCriticPolicy`` is scored with its ``evaluate_actions``, as in
    imitation's BC. A plain module maps an observation batch (a tensor, or a
    TensorDict for dict observations) to a ``torch.distributions.Distribution``,
    or to a tensor that ``distribution`` turns into one (default: the logits of
    a ``Categorical``, for discrete actions).

    Args:
        policy: The policy to train, already on the device of the batches it
            will see (batches elsewhere are moved to it).
        ent_weight: Weight of the entropy bonus (imitation's default 1e-3).
        l2_weight: Weight of the L2 penalty (imitation's default 0).
        optimizer_cls: Optimizer class; Adam (and AdamW) use the fused
            implementation on CPU and CUDA unless ``optimizer_kwargs`` choose one.
        optimizer_kwargs: Keyword arguments of the optimizer (default ``lr=1e-3``).
        distribution: Turns a plain module's tensor output into a distribution.

    Raises:
        ValueError: ``optimizer_kwargs`` sets ``weight_decay`` (use ``l2_weight``).

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
        >>> bc = BC(net)
        >>> batch = {"obs": torch.randn(8, 4), "acts": torch.randint(0, 2, (8,))}
        >>> metrics = bc.train_step(batch)
        >>> sorted(metrics.to_floats())[:3]
        ['ent_loss', 'entropy', 'l2_loss']
    """

    def __init__(
        self,
        policy: nn.Module,
        *,
        ent_weight: float = 1e-3,
        l2_weight: float = 0.0,
        optimizer_cls: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: Mapping[str, Any] | None = None,
        distribution: DistributionFn | None = None,
    ):
        kwargs = {"lr": 1e-3, **(optimizer_kwargs or {})}
        if "weight_decay" in kwargs:
            raise ValueError("Use the parameter l2_weight instead of weight_decay.")
        self.policy = policy
        self.ent_weight, self.l2_weight = ent_weight, l2_weight
        self.distribution: DistributionFn = distribution or _categorical
        self.optimizer = _make_optimizer(policy, optimizer_cls, kwargs)

    @property
    def device(self) -> torch.device:
        """The device of the policy's parameters."""
        return next(self.policy.parameters()).device

    def loss(self, obs: Obs, acts: Obs) -> BCMetrics:
        """Computes imitation's BC loss of a batch (no host read).

        Args:
            obs: Observations, shape ``(batch,) + obs_shape`` (TensorDict for dicts).
            acts: The expert's actions, shape ``(batch,) + action_shape``.

        Returns:
            The loss and its parts.
        """
        with _no_validation():
            log_prob, entropy = self._score(obs, acts)
        l2_norm = torch.stack([p.square().sum() for p in self.policy.parameters()]).sum() / 2
        ent_loss = -self.ent_weight * (entropy if entropy is not None else torch.zeros_like(l2_norm))
        neglogp = -log_prob.mean()
        l2_loss = self.l2_weight * l2_norm
        return BCMetrics(
            neglogp=neglogp,
            entropy=entropy,
            ent_loss=ent_loss,
            prob_true_act=log_prob.exp().mean(),
            l2_norm=l2_norm,
            l2_loss=l2_loss,
            loss=neglogp + ent_loss + l2_loss,
        )

    def train_step(self, batch: Mapping[str, Any]) -> BCMetrics:
        """One gradient step on a batch with ``obs`` and ``acts``; no host sync.

        Args:
            batch: A mapping with at least ``obs`` and ``acts`` (other keys are
                ignored), e.g. from :class:`torchbuf.loader.TransitionLoader`.

        Returns:
            The batch's metrics before the step (tensors on the device).
        """
        self.policy.train(True)
        device = self.device
        metrics = self.loss(_to(batch["obs"], device), _to(batch["acts"], device))
        self.optimizer.zero_grad(set_to_none=True)
        metrics.loss.backward()
        self.optimizer.step()
        return metrics

    def train(
        self,
        batches: Iterable[Mapping[str, Any]],
        *,
        n_batches: int | None = None,
        on_batch_end: Callable[[int, BCMetrics], None] | None = None,
    ) -> BCMetrics | None:
        """Trains on ``batches`` (e.g. a loader's epochs), or on its first ``n_batches``.

        Args:
            batches: Batch mappings; an endless loader needs ``n_batches``.
            n_batches: Stop after this many batches.
            on_batch_end: Called with the batch number and its metrics.

        Returns:
            The last batch's metrics, or ``None`` when there was no batch.
        """
        metrics = None
        for i, batch in enumerate(_first(batches, n_batches)):
            metrics = self.train_step(batch)
            if on_batch_end is not None:
                on_batch_end(i, metrics)
        return metrics

    def act(self, obs: Obs, deterministic: bool = True) -> torch.Tensor:
        """The policy's actions for an observation batch, on its device.

        Args:
            obs: Observations, shape ``(batch,) + obs_shape``.
            deterministic: The distribution's mode rather than a sample.

        Returns:
            Actions, shape ``(batch,) + action_shape``.
        """
        obs = _to(obs, self.device)
        self.policy.train(False)
        with torch.no_grad(), _no_validation():
            if isinstance(self.policy, ActorCriticPolicy):
                return self.policy._predict(_sb3_obs(obs), deterministic=deterministic)
            dist = self._dist(obs)
            return dist.mode if deterministic else dist.sample()

    def _score(self, obs: Obs, acts: Obs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-likelihoods of ``acts``, shape ``(batch,)``, and the mean entropy."""
        if isinstance(self.policy, ActorCriticPolicy):
            _, log_prob, sb3_entropy = self.policy.evaluate_actions(_sb3_obs(obs), acts)  # type: ignore[arg-type]
            return log_prob, None if sb3_entropy is None else sb3_entropy.mean()
        dist = self._dist(obs)
        entropy: torch.Tensor | None = None
        with contextlib.suppress(NotImplementedError):
            entropy = dist.entropy().mean()
        return dist.log_prob(acts), entropy

    def _dist(self, obs: Obs) -> Distribution:
        out = self.policy(obs)
        return out if isinstance(out, Distribution) else self.distribution(out)


def _categorical(logits: torch.Tensor) -> Distribution:
    return Categorical(logits=logits, validate_args=False)


def _make_optimizer(
    policy: nn.Module, optimizer_cls: type[torch.optim.Optimizer], kwargs: dict[str, Any]
) -> torch.optim.Optimizer:
    """Builds the optimizer; Adam fused where it can be (its step reads no scalar)."""
    params = list(policy.parameters())
    chosen = {"fused", "foreach", "capturable"} & set(kwargs)
    fusable = params and all(p.device.type in _FUSED_DEVICES and p.is_floating_point() for p in params)
    if issubclass(optimizer_cls, _FUSED_OPTIMIZERS) and not chosen and fusable:
        with contextlib.suppress(RuntimeError, TypeError):
            return optimizer_cls(params, **kwargs, fused=True)  # type: ignore[call-arg]
    return optimizer_cls(params, **kwargs)


@contextlib.contextmanager
def _no_validation() -> Iterator[None]:
    """Turns off ``torch.distributions`` argument checks, which read values on the host."""
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)


def _sb3_obs(obs: Obs) -> Any:
    """SB3 policies take a dict of tensors for dict observations, not a TensorDict."""
    if isinstance(obs, TensorDictBase):
        return {str(k): obs[k] for k in obs.keys()}  # noqa: SIM118
    return obs


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor | TensorDictBase):
        return value.to(device)
    return torch.as_tensor(value, device=device)


def _first(batches: Iterable[Mapping[str, Any]], n: int | None) -> Iterable[Mapping[str, Any]]:
    return batches if n is None else itertools.islice(batches, n)
