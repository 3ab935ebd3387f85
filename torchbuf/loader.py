"""A minibatch loader that shuffles and batches transitions on their device.

:class:`TransitionLoader` takes popped transitions (or trajectories, or a mapping
of tensors) and yields minibatches as mappings with imitation's keys (``obs``,
``acts``, ``next_obs``, ``dones``, ``rews``): one ``randperm`` per epoch from a
seeded ``torch.Generator`` on the data's device, and one ``index_select`` per
field per batch. Nothing goes through the host, so a learner on the GPU never
waits for a collate. Dict observations stay TensorDicts.

The batches plug into imitation's ``bc.BC(demonstrations=...)`` as they are for
array observations (imitation converts each value with ``torch.as_tensor``);
:func:`imitation_batches` converts dict observations to the ``DictObs`` that
imitation's BC needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from torchbuf.data.convert import obs_to_tensors
from torchbuf.data.types import Obs, Trajectory, Transitions, obs_len
from torchbuf.rollout import flatten_trajectories

__all__ = ["IMITATION_KEYS", "TransitionLoader", "imitation_batches"]

IMITATION_KEYS = ("obs", "acts", "next_obs", "dones", "rews")
"""The keys of imitation's ``TransitionMapping`` batches (``rews`` when present)."""

Batch = dict[str, Obs]


class TransitionLoader:
    """Iterates over shuffled minibatches of transitions, on the transitions' device.

    Each pass over the loader (each ``iter()``) runs ``epochs`` epochs, or forever
    with ``epochs=None``. Every epoch draws a new permutation from the loader's
    generator, so the sequence of batches depends only on the seed. Batches are
    fresh tensors (``index_select``), never views of the data, except with
    ``shuffle=False`` where they are slices.

    Args:
        transitions: A :class:`~torchbuf.data.types.Transitions` batch (e.g. from
            ``pop_transitions()``), a sequence of trajectories (flattened with
            :func:`torchbuf.rollout.flatten_trajectories`), or a mapping from keys to
            tensors / TensorDicts / arrays with one leading dimension.
        batch_size: Transitions per batch.
        shuffle: Draw a new permutation every epoch; otherwise keep the order.
        drop_last: Drop the last, smaller batch of an epoch.
        epochs: Epochs per pass, or ``None`` for an endless pass.
        seed: Seeds the loader's generator. Without ``seed`` or ``generator`` the
            seed is drawn from torch's global generator (``torch.manual_seed``
            makes it reproducible).
        generator: A ``torch.Generator`` on the data's device to use instead.
        device: Moves the data there once; default: where it is.
        keys: Fields to yield; default: those of :data:`IMITATION_KEYS` present.

    Raises:
        ValueError: no transitions, a non-positive ``batch_size`` or ``epochs``,
            fewer transitions than ``batch_size`` with ``drop_last``, fields of
            different lengths, or a key that is missing.

    Examples:
        >>> data = {"obs": torch.arange(10.0)[:, None], "acts": torch.arange(10)}
        >>> loader = TransitionLoader(data, batch_size=4, seed=0)
        >>> [len(b["acts"]) for b in loader]
        [4, 4]
        >>> sorted(next(iter(loader)))
        ['acts', 'obs']
    """

    def __init__(
        self,
        transitions: Transitions | Sequence[Trajectory] | Mapping[str, Any],
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        epochs: int | None = 1,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        keys: Sequence[str] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be positive")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs={epochs} must be positive, or None for an endless loader")
        self.data = _fields(transitions, keys, device)
        self.n = _common_length(self.data)
        self.batch_size, self.shuffle, self.drop_last, self.epochs = batch_size, shuffle, drop_last, epochs
        if self.batches_per_epoch == 0:
            raise ValueError(f"{self.epoch_length} transitions are fewer than a batch of {batch_size}")
        self.device = _device_of(next(iter(self.data.values())))
        self.generator = generator if generator is not None else device_generator(self.device, seed)

    @property
    def epoch_length(self) -> int:
        """Transitions one epoch yields (before ``drop_last``)."""
        return self.n

    @property
    def batches_per_epoch(self) -> int:
        """Batches in one epoch."""
        full, rest = divmod(self.epoch_length, self.batch_size)
        return full + int(bool(rest) and not self.drop_last)

    def __len__(self) -> int:
        """Batches in one pass (``epochs`` epochs).

        Raises:
            TypeError: the loader is endless (``epochs=None``).
        """
        if self.epochs is None:
            raise TypeError("an endless TransitionLoader (epochs=None) has no length")
        return self.epochs * self.batches_per_epoch

    def __iter__(self) -> Iterator[Batch]:
        """Yields the batches of ``epochs`` epochs (forever with ``epochs=None``)."""
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            yield from self._epoch(epoch)
            epoch += 1

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        order = self._order(epoch)
        for b in range(self.batches_per_epoch):
            start, stop = b * self.batch_size, min((b + 1) * self.batch_size, self.epoch_length)
            if order is None:
                yield {k: v[start:stop] for k, v in self.data.items()}
            else:
                idx = order[start:stop]
                yield {k: _take(v, idx) for k, v in self.data.items()}

    def _order(self, epoch: int) -> torch.Tensor | None:
        """The indices of epoch ``epoch`` of a pass, or ``None`` for the data's order."""
        if not self.shuffle:
            return None
        return torch.randperm(self.n, generator=self.generator, device=self.device)


