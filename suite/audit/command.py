"""`sdsuite audit PATH...`: which SD watermark each image carries, how sure, and what it claims.

Exit codes:
  0  every file was audited (too-small images included: they get a verdict of their own)
  1  the scan finished, but at least one file could not be audited (an `error` record)
  2  usage error: bad arguments, or the output file cannot be written
  130  interrupted
Whether a watermark was found is in the records and the summary, not in the exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from suite.audit import resume
from suite.errors import UsageError
from suite.safe_files import check_output, refuse_overwriting, replaced_on_success, written_in_place
from suite.watermark import SCHEMES, Scheme, scheme_from_bits, scheme_from_bytes

EXIT_OK, EXIT_FILE_ERRORS, EXIT_USAGE = 0, 1, 2
PROGRESS_MIN_FILES = 20  # below this a progress bar only flickers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from suite.audit.defaults import DEFAULT_ALPHA, MAX_PIXELS, SEARCH_POLICIES
    from suite.audit.output import FORMAT_OF_SUFFIX, FORMATS

    parser.description = (
        "Decode and detect the Stable Diffusion invisible watermarks (sd-v1, sd-v2, sdxl) and read "
        "provenance metadata (A1111/ComfyUI/InvokeAI/NovelAI, EXIF, XMP, C2PA) in images."
    )
    parser.epilog = "exit codes: 0 all files audited; 1 some files could not be audited; 2 usage error; 130 interrupted"
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (recursive) or globs")
    suffixes = ", ".join(f"{suffix} {kind}" for suffix, kind in FORMAT_OF_SUFFIX.items())
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help=f"output format (default: table; with -o FILE, from FILE's suffix: {suffixes}, else table)",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write records to FILE instead of stdout")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="carry on an audit killed while writing -o FILE (jsonl or csv): the same command again skips the "
        "files FILE already records; refused if the settings differ (kept in FILE.options.json)",
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument(
        "--schemes",
        default=",".join(SCHEMES),
        help=f"comma-separated built-in schemes to test (default: {','.join(SCHEMES)}; 'none' for none)",
    )
    parser.add_argument(
        "--message-bytes",
        action="append",
        default=[],
        metavar="TEXT",
        help="also test for this text message, embedded as imwatermark 'bytes' (repeatable)",
    )
    parser.add_argument(
        "--message-bits",
        action="append",
        default=[],
        metavar="BITS",
        help="also test for this bit string, e.g. 0110... (repeatable)",
    )
    parser.add_argument(
        "--alpha",
        type=_probability,
        default=DEFAULT_ALPHA,
        help=f"p-value at or below which a scheme counts as detected (default: {DEFAULT_ALPHA:g})",
    )
    parser.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=MAX_PIXELS,
        help=f"refuse larger images as decompression bombs (default: {MAX_PIXELS:,})",
    )
    parser.add_argument(
        "--search",
        choices=SEARCH_POLICIES,
        default="auto",
        help="where the aligned test finds no mark, also look for one a crop moved (every 8-pixel grid "
        "offset), a resize resampled (resized back to each SD size) or a mirror flipped: auto (default, on "
        "every image), always (also rotations by 1-2 degrees, crops of mirrored images, crops saved as JPEG, "
        "and resizes cut to a square as img2dataset's center_crop does: two to three times the time) or "
        "never; 40 ms or more per 512x512 image searched on a 2-core VM",
    )
    parser.add_argument("--no-metadata", action="store_true", help="skip provenance metadata (faster)")
    parser.add_argument(
        "--all-files", action="store_true", help="in folders, read every file, not only image extensions"
    )
    _add_dataset_arguments(parser)


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    from suite.audit.defaults import ENGINES, INPUT_FORMATS, SHARD_RETRIES

    group = parser.add_argument_group(
        "datasets",
        "WebDataset .tar shards or Parquet files, as paths or fsspec URLs (s3://, gs://, http(s)://; brace "
        "ranges like shards/{00000..09999}.tar): one Parquet file of records per shard in the -o folder or "
        "URL, plus _summary.json and _failed.jsonl; a rerun skips the shards already done",
    )
    group.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="auto",
        help="auto (default): webdataset when every input ends in .tar, parquet when every input ends in "
        ".parquet, files otherwise",
    )
    group.add_argument(
        "--storage-options",
        metavar="JSON",
        help='fsspec options for every URL, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\'; never '
        "credentials (they travel with each task): those come from AWS_* variables, ~/.aws, "
        "GOOGLE_APPLICATION_CREDENTIALS",
    )
    group.add_argument(
        "--image-column", metavar="NAME", help="Parquet: the image column (default: the first binary or {bytes, path})"
    )
    group.add_argument(
        "--key-column", metavar="NAME", help="Parquet: the sample key column (default: `key` if any, else the row)"
    )
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local (default): a process pool of --workers; dask: a Dask cluster, at --scheduler or a "
        "LocalCluster of --workers processes",
    )
    group.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler, e.g. tcp://10.0.0.5:8786")
    group.add_argument(
        "--shard-retries",
        type=_non_negative_int,
        default=SHARD_RETRIES,
        metavar="N",
        help=f"further attempts at a shard that failed or killed its worker (default: {SHARD_RETRIES})",
    )
    group.add_argument(
        "--overwrite", action="store_true", help="delete the outputs of another audit in -o and audit every shard"
    )


def _probability(text: str) -> float:
    """A significance level: strictly between 0 and 1 (at 1 every file would count as marked)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (a p-value), got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def schemes_from_args(args: argparse.Namespace) -> list[Scheme]:
    """Built-in schemes picked by --schemes, then the user's messages (named by their content)."""
    names = [] if args.schemes.strip() == "none" else [n.strip() for n in args.schemes.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCHEMES]
    if unknown:
        raise ValueError(f"unknown scheme(s) {', '.join(unknown)}; known: {', '.join(SCHEMES)}")
    schemes = [SCHEMES[n] for n in names]
    for text in args.message_bytes:
        if not text:
            raise ValueError("--message-bytes needs a non-empty text")
        schemes.append(scheme_from_bytes(f"bytes:{text}", text.encode()))
    for bits in args.message_bits:
        schemes.append(scheme_from_bits(f"bits:{bits}", bits))
    if not schemes:
        raise ValueError("nothing to test: --schemes none and no --message-bytes/--message-bits")
    return schemes


