"""The reference invisible watermarks of Stable Diffusion, embedded with invisible-watermark itself.

The suite marks its own outputs exactly as the original scripts did (docs/audit.md, "How a watermark
is detected"), so that what
`sdsuite audit` finds in them is what it would find in images made by those scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

# The reference encoder refuses images with fewer pixels than this (imwatermark's own check).
MIN_PIXELS = 256 * 256

ChannelOrder = Literal["bgr", "rgb"]


@dataclass(frozen=True)
class Scheme:
    """A watermark as one family of real encoders wrote it."""

    name: str
    bits: tuple[int, ...]
    message: bytes | None  # the text when the mark is text; None for a bare bit string
    float_path: bool  # True where the encoder worked on float pixels and rounded afterwards (SDXL)
    description: str

    @property
    def length(self) -> int:
        return len(self.bits)

    @property
    def bit_string(self) -> str:
        return "".join(map(str, self.bits))


def bits_of(message: bytes) -> tuple[int, ...]:
    """Bits as imwatermark's `set_watermark('bytes', ...)` orders them (most significant first)."""
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(message, dtype=np.uint8)))


def scheme_from_bytes(name: str, message: bytes, description: str = "user message") -> Scheme:
    return Scheme(name, bits_of(message), message, False, description)


def scheme_from_bits(name: str, bits: str, description: str = "user bits") -> Scheme:
    if not bits or set(bits) - {"0", "1"}:
        raise ValueError(f"a bit message must be a non-empty string of 0 and 1, got {bits!r}")
    return Scheme(name, tuple(int(b) for b in bits), None, False, description)


_SDXL_BITS = bin(0b101100111110110010010000011110111011000110011110)[2:]

SCHEMES: dict[str, Scheme] = {
    "sd-v1": scheme_from_bytes("sd-v1", b"StableDiffusionV1", "CompVis SD v1 scripts (txt2img/img2img)"),
    "sd-v2": scheme_from_bytes("sd-v2", b"SDV2", "Stability SD 2.x scripts (txt2img, x4 upscaler)"),
    "sdxl": Scheme(
        "sdxl",
        tuple(int(b) for b in _SDXL_BITS),
        None,
        True,
        "SDXL (generative-models, diffusers StableDiffusionXLWatermarker)",
    ),
}

# Which reference mark each architecture's original scripts put on their outputs.
SCHEME_OF_MODEL: dict[str, str] = {"sd-v1": "sd-v1", "sd-v2.1": "sd-v2", "sd-x4-upscaler": "sd-v2"}


def get_scheme(name: str) -> Scheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown watermark scheme {name!r}; known: {', '.join(SCHEMES)}") from None


def _encoder(scheme: Scheme):
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    if scheme.message is not None:
        encoder.set_watermark("bytes", scheme.message)
    else:
        encoder.set_watermark("bits", list(scheme.bits))
    return encoder


def too_small(image: Image.Image) -> bool:
    return image.width * image.height < MIN_PIXELS


def embed(image: Image.Image, scheme: Scheme | str, channel_order: ChannelOrder = "bgr") -> Image.Image:
    """Return `image` watermarked the way the scheme's real encoder did it.

    uint8 schemes follow the SD v1/v2 scripts: RGB -> BGR uint8 -> dwtDct -> back to RGB.
    The SDXL float path encodes float pixels and rounds afterwards, as diffusers does.
    `channel_order="rgb"` reproduces encoders that handed RGB pixels to the BGR-expecting
    encoder (early diffusers SDXL), which puts the mark in another chroma channel.
    Raises ValueError for images the reference refuses (fewer than 256x256 pixels).
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    if too_small(image):
        size = f"{image.width}x{image.height}"
        raise ValueError(f"image is {size}: the reference encoder needs >= 256x256 pixels")
    rgb = np.asarray(image.convert("RGB"))
    pixels = rgb[:, :, ::-1] if channel_order == "bgr" else rgb
    encoder = _encoder(scheme)
    if scheme.float_path:
        marked = encoder.encode(np.ascontiguousarray(pixels, dtype=np.float32), "dwtDct")
        marked = np.clip(np.round(marked), 0, 255).astype(np.uint8)
    else:
        marked = encoder.encode(np.ascontiguousarray(pixels), "dwtDct")
    out = marked[:, :, ::-1] if channel_order == "bgr" else marked
    return Image.fromarray(np.ascontiguousarray(out))
