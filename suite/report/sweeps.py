"""Scaling sweeps: how latency and memory grow with steps, batch and resolution.

A sweep is found, not declared: successful scenarios of one family in one run that differ in
exactly one of steps, batch or (square) resolution. Each sweep gets the fit that answers its
question: steps — the fixed cost and the cost per step (a straight line); batch — the batch
from which throughput stops growing (within 10 % of the best images/s); resolution — the size
past which time per pixel grows (more than 25 % above its minimum: attention's quadratic term).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suite.record import Record
from suite.report.runs import Run
from suite.scenario import LABELS, Scenario

AXES = ("steps", "batch", "resolution")
KNEE_THROUGHPUT = 0.90  # batch: the knee is the first batch within 10 % of the best images/s
KNEE_PER_PIXEL = 1.25  # resolution: past the knee, seconds per pixel exceed the minimum by 25 %


@dataclass
class Sweep:
    run: Run
    family: str
    axis: str
    x: list[float]
    latency_s: list[float]  # median seconds per call
    low_s: list[float]
    high_s: list[float]
    memory_mib: list[float | None]
    memory_kind: str  # "VRAM" or "RSS"
    batch: list[int]

    @property
    def label(self) -> str:
        return f"{self.family} · {self.axis}"


def _axis_value(s: Scenario, axis: str) -> float | None:
    if axis == "resolution":
        return float(s.width) if s.width == s.height else None
    return float(getattr(s, axis))


def _rest(s: Scenario, axis: str) -> str:
    varied = {"width", "height"} if axis == "resolution" else {axis}
    return repr(sorted((k, repr(v)) for k, v in s.to_dict().items() if k not in varied.union(LABELS)))


def find_sweeps(run: Run, min_points: int = 3) -> list[Sweep]:
    ok = [r for r in run.records if r.measured and not r.scenario.search and not r.capacity]
    families: dict[str, list[Record]] = {}
    for r in ok:
        families.setdefault(r.scenario.family, []).append(r)
    out = []
    for family, records in families.items():
        for axis in AXES:
            groups: dict[str, list[Record]] = {}
            for r in records:
                if _axis_value(r.scenario, axis) is not None:
                    groups.setdefault(_rest(r.scenario, axis), []).append(r)
            for group in groups.values():
                points = sorted({_axis_value(r.scenario, axis): r for r in group}.items())
                if len(points) >= min_points:
                    out.append(_sweep(run, family, axis, points))
    return out


def _sweep(run: Run, family: str, axis: str, points: list[tuple[float, Record]]) -> Sweep:
    vram = any(r.memory and r.memory.peak_vram_allocated_mib for _, r in points)
    key = "peak_vram_allocated_mib" if vram else "peak_rss_mib"
    return Sweep(
        run=run,
        family=family,
        axis=axis,
        x=[x for x, _ in points],
        latency_s=[r.timings.latency["median"] for _, r in points],
        low_s=[r.timings.latency["min"] for _, r in points],
        high_s=[r.timings.latency["max"] for _, r in points],
        memory_mib=[getattr(r.memory, key) if r.memory else None for _, r in points],
        memory_kind="VRAM" if vram else "RSS",
        batch=[int(r.scenario.batch) for _, r in points],
    )


def line_fit(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(intercept), float(slope)


def finding(sweep: Sweep) -> str:
    """One sentence: what the sweep says."""
    if sweep.axis == "steps":
        fixed, per_step = line_fit(sweep.x, sweep.latency_s)
        return f"{per_step:.3g} s per step on top of {fixed:.3g} s fixed (text encode, VAE decode, watermark)"
    if sweep.axis == "batch":
        rate = [b / t for b, t in zip(sweep.batch, sweep.latency_s, strict=True)]
        best = max(rate)
        knee = next(int(x) for x, r in zip(sweep.x, rate, strict=True) if r >= KNEE_THROUGHPUT * best)
        return (
            f"throughput {rate[0]:.3g} images/s at batch {sweep.x[0]:g}, best {best:.3g}; "
            f"within 10 % of the best from batch {knee}"
        )
    per_pixel = [t / (x * x) for x, t in zip(sweep.x, sweep.latency_s, strict=True)]
    lowest = int(np.argmin(per_pixel))
    side = [f"{x:g}x{x:g}" for x in sweep.x]
    if lowest == len(per_pixel) - 1:
        return (
            f"time per pixel falls all the way to {side[-1]} ({per_pixel[0] / per_pixel[-1]:.2f}x lower than at "
            f"{side[0]}): fixed costs still dominate, no knee within this sweep"
        )
    knee = max(i for i in range(lowest, len(per_pixel)) if per_pixel[i] <= KNEE_PER_PIXEL * per_pixel[lowest])
    text = f"time per pixel is lowest at {side[lowest]} and {per_pixel[-1] / per_pixel[lowest]:.2f}x that at {side[-1]}"
    if knee == len(per_pixel) - 1:
        return text + ": within 25 % of the lowest throughout"
    return text + f": within 25 % of the lowest up to {side[knee]}, then attention's quadratic term shows"
