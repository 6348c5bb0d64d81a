"""`sdsuite audit SHARDS... -o DIR`: a whole dataset, shard by shard, resumable, on any engine.

The output folder (a local path or an s3:// / gs:// URL) gets one Parquet file per input shard
(shards.py), then `_summary.json` (totals over every shard of the job, finished now or before) and
`_failed.jsonl` (one line per shard that could not be audited, with why). Rerunning the same
command skips every shard whose output exists, so a crash, Ctrl-C or `kill -9` costs at most the
shards that were in flight; a rerun with other options refuses to mix its rows with the old ones
unless `--overwrite` (which deletes the old outputs first).
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import sys
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from suite.audit.command import Progress
from suite.audit.engines import Engine, ShardTask, run_shards
from suite.audit.scan import AuditOptions
from suite.audit.shards import ShardJob, audit_shard, is_local, output_name, output_path, read_footer
from suite.audit.sources import Source, shard_urls, storage_options
from suite.errors import EXIT_FAILURES, EXIT_OK, UsageError

SUMMARY_FILE, FAILED_FILE = "_summary.json", "_failed.jsonl"
FOOTER_READERS = 16  # footers of finished shards read at once when a run resumes


class DatasetTotals:
    """Counts over a job's shards and their images, for `_summary.json` and the last line."""

    def __init__(self) -> None:
        self.shards: Counter[str] = Counter()
        self.images: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        self.error_kinds: Counter[str] = Counter()
        self.detected: Counter[str] = Counter()

    def add(self, state: str, summary: dict[str, Any] | None) -> int:
        """Count one shard's outcome; the number of images it held."""
        self.shards[state] += 1
        if not summary:
            return 0
        self.images["scanned"] += summary["scanned"]
        self.status.update(ok=summary["ok"], too_small=summary["too_small"], error=summary["errors"])
        self.error_kinds.update(summary["error_kinds"])
        for scheme, count in summary["detected"].items():
            self.detected[scheme] += count
        return summary["scanned"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "shards": dict(self.shards),
            "images": self.images["scanned"],
            "status": dict(self.status),
            "error_kinds": dict(self.error_kinds),
            "detected": dict(self.detected),
        }


class ShardProgress(Progress):
    """The audit's bar, counting shards and the images in them."""

    unit = "shards"


def run_dataset(
    args: argparse.Namespace, options: AuditOptions, input_format: str, task: ShardTask = audit_shard
) -> int:
    """Audit the shards `args.paths` names into `args.output`; exit 1 if a shard or sample failed."""
    if not args.output:
        raise UsageError("a dataset audit writes one Parquet file per shard: give the folder or URL with -o")
    source = Source(input_format, storage_options(args.storage_options), args.image_column, args.key_column)
    job = ShardJob(source, options, args.output)
    urls = shard_urls(args.paths, source)
    if not urls:
        raise UsageError(f"no {input_format} shards in {' '.join(args.paths)}")
    _refuse_name_clashes(urls)
    fs = job.output_fs()
    root = posixpath.dirname(output_path(args.output, urls[0]))
    if fs.exists(root) and not fs.isdir(root):
        raise UsageError(f"-o {args.output} is a file: a dataset audit writes a folder (one Parquet per shard)")
    if is_local(fs):
        os.makedirs(root, exist_ok=True)  # an unwritable -o fails here, not once per shard
    done = _finished_outputs(fs, root, urls)
    if args.overwrite and done:
        fs.rm([output_path(args.output, url) for url in done])
        done = {}
    totals = DatasetTotals()
    for footer in _check_resumable(fs, done, job).values():
        totals.add("skipped", footer["summary"])
    todo = [url for url in urls if url not in done]
    engine = Engine(args.engine, args.workers, args.scheduler, args.shard_retries)
    progress = ShardProgress(len(todo), sys.stderr) if sys.stderr.isatty() and todo else None
    start, failures = time.monotonic(), []
    try:
        for outcome in run_shards(todo, job, engine, task):
            if outcome["state"] == "failed":
                failures.append(outcome)
            images = totals.add(outcome["state"], outcome.get("summary"))
            if progress:
                progress.step(images)
    finally:
        if progress:
            progress.close()
    seconds = time.monotonic() - start
    summary = {
        **totals.as_dict(),
        "shards_in_job": len(urls),
        "fingerprint": job.fingerprint,
        "settings": job.settings,
        "source": source.as_dict(),
        "inputs": list(args.paths),
        "engine": {"name": engine.name, "workers": engine.workers, "scheduler": engine.scheduler},
        "seconds": round(seconds, 3),
    }
    _write_job_files(fs, root, summary, failures)
    print(_summary_text(totals, len(todo), seconds), file=sys.stderr)
    return EXIT_FAILURES if failures or totals.status["error"] else EXIT_OK


