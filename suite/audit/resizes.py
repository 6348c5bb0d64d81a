"""Marks in resized images: the aligned test on the image resized back to each SD size it may have had.

A resize resamples every 8x8 block, and the aligned test then finds nothing. But dwtDct marks
the lowest frequencies of each block, and resizing back to the original size restores most of
them: an sd-v1 mark's z of 70 is about 52 after a resize to x0.75 and back. Only what the test
reads is rebuilt: the LL band of U at the original size, which is U resized by pixel-area
averaging to half that size (an LL coefficient is twice the mean of a 2x2 pixel square, and area
averages compose exactly). Resampling is linear like the conversion from RGB to U, so the U planes
are resized, not the pixels. The candidate originals are the sizes SD models output: sides that are
multiples of 64 from 384 to 1536 pixels, at most 1.6 MP, with the aspect ratio the image has
within its rounding, and a scale between 1/2 and 2 (each candidate costs its area, and larger
scales were seldom found anyway). Besides the lattice readings (votes.py), each candidate is read
for the encoder's mean step (detect.py's "impulse" path), which is what survives a resize followed
by lossy compression (a JPEG'd thumbnail). The p-value is Bonferroni-corrected over every
candidate, channel order and reading tried.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
from scipy.special import stdtr

from suite.audit import crops, votes
from suite.audit.decode import ORDERS, neighbour_blocks_mean, steps
from suite.audit.defaults import DEFAULT_ALPHA
from suite.audit.detect import (
    FLOAT_OFFSET,
    PRIOR_WEIGHT,
    Realignment,
    ScalePrior,
    SearchEvidence,
    degrees_of_freedom,
    impulse_votes,
    statistics,
    two_sided_p,
    z_from,
    z_scores,
)
from suite.watermark import Scheme

SIDES = range(384, 1537, 64)  # SD models' outputs are seldom smaller
MAX_ORIGINAL_PIXELS = 1_600_000
MAX_SCALE = 2.0


def originals(width: int, height: int) -> list[tuple[int, int]]:
    """SD sizes a `width` x `height` image can be a resize of (its own size excluded)."""
    found = []
    for original_width in SIDES:
        # the scale that rounds to this width, and the heights it may have rounded from
        low, high = (width - 0.5) / original_width, (width + 0.5) / original_width
        if not 1 / MAX_SCALE <= width / original_width <= MAX_SCALE:
            continue
        tallest, shortest = (height + 0.5) / low, (height - 0.5) / high
        for original_height in range(math.ceil(shortest / 64) * 64, math.floor(tallest / 64) * 64 + 1, 64):
            size = (original_width, original_height)
            if (
                original_height in SIDES
                and original_width * original_height <= MAX_ORIGINAL_PIXELS
                and size != (width, height)
            ):
                found.append(size)
    return found


def restore(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image (height, width[, channels]) resized to `size` (width, height) as the search
    resizes it back: bicubic when enlarging, pixel-area averaging when shrinking."""
    enlarging = size[0] > image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if enlarging else cv2.INTER_AREA)


