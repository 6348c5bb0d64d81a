"""What auditing a folder of JPEGs costs against merely decoding them, with and without the searches.

A JPEG is decoded once, for the pixels the reference decoder reads, and the chroma planes the file
stores are recovered from them (readers.py). Both audits and the decode-only baseline run on all
cores, interleaved, best round kept; the ratios go to extra_info and docs/audit.md.
"""

from __future__ import annotations

import os

import pytest
from png_reader import read_png
from test_audit_speed import _best_per_call, _decode_all, _report, write_folder

from suite.cli import main

FILES = 400


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory) -> list[str]:
    """512x512 JPEGs at quality 90, 4:2:0 (PIL's default)."""
    return write_folder(tmp_path_factory.mktemp("jpeg-bench"), FILES, ".jpg", quality=90)


def _audit(folder: str, search: str) -> None:
    code = main(["audit", folder, "--format", "jsonl", "-o", os.devnull, "--search", search])
    assert code == 0


def test_jpeg_folder_audit_vs_decoding(benchmark, jpeg_folder, capsys):
    folder, workers = os.path.dirname(jpeg_folder[0]), os.cpu_count() or 1
    runs = {
        "decode": lambda: _decode_all(jpeg_folder, workers, read_png),
        "audit_never": lambda: _audit(folder, "never"),
        "audit_auto": lambda: _audit(folder, "auto"),
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(3):
        for name, run in runs.items():
            best[name] = min(best[name], _best_per_call(run, 1))
    capsys.readouterr()
    benchmark.pedantic(_audit, (folder, "never"), rounds=1, iterations=1)
    for name in ("audit_never", "audit_auto"):
        _report(benchmark, f"jpeg_{name}_vs_decode", best["decode"] / best[name], **{name: best[name] / FILES})
    benchmark.extra_info["decode_ms_per_file"] = round(best["decode"] / FILES * 1e3, 3)
    assert best["decode"] / best["audit_never"] >= 0.25  # the recovered chroma and the reading paths stay cheap
