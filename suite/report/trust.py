"""The report's word on how far each number can be trusted: the unstable scenarios, why, and what to do."""

from __future__ import annotations

from collections.abc import Sequence

from suite.report.markup import badge, e, table, td
from suite.report.runs import Run

RULE = (
    "A scenario is unstable when its repeats or its worker processes spread by more than 10 %, its steps "
    "drift by more than 10 % through a run, other processes used more than 10 % of the CPU while it was "
    "timed, a hypervisor took more than 5 % (steal), or the CPU throttled. Intervals are 95 % hierarchical "
    "bootstrap intervals of the median: processes resampled first, then their repeats."
)


def stability_cell(verdict: str, reason: str) -> str:
    """The verdict as a badge, its reason on hover."""
    if not verdict:
        return td(reason)
    return f'<td data-v="{e(verdict)}" title="{e(reason)}">{badge(verdict, f"t-{verdict}")}</td>'


def section(runs: Sequence[Run]) -> str:
    """Every unstable scenario with its reason and the advice; a line saying so when all are stable."""
    rows = []
    judged = 0
    for run in runs:
        for row in run.rows:
            judged += row["stability"] in ("stable", "unstable")
            if row["stability"] == "unstable":
                rows.append(
                    f"<tr>{td(run.environment.get('run_id', run.path.name))}{td(row['scenario'])}"
                    f"{td(row['processes'], True)}{td(row['repeats'], True)}"
                    f'<td class="reason">{e(row["stability_reason"])}</td>'
                    f'<td class="reason">{e(row["stability_advice"])}</td></tr>'
                )
    if not judged:
        return ""
    parts = ["<h2>Can these numbers be trusted?</h2>", f'<p class="note">{e(RULE)}</p>']
    if not rows:
        parts.append(f'<p class="note">All {judged} judged scenario(s) are stable.</p>')
        return "".join(parts)
    headers = (
        ("run", False),
        ("scenario", False),
        ("processes", True),
        ("repeats", True),
        ("why unstable", False),
        ("what to do", False),
    )
    parts.append(table("unstable", headers, rows))
    return "".join(parts)
