"""Runs imitation 1.0.1's own wrapper tests against torchbuf's drop-in.

``test_wrappers.py`` beside this file is imitation 1.0.1's ``tests/data/test_wrappers.py``,
byte for byte (MIT licensed, see ``LICENSE.imitation``). It does
``from imitation.data.wrappers import BufferingWrapper``: while pytest imports it, that
name is bound to :class:`torchbuf.compat.imitation.BufferingWrapper`, and restored right
after, so no other test module sees the swap.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("imitation", reason="imitation is not installed (the compat environment has 1.0.1)")

VENDORED = Path(__file__).with_name("test_wrappers.py")


@contextlib.contextmanager
def dropin() -> Iterator[None]:
    """Binds ``imitation.data.wrappers.BufferingWrapper`` to torchbuf's drop-in."""
    import imitation.data.wrappers as im_wrappers

    from torchbuf.compat.imitation import BufferingWrapper

    original = im_wrappers.BufferingWrapper
    im_wrappers.BufferingWrapper = BufferingWrapper
    try:
        yield
    finally:
        im_wrappers.BufferingWrapper = original


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """Imports the vendored module (collecting it) with the drop-in in place."""
    if isinstance(collector, pytest.Module) and collector.path == VENDORED:
        with dropin():
            return (yield)
    return (yield)


@pytest.fixture
def vendored_module() -> ModuleType:
    """The vendored test module as pytest imported it (imported here if not collected)."""
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path) == VENDORED:
            return module
    spec = importlib.util.spec_from_file_location("imitation_1_0_1_test_wrappers", VENDORED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with dropin():
        spec.loader.exec_module(module)
    return module
