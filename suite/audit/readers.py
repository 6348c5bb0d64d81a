"""How an image's pixels are read: the U planes the detector tests, and the RGB the reference reads.

The mark lives in the U channel of the pixels the encoder saw. A PNG keeps those pixels; a JPEG or
WebP keeps its chroma at half resolution (4:2:0) and a decoder blurs it back to full size. For a
JPEG, libjpeg's half-scale decode (PIL's `draft`) returns the stored chroma planes themselves: its
luma is scaled down with the DCT while chroma needs no upsampling. Cb and Cr are the same colour
differences as OpenCV's U, scaled (both use BT.601's luma weights), so the U plane each encoder
order saw is a linear function of the stored planes, known exactly:

- bgr (the reference scripts): U - 128 = 0.492 * (B - Y) = 0.8718 * (Cb - 128);
- rgb (encoders handed RGB as BGR): U' - 128 = 0.492 * (R - Y'), with Y' the luma of the swapped
  pixels: R - Y' = 1.185 * (R - Y) - 0.185 * (B - Y), so U' is 1.185 Cr-parts and -0.185 Cb-parts.

Each stored sample is repeated over its 2x2 pixels, so the LL band read from the plane is the stored
plane itself. Everything else (PNG, 4:4:4 JPEG, WebP, what PIL reads) is read from its RGB pixels,
and the detector's `unblurred` reading path undoes the decoders' chroma upsampling there (decode.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, JpegImagePlugin

from suite.audit.decode import ORDERS, ChannelOrder, u_planes

# OpenCV's RGB->YUV chroma weight and JFIF's: U - 128 = 0.492 (B - Y); Cb - 128 = 0.5 / 0.886 (B - Y).
_U_WEIGHT = 0.492
_CB_WEIGHT = 0.5 / (1 - 0.114)
_CR_WEIGHT = 0.5 / (1 - 0.299)
_SWAPPED_LUMA = 0.299 - 0.114  # Y - Y' = 0.185 (R - B) when R and B trade places


@dataclass(frozen=True)
class Pixels:
    """One image as the audit reads it."""

    rgb: np.ndarray  # (height, width, 3) uint8: the decoded pixels; the reference decoder's bits come from here
    u: np.ndarray  # (orders, height, width): the U channel each encoder order saw (uint8, or float32 rebuilt)
    reading: str  # where `u` came from: "pixels", or "jpeg-420" / "jpeg-422" for a JPEG's stored chroma


def read_pixels(rgb: np.ndarray, image: Image.Image, data: bytes) -> Pixels:
    """The U planes of an image whose RGB pixels are decoded: a JPEG's stored chroma where it has
    subsampled chroma, otherwise the pixels' own."""
    stored = jpeg_chroma(image, data)
    if stored is not None:
        u, layout = stored
        return Pixels(rgb, u[:, : rgb.shape[0], : rgb.shape[1]], f"jpeg-{layout}")
    return Pixels(rgb, u_planes(rgb, ORDERS), "pixels")


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


def jpeg_chroma(image: Image.Image, data: bytes) -> tuple[np.ndarray, str] | None:
    """(orders, 2 * rows, 2 * cols) float32 U planes rebuilt from a subsampled JPEG's stored chroma,
    each sample repeated over its 2x2 pixels, and the layout; None where the file has none to give.

    For 4:2:2 the half-scale decode also halves the chroma's height, with the DCT: close to the
    mean of each pair of rows, which is what the LL band takes."""
    layout = chroma_layout(image)
    if layout not in ("420", "422"):
        return None
    half = Image.open(io.BytesIO(data))
    try:
        half.draft("YCbCr", (image.width // 2, image.height // 2))  # PIL picks scale 1/2; libjpeg rounds up
        if half.mode != "YCbCr" or half.size != ((image.width + 1) // 2, (image.height + 1) // 2):
            return None
        ycbcr = np.asarray(half, dtype=np.float32)
    finally:
        half.close()
    return np.repeat(np.repeat(u_from_chroma(ycbcr[..., 1], ycbcr[..., 2]), 2, axis=1), 2, axis=2), layout


def u_from_chroma(cb: np.ndarray, cr: np.ndarray, orders: tuple[ChannelOrder, ...] = ORDERS) -> np.ndarray:
    """(orders, *cb.shape) float32: OpenCV's U of each encoder order from JFIF Cb and Cr planes."""
    blue = (cb - 128) / _CB_WEIGHT  # B - Y
    red = (cr - 128) / _CR_WEIGHT  # R - Y
    planes = {
        "bgr": 128 + _U_WEIGHT * blue,
        "rgb": 128 + _U_WEIGHT * ((1 + _SWAPPED_LUMA) * red - _SWAPPED_LUMA * blue),
    }
    return np.stack([planes[order] for order in orders]).astype(np.float32, copy=False)
