"""Capacity searches: bisection, the search's record, the runner's probes, the report's tables.

Budgets are emulated on CUDA only, so here each probe is answered by a stand-in for the worker
that says whether the probed configuration fits a simple memory model; everything around it
(bisection, records, results files, report) is the real code.
"""

import json
import math
import signal
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import cpu_probe

from suite import capacity, results, runner
from suite.cli import main
from suite.record import probes_run
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


def _memory_model(s: Scenario) -> dict:
    """A stand-in worker: 2 GiB of weights plus 1.5 GiB per 512x512 image, less with slicing."""
    need = 2.0 + 1.5 * s.batch * (s.width * s.height) / 512**2 * (0.5 if "attention-slicing" in s.memory_modes else 1)
    return _answer(s, need)


def _answer(s: Scenario, need_gib: float) -> dict:
    """A probe's record from what the configuration needs: 0.5 GiB of it outside the allocator."""
    if need_gib <= s.vram_budget_gib:
        memory = {
            "peak_vram_allocated_mib": (need_gib - 0.5) * 1024,
            "peak_vram_reserved_mib": need_gib * 1024,
            "outside_allocator_mib": 512.0,
        }
        return {"status": "ok", "latency_s": [0.5], "memory": memory}
    return {"status": "oom", "error": f"OutOfMemoryError: tried to allocate under {s.vram_budget_gib:g} GiB"}


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
    return _answer(s, 0.5 + scale * (weights + s.batch * (per_image * pixels + attention * pixels**2) * wobble))


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
    assert failing["status"] == "error" and "the probe at 1 ended with error: RuntimeError: boom" in failing["error"]
    unknown = capacity.search(Scenario(name="s", model="sd-v1", search="min-budget"), _memory_model, None)
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


# max-batch searches of SD v1 fp16, with and without sliced attention, under 4 and 8 GiB
_MAX_BATCHES = """
[defaults]
model = "sd-v1"
device = "cuda"
precision = "fp16"
steps = 2

[[scenario]]
name = "{name}"
search = "max-batch"
search_max = 16
[scenario.matrix]
memory_mode = ["none", "attention-slicing"]
vram_budget_gib = [4, 8]
"""


