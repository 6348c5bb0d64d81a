"""The baseline of the folder benchmark: decode a PNG to pixels and nothing else.

A module of its own so that pool workers import only PIL and numpy to run it, as the audit's
workers import only the audit.
"""

import io

import numpy as np
from PIL import Image


def read_png(path: str) -> tuple[int, ...]:
    with open(path, "rb") as handle:
        data = handle.read()
    return np.asarray(Image.open(io.BytesIO(data))).shape
