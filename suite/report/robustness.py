"""The robustness benchmark's section of a report: the WAVES-style chart and the table per attack and scheme.

It is built from the benchmark's raw records (robustness.jsonl), so a report always shows what the
records say; every name in them is escaped like any other untrusted text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from suite.audit.defaults import DEFAULT_ALPHA
from suite.report import charts
from suite.report.command import read_audit
from suite.report.markup import e, page, svg_figure, table, td
from suite.robustness.attacks import ATTACKS
from suite.robustness.output import p_text
from suite.robustness.tally import Row, found_by_text, tabulate

RECORDS_NAME = "robustness.jsonl"
HEADERS = (
    ("attack", False),
    ("what it does", False),
    ("scheme", False),
    ("found, %", True),
    ("95 % interval", False),
    ("wrong scheme", True),
    ("exact match, %", True),
    ("clean flagged, %", True),
    ("95 % interval (clean)", False),
    ("smallest clean p", True),
    ("found by", False),
    ("CPU ms per image", True),
    ("wall ms per image", True),
)


def is_robustness(path: Path) -> bool:
    """A benchmark's output folder, or its records file."""
    return (path / RECORDS_NAME).is_file() if path.is_dir() else path.name == RECORDS_NAME


def read_records(path: Path) -> list[dict[str, Any]]:
    records = read_audit(path / RECORDS_NAME if path.is_dir() else path)
    for n, record in enumerate(records, 1):
        if "attack" not in record:
            raise ValueError(f"{path}: record {n} is not a robustness record (sdsuite robustness)")
    return records


def orders(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Attacks in the matrix's order (unknown names after, as met) and schemes as met."""
    seen = list(dict.fromkeys(r["attack"] for r in records))
    rank = {name: i for i, name in enumerate(ATTACKS)}
    attacks = sorted(seen, key=lambda a: (rank.get(a, len(rank)), seen.index(a)))
    schemes = list(dict.fromkeys(r["embedded"] for r in records if r.get("embedded")))
    return attacks, schemes


def _row(row: Row) -> str:
    low, high = row.marked.interval
    clean_low, clean_high = row.clean.interval
    attack = ATTACKS.get(row.attack)
    return (
        f'<tr data-status="{e(row.scheme)}"><td class="mono">{e(row.attack)}</td>'
        f"<td>{e(attack.description if attack else '')}</td><td>{e(row.scheme)}</td>"
        f"{td(row.marked.share * 100, True, 3)}<td>{e(_interval(low, high))}</td>"
        f"{td(row.wrong_scheme, True)}{td(row.exact.share * 100, True, 3)}"
        f"{td(row.clean.share * 100, True, 3)}<td>{e(_interval(clean_low, clean_high))}</td>"
        f"{td(row.min_clean_p, True, 2)}<td>{e(found_by_text(row.found_by))}</td>{td(row.cpu_ms_marked, True, 3)}{td(row.ms_marked, True, 3)}</tr>"
    )


def _interval(low: float, high: float) -> str:
    return "" if math.isnan(low) else f"{100 * low:.0f}–{100 * high:.0f} %"


def section(records: Sequence[dict[str, Any]]) -> str:
    """The chart and the table; `records` are the benchmark's (robustness.jsonl)."""
    attacks, schemes = orders(records)
    rows = tabulate(records, attacks, schemes)
    by_attack = {a: [r for r in rows if r.attack == a] for a in attacks}
    shown = [a for a in attacks if by_attack[a]]
    found = {
        s: [
            next(((r.marked.share, *r.marked.interval) for r in by_attack[a] if r.scheme == s), (math.nan,) * 3)
            for a in shown
        ]
        for s in schemes
    }
    flagged = [by_attack[a][0].clean.share for a in shown]
    families = [ATTACKS[a].family if a in ATTACKS else "other" for a in shown]
    images = len({r["image"] for r in records})
    clean_p = [m["p_value"] for r in records if not r.get("embedded") for m in r.get("watermarks") or []]
    flagged_total = sum(
        any(m.get("detected") for m in r.get("watermarks") or []) for r in records if not r.get("embedded")
    )
    clean_total = sum(not r.get("embedded") for r in records)
    return "".join(
        [
            "<h2>Robustness</h2>",
            f'<p class="counts">{images:,} clean image(s), each also marked with {e(", ".join(schemes))}; '
            f"{len(shown)} attack(s); {len(records):,} attacked files audited. Clean images flagged: "
            f"{flagged_total:,} of {clean_total:,} (smallest p-value {e(p_text(min(clean_p, default=math.nan)))}).</p>",
            svg_figure(
                charts.robustness(shown, families, found, flagged),
                "Per attack: the share of marked images in which the audit found the embedded scheme "
                f"(at its default threshold, p ≤ {DEFAULT_ALPHA:g}), with 95 % intervals, and the share of the "
                "same clean images flagged under the same attack.",
                "No attacked images in these records.",
            ),
            '<p class="note">Each attacked image is audited as the bytes of its own format (JPEG and WebP '
            "attacks as .jpg/.webp files, the rest as PNG) with the audit's default options. <em>Wrong scheme</em>: "
            "marked images in which another scheme was detected. <em>Exact match</em>: the reference decoder's "
            "bits equal the message (its own, brittle, test). <em>Found by</em>: the test that found the marks. "
            "Times are the audit's alone, per marked image, on the machine that ran the benchmark: CPU time of the "
            "worker process, and wall time (which other work on the machine inflates).</p>",
            table("robustness", HEADERS, (_row(r) for r in rows), schemes, "scheme"),
        ]
    )


def report(records: Sequence[dict[str, Any]], source: str) -> str:
    from suite.report.html import _subtitle

    return page("sdsuite robustness report", _subtitle(source), section(records))
