"""Marks an edit moved off the aligned grid: when to search, and one verdict from all the tests.

The aligned test (detect.py) reads the blocks where the encoder put them. A crop moves the grid
(crops.py searches every offset); a resize resamples it (resizes.py resizes back to each SD size
the image may have had); a mirror reads the blocks backwards, so the image flipped back is tested
as the aligned test does (one more test per axis); a quarter turn, or a mirror along a diagonal,
moves every block whole, so the image turned back is read on the lattice paths (five more tests);
a rotation by a degree or two turns the grid (rotations.py rotates back by whole degrees; only
with `--search always`, as it costs a quarter of the other searches again); a crop of a
mirrored image is a crop of the original once flipped back (the crop search on both flips back,
with `--search always` only: it costs two more crop searches); so is a resize cut to a square
(resizes.cuts: as much again as the resize search). Each search has its
own corrected p-value; a scheme's verdict then rests on the smallest of its tests, each divided by
its share of alpha (weighted Bonferroni), so the chance of flagging an unmarked image stays within
alpha. Where several tests find a mark, the record names the simplest edit that explains it. The quarter turns share TURNS_SHARE of it: they leave a mark whole, so a small share costs
them little, while the searches that live on weak evidence keep theirs.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from suite.audit import crops, resizes, rotations, votes
from suite.audit.decode import ORDERS, bits_from_votes, decode, read_blocks, square_sums
from suite.audit.defaults import DEFAULT_ALPHA
from suite.audit.detect import (
    Evidence,
    Realignment,
    SearchEvidence,
    degrees_of_freedom,
    examine,
    two_sided_p,
    z_scores,
)
from suite.audit.readers import shows_jpeg_grid
from suite.watermark import Scheme

# How a mirrored image is flipped back: (rows, columns) of the pixel arrays.
MIRRORS = {"horizontal": np.s_[:, ::-1], "vertical": np.s_[::-1, :]}
# How an image turned by a quarter turn (counter-clockwise, as PIL's ROTATE_90) or mirrored along a
# diagonal (PIL's TRANSPOSE, TRANSVERSE) is turned back: rows and columns swapped or not, then
# np.rot90's quarter turns.
TURNS = {
    Realignment("rotation", 90.0): (False, -1),
    Realignment("rotation", 180.0): (False, 2),
    Realignment("rotation", 270.0): (False, 1),
    Realignment("mirror", "diagonal"): (True, 0),
    Realignment("mirror", "anti-diagonal"): (True, 2),
}
TURNS_SHARE = 0.05  # of alpha, for the five tests of TURNS together


def wanted(policy: str) -> bool:
    """`auto` and `always` (which adds the rotations) search every image the aligned test does not
    detect a scheme in; `never` none."""
    return policy != "never"


def _mirrored(rgb: np.ndarray, u: np.ndarray, schemes: list[Scheme], alpha: float) -> dict[str, list[Evidence]]:
    """The aligned test on the image flipped back along each axis (its bits: the reference's there)."""
    return {axis: examine(rgb[flip], schemes, alpha, u[(slice(None), *flip)]) for axis, flip in MIRRORS.items()}


def _mirrored_crops(u: np.ndarray, schemes: list[Scheme], lossy_chroma: bool) -> list[SearchEvidence | None]:
    """Each scheme's crop search on the image flipped back along either axis (on the readings
    `auto`'s crop search uses: the step where the file coded its chroma lossily, the lattice
    elsewhere), the stronger of the two, its p-value doubled (Bonferroni over the axes): a crop of
    a mirrored image, or a mirror of a crop, is a crop of the original once flipped back."""
    by_axis = [
        crops.search(
            np.ascontiguousarray(u[(slice(None), *flip)]), schemes, lattice=not lossy_chroma, steps=lossy_chroma
        )
        for flip in MIRRORS.values()
    ]
    found: list[SearchEvidence | None] = []
    for searched in zip(*by_axis, strict=True):
        tried = [(e, axis) for e, axis in zip(searched, MIRRORS, strict=True) if e is not None]
        if not tried:
            found.append(None)
            continue
        best, axis = min(tried, key=lambda pair: pair[0].p_value)
        realignment = replace(best.realignment, mirror=axis)
        found.append(replace(best, p_value=min(1.0, best.p_value * len(MIRRORS)), realignment=realignment))
    return found


def turned_back(image: np.ndarray, turn: Realignment, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """An image's pixel array (rows and columns along `axes`) turned back from `turn` (TURNS)."""
    swap, quarters = TURNS[turn]
    return np.rot90(np.swapaxes(image, *axes) if swap else image, quarters, axes)


def _lattice_evidence(sums: np.ndarray, schemes: list[Scheme], turn: Realignment) -> list[SearchEvidence]:
    """Each scheme's test on the lattice readings (votes.py) of an image's square sums (decode.square_sums)."""
    band = np.ascontiguousarray(sums[:, : sums.shape[1] // 4 * 4, : sums.shape[2] // 4 * 4])
    peak, trough = votes.block_extremes(band, any(scheme.float_path for scheme in schemes))
    soft = votes.soft(peak, trough)
    found = []
    for scheme in schemes:
        readings = votes.readings_of(scheme)
        z = z_scores(soft[: len(readings)], scheme.bits)
        reading, order = np.unravel_index(int(np.abs(z).argmax()), z.shape)
        p_value = min(1.0, two_sided_p(float(z[reading, order]), degrees_of_freedom(scheme.bits)) * z.size)
        found.append(SearchEvidence(float(z[reading, order]), p_value, ORDERS[order], readings[reading], turn))
    return found


def _turned(u: np.ndarray, schemes: list[Scheme]) -> list[list[SearchEvidence]]:
    """Per TURNS entry, each scheme's lattice test on the U planes turned back. The square sums turn
    with the image where its sides are even (its 2x2 squares stay on the even grid); an odd side's
    are summed again on the planes turned back."""
    if u.shape[1] % 2 or u.shape[2] % 2:
        return [_lattice_evidence(square_sums(turned_back(u, turn, (1, 2))), schemes, turn) for turn in TURNS]
    sums = square_sums(u)
    return [_lattice_evidence(turned_back(sums, turn, (1, 2)), schemes, turn) for turn in TURNS]


def _lined_up(rgb: np.ndarray, realignment: Realignment) -> np.ndarray:
    """The decoded pixels as a search lined them up with the mark (not for crops: the reference
    decoder reads a moved grid's blocks wrong whatever is done to the pixels)."""
    if realignment in TURNS:
        return np.ascontiguousarray(turned_back(rgb, realignment))
    if realignment.edit == "resize":
        return resizes.restore(rgb, realignment.where)
    height, width = rgb.shape[:2]
    undone = rotations.undoing(realignment.where, width, height)
    return cv2.warpAffine(rgb, undone, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _realigned(aligned: Evidence, found: Evidence | SearchEvidence, rgb: np.ndarray) -> Evidence:
    """The scheme's evidence as a search found it, with the reference decoder's bits where the
    search lined the image up (a mirror's evidence already is the aligned test's on the image
    flipped back; a crop's bits are read from the image as it is)."""
    if isinstance(found, Evidence):
        return found
    length = aligned.scheme.length
    if found.realignment.edit == "crop":
        mirror = found.realignment.mirror
        pixels = rgb if mirror is None else np.ascontiguousarray(rgb[MIRRORS[mirror]])
        bits = bits_from_votes(read_blocks(pixels, (found.order,)).votes(0), length)
    else:
        bits = decode(_lined_up(rgb, found.realignment), (length,), found.order)[length]
    return replace(aligned, z=found.z, path=found.path, order=found.order, bits=bits, realignment=found.realignment)


def reexamine(
    rgb: np.ndarray,
    u: np.ndarray,
    evidence: list[Evidence],
    alpha: float = DEFAULT_ALPHA,
    thorough: bool = False,
    lossy_chroma: bool = False,
) -> list[Evidence]:
    """The schemes the aligned test did not detect, tested again by the mirror, turn, crop and
    resize searches, and where `thorough` (`--search always`) the rotation search, the crop
    search of the image flipped back and the resize search's cuts (resizes.cuts).

    Where the file coded its chroma lossily at half resolution (`lossy_chroma`), the crop search
    reads the encoder's mean step instead of the lattice, and the resize search the step alone (on
    a development corpus the step readings found 21 of 72 marks cropped 10 % then saved as JPEG
    q95 4:2:0, the lattice 2, both together 15; resized x0.5 then JPEG q95: 11 against 5 with
    both); elsewhere the crop search reads the lattice, the resize search both, and with
    `thorough` both searches read both. The searches read the U planes `u` (orders,
    height, width) in decode.ORDERS; the bits a record reports stay the reference decoder's reading
    of the decoded pixels `rgb`.
    """
    pending = [i for i, found in enumerate(evidence) if not found.detected]
    if not pending:
        return evidence
    schemes = [evidence[i].scheme for i in pending]
    mirrored = _mirrored(rgb, u, schemes, alpha)
    turned = _turned(u, schemes)
    # pixels that show an earlier JPEG's grid had their chroma coded lossily too: the step readings
    # as well (a JPEG q90 cropped 10 % and re-saved as PNG: see readers.JPEG_GRID)
    earlier_jpeg = not (thorough or lossy_chroma) and shows_jpeg_grid(rgb)
    by_crop = crops.search(
        u, schemes, lattice=thorough or not lossy_chroma, steps=thorough or lossy_chroma or earlier_jpeg
    )
    by_resize = resizes.search(u, schemes, lattice=thorough or not lossy_chroma, alpha=alpha, cut=thorough)
    by_rotation: list[SearchEvidence | None] = [None] * len(schemes)
    by_mirrored_crop: list[SearchEvidence | None] = [None] * len(schemes)
    if thorough:
        by_rotation = rotations.search(u, schemes)
        by_mirrored_crop = _mirrored_crops(u, schemes, lossy_chroma)
    result = list(evidence)
    for j, i in enumerate(pending):
        aligned = evidence[i]
        mirrors = [replace(found[j], realignment=Realignment("mirror", axis)) for axis, found in mirrored.items()]
        others = (by_resize[j], by_crop[j], by_mirrored_crop[j], by_rotation[j])
        searched: list[Evidence | SearchEvidence] = [*mirrors, *(f for f in others if f is not None)]
        share = (1 - TURNS_SHARE) / (1 + len(searched))  # the aligned test's and each search's
        weighted = [(found.p_value / share, found) for found in (aligned, *mirrors)]
        weighted += [(found[j].p_value * len(TURNS) / TURNS_SHARE, found[j]) for found in turned]
        weighted += [(found.p_value / share, found) for found in searched[len(mirrors) :]]
        # where several tests find the mark, the record names the simplest edit (the order above:
        # a vertical flip is also a crop whose rows run the other way), and where none does, the
        # strongest evidence
        found_by = [pair for pair in weighted if pair[0] <= alpha]
        p_value, best = found_by[0] if found_by else min(weighted, key=lambda pair: pair[0])
        p_value = min(1.0, p_value)
        if p_value > alpha or best is aligned:
            result[i] = replace(aligned, p_value=p_value)
        else:
            result[i] = replace(_realigned(aligned, best, rgb), detected=True, p_value=p_value)
    return result
