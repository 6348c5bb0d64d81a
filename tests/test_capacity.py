"""Capacity searches: bisection, the search's record, the runner's probes, the report's tables.

Budgets are emulated on CUDA only, so here each probe is answered by a stand-in for the worker
that says whether the probed configuration fits a simple memory model; everything around it
(bisection, records, results files, report) is the real code.
"""

import json
import math
from pathlib import Path

import pytest

from suite import capacity, results, runner
from suite.cli import main
from suite.report import capacity as capacity_report
from suite.report.runs import load_run
from suite.scenario import Scenario, ScenarioError, parse


def test_bisect_finds_the_boundary_probing_each_value_once():
    for limit in (0, 1, 17, 63, 64):
        probed = []

        def fits(v, limit=limit, probed=probed):
            probed.append(v)
            return v <= limit

        values = list(range(1, 65))
        assert capacity.bisect(values, fits, largest=True) == (limit or None)
        assert len(probed) == len(set(probed)) <= math.ceil(math.log2(len(values) + 1))
    budgets = [0.5 * k for k in range(2, 49)]
    assert capacity.bisect(budgets, lambda gib: gib >= 6.3, largest=False) == 6.5
    assert capacity.bisect(budgets, lambda gib: False, largest=False) is None


def _memory_model(s: Scenario) -> dict:
    """A stand-in worker: 2 GiB of weights plus 1.5 GiB per 512x512 image, less with slicing."""
    need = 2.0 + 1.5 * s.batch * (s.width * s.height) / 512**2 * (0.5 if "attention-slicing" in s.memory_modes else 1)
    if need <= s.vram_budget_gib:
        return {"status": "ok", "latency_s": [0.5], "memory": {"peak_vram_reserved_mib": need * 1024}}
    return {"status": "oom", "error": f"OutOfMemoryError: tried to allocate under {s.vram_budget_gib:g} GiB"}


def _search(**fields) -> dict:
    s = Scenario(**{"name": "s", "model": "sd-v1", "device": "cuda", "steps": 2, **fields})
    return capacity.search(s, _memory_model, device_gib=80.0)


def test_search_records_the_value_and_every_probe():
    body = _search(search="max-batch", vram_budget_gib=8, search_max=32)
    assert body["status"] == "ok" and body["capacity"]["value"] == 4  # 2 + 1.5 * 4 = 8
    probes = body["capacity"]["probes"]
    assert len(probes) <= 6 and {p["status"] for p in probes} == {"ok", "oom"}
    assert all(p["peak_vram_reserved_mib"] for p in probes if p["status"] == "ok")
    size = _search(search="max-resolution", vram_budget_gib=8, memory_modes=("attention-slicing",))
    assert size["capacity"]["value"] == 1408  # 2 + 0.75 * 2.75^2 = 7.7 GiB; 1472 would need 8.2
    budget = _search(search="min-budget", width=768, height=768)
    assert budget["capacity"] == {**budget["capacity"], "value": 5.5, "unit": "GiB"}  # 2 + 1.5 * 2.25 = 5.375


def test_search_outcomes_when_nothing_or_everything_fits_or_a_probe_fails():
    nothing = _search(search="max-batch", vram_budget_gib=3, width=1024, height=1024)
    assert nothing["status"] == "oom" and nothing["error"] == "nothing fits: even 1 images ran out of memory"
    everything = _search(search="max-batch", vram_budget_gib=80, search_max=8)
    assert everything["capacity"]["value"] == 8 and "upper limit fits" in everything["capacity"]["note"]
    failing = capacity.search(
        Scenario(name="s", model="sd-v1", search="max-batch", vram_budget_gib=8),
        lambda s: {"status": "error", "error": "RuntimeError: boom"},
        None,
    )
    assert failing["status"] == "error" and "the probe at 32 ended with error: RuntimeError: boom" in failing["error"]
    unknown = capacity.search(Scenario(name="s", model="sd-v1", search="min-budget"), _memory_model, None)
    assert unknown["status"] == "error" and "search_max" in unknown["error"]


def test_probes_are_short_runs_of_the_derived_configuration():
    s = Scenario(name="v1-max-size", model="sd-v1", search="max-resolution", vram_budget_gib=6, repeats=3, warmup=2)
    p = capacity.probe_scenario(s, 1024)
    assert (p.name, p.width, p.height, p.repeats, p.warmup, p.search, p.watermark) == (
        "v1-max-size.probe-1024",
        1024,
        1024,
        1,
        0,
        "",
        "none",
    )
    assert capacity.probe_scenario(Scenario(name="b", model="sd-v1", search="min-budget"), 6.5).vram_budget_gib == 6.5


