"""h5py, imported on first use by the HDF5 formats (robomimic, ManiSkill)."""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = {"robomimic": "robomimic HDF5 files", "maniskill": "ManiSkill trajectory files"}


def h5py_module(extra: str) -> ModuleType:
    """h5py, or an ``ImportError`` naming the extra that installs it.

    Args:
        extra: The torchbuf extra of the format (``"robomimic"``, ``"maniskill"``).

    Returns:
        The h5py module.

    Raises:
        ImportError: h5py is not installed (the message says ``pip install 'torchbuf[<extra>]'``).
    """
    try:
        return importlib.import_module("h5py")
    except ImportError as err:
        raise ImportError(
            f"reading or writing {NAMES.get(extra, extra)} needs the optional dependency h5py: "
            f"pip install 'torchbuf[{extra}]'"
        ) from err
