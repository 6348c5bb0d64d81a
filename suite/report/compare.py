"""Are two runs of the same scenario really different, or within their run-to-run spread?

Decision rule: a 95 % interval of the ratio of median latencies from a hierarchical bootstrap
(2,000 resamples, fixed seed: each run's worker processes drawn with replacement, then each
drawn process's repeats), so the interval covers what another run would see, not only another
repeat; the difference counts when the interval excludes 1. With fewer than 2 measurements on a
side there is no spread to compare against, and the verdict says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from suite.measure.bootstrap import ratio_interval
from suite.record import Record
from suite.report.runs import Run

MIN_REPEATS = 2


@dataclass
class Comparison:
    scenario: str
    a_s: float | None
    b_s: float | None
    ratio: float | None  # b / a: above 1 means b is slower
    low: float | None
    high: float | None
    verdict: str
    # why the interval may be wide: either side's stability verdict when it is unstable
    note: str = ""


def compare_latency(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], name: str = "") -> Comparison:
    """Compare two runs' latencies, each given per worker process."""
    flat_a = [x for g in a for x in g]
    flat_b = [x for g in b for x in g]
    if not flat_a or not flat_b:
        return Comparison(name, None, None, None, None, None, "not comparable (no successful repeats)")
    ma, mb = float(np.median(flat_a)), float(np.median(flat_b))
    ratio = mb / ma
    if len(flat_a) < MIN_REPEATS or len(flat_b) < MIN_REPEATS:
        return Comparison(name, ma, mb, ratio, None, None, "no spread (fewer than 2 repeats)")
    low, high = ratio_interval(a, b)
    if low > 1:
        verdict = "slower"
    elif high < 1:
        verdict = "faster"
    else:
        verdict = "same within spread"
    return Comparison(name, ma, mb, ratio, low, high, verdict)


def compare_runs(a: Run, b: Run) -> list[Comparison]:
    """Per-image latency of every scenario the two runs share, in a's order."""
    b_by_name = b.by_name()
    out = []
    for ra in a.records:
        rb = b_by_name.get(ra.name)
        if rb is None:
            continue
        if ra.status != "ok" or rb.status != "ok":
            out.append(Comparison(ra.name, None, None, None, None, None, f"{ra.status} vs {rb.status}"))
            continue
        comparison = compare_latency(ra.per_image_groups(), rb.per_image_groups(), ra.name)
        comparison.note = unstable_note(ra, rb)
        out.append(comparison)
    return out


def unstable_note(ra: Record, rb: Record) -> str:
    """'A unstable: why; B unstable: why' for the sides that are, '' when both are stable."""
    notes = []
    for side, record in (("A", ra), ("B", rb)):
        if record.verdict.stability == "unstable":
            notes.append(f"{side} unstable: {record.verdict.reason}")
    return "; ".join(notes)


def format_table(a: Run, b: Run, comparisons: list[Comparison]) -> str:
    def num(v: float | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    header = ("scenario", "A s/image", "B s/image", "B/A", "95% interval", "verdict", "note")
    rows = [
        (
            c.scenario,
            num(c.a_s, ".3g"),
            num(c.b_s, ".3g"),
            num(c.ratio, ".3f"),
            f"{c.low:.3f}-{c.high:.3f}" if c.low is not None else "",
            c.verdict,
            c.note,
        )
        for c in comparisons
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = [f"A: {a.label}", f"B: {b.label}", ""]
    for row in (header, *rows):
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        lines.append("(no scenario in common)")
    return "\n".join(lines)
