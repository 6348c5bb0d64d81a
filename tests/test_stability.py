"""Stability verdicts, per-process records and the hierarchical bootstrap, from records built by hand;
and one bench run on a machine loaded on purpose."""

import json
import subprocess
import sys

import numpy as np
import psutil
import pytest

from suite import processes, stability
from suite.measure import bootstrap, hwm
from suite.results import flatten


def record(latencies, steps=None, system=None, status="ok", per_process=True):
    """A finished record: `latencies` one list per process."""
    r = {
        "schema_version": 2,
        "run_id": "r",
        "scenario": {
            "name": "s",
            "family": "f",
            "model": "sd-v1",
            "weights": "tiny",
            "task": "txt2img",
            "sampler": "ddim",
            "device": "cpu",
            "precision": "fp32",
            "memory_modes": ["none"],
            "vram_budget_gib": 0,
            "width": 64,
            "height": 64,
            "steps": 4,
            "batch": 1,
            "guidance_scale": 7.5,
            "seed": 0,
        },
        "status": status,
        "latency_s": [x for g in latencies for x in g],
        "warmup_latency_s": [],
        "step_s": steps or [[0.1, 0.05, 0.05, 0.05] for g in latencies for _ in g],
        "stages_s": {},
        "system": system or {},
    }
    if per_process:
        r["processes"] = [{"latency_s": g} for g in latencies]
    return r


def test_a_quiet_tight_run_is_stable_and_says_how_tight():
    v = stability.judge(record([[1.0, 1.01, 0.99], [1.02, 1.0, 1.01]], system={"others_cpu_pct": 2.0}))
    assert v.stability == "stable"
    assert "between repeats" in v.reason and "between 2 processes" in v.reason


@pytest.mark.parametrize(
    ("latencies", "system", "steps", "words"),
    [
        ([[1.0, 1.0, 1.01]], {"others_cpu_pct": 40.0}, None, "other processes used 40 % of the CPU"),
        ([[1.0, 1.3, 0.8]], {}, None, "between repeats"),
        ([[1.0, 1.0], [1.3, 1.3], [0.9, 0.9]], {}, None, "between processes"),
        ([[1.0, 1.0]], {}, [[0.1, 0.05, 0.05, 0.05], [0.1, 0.07, 0.07, 0.07]], "slower by 40 %"),
        ([[1.0, 1.0]], {"steal_pct": 12.0}, None, "steal"),
        ([[1.0, 1.0]], {"throttle_events": 3}, None, "throttled 3 times"),
    ],
)
def test_each_cause_makes_a_run_unstable_with_its_reason_and_advice(latencies, system, steps, words):
    v = stability.judge(record(latencies, steps, system))
    assert v.stability == "unstable"
    assert words in v.reason
    assert v.advice


def test_old_records_are_judged_on_their_spread_and_failures_not_at_all():
    old = record([[1.0, 1.3, 0.8]], per_process=False)
    old.pop("system")
    assert stability.judge(old).stability == "unstable"
    assert stability.judge(record([[1.0]])).stability == ""
    assert stability.judge(record([[1.0, 1.0]], status="oom")).stability == ""
    row = flatten(old)
    assert row["stability"] == "unstable" and row["processes"] == 1 and row["latency_s_ci_low"] <= 1.0


def test_csv_row_carries_verdict_interval_and_processes():
    row = flatten(record([[1.0, 1.01, 0.99], [1.1, 1.11, 1.09]], system={"others_cpu_pct": 60.0}))
    assert row["stability"] == "unstable" and "60 %" in row["stability_reason"]
    assert row["processes"] == 2 and row["others_cpu_pct"] == 60.0
    assert row["latency_s_ci_low"] < row["latency_s_median"] < row["latency_s_ci_high"]


def test_one_process_bootstrap_is_the_ordinary_bootstrap_and_processes_widen_it():
    rng = np.random.default_rng(1)
    repeats = list(rng.normal(1.0, 0.01, 12))
    one = bootstrap.median_interval([repeats])
    assert one[0] < np.median(repeats) < one[1]
    spread = [[x + offset for x in repeats[:4]] for offset in (0.0, 0.2, 0.1)]
    pooled = bootstrap.median_interval([[x for g in spread for x in g]])
    nested = bootstrap.median_interval(spread)
    assert nested[1] - nested[0] > pooled[1] - pooled[0]


