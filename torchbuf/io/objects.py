r"""Host objects (infos) as data: a JSON tree and one raw byte buffer, no pickle.

:func:`encode` turns a value made of data — ``None``, ``bool``, ``int``, ``float``,
``complex``, ``str``, ``bytes``, lists, tuples, dicts, ``OrderedDict``\\ s, sets,
numpy arrays and scalars, tensors — into a JSON-able tree and a byte buffer that
holds the arrays' and tensors' contents; :func:`decode` rebuilds the value from them,
of the same types, dtypes, shapes and devices. Decoding parses JSON and reads bytes
as the dtypes that the tree names (object dtypes refused): nothing in a file can make
it run code. Anything else (a class instance, a function) makes :func:`encode` raise
:class:`NotDataError`, naming where it sits; such values can only be pickled.

In the tree, lists are JSON arrays, dicts whose keys are all strings (none ``"$"``)
JSON objects, and everything else an object tagged by its ``"$"`` key, e.g.
``{"$": "ndarray", "dtype": "<f4", "shape": [2, 3], "at": 0}`` (the contents at byte
``at`` of the buffer).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["NotDataError", "ObjectsError", "decode", "encode"]

_ALIGN = 64
_NUMPY_KINDS = "biufcSUmM"  # bool, ints, floats, complex, bytes, str, timedelta, datetime
_TORCH_DTYPES = {str(d): d for d in vars(torch).values() if isinstance(d, torch.dtype)}


class NotDataError(TypeError):
    """A value holds something that is not data (it could only be pickled)."""


class ObjectsError(ValueError):
    """An encoded tree is malformed (it names an unknown tag, dtype or range)."""


# ------------------------------------------------------------------------ encoding
def encode(value: Any, where: str = "infos") -> tuple[Any, bytes]:
    """Encodes ``value`` as a JSON-able tree and the bytes of its arrays and tensors.

    Args:
        value: The value to encode.
        where: Its name, for error messages.

    Returns:
        ``(tree, buffer)``.

    Raises:
        NotDataError: ``value`` holds something else than data; the message names
            it (e.g. ``infos[3]['obj']``).
    """
    out = _Encoder()
    return out.encode(value, where), b"".join(out.chunks)


class _Encoder:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def encode(self, x: Any, where: str) -> Any:
        kind = type(x)
        if kind in (str, int, bool) or x is None:
            return x
        if kind is float:
            return x if x == x and abs(x) != float("inf") else {"$": "float", "v": repr(x)}
        if kind is list:
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if kind is dict:
            if all(type(k) is str for k in x) and "$" not in x:
                return {k: self.encode(v, f"{where}[{k!r}]") for k, v in x.items()}
            return {"$": "dict", "items": self._items(x, where)}
        encoder = _ENCODERS.get(kind)
        if encoder is not None:
            return encoder(self, x, where)
        if isinstance(x, np.generic) and x.dtype.kind in _NUMPY_KINDS:
            return {"$": "npscalar", "dtype": x.dtype.str, "hex": x.tobytes().hex()}
        raise NotDataError(
            f"{where}: a {kind.__module__}.{kind.__qualname__} is not data (None, bool, int, float, "
            "complex, str, bytes, lists, tuples, dicts, sets, numpy arrays and scalars, tensors); "
            "only pickle can save it: pass allow_pickle=True (loading it then needs allow_pickle=True too)"
        )

    def _items(self, x: dict, where: str) -> list[list[Any]]:
        return [[self.encode(k, f"{where} key"), self.encode(v, f"{where}[{k!r}]")] for k, v in x.items()]

    def put(self, raw: bytes) -> int:
        at = self.size
        pad = -len(raw) % _ALIGN
        self.chunks += [raw, b"\0" * pad]
        self.size += len(raw) + pad
        return at

    def ndarray(self, x: np.ndarray, where: str) -> Any:
        shape = list(x.shape)
        if x.dtype == object:
            items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(x.reshape(-1))]
            return {"$": "ndarray", "dtype": "object", "shape": shape, "items": items}
        if x.dtype.kind not in _NUMPY_KINDS or x.dtype.fields is not None:
            raise NotDataError(f"{where}: numpy dtype {x.dtype} is not saved as data; pass allow_pickle=True")
        return {"$": "ndarray", "dtype": x.dtype.str, "shape": shape, "at": self.put(x.tobytes())}

    def tensor(self, x: torch.Tensor, where: str) -> Any:
        if x.layout != torch.strided or x.is_quantized or x.is_nested or type(x) is not torch.Tensor:
            raise NotDataError(f"{where}: a {type(x).__name__} ({x.layout}) is not saved as data")
        flat = x.detach().to("cpu").contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
        at = self.put(raw)
        return {
            "$": "tensor",
            "dtype": str(x.dtype),
            "shape": list(x.shape),
            "device": str(x.device),
            "at": at,
        }


_ENCODERS: dict[type, Callable[[_Encoder, Any, str], Any]] = {
    tuple: lambda e, x, w: {"$": "tuple", "items": [e.encode(v, f"{w}[{i}]") for i, v in enumerate(x)]},
    set: lambda e, x, w: {"$": "set", "items": [e.encode(v, f"{w} item") for v in x]},
    frozenset: lambda e, x, w: {"$": "frozenset", "items": [e.encode(v, f"{w} item") for v in x]},
    collections.OrderedDict: lambda e, x, w: {"$": "odict", "items": e._items(x, w)},
    complex: lambda e, x, w: {"$": "complex", "v": [repr(x.real), repr(x.imag)]},
    bytes: lambda e, x, w: {"$": "bytes", "hex": x.hex()},
    np.ndarray: _Encoder.ndarray,
    torch.Tensor: _Encoder.tensor,
}


# ------------------------------------------------------------------------ decoding
def decode(tree: Any, buffer: bytes | bytearray | memoryview) -> Any:
    """Rebuilds what :func:`encode` encoded.

    Arrays and tensors are copies out of ``buffer`` (writable, independent).

    Args:
        tree: The tree, as parsed from JSON.
        buffer: The bytes of the arrays and tensors.

    Returns:
        The value.

    Raises:
        ObjectsError: the tree is malformed (an unknown tag or dtype, a range
            outside ``buffer``, a wrong type); the message says where.
    """
    try:
        return _Decoder(memoryview(buffer)).decode(tree, "")
    except RecursionError as err:
        raise ObjectsError("nested too deeply") from err


class _Decoder:
    def __init__(self, buffer: memoryview):
        self.buffer = buffer

    def decode(self, x: Any, where: str) -> Any:
        kind = type(x)
        if kind in (str, int, bool, float) or x is None:
            return x
        if kind is list:
            return [self.decode(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if kind is not dict:
            raise ObjectsError(f"at {where or 'the top'}: unexpected {kind.__name__}")
        if "$" not in x:
            return {k: self.decode(v, f"{where}[{k!r}]") for k, v in x.items()}
        tag = x["$"]
        decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
        if decoder is None:
            raise ObjectsError(f"at {where or 'the top'}: unknown tag {tag!r}")
        try:
            return decoder(self, x, where)
        except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as err:
            if isinstance(err, ObjectsError):
                raise
            raise ObjectsError(f"at {where or 'the top'}: malformed {tag!r} entry: {err!r}") from err

    def items(self, x: dict, where: str) -> list[Any]:
        items = x["items"]
        if not isinstance(items, list):
            raise ObjectsError(f"at {where or 'the top'}: 'items' is not a list")
        return [self.decode(v, f"{where}[{i}]") for i, v in enumerate(items)]

    def pairs(self, x: dict, where: str) -> list[tuple[Any, Any]]:
        pairs = self.items(x, where)
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise ObjectsError(f"at {where or 'the top'}: dict items are not [key, value] pairs")
        return [(_hashable(k, where), v) for k, v in pairs]

    def raw(self, x: dict, nbytes: int, where: str) -> memoryview:
        at = x["at"]
        if type(at) is not int or at < 0 or at + nbytes > len(self.buffer):
            raise ObjectsError(f"at {where or 'the top'}: bytes {at!r}..+{nbytes} lie outside the buffer")
        return self.buffer[at : at + nbytes]

    def ndarray(self, x: dict, where: str) -> np.ndarray:
        shape = _shape(x["shape"], where)
        if x["dtype"] == "object":
            items = self.items(x, where)
            out = np.empty(len(items), dtype=object)
            for i, item in enumerate(items):
                out[i] = item
            return out.reshape(shape)
        dtype = _numpy_dtype(x["dtype"], where)
        count = math.prod(shape)
        raw = self.raw(x, count * dtype.itemsize, where)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape).copy()

    def tensor(self, x: dict, where: str) -> torch.Tensor:
        shape = _shape(x["shape"], where)
        dtype = _TORCH_DTYPES.get(x["dtype"]) if isinstance(x["dtype"], str) else None
        if dtype is None:
            raise ObjectsError(f"at {where or 'the top'}: unknown torch dtype {x['dtype']!r}")
        count = math.prod(shape)
        raw = self.raw(x, count * dtype.itemsize, where)
        flat = (
            torch.frombuffer(bytearray(raw), dtype=torch.uint8)
            if count
            else torch.zeros(0, dtype=torch.uint8)
        )
        out = flat.view(dtype).reshape(shape)
        return out.to(torch.device(str(x["device"])))

    def npscalar(self, x: dict, where: str) -> np.generic:
        dtype = _numpy_dtype(x["dtype"], where)
        raw = bytes.fromhex(x["hex"])
        if len(raw) != dtype.itemsize:
            raise ObjectsError(f"at {where or 'the top'}: {len(raw)} bytes for a {dtype}")
        return np.frombuffer(raw, dtype=dtype, count=1)[0]


def _hashable(key: Any, where: str) -> Any:
    try:
        hash(key)
    except TypeError as err:
        raise ObjectsError(f"at {where or 'the top'}: unhashable dict key or set item") from err
    return key


def _shape(shape: Any, where: str) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(type(n) is int and 0 <= n < 2**48 for n in shape):
        raise ObjectsError(f"at {where or 'the top'}: bad shape {shape!r}")
    return tuple(shape)


def _numpy_dtype(name: Any, where: str) -> np.dtype:
    try:
        dtype = np.dtype(name) if isinstance(name, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in _NUMPY_KINDS or dtype.fields is not None or dtype.hasobject:
        raise ObjectsError(f"at {where or 'the top'}: numpy dtype {name!r} is not data")
    return dtype


def _float(text: Any) -> float:
    if not isinstance(text, str):
        raise ValueError(f"not a float's text: {text!r}")
    return float(text)


_DECODERS: dict[str, Callable[[_Decoder, dict, str], Any]] = {
    "float": lambda d, x, w: _float(x["v"]),
    "complex": lambda d, x, w: complex(_float(x["v"][0]), _float(x["v"][1])),
    "bytes": lambda d, x, w: bytes.fromhex(x["hex"]),
    "tuple": lambda d, x, w: tuple(d.items(x, w)),
    "set": lambda d, x, w: {_hashable(v, w) for v in d.items(x, w)},
    "frozenset": lambda d, x, w: frozenset(_hashable(v, w) for v in d.items(x, w)),
    "dict": lambda d, x, w: dict(d.pairs(x, w)),
    "odict": lambda d, x, w: collections.OrderedDict(d.pairs(x, w)),
    "ndarray": _Decoder.ndarray,
    "tensor": _Decoder.tensor,
    "npscalar": _Decoder.npscalar,
}
