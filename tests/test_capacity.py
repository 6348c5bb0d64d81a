"""Capacity searches: bisection, the ledger, the search's record in a run, the report's tables.

Budgets are emulated on CUDA only, so here each probe is answered by a stand-in for the worker
that says whether the probed configuration fits a simple memory model; everything around it
(bisection, records, results files, report) is the real code.
"""

import json
import math
from pathlib import Path

import pytest
from capacity_models import MAX_BATCHES, answer, memory_model

from suite import capacity, results, runner
from suite.cli import main
from suite.report import capacity as capacity_report
from suite.report.runs import load_run
from suite.scenario import Scenario, ScenarioError, load, parse, resolve_profile


def test_the_search_finds_the_boundary_from_any_guess_probing_each_value_once():
    values = list(range(1, 65))
    for limit in (0, 1, 17, 63, 64):
        for guess in (None, 0, 5, limit - 1, limit, 40, 63):
            probed = []

            def fits(v, limit=limit, probed=probed):
                probed.append(v)
                return v <= limit

            assert capacity.gallop_then_bisect(values, fits, True, guess) == (limit or None)
            assert len(probed) == len(set(probed))
            bound = 2 if guess == limit - 1 and 0 < limit < 64 else 2 * math.ceil(math.log2(len(values) + 1))
            assert len(probed) <= (bound if guess is not None else math.ceil(math.log2(len(values) + 1)))
    budgets = [0.5 * k for k in range(2, 49)]
    for guess in (None, 0, 11, 12, 46):
        assert capacity.gallop_then_bisect(budgets, lambda gib: gib >= 6.3, False, guess) == 6.5
    assert capacity.gallop_then_bisect(budgets, lambda gib: False, False, None) is None


# GiB per configuration: weights, per 512x512 image, and a quadratic attention term where it is sliced
_MODES = {
    "none": (2.7, 0.45, 0.0),
    "attention-slicing": (2.7, 0.3, 0.06),
    "vae-slicing": (2.7, 0.3, 0.0),
    "vae-tiling": (2.7, 0.25, 0.0),
    "model-offload": (1.6, 0.45, 0.0),
    "sequential-offload": (0.7, 0.4, 0.0),
}


def _realistic_model(s: Scenario) -> dict:
    weights, per_image, attention = _MODES[s.memory_mode]
    scale = (2.0 if s.precision == "fp32" else 1.0) * (1.3 if s.model == "sd-v2.1" else 1.0)
    pixels = s.width * s.height / 512**2
    # a few per cent that no fit predicts, as allocator rounding and workspaces do
    wobble = 1.0 + 0.03 * math.sin(s.batch * 1.7 + s.width / 64.0)
    return answer(s, 0.5 + scale * (weights + s.batch * (per_image * pixels + attention * pixels**2) * wobble))


def test_a_shared_ledger_and_guesses_change_no_answer_of_the_capacity_profile_and_halve_its_probes():
    searches = [s for s in load(resolve_profile("capacity")) if s.model != "sd-x4-upscaler"]
    plain = 0
    ledger = capacity.Ledger()
    probed = []
    for s in runner.run_order(searches):
        values = capacity.candidates(s, 141.0)

        def fits(value, s=s):
            nonlocal plain
            plain += 1
            return _realistic_model(capacity.probe_scenario(s, value))["status"] == "ok"

        expected = capacity.gallop_then_bisect(values, fits, s.search != "min-budget", None)
        body = capacity.search(s, lambda p: probed.append(p.name) or _realistic_model(p), 141.0, ledger)
        assert body["capacity"]["value"] == expected, s.name
        assert body["status"] == ("ok" if expected is not None else "oom")
        for entry in body["capacity"]["probes"]:
            if "implied_by" in entry:  # decided by an earlier probe of the same model, precision and memory mode
                assert entry["implied_by"] in probed and s.memory_mode in entry["implied_by"], entry
    assert len(probed) == len(set(probed)) < 0.55 * plain, (len(probed), plain)


def _search(**fields) -> dict:
    s = Scenario(**{"name": "s", "model": "sd-v1", "device": "cuda", "steps": 2, **fields})
    return capacity.search(s, memory_model, device_gib=80.0)


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
    assert failing["status"] == "error" and "the probe at 1 ended with error: RuntimeError: boom" in failing["error"]
    unknown = capacity.search(Scenario(name="s", model="sd-v1", search="min-budget"), memory_model, None)
    assert unknown["status"] == "error" and "search_max" in unknown["error"]
    empty = _search(search="max-resolution", vram_budget_gib=8, search_max=32)
    assert empty == {
        "status": "error",
        "error": "search_max 32 leaves nothing to search: the smallest candidate is 64 pixels",
    }


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
    text = (
        MAX_BATCHES.format(name="max-batch")
        + """
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
    )
    monkeypatch.setattr(runner, "skip_reason", lambda s: None)
    seen = []

    def probe_worker(self, scenario, search, timeout, slot):
        seen.append((scenario.name, search.name))
        return memory_model(scenario)

    monkeypatch.setattr(runner.Runner, "probe_record", probe_worker)
    run_dir = tmp_path / "run"
    environment = {"run_id": "run", "fingerprint": {"gpu": "NVIDIA H100 80GB HBM3", "gpu_vram_gib": 79.6}}
    run_dir.mkdir()
    (run_dir / "environment.json").write_text(json.dumps(environment))
    events = []
    runner.Runner(run_dir, environment, on_event=lambda s, e: events.append((s.name, e["phase"]))).run(
        parse(text, "capacity.toml")
    )
    assert ("max-batch-none-8gib", "probe 4: fits") in events
    assert ("max-batch-none-8gib", "probe 5: out of memory") in events
    assert {shown for _, shown in seen} == {s.name for s in parse(text)}
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
    entries = [p for r in run.records for p in r.capacity.probes]
    implied = sum("implied_by" in p for p in entries)
    assert implied and f"{len(entries) - implied} probes run, {implied} outcomes implied by earlier probes" in page