def test_merge_keeps_every_process_and_reads_like_one_record():
    a = record([[1.0, 1.1]], system={"others_cpu_pct": 1.0})
    a["memory"] = {"peak_rss_mib": 100.0, "peak_rss_method": "vmhwm"}
    b = record([[1.2, 1.3]], system={"others_cpu_pct": 30.0})
    b["memory"] = {"peak_rss_mib": 120.0, "peak_rss_method": "vmhwm"}
    merged = processes.merge([a, b], 2)
    assert merged["latency_s"] == [1.0, 1.1, 1.2, 1.3]
    assert [p["latency_s"] for p in merged["processes"]] == [[1.0, 1.1], [1.2, 1.3]]
    assert merged["memory"] == {"peak_rss_mib": 120.0, "peak_rss_method": "vmhwm"}
    assert merged["system"]["others_cpu_pct"] == 30.0
    failed = processes.merge([a, {**b, "status": "oom", "error": "out of memory"}], 3)
    assert failed["status"] == "oom" and failed["error"].startswith("process 2 of 3")
    assert failed["latency_s"] == [1.0, 1.1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_kernel_peak_sees_a_short_allocation_and_resets():
    assert hwm.reset() == "vmhwm"
    base = hwm.peak_mib()
    block = bytearray(150 * 2**20)
    block[::4096] = b"\1" * len(block[::4096])  # touch every page
    del block
    assert hwm.peak_mib() > base + 140
    hwm.reset()
    assert hwm.peak_mib() < base + 50


def test_a_machine_loaded_on_purpose_makes_the_verdict_unstable(tmp_path):
    """The same tiny scenario measured quiet, then beside a busy loop per core."""
    from support import sdsuite

    scenario = tmp_path / "s.toml"
    scenario.write_text(
        '[[scenario]]\nname = "v1"\nmodel = "sd-v1"\nweights = "tiny"\nsampler = "ddim"\n'
        "width = 64\nheight = 64\nsteps = 4\nrepeats = 4\nwarmup = 1\n"
    )

    def bench(out):
        proc = sdsuite("bench", str(scenario), "--out", str(out))
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return flatten(json.loads((out / "results.jsonl").read_text().splitlines()[0]))

    quiet = bench(tmp_path / "quiet")
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(psutil.cpu_count() or 1)]
    try:
        loaded = bench(tmp_path / "loaded")
    finally:
        for p in loops:
            p.kill()
            p.wait()
    assert loaded["stability"] == "unstable"
    assert "other processes used" in loaded["stability_reason"]
    assert "quieter machine" in loaded["stability_advice"] or "stop the other work" in loaded["stability_advice"]
    print(f"quiet: {quiet['stability']} ({quiet['stability_reason']}); loaded: {loaded['stability_reason']}")
    if quiet["others_cpu_pct"] <= stability.OTHERS_CPU_MAX_PCT:  # nothing else ran: the verdict changed
        assert "other processes" not in quiet["stability_reason"]
        assert loaded["others_cpu_pct"] > quiet["others_cpu_pct"] + 25


def test_system_command_names_each_cause_with_a_hint_and_sees_a_busy_loop(capsys):
    from suite.cli import main

    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(psutil.cpu_count() or 1)]
    try:
        assert main(["system", "--json", "--sample", "0.5"]) == 0
    finally:
        for p in loops:
            p.kill()
            p.wait()
    found = {c["name"]: c for c in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {"CPU governor", "turbo / boost", "isolated cores", "other processes' CPU"} <= set(found)
    assert all(c["hint"] for c in found.values() if c["state"] != "ok")
    busy = found["other processes' CPU"]
    assert busy["state"] == "noisy" and "python" in busy["value"]
    assert main(["system", "--sample", "0"]) == 2


def test_html_report_shows_each_verdict_and_what_to_do_for_the_unstable(tmp_path):
    from suite.report.html import bench_report
    from suite.report.runs import Run
    from suite.results import ResultsStore

    store = ResultsStore(tmp_path)
    store.open()
    quiet = record([[1.0, 1.01]], system={"others_cpu_pct": 1.0})
    loaded = record([[1.0, 1.01]], system={"others_cpu_pct": 45.0})
    loaded["scenario"] = {**loaded["scenario"], "name": "loaded"}
    for r in (quiet, loaded):
        store.append(r)
    html = bench_report([Run(tmp_path, {"run_id": "r"}, store.records())])
    assert html.count('class="badge t-stable"') == 1 and html.count('class="badge t-unstable"') == 1
    section = html[html.index("Can these numbers be trusted?") :]
    assert "other processes used 45 % of the CPU" in section and "stop the other work" in section


def test_terminal_table_shows_the_verdict_and_the_notes_say_why_and_what_to_do():
    from suite.bench_command import stability_notes, summary_table

    rows = [flatten(record([[1.0, 1.01]], system={"others_cpu_pct": 1.0})), flatten(record([[1.0, 1.4, 0.8]]))]
    table = summary_table(rows).splitlines()
    assert "stability" in table[0] and "stable" in table[1] and "unstable" in table[2]
    notes = stability_notes(rows)
    assert notes.count("\n") == 1 and "between repeats" in notes and "more repeats" in notes


def test_compare_says_which_side_is_unstable_and_why(tmp_path):
    from suite.report.compare import compare_runs, format_table
    from suite.report.runs import Run

    quiet = record([[1.0, 1.01]], system={"others_cpu_pct": 1.0})
    loaded = record([[1.3, 1.2]], system={"others_cpu_pct": 45.0})
    [c] = compare_runs(Run(tmp_path, {}, [quiet]), Run(tmp_path, {}, [loaded]))
    assert c.note == "B unstable: measured while other processes used 45 % of the CPU"
    assert c.note in format_table(Run(tmp_path, {}, [quiet]), Run(tmp_path, {}, [loaded]), [c])


def test_processes_option_overrides_timed_scenarios_and_leaves_searches_alone(capsys):
    from suite.cli import main

    assert main(["bench", "smoke", "--processes", "3", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed and all(line.endswith("in 3 processes [tiny]") for line in listed)
    assert main(["bench", "capacity", "--processes", "3", "--list"]) == 0
    assert "processes" not in capsys.readouterr().out
    assert main(["bench", "smoke", "--processes", "5000", "--list"]) == 2
