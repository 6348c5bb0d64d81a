"""Is a known dwtDct message in an image? A calibrated test on the per-block evidence.

The reference decoder's exact string match fails on most real images, and matching the majority
bits against a message is biased: flat chroma reads as all-zero bits. This test instead asks
whether the blocks' readings line up with the message's bit pattern better than with shifted
copies of that same pattern:

1. Soft votes. A block's read value v is pushed by the encoder to 9 (bit 0) or 27 (bit 1)
   modulo 36, so `w = sin(2*pi*v/36)` is about +1 for a 0 and -1 for a 1; a vote near the
   decision boundary counts little. The mean vote is subtracted, which removes whatever bias
   the image's colours give (all-zero flat chroma included).
2. Per-bit sums D_j of the centred votes over the blocks carrying bit j (block k carries k % L),
   and the statistic T = sum_j y_j D_j with y = +1/-1 for message bits 0/1.
3. Its scale comes from the image itself: after removing the fitted message component from D,
   T is recomputed for the L-1 cyclic shifts of the message (decoys with exactly the message's
   autocorrelation, so neighbouring-block correlation inflates them as much as the real T).
   z = T / rms(decoys).
4. z is two-sided: brightness edits and the SDXL float path can invert the votes. The p-value is
   Student-t with the decoys' effective degrees of freedom, which follow from the message's
   spectrum; over the tests of one scheme (channel orders, reading paths) it is Bonferroni-
   corrected. On the suite's calibration corpus of clean photographs and flat illustrations
   (also JPEG'd and brightened) these p-values are uniform or conservative down to 1e-4.

Reading paths: "uint8" reads the value the reference decoder reads. "float" models encoders
that marked float pixels (SDXL): their U channel is centred on 0.5 rather than 128, so the
marked coefficient is the one farthest from 255 in the LL band and its distance from 255 is
what lies on the lattice; negative coefficients are mirrored, which is why the reference
decoder reads many SDXL votes inverted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import stdtr

from suite.audit.decode import ORDERS, SCALE, Blocks, ChannelOrder, bits_from_votes, read_blocks, votes
from suite.watermark import Scheme

# Default significance level for `detected`, per scheme, after the correction over its tests.
# With the three built-in schemes an unmarked image is flagged with probability < 3e-6.
DEFAULT_ALPHA = 1e-6

# The float path's LL offset: OpenCV centres U on 128 for uint8 pixels and on 0.5 for floats;
# one LL coefficient sums four pixels and pywt's Haar scales by 1/2: 2 * (128 - 0.5) = 255.
FLOAT_OFFSET = 255.0


@dataclass(frozen=True)
class Readings:
    """What one image's blocks say in one channel order: the reference's values and votes."""

    order: ChannelOrder
    value: np.ndarray  # the value the reference decoder reads per block
    votes: np.ndarray  # the reference's per-block scores (bool)
    float_value: np.ndarray | None  # where a float-path encoder's lattice sits, when asked for

    @classmethod
    def of(cls, blocks: Blocks, order: ChannelOrder, float_path: bool) -> Readings:
        peak = blocks.peak()
        float_value = np.maximum(peak - FLOAT_OFFSET, FLOAT_OFFSET - blocks.trough()) if float_path else None
        return cls(order, peak, votes(peak), float_value)


@dataclass(frozen=True)
class Evidence:
    """One scheme's verdict in one image, from the strongest of its tests."""

    scheme: Scheme
    detected: bool
    p_value: float  # two-sided, corrected over the scheme's tests
    z: float  # the strongest test's statistic; negative when the votes are inverted
    path: str  # the strongest test's reading path: "uint8" or "float"
    order: ChannelOrder  # where the mark was found; the reference scripts' "bgr" when it was not
    bits: np.ndarray  # the reference decoder's raw bits in that channel order

    @property
    def bit_accuracy(self) -> float:
        return float(np.mean(self.bits == np.asarray(self.scheme.bits, dtype=bool)))


