"""A probe worker's session on CPU: what the budget alone causes, what cannot be measured, what a probe leaves."""

from dataclasses import replace

import pytest

from suite.scenario import Scenario


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


def test_a_probe_leaves_no_scheduler_state_for_the_next():
    """PNDM keeps the last model outputs (on the GPU, batch-sized): a fresh process would not have them."""
    from suite import probe_worker

    s = Scenario(name="p", model="sd-v1", weights="tiny", device="cpu", sampler="plms", width=64, height=64, steps=3)
    session = probe_worker.ProbeSession({"scenario": replace(s, watermark="none").to_dict()})
    assert session.probe(replace(s, batch=2, watermark="none"))["status"] == "ok"
    assert len(session.prepared.pipe.scheduler.ets) > 0
    assert session.leftover_mib() == 0.0 and session.prepared.pipe.scheduler.ets == []
