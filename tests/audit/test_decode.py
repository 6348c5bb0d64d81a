import audit_corpus
import numpy as np
import pytest
from imwatermark import WatermarkDecoder

from suite.audit.decode import bits_from_votes, block_grid, decode, read_blocks
from suite.watermark import SCHEMES


def reference_bits(rgb: np.ndarray, length: int, order: str) -> np.ndarray:
    pixels = rgb[:, :, ::-1] if order == "bgr" else rgb
    return np.asarray(WatermarkDecoder("bits", length).decode(np.ascontiguousarray(pixels), "dwtDct"), dtype=bool)


@pytest.fixture(scope="module")
def corpus(clean_images, marked_samples):
    """Clean, marked and JPEG'd / brightened / resized copies at every size, 128 images in all."""
    images = [image for _, image in clean_images[::2]]
    for i, sample in enumerate(marked_samples[::2]):
        images.append(sample.image)
        edit = ("jpeg90", "brightness1.2", "resize0.75")[i % 3]
        images.append(audit_corpus.EDITS[edit](sample.image))
    return [np.asarray(image.convert("RGB")) for image in images]


def test_every_block_vote_equals_the_reference(corpus):
    # A message as long as the image has blocks gives each block a bit of its own: the reference
    # then returns every single vote, so this compares the decoders block by block.
    sizes = set()
    for i, rgb in enumerate(corpus):
        order = ("bgr", "rgb")[i % 2]
        rows, cols = block_grid(*rgb.shape[:2])
        sizes.add(rgb.shape[:2])
        ours = read_blocks(rgb, (order,)).votes(0)
        np.testing.assert_array_equal(ours, reference_bits(rgb, rows * cols, order), err_msg=f"image {i}")
    assert len(sizes) >= 6  # square, non-square and resized shapes


def test_bits_of_every_scheme_length_equal_the_reference(corpus):
    lengths = tuple(s.length for s in SCHEMES.values())
    for i, rgb in enumerate(corpus[::3]):
        order = ("bgr", "rgb")[i % 2]
        ours = decode(rgb, lengths, order)
        length = lengths[i % 3]
        np.testing.assert_array_equal(ours[length], reference_bits(rgb, length, order), err_msg=f"image {i}")


def test_bits_on_odd_sizes_equal_the_reference():
    # sizes that are not multiples of 8 leave partial blocks, which the reference ignores
    rng = np.random.default_rng(3)
    for height, width in ((259, 261), (517, 300), (333, 1001)):
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for order in ("bgr", "rgb"):
            np.testing.assert_array_equal(decode(rgb, (136,), order)[136], reference_bits(rgb, 136, order))


def test_flat_chroma_reads_all_zero_bits_like_the_reference():
    gray = np.full((256, 256, 3), 117, dtype=np.uint8)
    assert not decode(gray, (32,))[32].any()
    assert not reference_bits(gray, 32, "bgr").any()


def test_a_bit_without_blocks_reads_zero():
    assert not bits_from_votes(np.ones(3, dtype=bool), 5)[3:].any()


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="RGB uint8"):
        read_blocks(np.zeros((256, 256), dtype=np.uint8))


def test_votes_on_step_boundaries_equal_the_reference():
    # Where a coefficient sits exactly on a multiple of 18 only pywt's last float bits decide the
    # vote: an image of 2x2 patches whose U value is a multiple of 9 puts most blocks there.
    import cv2

    rng = np.random.default_rng(4)
    candidates = rng.integers(0, 256, (20000, 1, 3), dtype=np.uint8)
    u = cv2.cvtColor(candidates, cv2.COLOR_RGB2YUV)[:, 0, 1]
    palette = candidates[u % 9 == 0, 0][:12]
    patches = palette[rng.integers(0, len(palette), (128, 160))]
    rgb = np.ascontiguousarray(patches.repeat(2, axis=0).repeat(2, axis=1))
    blocks = read_blocks(rgb, ("bgr", "rgb"))
    rows, cols = blocks.grid
    assert np.mean(blocks.peak_sums[0] % 36 == 0) > 0.3  # the case is really exercised
    for i, order in enumerate(blocks.orders):
        np.testing.assert_array_equal(blocks.votes(i), reference_bits(rgb, rows * cols, order))
