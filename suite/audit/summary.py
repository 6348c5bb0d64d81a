"""Counts over audit records, one record at a time: a scan's closing line, a shard's footer, the report.

Kept free of the detector's imports, so that the report can count without loading OpenCV.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def file_verdict(record: dict[str, Any]) -> str:
    """The category of one audited file: the scheme(s) found, `none`, `too_small` or `error`."""
    status = record.get("status", "error")
    if status != "ok":
        return status if status == "too_small" else "error"
    found = [m["scheme"] for m in record.get("watermarks") or [] if m.get("detected")]
    return "+".join(found) or "none"


@dataclass
class SchemeCounts:
    """One scheme's tests over an audit."""

    detected: int = 0
    not_detected: int = 0
    exact: int = 0  # detected files whose bits also spell the message exactly
    min_p: float | None = None

    @property
    def checked(self) -> int:
        return self.detected + self.not_detected


@dataclass
class Summary:
    """Files by status, by verdict and by error kind, and each scheme's tests."""

    scanned: int = 0
    status: Counter[str] = field(default_factory=Counter)  # ok, too_small, error
    verdicts: Counter[str] = field(default_factory=Counter)  # file_verdict's
    error_kinds: Counter[str] = field(default_factory=Counter)
    per_scheme: dict[str, SchemeCounts] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Iterable[dict[str, Any]]) -> Summary:
        summary = cls()
        for record in records:
            summary.add(record)
        return summary

    def add(self, record: dict[str, Any]) -> None:
        self.scanned += 1
        status = record.get("status", "error")
        self.status[status if status in ("ok", "too_small") else "error"] += 1
        if status not in ("ok", "too_small"):
            self.error_kinds[record.get("error_kind") or "error"] += 1
        self.verdicts[file_verdict(record)] += 1
        for mark in record.get("watermarks") or []:
            counts = self.per_scheme.setdefault(mark["scheme"], SchemeCounts())
            if mark.get("detected"):
                counts.detected += 1
                counts.exact += bool(mark.get("exact"))
            else:
                counts.not_detected += 1
            p_value = mark.get("p_value")
            if p_value is not None and (counts.min_p is None or p_value < counts.min_p):
                counts.min_p = p_value

    @property
    def ok(self) -> int:
        return self.status["ok"]

    @property
    def too_small(self) -> int:
        return self.status["too_small"]

    @property
    def errors(self) -> int:
        return self.status["error"]

    @property
    def detected(self) -> dict[str, int]:
        return {scheme: counts.detected for scheme, counts in self.per_scheme.items()}

    def as_dict(self) -> dict[str, Any]:
        """The totals a shard's footer and `_summary.json` keep (their keys are an interface)."""
        return {
            "scanned": self.scanned,
            "ok": self.ok,
            "too_small": self.too_small,
            "errors": self.errors,
            "detected": self.detected,
            "error_kinds": dict(self.error_kinds),
        }
