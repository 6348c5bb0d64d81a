"""Reports as people open them: real headless Chromium, no network, untrusted text kept inert."""

import json
import shutil
import time
from pathlib import Path

import pytest
from support import sdsuite

from suite.cli import main
from suite.report.compare import compare_latency

XSS_PROMPT = "<script>alert(1)</script>"
XSS_NAME = '"><img src=x onerror=alert(1)>'
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield b
        b.close()


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    seen = {"errors": [], "requests": [], "dialogs": []}
    page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: r.url.startswith(("file:", "data:")) or seen["requests"].append(r.url))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    t0 = time.perf_counter()
    page.goto(path.as_uri(), wait_until="load")
    seen["load_s"] = time.perf_counter() - t0
    return page, seen


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
    values = page.eval_on_selector_all(
        "#scenarios tbody tr", "rows => rows.map(r => r.cells[14].getAttribute('data-v')).filter(v => v)"
    )
    assert values == sorted(values, key=float)


def test_audit_report_escapes_file_names(browser, tmp_path, smoke_run):
    image = next((smoke_run / "images").glob("v1-txt2img-*.png"))
    hostile = tmp_path / f"{XSS_NAME}.png"
    shutil.copy(image, hostile)
    records = [
        {
            "path": str(hostile),
            "status": "ok",
            "error": None,
            "width": 256,
            "height": 256,
            "watermarks": [
                {
                    "scheme": "sd-v1",
                    "detected": True,
                    "p_value": 1e-12,
                    "bit_accuracy": 0.98,
                    "bits": "0" * 136,
                    "decoded": "StableDiffusionV1",
                }
            ],
            "metadata": {"parameters": XSS_PROMPT},
        },
        {
            "path": str(tmp_path / "broken.png"),
            "status": "error",
            "error": XSS_PROMPT,
            "width": None,
            "height": None,
            "watermarks": [],
            "metadata": {},
        },
    ]
    audit = tmp_path / "audit.jsonl"
    audit.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["report", str(audit), "-o", str(tmp_path / "audit.html")]) == 0
    page, seen = open_page(browser, tmp_path / "audit.html")
    assert seen["dialogs"] == [] and seen["errors"] == [] and seen["requests"] == []
    assert page.locator("#audit-files tbody tr").count() == 2
    assert page.locator("#audit-errors tbody tr").count() == 1


def test_compare_command(smoke_run, capsys):
    assert main(["compare", str(smoke_run), str(smoke_run)]) == 0
    out = capsys.readouterr().out
    assert "v1-txt2img" in out and "same within spread" in out


def test_comparison_verdicts():
    assert compare_latency([1.0, 1.01, 0.99, 1.0], [2.0, 2.02, 1.98, 2.0]).verdict == "slower"
    assert compare_latency([2.0, 2.02, 1.98], [1.0, 1.01, 0.99]).verdict == "faster"
    assert compare_latency([1.0, 1.2, 0.9, 1.1], [1.05, 1.15, 0.95, 1.0]).verdict == "same within spread"
    assert compare_latency([1.0], [2.0]).verdict.startswith("no spread")
