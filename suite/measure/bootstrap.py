"""Intervals that cover what another run would see: a hierarchical bootstrap of the median.

Repeats within one worker process share its memory layout, thread placement and whatever else
the machine did at the time, so they vary less than runs do; resampling them alone gives
intervals that are too narrow. Each resample here first draws processes with replacement, then
draws each drawn process's repeats with replacement, and takes the median of the pool. With one
process it is the ordinary bootstrap of the repeats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000


def resampled_medians(groups: Sequence[Sequence[float]], rng: np.random.Generator) -> np.ndarray:
    """RESAMPLES medians, each of processes drawn with replacement and then their repeats."""
    kept = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not kept:
        raise ValueError("no measurements to resample")
    k = len(kept)
    longest = max(len(g) for g in kept)
    padded = np.full((k, longest), np.nan)
    for i, g in enumerate(kept):
        padded[i, : len(g)] = g
    sizes = np.array([len(g) for g in kept])
    chosen = rng.integers(0, k, size=(RESAMPLES, k))  # which process fills each slot
    n = sizes[chosen][..., None]  # (R, k, 1): the chosen process's repeat count
    repeat = np.floor(rng.random((RESAMPLES, k, longest)) * n).astype(int)
    values = padded[chosen[..., None], repeat]
    values[np.arange(longest)[None, None, :] >= n] = np.nan  # a shorter process fills fewer places
    return np.nanmedian(values.reshape(RESAMPLES, -1), axis=1)


def median_interval(groups: Sequence[Sequence[float]], seed: int = 0) -> tuple[float, float]:
    """95 % interval of the median of all repeats of all processes."""
    low, high = np.percentile(resampled_medians(groups, np.random.default_rng(seed)), [2.5, 97.5])
    return float(low), float(high)


def ratio_interval(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], seed: int = 0) -> tuple[float, float]:
    """95 % interval of median(b) / median(a), each side resampled hierarchically."""
    rng = np.random.default_rng(seed)
    low, high = np.percentile(resampled_medians(b, rng) / resampled_medians(a, rng), [2.5, 97.5])
    return float(low), float(high)
