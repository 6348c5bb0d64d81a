"""Speed techniques as a user runs them: set against the plain run, broken images caught, sweeps fitted."""

import shutil
import statistics
from pathlib import Path

import pytest
from support import sdsuite

from suite import results
from suite.cli import main
from suite.report import sweeps
from suite.report.runs import load_run
from suite.scenario import load, resolve_profile

TECHNIQUES = """
[defaults]
weights = "tiny"
model = "sd-v1"
sampler = "ddim"
width = 64
height = 64
steps = 3
repeats = 2
warmup = 1

[[scenario]]
name = "plain"

[[scenario]]
name = "channels-last"
channels_last = true
quality_reference = "plain"

# deliberately broken: fp16 with a guidance scale that overflows it (NaN, then a black image)
[[scenario]]
name = "fp16-overflow"
precision = "fp16"
guidance_scale = 100000.0
quality_reference = "plain"

# deliberately broken: a "speed-up" that computes another image (another seed)
[[scenario]]
name = "other-image"
seed = 1
quality_reference = "plain"

[[scenario]]
name = "steps"
family = "sweep"
[scenario.matrix]
steps = [1, 2, 4]
"""


@pytest.fixture(scope="module")
def techniques_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fast")
    (root / "techniques.toml").write_text(TECHNIQUES)
    out = root / "run"
    proc = sdsuite("bench", str(root / "techniques.toml"), "--out", str(out))
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
    return out


def test_a_speed_up_that_breaks_the_image_is_reported_broken(techniques_run):
    rows = {r["scenario"]: r for r in results.load(techniques_run).to_dict("records")}
    assert rows["plain"]["quality"] == "ok"
    assert rows["channels-last"]["quality"] == "ok" and rows["channels-last"]["psnr_db"] > 40
    assert rows["channels-last"]["techniques"] == "channels-last"
    assert rows["fp16-overflow"]["quality"].startswith("broken") and "NaN" in rows["fp16-overflow"]["quality"]
    other = rows["other-image"]
    assert other["quality"].startswith("broken") and "PSNR" in other["quality"] and other["psnr_db"] < 15


def test_report_sets_each_technique_against_its_plain_run(techniques_run, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(techniques_run), "-o", str(out)]) == 0
    page = out.read_text()
    table = page[page.index('id="speedups"') : page.index("</table>", page.index('id="speedups"'))]
    assert table.count("<tr data-status") == 3  # channels-last, fp16-overflow, other-image
    assert table.count("q-broken") == 2 and table.count("not counted: the image is broken") == 2
    assert "Scaling" in page and "s per step on top of" in page


def test_steps_sweep_is_found_and_fitted(techniques_run):
    found = sweeps.find_sweeps(load_run(techniques_run))
    assert [(s.family, s.axis, s.x) for s in found] == [("sweep", "steps", [1.0, 2.0, 4.0])]
    _, per_step = sweeps.line_fit(found[0].x, found[0].latency_s)
    # the slope is the cost of a step: what the runs measured step by step (the tiny model's fixed
    # cost is milliseconds, so the intercept is within noise of 0 and not checked)
    measured = [
        t for r in load_run(techniques_run).records if r.scenario.family == "sweep" for t in r.timings.step_s[0]
    ]
    assert 0.5 < per_step / statistics.median(measured) < 2


def test_sweep_findings_on_known_numbers(tmp_path):
    def sweep(axis, x, latency, batch=None):
        n = len(x)
        return sweeps.Sweep(None, "f", axis, x, latency, latency, latency, [None] * n, "RSS", batch or [1] * n)

    assert sweeps.finding(sweep("steps", [10, 20, 40], [1.5, 2.5, 4.5])).startswith("0.1 s per step on top of 0.5 s")
    batch = sweep("batch", [1, 2, 4, 8], [1.0, 1.2, 1.6, 3.0], [1, 2, 4, 8])
    assert "within 10 % of the best from batch 4" in sweeps.finding(batch)
    size = sweep("resolution", [256, 512, 1024], [1.0, 4.0, 32.0])
    assert sweeps.finding(size) == (
        "time per pixel is lowest at 256x256 and 2.00x that at 1024x1024: within 25 % of the lowest up to "
        "512x512, then attention's quadratic term shows"
    )
    small = sweep("resolution", [128, 256], [2.0, 4.0])
    assert sweeps.finding(small).startswith("time per pixel falls all the way to 256x256 (2.00x lower than at 128")


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile on CPU needs a compiler")
def test_a_compile_over_its_budget_is_stopped_and_recorded(tmp_path):
    profile = tmp_path / "compile.toml"
    profile.write_text(
        '[[scenario]]\nname = "compiled"\nmodel = "sd-v1"\nweights = "tiny"\nwidth = 64\nheight = 64\nsteps = 2\n'
        'compile = "default"\ncompile_timeout_s = 1\n'
    )
    out = tmp_path / "run"
    proc = sdsuite("bench", str(profile), "--out", str(out))
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    (row,) = results.load(out).to_dict("records")
    assert row["status"] == "timeout"
    assert row["error"].startswith("compile did not finish within its 1 s budget during compile 1/1")
    assert row["duration_s"] < 120  # stopped at its budget, not at the scenario's timeout


def test_fast_profile_runs_only_what_fits_the_machine():
    scenarios = load(resolve_profile("fast"))
    references = {s.quality_reference for s in scenarios} - {""}
    assert references == {"gpu-eager-fp32", "cpu-eager-fp32"}
    cpu = [s for s in scenarios if s.device == "cpu"]
    assert cpu and all("no-accelerator" in s.requires for s in cpu)
    assert all("cpu-bf16" in s.requires for s in cpu if s.precision == "bf16")
    assert {s.techniques for s in scenarios} >= {"eager", "channels-last", "threads-1", "compile-default+freeze(unet)"}
