"""Drop-in replacements for ``imitation.data.wrappers`` that return imitation's types.

:class:`BufferingWrapper` records into torchbuf's device storage and pops
``imitation.data.types`` batches (numpy, on the host), so code written against
imitation 1.0.1 (its ``AdversarialTrainer``, its tests) runs unchanged::

    from torchbuf.compat.imitation import BufferingWrapper

Differences from imitation's own wrapper, none of which its API promises:

- ``pop_transitions()`` returns transitions env by env, each env's in time order;
  imitation's orders them by trajectory completion. The set of rows is the same.
- ``pop_trajectories()`` / ``pop_finished_trajectories()`` return trajectories env by
  env; imitation's return completed ones in completion order, then running ones.
- Pops can be mixed in any order and nothing is lost: a running episode left behind
  by ``pop_finished_trajectories()`` comes out of a later ``pop_trajectories()`` or
  ``pop_transitions()`` (imitation trips an assertion on that mix).

Importing this module without imitation installed raises :class:`ImportError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torchbuf
from torchbuf.data.imitation import imitation_types
from torchbuf.data.types import from_imitation
from torchbuf.wrappers.sb3 import RolloutInfoWrapper

if TYPE_CHECKING:
    from imitation.data import types

imitation_types()  # fail at import, with a clear message, when imitation is missing

__all__ = ["BufferingWrapper", "RolloutInfoWrapper", "from_imitation"]


class BufferingWrapper(torchbuf.BufferingWrapper):
    """:class:`torchbuf.BufferingWrapper` whose pops return imitation's numpy types.

    Same constructor, counters and errors as :class:`torchbuf.BufferingWrapper`;
    observations, actions and rewards keep the env's dtypes, dict observations
    come out as ``imitation.data.types.DictObs``. The return types differ from the
    base class's by design (they are imitation's), hence the ``override`` ignores.
    """

    def pop_transitions(self) -> types.TransitionsWithRew:  # type: ignore[override]
        """Pops recorded transitions, as imitation's ``TransitionsWithRew``.

        Returns:
            All transitions recorded since the last pop, env by env in time order.

        Raises:
            RuntimeError: empty (no transitions recorded since last pop).
        """
        return super().pop_transitions().to_imitation()

    def pop_trajectories(self) -> tuple[list[types.TrajectoryWithRew], list[int]]:  # type: ignore[override]
        """Pops recorded trajectories ``trajs`` and episode lengths ``ep_lens``.

        Returns:
            A tuple ``(trajs, ep_lens)`` as :meth:`torchbuf.BufferingWrapper.pop_trajectories`
            returns, with trajectories as imitation's ``TrajectoryWithRew`` and ``ep_lens`` a
            list of ints.
        """
        return _to_imitation(*super().pop_trajectories())

    def pop_finished_trajectories(  # type: ignore[override]
        self,
    ) -> tuple[list[types.TrajectoryWithRew], list[int]]:
        """Pops recorded complete trajectories ``trajs`` and episode lengths ``ep_lens``.

        Returns:
            A tuple ``(trajs, ep_lens)`` as
            :meth:`torchbuf.BufferingWrapper.pop_finished_trajectories` returns, with
            trajectories as imitation's ``TrajectoryWithRew`` and ``ep_lens`` a list of ints.
        """
        return _to_imitation(*super().pop_finished_trajectories())


def _to_imitation(
    trajs: Sequence[torchbuf.TrajectoryWithRew], ep_lens: list[int]
) -> tuple[list[types.TrajectoryWithRew], list[int]]:
    return [t.to_imitation() for t in trajs], [int(n) for n in ep_lens]
