"""The soft votes the searches score, from the values blocks read, for U planes of any dtype.

The aligned test (detect.Readings) reads every block on all its paths once per image. The searches
read far more blocks (the 64 grid offsets of a crop, every size a resize may have come from), so
they score the two readings that need only each block's largest and smallest non-first LL
coefficients: "uint8", the value the reference decoder reads, and "float", the float-pixel
encoders' distance from 255 (detect.py). The other paths (impulses, 4:2:0 upsampling undone) stay
with the aligned test, where they cost one pass per image.
"""

from __future__ import annotations

import numpy as np

from suite.audit.decode import BLOCK, SCALE
from suite.audit.detect import FLOAT_OFFSET, soft_votes
from suite.watermark import Scheme

READINGS = ("uint8", "float")  # detect.Readings' path names; "float" only for float-path schemes
# soft votes by twice the value read (a sum of four uint8 pixels)
_BY_SUM = soft_votes(np.arange(4 * 255 + 1) / 2.0).astype(np.float32)


def readings_of(scheme: Scheme) -> tuple[str, ...]:
    """The readings a scheme is searched on: a prefix of READINGS."""
    return READINGS if scheme.float_path else READINGS[:1]


def soft(peak: np.ndarray, trough: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
    """(readings, ...) float32 soft votes (detect.soft_votes) from twice the largest and smallest
    non-first coefficients (sums of four pixels); the "float" reading only where `trough` is
    given. Written into `out` where given (the crop search's padded grid). Integer sums (of uint8
    planes) are looked up, float ones computed."""
    result = np.empty((1 if trough is None else 2, *peak.shape), np.float32) if out is None else out
    offset = 2 * FLOAT_OFFSET
    if np.issubdtype(peak.dtype, np.integer):
        np.take(_BY_SUM, peak, out=result[0])
        if trough is not None:  # max(peak - 510, 510 - trough), never negative: trough <= peak
            np.take(_BY_SUM, np.maximum(peak, 2 * offset - trough) - offset, out=result[1])
        return result
    turn = np.float32(np.pi / SCALE)  # soft_votes' 2 pi / SCALE, on half the sums
    np.multiply(peak, turn, out=result[0])
    if trough is not None:
        np.subtract(peak, np.float32(offset), out=result[1])
        np.maximum(result[1], np.float32(offset) - trough, out=result[1])
        result[1] *= turn
    return np.sin(result, out=result)


def block_extremes(band: np.ndarray, float_reading: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Largest (and, for the float reading, smallest) of the 15 non-first coefficients of each 4x4
    block of an LL band (..., rows * 4, cols * 4): (..., rows * cols), blocks row-major. Pairwise
    over strided views, which is far cheaper than gathering the blocks."""

    def pick(reduce: np.ufunc) -> np.ndarray:
        lower = reduce(reduce(band[..., 1::BLOCK, :], band[..., 2::BLOCK, :]), band[..., 3::BLOCK, :])
        lower = reduce(
            reduce(lower[..., 0::BLOCK], lower[..., 1::BLOCK]), reduce(lower[..., 2::BLOCK], lower[..., 3::BLOCK])
        )
        top = band[..., 0::BLOCK, :]
        top = reduce(top[..., 1::BLOCK], reduce(top[..., 2::BLOCK], top[..., 3::BLOCK]))
        return reduce(lower, top).reshape(*band.shape[:-2], -1)

    return pick(np.maximum), pick(np.minimum) if float_reading else None
