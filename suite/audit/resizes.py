"""Marks in resized images: the aligned test on the image resized back to each SD size it may have had.

A resize resamples every 8x8 block, and the aligned test then finds nothing. But dwtDct marks
the lowest frequencies of each block, and resizing back to the original size restores most of
them: an sd-v1 mark's z of 70 is about 52 after a resize to x0.75 and back. Only the U planes
are resized back: resampling is linear, like the conversion from RGB to U. Bicubic when
enlarging and pixel-area averaging when shrinking find as many marks as Lanczos on the test
corpus, at half the cost. The candidate originals are the sizes SD models output: sides that are
multiples of 64 from 256 to 1536 pixels, at most 1.6 MP, with the aspect ratio the image has
within its rounding, and a scale between 1/4 and 4. The p-value is Bonferroni-corrected over
the candidates tried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from suite.audit.decode import ORDERS, blocks_of
from suite.audit.defaults import DEFAULT_ALPHA
from suite.audit.detect import Evidence, Readings, assess
from suite.watermark import Scheme

SIDES = range(256, 1537, 64)
MAX_ORIGINAL_PIXELS = 1_600_000
MAX_SCALE = 4.0


@dataclass(frozen=True)
class ResizeEvidence:
    """One scheme's strongest test over the candidate originals."""

    evidence: Evidence  # the aligned test on the U planes resized back
    p_value: float  # corrected over the candidates
    original: tuple[int, int]  # (width, height)


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
    """An image (height, width[, channels]) resized to `size` (width, height): bicubic when
    enlarging, pixel-area averaging when shrinking."""
    enlarging = size[0] > image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if enlarging else cv2.INTER_AREA)


def search(u: np.ndarray, schemes: list[Scheme], alpha: float = DEFAULT_ALPHA) -> list[ResizeEvidence | None]:
    """Each scheme's strongest test over an image's U planes (orders, height, width), in
    decode.ORDERS, resized back to every candidate original; None for all where the image's size
    has no candidate."""
    candidates = originals(u.shape[2], u.shape[1])
    if not candidates:
        return [None] * len(schemes)
    float_path = any(scheme.float_path for scheme in schemes)
    planes = np.ascontiguousarray(np.moveaxis(u, 0, -1))  # OpenCV resizes the orders as channels
    tried = []
    for size in candidates:
        restored = np.ascontiguousarray(np.moveaxis(restore(planes, size).reshape(size[1], size[0], -1), -1, 0))
        readings = Readings.of(blocks_of(restored, ORDERS), float_path)
        tried.append([(assess(scheme, readings, alpha), size) for scheme in schemes])
    strongest = [min(per_scheme, key=lambda found: found[0].p_value) for per_scheme in zip(*tried, strict=True)]
    return [ResizeEvidence(e, min(1.0, e.p_value * len(candidates)), size) for e, size in strongest]
