"""jsonpickle text decoded as data only: imitation's ``datasets`` infos, no code run.

imitation 1.0.1 stores each step's info as ``jsonpickle.encode(info)`` and reads it
back with ``jsonpickle.decode``, which imports and calls whatever the text names
(a ``py/reduce`` of ``os.system`` runs a command). :func:`decode` walks the JSON
itself and builds only data, giving the same values as ``jsonpickle.decode`` for
what imitation writes:

- JSON values, dicts with string keys and lists;
- ``py/tuple``, ``py/set``, ``py/b64`` / ``py/b85`` (bytes) and ``py/id`` (a second
  reference to a value decoded earlier, numbered as jsonpickle numbers them);
- numpy arrays, scalars and dtypes in the exact ``py/reduce`` forms jsonpickle
  writes for them without its numpy extension (imitation registers none):
  ``numpy._core.multiarray._reconstruct`` of a plain ``numpy.ndarray``,
  ``numpy._core.multiarray.scalar`` and ``numpy.dtype`` (also under numpy 1's
  ``numpy.core`` names), for booleans, integers, floats, complex numbers, bytes and
  str. Their bytes are read with ``numpy.frombuffer``; nothing named in the text
  is imported or called.

Anything else (any other ``py/reduce``, ``py/function``, ``py/type``, ``py/object``,
``py/repr``, ``py/newobj``, ``py/initargs``, ``py/module``, ``py/iterator``,
``py/ref``, ...) raises :class:`~torchbuf.io.UnsafeLoadError` naming where it sits
and the tag; so does a dict key that starts with ``py/`` (jsonpickle's tag space).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

from torchbuf.io.savedir import UnsafeLoadError

_TAG = "py/"
_RECONSTRUCT = ("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct")
_SCALAR = ("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar")
_NDARRAY_ARGS = {"py/tuple": [{"py/type": "numpy.ndarray"}, {"py/tuple": [0]}, {"py/b64": "Yg=="}]}
_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes, str: plain bytes in the file
_PENDING = object()  # a numbered value still being decoded (a reference to it is a cycle)


def decode(text: str, where: str = "value") -> Any:
    """Decodes jsonpickle text as data, never importing or calling what it names.

    Args:
        text: What ``jsonpickle.encode`` wrote.
        where: Its name, for error messages (e.g. ``"trajectory 2, step 5, info"``).

    Returns:
        The value ``jsonpickle.decode(text)`` gives, for the forms listed in the
        module's docstring.

    Raises:
        UnsafeLoadError: the text holds another tag; the message names where it
            sits (e.g. ``info['rollout']['obs']``) and the tag.
        ValueError: ``text`` is not JSON, or an array's bytes do not fill its shape.

    Examples:
        >>> decode('{"a": {"py/tuple": [1, 2]}}')
        {'a': (1, 2)}
    """
    return _Decoder().node(json.loads(text), where)


def _unsafe(where: str, tag: str, detail: str) -> UnsafeLoadError:
    return UnsafeLoadError(f"{where}: jsonpickle tag {tag!r} ({detail}) is not data")


class _Decoder:
    def __init__(self) -> None:
        self.numbered: list[Any] = []  # lists, dicts and reduced values, in jsonpickle's order

    def node(self, x: Any, where: str) -> Any:
        if x is None or type(x) in (str, int, float, bool):
            return x
        if type(x) is list:
            out: list[Any] = []
            self.numbered.append(out)
            out.extend(self.node(v, f"{where}[{i}]") for i, v in enumerate(x))
            return out
        tags = [k for k in x if k.startswith(_TAG)]
        if not tags:
            data: dict[str, Any] = {}
            self.numbered.append(data)
            for k, v in x.items():
                data[k] = self.node(v, f"{where}[{k!r}]")
            return data
        if len(x) != 1:
            raise _unsafe(where, tags[0], f"beside the keys {sorted(x)}")
        return self.tagged(tags[0], x[tags[0]], where)

    def tagged(self, tag: str, value: Any, where: str) -> Any:
        if tag in ("py/tuple", "py/set"):
            if type(value) is not list:
                raise _unsafe(where, tag, "not a list")
            items = [self.node(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if tag == "py/tuple" else set(items)
        if tag in ("py/b64", "py/b85") and type(value) is str:
            return base64.b64decode(value) if tag == "py/b64" else base64.b85decode(value)
        if tag == "py/id":
            return self.reference(value, where)
        if tag == "py/reduce" and type(value) is list:
            slot = len(self.numbered)
            self.numbered.append(_PENDING)
            self.numbered[slot] = self.reduce(value, where)
            return self.numbered[slot]
        raise _unsafe(where, tag, f"{value!r}"[:80])

    def reference(self, index: Any, where: str) -> Any:
        if type(index) is not int or not 0 <= index < len(self.numbered):
            raise _unsafe(where, "py/id", f"{index!r}: no value decoded before it has this number")
        if self.numbered[index] is _PENDING:
            raise _unsafe(where, "py/id", f"{index}: a value that refers to itself")
        return self.numbered[index]

    def reduce(self, items: list[Any], where: str) -> Any:
        """The numpy array, scalar or dtype that a ``py/reduce`` stands for."""
        head = items[0] if items and type(items[0]) is dict and len(items[0]) == 1 else {}
        name = head.get("py/function", head.get("py/type"))
        rest = items[1:]
        while rest and rest[-1] is None:  # jsonpickle pads the five parts of a reduce with None
            rest = rest[:-1]
        if head == {"py/type": "numpy.dtype"} and len(rest) == 2:
            return _dtype(self.node(rest[0], where), self.node(rest[1], where), where)
        if name in _SCALAR and "py/function" in head and len(rest) == 1:
            return _scalar(self.node(rest[0], where), where)
        if name in _RECONSTRUCT and "py/function" in head and len(rest) == 2 and rest[0] == _NDARRAY_ARGS:
            return _array(self.node(rest[1], where), where)
        called = name if isinstance(name, str) else f"{items[:1]!r}"[:80]
        raise _unsafe(where, "py/reduce", f"calls {called}")


def _dtype(args: Any, state: Any, where: str) -> np.dtype:
    """A dtype from numpy's ``dtype.__reduce__``: ``(code, False, True)`` and a version 3 state."""
    code_ok = type(args) is tuple and len(args) == 3 and type(args[0]) is str and args[1:] == (False, True)
    state_ok = type(state) is tuple and len(state) == 8 and state[0] == 3 and state[2:5] == (None,) * 3
    if not (code_ok and state_ok and state[1] in ("<", ">", "|", "=") and "," not in args[0]):
        raise _unsafe(where, "py/reduce", f"numpy.dtype{args!r} with state {state!r}")
    dtype = np.dtype(args[0])
    if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise _unsafe(where, "py/reduce", f"numpy.dtype {args[0]!r}: only {_KINDS!r} kinds are data")
    return dtype.newbyteorder(state[1]) if state[1] in "<>" else dtype


