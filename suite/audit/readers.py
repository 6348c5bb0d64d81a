"""How an image's pixels are read: the U planes the detector tests, and the RGB the reference reads.

The mark lives in the U channel of the pixels the encoder saw. A PNG keeps those pixels; a JPEG or
a lossy WebP keeps its chroma at half resolution (4:2:0; a lossy WebP always) and the decoder blurs
it back to full size. That blur is libjpeg's and libwebp's "fancy" upsampling filter, known
exactly, and U is linear in the pixels, so the stored planes, as the U each encoder order saw, are
recovered from the decoded pixels by undoing it (stored_chroma): one decode gives both what the
reference decoder reads and what the file stores. Each stored sample covers 2x2 pixels, so it is
one LL coefficient over two: the aligned test reads the samples as they are, and the searches get
them spread over their pixels. Everything else (PNG, 4:4:4 JPEG, lossless WebP, AVIF, what PIL
reads) is read from its RGB pixels, and the detector's `unblurred` reading path undoes the
decoders' chroma upsampling there (decode.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
import simplejpeg
from PIL import Image, JpegImagePlugin

from suite.audit.decode import ORDERS, Blocks, blocks_of, blocks_of_samples, u_planes, unblur

_U_WEIGHT = 0.492  # OpenCV's RGB->YUV chroma weight: U - 128 = 0.492 (B - Y)


@dataclass(frozen=True)
class Pixels:
    """One image as the audit reads it."""

    rgb: np.ndarray  # (height, width, 3) uint8: the decoded pixels; the reference decoder's bits come from here
    reading: str  # where the U planes come from: "pixels", or stored chroma: "jpeg-420", "jpeg-422", "webp-420"
    samples: np.ndarray | None = None  # (orders, rows, cols) float32: stored chroma as U, one sample per 2x2 pixels
    # the file coded its chroma lossily at half resolution (JPEG 4:2:0 or 4:2:2, lossy WebP, AVIF 4:2:0): what
    # is left of the mark's lattice there is seldom found, its mean step far more often (crops.py)
    lossy_chroma: bool = False

    @cached_property
    def u(self) -> np.ndarray:
        """(orders, height, width): the U channel each encoder order saw (uint8; float32 where rebuilt
        from stored chroma, each sample repeated over its 2x2 pixels)."""
        if self.samples is None:
            return u_planes(self.rgb, ORDERS)
        orders, rows, cols = self.samples.shape
        spread = np.broadcast_to(self.samples[:, :, None, :, None], (orders, rows, 2, cols, 2))
        return spread.reshape(orders, 2 * rows, 2 * cols)[:, : self.rgb.shape[0], : self.rgb.shape[1]]

    def blocks(self) -> Blocks:
        """The LL band the aligned test reads: from stored chroma without spreading it (each LL
        coefficient is twice one sample)."""
        if self.samples is None:
            return blocks_of(self.u, ORDERS)
        return blocks_of_samples(self.samples, ORDERS, *self.rgb.shape[:2])


def read_pixels(rgb: np.ndarray, image: Image.Image, data: bytes) -> Pixels:
    """How to read an image whose RGB pixels are decoded: from a JPEG's stored chroma where it has
    subsampled chroma, otherwise from the pixels themselves."""
    stored = jpeg_chroma(image, rgb)
    if stored is not None:
        samples, layout = stored
        return Pixels(rgb, f"jpeg-{layout}", samples, lossy_chroma=True)
    if image.format == "WEBP" and is_lossy_webp(data):
        return Pixels(rgb, "webp-420", stored_chroma(rgb), lossy_chroma=True)
    return Pixels(rgb, "pixels", lossy_chroma=image.format == "AVIF" and is_subsampled_avif(data))


# How much larger the luma's steps between neighbouring pixels must be at one phase of an 8-pixel
# grid than at the others' median, along both axes, for an image read from its pixels to count as
# an earlier JPEG (shows_jpeg_grid). On the robustness corpus's 28 photos, clean and marked
# (2026-12-07), 93 % of those saved as JPEG q90 then cropped 10 % reach it (q95: 57 %, q75: all),
# and 21 % of the PNGs (whose photos were JPEGs once) and 7 % of resized ones.
JPEG_GRID = 1.05


def shows_jpeg_grid(rgb: np.ndarray) -> bool:
    """Whether the pixels show the 8x8 block edges of an earlier JPEG (a JPEG cropped, or re-saved
    as PNG), wherever a crop moved them: steps across one of the 8 phases of the grid JPEG_GRID
    times the others' median, along both axes."""
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    for axis in (0, 1):
        steps = np.abs(np.diff(luma, axis=1 - axis)).mean(axis=axis)  # per column (row) boundary
        if steps.size < 4 * 8:
            return False
        phases = steps[: steps.size // 8 * 8].reshape(-1, 8).mean(axis=0)
        if phases.max() < JPEG_GRID * np.median(phases):
            return False
    return True


def is_lossy_webp(data: bytes) -> bool:
    """Whether a WebP's image is VP8 (lossy, always 4:2:0) rather than VP8L (lossless): the first
    image chunk of the RIFF container says (an extended file's VP8X, ICCP, ALPH... come first)."""
    at = 12  # after "RIFF", the size and "WEBP"
    while at + 8 <= len(data):
        kind, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if kind in (b"VP8 ", b"VP8L", b"ANMF"):
            return kind == b"VP8 "
        at += 8 + size + (size & 1)  # chunks are padded to an even size
    return False


def is_subsampled_avif(data: bytes) -> bool:
    """Whether an AVIF's AV1 stream keeps its chroma at half resolution (4:2:0, as encoders write
    it by default, or 4:2:2), which only lossy AV1 does: its av1C box (the AV1 codec configuration,
    marker and version byte 0x81) says so in byte 2's mono_chrome, chroma_subsampling_x and _y bits."""
    at = data.find(b"av1C")
    while at >= 4:
        size = int.from_bytes(data[at - 4 : at], "big")
        payload = data[at + 4 : at + 7]
        if size >= 11 and len(payload) == 3 and payload[0] == 0x81:
            flags = payload[2]
            return not flags & 0x10 and bool(flags & 0x0C)
        at = data.find(b"av1C", at + 4)
    return False


def chroma_layout(image: Image.Image) -> str | None:
    """ "420", "422" or "444" for a three-component YCbCr JPEG; None for anything else (gray, CMYK,
    Adobe RGB, other sampling), which is read from its pixels."""
    if not isinstance(image, JpegImagePlugin.JpegImageFile) or image.mode != "RGB":
        return None
    if image.info.get("adobe_transform") == 0:  # Adobe APP14 says the components are R, G, B
        return None
    layer = getattr(image, "layer", None) or []
    if len(layer) != 3:
        return None
    sampling = tuple((h, v) for _, h, v, _ in layer)
    chroma = sampling[1]
    if sampling[2] != chroma or chroma != (1, 1):
        return None
    return {(2, 2): "420", (2, 1): "422", (1, 1): "444"}.get(sampling[0])


def decode_jpeg_rgb(image: Image.Image, data: bytes) -> np.ndarray | None:
    """RGB uint8 pixels of a YCbCr JPEG through TurboJPEG (simplejpeg): the same libjpeg-turbo
    decode PIL runs (accurate DCT, fancy upsampling: identical pixels) at about a third of PIL's
    cost, which copies every row through its own buffers. None for anything else, and for a file
    libjpeg warns about (damaged or cut short), so that PIL decodes it and says why as before."""
    if chroma_layout(image) is None:
        return None
    try:
        return simplejpeg.decode_jpeg(data, "RGB", fastdct=False, fastupsample=False, strict=True)
    except ValueError:
        return None


def jpeg_chroma(image: Image.Image, rgb: np.ndarray) -> tuple[np.ndarray, str] | None:
    """A subsampled JPEG's stored chroma as U planes (stored_chroma, from its decoded pixels `rgb`)
    and the layout; None where the file has none to give."""
    layout = chroma_layout(image)
    if layout not in ("420", "422"):
        return None
    return stored_chroma(rgb, vertical=layout == "420"), layout


def stored_chroma(rgb: np.ndarray, vertical: bool = True) -> np.ndarray:
    """(orders, ceil(height / 2), ceil(width / 2)) float32 U planes of the chroma a JPEG or lossy
    WebP stores at half resolution (along rows only without `vertical`: 4:2:2), recovered from its
    decoded pixels.

    libjpeg's and libwebp's "fancy" upsampling put each pixel's chroma 3/4 of the way to its own
    stored sample and 1/4 to the next one, along each subsampled axis, so the mean of each 2x2 pixel
    block is the stored sample blurred by [1/8, 3/4, 1/8]; U is linear in the pixels, so the mean U
    of each block is that blur of the stored samples as U, which decode.unblur undoes. This reads
    the samples to within 0.33-0.63 of a U unit (rms; the tail where the decoded pixels clipped) of
    libjpeg's own half-scale decode and libwebp's YUV output, which return them unblurred but cost
    a second pass through the file's entropy-coded data, as much as the full decode (1.4-2 ms of a
    512x512 JPEG's 6)."""
    height, width = rgb.shape[:2]
    even = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge") if (height | width) % 2 else rgb
    # the mean of four times the pixels over each 2x2 block is their sum, exactly
    sums = cv2.resize(np.left_shift(even, 2, dtype=np.uint16), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    u_sums = cv2.transform(sums.astype(np.float32), _U_OF_SUMS)
    planes = unblur(u_sums, vertical=vertical, scale=0.25)[..., : len(ORDERS)]
    return np.ascontiguousarray(planes.transpose(2, 0, 1))


# Four times each order's U (decode.ORDERS; OpenCV's U - 128 = 0.492 (B - Y)) from the sums of four
# pixels' R, G and B; the "rgb" encoders' U comes from the pixels with R and B swapped. A third,
# empty row: OpenCV transforms three channels into three ten times faster than into two.
_U_OF_SUMS = np.array(
    [
        [-0.299 * _U_WEIGHT, -0.587 * _U_WEIGHT, 0.886 * _U_WEIGHT, 4 * 128.0],
        [0.886 * _U_WEIGHT, -0.587 * _U_WEIGHT, -0.299 * _U_WEIGHT, 4 * 128.0],
        [0.0, 0.0, 0.0, 0.0],
    ],
    np.float32,
)
