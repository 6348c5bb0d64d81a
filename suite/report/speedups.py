"""How much each speed technique buys, and whether the image survived it.

A scenario that names a `quality_reference` (the plain fp32 run of the same seed, in the same
run) is set against it: the speed-up is the reference's median seconds per image over its own,
with the 95 % bootstrap interval of the repeats (suite.report.compare), next to its compile time
and the quality verdict. A speed-up whose image is broken is shown as broken, never as fast.
"""

from __future__ import annotations

from collections.abc import Sequence

from suite.record import QUALITY_MIN_PSNR_DB
from suite.report.compare import compare_latency
from suite.report.markup import badge, e, quality_cell, table, td
from suite.report.runs import Run

HEADERS = (
    ("run", False),
    ("scenario", False),
    ("device", False),
    ("precision", False),
    ("techniques", False),
    ("against", False),
    ("s/image", True),
    ("speed-up", True),
    ("95% interval", False),
    ("compile s", True),
    ("% peak", True),
    ("quality", False),
    ("PSNR dB", True),
)


def rows(runs: Sequence[Run]) -> tuple[list[str], int]:
    """The table's rows, and how many configurations were skipped (they are in the scenario table)."""
    out, skipped = [], 0
    for run in runs:
        by_name = run.by_name()
        for r in run.records:
            ref_name = r.scenario.quality_reference
            if not ref_name or ref_name not in by_name:
                continue
            if r.status == "skipped":
                skipped += 1
                continue
            ref, row = by_name[ref_name], r.row()
            cells = [
                td(run.environment.get("run_id", run.path.name)),
                td(row["scenario"]),
                td(row["device"]),
                td(row["precision"]),
                td(row["techniques"]),
                td(ref_name),
            ]
            if r.status != "ok" or ref.status != "ok":
                reason = r.error or f"the reference ended with {ref.status}"
                cells.append(f'<td colspan="7">{badge(r.status)} <span class="reason">{e(reason)}</span></td>')
            else:
                c = compare_latency(ref.per_image_groups(), r.per_image_groups())
                speedup = 1 / c.ratio if c.ratio else None
                interval = f"{1 / c.high:.2f}–{1 / c.low:.2f}" if c.low and c.high else c.verdict
                broken = str(row["quality"]).startswith("broken")
                cells += [
                    td(row["s_per_image"], True),
                    td(None if broken else speedup, True, 3, "speedup"),
                    td("not counted: the image is broken" if broken else interval),
                    td(row["compile_s"], True),
                    td(row["pct_of_peak"], True),
                    quality_cell(row["quality"]),
                    td(row["psnr_db"], True),
                ]
            out.append(f'<tr data-status="{e(r.status)}">{"".join(cells)}</tr>')
    return out, skipped


def section(runs: Sequence[Run]) -> str:
    found, skipped = rows(runs)
    if not found and not skipped:
        return ""
    left_out = (
        f'<p class="note">{skipped} configuration(s) could not run on this machine: the scenario table says why.</p>'
        if skipped
        else ""
    )
    return (
        "<h2>Speed techniques</h2>"
        '<p class="note">Each configuration against the plain run it names (same seed, same run): speed-up = the '
        "plain run's median seconds per image / this one's, with the 95 % bootstrap interval over repeats. "
        "Compile time is the first call less the fastest measured one. The quality check compares the first "
        f"image with the plain run's (PSNR; below {QUALITY_MIN_PSNR_DB:g} dB, or NaN/blank output, it is broken).</p>"
        + (table("speedups", HEADERS, found) if found else "")
        + left_out
    )