def _ll_band(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(orders, rows * 4, cols * 4): twice the LL band of U planes (orders, height, width) resized
    to `size`, over the whole 8x8 blocks there (the units of decode.Blocks.sums): each plane
    resized to half that size, by pixel-area averaging where that shrinks it by more than half
    (bilinear sampling would alias there), bilinearly elsewhere (as many finds, at a third of the cost)."""
    width, height = size
    rows, cols = height // 8, width // 8
    strong = width // 2 < planes.shape[2] / 2 or height // 2 < planes.shape[1] / 2
    band = np.empty((planes.shape[0], height // 2, width // 2), np.float32)
    for plane, resized in zip(planes, band, strict=True):
        if strong:  # halved first: OpenCV's area averaging is fast by whole factors, slow otherwise
            half = cv2.resize(plane, (plane.shape[1] // 2, plane.shape[0] // 2), interpolation=cv2.INTER_AREA)
            cv2.resize(half, (width // 2, height // 2), dst=resized, interpolation=cv2.INTER_AREA)
        else:
            cv2.resize(plane, (width // 2, height // 2), dst=resized, interpolation=cv2.INTER_LINEAR)
    band = band[:, : rows * 4, : cols * 4]
    band *= np.float32(4)
    return band


IMPULSE_READINGS = ("impulse", "float-impulse")  # detect.Readings' path names, beside votes.READINGS'


def _impulse_votes(peak: np.ndarray, trough: np.ndarray | None, surround: np.ndarray) -> np.ndarray:
    """(readings, orders, blocks): detect.py's impulse votes of each block against the mean of the
    blocks around it: its largest coefficient's and, where `trough` is given (float-path schemes),
    the one farthest from 255's, signed away from it (decode.Blocks.impulses)."""
    rows = [impulse_votes(steps(peak, None, surround, None))]
    if trough is not None:
        rows.append(impulse_votes(steps(peak, trough, surround, FLOAT_OFFSET)))
    return np.stack(rows)


def _votes(band: np.ndarray, float_reading: bool, lattice: bool) -> np.ndarray:
    """(readings, orders, blocks): the lattice readings (votes.READINGS, with `lattice`) then the step
    ones (IMPULSE_READINGS), the float ones only with `float_reading`."""
    peak, trough = votes.block_extremes(band, float_reading)
    impulses = _impulse_votes(peak, trough, neighbour_blocks_mean(band))
    return np.concatenate([votes.soft(peak, trough), impulses]) if lattice else impulses


def _scheme_rows(read: np.ndarray, scheme: Scheme, lattice: bool) -> np.ndarray:
    """The rows of `_votes` a scheme is tested on (its readings, in `readings_of` order)."""
    used, kinds = len(votes.readings_of(scheme)), read.shape[0] // (2 if lattice else 1)
    return np.concatenate([read[:used], read[kinds : kinds + used]]) if lattice else read[:used]


# The block grid's offsets in LL samples, each way: a resized-back band read at the 16 offsets of
# its 4x4 blocks (the mark's at (0, 0)) pools the scale of its tests (detect.ScalePrior).
LL_OFFSETS = 4


def _pooled_p(band: np.ndarray, scheme: Scheme, lattice: bool, float_reading: bool) -> tuple[float, float, int]:
    """(p, z, row) of the strongest of a candidate's tests, each test's scale shrunk towards what
    the band's 16 grid offsets say (rolled, so every offset keeps the block layout)."""
    dof = degrees_of_freedom(scheme.bits)
    offsets = [(dy, dx) for dy in range(LL_OFFSETS) for dx in range(LL_OFFSETS)]
    stats = [
        statistics(
            _scheme_rows(_votes(np.roll(band, (-dy, -dx), axis=(1, 2)), float_reading, lattice), scheme, lattice),
            scheme.bits,
        )
        for dy, dx in offsets
    ]
    t, decoy_ms, spread = (np.stack(parts) for parts in zip(*stats, strict=True))  # (offsets, readings, orders)
    prior = ScalePrior.of(decoy_ms, spread, dof, axis=0)
    shrunk, total_dof = prior.shrink(decoy_ms[:1], spread[:1], dof)
    z = z_from(t[0], shrunk[0], spread[0]).ravel()
    p_values = 2.0 * stdtr(total_dof[0].ravel(), -np.abs(z))
    row = int(p_values.argmin())
    return float(p_values[row]), float(z[row]), row


# Thumbnails and dataset tools cut a resized image to a square (img2dataset's centre_crop resizes the
# short side to the target, then keeps the middle of the long one): those candidates, resized back,
# are the middle of an original whose long side was up to MAX_CUT times as long. They are a family
# of their own with CUT_SHARE of the resize search's alpha (weighted Bonferroni, as crops.LIKELY_SHARE).
CUT_SHARE = 0.5
MAX_CUT = 2.0


def cuts(width: int, height: int) -> list[tuple[tuple[int, int], int]]:
    """(original (width, height), row-major index of its block the first whole block was) of each
    SD size whose middle a `width` x `height` image is, one side cut, up to MAX_CUT times as long.
    The sides are multiples of 64, so half the cut is a multiple of 32 pixels: the grid stays whole."""
    found = []
    for side in SIDES:
        if width < side <= MAX_CUT * width and side * height <= MAX_ORIGINAL_PIXELS:
            found.append(((side, height), (side - width) // 16))
        if height < side <= MAX_CUT * height and width * side <= MAX_ORIGINAL_PIXELS:
            found.append(((width, side), (side - height) // 16 * (width // 8)))
    return found


@lru_cache(maxsize=256)
def _cut_numberings(size: tuple[int, int], length: int) -> tuple[tuple[tuple[int, int], ...], np.ndarray]:
    """(originals, (n, 2) numberings (C, s)) of the distinct numberings `cuts` gives an L-bit message
    on a `size` band: its block (r, c) was block (r, c + first) of rows C = original width / 8 long,
    so it carries bit (r C + c + s) mod L, with s = first."""
    distinct: dict[tuple[int, int], tuple[tuple[int, int], int, int]] = {}
    for original, first in cuts(*size):
        row_length = original[0] // 8
        distinct.setdefault((row_length % length, first % length), (original, row_length, first))
    sizes = tuple(original for original, _, _ in distinct.values())
    numberings = np.array([(row_length, first) for _, row_length, first in distinct.values()], np.intp).reshape(-1, 2)
    numberings.flags.writeable = False
    return sizes, numberings


def search(
    u: np.ndarray, schemes: list[Scheme], lattice: bool = True, alpha: float = DEFAULT_ALPHA, cut: bool = False
) -> list[SearchEvidence | None]:
    """Each scheme's strongest test over an image's U planes (orders, height, width), in
    decode.ORDERS, resized back to every candidate original, on the lattice and step readings (the
    step ones only without `lattice`); None for all where the image's size has no candidate.

    With `cut`, each candidate is also scored as the middle of a longer original (`cuts`: ten to
    twenty more tests per candidate and scheme, scored as the crop search scores one grid offset,
    which costs about as much again as the rest of the search). The strongest candidate's tests
    are scored again with their scales pooled over its grid offsets (`_pooled_p`) where that could
    bring the corrected p-value under `alpha`, the verdict's level: pooling costs 15 more readings
    of a band, twice the rest of the search, and with a looser gate (1e-3) it ran on nearly every
    unmarked image."""
    candidates = originals(u.shape[2], u.shape[1])
    if not candidates:
        return [None] * len(schemes)
    float_reading = any(scheme.float_path for scheme in schemes)
    planes = u.astype(np.float32, copy=False)
    best = [(0.0, 0, candidates[0])] * len(schemes)
    best_cut: list[tuple[float, int, tuple[int, int], tuple[int, int]] | None] = [None] * len(schemes)
    cut_tests = [0] * len(schemes)
    for size in candidates:
        read = _votes(_ll_band(planes, size), float_reading, lattice)
        for i, scheme in enumerate(schemes):
            rows = _scheme_rows(read, scheme, lattice)
            z = z_scores(rows, scheme.bits).ravel()
            strongest = int(np.abs(z).argmax())
            if abs(z[strongest]) > abs(best[i][0]):
                best[i] = (float(z[strongest]), strongest, size)
            cut_from, numberings = _cut_numberings(size, scheme.length) if cut else ((), None)
            if cut_from:
                z, _ = crops.numbered(rows.reshape(-1, size[1] // 8, size[0] // 8), scheme, numberings)
                cut_tests[i] += z.size
                strongest = int(np.abs(z).argmax())
                test, numbering = divmod(strongest, z.shape[1])
                if best_cut[i] is None or abs(z.flat[strongest]) > abs(best_cut[i][0]):
                    best_cut[i] = (float(z.flat[strongest]), test, size, cut_from[numbering])
    found: list[SearchEvidence | None] = []
    for i, (scheme, (z, test, size)) in enumerate(zip(schemes, best, strict=True)):
        steps = IMPULSE_READINGS[: len(votes.readings_of(scheme))]
        readings = (*votes.readings_of(scheme), *steps) if lattice else steps
        share = 1 - CUT_SHARE if cut_tests[i] else 1.0
        tests = len(candidates) * len(readings) * u.shape[0] / share
        dof = degrees_of_freedom(scheme.bits)
        p_value = two_sided_p(z, dof)
        # the shrunk scale lowers z's scale by at most sqrt(1 + weight)
        reachable = two_sided_p(z * np.sqrt(1 + PRIOR_WEIGHT), dof * (1 + PRIOR_WEIGHT)) * tests
        if reachable <= alpha:  # the test's p-value is then the pooled one, never the smaller of two
            p_value, z, test = _pooled_p(_ll_band(planes, size), scheme, lattice, float_reading)
        p_value *= tests
        realignment = Realignment("resize", size)
        if best_cut[i] is not None:
            cut_z, cut_test, cut_size, original = best_cut[i]
            cut_p = two_sided_p(cut_z, dof) * cut_tests[i] / CUT_SHARE
            if cut_p < p_value:
                p_value, z, test = cut_p, cut_z, cut_test
                realignment = Realignment("resize", cut_size, cut_from=original)
        reading, order = divmod(test, u.shape[0])
        found.append(SearchEvidence(z, min(1.0, p_value), ORDERS[order], readings[reading], realignment))
    return found
