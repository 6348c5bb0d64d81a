"""`sdsuite robustness [CORPUS_DIR]`: how often the audit finds each mark after the edits images suffer.

Writes, in OUT_DIR: robustness.jsonl (every audit record, as it comes), robustness.csv (one row per
attack and scheme), robustness.md (the per-attack table for docs), robustness.json (when, where,
at which commit) and report.html; the per-attack table goes to stdout.

Exit codes: 0 done; 2 usage error (unknown scheme or attack, no images, OUT_DIR not writable);
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_USAGE = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from suite.robustness.attacks import ATTACKS
    from suite.watermark import SCHEMES

    parser.description = (
        "Mark clean images with each SD watermark (invisible-watermark itself), apply an attack matrix "
        "(JPEG, WebP, resizes, crops, colour, blur, noise, rotations, flips, combinations), audit every "
        "attacked file with the audit's defaults, and report per attack the marks found (with 95 % "
        "intervals), the clean images flagged, the reference decoder's exact matches and the time per image."
    )
    parser.add_argument(
        "corpus",
        nargs="?",
        type=Path,
        metavar="CORPUS_DIR",
        help="folder of clean photos, each fitted to its nearest SD size (default: scikit-image's colour "
        "photographs at 512x512 and again, mirrored, at other SD sizes: 14 images)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, metavar="OUT_DIR", help="folder for the results (default: reports/robustness-TIME)"
    )
    parser.add_argument("--images", type=_positive_int, metavar="N", help="use the corpus's first N images")
    parser.add_argument(
        "--schemes", default=",".join(SCHEMES), help=f"comma-separated schemes to embed (default: {','.join(SCHEMES)})"
    )
    parser.add_argument(
        "--attacks", metavar="NAMES", help=f"comma-separated attacks (default: all): {', '.join(ATTACKS)}"
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _schemes(text: str) -> list[str]:
    from suite.watermark import SCHEMES

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCHEMES]
    if unknown or not names:
        raise ValueError(f"unknown scheme(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(SCHEMES)}")
    return names


def run(args: argparse.Namespace) -> int:
    from itertools import islice

    from suite.audit.command import Progress
    from suite.audit.output import JsonLinesWriter
    from suite.measure.fingerprint import cpu_model, git_sha
    from suite.report.robustness import report
    from suite.robustness import attacks as attack_matrix
    from suite.robustness import benchmark, corpus, output, tally

    try:
        schemes = _schemes(args.schemes)
        attacks = attack_matrix.pick(args.attacks)
    except ValueError as exc:
        print(f"sdsuite robustness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.corpus is not None and not args.corpus.is_dir():
        print(f"sdsuite robustness: {args.corpus} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    skipped: list[str] = []
    source = corpus.default_corpus() if args.corpus is None else corpus.folder_corpus(args.corpus, skipped)
    images = list(islice(source, args.images))
    for line in skipped:
        print(f"sdsuite robustness: skipped {line}", file=sys.stderr)
    if not images:
        print(f"sdsuite robustness: no images in {args.corpus}", file=sys.stderr)
        return EXIT_USAGE
    out_dir = args.output or Path("reports") / time.strftime("robustness-%Y%m%d-%H%M%S")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stream = (out_dir / "robustness.jsonl").open("w", encoding="utf-8")
    except OSError as exc:
        print(f"sdsuite robustness: cannot write {out_dir}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    total = len(images) * (1 + len(schemes)) * len(attacks)
    workers = min(args.workers, max(1, total // len(attacks)))
    print(
        f"{len(images)} image(s) x {1 + len(schemes)} (clean, {', '.join(schemes)}) x {len(attacks)} attack(s) "
        f"= {total:,} audits on {workers} worker(s)",
        file=sys.stderr,
    )
    progress = Progress(total, sys.stderr) if sys.stderr.isatty() else None
    started, start = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.monotonic()
    records = []
    writer = JsonLinesWriter(stream)
    try:
        for record in benchmark.run(images, schemes, attacks, workers):
            records.append(record)
            writer.write(record)
            if progress:
                progress.step()
    finally:
        if progress:
            progress.close()
        stream.close()
    wall = time.monotonic() - start
    rows = tally.tabulate(records, [a.name for a in attacks], schemes)
    with (out_dir / "robustness.csv").open("w", encoding="utf-8", newline="") as handle:
        output.write_csv(rows, handle)
    (out_dir / "robustness.md").write_text(output.markdown_table(rows, schemes) + "\n", encoding="utf-8")
    run_facts = {
        "started": started,
        "wall_s": round(wall, 1),
        "git_sha": git_sha(),
        "cpu": cpu_model(),
        "cpu_threads": os.cpu_count(),
        "workers": workers,
        "corpus": str(args.corpus) if args.corpus else "scikit-image photographs (default corpus)",
        "images": [image.name for image in images],
        "schemes": schemes,
        "attacks": [a.name for a in attacks],
    }
    (out_dir / "robustness.json").write_text(json.dumps(run_facts, indent=1) + "\n", encoding="utf-8")
    source_text = f"{len(images)} image(s), commit {run_facts['git_sha'] or 'unknown'}, {wall:.0f} s"
    (out_dir / "report.html").write_text(report(records, source_text), encoding="utf-8")
    print(output.terminal_table(rows, schemes))
    print(
        f"{total:,} audits in {wall:.1f} s; results in {out_dir}/ (robustness.csv, robustness.jsonl, report.html)",
        file=sys.stderr,
    )
    return EXIT_OK
