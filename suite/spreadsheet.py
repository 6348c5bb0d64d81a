"""Cells that are safe to open in a spreadsheet.

A text cell that starts with `=`, `+`, `-`, `@` (or a tab/CR) is run as a formula by Excel,
LibreOffice and Google Sheets; prompts and file names are untrusted, so such cells get a leading
apostrophe, which spreadsheets show as text (OWASP's advice). Numbers are left alone, so a
negative number stays a number.
"""

from __future__ import annotations

from typing import Any

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_TRIGGERS):
        return "'" + value
    return value


def restore(value: Any) -> Any:
    """Undo `neutralise` when reading our own CSV back for analysis."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(_TRIGGERS):
        return value[1:]
    return value
