"""Sphinx configuration of torchbuf's documentation site (``make docs``)."""

from __future__ import annotations

import importlib.metadata

project = "torchbuf"
author = "torchbuf contributors"
copyright = "torchbuf contributors"  # noqa: A001
release = importlib.metadata.version("torchbuf")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

# The Markdown pages are the site's pages; the API reference is reStructuredText.
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: ``[text](page.md#a-heading)`` links resolve to heading anchors up to level 3.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# autodoc: Google docstrings through napoleon; type hints rendered in the
# descriptions ("Parameters: venv (VecEnv) - ..."), as imitation's reference pages do.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autodoc_class_signature = "mixed"
autoclass_content = "class"
# imitation is optional: torchbuf.compat.imitation and torchbuf.data.imitation import it.
autodoc_mock_imports = ["imitation"]
autosummary_generate = False

napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections become fields of their class: the attributes that are
# properties are documented once, by autodoc.
napoleon_use_ivar = True

# No inventories are fetched: the build needs no network.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

html_theme = "furo"
html_title = f"torchbuf {release}"
html_static_path: list[str] = []
