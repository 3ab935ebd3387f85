"""Every ``Examples:`` section of torchbuf's docstrings (the API reference shows them) runs as written.

A module that needs an optional dependency which is not installed is skipped, saying
which; an example that needs a particular version marks itself with doctest's
``+SKIP`` directive where that version is absent.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

import torchbuf

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(torchbuf.__path__, "torchbuf.")]
    return sorted(n for n in names if not n.endswith("__main__"))  # importing those runs them


def _examples() -> list:
    finder, params = doctest.DocTestFinder(exclude_empty=True), []
    for name in _module_names():
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=f"{name}: {err}")))
            continue
        params += [pytest.param(t, id=t.name) for t in finder.find(module, name) if t.examples]
    return params


EXAMPLES = _examples()


@pytest.mark.parametrize("test", EXAMPLES)
def test_docstring_example_runs(test):
    out = io.StringIO()
    result = doctest.DocTestRunner(optionflags=FLAGS).run(test, out=out.write)
    assert result.failed == 0, out.getvalue()


def test_examples_were_found():
    assert sum(p.values[0] is not None for p in EXAMPLES) >= 10
