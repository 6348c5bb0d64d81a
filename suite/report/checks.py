"""Watermark checks shown in reports: the audit's verdict on a generated image, and counts over an audit.

A report asks the same detector as `sdsuite audit` (suite.audit), so what a thumbnail says about
its mark is exactly what an auditor would find in that file.
"""

from __future__ import annotations

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
