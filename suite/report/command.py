"""`sdsuite report`: one self-contained HTML file from bench runs or an audit."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from suite.errors import UsageError
from suite.safe_files import refuse_overwriting, replaced_on_success

AUDIT_STATUSES = ("ok", "too_small", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build one self-contained HTML file (opens from disk, no network) from bench run directories "
        "or from an audit's JSONL output, or a dataset audit's output folder (one Parquet per shard)."
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        type=_location,
        metavar="RUN_DIR|AUDIT.jsonl|AUDIT_DIR",
        help="bench run directories (each holding results.jsonl), compared side by side; or one audit's "
        "--format jsonl/json output; or one dataset audit's -o folder (with _summary.json), local or a URL "
        "such as s3://bucket/audit",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="HTML file to write (default: report.html in the first run directory, or here for a URL)",
    )
    parser.add_argument(
        "--storage-options",
        metavar="JSON",
        help="fsspec options for a dataset output given as a URL, as for audit (never credentials)",
    )


def _location(text: str) -> Path | str:
    """A local path, or a URL (a dataset audit's output on an object store, read through fsspec)."""
    return text if "://" in text else Path(text)


def read_audit(path: Path) -> list[dict[str, Any]]:
    """An audit's records from its `--format jsonl` (or `json`) output.

    A last line cut short (a scan killed while writing) is dropped, as the audit flushes record by
    record; anything else that is not an audit record is an error, so a wrong file is not
    reported as an empty audit.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}): not an audit's JSONL output") from None
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON array of audit records ({exc.msg})") from None
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        records = []
        for n, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if n == len(lines) and not text.endswith("\n"):
                    break
                raise ValueError(f"{path}:{n}: not a JSON record ({exc.msg})") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: not a JSON array of audit records")
    for n, record in enumerate(records, 1):
        problem = audit_record_problem(record)
        if problem:
            raise ValueError(
                f"{path}: record {n} is not an audit record ({problem}): sdsuite audit --format jsonl writes them"
            )
    return records


def audit_record_problem(record: Any) -> str | None:
    """What keeps `record` from being an audit record the report can show, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if not isinstance(record.get("path"), str):
        return "no path"
    if record.get("status") not in AUDIT_STATUSES:
        return f"status {record.get('status')!r} is not one of {', '.join(AUDIT_STATUSES)}"
    for key in ("error", "error_kind"):
        if not isinstance(record.get(key), str | None):
            return f"{key} is not text"
    marks = record.get("watermarks") or []
    if not isinstance(marks, list) or not all(_is_mark(m) for m in marks):
        return "watermarks is not a list of scheme results"
    if not isinstance(record.get("metadata") or {}, dict):
        return "metadata is not an object"
    for key in ("width", "height"):
        if not isinstance(record.get(key), int | None) or isinstance(record.get(key), bool):
            return f"{key} is not a number of pixels"
    return None


def _is_mark(mark: Any) -> bool:
    return (
        isinstance(mark, dict)
        and isinstance(mark.get("scheme"), str)
        and all(isinstance(mark.get(key), int | float | None) for key in ("p_value", "bit_accuracy", "z"))
        and all(isinstance(mark.get(key), str | None) for key in ("decoded", "bits", "order", "path"))
        and _is_search(mark.get("search"))
    )


def _is_search(search: Any) -> bool:
    """A mark's `search`: None, a crop's grid offset or a resize's original size (two integers each),
    a mirror's axis (text) or a rotation's degrees (a number)."""
    from suite.audit.output import SEARCH_FIELDS

    if search is None:
        return True
    if not isinstance(search, dict) or search.get("edit") not in SEARCH_FIELDS:
        return False
    where = search.get(SEARCH_FIELDS[search["edit"]])
    if search["edit"] == "mirror":
        return isinstance(where, str)
    if search["edit"] == "rotation":
        return isinstance(where, int | float) and not isinstance(where, bool)
    return isinstance(where, list) and len(where) == 2 and all(type(v) is int for v in where)


def run(args: argparse.Namespace) -> int:
    from suite.audit.resume import audit_cwd
    from suite.report.dataset import dataset_report, is_dataset_output
    from suite.report.html import audit_report, bench_report
    from suite.report.robustness import is_robustness, read_records
    from suite.report.robustness import report as robustness_report
    from suite.report.runs import load_run

    t0 = time.perf_counter()
    urls = [p for p in args.inputs if isinstance(p, str)]
    if urls:
        return _report_url(args, urls[0], t0)
    audits = [p for p in args.inputs if p.is_file()]
    try:
        if len(args.inputs) == 1 and is_robustness(args.inputs[0]):
            source = args.inputs[0]
            document = robustness_report(read_records(source), str(source))
            default = (source if source.is_dir() else source.parent) / "report.html"
        elif len(args.inputs) == 1 and is_dataset_output(args.inputs[0]):
            document = dataset_report(args.inputs[0])
            default = args.inputs[0] / "report.html"
        elif audits:
            if len(args.inputs) > 1:
                print("sdsuite report: give either run directories or one audit JSONL file", file=sys.stderr)
                return 2
            # relative paths are relative to where the audit ran, which its sidecar says
            base = audit_cwd(audits[0]) or audits[0].parent
            document = audit_report(read_audit(audits[0]), str(audits[0]), base)
            default = audits[0].with_suffix(".html")
        else:
            runs = [load_run(p) for p in args.inputs]
            document = bench_report(runs)
            default = args.inputs[0] / "report.html"
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.filename is not None:
            raise  # the boundary names the file
        raise UsageError(str(exc)) from exc
    out = args.output or default
    run_files = ("results.jsonl", "results.csv", "environment.json")
    refuse_overwriting(out, [*audits, *(run / name for run in args.inputs for name in run_files)])
    return _write(out, document, t0)


def _write(out: Path, document: str, started: float) -> int:
    with replaced_on_success(out) as handle:
        handle.write(document)
    print(f"{out}  ({len(document) / 1e6:.1f} MB, built in {time.perf_counter() - started:.1f} s)")
    return 0


def _report_url(args: argparse.Namespace, url: str, t0: float) -> int:
    """The report of a dataset audit's output read where it lies (an object store), written here."""
    from suite.audit.sources import storage_options
    from suite.report.dataset import SUMMARY_FILE, dataset_report, is_dataset_output

    if len(args.inputs) > 1:
        raise UsageError("a URL is read as one dataset audit's output folder: give it alone")
    options = storage_options(args.storage_options)
    try:
        if not is_dataset_output(url, options):
            raise UsageError(f"{url}: no {SUMMARY_FILE} there, so not a dataset audit's finished output (-o of audit)")
        document = dataset_report(url, options)
    except (ValueError, ImportError) as exc:  # fsspec: an unknown protocol, or its package missing
        raise UsageError(f"{url}: {exc}") from exc
    return _write(args.output or Path("report.html"), document, t0)
