"""Writers for audit records: a terminal table, JSON Lines, one JSON array, or CSV.

Each record is written and flushed as it arrives, so a long scan can be followed (or killed)
without losing what was already found. File names and metadata are untrusted text: the table
escapes control characters (no terminal escape sequences get through) and CSV cells that a
spreadsheet would run as a formula are neutralised.
"""

from __future__ import annotations

import csv
import json
from typing import Any, Protocol, TextIO

from suite.spreadsheet import neutralise

FORMATS = ("table", "jsonl", "csv", "json")
# What `-o FILE` without --format is written as, by FILE's suffix (anything else: the table).
FORMAT_OF_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".json": "json"}
# A record's `search` (detect.Realignment): the edit a search undid, and the field saying where.
SEARCH_FIELDS = {"crop": "grid_offset", "resize": "original_size", "mirror": "axis", "rotation": "degrees"}


class Writer(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def printable(text: str) -> str:
    """Escape control characters so untrusted names cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class JsonLinesWriter:
    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class JsonArrayWriter:
    """One JSON array, streamed: valid JSON once closed."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.first = True

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(("[\n" if self.first else ",\n") + json.dumps(record, ensure_ascii=False))
        self.first = False
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("[]\n" if self.first else "\n]\n")
        self.stream.flush()


PER_SCHEME = ("detected", "p_value", "bit_accuracy", "order")


def mirror_text(search: dict[str, Any]) -> str:
    """` of the horizontal mirror` where a crop was found in the image flipped back, else ''."""
    return f" of the {search['mirror']} mirror" if search.get("mirror") else ""


def search_text(search: dict[str, Any] | None) -> str | None:
    """A record's `search` in a few words: `crop +5,+3` (the grid's offset), `crop +5,+3 of the
    horizontal mirror`, `resize from 512x512`, `resize from 512x512, the middle of 768x512` (cut from
    a longer original), `mirror horizontal` or `rotation 90 degrees` (counter-clockwise)."""
    if not search:
        return None
    where = search[SEARCH_FIELDS[search["edit"]]]
    if search["edit"] == "crop":
        return "crop +{},+{}".format(*where) + mirror_text(search)
    if search["edit"] == "resize":
        cut = ", the middle of {}x{}".format(*search["cut_from"]) if search.get("cut_from") else ""
        return "resize from {}x{}".format(*where) + cut
    if search["edit"] == "rotation":
        return f"rotation {where:g} degrees"
    return f"mirror {where}"


def flat_columns(schemes: list[str]) -> list[str]:
    """The columns of a flat record (CSV rows, a shard's Parquet rows): the verdict per scheme and
    the main provenance fields."""
    columns = ["path", "status", "error_kind", "error", "width", "height"]
    columns += [f"{scheme}_{field}" for scheme in schemes for field in (*PER_SCHEME, "search")]
    columns += ["ai_claims", "software", "digital_source_type", "c2pa_claim_generator", "c2pa_validation"]
    return columns


def flat_values(record: dict[str, Any]) -> dict[str, Any]:
    """One record as flat_columns' values (a scheme not tested is absent)."""
    meta = record.get("metadata") or {}
    values: dict[str, Any] = {key: record.get(key) for key in ("path", "status", "error_kind", "error")}
    values.update(width=record.get("width"), height=record.get("height"))
    for mark in record.get("watermarks", []):
        for field in PER_SCHEME:
            values[f"{mark['scheme']}_{field}"] = mark[field]
        values[f"{mark['scheme']}_search"] = search_text(mark.get("search"))
    software = (meta.get("exif") or {}).get("Software") or (meta.get("text") or {}).get("Software")
    values.update(
        ai_claims=" ".join(meta.get("ai_claims", [])),
        software=software,
        digital_source_type=(meta.get("xmp") or {}).get("digital_source_type"),
        c2pa_claim_generator=(meta.get("c2pa") or {}).get("claim_generator"),
        c2pa_validation=(meta.get("c2pa") or {}).get("validation_state"),
    )
    return values


class CsvWriter:
    """One flat row per file (flat_columns), cells a spreadsheet would run neutralised."""

    def __init__(self, stream: TextIO, schemes: list[str], header: bool = True):
        self.stream = stream
        self.schemes = schemes
        self.columns = flat_columns(schemes)
        self.writer = csv.writer(stream)
        if header:  # not when appending to a resumed audit's CSV
            self.writer.writerow(self.columns)

    def row(self, record: dict[str, Any]) -> list[Any]:
        values = flat_values(record)
        return [neutralise(values.get(column)) for column in self.columns]

    def write(self, record: dict[str, Any]) -> None:
        self.writer.writerow(self.row(record))
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class TableWriter:
    """Aligned lines for people: status, verdict, strength, size, provenance claims, path."""

    HEADER = f"{'STATUS':<9} {'WATERMARK':<18} {'P-VALUE':>8} {'SIZE':>11}  {'CLAIMS':<16} PATH"

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.stream.write(self.HEADER + "\n")

    def line(self, record: dict[str, Any]) -> str:
        path = printable(record["path"])
        if record["status"] == "error":
            return (
                f"{'error':<9} {printable(str(record['error_kind'])):<18} {'':>8} {'':>11}  {'':<16} {path}: "
                + printable(str(record["error"]))
            )
        size = f"{record['width']}x{record['height']}"
        found = [m for m in record["watermarks"] if m["detected"]]
        if found:
            verdict = "+".join(
                printable(m["scheme"]) + (f" ({m['search']['edit']})" if m.get("search") else "") for m in found
            )
            strength = f"{min(m['p_value'] for m in found):.0e}"
        else:
            verdict, strength = ("-" if record["status"] == "ok" else "(too small)"), ""
        claims = printable(",".join((record.get("metadata") or {}).get("ai_claims", []))) or "-"
        return f"{record['status']:<9} {verdict:<18} {strength:>8} {size:>11}  {claims:<16} {path}"

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(self.line(record) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


def make_writer(kind: str, stream: TextIO, schemes: list[str], appending: bool = False) -> Writer:
    if kind == "jsonl":
        return JsonLinesWriter(stream)
    if kind == "json":
        return JsonArrayWriter(stream)
    if kind == "csv":
        return CsvWriter(stream, schemes, header=not appending)
    if kind == "table":
        return TableWriter(stream)
    raise ValueError(f"unknown format {kind!r}; known: {', '.join(FORMATS)}")