class Progress:
    """A one-line bar on a terminal's stderr, redrawn at most ten times a second: `unit`s done (files,
    shards) and, where each step says how many, the images in them."""

    unit = "files"

    def __init__(self, total: int, stream: TextIO):
        self.total, self.stream = total, stream
        self.done = self.images = 0
        self.start, self.drawn = time.monotonic(), 0.0

    def step(self, images: int | None = None) -> None:
        self.done += 1
        self.images += images or 0
        now = time.monotonic()
        if now - self.drawn < 0.1 and self.done < self.total:
            return
        self.drawn = now
        elapsed = max(now - self.start, 1e-9)
        eta = (self.total - self.done) * elapsed / self.done
        filled = int(30 * self.done / max(self.total, 1))
        counted = (
            f"{self.images:,} images {self.images / elapsed:7.1f}/s"
            if images is not None
            else f"{self.done / elapsed:6.1f}/s"
        )
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {self.unit} "
            f"{counted}  eta {int(eta) // 60}:{int(eta) % 60:02d} "
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + " " * 90 + "\r")
        self.stream.flush()


def summary_text(summary: dict[str, Any], seconds: float) -> str:
    found = ", ".join(f"{name} {count}" for name, count in summary["detected"].items()) or "none tested"
    errors = ", ".join(f"{kind} {count}" for kind, count in sorted(summary["error_kinds"].items()))
    return (
        f"audited {summary['scanned']} files in {seconds:.1f} s: {summary['ok']} ok, "
        f"{summary['too_small']} too small, {summary['errors']} errors{f' ({errors})' if errors else ''}\n"
        f"watermark detected: {found}"
    )


