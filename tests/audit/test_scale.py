"""The z scale cannot collapse: where votes follow the bits with no noise, the decoys all vanish.

A mark in flat colour, blurred, reads two values per bit a few pixels off the grid: nothing but
the mark varies there, so every cyclic-shift decoy is near zero and z was unbounded (the crop
search credited such images, never cropped, to a grid offset with z = -271 against an aligned
-5.2). The scale is floored at a share of the votes' own spread, so z stays within 4 sqrt(blocks).
"""

from dataclasses import replace

import audit_corpus
import numpy as np
from PIL import Image, ImageFilter

from suite.audit import crops, searches
from suite.audit.decode import u_planes
from suite.audit.detect import SCALE_FLOOR, examine, z_scores
from suite.watermark import SCHEMES, embed, scheme_from_bits

ALL = list(SCHEMES.values())


def test_votes_that_follow_the_bits_without_noise_have_a_bounded_z():
    message = SCHEMES["sd-v1"].bits
    blocks = 4096
    votes = np.where(np.resize(np.asarray(message), blocks) == 1, -0.6, 0.9)  # two values, one per bit
    z = float(z_scores(votes, message))
    assert 0 < z <= np.sqrt(blocks) / SCALE_FLOOR * (1 + 1e-9)


def test_a_blurred_mark_in_flat_colour_does_not_collapse_the_crop_search():
    marked = embed(Image.new("RGB", (512, 512), (90, 140, 200)), "sd-v1")
    rgb = np.asarray(marked.filter(ImageFilter.GaussianBlur(3)))
    u = u_planes(rgb)
    found = crops.search(u, ALL)[0]
    assert abs(found.z) <= np.sqrt(64 * 64) / SCALE_FLOOR * (1 + 1e-6)  # it was -768 at offset (4, 0)
    verdict = searches.reexamine(rgb, u, examine(rgb, ALL, u=u))
    assert [e.scheme.name for e in verdict if e.detected] == ["sd-v1"]  # the mark is still found


def test_a_periodic_custom_message_is_not_matched_by_flat_colour():
    # flat colour gives every block the same vote: no variation, no evidence, even for "0101..."
    alternating = scheme_from_bits("alternating", "01" * 16)
    rgb = np.asarray(Image.new("RGB", (512, 512), (200, 40, 90)))
    u = u_planes(rgb)
    assert crops.search(u, [alternating])[0].p_value == 1.0


def _structured(width: int, height: int) -> list[tuple[str, np.ndarray]]:
    """Clean images whose votes are all structure: stripes, checkerboards, gradients, flat colour,
    blurred flat illustrations."""
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(width * 7 + height)
    images = [("flat", np.broadcast_to(np.array([90, 140, 200], np.uint8), (height, width, 3)))]
    for period in (2, 4, 8, 16, 64):
        a, b = rng.integers(0, 256, (2, 3))
        for name, coord in (("columns", xx), ("rows", yy), ("diagonals", xx + yy)):
            images.append((f"{name}{period}", np.where((coord // max(period // 2, 1) % 2)[..., None] == 1, a, b)))
        images.append((f"checkers{period}", np.where(((xx // period + yy // period) % 2)[..., None] == 1, a, b)))
    for slope in (0.1, 1.0):
        a, b = rng.integers(0, 256, (2, 3)).astype(float)
        for name, coord in (("ramp", xx + yy), ("rings", np.hypot(xx - width / 2, yy - height / 2))):
            fraction = ((coord * slope / 255.0) % 1.0)[..., None]
            images.append((f"{name}{slope}", a * (1 - fraction) + b * fraction))
    for seed, radius in ((1, 1), (2, 2), (3, 3)):
        drawing = audit_corpus.illustration(seed, (width, height)).filter(ImageFilter.GaussianBlur(radius))
        images.append((f"illustration{seed}-blur{radius}", np.asarray(drawing)))
    return [(name, np.ascontiguousarray(image, dtype=np.uint8)) for name, image in images]


def test_structured_clean_images_are_never_flagged_by_the_searches():
    smallest = 1.0
    for width, height in ((512, 512), (461, 389)):
        for name, rgb in _structured(width, height):
            u = u_planes(rgb)
            aligned = [replace(e, detected=False) for e in examine(rgb, ALL, u=u)]
            for evidence in searches.reexamine(rgb, u, aligned, thorough=True):  # every search
                assert evidence.p_value > 1e-3, (
                    f"{name} {width}x{height}: {evidence.scheme.name} p={evidence.p_value:.2g}"
                )
                smallest = min(smallest, evidence.p_value)
    print(f"smallest p-value on structured clean images: {smallest:.2g}")