def _write_job_files(fs: Any, root: str, summary: dict[str, Any], failures: list[dict[str, Any]]) -> None:
    """`_failed.jsonl` and `_summary.json`, each replaced whole at the end of a run (of two runs at once,
    the last to end writes them; both count every shard)."""
    fs.pipe_file(posixpath.join(root, FAILED_FILE), "".join(json.dumps(f) + "\n" for f in failures).encode())
    fs.pipe_file(posixpath.join(root, SUMMARY_FILE), (json.dumps(summary, indent=2) + "\n").encode())


def _refuse_name_clashes(urls: list[str]) -> None:
    names = Counter(output_name(url) for url in urls)
    clashes = [name for name, count in names.items() if count > 1]
    if clashes:
        raise UsageError(
            f"{len(clashes)} output name(s) would be shared by several shards (e.g. {clashes[0]}): "
            "shards with the same base name need separate runs with separate -o folders"
        )


def _finished_outputs(fs: Any, root: str, urls: Iterable[str]) -> dict[str, str]:
    """The job's shards whose output already exists: shard URL -> output path."""
    present = set()
    if fs.exists(root):
        present = {posixpath.basename(path) for path in fs.ls(root, detail=False)}
    return {url: posixpath.join(root, output_name(url)) for url in urls if output_name(url) in present}


def _check_resumable(fs: Any, done: dict[str, str], job: ShardJob) -> dict[str, dict[str, Any]]:
    """The footers of the finished shards; refuses (UsageError) when one was audited differently."""
    with ThreadPoolExecutor(FOOTER_READERS) as pool:
        footers = dict(zip(done, pool.map(lambda path: read_footer(fs, path), done.values()), strict=True))
    for url, footer in footers.items():
        if footer["source_shard"] != url:
            raise UsageError(f"{done[url]} holds the audit of {footer['source_shard']}, not of {url}: use another -o")
        if footer["fingerprint"] != job.fingerprint:
            changed = sorted(k for k in job.settings if footer["settings"].get(k) != job.settings[k])
            raise UsageError(
                f"{done[url]} was audited with other options ({', '.join(changed) or 'another version'}): "
                "rerun with the same options to resume, or add --overwrite to audit every shard again"
            )
    return footers


def _summary_text(totals: DatasetTotals, todo: int, seconds: float) -> str:
    shards = totals.shards
    status = totals.status
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(totals.error_kinds.items()))
    found = ", ".join(f"{scheme} {count}" for scheme, count in totals.detected.items()) or "none tested"
    return (
        f"audited {todo - shards['failed']} of {todo} shard(s) in {seconds:.1f} s"
        f" ({shards['skipped']} already done, {shards['failed']} failed: see {FAILED_FILE}); "
        f"{totals.images['scanned']:,} images: {status['ok']:,} ok, {status['too_small']:,} too small, "
        f"{status['error']:,} errors{f' ({kinds})' if kinds else ''}\n"
        f"watermark detected: {found}"
    )
