"""Every Python block of the README and docs/ runs as written.

A block that needs a particular version of a package starts with one or more lines
``# requires: <requirement>`` (e.g. ``# requires: gymnasium>=1.0``); it is skipped,
saying why, where the installed version does not satisfy them. The venvs that exist
for a package (the sims, lerobot and robomimic venvs) name it in ``DOCS_MUST_RUN``
(space-separated): there a block that requires it fails instead of skipping, so its
examples cannot go unrun.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    pytest.param(code, id=f"{path.name}:{i}")
    for path in PAGES
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))
]
REQUIRES = re.compile(r"# requires: (.+)")
MUST_RUN = set(os.environ.get("DOCS_MUST_RUN", "").split())


def requirements(code: str) -> list[Requirement]:
    """The ``# requires:`` lines at the top of ``code``."""
    reqs = []
    for line in code.splitlines():
        match = REQUIRES.fullmatch(line.strip())
        if match is None:
            break
        reqs.append(Requirement(match.group(1)))
    return reqs


def unmet_requirements(code: str) -> list[str]:
    """The ``# requires:`` lines at the top of ``code`` that the installed packages fail."""
    unmet = []
    for req in requirements(code):
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or not req.specifier.contains(installed, prereleases=True):
            unmet.append(f"{req} (installed: {installed})")
    return unmet


@pytest.mark.parametrize("code", BLOCKS)
def test_example_runs(code):
    unmet = unmet_requirements(code)
    if unmet:
        must = MUST_RUN & {req.name for req in requirements(code)}
        assert not must, f"DOCS_MUST_RUN names {sorted(must)}, yet the example needs " + ", ".join(unmet)
        pytest.skip("the example needs " + ", ".join(unmet))
    exec(compile(code, "<example>", "exec"), {})


def test_examples_were_found():
    assert len(BLOCKS) >= 2


def test_every_package_that_must_run_has_examples():
    required = {req.name for p in BLOCKS for req in requirements(p.values[0])}
    assert required >= MUST_RUN, f"no example requires {sorted(MUST_RUN - required)}"


def test_requirements_are_read():
    assert unmet_requirements("# requires: pytest>=1\nx = 1\n") == []
    assert unmet_requirements("# requires: pytest<1\n") == [f"pytest<1 (installed: {pytest.__version__})"]
    assert unmet_requirements("x = 1\n# requires: pytest<1\n") == []  # only the leading lines
    assert unmet_requirements("# requires: no-such-package-xyz\n") == [
        "no-such-package-xyz (installed: None)"
    ]


def test_every_page_is_in_the_site():
    """``make docs`` fails on a page outside every toctree: list new pages in docs/index.md."""
    toctrees = re.findall(r"```\{toctree\}\n(.*?)```", (ROOT / "docs" / "index.md").read_text(), re.S)
    listed = {line.strip() for tree in toctrees for line in tree.splitlines() if line.strip()}
    pages = {p.stem for p in (ROOT / "docs").glob("*.md") if p.stem != "index"}
    assert pages - listed == set(), "add these pages to a toctree in docs/index.md"