def _scalar(args: Any, where: str) -> Any:
    if not (type(args) is tuple and len(args) == 2 and isinstance(args[0], np.dtype)):
        raise _unsafe(where, "py/reduce", f"numpy scalar of {args!r}"[:120])
    return _values(args[0], args[1], (), where)[()]


def _array(state: Any, where: str) -> np.ndarray:
    """An array from numpy's ``ndarray.__reduce__`` state: ``(1, shape, dtype, is_fortran, bytes)``."""
    ok = type(state) is tuple and len(state) == 5 and state[0] == 1 and type(state[3]) is bool
    shape = state[1] if ok else None
    if not (ok and type(shape) is tuple and all(type(n) is int and n >= 0 for n in shape)):
        raise _unsafe(where, "py/reduce", f"numpy array state {state!r}"[:120])
    if not isinstance(state[2], np.dtype):
        raise _unsafe(where, "py/reduce", f"numpy array of dtype {state[2]!r}"[:120])
    return _values(state[2], state[4], shape, where, fortran=state[3])


def _values(dtype: np.dtype, raw: Any, shape: tuple[int, ...], where: str, fortran: bool = False) -> Any:
    if type(raw) is not bytes:
        raise _unsafe(where, "py/reduce", f"numpy values {raw!r} are not bytes"[:120])
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{where}: {len(raw)} bytes for a numpy {dtype} of shape {shape}")
    if dtype.itemsize == 0:  # an empty str / bytes dtype (numpy.str_("")): no bytes to read
        return np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    # a writable copy in native byte order, as numpy's unpickling gives
    flat = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    return flat.reshape(shape, order="F" if fortran else "C")
