"""The baselines of the folder benchmark: decode a PNG to pixels and nothing else.

A module of its own so that pool workers import only the decoder and numpy to run it, as the
audit's workers import only the audit. `read_png` decodes with PIL, as a Python program reading
PNGs does; `read_png_libspng` with the faster decoder the audit itself uses for 8-bit RGB(A).
"""

import io

import numpy as np
import pyspng
from PIL import Image


def read_png(path: str) -> tuple[int, ...]:
    with open(path, "rb") as handle:
        data = handle.read()
    return np.asarray(Image.open(io.BytesIO(data))).shape


def read_png_libspng(path: str) -> tuple[int, ...]:
    with open(path, "rb") as handle:
        data = handle.read()
    return pyspng.load(data).shape
