"""Each row's last set column: the numpy route (the CPU pops') against a plain loop."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from torchbuf.buffer.reading import _last_true


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 6), st.integers(0, 40))))
def test_each_rows_last_set_column_or_minus_one(mask):
    expected = [max((j for j, v in enumerate(row) if v), default=-1) for row in mask.tolist()]
    got = _last_true(mask, np.arange(mask.shape[1]), np)
    assert got.dtype == np.int64 and got.tolist() == expected


def test_wide_rows_take_wider_integers():
    mask = np.zeros((2, 40_000), dtype=bool)
    mask[0, 39_999] = mask[1, 3] = True
    assert _last_true(mask, np.arange(40_000), np).tolist() == [39_999, 3]
