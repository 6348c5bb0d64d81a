"""`sdsuite report`: one self-contained HTML file from bench runs or an audit."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build one self-contained HTML file (opens from disk, no network) from bench run directories "
        "or from an audit's JSONL output."
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="RUN_DIR|AUDIT.jsonl")
    parser.add_argument(
        "-o", "--output", type=Path, help="HTML file to write (default: report.html in the first run directory)"
    )


def read_audit(path: Path) -> list[dict[str, Any]]:
    """An audit's records from its `--format jsonl` (or `json`) output.

    A last line cut short (a scan killed while writing) is dropped, as the audit flushes record by
    record; anything else that is not an audit record is an error, so a wrong file is not
    reported as an empty audit.
    """
    text = path.read_text(encoding="utf-8")
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
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict) or "path" not in record or "status" not in record:
            raise ValueError(f"{path}: record {n} is not an audit record (sdsuite audit --format jsonl)")
    return records


def run(args: argparse.Namespace) -> int:
    from suite.report.html import audit_report, bench_report
    from suite.report.runs import load_run

    t0 = time.perf_counter()
    audits = [p for p in args.inputs if p.is_file()]
    try:
        if audits:
            if len(args.inputs) > 1:
                print("sdsuite report: give either run directories or one audit JSONL file", file=sys.stderr)
                return 2
            document = audit_report(read_audit(audits[0]), str(audits[0]), audits[0].parent)
            default = audits[0].with_suffix(".html")
        else:
            runs = [load_run(p) for p in args.inputs]
            document = bench_report(runs)
            default = args.inputs[0] / "report.html"
    except (OSError, ValueError) as exc:
        print(f"sdsuite report: {exc}", file=sys.stderr)
        return 2
    out = args.output or default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    print(f"{out}  ({len(document) / 1e6:.1f} MB, built in {time.perf_counter() - t0:.1f} s)")
    return 0