@pytest.fixture
def searched_run(tmp_path, monkeypatch) -> Path:
    """The real runner and results store, with probes answered by the memory model instead of a GPU."""
    text = (
        _MAX_BATCHES.format(name="max-batch")
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
        return _memory_model(scenario)

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


def test_a_probe_server_loads_once_answers_each_probe_and_is_replaced_after_a_timeout(tmp_path):
    """The real worker on CPU with tiny models, where no budget applies: the plumbing of every probe."""
    first = cpu_probe()
    events = []
    server = runner.ProbeServer(
        capacity.configuration(first), {"scenario": first.to_dict()}, tmp_path / "job.json", tmp_path / "probes.log"
    )
    try:
        answers = [
            server.probe(replace(first, name=f"s.probe-{b}", batch=b, width=w, height=w), 120, events.append)
            for b, w in ((1, 64), (2, 64), (1, 96), (1, 100))  # 100 is no multiple of 8: diffusers refuses it
        ]
        assert [a["status"] for a in answers] == ["ok", "ok", "ok", "error"]
        assert "divisible by 8" in answers[3]["error"]
        assert all(len(a["latency_s"]) == 1 and a["latency_s"][0] > 0 for a in answers[:3])
        assert [e["phase"] for e in events].count("load") == 1  # one load for all four probes
        assert server.alive  # a probe that fails otherwise than leaving memory behind costs nothing
        hung = server.probe(replace(first, name="s.probe-8", batch=8, steps=200), 0.5, events.append)
        assert hung["status"] == "timeout" and not server.alive
    finally:
        server.close()
    assert "Traceback" in (tmp_path / "probes.log").read_text()  # the refused probe's, in the server's log


def _fake_servers(monkeypatch, spent=lambda p: False, during=lambda server, p: None) -> list[Scenario]:
    """Probe servers answering from the memory model (`during` runs inside each probe), and searches
    that run here; returns the first probe of every server started, its job beside it as `.job`."""
    started = []

    class Server:  # the runner's side of the real one
        def __init__(self, key, job, job_path, log_path):
            self.key, self.alive, self.closed = key, True, threading.Event()
            first = Scenario.from_dict(job["scenario"])
            object.__setattr__(first, "job", job)
            started.append(first)

        def probe(self, p, timeout_s, on_event):
            answer = during(self, p)
            self.alive = not spent(p)
            return answer or _memory_model(p)

        def close(self, wait_s=10.0):
            self.alive = False
            self.closed.set()

    monkeypatch.setattr(runner, "ProbeServer", Server)
    monkeypatch.setattr(runner, "skip_reason", lambda s: None)
    return started


def test_searches_of_one_configuration_share_a_probe_server_until_it_is_spent(tmp_path, monkeypatch):
    # sliced attention's server is spent by every probe, as one is when a probe leaves memory behind
    started = _fake_servers(monkeypatch, spent=lambda p: p.memory_modes == ("attention-slicing",))
    text = (
        _MAX_BATCHES.format(name="batch")
        + """
[[scenario]]
name = "budget"
search = "min-budget"
search_max = 24
[scenario.matrix]
memory_mode = ["none", "attention-slicing"]
"""
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    environment = {"run_id": "run", "fingerprint": {"gpu_vram_gib": 79.6}}
    runner.Runner(run_dir, environment).run(parse(text))
    records = results.load_records(run_dir)
    # the min-budget search of each mode runs right after that mode's max-batch searches, from the same server
    assert [r["scenario"]["name"] for r in records] == [
        "batch-none-4gib",
        "batch-none-8gib",
        "budget-none",
        "batch-attention-slicing-4gib",
        "batch-attention-slicing-8gib",
        "budget-attention-slicing",
    ]
    sliced = sum(probes_run(r["capacity"]) for r in records if r["scenario"]["memory_modes"] != ["none"])
    modes = [s.memory_mode for s in started]
    assert modes.count("none") == 1 and modes.count("attention-slicing") == sliced > 1


def test_process_isolation_gives_every_probe_a_fresh_server(tmp_path, monkeypatch):
    started = _fake_servers(monkeypatch)
    s = Scenario(name="b", model="sd-v1", device="cuda", search="max-batch", vram_budget_gib=8, search_max=16)
    run = runner.Runner(tmp_path, {"run_id": "run"})
    checked, fresh = run.run([s, replace(s, name="b-process", probe_isolation="process")])
    assert checked["capacity_value"] == fresh["capacity_value"] == 4
    searches = [s.name.split(".probe-")[0] for s in started]
    assert searches.count("b") == 1  # the checked search: one server for all its probes
    assert searches.count("b-process") == fresh["capacity_probes"] > 1  # one per probe, none implied by the other


def _values(records) -> dict[str, float]:
    return {r["scenario"]["name"]: r["capacity"]["value"] for r in records}


def test_searches_of_different_configurations_run_side_by_side_with_the_answers_of_one_at_a_time(tmp_path, monkeypatch):
    together = threading.Barrier(2, timeout=20)  # passed only while two servers are probing at once
    first_probes = set()

    def during(server, p):
        if server not in first_probes:
            first_probes.add(server)
            together.wait()

    started = _fake_servers(monkeypatch, during=during)
    scenarios = parse(_MAX_BATCHES.format(name="batch"))
    environment = {"run_id": "run", "fingerprint": {"gpu_vram_gib": 79.6}}
    runner.Runner(tmp_path / "side", environment, probe_servers=2).run(scenarios)
    side = results.load_records(tmp_path / "side")
    assert {s.memory_mode for s in started} == {"none", "attention-slicing"} and len(started) == 2
    assert all(s.job["side_by_side"] for s in started)  # each worker knows it shares the card
    assert all(r["capacity"]["probe_servers"] == 2 for r in side)
    monkeypatch.setattr(runner, "ProbeServer", None)  # the reference: one at a time, no fakes' barrier
    _fake_servers(monkeypatch)
    runner.Runner(tmp_path / "alone", environment).run(scenarios)
    assert _values(side) == _values(results.load_records(tmp_path / "alone")) and len(side) == 4


def test_real_probe_servers_answer_side_by_side(tmp_path, monkeypatch):
    """Two real workers on CPU with tiny models, started and served from two threads at once (no budget
    applies here, so every batch fits and each search ends at its upper limit)."""
    monkeypatch.setattr(runner, "skip_reason", lambda s: None)
    base = cpu_probe(name="batch", search="max-batch", search_max=3)
    scenarios = [replace(base, name=f"batch-{m}", memory_modes=(m,)) for m in ("none", "vae-slicing")]
    records = runner.Runner(tmp_path, {"run_id": "run"}, probe_servers=2).run(scenarios)
    assert [(r["status"], r["capacity_value"]) for r in records] == [("ok", 3), ("ok", 3)]
    assert sorted(p.name for p in (tmp_path / "logs").glob("*.log")) == [
        "batch-none.probe-1.log",
        "batch-vae-slicing.probe-1.log",
    ]


def test_timed_scenarios_never_run_beside_searches(tmp_path, monkeypatch):
    probing = []

    def during(server, p):
        probing.append(p.name)
        threading.Event().wait(0.01)
        probing.remove(p.name)

    _fake_servers(monkeypatch, during=during)
    timed = []

    def timed_record(self, scenario, timeout):
        timed.append(list(probing))
        return {"status": "ok", "latency_s": [1.0]}

    monkeypatch.setattr(runner.Runner, "timed_record", timed_record)
    searches = parse(_MAX_BATCHES.format(name="batch"))
    plain = Scenario(name="timed", model="sd-v1", device="cuda")
    later = replace(searches[0], name="later", memory_modes=("vae-slicing",))
    run_dir = tmp_path / "run"
    runner.Runner(run_dir, {"run_id": "run"}, probe_servers=3).run([*searches, plain, later])
    names = [r["scenario"]["name"] for r in results.load_records(run_dir)]
    assert timed == [[]]  # nothing was probing while the timed scenario ran
    assert set(names[:4]) == {s.name for s in searches} and names[4:] == ["timed", "later"]


def test_an_interrupt_drops_the_searches_in_flight_and_a_resume_runs_them(tmp_path, monkeypatch):
    probes = []

    def during(server, p):
        probes.append(p.name)
        if len(probes) == 5:  # Ctrl-C while this probe runs: the runner must kill every server
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            assert server.closed.wait(20)
            return {"status": "error", "error": "the worker was killed"}
        return None

    _fake_servers(monkeypatch, during=during)
    scenarios = parse(_MAX_BATCHES.format(name="batch"))
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        runner.Runner(run_dir, {"run_id": "run"}, probe_servers=2).run(scenarios)
    kept = results.load_records(run_dir)
    assert len(kept) < 4 and all(r["status"] == "ok" for r in kept)  # no search recorded as failed
    _fake_servers(monkeypatch)
    runner.Runner(run_dir, {"run_id": "run"}, probe_servers=2).run(scenarios)
    resumed = results.load_records(run_dir)
    assert len(resumed) == 4 and all(r["status"] == "ok" for r in resumed)
    assert _values(resumed)["batch-none-8gib"] == 4 and _values(resumed)["batch-attention-slicing-8gib"] == 8


@pytest.mark.parametrize(
    ("environment", "servers"),
    [
        # an H200 with the driver's per-process figures: four servers of at most 24 GiB
        ({"gpu_process_memory": True, "gpu_free_gib": 139.0, "fingerprint": {"cpu_cores": 16}}, 4),
        # the same card where a container hides them: one
        ({"gpu_process_memory": False, "gpu_free_gib": 139.0, "fingerprint": {"cpu_cores": 16}}, 1),
        # a 24 GB card: a 24 GiB search leaves no room for a second
        ({"gpu_process_memory": True, "gpu_free_gib": 23.0, "fingerprint": {"cpu_cores": 16}}, 1),
        # few cores to drive them
        ({"gpu_process_memory": True, "gpu_free_gib": 139.0, "fingerprint": {"cpu_cores": 8}}, 2),
        ({}, 1),
    ],
)
def test_probe_servers_share_a_card_only_where_each_ones_memory_can_be_told_and_fits(environment, servers):
    profile = load(resolve_profile("capacity"))
    assert runner.probe_servers_that_fit(environment, profile) == servers
    budgeted = [s for s in profile if s.search == "max-batch" and s.vram_budget_gib <= 8]
    many = {"gpu_process_memory": True, "gpu_free_gib": 139.0, "fingerprint": {"cpu_cores": 64}}
    assert runner.probe_servers_that_fit(many, budgeted) == 4  # never more than MAX_PROBE_SERVERS
    unbudgeted = [replace(budgeted[0], vram_budget_gib=0.0)]  # a search of the whole card shares it with none
    assert runner.probe_servers_that_fit(many, unbudgeted) == 1


def test_bench_takes_the_probe_servers_asked_for_only_where_the_card_can_tell_them_apart(capsys):
    from suite.bench_command import _probe_servers

    profile = load(resolve_profile("capacity"))
    h200 = {"gpu_process_memory": True, "gpu_free_gib": 139.0, "fingerprint": {"cpu_cores": 16}}
    assert _probe_servers(None, h200, profile) == 4
    assert "4 configurations side by side" in capsys.readouterr().err
    assert _probe_servers(2, h200, profile) == 2 and _probe_servers(1, h200, profile) == 1
    assert _probe_servers(None, h200, [Scenario(name="timed", model="sd-v1", device="cuda")]) == 1  # no search to share
    assert _probe_servers(3, {**h200, "gpu_process_memory": False}, profile) == 1
    assert "whose driver reports each process's memory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # checked as the option is read, before anything runs
        main(["bench", "capacity", "--list", "--probe-servers", "0"])
    assert refused.value.code == 2 and "--probe-servers: must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("capped_failure", "uncapped_failure", "status", "runs"),
    [
        (RuntimeError("GET was unable to find an engine to execute this computation"), None, "oom", 2),
        (RuntimeError("an error of its own"), RuntimeError("an error of its own"), "error", 2),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), None, "oom", 1),
    ],
)
def test_a_failure_that_only_the_budget_causes_counts_as_out_of_memory(
    monkeypatch, capped_failure, uncapped_failure, status, runs
):
    """The CUDA-only steps of a probe, on CPU: the allocator's calls stood in for, generation scripted."""
    import torch

    from suite import probe_worker

    s = Scenario(name="p", model="sd-v1", weights="tiny", device="cpu", width=64, height=64, steps=2, watermark="none")
    session = probe_worker.ProbeSession({"scenario": s.to_dict()})
    session.cuda = True
    capped = []
    monkeypatch.setattr(probe_worker, "cap_allocator", lambda *a: capped.append(True) or {"outside_allocator_mib": 512})
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda fraction, device=None: capped.clear())
    for name in ("reset_peak_memory_stats", "empty_cache", "max_memory_allocated", "max_memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, lambda *a: 0)
    calls = []

    def generate(probed):
        calls.append(bool(capped))
        failure = capped_failure if capped else uncapped_failure
        if failure is not None:
            raise failure

    monkeypatch.setattr(session, "_generate", generate)
    record = session.probe(replace(s, vram_budget_gib=8.0))
    assert record["status"] == status and len(calls) == runs and calls[0] is True
    assert ("under the 8 GiB budget only" in record["error"]) == (runs == 2 and status == "oom")


def test_a_budget_that_cannot_be_measured_runs_no_probe_and_is_blamed_on_nothing(monkeypatch):
    """Beside other probe servers without per-process figures: an error that says why, never an OOM."""
    from suite import probe_worker
    from suite.worker import BudgetNotMeasurable

    s = Scenario(name="p", model="sd-v1", weights="tiny", device="cpu", width=64, height=64, steps=2, watermark="none")
    session = probe_worker.ProbeSession({"scenario": s.to_dict()})
    session.cuda = True

    def unmeasurable(*args):
        raise BudgetNotMeasurable("the driver does not report this process's own memory")

    monkeypatch.setattr(probe_worker, "cap_allocator", unmeasurable)
    calls = []
    monkeypatch.setattr(session, "_generate", calls.append)
    record = session.probe(replace(s, vram_budget_gib=8.0))
    assert record["status"] == "error" and "own memory" in record["error"] and calls == []


MIB = 2**20


class _Card:
    """torch.cuda's allocator calls and NVML's memory figures of an 80 GiB card, stood in for on CPU."""

    def __init__(self, monkeypatch, reserved_mib, process_mib=None, device_used_mib=None, after_empty_mib=None):
        import torch

        from suite.measure import nvml

        self.reserved, self.after_empty, self.fraction = reserved_mib * MIB, after_empty_mib, None
        total = SimpleNamespace(total_memory=80 * 2**30)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: total)
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: self.reserved)
        monkeypatch.setattr(torch.cuda, "empty_cache", self.empty_cache)
        monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", self.set_fraction)
        mine = None if process_mib is None else process_mib * MIB
        monkeypatch.setattr(nvml, "process_used_bytes", lambda h, pid: mine)
        used = None if device_used_mib is None else device_used_mib * MIB
        monkeypatch.setattr(nvml, "used_bytes", lambda h: used)

    def empty_cache(self):
        if self.after_empty is not None:
            self.reserved = self.after_empty * MIB

    def set_fraction(self, fraction, device=None):
        self.fraction = fraction


