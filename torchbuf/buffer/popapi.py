"""The pop API that every buffering wrapper shares, over one :class:`Recorder`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from torchbuf.buffer.guard import exclusive
from torchbuf.buffer.recorder import Recorder
from torchbuf.data.types import TrajectoryWithRew, TransitionsWithRew


class PopAPI:
    """Counters and pops of imitation's ``BufferingWrapper``, for any wrapper.

    A subclass sets ``_recorder`` and ``error_on_premature_reset`` and calls
    :meth:`_check_premature_reset` before it resets. For checkpoints it names its
    kind (``_state_kind``) and saves and restores its own step state
    (:meth:`_step_state` / :meth:`_load_step_state`).
    """

    _recorder: Recorder
    error_on_premature_reset: bool
    _state_kind: str = "base"
    num_envs: int

    @property
    def error_on_premature_event(self) -> bool:
        """Alias of ``error_on_premature_reset`` (the name imitation's docs list)."""
        return self.error_on_premature_reset

    @error_on_premature_event.setter
    def error_on_premature_event(self, value: bool) -> None:
        self.error_on_premature_reset = value

    @property
    def n_transitions(self) -> int | None:
        """Transitions recorded since the last pop; ``None`` before the first reset.

        Assignable, as imitation's plain attribute is (its own tests set it to fake a
        count): the value is what this counter reports and what the premature-reset
        check reads until the next step adds to it or a pop sets it to 0. The recorded
        data and what the pops return do not change.

        Raises:
            ValueError: on assignment, a value that is not a non-negative int.
        """
        return self._recorder.n_transitions

    @n_transitions.setter
    def n_transitions(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"n_transitions must be a non-negative int, got {value!r}")
        self._recorder.n_transitions = int(value)

    @property
    def n_unpopped(self) -> int:
        """Transitions recorded and not yet returned by any pop.

        Differs from ``n_transitions`` only after ``pop_finished_trajectories()``
        left running episodes behind: those come out of a later pop.
        """
        return self._recorder.n_unpopped

    @property
    def device(self) -> torch.device:
        """The storage device."""
        return self._recorder.device

    @exclusive
    def pop_transitions(self) -> TransitionsWithRew:
        """Pops recorded transitions (env by env, in time order).

        Returns:
            All transitions not returned by an earlier pop, as one batch on the
            storage device.

        Raises:
            RuntimeError: empty (no transitions recorded since last pop).
        """
        self._before_pop()
        return self._recorder.pop_transitions()

    @exclusive
    def pop_trajectories(self) -> tuple[Sequence[TrajectoryWithRew], list[int]]:
        """Pops recorded trajectories ``trajs`` and episode lengths ``ep_lens``.

        Returns:
            A tuple ``(trajs, ep_lens)`` where ``trajs`` holds fragments of everything
            recorded since the last pop, as a :class:`~torchbuf.data.trajectories.Trajectories`
            sequence. They may miss initial states (an earlier pop took them) and
            terminal states (episode still running). ``ep_lens`` holds the full
            lengths of the episodes completed since the last pop.
        """
        self._before_pop()
        return self._recorder.pop_trajectories()

    @exclusive
    def pop_finished_trajectories(self) -> tuple[Sequence[TrajectoryWithRew], list[int]]:
        """Pops recorded complete trajectories ``trajs`` and episode lengths ``ep_lens``.

        Returns:
            A tuple ``(trajs, ep_lens)`` where ``trajs`` holds the trajectories ending
            in a terminal state (possibly missing initial states popped earlier) and
            the fragments of episodes that a partial reset abandoned
            (``terminal=False``, as they can never end), and ``ep_lens`` the lengths
            of the episodes completed since the last pop. Running episodes stay
            recorded and come out of a later pop.
        """
        self._before_pop()
        return self._recorder.pop_trajectories(finished_only=True)

    def _before_pop(self) -> None:
        """A subclass's hook, run first in every pop (e.g. a deferred warning)."""

    def _check_premature_reset(self, name: str) -> None:
        """Raises if a reset would discard transitions recorded since the last pop.

        Raises:
            RuntimeError: ``error_on_premature_reset`` and such transitions exist.
        """
        if self.error_on_premature_reset and self._recorder.n_transitions:
            raise RuntimeError(f"{name} reset() before samples were accessed")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The unpopped state, to restore into a new wrapper of the same kind.

        Tensors are views of the storage: save or copy them before the next step.
        :func:`torchbuf.io.save_checkpoint` writes this to disk.

        Returns:
            A dict with ``kind`` (``"sb3"`` or ``"vector"``), ``n_envs``, ``device``
            (a string), ``recorder`` (:meth:`Recorder.state_dict`: storage slots,
            cursors, counts and unpopped infos) and ``step`` (the wrapper's own step
            state: a ``VectorBufferingWrapper``'s autoreset mode, pending NEXT_STEP
            resets and envpool actions; empty for a ``BufferingWrapper``).

        Raises:
            RuntimeError: the wrapper is between two halves of a step (e.g. a
                ``step_async()`` is pending).
        """
        return {
            "kind": self._state_kind,
            "n_envs": self.num_envs,
            "device": str(self.device),
            "recorder": self._recorder.state_dict(),
            "step": self._step_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`, replacing the recorded data.

        The storage goes to this wrapper's device (a ``VectorBufferingWrapper``
        created without a device takes the state's). The env's own state is not
        part of it: restore it yourself (see :func:`torchbuf.io.load_checkpoint`).

        Args:
            state: What :meth:`state_dict` returned (possibly from another process).

        Raises:
            ValueError: the state does not fit this wrapper (another kind, number
                of envs or autoreset mode, or infos the wrapper does not keep).
        """
        if state["kind"] != self._state_kind:
            raise ValueError(f"the state is of a {state['kind']!r} wrapper, not {self._state_kind!r}")
        if int(state["n_envs"]) != self.num_envs:
            raise ValueError(f"the state holds {state['n_envs']} envs, the wrapper {self.num_envs}")
        self._check_step_state(state)
        device = self._restore_device(torch.device(state["device"]))
        rec = state["recorder"]
        recorder = Recorder(self.num_envs, device, rec["keep_infos"], int(rec["storage"]["capacity"]))
        recorder.load_state_dict(rec)
        self._recorder = recorder
        self._load_step_state(state["step"], device)

    def _step_state(self) -> dict[str, Any]:
        """The wrapper's own step state (see :meth:`state_dict`)."""
        return {}

    def _check_step_state(self, state: dict[str, Any]) -> None:
        """Raises ``ValueError`` if ``state`` does not fit this wrapper beyond kind and size."""

    def _restore_device(self, saved: torch.device) -> torch.device:
        """The device a restored storage goes to: this wrapper's."""
        return self.device

    def _load_step_state(self, step: dict[str, Any], device: torch.device) -> None:
        """Restores :meth:`_step_state` (tensors go to ``device``)."""
