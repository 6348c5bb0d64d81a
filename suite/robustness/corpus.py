"""Clean images to mark and attack: scikit-image's colour photographs, or a folder of the user's own.

Every image is fitted (centre-cropped to the aspect ratio, then resized) to a size Stable Diffusion
outputs, as the watermark is embedded into such outputs. scikit-image ships its photographs inside
its wheel, so the default corpus needs no download.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# Colour photographs that scikit-image ships inside its wheel (no download).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
# Sizes SD 1.x/2.x users render at (sides multiples of 64), square first.
SD_SIZES = ((512, 512), (768, 768), (640, 448), (448, 640), (768, 512), (512, 768), (768, 576), (576, 768))
# The default corpus: every photograph at 512x512, then again (mirrored) at another SD size.
DEFAULT_SIZES = ((768, 768), (640, 448), (512, 768), (768, 512), (448, 640), (768, 576), (576, 768))


@dataclass(frozen=True)
class CleanImage:
    name: str
    image: Image.Image


def photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre-crop to the aspect ratio of `size`, then resize to it."""
    width, height = size
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))))
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def nearest_sd_size(width: int, height: int) -> tuple[int, int]:
    """The SD size whose aspect ratio is closest to the image's, and of those the closest in area."""
    aspect, area = math.log(width / height), math.log(width * height)
    return min(
        SD_SIZES,
        key=lambda s: (round(abs(math.log(s[0] / s[1]) - aspect), 6), abs(math.log(s[0] * s[1]) - area)),
    )


def default_corpus() -> Iterator[CleanImage]:
    """The 7 photographs at 512x512, then each mirrored at another SD size: 14 images."""
    for name in PHOTOS:
        yield CleanImage(f"{name}-512x512", fit(photo(name), (512, 512)))
    for name, size in zip(PHOTOS, DEFAULT_SIZES, strict=True):
        mirrored = photo(name).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        yield CleanImage(f"{name}-mirrored-{size[0]}x{size[1]}", fit(mirrored, size))


def folder_corpus(folder: Path, skipped: list[str]) -> Iterator[CleanImage]:
    """Every image under `folder` (sorted, recursive), fitted to its nearest SD size; a file PIL
    cannot read is left out and named, with why, in `skipped`."""
    from suite.audit.scan import IMAGE_SUFFIXES

    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            skipped.append(f"{path}: {exc}")
            continue
        size = nearest_sd_size(image.width, image.height)
        yield CleanImage(f"{path.relative_to(folder).as_posix()}-{size[0]}x{size[1]}", fit(image, size))
