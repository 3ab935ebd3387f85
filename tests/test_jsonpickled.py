"""jsonpickle text decoded as data only (imitation's ``datasets`` infos).

The payloads are written by hand, as an attacker would write them; where jsonpickle is
installed (the compat environment), what it encodes is decoded by both and compared,
and the live payloads are shown to run under ``jsonpickle.decode``.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from torchbuf.formats.jsonpickled import decode
from torchbuf.io import UnsafeLoadError


def _open_payload(marker):
    """``open(marker, "w")``: creates the marker file when jsonpickle decodes it."""
    return {"py/reduce": [{"py/function": "builtins.open"}, {"py/tuple": [str(marker), "w"]}]}


def _system_payload(marker):
    """``os.system("touch marker")``: runs a shell command when jsonpickle decodes it."""
    return {"py/reduce": [{"py/function": "os.system"}, {"py/tuple": [f"touch '{marker}'"]}]}


NO_JSONPICKLE = "jsonpickle is not installed (the compat environment has it)"
LIVE = {"open": _open_payload, "system": _system_payload}

_NDARRAY = {"py/tuple": [{"py/type": "numpy.ndarray"}, {"py/tuple": [0]}, {"py/b64": "Yg=="}]}
_F8 = {
    "py/reduce": [
        {"py/type": "numpy.dtype"},
        {"py/tuple": ["f8", False, True]},
        {"py/tuple": [3, "<", None, None, None, -1, -1, 0]},
    ]
}


def _array(args=_NDARRAY, dtype=_F8, data=None, fn="numpy._core.multiarray._reconstruct"):
    """numpy's ``ndarray.__reduce__`` as jsonpickle writes it (one float64 by default)."""
    data = {"py/b64": "AAAAAAAA8D8="} if data is None else data
    state = {"py/tuple": [1, {"py/tuple": [1]}, dtype, False, data]}
    return {"py/reduce": [{"py/function": fn}, args, state]}


REFUSED = {
    "py/object": {"py/object": "subprocess.Popen", "py/state": {"args": "true"}},
    "py/function": {"py/function": "os.system"},
    "py/type": {"py/type": "os._wrap_close"},
    "py/repr": {"py/repr": "os/os.system('true')"},
    "py/newobj": {"py/newobj": [{"py/type": "subprocess.Popen"}]},
    "py/initargs": {"py/initargs": {"py/tuple": ["true"]}},
    "py/newargs": {"py/newargs": {"py/tuple": ["true"]}},
    "py/module": {"py/module": "os"},
    "py/iterator": {"py/iterator": [1]},
    "py/ref": {"py/ref": "/"},
    "py/state": {"py/state": {}},
}
NUMPY_LOOKALIKES = {
    "masked array": _array(
        args={"py/tuple": [{"py/type": "numpy.ma.MaskedArray"}, {"py/tuple": [0]}, {"py/b64": "Yg=="}]}
    ),
    "other function": _array(fn="numpy.lib.npyio.load"),
    "object dtype": _array(
        dtype={
            "py/reduce": [
                {"py/type": "numpy.dtype"},
                {"py/tuple": ["O8", False, True]},
                {"py/tuple": [3, "|", None, None, None, -1, -1, 63]},
            ]
        },
        data=[_open_payload("never")],
    ),
    "structured dtype": _array(
        dtype={
            "py/reduce": [
                {"py/type": "numpy.dtype"},
                {"py/tuple": ["V8", False, True]},
                {"py/tuple": [3, "|", None, {"py/tuple": ["a"]}, {"a": 0}, 8, 1, 16]},
            ]
        }
    ),
    "dtype from a payload": _array(dtype=_system_payload("never")),
}


# ------------------------------------------------------------------ refused, never run
@pytest.mark.parametrize("kind", sorted(LIVE))
def test_a_reduce_that_would_run_code_is_refused_and_never_run(tmp_path, kind):
    marker = tmp_path / "ran"
    text = json.dumps({"ok": 1, "evil": {"x": LIVE[kind](marker)}})
    with pytest.raises(UnsafeLoadError, match=r"info\['evil'\]\['x'\]: jsonpickle tag 'py/reduce'"):
        decode(text, "info")
    assert not marker.exists()