def test_the_budget_caps_the_allocator_at_what_the_card_has_left_beside_the_process(monkeypatch):
    import torch

    from suite.worker import cap_allocator

    card = _Card(monkeypatch, reserved_mib=2, process_mib=514)  # a fresh context: 512 MiB outside the allocator
    budget = cap_allocator("cuda", 8, object(), None)
    assert budget["measured_by"] == "nvml-process" and budget["outside_allocator_mib"] == 512
    assert card.fraction == pytest.approx((8 * 1024 - 512) / (80 * 1024))
    # where the driver will not say per process: the device's growth since before the context
    _Card(monkeypatch, reserved_mib=2, device_used_mib=1000 + 2 + 700)
    assert cap_allocator("cuda", 8, object(), 1000 * MIB)["outside_allocator_mib"] == 700
    _Card(monkeypatch, reserved_mib=2)
    assert cap_allocator("cuda", 8, None, None)["measured_by"] == "assumed"
    # beside other probe servers the device's growth is theirs too: only the per-process figure will do
    _Card(monkeypatch, reserved_mib=2, device_used_mib=1000 + 2 + 700)
    with pytest.raises(RuntimeError, match="--probe-servers 1"):
        cap_allocator("cuda", 8, object(), 1000 * MIB, shared=True)
    _Card(monkeypatch, reserved_mib=2, process_mib=514)
    assert cap_allocator("cuda", 8, object(), None, shared=True)["outside_allocator_mib"] == 512
    # after a warm-up: 7.8 GiB cached, 3 GiB of it live; the cache goes back, and what is live fits
    card = _Card(monkeypatch, reserved_mib=7800, process_mib=7800 + 900, after_empty_mib=3000)
    assert cap_allocator("cuda", 8, object(), None)["allocator_cap_mib"] == 8 * 1024 - 900
    assert card.reserved == 3000 * MIB
    _Card(monkeypatch, reserved_mib=7800, process_mib=7800 + 900, after_empty_mib=7600)  # live weights too large
    with pytest.raises(torch.cuda.OutOfMemoryError, match="7600 MiB in torch's allocator and 900 MiB outside"):
        cap_allocator("cuda", 8, object(), None)


def test_a_probe_leaves_no_scheduler_state_for_the_next():
    """PNDM keeps the last model outputs (on the GPU, batch-sized): a fresh process would not have them."""
    from suite import probe_worker

    s = Scenario(name="p", model="sd-v1", weights="tiny", device="cpu", sampler="plms", width=64, height=64, steps=3)
    session = probe_worker.ProbeSession({"scenario": replace(s, watermark="none").to_dict()})
    assert session.probe(replace(s, batch=2, watermark="none"))["status"] == "ok"
    assert len(session.prepared.pipe.scheduler.ets) > 0
    assert session.leftover_mib() == 0.0 and session.prepared.pipe.scheduler.ets == []
