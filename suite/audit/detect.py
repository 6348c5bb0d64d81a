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

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.special import stdtr, zeta
from scipy.stats import chi2

from suite.audit.decode import (
    ORDERS,
    SCALE,
    Blocks,
    ChannelOrder,
    bit_layout,
    bits_from_votes,
    blocks_of,
    read_blocks,
)
from suite.audit.defaults import DEFAULT_ALPHA
from suite.audit.output import SEARCH_FIELDS
from suite.watermark import Scheme

# The float path's LL offset: OpenCV centres U on 128 for uint8 pixels and on 0.5 for floats;
# one LL coefficient sums four pixels and pywt's Haar scales by 1/2: 2 * (128 - 0.5) = 255.
FLOAT_OFFSET = 255


@dataclass
class Readings:
    """What one image's blocks say, per channel order (rows, in the order of `orders`)."""

    blocks: Blocks
    # reading paths, in the order of `soft`'s rows: "uint8", "impulse", "unblurred", "float", "float-impulse"
    paths: tuple[str, ...]
    soft: np.ndarray  # (paths, orders, blocks) soft votes
    rgb: np.ndarray | None = None  # the decoded pixels, where the planes are not theirs
    _votes: dict[ChannelOrder, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def orders(self) -> tuple[ChannelOrder, ...]:
        return self.blocks.orders

    def votes(self, order: ChannelOrder) -> np.ndarray:
        """The reference's per-block scores in one order; computed when first asked (only the
        orders whose bits get reported ever are). Rebuilt planes take them from `rgb`, the pixels
        the reference decoder would read, where given."""
        if order not in self._votes:
            if self.blocks.exact or self.rgb is None:
                self._votes[order] = self.blocks.votes(self.orders.index(order))
            else:
                self._votes[order] = read_blocks(self.rgb, (order,)).votes(0)
        return self._votes[order]

    @classmethod
    def of(cls, blocks: Blocks, float_path: bool, rgb: np.ndarray | None = None) -> Readings:
        """Soft votes on every reading path: the float ones only with `float_path`, and
        "unblurred" only where the blocks are decoded pixels' (stored chroma was never blurred by
        an upsampler: on a JPEG's stored planes that path found nothing the others missed, in 252
        marked JPEGs at q80-q95); `rgb` gives the reference's votes where the planes were rebuilt
        from stored chroma."""
        peak = blocks.peak_sums
        soft = _SOFT.__getitem__ if blocks.exact else lambda sums: soft_votes(sums / np.float32(2))
        rows = {"uint8": soft(peak), "impulse": impulse_votes(blocks.impulses())}
        if blocks.exact:
            rows["unblurred"] = soft_votes(blocks.unblurred_peak_sums / np.float32(2))
        if float_path:
            # twice the distance from 255 of the coefficient farthest from it: max(peak - 510, 510 - trough),
            # written so that no uint16 goes negative (sums are at most 1020)
            offset = peak.dtype.type(2 * FLOAT_OFFSET)
            rows["float"] = soft(np.maximum(peak, 2 * offset - blocks.trough_sums) - offset)
            rows["float-impulse"] = impulse_votes(blocks.impulses(FLOAT_OFFSET))
        soft_rows = np.stack([row.astype(np.float64, copy=False) for row in rows.values()])
        return cls(blocks, tuple(rows), soft_rows, rgb)


@dataclass(frozen=True)
class Realignment:
    """How a search lined an edited image up with the mark (searches.py)."""

    edit: str  # "crop", "resize", "mirror" or "rotation" (output.SEARCH_FIELDS)
    # crop: (rows, columns) in pixels of the grid's first whole block; resize: original (w, h);
    # mirror: the axis the image was flipped along, "horizontal", "vertical", "diagonal" (its
    # rows made columns) or "anti-diagonal"; rotation: the degrees counter-clockwise it was
    # rotated by (1-2 with `--search always`; quarter turns 90, 180, 270)
    where: tuple[int, int] | str | float
    # a crop of a mirrored image: the axis it was flipped along ("horizontal" or "vertical"), the
    # grid's offset then counted in the image flipped back (`--search always` only)
    mirror: str | None = None
    # a resize whose original was cut to its shape afterwards (resizes.cuts): the original's
    # (width, height); `where` is then the size the image was resized from, the original's middle
    cut_from: tuple[int, int] | None = None

    def as_record(self) -> dict[str, object]:
        key = SEARCH_FIELDS[self.edit]
        record = {"edit": self.edit, key: list(self.where) if isinstance(self.where, tuple) else self.where}
        if self.mirror is not None:
            record["mirror"] = self.mirror
        if self.cut_from is not None:
            record["cut_from"] = list(self.cut_from)
        return record


@dataclass(frozen=True)
class SearchEvidence:
    """One scheme's strongest test in a search (searches.py), and where it lined the image up."""

    z: float  # negative when the votes are inverted
    p_value: float  # two-sided, corrected over every alignment, order and reading the search tried
    order: ChannelOrder
    path: str
    realignment: Realignment


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
    realignment: Realignment | None = None  # how a search found it in an edited image; None: aligned

    @property
    def bit_accuracy(self) -> float:
        return float(np.mean(self.bits == np.asarray(self.scheme.bits, dtype=bool)))


def soft_votes(value: np.ndarray) -> np.ndarray:
    """+1 at the bit-0 lattice point (9 mod 36), -1 at the bit-1 point (27), 0 at the boundaries."""
    return np.sin((2 * np.pi / SCALE) * value)


# soft votes of every LL value, indexed by twice the value (sums of four uint8 pixels)
_SOFT = soft_votes(np.arange(4 * 255 + 1) / 2.0)

# LL units at which an impulse vote saturates: the encoder's mean step is 9 (Blocks.impulses).
IMPULSE_SCALE = 10.0


def impulse_votes(impulses: np.ndarray) -> np.ndarray:
    """+1 where the read coefficient stands below its neighbours (a 0 lowers it on average), -1 above."""
    return -np.tanh(impulses / np.float32(2 * IMPULSE_SCALE))


# The decoys' rms is floored at this share of the scale T has when the blocks are shuffled among
# the bits (the root of the centred votes' sum of squares). Where votes follow the bits with no
# noise (a mark in flat colour, blurred, read where the blur left two values per bit) every decoy
# vanishes and z grows without bound (z = -271 against an aligned -5.2); the floor keeps z at most
# 4 sqrt(blocks). On clean images the decoys' rms is 0.17 to 2.5 times that scale (median 0.6 to 1,
# 1 % below 0.19 to 0.27: the votes' spatial correlation), so the floor seldom changes a null z.
SCALE_FLOOR = 0.25


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


@lru_cache(maxsize=64)
def _decoy_matrix(bits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The message as +1/-1 and, row d-1 for d = 1..L-1, the message shifted by d bits."""
    y = 1.0 - 2.0 * np.asarray(bits, dtype=np.float64)
    shifted = np.stack([np.roll(y, -d) for d in range(1, y.size)]) if y.size > 1 else np.empty((0, 1))
    y.flags.writeable = shifted.flags.writeable = False
    return y, shifted


def statistics(soft: np.ndarray, bits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, the decoys' mean square, the votes' spread) for each row of soft votes (..., blocks):
    see the module doc; each has `soft`'s leading shape."""
    length, blocks = len(bits), soft.shape[-1]
    rows = np.reshape(soft, (-1, blocks))
    if length < 2 or blocks < length:
        zeros = np.zeros(soft.shape[:-1])
        return zeros, zeros, zeros
    y, shifted = _decoy_matrix(bits)
    _, counts = bit_layout(blocks, length)
    if blocks % length:  # pad to whole periods so that block k lands in column k % L
        padded = np.zeros((rows.shape[0], -(-blocks // length) * length))
        padded[:, :blocks] = rows
        rows = padded
    sums = rows.reshape(rows.shape[0], -1, length).sum(axis=1)
    total = sums.sum(axis=1, keepdims=True)
    spread = np.maximum(np.einsum("ij,ij->i", rows, rows) - total[:, 0] ** 2 / blocks, 0.0)  # sum (w - mean)^2
    sums -= counts * (total / blocks)  # centre: the image's own bias goes
    t = sums @ y
    # decoy d pairs bit j's blocks with message bit j + d, after the fitted message is removed
    decoys = (sums - (t / length)[:, None] * y) @ shifted.T
    shape = soft.shape[:-1]
    return t.reshape(shape), np.mean(decoys**2, axis=1).reshape(shape), spread.reshape(shape)


def z_from(t: np.ndarray, decoy_ms: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """T over its scale: the decoys' rms, floored at SCALE_FLOOR times the spread's root."""
    scale = np.maximum(np.sqrt(decoy_ms), SCALE_FLOOR * np.sqrt(spread))
    flat = scale <= 1e-9 * np.maximum(1.0, np.abs(t))  # no variation to judge: no evidence
    return np.where(flat, 0.0, t / np.where(flat, 1.0, scale))


def z_scores(soft: np.ndarray, bits: tuple[int, ...]) -> np.ndarray:
    """T over the rms of its L-1 cyclic-shift decoys (see module doc), for each row of soft votes.

    `soft` is (..., blocks); the result has its leading shape.
    """
    return z_from(*statistics(soft, bits))


# How much a search's pooled scale may weigh, in units of one test's own decoys' degrees of freedom.
# Neighbouring alignments share pixels, so their scales agree more than independent ones would,
# which reads as a prior of unlimited weight: on 1,470 clean images under 35 edits, a weight of 2
# left the crop search's corrected p-values conservative (0.6 % under 0.01, 0.07 % under 0.001),
# where 4 let 1.3 % fall under 0.01 and 50 let 3.3 % (docs/audit.md, Searching).
PRIOR_WEIGHT = 2.0
MIN_PRIOR_TESTS = 16  # fewer tests in a pool than this give it no prior


@dataclass(frozen=True)
class ScalePrior:
    """What a pool of a search's tests says about each one's scale (Smyth's moderated t).

    A test's decoys estimate its squared scale with `dof` degrees of freedom; divided by the
    votes' spread (the squared scale of shuffled blocks) it is how much the votes' spatial
    correlation inflates T. Across a pool of tests that read the same image the same way (the crop
    search's 64 grid offsets), that inflation follows a prior: its typical value `ratio`, and a
    weight `dof` that comes from how much more the tests' estimates vary than their own sampling
    makes them. A test's scale is then shrunk towards the prior, and its t has the degrees of
    freedom of both: far more than its own decoys give (sd-v2's 32-bit message gives 19.5), so a
    corrected p-value needs a smaller z.
    """

    ratio: np.ndarray  # per pool: the prior squared scale over the spread (the pools' axis kept, of length 1)
    dof: np.ndarray  # per pool: the prior's weight d0 (0 where the pool is too small)

    @classmethod
    def of(cls, decoy_ms: np.ndarray, spread: np.ndarray, dof: float, axis: int) -> ScalePrior:
        """The prior of each pool along `axis` (decoy_ms and spread of the same shape)."""
        valid = (spread > 0) & (decoy_ms > 0)
        logs = np.log(np.where(valid, decoy_ms, 1.0) / np.where(valid, spread, 1.0))
        counts = valid.sum(axis=axis, keepdims=True)
        low, middle, high = _quartiles(np.where(valid, logs, np.inf), counts, axis)
        sampling = _log_chi2_quartiles(dof)  # of one test's estimate: log(chi2(dof) / dof)
        sampling_var = ((sampling[2] - sampling[0]) / 1.349) ** 2
        extra = ((high - low) / 1.349) ** 2 - sampling_var  # what the pool's own variation adds
        cap = PRIOR_WEIGHT * dof
        prior_dof = np.full(extra.shape, cap)
        varied = extra > zeta(2, cap / 2)  # NaN (an empty pool) is not
        prior_dof[varied] = np.minimum(2 * _trigamma_inverse(extra[varied]), cap)
        prior_dof[counts < MIN_PRIOR_TESTS] = 0.0
        ratio = np.exp(np.where(np.isfinite(middle), middle, 0.0) - sampling[1])
        return cls(ratio, prior_dof)

    def shrink(self, decoy_ms: np.ndarray, spread: np.ndarray, dof: float) -> tuple[np.ndarray, np.ndarray]:
        """(squared scales, degrees of freedom): each test's own estimate (shaped as for `of`)
        shrunk towards its pool's prior."""
        shrunk = (self.dof * self.ratio * spread + dof * decoy_ms) / (self.dof + dof)
        return shrunk, np.broadcast_to(self.dof + dof, shrunk.shape)


def _quartiles(values: np.ndarray, counts: np.ndarray, axis: int) -> np.ndarray:
    """(3, ...): the quartiles along `axis` of the first `counts` values once sorted (the others are
    +inf), interpolated as numpy's percentile does, NaN where `counts` is 0; one sort, where
    nanpercentile loops over the pools."""
    ordered = np.sort(np.moveaxis(values, axis, -1), axis=-1)  # sorting along the last axis is far faster
    present = np.moveaxis(counts, axis, -1)
    last = np.maximum(present - 1, 0)
    position = last * np.array([0.25, 0.5, 0.75])  # (..., 3)
    below = position.astype(np.intp)
    above = np.minimum(below + 1, last)
    low, high = np.take_along_axis(ordered, below, -1), np.take_along_axis(ordered, above, -1)
    with np.errstate(invalid="ignore"):  # an empty pool's values are all +inf: inf - inf, masked below
        value = np.where(present > 0, low + (position - below) * np.where(above > below, high - low, 0.0), np.nan)
    return np.expand_dims(np.moveaxis(value, -1, 0), 1 + axis % values.ndim)  # the pools' axis kept, of length 1


@lru_cache(maxsize=64)
def _log_chi2_quartiles(dof: float) -> np.ndarray:
    return np.log(chi2.ppf([0.25, 0.5, 0.75], dof) / dof)


def _trigamma_inverse(y: np.ndarray) -> np.ndarray:
    """x with trigamma(x) = y, for y > 0 (Newton's method from 0.5 + 1/y, as limma does; trigamma
    is zeta(2, x) and its derivative -2 zeta(3, x))."""
    y = np.maximum(np.asarray(y, dtype=np.float64), 1e-8)
    x = 0.5 + 1.0 / y
    for _ in range(6):
        trigamma = zeta(2, x)
        x = np.maximum(x - trigamma * (1 - trigamma / y) / (2 * zeta(3, x)), 1e-8)
    return x


def two_sided_p(z: float, dof: float) -> float:
    return float(2.0 * stdtr(dof, -abs(z)))


FLOAT_PATHS = frozenset({"float", "float-impulse"})  # for float-path schemes (SDXL) only


def assess(scheme: Scheme, readings: Readings, alpha: float = DEFAULT_ALPHA) -> Evidence:
    """Test one scheme in every channel order and reading path; judge by the strongest test."""
    rows = [i for i, path in enumerate(readings.paths) if scheme.float_path or path not in FLOAT_PATHS]
    if not readings.orders or (scheme.float_path and not set(readings.paths) >= FLOAT_PATHS):
        raise ValueError(
            f"readings hold paths {readings.paths} and orders {readings.orders}: too few for {scheme.name}"
        )
    paths = [readings.paths[i] for i in rows]
    tests = [(order, path) for path in paths for order in readings.orders]
    z_all = z_scores(readings.soft[rows], scheme.bits).ravel()
    strongest = int(np.argmax(np.abs(z_all)))
    z, (order, path) = float(z_all[strongest]), tests[strongest]
    p_value = min(1.0, two_sided_p(z, degrees_of_freedom(scheme.bits)) * len(tests))
    detected = p_value <= alpha
    bits_order = order if detected or "bgr" not in readings.orders else "bgr"
    bits = bits_from_votes(readings.votes(bits_order), scheme.length)
    return Evidence(scheme, detected, p_value, z, path, bits_order, bits)


def examine(
    rgb: np.ndarray,
    schemes: list[Scheme],
    alpha: float = DEFAULT_ALPHA,
    u: np.ndarray | None = None,
    *,
    blocks: Blocks | None = None,
) -> list[Evidence]:
    """Every scheme's verdict for one RGB uint8 image, reading its blocks once per channel order;
    from the U planes `u` or the `blocks` (in ORDERS, readers.Pixels) where given, the bits still
    from `rgb`."""
    if blocks is None:
        blocks = read_blocks(rgb, ORDERS) if u is None else blocks_of(u, ORDERS)
    readings = Readings.of(blocks, any(scheme.float_path for scheme in schemes), rgb)
    return [assess(scheme, readings, alpha) for scheme in schemes]
