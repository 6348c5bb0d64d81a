"""The benchmark's tables: CSV (one row per attack and scheme), a terminal table and a Markdown one
(one row per attack, the schemes side by side)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from typing import TextIO

from suite.audit.output import printable
from suite.robustness.attacks import ATTACKS
from suite.robustness.tally import Rate, Row, found_by_text
from suite.spreadsheet import neutralise

CSV_COLUMNS = (
    "attack",
    "scheme",
    "marked",
    "found",
    "tpr",
    "tpr_low",
    "tpr_high",
    "wrong_scheme",
    "exact_match",
    "clean",
    "false_positives",
    "fpr",
    "fpr_low",
    "fpr_high",
    "min_clean_p",
    "found_by",
    "errors",
    "ms_marked",
    "ms_clean",
    "cpu_ms_marked",
    "cpu_ms_clean",
)


def write_csv(rows: Sequence[Row], stream: TextIO) -> None:
    """Formula-guarded like every CSV the suite writes (attack names and `found_by` are text)."""
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = row.as_dict()
        writer.writerow([neutralise(_cell(values[column])) for column in CSV_COLUMNS])


def _cell(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def percent(rate: Rate, interval: bool = True) -> str:
    if not rate.total:
        return "—"
    text = f"{100 * rate.share:.0f} %"
    if interval:
        low, high = rate.interval
        text += f" [{100 * low:.0f}–{100 * high:.0f}]"
    return text


def p_text(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.1g}"


def by_attack(rows: Sequence[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row.attack, []).append(row)
    return grouped


def _summary_cells(attack_rows: list[Row], schemes: Sequence[str]) -> list[str]:
    """One attack's cells: each scheme's TPR, wrong-scheme detections, exact match per scheme, clean
    flagged, smallest clean p, how the marks were found, mean CPU ms of the audit per image."""
    own = {row.scheme: row for row in attack_rows}
    first = attack_rows[0]
    found_by: dict[str, int] = {}
    for row in attack_rows:
        for how, n in row.found_by.items():
            found_by[how] = found_by.get(how, 0) + n
    times = [(row.cpu_ms_marked, row.marked.total) for row in attack_rows]
    times.append((first.cpu_ms_clean, first.clean.total))
    total = sum(n for ms, n in times if not math.isnan(ms))
    ms = sum(ms * n for ms, n in times if not math.isnan(ms)) / total if total else math.nan
    return [
        *(percent(own[s].marked) if s in own else "—" for s in schemes),
        str(sum(row.wrong_scheme for row in attack_rows)),
        " / ".join(percent(own[s].exact, interval=False) if s in own else "—" for s in schemes),
        f"{first.clean.hits}/{first.clean.total}",
        p_text(first.min_clean_p),
        found_by_text(found_by, most=3) or "—",
        "—" if math.isnan(ms) else f"{ms:.0f}",
    ]


def _headers(schemes: Sequence[str]) -> list[str]:
    return [
        "attack",
        *(f"{s} found" for s in schemes),
        "wrong scheme",
        "exact match",
        "clean flagged",
        "smallest clean p",
        "found by",
        "CPU ms/image",
    ]


def terminal_table(rows: Sequence[Row], schemes: Sequence[str]) -> str:
    """Aligned columns, one line per attack; names are escaped (no control characters get through)."""
    lines = [_headers(schemes)]
    lines += [[printable(attack), *_summary_cells(group, schemes)] for attack, group in by_attack(rows).items()]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def markdown_table(rows: Sequence[Row], schemes: Sequence[str]) -> str:
    """The per-attack table for README and docs: each attack described, found shares with 95 % intervals."""
    headers = _headers(schemes)
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for attack, group in by_attack(rows).items():
        name = ATTACKS[attack].description if attack in ATTACKS else attack
        cells = [f"{name.replace('|', '/')} (`{attack}`)", *_summary_cells(group, schemes)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
