"""From the benchmark's records to one row per attack and scheme: the rates and their intervals.

A marked image counts as found when the audit detects the scheme that was embedded; an image that
could not be audited counts as not found. A clean image counts as a false positive when any scheme
is detected in it. Intervals are exact (Clopper–Pearson) 95 % intervals, which stay honest at 0 %
and 100 % with a few dozen images.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy.stats import binomtest

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Rate:
    hits: int
    total: int

    @property
    def share(self) -> float:
        return self.hits / self.total if self.total else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        if not self.total:
            return math.nan, math.nan
        ci = binomtest(self.hits, self.total).proportion_ci(CONFIDENCE, method="exact")
        return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Row:
    attack: str
    scheme: str
    marked: Rate  # found with the embedded scheme
    wrong_scheme: int  # marked images in which another scheme was detected
    exact: Rate  # the reference decoder's bits equal the message, for the embedded scheme
    clean: Rate  # clean images under the same attack with any scheme detected
    min_clean_p: float  # the smallest p-value of any scheme on the clean images
    found_by: dict[str, int]  # what found the marks (how_found): uint8, jpeg-420 impulse, uint8 crop, ...
    errors: int  # marked and clean images the audit could not read
    ms_marked: float  # mean audit time of the marked images (wall)
    ms_clean: float
    cpu_ms_marked: float  # the same in CPU time, which other work on the machine does not inflate
    cpu_ms_clean: float

    def as_dict(self) -> dict[str, Any]:
        tpr_low, tpr_high = self.marked.interval
        fpr_low, fpr_high = self.clean.interval
        return {
            "attack": self.attack,
            "scheme": self.scheme,
            "marked": self.marked.total,
            "found": self.marked.hits,
            "tpr": self.marked.share,
            "tpr_low": tpr_low,
            "tpr_high": tpr_high,
            "wrong_scheme": self.wrong_scheme,
            "exact_match": self.exact.share,
            "clean": self.clean.total,
            "false_positives": self.clean.hits,
            "fpr": self.clean.share,
            "fpr_low": fpr_low,
            "fpr_high": fpr_high,
            "min_clean_p": self.min_clean_p,
            "found_by": found_by_text(self.found_by),
            "errors": self.errors,
            "ms_marked": self.ms_marked,
            "ms_clean": self.ms_clean,
            "cpu_ms_marked": self.cpu_ms_marked,
            "cpu_ms_clean": self.cpu_ms_clean,
        }


def how_found(mark: dict[str, Any]) -> str:
    """What found a mark: the file's own reading where it was not the decoded pixels (`jpeg-420`),
    the reading path (`uint8`, `float`, `impulse`, ...) and the search where one realigned the mark
    (`crop`, `resize`): `jpeg-420 impulse`, `uint8 crop`."""
    search = mark.get("search")
    reading = mark.get("reading")
    parts = [
        reading if reading != "pixels" else None,
        mark.get("path") or "uint8",
        search.get("edit", "search") if isinstance(search, dict) else None,
    ]
    return " ".join(part for part in parts if part)


def found_by_text(counts: dict[str, int], most: int | None = None) -> str:
    """`uint8 30, uint8 crop 2`, the most frequent first; past `most` kinds, how many more there were."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{how} {n}" for how, n in ranked[:most])
    if most is not None and len(ranked) > most:
        text += f", {len(ranked) - most} more"
    return text


def _mark(record: dict[str, Any], scheme: str) -> dict[str, Any] | None:
    return next((m for m in record.get("watermarks") or [] if m.get("scheme") == scheme), None)


def _mean_ms(records: Sequence[dict[str, Any]], key: str = "seconds") -> float:
    times = [r[key] for r in records if r.get(key) is not None]
    return 1000 * sum(times) / len(times) if times else math.nan


def tabulate(records: Iterable[dict[str, Any]], attacks: Sequence[str], schemes: Sequence[str]) -> list[Row]:
    """One row per attack and scheme, in the given orders (attacks or schemes without records are left out)."""
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["attack"], record.get("embedded")), []).append(record)
    rows = []
    for attack in attacks:
        clean = groups.get((attack, None), [])
        clean_hits = sum(any(m.get("detected") for m in r.get("watermarks") or []) for r in clean)
        clean_p = [m["p_value"] for r in clean for m in r.get("watermarks") or [] if m.get("p_value") is not None]
        for scheme in schemes:
            marked = groups.get((attack, scheme))
            if not marked:
                continue
            own = [_mark(r, scheme) for r in marked]
            found = [m for m in own if m and m.get("detected")]
            rows.append(
                Row(
                    attack=attack,
                    scheme=scheme,
                    marked=Rate(len(found), len(marked)),
                    wrong_scheme=sum(
                        any(m.get("detected") and m.get("scheme") != scheme for m in r.get("watermarks") or [])
                        for r in marked
                    ),
                    exact=Rate(sum(bool(m and m.get("exact")) for m in own), len(marked)),
                    clean=Rate(clean_hits, len(clean)),
                    min_clean_p=min(clean_p, default=math.nan),
                    found_by=dict(Counter(how_found(m) for m in found)),
                    errors=sum(r.get("status") == "error" for r in (*marked, *clean)),
                    ms_marked=_mean_ms(marked),
                    ms_clean=_mean_ms(clean),
                    cpu_ms_marked=_mean_ms(marked, "cpu_seconds"),
                    cpu_ms_clean=_mean_ms(clean, "cpu_seconds"),
                )
            )
    return rows


def as_dicts(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [row.as_dict() for row in rows]
