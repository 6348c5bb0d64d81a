"""Reports as people open them: real headless Chromium, no network, untrusted text kept inert."""

import json
import os
from pathlib import Path

import pytest
from browser import open_page
from PIL import Image
from report_inputs import write_audit_folder
from support import sdsuite

from suite.cli import main
from suite.report.checks import MarkCheck
from suite.report.compare import compare_latency

XSS_PROMPT = "<script>alert(1)</script>"
XSS_NAME = '"><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    """A second smoke-sized run whose prompt and directory name are script injections."""
    root = tmp_path_factory.mktemp("hostile")
    scenarios = root / "hostile.toml"
    scenarios.write_text(
        f"""
[defaults]
weights = "tiny"
width = 256
height = 256
steps = 3
repeats = 2
prompt = {json.dumps(XSS_PROMPT)}

[[scenario]]
name = "v1-txt2img"
model = "sd-v1"

[[scenario]]
name = "v2-txt2img"
model = "sd-v2.1"
sampler = "ddim"

[[scenario]]
name = "needs-cuda"
model = "sd-v1"
device = "cuda"
"""
    )
    out = root / XSS_NAME
    proc = sdsuite("bench", str(scenarios), "--out", str(out))
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def report(smoke_run, hostile_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(smoke_run), str(hostile_run), "-o", str(out)]) == 0
    return out


def test_report_opens_offline_with_charts_table_and_images(browser, report, smoke_run, hostile_run, tmp_path):
    page, seen = open_page(browser, report)
    page.mouse.wheel(0, 100000)
    page.wait_for_timeout(300)
    assert seen["errors"] == [] and seen["requests"] == [] and seen["dialogs"] == []
    rows = page.locator("#scenarios tbody tr")
    smoke = len(json.loads("[" + ",".join((smoke_run / "results.jsonl").read_text().splitlines()) + "]"))
    assert rows.count() == smoke + 3
    assert page.locator("figure img").count() >= 5  # latency, stages, steps, throughput, memory, compute
    assert page.locator(".card").count() == 2
    assert page.locator(".grid .tile img").count() >= 10
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_hostile_prompt_and_file_name_stay_text(browser, report):
    page, seen = open_page(browser, report)
    page.mouse.wheel(0, 100000)
    page.wait_for_timeout(300)
    assert seen["dialogs"] == [] and seen["errors"] == []
    assert page.locator("img[src='x']").count() == 0
    html = report.read_text()
    assert XSS_PROMPT not in html and XSS_NAME not in html
    assert page.get_by_text(XSS_NAME, exact=False).count() >= 1  # shown, as text


def test_table_sorts_and_filters(browser, report):
    page, _ = open_page(browser, report)
    page.fill('input[data-filter="scenarios"]', "v2-txt2img")
    visible = page.locator("#scenarios tbody tr:not(.hidden)")
    assert visible.count() == 2
    page.fill('input[data-filter="scenarios"]', "")
    page.select_option('select[data-filter="scenarios"]', "skipped")
    assert page.locator("#scenarios tbody tr:not(.hidden)").count() == 4
    page.select_option('select[data-filter="scenarios"]', "")
    header = page.locator("#scenarios thead th", has_text="s/image")
    header.click()
    column = page.eval_on_selector_all("#scenarios thead th", "ths => ths.map(t => t.textContent)").index("s/image")
    values = page.eval_on_selector_all(
        "#scenarios tbody tr", f"rows => rows.map(r => r.cells[{column}].getAttribute('data-v')).filter(v => v)"
    )
    assert values == sorted(values, key=float)


