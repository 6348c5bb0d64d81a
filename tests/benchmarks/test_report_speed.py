"""How fast the reports people open are: built by `sdsuite report`, then opened in headless Chromium.

Run with `make bench-micro`. The issue's targets: the report of a 1,000-file audit and of a
30-scenario run each build in under 10 s and open in under 3 s. Building is timed as a user
runs it, `sdsuite report` in a fresh process (start-up and imports, reading the inputs,
thumbnails, the audit of every generated image, charts, writing the file); opening is the
browser's own navigation timing (load event, first contentful paint) of a fresh page. Each
figure is the median of three rounds and goes to the benchmark's extra_info, with the build's
CPU seconds (all threads), which tell what it costs when the machine is shared.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from pathlib import Path

import pytest
from browser import open_page
from report_inputs import write_audit_folder, write_run
from support import sdsuite

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
    builds, cpu, loads, paints = [], [], [], []

    def build() -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = sdsuite("report", str(source), "-o", str(out))
        _, stderr = proc.communicate(timeout=120)
        builds.append(time.perf_counter() - t0)
        assert proc.returncode == 0, stderr
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)

    benchmark.pedantic(build, rounds=ROUNDS, iterations=1)
    for _ in range(ROUNDS):
        page, seen = open_page(browser, out)
        assert seen["errors"] == [] and seen["requests"] == []
        loads.append(seen["timing"]["load_ms"] / 1000)
        paints.append((seen["timing"]["first_paint_ms"] or float("nan")) / 1000)
        page.close()
    figures = {
        f"{name}_build_s": statistics.median(builds),
        f"{name}_build_cpu_s": statistics.median(cpu),
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
