"""LeRobot image stats from per-channel histograms equal numpy's reductions over every pixel."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from torchbuf.formats.lerobot_stats import QUANTILES, image_stats


def _numpy_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """The oracle: numpy's own reductions over the pixels, per channel, in [0, 1]."""
    values = frames.reshape(-1, frames.shape[-1]).astype(np.float64) / 255.0
    out = {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0)}
    out.update({f"q{round(q * 100):02d}": np.quantile(values, q, axis=0) for q in QUANTILES})
    return out


@settings(max_examples=200, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 5), st.just(3)),
    low=st.integers(0, 255),
    span=st.integers(0, 255),
    seed=st.integers(0, 2**16),
)
def test_image_stats_equal_numpys_over_every_pixel(shape, low, span, seed):
    high = min(255, low + span)
    frames = np.random.default_rng(seed).integers(low, high + 1, shape, dtype=np.uint8)
    got, want = image_stats(frames), _numpy_stats(frames)
    assert set(got) == set(want)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-12, atol=1e-12, err_msg=key)


def test_image_stats_of_a_large_batch_equal_numpys():
    frames = np.random.default_rng(0).integers(0, 256, (40, 84, 84, 3), dtype=np.uint8)
    frames[..., 1] //= 4  # channels of different ranges
    got, want = image_stats(frames), _numpy_stats(frames)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
