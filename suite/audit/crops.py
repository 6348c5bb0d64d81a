"""Marks whose block grid a crop has moved: the aligned test, over every grid offset and bit phase.

Cutting x pixels off the left and y off the top moves the 8x8 grid the mark lives in by
(y mod 8, x mod 8) and renumbers the blocks. Block (r, c) of the crop was block
(r + dr) * C + (c + dc) of the original, whose rows were C blocks long, so it carries bit
(r * C + c + s) mod L for some shift s: only C mod L and s matter. The evidence is all still
there; the aligned reader just looks at the wrong blocks.

The 64 grid offsets share their pixels: an LL coefficient is the sum of a 2x2 pixel square, so
the 2x2 sums at every pixel hold the LL bands of all of them, and the value a block at (y, x)
reads (its largest non-first coefficient) is a sliding maximum over those sums. One pass gives
every offset's soft votes on the lattice readings of votes.py, or on the encoder's mean step
(READINGS: which, see `search`), or both. For each offset, channel order and reading, the centred votes are summed into
an L x L table by (r mod L, c mod L). Its 2-D DFT holds the spectrum of the per-bit sums D for
every C at once (entry (C*k mod L, k)), and one inverse FFT per C gives T for every shift s. The
strongest T is scored as the aligned test scores its T: against the other shifts, once the fitted
message is removed from them (detect.z_scores does the same with explicit decoys; at offset 0,
the image's own C and s = 0 it gives the same z). Original widths are multiples of 64 from 256 to
2048 pixels, as every SD model's outputs are, and at least the image's own width; the p-value is
Bonferroni-corrected over every (offset, order, reading, C mod L, s) tried.

Most crops are not anywhere, though: a thumbnail, a square crop or img2dataset's centre_crop keeps
the middle, and an editor's crop often keeps a corner; and a crop either keeps the picture's shape
(both sides cut by the same share: a zoom) or changes it by cutting one side only (a portrait made
square). Where the crop came from an SD size at most LIKELY_ORIGINAL times its own, cut one of
those ways, each of those places fixes the offset, C and s at once, so they are a family of a few
dozen tests instead of tens of thousands: it gets LIKELY_SHARE of the search's alpha (a weighted
Bonferroni), which lowers the z a mark cropped there needs (sd-v2's, with the 40-58 degrees of
freedom its pooled scales have after a crop and JPEG q95: from 8.4-9.4 to 7.3-7.9) for a slightly
higher one anywhere else.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import scipy.fft
from scipy.special import stdtr

from suite.audit import votes
from suite.audit.decode import BLOCK, ORDERS, RING_SAMPLES, ring_sum
from suite.audit.decode import steps as steps_from
from suite.audit.detect import (
    FLOAT_OFFSET,
    SCALE_FLOOR,
    Realignment,
    ScalePrior,
    SearchEvidence,
    degrees_of_freedom,
    impulse_votes,
)
from suite.watermark import Scheme

# What each offset's blocks are read for (detect.Readings' path names): the lattice readings of
# votes.py, and the encoder's mean step against the ring around the block's coefficients, as the
# aligned test reads it (detect.py's impulse paths, which find what lossy chroma coding left of a
# mark cropped before or after it was saved as JPEG); the float ones only for float-path schemes.
READINGS = ("uint8", "float", "impulse", "float-impulse")
ORIGINAL_WIDTHS = range(256, 2049, 64)  # pixels: where a cropped image may have come from (heights too)
GRID = 8  # pixels per block side: the offsets tried are 0..7 in each direction
SPILL_Z = 4.0  # T's peak over its decoys' rms above which the fitted message is taken out of them
ROW_STEP = math.gcd(ORIGINAL_WIDTHS.start, ORIGINAL_WIDTHS.step) // GRID  # every C is a multiple of this
LIKELY_SHARE = 0.5  # of the crop search's alpha, for the crops that keep the middle or a corner
LIKELY_ORIGINAL = 2.0  # the largest original side, as a multiple of the crop's, a likely crop is sought in
# how far a crop that keeps the picture's shape may change it: a box dragged by hand, and sides
# rounded to whole pixels (a 10 % cut of 768x512 is 691x461: 1.1114 and 1.1106 times smaller)
LIKELY_SHAPE = 0.05


def row_lengths(length: int, width: int) -> np.ndarray:
    """The distinct C mod L of the originals a `width`-pixel crop can come from."""
    blocks = [original // GRID for original in ORIGINAL_WIDTHS if original >= width]
    return np.array(sorted({c % length for c in blocks}), dtype=np.intp)


def readings_of(scheme: Scheme, lattice: bool = True, steps: bool = False) -> tuple[str, ...]:
    """The READINGS a scheme is searched on: the lattice ones and/or the step ones."""
    count = 2 if scheme.float_path else 1
    return (READINGS[:count] if lattice else ()) + (READINGS[2 : 2 + count] if steps else ())


def tests_per_scheme(
    scheme: Scheme, width: int, orders: int = len(ORDERS), lattice: bool = True, steps: bool = False
) -> int:
    """Alignments the search tries for one scheme in a `width`-pixel image: what its p-value is
    corrected over."""
    readings = len(readings_of(scheme, lattice, steps))
    return GRID * GRID * orders * readings * row_lengths(scheme.length, width).size * scheme.length


@lru_cache(maxsize=64)
def likely_crops(height: int, width: int) -> tuple[tuple[int, int, int], ...]:
    """(top, left, original width) in pixels of each likely place (the middle, with the odd pixel
    on either side, or a corner) a `height` x `width` crop may have been cut from: originals of an
    SD size at most LIKELY_ORIGINAL times its sides, cut on one side only or on both by the same
    share (within LIKELY_SHAPE)."""
    places = set()
    for original_height in _originals(height):
        for original_width in _originals(width):
            one_side = original_height == height or original_width == width
            shape = (original_width / width) / (original_height / height)
            if not one_side and abs(math.log(shape)) > math.log1p(LIKELY_SHAPE):
                continue
            cut_y, cut_x = original_height - height, original_width - width
            tops, lefts = {cut_y // 2, (cut_y + 1) // 2}, {cut_x // 2, (cut_x + 1) // 2}
            places.update((top, left, original_width) for top in tops for left in lefts)
            places.update((top, left, original_width) for top in (0, cut_y) for left in (0, cut_x))
    return tuple(sorted(places))


def _originals(side: int) -> list[int]:
    return [original for original in ORIGINAL_WIDTHS if side <= original <= LIKELY_ORIGINAL * side]


def _likely_alignments(height: int, width: int, length: int, lengths: np.ndarray) -> np.ndarray:
    """(n, 4) distinct (row offset, column offset, index of C mod L in `lengths`, shift s) of the
    likely crops (likely_crops) for an L-bit message: where each puts the grid, and which bit its
    first whole block carries."""
    found = set()
    for top, left, original_width in likely_crops(height, width):
        dy, dx = -top % GRID, -left % GRID
        row_length = original_width // GRID
        shift = ((top + dy) // GRID * row_length + (left + dx) // GRID) % length
        found.add((dy, dx, int(np.searchsorted(lengths, row_length % length)), shift))
    return np.array(sorted(found), dtype=np.intp).reshape(-1, 4)


@lru_cache(maxsize=64)
def _message(bits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The message's half spectrum and its circular autocorrelation."""
    y = 1.0 - 2.0 * np.asarray(bits, dtype=np.float64)
    spectrum = np.fft.rfft(y)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2, n=y.size).astype(np.float32)
    spectrum = spectrum.astype(np.complex64)  # the votes' sums are float32
    for array in (spectrum, autocorrelation):
        array.flags.writeable = False
    return spectrum, autocorrelation


