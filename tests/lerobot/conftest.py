"""Lets lerobot's dataset modules import where torchvision's compiled ops cannot load.

lerobot 0.4 imports torchvision at module level (``torchvision.transforms.ToTensor``
turns image frames into tensors; its video decoding is not used for image datasets).
The torchvision wheels on PyPI link against CUDA builds of torch (``libtorch_cuda.so``),
so beside a CPU-only torch their ``_C`` extension fails to load, and torchvision's
``__init__`` then stops at registering fake kernels for ``torchvision::nms`` and
``torchvision::qnms``, operators the extension would have defined. Where the extension
does not load, this defines those two operator schemas (no kernels: calling them
fails) so that torchvision's pure-Python modules, and lerobot's reader, import as
they are. Where the extension loads, nothing is changed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch


def _torchvision_ops_load() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to do, lerobot's import will say so
    libs = list(Path(spec.submodule_search_locations[0]).glob("_C*.so"))
    try:
        for lib in libs:
            torch.ops.load_library(str(lib))
    except OSError:
        return False
    return True


if not _torchvision_ops_load():
    _SCHEMAS = torch.library.Library("torchvision", "DEF")  # kept alive for the session
    _SCHEMAS.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _SCHEMAS.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
