"""Marks an edit moved off the aligned grid: when to search, and one verdict from all the tests.

The aligned test (detect.py) reads the blocks where the encoder put them. A crop moves the grid
(crops.py searches every offset); a resize resamples it (resizes.py resizes back to each SD size
the image may have had); a mirror reads the blocks backwards, so the image flipped back is tested
as the aligned test does (one more test per axis); a rotation by a degree or two turns the grid
(rotations.py rotates back by whole degrees; only with `--search always`, as it costs a quarter
of the other searches again). Each search has its own corrected p-value; a scheme's verdict then
rests on the smallest of its tests, times the number of tests (Bonferroni), so the chance of
flagging an unmarked image stays within alpha.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from suite.audit import crops, resizes, rotations
from suite.audit.decode import bits_from_votes, decode, read_blocks
from suite.audit.defaults import DEFAULT_ALPHA
from suite.audit.detect import Evidence, Realignment, examine
from suite.watermark import Scheme

# How a mirrored image is flipped back: (rows, columns) of the pixel arrays.
MIRRORS = {"horizontal": np.s_[:, ::-1], "vertical": np.s_[::-1, :]}

Found = Evidence | crops.CropEvidence | resizes.ResizeEvidence | rotations.RotationEvidence


def wanted(policy: str) -> bool:
    """`auto` and `always` (which adds the rotations) search every image the aligned test does not
    detect a scheme in; `never` none."""
    return policy != "never"


def _mirrored(rgb: np.ndarray, u: np.ndarray, schemes: list[Scheme], alpha: float) -> dict[str, list[Evidence]]:
    """The aligned test on the image flipped back along each axis (its bits: the reference's there)."""
    return {axis: examine(rgb[flip], schemes, alpha, u[(slice(None), *flip)]) for axis, flip in MIRRORS.items()}


def _realigned(aligned: Evidence, found: Found, rgb: np.ndarray) -> Evidence:
    """The scheme's evidence as a search found it, with the reference decoder's bits where the
    search lined the image up: the image as it is for a crop, resized or rotated back for a resize
    or a rotation (a mirror's evidence already is the aligned test's on the image flipped back)."""
    length = aligned.scheme.length
    if isinstance(found, Evidence):
        return found
    if isinstance(found, resizes.ResizeEvidence):
        bits = decode(resizes.restore(rgb, found.original), (length,), found.order)[length]
        realignment = Realignment("resize", found.original)
    elif isinstance(found, rotations.RotationEvidence):
        height, width = rgb.shape[:2]
        undone = rotations.undoing(found.angle, width, height)
        back = cv2.warpAffine(rgb, undone, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        bits = decode(back, (length,), found.order)[length]
        realignment = Realignment("rotation", found.angle)
    else:
        bits = bits_from_votes(read_blocks(rgb, (found.order,)).votes(0), length)
        realignment = Realignment("crop", found.offset)
    return replace(aligned, z=found.z, path=found.path, order=found.order, bits=bits, realignment=realignment)


def reexamine(
    rgb: np.ndarray, u: np.ndarray, evidence: list[Evidence], alpha: float = DEFAULT_ALPHA, thorough: bool = False
) -> list[Evidence]:
    """The schemes the aligned test did not detect, tested again by the mirror, crop and resize
    searches, and where `thorough` (`--search always`) the rotation search and the crop search's
    step readings.

    The searches read the U planes `u` (orders, height, width) in decode.ORDERS; the bits a record
    reports stay the reference decoder's reading of the decoded pixels `rgb`.
    """
    pending = [i for i, found in enumerate(evidence) if not found.detected]
    if not pending:
        return evidence
    schemes = [evidence[i].scheme for i in pending]
    mirrored = _mirrored(rgb, u, schemes, alpha)
    by_crop = crops.search(u, schemes, steps_too=thorough)
    by_resize = resizes.search(u, schemes)
    by_rotation: list[rotations.RotationEvidence | None] = [None] * len(schemes)
    if thorough:
        by_rotation = rotations.search(u, schemes)
    result = list(evidence)
    for j, i in enumerate(pending):
        aligned = evidence[i]
        mirrors = [replace(found[j], realignment=Realignment("mirror", axis)) for axis, found in mirrored.items()]
        others = (by_resize[j], by_crop[j], by_rotation[j])
        searched: list[Found] = [*mirrors, *(f for f in others if f is not None)]
        best = min(searched, key=lambda found: found.p_value)  # the first wins a tie: mirrors, then a resize
        p_value = min(1.0, (1 + len(searched)) * min(aligned.p_value, best.p_value))
        if p_value > alpha or aligned.p_value <= best.p_value:
            result[i] = replace(aligned, p_value=p_value)
        else:
            result[i] = replace(_realigned(aligned, best, rgb), detected=True, p_value=p_value)
    return result
