"""The versioned results of a bench run and where they live.

`results.jsonl` is the source of truth: one complete record per finished scenario, appended and
fsynced the moment the scenario ends, so a killed run loses nothing that had finished.
`results.csv` is the flat view of the same records (one row per scenario, units in column names,
cells neutralised for spreadsheets), rebuilt from the JSONL whenever a run resumes.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from suite.errors import UsageError
from suite.record import COLUMNS, SCHEMA_VERSION, STATUSES, Record
from suite.spreadsheet import restore

# the schema lives in suite.record; its version is named here too, beside the files it versions
__all__ = [
    "SCHEMA_VERSION",
    "ResultsError",
    "ResultsStore",
    "environment_problem",
    "flatten",
    "load",
    "load_environment",
    "load_records",
    "typed_record",
]


def flatten(record: Mapping[str, Any]) -> dict[str, Any]:
    """The one flat CSV row of a record as read from JSON."""
    return Record.from_json(record).row()


class ResultsError(UsageError, ValueError):
    """A results.jsonl that holds something other than bench records; the message names the line."""


def typed_record(data: Any) -> Record:
    """The bench record that `data` (a JSON value) holds; a ValueError says what keeps it from being one."""
    problem = _shape_problem(data)
    if problem:
        raise ValueError(problem)
    try:
        record = Record.from_json(data)
        record.row()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    return record


def _shape_problem(record: Any) -> str | None:
    """What keeps `record` from having the fields every reader uses, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("status") not in STATUSES:
        return f"status {record.get('status')!r} is not one of {', '.join(STATUSES)}"
    if not isinstance(record.get("scenario"), dict) or not isinstance(record["scenario"].get("name"), str):
        return "no scenario name"
    for key in ("latency_s", "warmup_latency_s"):
        if not _numbers(record.get(key) or []):
            return f"{key} is not a list of seconds"
    steps = record.get("step_s") or []
    stages = record.get("stages_s") or {}
    if not isinstance(steps, list) or not all(_numbers(run) for run in steps):
        return "step_s is not a list of lists of seconds"
    if not isinstance(stages, dict) or not all(_numbers(times) for times in stages.values()):
        return "stages_s is not an object of lists of seconds"
    return None


def _numbers(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _fsync_append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _csv_text(rows: Iterable[dict[str, Any]], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class ResultsStore:
    """Append-only results of one run directory."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.jsonl = self.run_dir / "results.jsonl"
        self.csv = self.run_dir / "results.csv"
        self.images = self.run_dir / "images"

    def records(self) -> list[dict[str, Any]]:
        """Every complete record, as JSON. The last line, when a kill tore it in mid-write (no newline
        after it), is dropped; anything else that is not a record is a ResultsError naming its line."""
        return [data for data, _ in self._read()]

    def typed_records(self) -> list[Record]:
        """Every complete record, typed (read as `records` reads them)."""
        return [record for _, record in self._read()]

    def _read(self) -> list[tuple[dict[str, Any], Record]]:
        if not self.jsonl.exists():
            return []
        try:
            text = self.jsonl.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ResultsError(f"{self.jsonl}: not UTF-8 text (byte {exc.start}): not a bench run's results") from None
        lines = text.splitlines()
        out = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                if n == len(lines) and not text.endswith("\n"):
                    break  # torn by a kill while it was written
                raise ResultsError(f"{self.jsonl}:{n}: not a JSON record ({exc.msg}); remove the line") from None
            try:
                out.append((data, typed_record(data)))
            except ValueError as exc:
                raise ResultsError(f"{self.jsonl}:{n}: not a bench record ({exc}); remove the line") from None
        return out

    def done(self) -> set[str]:
        return {r["scenario"]["name"] for r in self.records()}

    def open(self) -> None:
        """Prepare the directory; on resume, drop a torn last line and rebuild the CSV from the JSONL."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.images.mkdir(exist_ok=True)
        read = self._read()
        tmp = self.jsonl.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(data) + "\n" for data, _ in read), encoding="utf-8")
        os.replace(tmp, self.jsonl)
        tmp = self.csv.with_suffix(".csv.tmp")
        tmp.write_text(_csv_text((record.row() for _, record in read), header=True), encoding="utf-8")
        os.replace(tmp, self.csv)

    def append(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Persist one finished scenario (its record as JSON) at once; returns its CSV row."""
        record = Record.from_json(data)
        row = record.row()
        _fsync_append(self.jsonl, json.dumps(record.to_json()) + "\n")
        _fsync_append(self.csv, _csv_text([row], header=False))
        return row


def load(run_dir: str | Path):
    """results.csv of a run as a pandas DataFrame, spreadsheet guards undone."""
    import pandas as pd

    df = pd.read_csv(Path(run_dir) / "results.csv", keep_default_na=True)
    for column in df.columns:
        if not pd.api.types.is_numeric_dtype(df[column]) and not pd.api.types.is_bool_dtype(df[column]):
            df[column] = df[column].map(restore)
    return df


def load_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The full records of a run (per-step times and all), as written to results.jsonl."""
    return ResultsStore(run_dir).records()


def load_environment(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "environment.json"
    if not path.exists():
        return {}
    try:
        environment = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not the JSON a bench run writes ({exc}); remove it or the run") from None
    problem = environment_problem(environment)
    if problem:
        raise ResultsError(f"{path}: not what a bench run writes ({problem}); remove it or the run")
    return environment


def environment_problem(environment: Any) -> str | None:
    """What keeps `environment` from being a run's environment.json (the fields readers use), or None."""
    if not isinstance(environment, dict):
        return "not a JSON object"
    if not isinstance(environment.get("fingerprint") or {}, dict):
        return "fingerprint is not an object"
    peaks = environment.get("peak_tflops") or {}
    if not isinstance(peaks, dict) or not all(isinstance(v, int | float | None) for v in peaks.values()):
        return "peak_tflops is not an object of numbers"
    for key in ("run_id", "profile", "started_at"):
        if not isinstance(environment.get(key, ""), str):
            return f"{key} is not text"
    if not isinstance(environment.get("datasheet_tflops_fp16") or 0, int | float):
        return "datasheet_tflops_fp16 is not a number"
    return None
