"""How long the searches for edited marks take per image: the crop and resize searches together,
all three schemes, one core (`--search auto` runs them on every image the aligned test does not
detect). The issue's budget is 25 ms for a 512x512 image; docs/audit.md quotes these figures.

Run with `.venv/bin/pytest tests/benchmarks/test_search_speed.py --benchmark-only`. Rounds are
timed in CPU time of this process (time.process_time): the budget is per core, and on a shared
machine wall time also counts the other processes' turns. The best round is what is asserted:
on 2 vCPUs shared with other work a round's CPU time still varies by 1.5x (a busy sibling thread
slows this one), so there are many rounds.
"""

from __future__ import annotations

import io
import time

import audit_corpus
import cv2
import numpy as np
import pytest
from PIL import Image

from suite.audit import crops, resizes, searches
from suite.audit.decode import u_planes
from suite.audit.detect import examine
from suite.audit.readers import read_pixels
from suite.audit.scan import settle_process
from suite.watermark import SCHEMES, embed

SCHEMES_ALL = list(SCHEMES.values())
BUDGET_S = 0.025  # per 512x512 image, crop and resize searches together


@pytest.fixture(autouse=True)
def one_core():
    """OpenCV would resize on every core; an audit worker uses one (scan.init_worker)."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(threads)


@pytest.fixture(scope="module")
def clean_photo() -> np.ndarray:
    return np.asarray(audit_corpus.fit(audit_corpus.photo("astronaut"), (512, 512)))


def _both(u: np.ndarray, lossy_chroma: bool = False) -> None:
    """As searches.reexamine calls them: the step readings where chroma was coded lossily at half size."""
    crops.search(u, SCHEMES_ALL, lattice=not lossy_chroma, steps=lossy_chroma)
    resizes.search(u, SCHEMES_ALL, lattice=not lossy_chroma)


@pytest.mark.benchmark(timer=time.process_time)
def test_searches_of_a_512_image(benchmark, clean_photo):
    """An unmarked SD-sized image: nothing is found, so every candidate is tried (the worst case)."""
    u = u_planes(clean_photo)
    benchmark.pedantic(_both, (u,), rounds=40, iterations=1, warmup_rounds=3)
    best = benchmark.stats.stats.min
    benchmark.extra_info["best_ms"] = round(best * 1e3, 2)
    print(f"\ncrop + resize searches, 512x512, three schemes: best {best * 1e3:.1f} ms")
    assert best <= BUDGET_S


@pytest.mark.benchmark(timer=time.process_time)
def test_searches_of_a_512_jpeg(benchmark, clean_photo):
    """The same photograph saved as JPEG q90 4:2:0: its stored chroma, spread over the pixels (float
    planes), read for the encoder's step, in a process set up as an audit worker's."""
    settle_process()
    data = io.BytesIO()
    Image.fromarray(clean_photo).save(data, "JPEG", quality=90)
    image = Image.open(io.BytesIO(data.getvalue()))
    pixels = read_pixels(np.asarray(image.convert("RGB")), image, data.getvalue())
    assert pixels.lossy_chroma
    benchmark.pedantic(_both, (pixels.u, True), rounds=40, iterations=1, warmup_rounds=3)
    best = benchmark.stats.stats.min
    benchmark.extra_info["best_ms"] = round(best * 1e3, 2)
    print(f"\ncrop + resize searches on the step readings, 512x512 JPEG, three schemes: best {best * 1e3:.1f} ms")
    assert best <= BUDGET_S


@pytest.mark.benchmark(timer=time.process_time)
def test_searches_of_a_crop(benchmark, clean_photo):
    """A 461x461 crop of a marked 512x512 output, through reexamine as the audit calls it (the
    mirrors' aligned tests, then the crop and resize searches)."""
    cropped = np.ascontiguousarray(np.asarray(embed(Image.fromarray(clean_photo), "sd-v1"))[51:, 51:])
    u = u_planes(cropped)
    evidence = examine(cropped, SCHEMES_ALL, u=u)
    found = benchmark.pedantic(searches.reexamine, (cropped, u, evidence), rounds=10, iterations=1, warmup_rounds=1)
    assert found[0].detected and found[0].realignment is not None
    benchmark.extra_info["best_ms"] = round(benchmark.stats.stats.min * 1e3, 2)
    print(f"\nreexamine, 461x461 crop: best {benchmark.stats.stats.min * 1e3:.1f} ms")