def imitation_batches(batches: Iterable[Mapping[str, Obs]], separator: str = ".") -> Iterable[dict[str, Any]]:
    """Adapts batches for imitation's BC when observations are dicts.

    imitation's ``bc.BC`` reads ``len(batch["obs"])`` and unwraps its own
    ``DictObs``; TensorDict observations become ``DictObs`` of host arrays (nested
    keys joined with ``separator``), every other value is passed through. Array
    observations need no adapter. Re-iterable like ``batches``.

    Args:
        batches: A :class:`TransitionLoader` or any iterable of batch mappings.
        separator: Joins nested observation keys (``DictObs`` is flat).

    Returns:
        An iterable of batches that imitation's BC accepts as ``demonstrations``.

    Raises:
        ImportError: imitation is not installed (when a dict observation is met).
    """
    return _ImitationBatches(batches, separator)


class _ImitationBatches:
    def __init__(self, batches: Iterable[Mapping[str, Obs]], separator: str):
        self.batches, self.separator = batches, separator

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from torchbuf.data.imitation import obs_to_imitation

        for batch in self.batches:
            yield {
                k: obs_to_imitation(v, self.separator) if isinstance(v, TensorDictBase) else v
                for k, v in batch.items()
            }


def _fields(
    transitions: Transitions | Sequence[Trajectory] | Mapping[str, Any],
    keys: Sequence[str] | None,
    device: torch.device | str | None,
) -> dict[str, Obs]:
    """The fields to batch, as tensors / TensorDicts on one device."""
    if isinstance(transitions, list | tuple):
        transitions = flatten_trajectories(transitions)
    if isinstance(transitions, Mapping):
        source = {str(k): v for k, v in transitions.items()}
    else:
        source = {k: getattr(transitions, k, None) for k in keys or IMITATION_KEYS}
    names = list(keys) if keys is not None else [k for k in IMITATION_KEYS if source.get(k) is not None]
    missing = [k for k in names if source.get(k) is None]
    if missing or not names:
        raise ValueError(f"missing fields {missing or list(IMITATION_KEYS)}; have {sorted(source)}")
    out = {}
    for k in names:
        value = source[k]
        if not isinstance(value, torch.Tensor | TensorDictBase):
            value = obs_to_tensors(value, len(value), torch.device(device or "cpu"))
        out[k] = value.to(device) if device is not None else value
    return out


def _common_length(data: dict[str, Obs]) -> int:
    lengths = {k: obs_len(v) for k, v in data.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"fields have different lengths: {lengths}")
    return next(iter(lengths.values()))


def _device_of(value: Obs) -> torch.device:
    if isinstance(value, TensorDictBase) and value.device is None:  # no device: its first leaf's
        leaf: Any = next(iter(value.values(include_nested=True, leaves_only=True)))
        return torch.device(leaf.device)
    return torch.device(value.device)  # type: ignore[arg-type]


def device_generator(device: torch.device, seed: int | None) -> torch.Generator | None:
    """A seeded generator on ``device`` (``None`` on ``meta``, which has none).

    Args:
        device: Where the generator draws.
        seed: Its seed; ``None`` draws one from torch's global generator.

    Returns:
        The generator, or ``None`` on ``meta``.
    """
    if device.type == "meta":
        return None
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()))
    return torch.Generator(device=device).manual_seed(seed)


def _take(value: Obs, idx: torch.Tensor) -> Obs:
    if isinstance(value, torch.Tensor):
        return value.index_select(0, idx)
    return value[idx]
