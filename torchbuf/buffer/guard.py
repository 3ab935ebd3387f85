"""A wrapper belongs to one thread at a time: overlapping calls fail loudly.

Recording and popping move cursors and counters that a second thread would see half
updated (a probe lost half of its transitions that way). Locking every step would cost
every user; instead each entry point marks the wrapper busy and a call that finds it
busy raises, naming both calls. The check is two attribute writes per call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def exclusive(method: F) -> F:
    """Raises ``RuntimeError`` when ``method`` runs while another guarded call is running.

    Args:
        method: A method of a wrapper (the busy mark lives on the instance).

    Returns:
        The guarded method.
    """

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        busy = self.__dict__.get("_torchbuf_busy")
        if busy is not None:
            raise RuntimeError(
                f"{type(self).__name__}.{method.__name__}() called while {busy}() is running: "
                "a buffering wrapper belongs to one thread (give each thread its own wrapper)"
            )
        self.__dict__["_torchbuf_busy"] = method.__name__
        try:
            return method(self, *args, **kwargs)
        finally:
            self.__dict__["_torchbuf_busy"] = None

    return guarded  # type: ignore[return-value]
