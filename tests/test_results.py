import csv
import json

import pytest

from suite.record import COLUMNS, summarise
from suite.results import ResultsStore, flatten, load
from suite.scenario import Scenario


def _record(name: str, status: str = "ok", prompt: str = "a hamster", **extra) -> dict:
    scenario = Scenario(name=name, model="sd-v1", prompt=prompt, family="v1-txt2img", steps=3, batch=2)
    record = {
        "schema_version": 1,
        "run_id": "run",
        "scenario": scenario.to_dict(),
        "status": status,
        "error": "",
        "latency_s": [2.0, 3.0, 2.5],
        "warmup_latency_s": [4.0],
        "stages_s": {"denoise": [1.0, 2.0, 1.5], "vae_decode": [0.5, 0.5, 0.5]},
        "step_s": [[0.5, 0.25, 0.25], [0.9, 0.5, 0.6], [0.6, 0.4, 0.5]],
        "memory": {"peak_rss_mib": 1234.5},
        "fingerprint": {"cpu": "Test CPU", "torch": "2.x"},
    }
    record.update(extra)
    return record


def test_flatten_has_every_column_and_honest_statistics():
    row = flatten(_record("a"))
    assert list(row) == list(COLUMNS)
    assert row["latency_s_median"] == 2.5 and row["latency_s_min"] == 2.0 and row["latency_s_max"] == 3.0
    assert row["repeats"] == 3 and row["warmup"] == 1
    assert row["images_per_s"] == pytest.approx(2 / 2.5)
    assert row["it_per_s"] == pytest.approx(3 / 1.5)
    # the first step is reported apart; the step statistics cover the steady steps only
    assert row["first_step_s"] == 0.6
    assert row["step_s_median"] == pytest.approx(0.45)
    assert row["peak_rss_mib"] == 1234.5 and row["cpu"] == "Test CPU"


def test_summarise_spread():
    stats = summarise([1.0, 2.0, 3.0, 4.0, 10.0])
    assert stats["median"] == 3.0 and stats["p90"] == pytest.approx(7.6) and stats["max"] == 10.0


def test_failed_scenario_keeps_its_reason_and_blank_figures():
    row = flatten(_record("b", status="oom", error="OutOfMemoryError: CUDA out of memory", latency_s=[]))
    assert row["status"] == "oom" and "out of memory" in row["error"]
    assert row["latency_s_median"] == ""


def test_store_appends_flushes_and_resumes_after_a_torn_line(tmp_path):
    store = ResultsStore(tmp_path)
    store.open()
    store.append(_record("a"))
    store.append(_record("b"))
    with open(store.jsonl, "a") as f:  # a kill -9 in the middle of writing the third record
        f.write('{"schema_version": 1, "scenario": {"na')
    reopened = ResultsStore(tmp_path)
    assert reopened.done() == {"a", "b"}
    reopened.open()
    reopened.append(_record("c"))
    lines = store.jsonl.read_text().splitlines()
    assert [json.loads(line)["scenario"]["name"] for line in lines] == ["a", "b", "c"]
    with open(store.csv) as f:
        assert [r["scenario"] for r in csv.DictReader(f)] == ["a", "b", "c"]


def test_csv_cells_cannot_become_formulas_and_load_restores_them(tmp_path):
    store = ResultsStore(tmp_path)
    store.open()
    store.append(_record("a", status="error", error='=HYPERLINK("http://x")'))
    raw = store.csv.read_text()
    assert "'=HYPERLINK" in raw
    df = load(tmp_path)
    assert df.loc[0, "error"] == '=HYPERLINK("http://x")'
    assert df.loc[0, "latency_s_median"] == 2.5
