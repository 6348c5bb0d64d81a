"""How fast the reports people open are: built by `sdsuite report`, then opened in headless Chromium.

Run with `make bench-micro`. The issue's targets: the report of a 1,000-file audit and of a
30-scenario run each build in under 10 s and open in under 3 s. Building is timed end to end
through the CLI (reading the inputs, thumbnails, the audit of every image, charts, writing the
file); opening is the browser's own navigation timing (load event, first contentful paint) of
a fresh page. Each figure is the median of three rounds and goes to the benchmark's extra_info.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
from browser import open_page
from report_inputs import write_audit_folder, write_run

from suite.cli import main

AUDIT_FILES = 1000
SCENARIOS = 30
BUILD_LIMIT_S = 10.0
OPEN_LIMIT_S = 3.0
ROUNDS = 3


@pytest.fixture(scope="module")
def audit_jsonl(tmp_path_factory) -> Path:
    """A real `sdsuite audit --format jsonl` of 1,000 real-size PNGs (marked, clean, small, broken)."""
    root = tmp_path_factory.mktemp("audit-report")
    write_audit_folder(root / "images", AUDIT_FILES)
    out = root / "audit.jsonl"
    main(["audit", str(root / "images"), "--format", "jsonl", "-o", str(out), "--workers", str(os.cpu_count() or 1)])
    assert len(out.read_text().splitlines()) == AUDIT_FILES
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run-report"), SCENARIOS)


def _build_and_open(benchmark, browser, source: Path, out: Path, name: str) -> None:
    builds, loads, paints = [], [], []

    def build() -> None:
        t0 = time.perf_counter()
        assert main(["report", str(source), "-o", str(out)]) == 0
        builds.append(time.perf_counter() - t0)

    benchmark.pedantic(build, rounds=ROUNDS, iterations=1)
    for _ in range(ROUNDS):
        page, seen = open_page(browser, out)
        assert seen["errors"] == [] and seen["requests"] == []
        loads.append(seen["timing"]["load_ms"] / 1000)
        paints.append((seen["timing"]["first_paint_ms"] or float("nan")) / 1000)
        page.close()
    figures = {
        f"{name}_build_s": statistics.median(builds),
        f"{name}_load_event_s": statistics.median(loads),
        f"{name}_first_paint_s": statistics.median(paints),
        f"{name}_html_mb": out.stat().st_size / 1e6,
    }
    benchmark.extra_info.update({k: round(v, 3) for k, v in figures.items()})
    print("\n" + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    assert figures[f"{name}_build_s"] < BUILD_LIMIT_S
    assert figures[f"{name}_load_event_s"] < OPEN_LIMIT_S


def test_audit_report_of_1000_files(benchmark, browser, audit_jsonl, capsys):
    with capsys.disabled():
        _build_and_open(benchmark, browser, audit_jsonl, audit_jsonl.with_suffix(".html"), "audit_1000")


def test_bench_report_of_30_scenarios(benchmark, browser, run_dir, capsys):
    with capsys.disabled():
        _build_and_open(benchmark, browser, run_dir, run_dir / "report.html", "run_30")
