"""`sdsuite audit --resume`: carry on a folder audit written to JSONL or CSV after a kill.

The audit's settings go to a sidecar, `OUTPUT.options.json`, written beside every JSONL or CSV
output (so the records file stays one record per line for every reader). A resumed audit must
have the same settings, the same inputs and the same working directory (records name files as
given); the files already recorded are skipped, and a last line torn by the kill is cut off.
The report reads the working directory from it too, to find thumbnails of relative paths.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from suite.errors import UsageError
from suite.safe_files import is_regular_file, regular_input, replaced_on_success
from suite.spreadsheet import restore

SIDECAR_SUFFIX = ".options.json"
STREAMED_FORMATS = ("jsonl", "csv")  # one complete line per record, flushed as it comes: resumable


def sidecar(output: str | Path) -> Path:
    return Path(f"{output}{SIDECAR_SUFFIX}")


def write_settings(output: str | Path, settings: dict[str, Any]) -> None:
    """Record how the audit writing `output` was run, for --resume and the report (not beside a
    device or pipe: nothing there can be resumed)."""
    if os.path.exists(output) and not is_regular_file(output):
        return
    with replaced_on_success(sidecar(output)) as handle:
        json.dump({"sdsuite_audit": settings, "cwd": os.getcwd()}, handle, indent=1)


def audit_cwd(output: str | Path) -> Path | None:
    """Where the audit that wrote `output` ran, when its sidecar says so."""
    try:
        cwd = json.loads(sidecar(output).read_text(encoding="utf-8")).get("cwd")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(cwd) if isinstance(cwd, str) else None


def recorded(output: str | Path, kind: str, settings: dict[str, Any]) -> dict[str, str]:
    """The status of each file `output` already records (by path), after checking that the audit that
    wrote it had `settings` here; a torn last line is cut off the file."""
    if kind not in STREAMED_FORMATS:
        raise UsageError(f"--resume continues a --format jsonl or csv output, not {kind}")
    regular_input(output)
    try:
        earlier = json.loads(sidecar(output).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--resume: {sidecar(output)} is missing, so how {output} was written is unknown") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume: {sidecar(output)}: not the audit's settings ({exc})") from None
    if not isinstance(earlier, dict) or not isinstance(earlier.get("sdsuite_audit"), dict):
        raise UsageError(f"--resume: {sidecar(output)}: not the audit's settings")
    now = {**settings, "cwd": os.getcwd()}
    then = {**earlier["sdsuite_audit"], "cwd": earlier.get("cwd")}
    differ = sorted(key for key in now.keys() | then.keys() if now.get(key) != then.get(key))
    if differ:
        raise UsageError(
            f"--resume: {output} was written with other {', '.join(differ)}; run the same command in the "
            "same folder, or write a new output"
        )
    return _records_in(Path(output), kind)


def _records_in(output: Path, kind: str) -> dict[str, str]:
    data = output.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):  # the kill tore the last line
        with open(output, "r+b") as handle:
            handle.truncate(len(complete))
    try:
        text = complete.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--resume: {output}: not UTF-8 text (byte {exc.start}): not an audit's output") from None
    statuses: dict[str, str] = {}
    if kind == "jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"--resume: {output}:{n}: not a JSON record ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                raise UsageError(f"--resume: {output}:{n}: not an audit record")
            statuses[record["path"]] = str(record.get("status"))
        return statuses
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is not None and header[:2] != ["path", "status"]:
        raise UsageError(f"--resume: {output}: not an audit's CSV (its first columns are not path, status)")
    for row in rows:
        if len(row) >= 2:
            statuses[restore(row[0])] = row[1]
    return statuses