def soft_votes(value: np.ndarray) -> np.ndarray:
    """+1 at the bit-0 lattice point (9 mod 36), -1 at the bit-1 point (27), 0 at the boundaries."""
    return np.sin((2 * np.pi / SCALE) * value)


@lru_cache(maxsize=64)
def degrees_of_freedom(bits: tuple[int, ...]) -> float:
    """Effective degrees of freedom of the decoys' mean square (Welch-Satterthwaite).

    The L cyclic shifts see the noise only through the message's power spectrum: a flat
    spectrum gives about L-1, a message with strong periodicities (ASCII text) fewer.
    """
    y = 1.0 - 2.0 * np.asarray(bits, dtype=np.float64)
    power = np.abs(np.fft.rfft(y)) ** 2
    dof = np.full(power.size, 2.0)  # a complex frequency carries two degrees of freedom
    dof[0] = 1.0
    if y.size % 2 == 0:
        dof[-1] = 1.0
    weighted = dof * power
    return float(weighted.sum() ** 2 / np.sum(weighted**2 / dof))


def z_score(soft: np.ndarray, bits: tuple[int, ...]) -> float:
    """T over the rms of its L-1 cyclic-shift decoys, computed from the per-bit sums (see module doc)."""
    length = len(bits)
    if length < 2 or soft.size < length:
        return 0.0
    y = 1.0 - 2.0 * np.asarray(bits, dtype=np.float64)
    sums = np.bincount(np.arange(soft.size) % length, weights=soft - soft.mean(), minlength=length)
    t = float(y @ sums)
    residual = sums - (t / length) * y
    # decoy d pairs bit j's blocks with message bit j + d: a circular cross-correlation
    decoys = np.fft.irfft(np.conj(np.fft.rfft(residual)) * np.fft.rfft(y), n=length)[1:]
    scale = float(np.sqrt(np.mean(decoys**2)))
    if scale <= 1e-9 * max(1.0, abs(t)):
        return 0.0  # no variation to judge (a flat image): no evidence either way
    return t / scale


def two_sided_p(z: float, dof: float) -> float:
    return float(2.0 * stdtr(dof, -abs(z)))


def paths_of(scheme: Scheme) -> tuple[str, ...]:
    return ("uint8", "float") if scheme.float_path else ("uint8",)


def assess(scheme: Scheme, readings: dict[ChannelOrder, Readings], alpha: float = DEFAULT_ALPHA) -> Evidence:
    """Test one scheme in every channel order and reading path; judge by the strongest test."""
    tests = [(order, path) for order in ORDERS if order in readings for path in paths_of(scheme)]
    if not tests:
        raise ValueError("no readings to test")
    z, order, path = max(
        (
            (z_score(soft_votes(_value(readings[order], path)), scheme.bits), order, path)
            for order, path in tests
        ),
        key=lambda test: abs(test[0]),
    )
    p_value = min(1.0, two_sided_p(z, degrees_of_freedom(scheme.bits)) * len(tests))
    detected = p_value <= alpha
    bits_order = order if detected or "bgr" not in readings else "bgr"
    bits = bits_from_votes(readings[bits_order].votes, scheme.length)
    return Evidence(scheme, detected, p_value, z, path, bits_order, bits)


def _value(readings: Readings, path: str) -> np.ndarray:
    if path == "float":
        if readings.float_value is None:
            raise ValueError("readings were taken without the float path")
        return readings.float_value
    return readings.value


def examine(rgb: np.ndarray, schemes: list[Scheme], alpha: float = DEFAULT_ALPHA) -> list[Evidence]:
    """Every scheme's verdict for one RGB uint8 image, reading its blocks once per channel order."""
    float_path = any(scheme.float_path for scheme in schemes)
    readings = {order: Readings.of(read_blocks(rgb, order), order, float_path) for order in ORDERS}
    return [assess(scheme, readings, alpha) for scheme in schemes]
