"""The report of a dataset audit's output folder (one Parquet per shard), a few MB at any size.

The folder is read where the audit wrote it: a local path or any fsspec URL (s3://, gs://, ...).

The rows are streamed batch by batch: the totals are exact, while the p-value histogram draws on a
uniform sample of each scheme's p-values and the file table on a uniform sample of detections and
failures, whose thumbnails are read back from their shards (one streaming pass per shard named).
"""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from suite.report import charts
from suite.report.html import _file_row, _subtitle, audit_file_headers, image_pool, image_thumbnail
from suite.report.markup import badge, e, fmt, page, svg_figure, table

SUMMARY_FILE, FAILED_FILE = "_summary.json", "_failed.jsonl"
P_VALUE_SAMPLE = 20_000  # p-values kept per scheme for the histogram
LISTED_SAMPLE = 200  # detections, and failures, listed with a thumbnail
FAILED_SHARDS_LISTED = 1_000
THUMBNAIL_PX = 64
BATCH_ROWS = 65_536


def output_fs(location: Path | str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The filesystem of a dataset audit's output folder, and the folder's path on it."""
    import fsspec

    return fsspec.core.url_to_fs(str(location), **(storage_options or {}))


def is_dataset_output(location: Path | str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, root = output_fs(location, storage_options)
    return fs.isfile(f"{root}/{SUMMARY_FILE}")


class UniformSample:
    """A uniform sample of at most `size` items from a stream of batches of unknown length: every
    item draws a random priority and the `size` smallest are kept (no per-item Python work)."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng, self.seen = size, rng, 0
        self.keys = np.empty(0)
        self.items: list[Any] = []

    def add(self, items: Sequence[Any]) -> None:
        self.seen += len(items)
        keys = np.concatenate([self.keys, self.rng.random(len(items))])
        pool = [*self.items, *items]
        keep = np.argsort(keys)[: self.size] if len(pool) > self.size else np.arange(len(pool))
        self.keys, self.items = keys[keep], [pool[i] for i in keep]


class DatasetTally:
    """Exact counts over every row, and the samples the page shows."""

    def __init__(self, schemes: list[str]):
        rng = np.random.default_rng(0)
        self.schemes = schemes
        self.rows = 0
        self.status: Counter[str] = Counter()
        self.verdicts: Counter[str] = Counter()
        self.error_kinds: Counter[str] = Counter()
        self.detected: Counter[str] = Counter()
        self.tested: Counter[str] = Counter()
        self.min_p: dict[str, float] = {}
        self.p_values = {scheme: UniformSample(P_VALUE_SAMPLE, rng) for scheme in schemes}
        self.detections = UniformSample(LISTED_SAMPLE, rng)
        self.failures = UniformSample(LISTED_SAMPLE, rng)

    def add(self, rows: pd.DataFrame) -> None:
        """Count a batch of rows (a DataFrame of the Parquet columns)."""
        self.rows += len(rows)
        self.status.update(rows["status"].value_counts().to_dict())
        verdict = pd.Series("", index=rows.index)
        for scheme in self.schemes:
            p = rows.get(f"{scheme}_p_value", pd.Series(dtype=float)).dropna()
            if p.empty:
                continue
            found = rows[f"{scheme}_detected"].eq(True)
            self.tested[scheme] += len(p)
            self.detected[scheme] += int(found.sum())
            self.min_p[scheme] = min(float(p.min()), self.min_p.get(scheme, 1.0))
            self.p_values[scheme].add(p.to_numpy())
            verdict = verdict.mask(found, verdict.where(verdict == "", verdict + "+") + scheme)
        ok, error = rows["status"].eq("ok"), rows["status"].eq("error")
        self.verdicts.update(verdict[ok].replace("", "none").value_counts().to_dict())
        self.verdicts.update(rows["status"][~ok].value_counts().to_dict())  # too_small, error
        self.error_kinds.update(rows["error_kind"][error].fillna("error").value_counts().to_dict())
        self.failures.add(_records(rows[error]))
        self.detections.add(_records(rows[ok & verdict.ne("")]))


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts, with missing values as None (as a record has them)."""
    return [{k: (None if _missing(v) else v) for k, v in row.items()} for row in rows.to_dict("records")]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def tally(fs: Any, root: str, schemes: list[str]) -> DatasetTally:
    import pyarrow.parquet as pq

    counts = DatasetTally(schemes)
    for path in sorted(fs.glob(f"{root}/*.parquet")):
        with fs.open(path, "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=BATCH_ROWS):
                counts.add(batch.to_pandas(integer_object_nulls=True))  # sizes stay ints beside nulls
    return counts


def as_record(row: dict[str, Any], schemes: list[str]) -> dict[str, Any]:
    """A Parquet row in the shape of an audit record, for the file table."""
    marks = [
        {
            "scheme": scheme,
            "detected": row.get(f"{scheme}_detected"),
            "p_value": row.get(f"{scheme}_p_value"),
            "bit_accuracy": row.get(f"{scheme}_bit_accuracy"),
        }
        for scheme in schemes
        if row.get(f"{scheme}_p_value") is not None
    ]
    metadata = {
        "ai_claims": (row.get("ai_claims") or "").split(),
        "exif": {"Software": row.get("software")} if row.get("software") else {},
        "c2pa": {"claim_generator": row["c2pa_claim_generator"], "validation_state": row.get("c2pa_validation")}
        if row.get("c2pa_claim_generator")
        else {},
    }
    return {**row, "path": f"{row['shard']}#{row['key']}", "watermarks": marks, "metadata": metadata}


def thumbnails(rows: list[dict[str, Any]], source: dict[str, Any]) -> dict[tuple[str, str], str | None]:
    """(shard, key) -> thumbnail, each shard read once, in threads, stopping at its last wanted key."""
    from suite.audit.sources import Source, read_samples

    wanted: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        wanted[row["shard"]].add(row["key"])
    reader = Source(source["format"], source["storage_options"], source["image_column"], source["key_column"])

    def read(shard: str) -> dict[tuple[str, str], str | None]:
        found: dict[tuple[str, str], str | None] = {}
        try:
            for key, sample in read_samples(shard, reader):
                if key in wanted[shard]:
                    found[(shard, key)] = (
                        image_thumbnail(io.BytesIO(sample), THUMBNAIL_PX) if isinstance(sample, bytes) else None
                    )
                    if len(found) == len(wanted[shard]):
                        break
        except Exception:  # a shard gone or unreadable since the audit: its rows lose their thumbnails
            pass
        return found

    with image_pool() as pool:
        return {k: v for part in pool.map(read, wanted) for k, v in part.items()}


def dataset_report(location: Path | str, storage_options: dict[str, Any] | None = None) -> str:
    fs, root = output_fs(location, storage_options)
    summary = json.loads(fs.cat_file(f"{root}/{SUMMARY_FILE}").decode("utf-8"))
    schemes = list(summary["settings"]["schemes"])
    alpha = summary["settings"]["alpha"]
    counts = tally(fs, root, schemes)
    failed_path = f"{root}/{FAILED_FILE}"
    failed = fs.cat_file(failed_path).decode("utf-8").splitlines() if fs.isfile(failed_path) else []
    listed = counts.detections.items + counts.failures.items
    uris = thumbnails(listed, summary["source"])
    scheme_rows = "".join(
        f"<tr><td>{e(scheme)}</td><td class='num'>{counts.detected[scheme]:,}</td>"
        f"<td class='num'>{counts.tested[scheme] - counts.detected[scheme]:,}</td>"
        f"<td class='num'>{counts.detected[scheme] / max(counts.tested[scheme], 1):.1%}</td>"
        f"<td class='num'>{e(fmt(counts.min_p.get(scheme), 2))}</td></tr>"
        for scheme in schemes
    )
    status_line = " ".join(f"<span>{badge(k)} {n:,}</span>" for k, n in counts.status.most_common())
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in counts.error_kinds.most_common())
    failed_rows = [
        f"<tr><td class='mono path'>{e(f.get('shard'))}</td><td class='num'>{e(f.get('attempts'))}</td>"
        f"<td class='reason'>{e(f.get('error'))}</td></tr>"
        for f in map(json.loads, failed[:FAILED_SHARDS_LISTED])
    ]
    file_headers = audit_file_headers("shard#key")
    shards = summary["shards_in_job"]
    body = [
        "<h2>Summary</h2>",
        f'<p class="counts">{counts.rows:,} image(s) in {shards:,} shard(s), {len(failed):,} shard(s) failed: '
        f"{status_line}</p>",
        '<div class="row">',
        svg_figure(
            charts.verdicts(dict(counts.verdicts), schemes),
            "Images by verdict: the scheme(s) detected, none, too small to carry a mark, or unreadable",
            "No images in this audit.",
        ),
        '<div><div class="tablewrap"><table><thead><tr><th>scheme</th><th class="num">detected</th>'
        '<th class="num">not detected</th><th class="num">share</th><th class="num">smallest p</th></tr></thead>'
        f"<tbody>{scheme_rows}</tbody></table></div>"
        f'<p class="note">Detected: p-value at or below the audit\'s alpha ({alpha:g}). Errors: '
        f"{e(kinds) or 'none'}.</p></div></div>",
        svg_figure(
            charts.pvalues({s: r.items for s, r in counts.p_values.items()}, alpha),
            f"The p-values of up to {P_VALUE_SAMPLE:,} tests per scheme, drawn uniformly from every image tested.",
            "No scheme was tested in this audit.",
        ),
        "<h2>Failed shards</h2>",
        table("failed-shards", (("shard", False), ("attempts", True), ("why", False)), failed_rows)
        if failed
        else '<p class="note">Every shard was audited.</p>',
        "<h2>Detections and failures (a sample)</h2>",
        f'<p class="note">Up to {LISTED_SAMPLE:,} detections and {LISTED_SAMPLE:,} failures, drawn uniformly '
        f"from {counts.detections.seen:,} and {counts.failures.seen:,}; the Parquet files hold every row.</p>",
        table(
            "audit-files",
            file_headers,
            (_file_row(as_record(r, schemes), uris.get((r["shard"], r["key"]))) for r in listed),
        ),
    ]
    return page("sdsuite dataset audit report", _subtitle(str(location)), "".join(body))
