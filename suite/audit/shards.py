"""One dataset shard -> one Parquet file of records, committed create-only, so it exists once.

A shard's output is written whole or not at all: the rows are built in memory (a shard of 10,000
images makes a few MB), then committed by an operation that fails when the file already exists
(a local temp file hard-linked into place; S3 `If-None-Match: *`; GCS `ifGenerationMatch=0`).
A task retried after its worker died, or the same shard audited by two runs at once, therefore
leaves exactly one file, and the loser learns that its work was already done.

Each file's Parquet metadata carries the audit options' fingerprint (a rerun with other options
must not mix its rows with these), the shard's URL, and the shard's counts (so a resumed run
totals the finished shards from their footers without reading their rows).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tempfile
from dataclasses import dataclass
from typing import Any

from suite.audit.output import PER_SCHEME, flat_columns, flat_values
from suite.audit.scan import AuditError, AuditOptions, audit_bytes, new_record, settle_process
from suite.audit.sources import Source, read_samples
from suite.audit.summary import Summary

SHARD_COLUMNS = ("shard", "key")
OPTIONS_KEY = b"sdsuite.audit.options"
FINGERPRINT_KEY = b"sdsuite.audit.fingerprint"
SHARD_KEY = b"sdsuite.audit.shard"
SUMMARY_KEY = b"sdsuite.audit.summary"
CREATE_ONLY_PROTOCOLS = ("file", "local", "s3", "s3a", "gs", "gcs")


@dataclass(frozen=True)
class ShardJob:
    """What every shard task of one run shares (picklable, and free of secrets)."""

    source: Source
    options: AuditOptions
    output: str  # the output folder's URL

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that decides a shard's rows, as JSON-able values."""
        return {
            "schemes": {scheme.name: scheme.bit_string for scheme in self.options.schemes},
            "alpha": self.options.alpha,
            "max_pixels": self.options.max_pixels,
            "metadata": self.options.metadata,
            "search": self.options.search,
            "format": self.source.format,
            "image_column": self.source.image_column,
            "key_column": self.source.key_column,
        }

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def columns(self) -> list[str]:
        return [*SHARD_COLUMNS, *flat_columns([s.name for s in self.options.schemes])[1:]]

    def output_fs(self) -> Any:
        import fsspec

        return fsspec.core.url_to_fs(self.output, **self.source.storage_options)[0]


def output_name(shard_url: str) -> str:
    """The output file of a shard: its base name with `.parquet` (`00042.tar` -> `00042.parquet`)."""
    base = posixpath.basename(shard_url.split("?", 1)[0].rstrip("/"))
    return posixpath.splitext(base)[0] + ".parquet"


def output_path(output: str, shard_url: str) -> str:
    import fsspec

    root = fsspec.core.strip_protocol(output) if "://" in output else os.path.abspath(output)
    return posixpath.join(root.rstrip("/"), output_name(shard_url))


def audit_shard(shard_url: str, job: ShardJob) -> dict[str, Any]:
    """Audit every sample of one shard and commit its Parquet file; what was done, with the counts.

    Raises when the shard itself cannot be read to its end (missing, truncated, not a tar or
    Parquet file): the engine retries it and, past its retries, lists it in `_failed.jsonl`."""
    settle_process()
    fs, target = job.output_fs(), output_path(job.output, shard_url)
    if fs.exists(target):
        return {"shard": shard_url, "state": "exists", **read_footer(fs, target)}
    summary = Summary()
    rows = []
    for key, sample in read_samples(shard_url, job.source):
        record = new_record(shard=shard_url, key=key)
        if isinstance(sample, AuditError):
            record["error"], record["error_kind"] = str(sample), sample.kind
        else:
            audit_bytes(sample, job.options, record)
        summary.add(record)
        rows.append({"shard": shard_url, "key": key, **flat_values(record)})
    data = parquet_bytes(rows, job, shard_url, summary.as_dict())
    state = "written" if commit(fs, target, data) else "exists"
    return {"shard": shard_url, "state": state, "fingerprint": job.fingerprint, "summary": summary.as_dict()}


def parquet_bytes(rows: list[dict[str, Any]], job: ShardJob, shard_url: str, summary: dict[str, Any]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(column, _column_type(column)) for column in job.columns])
    schema = schema.with_metadata(
        {
            OPTIONS_KEY: json.dumps(job.settings, sort_keys=True),
            FINGERPRINT_KEY: job.fingerprint,
            SHARD_KEY: shard_url,
            SUMMARY_KEY: json.dumps(summary, sort_keys=True),
        }
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _column_type(column: str) -> Any:
    import pyarrow as pa

    if column in ("width", "height"):
        return pa.int32()
    field = next((f for f in PER_SCHEME if column.endswith(f"_{f}")), None)
    if field == "detected":
        return pa.bool_()
    if field in ("p_value", "bit_accuracy"):
        return pa.float64()
    return pa.string()


def read_footer(fs: Any, path: str) -> dict[str, Any]:
    """A committed output's fingerprint, options, shard URL and counts, from its footer alone."""
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        metadata = pq.read_schema(handle).metadata or {}
    return {
        "fingerprint": metadata.get(FINGERPRINT_KEY, b"").decode(),
        "settings": json.loads(metadata.get(OPTIONS_KEY, b"{}")),
        "source_shard": metadata.get(SHARD_KEY, b"").decode(),
        "summary": json.loads(metadata.get(SUMMARY_KEY, b"{}")),
    }


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def is_local(fs: Any) -> bool:
    return bool({"file", "local"} & set(_protocols(fs)))


def commit(fs: Any, path: str, data: bytes) -> bool:
    """Write `data` at `path` only if nothing is there yet; False when something already was."""
    protocols = _protocols(fs)
    if is_local(fs):
        return _commit_local(path, data)
    if not set(protocols) & set(CREATE_ONLY_PROTOCOLS):
        raise ValueError(
            f"{protocols[0]}:// has no create-only write: write the output to a local path, s3:// or gs://"
        )
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    return True


def _commit_local(path: str, data: bytes) -> bool:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{os.path.basename(path)}.", delete=False) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(handle.name, 0o666 & ~umask)  # a temp file is private; the output is not
    try:
        os.link(handle.name, path)  # fails if `path` exists: the create-only step
    except FileExistsError:
        return False
    finally:
        os.unlink(handle.name)
    return True