def _pair_sums(u: np.ndarray) -> np.ndarray:
    """(orders, height - 1, width - 1): the sum of the 2x2 pixels whose top-left pixel is (y, x),
    twice an LL coefficient of the grid through (y, x). Exact: uint16 for uint8 planes."""
    orders, height, width = u.shape
    dtype = np.uint16 if u.dtype == np.uint8 else np.float32
    pairs = np.add(u[:, :-1], u[:, 1:], dtype=dtype, out=_buffer("pairs", (orders, height - 1, width), dtype))
    return np.add(pairs[..., :-1], pairs[..., 1:], out=_buffer("sums", (orders, height - 1, width - 1), dtype))


def _block_extremes(sums: np.ndarray, pick: np.ufunc, name: str) -> np.ndarray:
    """(orders, height - 7, width - 7): twice the value the block whose first pixel is (y, x)
    reads, `pick` (np.maximum: the largest; np.minimum: the smallest) over its 15 non-first LL
    coefficients. Coefficient (m, n) of that block is sums[y + 2m, x + 2n]: sliding extremes,
    into the thread's buffer `name`."""
    orders, rows, cols = sums.shape[0], sums.shape[1] - 6, sums.shape[2] - 6
    right = _buffer("right", (orders, sums.shape[1], cols), sums.dtype)  # n = 1..3
    pick(pick(sums[..., 2 : 2 + cols], sums[..., 4 : 4 + cols], out=right), sums[..., 6 : 6 + cols], out=right)
    whole = pick(right, sums[..., :cols], out=_buffer("whole", right.shape, sums.dtype))  # n = 0..3
    result = _buffer(name, (orders, rows, cols), sums.dtype)
    pick(whole[:, 2 : 2 + rows], whole[:, 4 : 4 + rows], out=result)  # m = 1..3
    pick(result, whole[:, 6 : 6 + rows], out=result)
    return pick(result, right[:, :rows], out=result)


