"""The runner: probe servers (real ones on CPU with tiny models, and stand-ins answering from a memory
model), searches side by side, timed scenarios alone, interrupts and resumes."""

import signal
import threading
from dataclasses import replace

import pytest
from capacity_models import MAX_BATCHES, memory_model
from support import cpu_probe

from suite import capacity, results, runner
from suite.cli import main
from suite.record import probes_run
from suite.scenario import Scenario, load, parse, resolve_profile


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
            return answer or memory_model(p)

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
        MAX_BATCHES.format(name="batch")
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
    scenarios = parse(MAX_BATCHES.format(name="batch"))
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
    searches = parse(MAX_BATCHES.format(name="batch"))
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
    scenarios = parse(MAX_BATCHES.format(name="batch"))
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