def test_search_fields_are_checked_with_their_place():
    with pytest.raises(ScenarioError, match=r"x.toml:3: scenario 's', field 'search': a max-batch search needs"):
        parse('[[scenario]]\nname = "s"\nsearch = "max-batch"\nmodel = "sd-v1"\n', "x.toml")
    with pytest.raises(ScenarioError, match="field 'requires': 'avx9' is not one of"):
        parse('[[scenario]]\nname = "s"\nmodel = "sd-v1"\nrequires = ["avx9"]\n', "x.toml")
    (square,) = parse('[[scenario]]\nname = "s"\nmodel = "sd-v1"\nsize = 384\n')
    assert (square.width, square.height) == (384, 384)


def test_a_search_is_skipped_without_cuda():
    s = Scenario(name="s", model="sd-v1", device="auto", search="min-budget")
    assert runner.skip_reason(s) == "a VRAM budget is emulated on CUDA only"


@pytest.fixture
def searched_run(tmp_path, monkeypatch) -> Path:
    """The real runner and results store, with probes answered by the memory model instead of a GPU."""
    text = """
[defaults]
model = "sd-v1"
device = "cuda"
precision = "fp16"
steps = 2

[[scenario]]
name = "max-batch"
search = "max-batch"
search_max = 16
[scenario.matrix]
memory_mode = ["none", "attention-slicing"]
vram_budget_gib = [4, 8]

[[scenario]]
name = "v1-fp32-min-budget"
search = "min-budget"
precision = "fp32"
search_max = 24

[[scenario]]
name = "v2-min-budget"
model = "sd-v2.1"
size = 768
search = "min-budget"
search_max = 24
"""
    monkeypatch.setattr(runner, "skip_reason", lambda s: None)
    seen = []

    def probe_worker(self, scenario, shown_as, work_dir, logs, timeout, **job):
        seen.append((scenario.name, shown_as.name, job))
        return _memory_model(scenario)

    monkeypatch.setattr(runner.Runner, "worker_record", probe_worker)
    run_dir = tmp_path / "run"
    environment = {"run_id": "run", "fingerprint": {"gpu": "NVIDIA H100 80GB HBM3", "gpu_vram_gib": 79.6}}
    run_dir.mkdir()
    (run_dir / "environment.json").write_text(json.dumps(environment))
    events = []
    runner.Runner(run_dir, environment, on_event=lambda s, e: events.append((s.name, e["phase"]))).run(
        parse(text, "capacity.toml")
    )
    assert all(job == {"save_images": False} for _, _, job in seen)
    assert ("max-batch-none-8gib", "probe 4: fits") in events
    assert ("max-batch-none-8gib", "probe 5: out of memory") in events
    assert {shown for _, shown, _ in seen} == {s.name for s in parse(text)}
    return run_dir


def test_the_runner_keeps_one_record_per_search_with_its_probes(searched_run):
    rows = {r["scenario"]: r for r in results.load(searched_run).to_dict("records")}
    assert rows["max-batch-none-8gib"]["capacity_value"] == 4
    assert rows["max-batch-attention-slicing-8gib"]["capacity_value"] == 8
    assert rows["max-batch-none-4gib"]["capacity_value"] == 1
    assert rows["max-batch-none-8gib"]["capacity_unit"] == "images" and rows["max-batch-none-8gib"]["capacity_probes"]
    assert rows["v1-fp32-min-budget"]["capacity_value"] == 3.5
    records = results.load_records(searched_run)
    assert all(r["capacity"]["probes"] for r in records)


def test_report_shows_capacity_tables_and_the_article_account(searched_run, tmp_path):
    run = load_run(searched_run)
    article = capacity_report.article_table([run])
    # the stand-in fits v1 in 8 GiB (min-budget 3.5 GiB, and a batch of 4 at 8 GiB), where the article's
    # v1 code needed 12 GB, and v2.1 at 768 in 5.5 GiB; sliced attention at 8 GiB agrees with optimizedSD
    assert article.count("disagrees") == 3 and article.count(">agrees<") == 1
    assert "not measured in these runs" in article  # the x4 upscaler was not searched
    out = tmp_path / "report.html"
    assert main(["report", str(searched_run), "-o", str(out)]) == 0
    page = out.read_text()
    assert "Largest batch that fits each budget" in page and "Smallest budget that fits (GiB)" in page
    assert "smallest budget that fits: 3.5 GiB" in page
