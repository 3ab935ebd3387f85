"""The pop API that every buffering wrapper shares, over one :class:`Recorder`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from torchbuf.recorder import Recorder
from torchbuf.types import TrajectoryWithRew, TransitionsWithRew


class PopAPI:
    """Counters and pops of imitation's ``BufferingWrapper``, for any wrapper.

    A subclass sets ``_recorder`` and ``error_on_premature_reset`` and calls
    :meth:`_check_premature_reset` before it resets.
    """

    _recorder: Recorder
    error_on_premature_reset: bool

    @property
    def error_on_premature_event(self) -> bool:
        """Alias of ``error_on_premature_reset`` (the name imitation's docs list)."""
        return self.error_on_premature_reset

    @error_on_premature_event.setter
    def error_on_premature_event(self, value: bool) -> None:
        self.error_on_premature_reset = value

    @property
    def n_transitions(self) -> int | None:
        """Transitions recorded since the last pop; ``None`` before the first reset."""
        return self._recorder.n_transitions

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

    def pop_transitions(self) -> TransitionsWithRew:
        """Pops recorded transitions (env by env, in time order).

        Returns:
            All transitions not returned by an earlier pop, as one batch on the
            storage device.

        Raises:
            RuntimeError: empty (no transitions recorded since last pop).
        """
        return self._recorder.pop_transitions()

    def pop_trajectories(self) -> tuple[Sequence[TrajectoryWithRew], list[int]]:
        """Pops recorded trajectories ``trajs`` and episode lengths ``ep_lens``.

        Returns:
            ``(trajs, ep_lens)``: fragments of everything recorded since the last
            pop, as a :class:`~torchbuf.trajectories.Trajectories` sequence. They
            may miss initial states (an earlier pop took them) and terminal states
            (episode still running). ``ep_lens`` holds the full lengths of the
            episodes completed since the last pop.
        """
        return self._recorder.pop_trajectories()

    def pop_finished_trajectories(self) -> tuple[Sequence[TrajectoryWithRew], list[int]]:
        """Pops recorded complete trajectories ``trajs`` and episode lengths ``ep_lens``.

        Returns:
            ``(trajs, ep_lens)``: trajectories ending in a terminal state (possibly
            missing initial states popped earlier), and fragments of episodes that
            a partial reset abandoned (``terminal=False``: they can never end).
            Running episodes stay recorded and come out of a later pop.
        """
        return self._recorder.pop_trajectories(finished_only=True)

    def _check_premature_reset(self, name: str) -> None:
        """Raises if a reset would discard transitions recorded since the last pop.

        Raises:
            RuntimeError: ``error_on_premature_reset`` and such transitions exist.
        """
        if self.error_on_premature_reset and self._recorder.n_transitions:
            raise RuntimeError(f"{name} reset() before samples were accessed")