@dataclass(frozen=True)
class _Grids:
    """Every grid offset's blocks, read once for all schemes."""

    readings: tuple[str, ...]  # what the leading axes of blocks, mean and spread hold (of READINGS)
    blocks: np.ndarray  # (readings, orders, rows, 8, cols, 8): block (r, c) at offset (y, x) is [..., r, y, c, x]
    whole_rows: np.ndarray  # (8, rows): which block rows are whole at each row offset
    whole_cols: np.ndarray  # (8, cols)
    mean: np.ndarray  # (readings, orders, 8, 8): each offset's mean vote over its whole blocks
    spread: np.ndarray  # (readings, orders, 8, 8): the sum of squares of its centred votes

    @classmethod
    def of(cls, u: np.ndarray, float_reading: bool, lattice: bool, steps: bool) -> _Grids:
        """The soft votes of the block whose first pixel is at each pixel on the lattice and/or the
        step readings (READINGS; the float ones only with `float_reading`), 0 where it is not whole."""
        orders, height, width = u.shape
        rows, cols = height // GRID, width // GRID
        sums = _pair_sums(u)
        peak = _block_extremes(sums, np.maximum, "peak")[:, : rows * GRID, : cols * GRID]
        trough = _block_extremes(sums, np.minimum, "trough")[:, : rows * GRID, : cols * GRID] if float_reading else None
        count = 2 if float_reading else 1  # readings of each kind
        readings = (READINGS[:count] if lattice else ()) + (READINGS[2 : 2 + count] if steps else ())
        padded = _padded_grid((len(readings), orders, rows * GRID, cols * GRID), peak.shape[1:])
        written = np.s_[..., : peak.shape[1], : peak.shape[2]]
        if lattice:
            votes.soft(peak, trough, out=padded[:count][written])
        if steps:
            first = count if lattice else 0
            surround = _ring_means(sums, peak.shape[1:])
            padded[first][written] = impulse_votes(steps_from(peak, None, surround, None))
            if float_reading:
                padded[first + 1][written] = impulse_votes(steps_from(peak, trough, surround, FLOAT_OFFSET))
        blocks = padded.reshape(*padded.shape[:2], rows, GRID, cols, GRID)
        whole_rows = np.arange(rows)[None, :] < ((height - np.arange(GRID)) // GRID)[:, None]
        whole_cols = np.arange(cols)[None, :] < ((width - np.arange(GRID)) // GRID)[:, None]
        count = whole_rows.sum(axis=1)[:, None] * whole_cols.sum(axis=1)[None, :]
        # one axis at a time: numpy reduces two non-adjacent axes at once an order of magnitude slower
        mean = blocks.sum(axis=2).sum(axis=3) / np.maximum(count, 1)
        squares = np.square(blocks, out=_buffer("squares", blocks.shape, np.float32))
        spread = squares.sum(axis=2).sum(axis=3) - count * mean**2
        return cls(readings, blocks, whole_rows, whole_cols, mean, np.maximum(spread, 0.0))


def _ring_means(sums: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(orders, *shape) float32: for the block whose first pixel is at each pixel, what the aligned
    test compares its read coefficient with (decode.block_surround, in sums units): the mean over
    the block's 16 coefficients of the ring RING samples around each. A grid's coefficients are the
    square sums of one parity (sums[y + 2m, x + 2n]), so each of the four parities is a band of its
    own. On the robustness corpus cropped 10 % then saved as JPEG q95 this ring found 22 of 42 marks
    where the mean of the 8 blocks around (the search's reading before) found 19."""
    means = np.empty((sums.shape[0], *shape), np.float32)
    scale = np.float32(1 / (RING_SAMPLES * BLOCK * BLOCK))
    for plane, mean in zip(sums, means, strict=True):
        for py in (0, 1):
            for px in (0, 1):
                band = np.ascontiguousarray(plane[py::2, px::2], dtype=np.float32)
                block = cv2.boxFilter(
                    ring_sum(band), -1, (BLOCK, BLOCK), anchor=(0, 0), normalize=False, borderType=cv2.BORDER_REFLECT
                )
                target = mean[py::2, px::2]
                np.multiply(block[: target.shape[0], : target.shape[1]], scale, out=target)
    return means


_local = threading.local()
KEPT_BYTES = 16 << 20  # larger buffers (images over about 1024x1024) are not kept between images


def _buffer(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A per-thread array for one stage of the search, reused while images keep their size (a
    folder of SD outputs does): fresh ones cost their page faults again on every image, which was
    a third of the crop search's time."""
    if math.prod(shape) * np.dtype(dtype).itemsize > KEPT_BYTES:
        return np.empty(shape, dtype)
    buffers = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get(name)
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        buffer = buffers[name] = np.empty(shape, dtype)
    return buffer


def _padded_grid(shape: tuple[int, ...], written: tuple[int, ...]) -> np.ndarray:
    """A zeroed float32 buffer whose top-left `written` part the caller overwrites: one per thread,
    reused while images keep their size (a folder of SD outputs does), since the rest stays zero
    and a fresh one costs its page faults again on every image."""
    if math.prod(shape) * 4 > KEPT_BYTES:
        return np.zeros(shape, np.float32)
    cached = getattr(_local, "grid", None)
    if cached is None or cached[0] != (shape, written):
        cached = _local.grid = ((shape, written), np.zeros(shape, np.float32))
    return cached[1]


def _fold(values: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Sum `values` along `axis` by index mod `length` (blocks r and r + L carry the same bits)."""
    axis %= values.ndim
    if values.shape[axis] <= length:
        return values
    index = [slice(None)] * values.ndim
    index[axis] = slice(0, length)
    folded = values[tuple(index)].copy()
    for start in range(length, values.shape[axis], length):
        index[axis] = slice(start, start + length)
        part = values[tuple(index)]
        index[axis] = slice(0, part.shape[axis])
        folded[tuple(index)] += part
    return folded


def _rows(indices: Iterable[int]) -> slice | list[int]:
    """The grids' readings a scheme needs, as a slice where they are consecutive (no copy)."""
    rows = list(indices)
    return slice(rows[0], rows[-1] + 1) if rows == list(range(rows[0], rows[-1] + 1)) else rows


def _sum_spectra(grids: _Grids, readings: slice | list[int], length: int, lengths: np.ndarray) -> np.ndarray:
    """(tests, C, L // 2 + 1): the half spectrum of the per-bit sums of centred votes D, for each
    test (reading of `readings`, order, offset) and row length C.

    Each offset's votes are summed into a table by (r mod P, c mod L): every C is a multiple of
    ROW_STEP, so r * C mod L repeats after P = L / gcd(L, ROW_STEP) rows. Entry ((C / g) * k mod P, k)
    of the table's 2-D DFT is D's k-th coefficient for row length C. Centring subtracts the
    offset's mean vote times the same entry of its table of block counts, whose DFT is that of its
    whole rows times that of its whole columns.
    """
    step = math.gcd(length, ROW_STEP)
    period = length // step
    k = np.arange(length // 2 + 1)
    rows = (lengths[:, None] // step * k) % period  # (C, k)
    table = _fold(_fold(grids.blocks[readings], period, 2), length, 4).transpose(0, 1, 3, 5, 2, 4)
    spectrum = scipy.fft.fft(scipy.fft.rfft(table, n=length, axis=-1), n=period, axis=-2)
    sums = spectrum[..., rows, k]  # (..., 8, 8, C, k)
    whole_rows = _fold(grids.whole_rows.astype(np.float32), period, -1)
    row_spectrum = scipy.fft.fft(whole_rows, n=period)[:, rows]  # (8, C, k)
    col_spectrum = scipy.fft.rfft(_fold(grids.whole_cols.astype(np.float32), length, -1), n=length)  # (8, k)
    counts = row_spectrum[:, None] * col_spectrum[None, :, None, :]  # (8, 8, C, k)
    sums -= grids.mean[readings][..., None, None] * counts
    return sums.reshape(-1, *sums.shape[-2:])


@dataclass(frozen=True)
class _Scores:
    """One scheme's search scored: every (test, C) row's strongest shift, and what scores any other."""

    p_values: np.ndarray  # (tests, C): of the strongest shift; 1 where another row of its pool has a larger |z|
    z: np.ndarray  # (tests, C): of the strongest shift
    t: np.ndarray  # (tests * C, L): T for every shift s
    best: np.ndarray  # (tests * C,): the strongest shift
    scale: np.ndarray  # (tests * C,): T's scale with the strongest shift left out of its decoys
    dof: np.ndarray  # (tests * C,): the t-test's degrees of freedom

    def at(self, rows: np.ndarray, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(z, two-sided p) of shift `shifts` in each of `rows`: where it is not the strongest, the
        scale leaves out that shift instead (its own estimate grown by as much, never shrunk)."""
        t, best = self.t[rows].astype(np.float64), self.best[rows]
        energy = np.einsum("ij,ij->i", t, t)
        value = t[np.arange(rows.size), shifts]
        peak = t[np.arange(rows.size), best]
        grown = np.sqrt(np.maximum(energy - value**2, 0.0) / np.maximum(energy - peak**2, 1e-300))
        scale = self.scale[rows] * np.where(shifts == best, 1.0, np.maximum(grown, 1.0))
        z = np.where(scale > 1e-6 * np.maximum(1.0, np.abs(value)), value / np.maximum(scale, 1e-300), 0.0)
        return z, 2.0 * stdtr(self.dof[rows], -np.abs(z))


def _strongest(sums: np.ndarray, spread: np.ndarray, scheme: Scheme, pool: int = GRID * GRID) -> _Scores:
    """The strongest shift s of each (test, C), scored from D's half spectra (tests, C, k) and each
    test's sum of squared centred votes (tests,).

    As in detect.z_scores, a scale comes from the decoys (the other shifts, less what the fitted
    message puts into them) and is never less than SCALE_FLOOR times the spread's root (the scale
    T has when the blocks are shuffled among the bits); here it is also shrunk towards what the
    64 grid offsets of the same reading, order and C say (detect.ScalePrior), which gives the
    t-test far more degrees of freedom: `pool` consecutive tests (1: no pooling).
    """
    length, row_lengths = scheme.length, sums.shape[1]
    dof = degrees_of_freedom(scheme.bits)
    message, autocorrelation = _message(scheme.bits)
    t = scipy.fft.irfft(np.conj(sums) * message, n=length, axis=-1).reshape(-1, length)  # T for every shift s
    rows = np.arange(t.shape[0])
    best = np.abs(t).argmax(axis=-1)
    peak = t[rows, best]
    others = np.maximum(np.einsum("ij,ij->i", t, t) - peak**2, 0.0)
    # where T stands out, the fitted message is removed from the decoys: it adds (peak / L) a(s - best)
    # to shift s; elsewhere what it adds is too small to matter
    strong = np.flatnonzero(peak**2 > SPILL_Z**2 * others / max(length - 1, 1))
    lags = autocorrelation[(np.arange(length) - best[strong, None]) % length]
    fitted = peak[strong] / length
    cross = np.einsum("ij,ij->i", t[strong], lags) - peak[strong] * autocorrelation[0]
    tail = float(np.sum(autocorrelation[1:] ** 2))
    others[strong] = np.maximum(others[strong] - 2 * fitted * cross + fitted**2 * tail, 0.0)
    decoy_ms = others / max(length - 1, 1)
    rows_spread = np.repeat(spread, row_lengths)
    pools = (-1, pool, row_lengths)  # `pool` offsets (the 64, or one) of each (reading, order), per C
    if pool > 1:
        prior = ScalePrior.of(decoy_ms.reshape(pools), rows_spread.reshape(pools), dof, axis=1)
        shrunk, total_dof = prior.shrink(decoy_ms.reshape(pools), rows_spread.reshape(pools), dof)
    else:
        shrunk, total_dof = decoy_ms.astype(np.float64), np.full((1, 1, 1), dof)  # float32 would lose 1e-300
    scale = np.maximum(np.sqrt(shrunk.ravel()), SCALE_FLOOR * np.sqrt(rows_spread))
    z = np.where(scale > 1e-6 * np.maximum(1.0, np.abs(peak)), peak / np.maximum(scale, 1e-300), 0.0)
    # within a pool the degrees of freedom are the same, so only its largest |z| can be its smallest p
    pooled = np.abs(z).reshape(pools)
    strongest = pooled.argmax(axis=1)[:, None, :]
    p_values = np.ones(pooled.shape)
    dof_of = np.take_along_axis(total_dof, strongest, axis=1)
    np.put_along_axis(p_values, strongest, 2.0 * stdtr(dof_of, -np.take_along_axis(pooled, strongest, axis=1)), axis=1)
    dof_rows = np.broadcast_to(total_dof, pooled.shape).ravel()
    return _Scores(p_values.reshape(sums.shape[:-1]), z.reshape(sums.shape[:-1]), t, best, scale, dof_rows)


def search(
    u: np.ndarray, schemes: list[Scheme], lattice: bool = True, steps: bool = False
) -> list[SearchEvidence | None]:
    """Every scheme's strongest alignment over the 64 grid offsets of an image's U planes
    (orders, height, width), in decode.ORDERS, on the lattice readings and/or the step ones (which
    find a crop saved as JPEG or WebP with subsampled chroma, or a JPEG cropped; both cost 2.3x
    either); None for all where the image is larger than any SD output it could be cut from or
    smaller than one block."""
    orders, height, width = u.shape
    if max(height, width) > ORIGINAL_WIDTHS[-1] or min(height, width) < GRID:
        return [None] * len(schemes)
    float_reading = any(scheme.float_path for scheme in schemes)
    grids = _Grids.of(u, float_reading, lattice, steps)
    evidence: list[SearchEvidence | None] = []
    for scheme in schemes:
        readings = readings_of(scheme, lattice, steps)
        rows = _rows(grids.readings.index(name) for name in readings)
        lengths = row_lengths(scheme.length, width)
        if grids.whole_rows[0].sum() * grids.whole_cols[0].sum() < scheme.length:
            evidence.append(None)
            continue
        spread = grids.spread[rows].reshape(-1)
        scores = _strongest(_sum_spectra(grids, rows, scheme.length, lengths), spread, scheme)
        strongest = int(scores.p_values.argmin())
        test, _ = np.unravel_index(strongest, scores.z.shape)
        p_value = float(scores.p_values.flat[strongest]) * tests_per_scheme(scheme, width, orders, lattice, steps)
        z = float(scores.z.flat[strongest])
        likely_z, likely_p, likely_test = _likely(
            scores, height, width, scheme.length, lengths, (len(readings), orders)
        )
        if likely_p / LIKELY_SHARE < p_value / (1 - LIKELY_SHARE):
            z, p_value, test = likely_z, likely_p / LIKELY_SHARE, likely_test
        else:
            p_value /= 1 - LIKELY_SHARE
        reading, order, dy, dx = np.unravel_index(test, (len(readings), orders, GRID, GRID))
        evidence.append(
            SearchEvidence(
                z,
                min(1.0, p_value),
                ORDERS[order],
                readings[reading],
                Realignment("crop", (int(dy), int(dx))),  # the grid's first whole block, in pixels
            )
        )
    return evidence


def _likely(
    scores: _Scores, height: int, width: int, length: int, lengths: np.ndarray, kinds: tuple[int, int]
) -> tuple[float, float, int]:
    """(z, p corrected over the family, test) of the strongest likely crop (likely_crops), on every
    reading and order of `kinds` (readings, orders)."""
    places = _likely_alignments(height, width, length, lengths)
    if not places.size:
        return 0.0, 1.0, 0
    dy, dx, row_length, shift = places.T
    tests = (np.arange(math.prod(kinds))[:, None] * GRID * GRID + dy * GRID + dx).ravel()
    rows = tests * lengths.size + np.tile(row_length, math.prod(kinds))
    z, p_values = scores.at(rows, np.tile(shift, math.prod(kinds)))
    strongest = int(p_values.argmin())
    return float(z[strongest]), min(1.0, float(p_values[strongest]) * rows.size), int(tests[strongest])


def numbered(votes: np.ndarray, scheme: Scheme, numberings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, two-sided p), each (tests, n), of each row of soft votes on a whole, aligned grid of
    blocks (tests, rows, cols), numbered as blocks of a larger image whose rows were C blocks long
    and whose bit s the first block carried, for each (C, s) of `numberings` (n, 2): the crop
    search's tests at one offset (the resize search's cuts), its scales not pooled."""
    tests, rows, cols = votes.shape
    flat = votes.astype(np.float32, copy=False).reshape(tests, -1)
    mean = flat.mean(axis=1).reshape(1, tests, 1, 1)
    spread = np.maximum(np.einsum("ij,ij->i", flat, flat).reshape(mean.shape) - flat.shape[1] * mean**2, 0.0)
    blocks = flat.reshape(1, tests, rows, 1, cols, 1)
    whole_rows, whole_cols = np.ones((1, rows), bool), np.ones((1, cols), bool)
    grids = _Grids(("votes",), blocks, whole_rows, whole_cols, mean, spread)
    length = scheme.length
    lengths = np.unique(numberings[:, 0] % length)
    scores = _strongest(_sum_spectra(grids, slice(None), length, lengths), spread.reshape(-1), scheme, pool=1)
    which = np.searchsorted(lengths, numberings[:, 0] % length)
    z, p_values = scores.at(
        (np.arange(tests)[:, None] * lengths.size + which).ravel(), np.tile(numberings[:, 1] % length, tests)
    )
    return z.reshape(tests, -1), p_values.reshape(tests, -1)
