"""Marks an edit moved off the aligned grid: when to search, and one verdict from all the tests.

The aligned test (detect.py) reads the blocks where the encoder put them. A crop moves the grid
(crops.py searches every offset); a resize resamples it (resizes.py resizes back to each SD size
the image may have had). Each search has its own corrected p-value; a scheme's verdict then
rests on the smallest of its tests, times the number of tests (Bonferroni), so the chance of
flagging an unmarked image stays within alpha.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from suite.audit import crops, resizes
from suite.audit.decode import bits_from_votes, decode, read_blocks
from suite.audit.defaults import DEFAULT_ALPHA
from suite.audit.detect import Evidence, Realignment

SD_SIDE = 64  # every SD model's outputs have sides that are multiples of this


def wanted(policy: str, width: int, height: int) -> bool:
    """`auto` searches sizes no SD model outputs (a side that is not a multiple of 64), which most
    crops and resizes leave; `always` every image the aligned test finds nothing in."""
    if policy == "auto":
        return width % SD_SIDE != 0 or height % SD_SIDE != 0
    return policy == "always"


def reexamine(rgb: np.ndarray, u: np.ndarray, evidence: list[Evidence], alpha: float = DEFAULT_ALPHA) -> list[Evidence]:
    """The schemes the aligned test did not detect, tested again by the crop and resize searches.

    The searches read the U planes `u` (orders, height, width) in decode.ORDERS; the bits a record
    reports stay the reference decoder's reading of the decoded pixels `rgb`.
    """
    pending = [i for i, found in enumerate(evidence) if not found.detected]
    if not pending:
        return evidence
    schemes = [evidence[i].scheme for i in pending]
    by_crop = crops.search(u, schemes)
    by_resize = resizes.search(u, schemes)
    result = list(evidence)
    for i, crop, resize in zip(pending, by_crop, by_resize, strict=True):
        aligned = evidence[i]
        searched = [found for found in (resize, crop) if found is not None]  # a resize wins a tie
        best = min(searched, key=lambda found: found.p_value, default=None)
        p_value = min(1.0, (1 + len(searched)) * min(aligned.p_value, best.p_value if best else 1.0))
        if best is None or p_value > alpha or aligned.p_value <= best.p_value:
            result[i] = replace(aligned, p_value=p_value)
        elif isinstance(best, resizes.ResizeEvidence):
            restored = resizes.restore(rgb, best.original)
            bits = decode(restored, (aligned.scheme.length,), best.order)[aligned.scheme.length]
            result[i] = replace(
                aligned,
                detected=True,
                p_value=p_value,
                z=best.z,
                path=best.path,
                order=best.order,
                bits=bits,
                realignment=Realignment("resize", best.original),
            )
        else:
            bits = bits_from_votes(read_blocks(rgb, (best.order,)).votes(0), aligned.scheme.length)
            result[i] = replace(
                aligned,
                detected=True,
                p_value=p_value,
                z=best.z,
                path=best.path,
                order=best.order,
                bits=bits,
                realignment=Realignment("crop", best.offset),
            )
    return result
