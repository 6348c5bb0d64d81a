"""The edits images suffer on their way around the web, each ending in the file format it produces.

An attack is a chain of pixel edits followed by the encoding a user would get: JPEG and WebP
attacks give .jpg/.webp bytes (so the audit reads the file as it would read one found in the wild,
chroma subsampling included), every other attack a PNG. A JPEG in the middle of a chain (JPEG
then crop) is encoded and decoded again, as an editor that opens a JPEG does.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

Edit = Callable[[Image.Image], Image.Image]
NOISE_SEED = 20240  # the same noise for every image, so runs repeat exactly
SD_SIDES = range(256, 1537, 64)  # sides of the sizes SD outputs (multiples of 64)
SUFFIXES = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}


@dataclass(frozen=True)
class Encoding:
    """How the attacked pixels are saved: PIL's format name and its save options."""

    format: str = "PNG"
    options: dict[str, Any] = field(default_factory=dict)

    def save(self, image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, self.format, **self.options)
        return buffer.getvalue()


PNG = Encoding("PNG", {"compress_level": 1})


def jpeg(quality: int, subsampling: int = 2) -> Encoding:
    """PIL's `subsampling`: 2 is 4:2:0 (PIL's, browsers' and phones' default), 0 is 4:4:4."""
    return Encoding("JPEG", {"quality": quality, "subsampling": subsampling})


def webp(quality: int) -> Encoding:
    return Encoding("WEBP", {"quality": quality, "lossless": False})


def avif(quality: int) -> Encoding:
    """AVIF at 4:2:0, its encoders' default (Pillow's AVIF plugin: libavif)."""
    return Encoding("AVIF", {"quality": quality, "subsampling": "4:2:0"})


def can_save(format: str) -> bool:
    """Whether this Pillow writes `format` (AVIF came with Pillow 11.3, where libavif is built in)."""
    Image.init()
    return format in Image.SAVE


@dataclass(frozen=True)
class Attack:
    name: str
    family: str  # groups the chart's rows
    description: str
    edits: tuple[Edit, ...] = ()
    encoding: Encoding = PNG

    def apply(self, image: Image.Image) -> bytes:
        for edit in self.edits:
            image = edit(image)
        return self.encoding.save(image)

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.encoding.format]


def round_trip(encoding: Encoding) -> Edit:
    def edit(image: Image.Image) -> Image.Image:
        with Image.open(io.BytesIO(encoding.save(image))) as decoded:
            return decoded.convert("RGB")

    return edit


def scale(factor: float) -> Edit:
    return lambda image: image.resize(
        (round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS
    )


def other_sd_size(width: int, height: int) -> tuple[int, int]:
    """The nearest other size with both sides multiples of 64 and the same aspect ratio (within 1.5 %)."""
    aspect = width / height
    candidates = [
        (w, h) for w in SD_SIDES for h in SD_SIDES if abs(w / h / aspect - 1) <= 0.015 and (w, h) != (width, height)
    ]
    return min(candidates, key=lambda s: (abs(math.log(s[0] / width)), -s[0]))


def to_other_sd_size(image: Image.Image) -> Image.Image:
    return image.resize(other_sd_size(image.width, image.height), Image.Resampling.LANCZOS)


def centre_crop(fraction: float) -> Edit:
    """Keep the middle (1 - fraction) of each side."""

    def edit(image: Image.Image) -> Image.Image:
        width, height = round(image.width * (1 - fraction)), round(image.height * (1 - fraction))
        left, top = (image.width - width) // 2, (image.height - height) // 2
        return image.crop((left, top, left + width, top + height))

    return edit


def top_left_crop(fraction: float) -> Edit:
    """Cut `fraction` of the width and of the height off the left and the top."""
    return lambda image: image.crop(
        (round(image.width * fraction), round(image.height * fraction), image.width, image.height)
    )


def brightness(factor: float) -> Edit:
    return lambda image: ImageEnhance.Brightness(image).enhance(factor)


def contrast(factor: float) -> Edit:
    return lambda image: ImageEnhance.Contrast(image).enhance(factor)


def blur(sigma: float) -> Edit:
    return lambda image: image.filter(ImageFilter.GaussianBlur(sigma))


def noise(sigma: float) -> Edit:
    """Gaussian noise of standard deviation `sigma` grey levels, rounded and clipped to 8 bits."""

    def edit(image: Image.Image) -> Image.Image:
        pixels = np.asarray(image, dtype=np.float64)
        noisy = pixels + np.random.default_rng(NOISE_SEED).normal(0, sigma, pixels.shape)
        return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))

    return edit