@pytest.fixture(scope="module")
def audit_report(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A real `sdsuite audit` of a small folder, run from its parent with relative paths, and its report."""
    root = tmp_path_factory.mktemp("audit")
    write_audit_folder(root / "folder", 12, hostile_name=XSS_NAME)
    (root / "folder" / "notes.txt.png").write_text("not an image")
    Image.open(root / "folder" / "00001.png").crop((13, 11, 500, 512)).save(root / "folder" / "cropped.png")
    jsonl = root / "audit.jsonl"
    cwd = Path.cwd()
    try:
        os.chdir(root)
        assert main(["audit", "folder", "--format", "jsonl", "-o", "audit.jsonl", "--workers", "1"]) == 1
    finally:
        os.chdir(cwd)
    assert main(["report", str(jsonl), "-o", str(root / "audit.html")]) == 0
    return root / "audit.html", [json.loads(line) for line in jsonl.read_text().splitlines()]


def test_audit_report_shows_a_real_audit(browser, audit_report):
    path, records = audit_report
    page, seen = open_page(browser, path)
    page.mouse.wheel(0, 100000)
    page.wait_for_timeout(300)
    assert seen["dialogs"] == [] and seen["errors"] == [] and seen["requests"] == []
    assert page.locator("img[src='x']").count() == 0
    html = path.read_text()
    assert XSS_PROMPT not in html and XSS_NAME not in html
    assert page.get_by_text(XSS_NAME, exact=False).count() >= 1  # the file name, shown as text
    assert page.get_by_text(XSS_PROMPT, exact=False).count() >= 1  # the A1111 prompt it claims, as text
    rows = page.locator("#audit-files tbody tr")
    assert rows.count() == len(records) == 15
    verdicts = {
        r["path"].rsplit("/", 1)[-1]: v
        for r, v in zip(
            records,
            page.eval_on_selector_all("#audit-files tbody tr", "rs => rs.map(r => r.dataset.status)"),
            strict=True,
        )
    }
    assert [verdicts[f"0000{i}.png"] for i in range(4)] == ["none", "sd-v1", "sd-v2", "sdxl"]  # a photograph
    assert verdicts[f"{XSS_NAME}.png"] == "sd-v1"
    assert verdicts["cropped.png"] == "sd-v1"  # found by the crop search, which the row says
    assert "crop search: grid at +5,+3 px" in page.locator("#audit-files tbody tr", has_text="cropped.png").inner_text()
    assert (verdicts["00005.png"], verdicts["00007.png"], verdicts["notes.txt.png"]) == ("too_small", "error", "error")
    # every file that could be read has its thumbnail, resolved from the audit's relative paths
    readable = sum(r["status"] != "error" for r in records)
    assert page.locator("#audit-files img").count() == readable
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    failed = page.locator("#audit-errors tbody").inner_text()
    assert page.locator("#audit-errors tbody tr").count() == 3
    assert "not_an_image" in failed and "truncated" in failed and "256x256" in failed
    schemes = page.locator("main table").first.inner_text()
    detected = sum(m["scheme"] == "sd-v1" and m["detected"] for r in records for m in r["watermarks"])
    assert f"sd-v1\t{detected}\t" in schemes
    assert page.locator("figure img").count() == 2  # verdicts, p-values
    page.select_option('select[data-filter="audit-files"]', "sdxl")
    assert page.locator("#audit-files tbody tr:not(.hidden)").count() == list(verdicts.values()).count("sdxl") == 2


def test_report_reads_cut_off_and_json_audits_and_refuses_other_files(tmp_path, capsys):
    record = {
        "path": "a.png",
        "status": "error",
        "error": "zero-byte file",
        "error_kind": "empty",
        "width": None,
        "height": None,
        "watermarks": [],
        "metadata": {},
    }
    cut = tmp_path / "audit.jsonl"
    cut.write_text(json.dumps(record) + "\n" + json.dumps(record)[:20])  # a scan killed while writing
    assert main(["report", str(cut), "-o", str(tmp_path / "cut.html")]) == 0
    assert "1 file(s)" in (tmp_path / "cut.html").read_text()
    array = tmp_path / "audit.json"  # --format json
    array.write_text(json.dumps([record, record]))
    assert main(["report", str(array), "-o", str(tmp_path / "array.html")]) == 0
    assert "2 file(s)" in (tmp_path / "array.html").read_text()
    bench = tmp_path / "results.jsonl"
    bench.write_text(json.dumps({"schema_version": 1, "scenario": {"name": "v1"}}) + "\n")
    assert main(["report", str(bench), "-o", str(tmp_path / "bench.html")]) == 2
    assert "not an audit record" in capsys.readouterr().err


def test_mark_check_verdicts():
    def check(embedded: str, found: tuple[str, ...], status: str = "ok") -> str:
        return MarkCheck(embedded, status, tuple((s, 1e-9) for s in found), 1e-9, True, 1.0, "").verdict

    assert check("sd-v1", ("sd-v1",)) == "as embedded"
    assert check("none", ()) == "as embedded"
    assert check("sd-v1", ()) == "missing"
    assert check("none", ("sdxl",)) == "unexpected"
    assert check("sd-v2", ("sd-v1",)) == "wrong scheme"
    assert check("sd-v1", (), "too_small") == "too small"


def test_compare_command(smoke_run, capsys):
    assert main(["compare", str(smoke_run), str(smoke_run)]) == 0
    out = capsys.readouterr().out
    assert "v1-txt2img" in out and "same within spread" in out


def test_comparison_verdicts():
    assert compare_latency([[1.0, 1.01, 0.99, 1.0]], [[2.0, 2.02, 1.98, 2.0]]).verdict == "slower"
    assert compare_latency([[2.0, 2.02, 1.98]], [[1.0, 1.01, 0.99]]).verdict == "faster"
    assert compare_latency([[1.0, 1.2, 0.9, 1.1]], [[1.05, 1.15, 0.95, 1.0]]).verdict == "same within spread"
    assert compare_latency([[1.0]], [[2.0]]).verdict.startswith("no spread")


def test_a_difference_within_the_spread_between_processes_is_not_called_real():
    """Repeats agree closely within each process, processes differ by 20 %: a 5 % change between two
    runs is inside what another run would see, though the repeats alone would call it real."""
    a = [[level + 0.001 * (i % 5) for i in range(15)] for level in (1.0, 1.2, 1.1)]
    b = [[x * 1.05 for x in g] for g in a]
    assert compare_latency(a, b).verdict == "same within spread"
    flat = [[x for g in a for x in g]], [[x for g in b for x in g]]
    assert compare_latency(*flat).verdict == "slower"
