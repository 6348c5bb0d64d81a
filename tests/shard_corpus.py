"""Dataset shards for the tests and benchmarks: WebDataset tars and Parquet files made from image bytes.

A sample is `(key, extension, bytes)`. Tars hold each image beside a `.json` member of the same
key, as img2dataset writes them; Parquet files hold the image as raw bytes or as Hugging Face's
`{bytes, path}` struct.
"""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
from PIL import Image

Sample = tuple[str, str, bytes]


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def tiny_samples(count: int, prefix: str = "") -> list[Sample]:
    """`count` 16x16 PNGs: each audits in well under a millisecond (as `too_small`)."""
    rng = np.random.default_rng(len(prefix) + count)
    pixels = rng.integers(0, 256, (count, 16, 16, 3), dtype=np.uint8)
    return [(f"{prefix}{i:06d}", "png", encode(Image.fromarray(p))) for i, p in enumerate(pixels)]


def tar_bytes(samples: list[Sample]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for key, extension, data in samples:
            for name, payload in ((f"{key}.{extension}", data), (f"{key}.json", json.dumps({"key": key}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def parquet_bytes(samples: list[Sample], struct: bool = True) -> bytes:
    """An image column `image` ({bytes, path} when `struct`, raw bytes otherwise) and a `key` column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [{"bytes": d, "path": f"{k}.{e}"} if struct else d for k, e, d in samples]
    table = pa.table({"key": [k for k, _, _ in samples], "image": images})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=max(1, len(samples) // 2))
    return buffer.getvalue()
