"""Marks whose block grid a crop has moved: the aligned test, over every grid offset and bit phase.

Cutting x pixels off the left and y off the top moves the 8x8 grid the mark lives in by
(y mod 8, x mod 8) and renumbers the blocks. Block (r, c) of the crop was block
(r + dr) * C + (c + dc) of the original, whose rows were C blocks long, so it carries bit
(r * C + c + s) mod L for some shift s: only C mod L and s matter. The evidence is all still
there; the aligned reader just looks at the wrong blocks.

For each of the 64 grid offsets and each channel order and reading path, the centred soft votes
(detect.py) are summed into an L x L table by (r mod L, c mod L). Its 2-D DFT holds the spectrum
of the per-bit sums D for every C at once (entry (C*k mod L, k)), and one inverse FFT per C
gives T for every shift s. The strongest T is scored as the aligned test scores its T: against
the other shifts, once the fitted message is removed from them (detect.z_scores does the same
with explicit decoys; at offset 0, the image's own C and s = 0 it gives the same z). Original
widths are taken to be multiples of 64 from 256 to 2048 pixels, as every SD model's outputs are,
and the p-value is Bonferroni-corrected over every (offset, order, path, C, s) tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from suite.audit.decode import ORDERS, ChannelOrder, blocks_of
from suite.audit.detect import Readings, degrees_of_freedom, paths_of, two_sided_p
from suite.watermark import Scheme

ORIGINAL_WIDTHS = range(256, 2049, 64)  # pixels: where a cropped image may have come from (heights too)
GRID = 8  # pixels per block side: the offsets tried are 0..7 in each direction


@dataclass(frozen=True)
class CropEvidence:
    """The strongest alignment of one scheme found by the search."""

    z: float  # negative when the votes are inverted
    p_value: float  # two-sided, corrected over every alignment tried
    order: ChannelOrder
    path: str
    offset: tuple[int, int]  # (rows, columns) of the first whole block of the grid, in pixels


@lru_cache(maxsize=64)
def _alignments(bits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The row lengths C mod L tried, the message's spectrum and its circular autocorrelation."""
    length = len(bits)
    y = 1.0 - 2.0 * np.asarray(bits, dtype=np.float64)
    spectrum = np.fft.fft(y)
    autocorrelation = np.fft.ifft(np.abs(spectrum) ** 2).real
    rows = np.array(sorted({(width // GRID) % length for width in ORIGINAL_WIDTHS}))
    for array in (rows, spectrum, autocorrelation):
        array.flags.writeable = False
    return rows, spectrum, autocorrelation


def tests_per_scheme(scheme: Scheme, orders: int = len(ORDERS)) -> int:
    """Alignments the search tries for one scheme: what its p-value is corrected over."""
    return GRID * GRID * orders * len(paths_of(scheme)) * len(_alignments(scheme.bits)[0]) * scheme.length


def _strongest(soft: np.ndarray, grid: tuple[int, int], scheme: Scheme) -> tuple[float, int]:
    """z of the strongest alignment of soft votes (tests, blocks), and the test it was found in."""
    length = scheme.length
    row_lengths, spectrum, autocorrelation = _alignments(scheme.bits)
    rows, cols = grid
    r, c = np.divmod(np.arange(rows * cols), cols)
    cell = (r % length) * length + (c % length)
    centred = soft - soft.mean(axis=1, keepdims=True)  # the image's own bias goes, as in z_scores
    table = np.stack([np.bincount(cell, weights=row, minlength=length * length) for row in centred])
    table_spectrum = np.fft.fft2(table.reshape(-1, length, length))
    k = np.arange(length)
    sums_spectrum = table_spectrum[:, (row_lengths[:, None] * k) % length, k]  # (tests, C, L)
    t = np.fft.ifft(np.conj(sums_spectrum) * spectrum, axis=-1).real  # T for every shift s
    best = np.abs(t).argmax(axis=-1)
    peak = np.take_along_axis(t, best[..., None], axis=-1)
    # the other shifts, less what the fitted message puts into them, are the decoys
    fitted = (peak / length) * autocorrelation[(k[None, None, :] - best[..., None]) % length]
    decoys = t - fitted
    np.put_along_axis(decoys, best[..., None], 0.0, axis=-1)
    scale = np.sqrt(np.sum(decoys**2, axis=-1) / max(length - 1, 1))
    z = np.where(scale > 1e-9 * np.maximum(1.0, np.abs(peak[..., 0])), peak[..., 0] / np.maximum(scale, 1e-300), 0.0)
    strongest = np.unravel_index(int(np.abs(z).argmax()), z.shape)
    return float(z[strongest]), int(strongest[0])


def search(u: np.ndarray, schemes: list[Scheme]) -> list[CropEvidence | None]:
    """Every scheme's strongest alignment over the 64 grid offsets of an image's U planes
    (orders, height, width), in decode.ORDERS; None for all where the image is larger than any SD
    output it could be cut from."""
    if max(u.shape[1:]) > ORIGINAL_WIDTHS[-1]:
        return [None] * len(schemes)
    float_path = any(scheme.float_path for scheme in schemes)
    best: list[tuple[float, int, tuple[int, int]]] = [(0.0, 0, (0, 0))] * len(schemes)
    for dy in range(GRID):
        for dx in range(GRID):
            blocks = blocks_of(u[:, dy:, dx:], ORDERS)
            if blocks.grid[0] * blocks.grid[1] == 0:
                continue
            readings = Readings.of(blocks, float_path)
            for i, scheme in enumerate(schemes):
                used = len(paths_of(scheme))
                if blocks.grid[0] * blocks.grid[1] < scheme.length:
                    continue
                soft = readings.soft[:used].reshape(-1, readings.soft.shape[-1])
                z, test = _strongest(soft, blocks.grid, scheme)
                if abs(z) > abs(best[i][0]):
                    best[i] = (z, test, (dy, dx))
    evidence = []
    for scheme, (z, test, offset) in zip(schemes, best, strict=True):
        p_value = min(1.0, two_sided_p(z, degrees_of_freedom(scheme.bits)) * tests_per_scheme(scheme))
        path, order = divmod(test, len(ORDERS))
        evidence.append(CropEvidence(z, p_value, ORDERS[order], paths_of(scheme)[path], offset))
    return evidence
