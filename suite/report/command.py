"""`sdsuite report`: one self-contained HTML file from bench runs or an audit."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build one self-contained HTML file (opens from disk, no network) from bench run directories "
        "or from an audit's JSONL output."
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="RUN_DIR|AUDIT.jsonl")
    parser.add_argument(
        "-o", "--output", type=Path, help="HTML file to write (default: report.html in the first run directory)"
    )


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not a JSON record ({exc.msg})") from None
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
            document = audit_report(_read_jsonl(audits[0]), str(audits[0]))
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
