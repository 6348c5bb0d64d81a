"""One scenario's repeats over several fresh worker processes, kept as one record.

The merged record reads like a one-process record to every existing reader (`latency_s`,
`step_s` and the stages hold all repeats of all processes, in order), and adds `processes`: per
process its repeats and what it measured, which the hierarchical bootstrap and the stability
verdict need. Peaks are the highest of any process; the system's noise the worst.
"""

from __future__ import annotations

import statistics
from typing import Any

from suite.record import steady_steps
from suite.worker import compute_figures

CONCATENATED = ("latency_s", "warmup_latency_s", "step_s")


def process_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps of one process: its repeats, load, peak and the noise it saw."""
    steps = steady_steps(record.get("step_s"))
    return {
        "status": record.get("status"),
        "latency_s": list(record.get("latency_s") or []),
        "step_s_median": statistics.median(steps) if steps else None,
        "load_s": record.get("load_s"),
        "peak_rss_mib": (record.get("memory") or {}).get("peak_rss_mib"),
        "system": record.get("system") or {},
        "worker_s": record.get("worker_s"),
    }


def _worst(values: list[dict[str, Any]]) -> dict[str, Any]:
    """Per key the highest number (peaks, noise shares), else the first value given."""
    out: dict[str, Any] = {}
    for d in values:
        for key, value in d.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                previous = out.get(key)
                out[key] = value if not isinstance(previous, int | float) else max(previous, value)
            else:
                out.setdefault(key, value)
    return out


def merge(records: list[dict[str, Any]], planned: int) -> dict[str, Any]:
    """The scenario's record from its processes' records, in the order they ran.

    A failed process makes the scenario's outcome that failure (naming the process); what the
    processes before it measured is kept.
    """
    merged = dict(records[-1])
    merged["processes"] = [process_summary(r) for r in records]
    if len(records) == 1 and planned == 1:
        return merged
    failed = next((i for i, r in enumerate(records) if r.get("status") != "ok"), None)
    if failed is not None:
        merged["status"] = records[failed]["status"]
        merged["error"] = f"process {failed + 1} of {planned}: {records[failed].get('error', '')}"
    measured = [r for r in records if r.get("status") == "ok"] or records
    for key in CONCATENATED:
        merged[key] = [x for r in measured for x in r.get(key) or []]
    stages: dict[str, list[float]] = {}
    for r in measured:
        for stage, values in (r.get("stages_s") or {}).items():
            stages.setdefault(stage, []).extend(values)
    merged["stages_s"] = stages
    loads = [r["load_s"] for r in measured if isinstance(r.get("load_s"), int | float)]
    if loads:
        merged["load_s"] = statistics.median(loads)
    merged["memory"] = _worst([r.get("memory") or {} for r in measured])
    merged["system"] = _worst([r.get("system") or {} for r in measured])
    merged["worker_s"] = sum(r.get("worker_s") or 0.0 for r in records)
    _energy(merged, measured)
    compute = merged.get("compute") or {}
    if "unet_tflop_per_step" in compute:  # again, from the median step of all processes
        merged["compute"] = compute_figures(merged, compute["unet_tflop_per_step"], compute.get("peak_tflops"))
    return merged


def _energy(merged: dict[str, Any], measured: list[dict[str, Any]]) -> None:
    energies = [r["energy"] for r in measured if r.get("energy")]
    if not energies:
        return
    per_repeat = [j for e in energies for j in e["per_repeat_j"]]
    batch = merged["scenario"]["batch"]
    merged["energy"] = {
        "per_repeat_j": per_repeat,
        "j_per_image": statistics.median(per_repeat) / batch,
        "avg_power_w": statistics.mean(e["avg_power_w"] for e in energies),
    }