def _settings(args: argparse.Namespace, schemes: list[Scheme]) -> dict[str, Any]:
    """What decides an audit's records, which a resumed audit must share."""
    return {
        "paths": list(args.paths),
        "all_files": args.all_files,
        "format": args.format,
        "schemes": [s.name for s in schemes],  # a message's scheme is named by its content
        "alpha": args.alpha,
        "max_pixels": args.max_pixels,
        "metadata": not args.no_metadata,
        "search": args.search,
    }


def _records_output(output: str | None, kind: str, appending: bool) -> contextlib.AbstractContextManager[TextIO]:
    """Where the records go: stdout; a JSONL or CSV file written line by line (a killed scan keeps
    every finished record; --resume appends); a JSON array or table written whole under a temporary name."""
    if output is None:
        return contextlib.nullcontext(sys.stdout)
    if kind in resume.STREAMED_FORMATS:
        return written_in_place(output, append=appending)
    return replaced_on_success(output, newline="")


def _scan(args: argparse.Namespace, paths: list[str], options: Any) -> Iterator[dict[str, Any]]:
    """Records of `paths` in input order: on this machine's process pool, or (--engine dask) in
    batches on a Dask cluster whose workers see the same files."""
    if args.engine == "dask":
        from suite.audit.engines import Engine, scan_files

        return scan_files(paths, options, Engine("dask", args.workers, args.scheduler, args.shard_retries))
    from suite.audit.scan import scan

    return scan(paths, options, min(args.workers, max(1, len(paths))))


def run(args: argparse.Namespace) -> int:
    from suite.audit.output import FORMAT_OF_SUFFIX, make_writer
    from suite.audit.scan import AuditOptions, expand
    from suite.audit.sources import dataset_format
    from suite.audit.summary import Summary

    try:
        schemes = schemes_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    options = AuditOptions(tuple(schemes), args.alpha, args.max_pixels, not args.no_metadata, args.search)
    if args.format is None:
        args.format = FORMAT_OF_SUFFIX.get(Path(args.output).suffix.lower(), "table") if args.output else "table"
    input_format = dataset_format(args.paths, args.input_format)
    if input_format != "files":
        from suite.audit.datasets import run_dataset

        return run_dataset(args, options, input_format)
    paths = list(expand(args.paths, args.all_files))
    if args.output:
        check_output(args.output)
        refuse_overwriting(args.output, paths)
    settings = _settings(args, schemes)
    earlier: dict[str, str] = {}
    if args.resume:
        if not args.output:
            raise UsageError("--resume carries on an audit written with -o FILE: give the same -o")
        earlier = resume.recorded(args.output, args.format, settings)
        paths = [p for p in paths if p not in earlier]
    elif args.output and args.format in resume.STREAMED_FORMATS:
        resume.write_settings(args.output, settings)
    progress = Progress(len(paths), sys.stderr) if sys.stderr.isatty() and len(paths) >= PROGRESS_MIN_FILES else None
    summary, start = Summary(), time.monotonic()
    with _records_output(args.output, args.format, args.resume) as out:
        writer = make_writer(args.format, out, [s.name for s in schemes], appending=args.resume)
        try:
            for record in _scan(args, paths, options):
                summary.add(record)
                writer.write(record)
                if progress:
                    progress.step()
        finally:
            writer.close()
            if progress:
                progress.close()
    print(summary_text(summary.as_dict(), time.monotonic() - start), file=sys.stderr)
    if earlier:
        print(f"resumed: {len(earlier)} files were already recorded in {args.output}", file=sys.stderr)
    earlier_errors = sum(status == "error" for status in earlier.values())
    return EXIT_FILE_ERRORS if summary.errors or earlier_errors else EXIT_OK
