"""The per-feature stats of a LeRobot dataset (``meta/stats.json`` and each episode's).

LeRobot keeps min, max, mean, std, count and the quantiles :data:`QUANTILES` of every
feature; images per channel in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
"""The quantiles LeRobot 0.4 keeps (``q01`` ... ``q99``)."""


def feature_stats(
    columns: dict[str, np.ndarray], features: dict[str, Any]
) -> dict[str, dict[str, np.ndarray]]:
    """LeRobot's per-feature stats: min, max, mean, std, count and quantiles over frames.

    Shapes as LeRobot's: a feature's shape per value, ``(1,)`` for scalars, and
    ``(C, 1, 1)`` per channel in ``[0, 1]`` for images. Quantiles are exact, numpy's
    linear interpolation (LeRobot's writer estimates them from histograms); an image's
    come from its 256-bin histogram per channel, which holds every pixel exactly.
    """
    out = {}
    for name, feature in features.items():
        column = columns[name]
        if feature["dtype"] == "image":
            stats = image_stats(column)
            shape: tuple[int, ...] = (column.shape[-1], 1, 1)
        else:
            stats = value_stats(column.reshape(len(column), -1))
            shape = tuple(feature["shape"])
        out[name] = {k: v.reshape(shape) for k, v in stats.items()}
        out[name]["count"] = np.array([len(column)])
    return out


def value_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Min, max, mean, std and quantiles of ``(frames, dims)`` values, per dim."""
    numeric = values.astype(np.float64)
    stats = {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": numeric.mean(axis=0),
        "std": numeric.std(axis=0),
    }
    stats.update({f"q{round(q * 100):02d}": np.quantile(numeric, q, axis=0) for q in QUANTILES})
    return stats


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """The stats of uint8 ``(frames, H, W, C)`` pixels per channel, scaled to ``[0, 1]``.

    Each channel's 256-bin histogram gives the same figures as numpy's reductions over
    every pixel (quantiles by numpy's linear interpolation), without sorting them.
    """
    channels = frames.shape[-1]
    pixels = frames.reshape(-1, channels)
    counts = np.stack([np.bincount(pixels[:, c], minlength=256) for c in range(channels)])  # (C, 256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    n = pixels.shape[0]
    mean = (counts @ np.arange(256)) / (255.0 * n)  # exact integer sums, one rounding
    var = (counts * (levels[None, :] - mean[:, None]) ** 2).sum(axis=1) / n
    seen = counts > 0
    stats = {
        "min": levels[seen.argmax(axis=1)],
        "max": levels[255 - seen[:, ::-1].argmax(axis=1)],
        "mean": mean,
        "std": np.sqrt(var),
    }
    cum = counts.cumsum(axis=1)  # cum[c, v]: pixels of channel c at or below level v
    for q in QUANTILES:
        pos = q * (n - 1)  # numpy's linear method: between sorted values floor(pos) and floor(pos) + 1
        lo, frac = int(np.floor(pos)), pos - np.floor(pos)
        below = levels[(cum <= lo).sum(axis=1)]
        above = levels[(cum <= min(lo + 1, n - 1)).sum(axis=1)]
        stats[f"q{round(q * 100):02d}"] = below + frac * (above - below)
    return stats