def rotate(degrees: float) -> Edit:
    """Counter-clockwise about the centre, bicubic, same size (the corners come in black)."""
    return lambda image: image.rotate(degrees, Image.Resampling.BICUBIC)


def flip(transpose: Image.Transpose) -> Edit:
    return lambda image: image.transpose(transpose)


def _matrix() -> list[Attack]:
    attacks = [Attack("none", "none", "unedited PNG")]
    for quality in (95, 90, 80, 75, 50):
        for subsampling, chroma in ((2, "420"), (0, "444")):
            attacks.append(
                Attack(
                    f"jpeg{quality}-{chroma}",
                    "jpeg",
                    f"JPEG quality {quality}, {chroma[0]}:{chroma[1]}:{chroma[2]}",
                    encoding=jpeg(quality, subsampling),
                )
            )
    attacks += [Attack(f"webp{q}", "webp", f"lossy WebP quality {q}", encoding=webp(q)) for q in (90, 75)]
    if can_save("AVIF"):
        attacks += [Attack(f"avif{q}", "avif", f"AVIF quality {q}, 4:2:0", encoding=avif(q)) for q in (90, 75)]
    attacks += [Attack(f"resize{f:g}", "resize", f"resized x{f:g} (Lanczos)", (scale(f),)) for f in (0.5, 0.75, 1.5)]
    attacks.append(
        Attack("resize-sd", "resize", "resized to the nearest other SD size of its aspect", (to_other_sd_size,))
    )
    attacks += [
        Attack(f"crop{p}", "crop", f"centre crop: {p} % of each side cut", (centre_crop(p / 100),)) for p in (5, 10, 25)
    ]
    attacks += [
        Attack("crop10-topleft", "crop", "10 % of each side cut off the top and left", (top_left_crop(0.1),)),
        Attack("brightness1.2", "colour", "brightness x1.2", (brightness(1.2),)),
        Attack("contrast1.2", "colour", "contrast x1.2", (contrast(1.2),)),
        Attack("blur1", "filter", "Gaussian blur, σ 1 pixel", (blur(1.0),)),
        Attack("noise5", "filter", "Gaussian noise, σ 5 grey levels", (noise(5.0),)),
        Attack("rotate1", "geometry", "rotated 1° (bicubic, same size)", (rotate(1.0),)),
        Attack("rotate2", "geometry", "rotated 2° (bicubic, same size)", (rotate(2.0),)),
        Attack("flip-h", "geometry", "mirrored left to right", (flip(Image.Transpose.FLIP_LEFT_RIGHT),)),
        Attack("flip-v", "geometry", "mirrored top to bottom", (flip(Image.Transpose.FLIP_TOP_BOTTOM),)),
        Attack("rotate90", "geometry", "turned 90° counter-clockwise", (flip(Image.Transpose.ROTATE_90),)),
        Attack("transpose", "geometry", "mirrored along the main diagonal", (flip(Image.Transpose.TRANSPOSE),)),
        Attack("resize0.75+jpeg90", "combined", "resized x0.75, then JPEG q90 4:2:0", (scale(0.75),), jpeg(90)),
        Attack("resize0.75+jpeg95", "combined", "resized x0.75, then JPEG q95 4:2:0", (scale(0.75),), jpeg(95)),
        Attack("crop10+jpeg95", "combined", "centre crop 10 %, then JPEG q95 4:2:0", (centre_crop(0.1),), jpeg(95)),
        *(
            [
                Attack(
                    "crop10+avif90", "combined", "centre crop 10 %, then AVIF q90 4:2:0", (centre_crop(0.1),), avif(90)
                )
            ]
            if can_save("AVIF")
            else []
        ),
        Attack(
            "jpeg90+crop10",
            "combined",
            "JPEG q90 4:2:0, then centre crop 10 % (saved as PNG)",
            (round_trip(jpeg(90)), centre_crop(0.1)),
        ),
    ]
    return attacks


ATTACKS: dict[str, Attack] = {attack.name: attack for attack in _matrix()}


def pick(names: str | None) -> list[Attack]:
    """Attacks named in a comma-separated list, in the matrix's order; all of them for None."""
    if names is None:
        return list(ATTACKS.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in ATTACKS]
    if unknown or not wanted:
        raise ValueError(f"unknown attack(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(ATTACKS)}")
    return [a for a in ATTACKS.values() if a.name in wanted]
