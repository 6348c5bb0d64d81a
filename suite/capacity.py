"""Capacity searches: the largest batch or image that fits a VRAM budget, the smallest budget that fits.

Whether a configuration fits is monotone in the searched value (a larger batch, image or a
smaller budget never needs less memory), so a bisection over the candidate values finds the
boundary in at most about log2(n) probes. Two things make a whole profile of searches cheaper
without changing any answer that monotonicity allows:
- a `Ledger` keeps every probe's outcome, and an outcome that an earlier probe of the same
  configuration implies (7 images fit in 6 GiB, so 5 fit in 8 GiB) is not probed again;
- the memory the fitting probes needed predicts where the boundary lies, so a search starts
  there and gallops outwards before bisecting: usually two probes instead of six.
Each probe is a short generation of a derived scenario under the emulated budget (the caller runs
it; suite.probe_worker says how an out-of-memory probe is kept from leaving anything behind).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from suite.scenario import LABELS, Scenario

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_RESOLUTION = 2048
RESOLUTION_STEP = 64
BUDGET_STEP_GIB = 0.5
UNITS = {"max-batch": "images", "max-resolution": "pixels (square)", "min-budget": "GiB"}
MIB_PER_GIB = 1024.0
# what tells the probes of one configuration apart
_PROBED = ("batch", "width", "height", "vram_budget_gib")


def candidates(s: Scenario, device_gib: float | None) -> list[float]:
    """The values a search chooses among, in increasing order."""
    if s.search == "max-batch":
        values: list[float] = list(range(1, int(s.search_max or DEFAULT_MAX_BATCH) + 1))
        smallest = "1 image"
    elif s.search == "max-resolution":
        top = int(s.search_max or DEFAULT_MAX_RESOLUTION)
        values, smallest = list(range(RESOLUTION_STEP, top + 1, RESOLUTION_STEP)), f"{RESOLUTION_STEP} pixels"
    else:
        top = s.search_max or device_gib
        if not top:
            raise ValueError("a min-budget search needs search_max, or a GPU whose memory size is known")
        values = [BUDGET_STEP_GIB * k for k in range(2, math.floor(top / BUDGET_STEP_GIB) + 1)]
        smallest = f"{2 * BUDGET_STEP_GIB:g} GiB"
    if not values:
        raise ValueError(f"search_max {s.search_max:g} leaves nothing to search: the smallest candidate is {smallest}")
    return values


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


def configuration(p: Scenario) -> str:
    """What a probe loads and runs, less what probes of it vary: probes with equal keys share a pipeline."""
    d = p.to_dict()
    return repr(sorted((k, v) for k, v in d.items() if k not in _PROBED + LABELS))


@dataclass(frozen=True)
class Outcome:
    batch: int
    width: int
    height: int
    budget_gib: float
    fits: bool
    probe: str  # the probe that measured it
    need_gib: float | None = None  # what a fitting probe used: the allocator's peak plus what lies outside it

    def implies(self, batch: int, width: int, height: int, budget_gib: float) -> bool:
        """Whether this outcome decides that point: fitting covers everything smaller in a larger budget."""
        if self.fits:
            return (
                batch <= self.batch and width <= self.width and height <= self.height and budget_gib >= self.budget_gib
            )
        return batch >= self.batch and width >= self.width and height >= self.height and budget_gib <= self.budget_gib


class Ledger:
    """Every probe outcome of a run, by configuration, to answer what they already imply."""

    def __init__(self) -> None:
        self._outcomes: dict[str, list[Outcome]] = {}

    def implied(self, p: Scenario) -> Outcome | None:
        point = (p.batch, p.width, p.height, p.vram_budget_gib)
        return next((o for o in self._outcomes.get(configuration(p), ()) if o.implies(*point)), None)

    def add(self, p: Scenario, fits: bool, entry: dict[str, Any]) -> None:
        need = None
        if fits and entry.get("peak_vram_allocated_mib") is not None:
            need = (entry["peak_vram_allocated_mib"] + (entry.get("outside_allocator_mib") or 0.0)) / MIB_PER_GIB
        outcome = Outcome(p.batch, p.width, p.height, p.vram_budget_gib, fits, p.name, need)
        self._outcomes.setdefault(configuration(p), []).append(outcome)

    def learn(self, record: dict[str, Any]) -> None:
        """Take in the probes of a search recorded earlier (a resumed run)."""
        capacity = record.get("capacity") or {}
        if not capacity.get("probes"):
            return
        s = Scenario.from_dict(record["scenario"])
        for entry in capacity["probes"]:
            if entry["status"] in ("ok", "oom") and not entry.get("implied_by"):
                self.add(probe_scenario(s, entry["value"]), entry["status"] == "ok", entry)

    def guess(self, s: Scenario, values: list[float]) -> int | None:
        """The index of the value the memory measured so far predicts to be the boundary (None: no prediction).

        Memory grows linearly with the batch; with the image's pixel count it grows linearly in
        most attention kernels and quadratically where attention is sliced, so a quadratic is
        fitted once three sizes are known. A wrong guess costs probes, never a wrong answer.
        """
        base = probe_scenario(s, values[0])
        known = [o for o in self._outcomes.get(configuration(base), ()) if o.need_gib is not None]
        if s.search == "min-budget":
            need = [o.need_gib for o in known if (o.batch, o.width, o.height) == (s.batch, s.width, s.height)]
            return next((i for i, v in enumerate(values) if v >= max(need)), len(values) - 1) if need else None
        if s.search == "max-batch":
            points = [(o.batch, o.need_gib) for o in known if (o.width, o.height) == (s.width, s.height)]
            xs, degree = np.array(values, dtype=float), 1
        else:
            # in 512x512 images, which keeps the quadratic's terms of one magnitude
            points = [
                (o.width * o.height / 512**2, o.need_gib) for o in known if o.batch == s.batch and o.width == o.height
            ]
            xs, degree = (np.array(values, dtype=float) / 512) ** 2, 2
        distinct = len({x for x, _ in points})
        if distinct < 2:
            return None
        fit = np.polyfit([x for x, _ in points], [n for _, n in points], min(degree, distinct - 1))
        fitting = np.nonzero(np.polyval(fit, xs) <= s.vram_budget_gib)[0]
        return int(fitting[-1]) if len(fitting) else 0


def gallop_then_bisect(
    values: list[float], fits: Callable[[float], bool], largest: bool, guess: int | None
) -> float | None:
    """The largest (or smallest) value that fits, probing each value at most once; None if none does.

    From a guess it steps outwards by 1, 2, 4, ... until the answer changes, then bisects what is
    left between; without one it bisects the whole range.
    """
    lo, hi = -1, len(values)  # largest: values[lo] fits, values[hi] does not (smallest: the reverse)

    def inside(i: int) -> bool:
        return fits(values[i]) == largest

    if guess is not None and len(values):
        at = min(max(guess, 0), len(values) - 1)
        if inside(at):
            lo, step = at, 1
            while lo + step < hi and inside(lo + step):
                lo, step = lo + step, step * 2
            hi = min(hi, lo + step)
        else:
            hi, step = at, 1
            while hi - step > lo and not inside(hi - step):
                hi, step = hi - step, step * 2
            lo = max(lo, hi - step)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if inside(mid):
            lo = mid
        else:
            hi = mid
    index = lo if largest else hi
    return values[index] if 0 <= index < len(values) else None


class ProbeFailed(Exception):
    """A probe ended otherwise than fitting or running out of memory: the search cannot go on."""

    def __init__(self, value: float, record: dict[str, Any]):
        super().__init__(f"the probe at {value:g} ended with {record['status']}: {record.get('error', '')}")


def _entry(value: float, record: dict[str, Any]) -> dict[str, Any]:
    memory = record.get("memory") or {}
    return {
        "value": value,
        "status": record["status"],
        "error": record.get("error", ""),
        "latency_s": (record.get("latency_s") or [None])[0],
        **{k: memory.get(k) for k in ("peak_vram_allocated_mib", "peak_vram_reserved_mib", "outside_allocator_mib")},
        **({"leftover_mib": record["leftover_mib"]} if "leftover_mib" in record else {}),
    }


def search(
    s: Scenario,
    probe: Callable[[Scenario], dict[str, Any]],
    device_gib: float | None,
    ledger: Ledger | None = None,
) -> dict[str, Any]:
    """Run the search; `probe` runs one derived scenario in isolation and returns its record.

    Returns the body of the search's own record: status `ok` with the value found, `oom` when even
    the smallest candidate does not fit, `error` when a probe failed otherwise. Every probe is kept,
    and so is every outcome taken from the ledger instead (with `implied_by`: the probe that decided it).
    """
    ledger = ledger if ledger is not None else Ledger()
    probes: list[dict[str, Any]] = []
    try:
        values = candidates(s, device_gib)
    except ValueError as exc:
        return {"status": "error", "error": str(exc)}
    largest = s.search != "min-budget"

    def fits(value: float) -> bool:
        p = probe_scenario(s, value)
        known = ledger.implied(p)
        if known is not None:
            probes.append({"value": value, "status": "ok" if known.fits else "oom", "implied_by": known.probe})
            return known.fits
        record = probe(p)
        entry = _entry(value, record)
        probes.append(entry)
        if record["status"] not in ("ok", "oom"):
            raise ProbeFailed(value, record)
        ledger.add(p, record["status"] == "ok", entry)
        return record["status"] == "ok"

    capacity: dict[str, Any] = {"search": s.search, "unit": UNITS[s.search], "limit": values[-1], "probes": probes}
    try:
        guess = ledger.guess(s, values)
        if guess is None:
            # nothing to predict from yet: first the probes that measure the most for the least, the
            # two smallest values (a line through them) or the largest budget (what one image needs)
            for value in values[:2] if largest else values[-1:]:
                if not fits(value):
                    break
            guess = ledger.guess(s, values)
        found = gallop_then_bisect(values, fits, largest, guess)
    except ProbeFailed as exc:
        return {"status": "error", "error": str(exc), "capacity": capacity}
    capacity["value"] = found
    if found is None:
        what = f"{values[0]:g} {UNITS[s.search]}" if largest else f"{values[-1]:g} GiB"
        return {"status": "oom", "error": f"nothing fits: even {what} ran out of memory", "capacity": capacity}
    if found == values[-1] and largest:
        capacity["note"] = f"the search's upper limit fits; the true limit may be higher (search_max = {found:g})"
    return {"status": "ok", "capacity": capacity}
