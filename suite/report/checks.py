"""Watermark checks shown in reports: the audit's verdict on a generated image, and counts over an audit.

A report asks the same detector as `sdsuite audit` (suite.audit), so what a thumbnail says about
its mark is exactly what an auditor would find in that file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def audit_image(path: str | Path) -> dict[str, Any]:
    """The audit's record of one file (provenance skipped: a generated image's is our own)."""
    from suite.audit.scan import AuditOptions, audit_file

    return audit_file(str(path), AuditOptions(metadata=False))


@dataclass(frozen=True)
class MarkCheck:
    """What the audit reads back from a generated image, against the scheme the run embedded."""

    embedded: str  # scheme name, or "none"
    status: str  # the audit record's: ok / too_small / error
    found: tuple[tuple[str, float], ...]  # (scheme, p-value) of every scheme detected
    p_value: float | None  # the embedded scheme's (the smallest of all when none was embedded)
    exact: bool | None  # the embedded scheme's bits equal its message (the reference's own test)
    bit_accuracy: float | None  # share of the embedded scheme's bits that match
    error: str

    @property
    def verdict(self) -> str:
        """One word for the tile's badge: does what was found match what was embedded?"""
        if self.status == "too_small":
            return "too small"
        if self.status != "ok":
            return "unreadable"
        found = {scheme for scheme, _ in self.found}
        expected = set() if self.embedded == "none" else {self.embedded}
        if found == expected:
            return "as embedded"
        if not found:
            return "missing"
        return "unexpected" if not expected else "wrong scheme"


def mark_check(record: dict[str, Any], embedded: str) -> MarkCheck:
    marks = record.get("watermarks") or []
    found = tuple((m["scheme"], m["p_value"]) for m in marks if m.get("detected"))
    own = next((m for m in marks if m["scheme"] == embedded), None)
    if own is not None:
        p_value, exact, accuracy = own.get("p_value"), own.get("exact"), own.get("bit_accuracy")
    else:
        p_value = min((m["p_value"] for m in marks if m.get("p_value") is not None), default=None)
        exact = accuracy = None
    return MarkCheck(
        embedded, record.get("status", "error"), found, p_value, exact, accuracy, record.get("error") or ""
    )


def file_verdict(record: dict[str, Any]) -> str:
    """The category of one audited file: the scheme(s) found, `none`, `too_small` or `error`."""
    status = record.get("status", "error")
    if status != "ok":
        return status if status == "too_small" else "error"
    found = [m["scheme"] for m in record.get("watermarks") or [] if m.get("detected")]
    return "+".join(found) or "none"


@dataclass
class SchemeCounts:
    detected: int = 0
    not_detected: int = 0
    exact: int = 0  # detected files whose bits also spell the message exactly
    min_p: float | None = None

    @property
    def checked(self) -> int:
        return self.detected + self.not_detected


def summarise_audit(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over an audit: files by status, by verdict and by error kind; each scheme's detections."""
    per_scheme: dict[str, SchemeCounts] = {}
    for record in records:
        for mark in record.get("watermarks") or []:
            counts = per_scheme.setdefault(mark["scheme"], SchemeCounts())
            if mark.get("detected"):
                counts.detected += 1
                counts.exact += bool(mark.get("exact"))
            else:
                counts.not_detected += 1
            p = mark.get("p_value")
            if p is not None and (counts.min_p is None or p < counts.min_p):
                counts.min_p = p
    errors = Counter(r.get("error_kind") or "error" for r in records if r.get("status") not in ("ok", "too_small"))
    return {
        "status": Counter(r.get("status", "error") for r in records),
        "verdicts": Counter(file_verdict(r) for r in records),
        "error_kinds": errors,
        "per_scheme": per_scheme,
    }
