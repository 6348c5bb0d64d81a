"""Images for the audit's tests and benchmarks, from scikit-image's sample photographs (the package's
corpus: suite/robustness/corpus.py) and illustrations drawn here.

Real photographs give the chroma texture of camera images; the synthetic illustrations (flat,
saturated colour fields with outlines and gradients) stand in for the many SD outputs that look
like that, which are the hardest case for the reference watermark and for a detector's null.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from suite.robustness.corpus import PHOTOS, fit, photo

SIZES = ((512, 512), (768, 768), (640, 448), (512, 768))


def illustration(seed: int, size: tuple[int, int] = (512, 512)) -> Image.Image:
    """A flat-coloured drawing: saturated fills, dark outlines, sometimes a gradient sky and blur."""
    rng = np.random.default_rng(seed)
    width, height = size
    palette = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(6)]
    palette += [(255, 0, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255), (20, 20, 20)]
    if rng.random() < 0.5:
        top, bottom = np.array(palette[0], float), np.array(palette[1], float)
        ramp = np.linspace(0, 1, height)[:, None, None]
        sky = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3))
        image = Image.fromarray(sky.astype(np.uint8))
    else:
        image = Image.new("RGB", size, palette[int(rng.integers(len(palette)))])
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 14))):
        x, y = rng.integers(0, width), rng.integers(0, height)
        rx, ry = rng.integers(width // 16, width // 3), rng.integers(height // 16, height // 3)
        fill = palette[int(rng.integers(len(palette)))]
        outline = (15, 15, 15) if rng.random() < 0.6 else None
        box = [int(x - rx), int(y - ry), int(x + rx), int(y + ry)]
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill, outline=outline, width=3)
        else:
            points = [(int(x + rx * np.cos(a)), int(y + ry * np.sin(a))) for a in np.sort(rng.uniform(0, 6.3, 5))]
            draw.polygon(points, fill=fill, outline=outline, width=3)
    if rng.random() < 0.4:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))
    return image


def tinted(name: str, seed: int) -> Image.Image:
    """A grayscale sample photograph mapped through a two-colour duotone (a coloured texture)."""
    from skimage import data

    gray = np.asarray(getattr(data, name)(), dtype=np.float64)[..., None] / 255
    rng = np.random.default_rng(seed)
    dark, light = rng.integers(0, 256, (2, 3))
    return Image.fromarray((dark * (1 - gray) + light * gray).astype(np.uint8))


def clean_images(
    count_per_size: int = 3, sizes: tuple[tuple[int, int], ...] = SIZES
) -> Iterator[tuple[str, Image.Image]]:
    """Photographs (cycled) and illustrations at every size: `count_per_size` of each per size."""
    for width, height in sizes:
        for i in range(count_per_size):
            name = PHOTOS[(i + width + height) % len(PHOTOS)]
            source = photo(name)
            if i % 2:
                source = source.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            yield f"{name}-{width}x{height}", fit(source, (width, height))
            yield (
                f"illustration{i}-{width}x{height}",
                illustration(1000 * width + 10 * height + i, (width, height)),
            )


def jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def brightness(image: Image.Image, factor: float = 1.2) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def resize(image: Image.Image, scale: float = 0.75) -> Image.Image:
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def crop(image: Image.Image, fraction: float = 0.1) -> Image.Image:
    """Cut `fraction` of the width and height off the top-left corner (the block grid moves)."""
    return image.crop((round(image.width * fraction), round(image.height * fraction), image.width, image.height))


EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg90": jpeg,
    "brightness1.2": brightness,
    "resize0.75": resize,
    "crop10%": crop,
}
