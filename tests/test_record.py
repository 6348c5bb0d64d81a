"""The typed bench record: written back byte for byte, old schemas read, and the report kept light.

The golden files are real smoke runs (`sdsuite bench smoke`, tiny weights) written before the
record was typed: `smoke/` by the schema-2 writer, `smoke-v1/` by the schema-1 writer of cf002e1^.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suite.cli import main
from suite.record import SCHEMA_VERSION, Record
from suite.report.runs import load_run
from suite.results import ResultsStore

GOLDEN = Path(__file__).parent / "golden"


def test_a_smoke_run_reads_and_writes_back_byte_for_byte(tmp_path):
    """Every line through from_json/to_json, and the whole file through the store's writer."""
    lines = (GOLDEN / "smoke" / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    assert {json.loads(line)["schema_version"] for line in lines} == {SCHEMA_VERSION}
    for line in lines:
        assert json.dumps(Record.from_json(json.loads(line)).to_json()) + "\n" == line
    store = ResultsStore(tmp_path)
    store.open()
    for line in lines:
        store.append(json.loads(line))
    assert store.jsonl.read_text(encoding="utf-8") == "".join(lines)


def test_a_smoke_run_keeps_its_csv(tmp_path):
    """The CSV that the untyped writer wrote is the one the typed record rebuilds."""
    shutil.copy(GOLDEN / "smoke" / "results.jsonl", tmp_path / "results.jsonl")
    ResultsStore(tmp_path).open()
    assert (tmp_path / "results.csv").read_text() == (GOLDEN / "smoke" / "results.csv").read_text()


def test_a_schema_1_run_still_loads_and_reports(tmp_path):
    run_dir = tmp_path / "old"
    shutil.copytree(GOLDEN / "smoke-v1", run_dir)
    run = load_run(run_dir)
    assert {r.schema_version for r in run.records} == {1}
    ok = [r for r in run.records if r.status == "ok"]
    assert ok and all(r.processes == () and r.row()["processes"] == 1 for r in ok)
    assert all(r.per_image_s() > 0 and r.row()["s_per_image"] > 0 for r in ok)
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "-o", str(out)]) == 0
    page = out.read_text()
    assert all(r.name in page for r in run.records)


def test_typed_parts_and_statistics():
    record = Record.from_json(json.loads((GOLDEN / "smoke" / "results.jsonl").read_text().splitlines()[0]))
    assert record.status == "ok" and record.measured and record.timings.latency_s
    assert record.memory.peak_rss_mib > 0 and record.quality.verdict
    groups = record.per_image_groups()
    assert sum(len(g) for g in groups) == len(record.timings.latency_s)
    assert record.row() is record.row()  # computed once


@pytest.mark.parametrize("command", [None, "report"])
def test_the_report_imports_neither_the_worker_nor_torch(tmp_path, command):
    """suite.report and all its modules, or a whole `sdsuite report` of a run, in a fresh interpreter."""
    run_dir = tmp_path / "run"
    shutil.copytree(GOLDEN / "smoke-v1", run_dir)
    if command:
        code = f"from suite.cli import main; main(['report', {str(run_dir)!r}, '-o', {str(tmp_path / 'r.html')!r}])"
    else:
        code = (
            "import importlib, pkgutil, suite.report\n"
            "for m in pkgutil.iter_modules(suite.report.__path__): importlib.import_module('suite.report.' + m.name)"
        )
    check = "\nimport sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers') or m == 'suite.worker'))"
    out = subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
