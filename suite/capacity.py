"""Capacity searches: the largest batch or image that fits a VRAM budget, the smallest budget that fits.

Whether a configuration fits is monotone in the searched value (a larger batch, image or a
smaller budget never needs less memory), so a bisection over the candidate values finds the
boundary in log2(n) probes. Each probe is a short generation of a derived scenario, run by the
caller in a fresh worker process, so an out-of-memory probe leaves nothing behind for the next.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from suite.scenario import Scenario

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_RESOLUTION = 2048
RESOLUTION_STEP = 64
BUDGET_STEP_GIB = 0.5
UNITS = {"max-batch": "images", "max-resolution": "pixels (square)", "min-budget": "GiB"}


def candidates(s: Scenario, device_gib: float | None) -> list[float]:
    """The values a search chooses among, in increasing order."""
    if s.search == "max-batch":
        return list(range(1, int(s.search_max or DEFAULT_MAX_BATCH) + 1))
    if s.search == "max-resolution":
        top = int(s.search_max or DEFAULT_MAX_RESOLUTION)
        return list(range(RESOLUTION_STEP, top + 1, RESOLUTION_STEP))
    top = s.search_max or device_gib
    if not top:
        raise ValueError("a min-budget search needs search_max, or a GPU whose memory size is known")
    return [BUDGET_STEP_GIB * k for k in range(2, math.floor(top / BUDGET_STEP_GIB) + 1)]


def probe_scenario(s: Scenario, value: float) -> Scenario:
    """The one short generation that tells whether `value` fits: one measured run, no warm-up, no watermark."""
    common = {"search": "", "search_max": 0.0, "repeats": 1, "warmup": 0, "watermark": "none", "quality_reference": ""}
    label = f"{value:g}"
    if s.search == "max-batch":
        changed: dict[str, Any] = {"batch": int(value)}
    elif s.search == "max-resolution":
        changed = {"width": int(value), "height": int(value)}
    else:
        changed = {"vram_budget_gib": float(value)}
        label += "gib"
    return replace(s, name=f"{s.name}.probe-{label}", **common, **changed)


def bisect(values: list[float], fits: Callable[[float], bool], largest: bool) -> float | None:
    """The largest (or smallest) value that fits, probing each value at most once; None if none does."""
    lo, hi = -1, len(values)  # largest: values[lo] fits, values[hi] does not (smallest: the reverse)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(values[mid]) == largest:
            lo = mid
        else:
            hi = mid
    index = lo if largest else hi
    return values[index] if 0 <= index < len(values) else None


class ProbeFailed(Exception):
    """A probe ended otherwise than fitting or running out of memory: the search cannot go on."""

    def __init__(self, value: float, record: dict[str, Any]):
        super().__init__(f"the probe at {value:g} ended with {record['status']}: {record.get('error', '')}")


def search(s: Scenario, probe: Callable[[Scenario], dict[str, Any]], device_gib: float | None) -> dict[str, Any]:
    """Run the search; `probe` runs one derived scenario in isolation and returns its record.

    Returns the body of the search's own record: status `ok` with the value found, `oom` when even
    the smallest candidate does not fit, `error` when a probe failed otherwise. Every probe is kept.
    """
    probes: list[dict[str, Any]] = []
    try:
        values = candidates(s, device_gib)
    except ValueError as exc:
        return {"status": "error", "error": str(exc)}
    largest = s.search != "min-budget"

    def fits(value: float) -> bool:
        record = probe(probe_scenario(s, value))
        memory = record.get("memory") or {}
        probes.append(
            {
                "value": value,
                "status": record["status"],
                "error": record.get("error", ""),
                "latency_s": (record.get("latency_s") or [None])[0],
                **{k: memory.get(k) for k in ("peak_vram_allocated_mib", "peak_vram_reserved_mib", "peak_rss_mib")},
            }
        )
        if record["status"] not in ("ok", "oom"):
            raise ProbeFailed(value, record)
        return record["status"] == "ok"

    capacity: dict[str, Any] = {"search": s.search, "unit": UNITS[s.search], "limit": values[-1], "probes": probes}
    try:
        found = bisect(values, fits, largest)
    except ProbeFailed as exc:
        return {"status": "error", "error": str(exc), "capacity": capacity}
    capacity["value"] = found
    if found is None:
        what = f"{values[0]:g} {UNITS[s.search]}" if largest else f"{values[-1]:g} GiB"
        return {"status": "oom", "error": f"nothing fits: even {what} ran out of memory", "capacity": capacity}
    if found == values[-1] and largest:
        capacity["note"] = f"the search's upper limit fits; the true limit may be higher (search_max = {found:g})"
    return {"status": "ok", "capacity": capacity}
