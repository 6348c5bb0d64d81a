from dataclasses import dataclass

import audit_corpus
import numpy as np
import pytest
from PIL import Image

from suite.watermark import SCHEMES, embed


@dataclass(frozen=True)
class Sample:
    name: str
    image: Image.Image
    scheme: str | None  # the mark it carries, None when clean
    order: str
    edit: str | None

    @property
    def rgb(self) -> np.ndarray:
        return np.asarray(self.image.convert("RGB"))


@pytest.fixture(scope="session")
def clean_images() -> list[tuple[str, Image.Image]]:
    """Photographs and flat illustrations at 512x512, 768x768, 640x448 and 512x768."""
    return list(audit_corpus.clean_images(count_per_size=3))


@pytest.fixture(scope="session")
def marked_samples(clean_images) -> list[Sample]:
    """Every clean image marked with every scheme (BGR, as the reference scripts), SDXL also in RGB."""
    samples = []
    for i, (name, image) in enumerate(clean_images):
        for scheme in SCHEMES:
            samples.append(Sample(name, embed(image, scheme), scheme, "bgr", None))
        if i % 2 == 0:
            samples.append(Sample(name, embed(image, "sdxl", "rgb"), "sdxl", "rgb", None))
    return samples


@pytest.fixture(scope="session")
def edited_samples(marked_samples) -> list[Sample]:
    return [
        Sample(s.name, edit(s.image), s.scheme, s.order, edit_name)
        for s in marked_samples
        for edit_name, edit in audit_corpus.EDITS.items()
    ]