@pytest.mark.parametrize("kind", sorted(LIVE))
def test_the_live_payloads_run_under_jsonpickle(tmp_path, kind):
    """The payloads above are not inert: jsonpickle's own decode runs them."""
    jsonpickle = pytest.importorskip("jsonpickle", reason=NO_JSONPICKLE)
    marker = tmp_path / "ran"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # jsonpickle's note on a future default
        jsonpickle.decode(json.dumps(LIVE[kind](marker)))
    assert marker.exists()


@pytest.mark.parametrize("tag", sorted(REFUSED))
def test_every_tag_outside_the_data_forms_is_refused_naming_it(tag):
    with pytest.raises(UnsafeLoadError, match=rf"info\[0\]\['k'\]: jsonpickle tag '{tag}'"):
        decode(json.dumps([{"k": REFUSED[tag]}]), "info")


@pytest.mark.parametrize("kind", sorted(NUMPY_LOOKALIKES))
def test_reduces_that_only_look_like_numpys_are_refused(kind):
    with pytest.raises(UnsafeLoadError, match=r"info\['a'\](\[\d\])*: jsonpickle tag 'py/reduce'"):
        decode(json.dumps({"a": NUMPY_LOOKALIKES[kind]}), "info")


def test_a_tag_beside_other_keys_is_refused():
    with pytest.raises(UnsafeLoadError, match="'py/tuple'.*beside the keys"):
        decode(json.dumps({"a": {"py/tuple": [1], "py/reduce": [{"py/function": "os.system"}]}}))


@pytest.mark.parametrize("ref", [0, 5, -1, "0", True])
def test_a_reference_to_nothing_decoded_before_it_is_refused(ref):
    with pytest.raises(UnsafeLoadError, match="'py/id'"):
        decode(json.dumps({"py/tuple": [{"py/id": ref}]}))


def test_an_arrays_bytes_must_fill_its_shape():
    with pytest.raises(ValueError, match="4 bytes for a numpy float64 of shape"):
        decode(json.dumps({"a": _array(data={"py/b64": "AAAAAA=="})}))


# ------------------------------------------------------------------ data, decoded exactly
def test_data_forms_written_by_hand_decode_to_their_values():
    text = json.dumps(
        {
            "t": {"py/tuple": [1, "a", None]},
            "s": {"py/set": [1, 2]},
            "b": {"py/b64": "YWI="},
            "a": [_array(), {"py/id": 2}],  # numbered: the outer dict 0, the list 1, the array 2
            "n": math.nan,
        }
    )
    got = decode(text)
    assert got["t"] == (1, "a", None) and got["s"] == {1, 2} and got["b"] == b"ab"
    first, again = got["a"]
    assert first.dtype == np.float64 and first.tolist() == [1.0] and again is first
    assert first.flags.writeable and math.isnan(got["n"])


def _same(a, b):
    """Equal values of equal types (numpy: dtype, shape, layout and bits), NaN equal to NaN."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.flags.f_contiguous == b.flags.f_contiguous
        assert a.tobytes() == b.tobytes() and a.flags.writeable == b.flags.writeable
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


INTS = ["i1", "i2", "<i4", ">i4", "i8", "u1", ">u2", "u4", "u8"]
DTYPES = st.sampled_from(["?", *INTS, "f2", "f4", ">f8", "f8", "c8", "c16", "U3", "S2"])
ARRAYS = DTYPES.flatmap(
    lambda d: hnp.arrays(np.dtype(d), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
).flatmap(lambda a: st.sampled_from([a, np.asfortranarray(a), a.T]))
SCALARS = ARRAYS.filter(lambda a: a.size > 0).map(lambda a: a.reshape(-1)[0])
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=4)
    | st.binary(max_size=4)
    | ARRAYS
    | SCALARS
)
KEYS = st.text(max_size=4).filter(lambda k: not k.startswith("py/"))  # jsonpickle's tags (refused)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.sets(st.integers(0, 9) | st.text(max_size=2), max_size=3)
        | st.dictionaries(KEYS, inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(info=st.dictionaries(KEYS, VALUES, max_size=4), repeat=st.booleans())
def test_what_jsonpickle_encodes_decodes_as_jsonpickle_decodes_it(info, repeat):
    """Differential: infos of every data type (repeated objects become ``py/id``)."""
    jsonpickle = pytest.importorskip("jsonpickle", reason=NO_JSONPICKLE)
    if repeat:
        info = {**info, "again": list(info.values())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # jsonpickle's note on a future default
        text = jsonpickle.encode(info)
        want = jsonpickle.decode(text)
    _same(decode(text), want)
