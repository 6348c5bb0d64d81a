"""What an audit reads: files, folders and globs, or dataset shards (WebDataset tars, Parquet files).

Shards are named by fsspec URLs (local paths, s3://, gs://, http(s)://) and read as streams: a tar
shard is walked member by member with the stdlib's tarfile in stream mode and a Parquet file batch
by batch, so a worker holds one sample (or one batch) at a time, never a whole shard. Each sample
comes out as `(key, bytes)`, or `(key, AuditError)` where the sample itself is broken; a shard that
cannot be read to its end raises, so the shard (not a sample) fails.

Credentials come from the standard chains (AWS_* variables, ~/.aws, GOOGLE_APPLICATION_CREDENTIALS,
instance roles) on every machine that reads; storage options travel in task arguments, so they
must never hold a secret, and `storage_options` refuses any that look like one.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from suite.audit.defaults import MAX_FILE_BYTES
from suite.audit.scan import IMAGE_SUFFIXES, AuditError
from suite.errors import UsageError

DATASET_FORMATS = {".tar": "webdataset", ".parquet": "parquet"}
PARQUET_BATCH_ROWS = 64  # rows decoded at once; a row group is read in batches of this many
_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_SECRET_WORDS = ("secret", "token", "password", "credential", "private")
_SECRET_NAMES = frozenset({"key", "access_key", "aws_access_key_id", "account_key", "sas_token"})
# gcsfs's `token` may name a way to find credentials instead of holding one: those values travel safely
_CREDENTIAL_METHODS = frozenset({"anon", "google_default", "cloud", "cache"})


@dataclass(frozen=True)
class Source:
    """How to read a dataset's shards: the same for every shard of a job, and free of secrets."""

    format: str  # webdataset | parquet
    storage_options: dict[str, Any] = field(default_factory=dict)
    image_column: str | None = None  # Parquet only: None = the first binary or {bytes, path} column
    key_column: str | None = None  # Parquet only: None = a `key` column if any, else the row number

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "storage_options": self.storage_options,
            "image_column": self.image_column,
            "key_column": self.key_column,
        }


def storage_options(text: str | None) -> dict[str, Any]:
    """`--storage-options` parsed, refusing anything that looks like a credential."""
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--storage-options is not JSON ({exc.msg})") from None
    if not isinstance(options, dict):
        raise UsageError("--storage-options must be a JSON object")
    secret = _secret_names(options)
    if secret:
        raise UsageError(
            f"--storage-options holds {', '.join(secret)}: credentials go in the standard chain (AWS_* "
            "variables, ~/.aws, GOOGLE_APPLICATION_CREDENTIALS), never in options that travel with each task"
        )
    return options


def _secret_names(options: dict[str, Any]) -> list[str]:
    found = []
    for name, value in options.items():
        lowered = str(name).lower()
        if lowered == "token" and value in _CREDENTIAL_METHODS:
            continue
        if lowered in _SECRET_NAMES or any(word in lowered for word in _SECRET_WORDS):
            found.append(str(name))
        if isinstance(value, dict):
            found += _secret_names(value)
    return found


def expand_braces(pattern: str) -> list[str]:
    """`shards/{00000..00099}.tar` -> 100 names, zero-padded as written (several ranges multiply)."""
    match = _BRACE_RANGE.search(pattern)
    if not match:
        return [pattern]
    first, last = match.group(1), match.group(2)
    width = len(first) if first.startswith("0") or len(first) == len(last) else 0
    step = 1 if int(last) >= int(first) else -1
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [
        name
        for number in range(int(first), int(last) + step, step)
        for name in expand_braces(f"{head}{number:0{width}d}{tail}")
    ]


def dataset_format(inputs: list[str], requested: str) -> str:
    """`files`, `webdataset` or `parquet`: as requested, or (auto) from the inputs' extensions.

    Auto picks a dataset format only when every input ends in that format's extension (after
    brace expansion), so everything that worked as files before still does."""
    if requested != "auto":
        return requested
    kinds = {DATASET_FORMATS.get(posixpath.splitext(_strip_query(item))[1].lower()) for item in inputs}
    if len(kinds) == 1 and None not in kinds:
        return kinds.pop()
    if kinds - {None} and None not in kinds:
        raise UsageError("the inputs mix WebDataset tars and Parquet files: audit them in two runs")
    return "files"


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def shard_urls(inputs: Iterable[str], source: Source) -> list[str]:
    """Every shard URL the inputs name, in order: brace ranges, globs and folders expanded.

    A name that is neither a folder nor a glob is kept as given (even when it does not exist), so
    a missing shard is reported as a failed shard rather than silently dropped."""
    import fsspec

    suffix = next(ext for ext, name in DATASET_FORMATS.items() if name == source.format)
    urls: list[str] = []
    for item in inputs:
        _refuse_credentials_in(item)
        for name in expand_braces(item):
            fs, path = fsspec.core.url_to_fs(name, **source.storage_options)
            protocol = _protocol(name)
            if any(c in path for c in "*?["):
                urls += [_url(protocol, p) for p in sorted(fs.glob(path))]
            elif not _strip_query(name).lower().endswith(suffix) and not protocol.startswith("http") and fs.isdir(path):
                urls += [_url(protocol, p) for p in sorted(fs.find(path)) if p.lower().endswith(suffix)]
            else:  # a shard named outright, taken without a request (41,455 of them would take minutes)
                urls.append(name if protocol else path)  # local paths absolute, as globs and folders give them
    return urls


def _refuse_credentials_in(url: str) -> None:
    """A user:password, or a signed query (S3 presigned, GCS signed, Azure SAS), would be written
    into every record and task of the job."""
    from urllib.parse import parse_qs, urlsplit

    if "://" not in url:
        return
    parts = urlsplit(url)
    query = {name.lower() for name in parse_qs(parts.query)}
    if parts.password or query & {
        "x-amz-signature",
        "x-amz-credential",
        "x-goog-signature",
        "sig",
        "signature",
        "token",
    }:
        raise UsageError(
            f"{parts.scheme}://{parts.hostname}/...: the URL carries credentials, which would be written into "
            "every record and task; give them through the standard chain (or --storage-options for non-secrets)"
        )


def _protocol(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else ""


def _url(protocol: str, path: str) -> str:
    return f"{protocol}://{path}" if protocol else path


def read_samples(url: str, source: Source) -> Iterator[tuple[str, bytes | AuditError]]:
    """The samples of one shard, streamed: `(key, image bytes)` or `(key, AuditError)`."""
    import fsspec

    with fsspec.open(url, "rb", **source.storage_options) as stream:
        if source.format == "webdataset":
            yield from webdataset_samples(stream)
        elif source.format == "parquet":
            yield from parquet_samples(stream, source.image_column, source.key_column)
        else:
            raise ValueError(f"not a dataset format: {source.format!r}")


def webdataset_samples(stream: Any) -> Iterator[tuple[str, bytes | AuditError]]:
    """WebDataset's convention: consecutive members sharing a key (the name up to the first dot of
    its base name) are one sample; its image is the first member with an image extension."""
    with tarfile.open(fileobj=stream, mode="r|", tarinfo=_EndMarkerTarInfo) as tar:
        key: str | None = None
        image: bytes | AuditError | None = None
        for member in tar:
            if not member.isfile():
                continue
            folder, base = posixpath.split(member.name)
            stem, dot, extension = base.partition(".")
            member_key = posixpath.join(folder, stem)
            if member_key != key:
                if key is not None:
                    yield key, _sample_image(key, image)
                key, image = member_key, None
            if image is None and dot and f".{extension.rsplit('.', 1)[-1].lower()}" in IMAGE_SUFFIXES:
                image = _member_bytes(tar, member)
        if key is not None:
            yield key, _sample_image(key, image)
        if not getattr(tar, _END_MARKER_SEEN, False):
            raise tarfile.ReadError("the shard ends before its end-of-archive marker (truncated)")


_END_MARKER_SEEN = "_sdsuite_end_marker_seen"


class _EndMarkerTarInfo(tarfile.TarInfo):
    """Notes on its tar when the member list ended at the end-of-archive marker (a zero block).

    tarfile stops silently at a missing, garbled or cut header too, which would drop the rest of a
    truncated shard without a word; the marker tells a whole shard from one cut at a member's end."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            setattr(tar, _END_MARKER_SEEN, True)
            raise


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | AuditError:
    if member.size > MAX_FILE_BYTES:
        return AuditError("too_large", f"{member.size:,} bytes: over the {MAX_FILE_BYTES:,}-byte limit")
    handle = tar.extractfile(member)
    if handle is None:
        return AuditError("not_a_file", f"{member.name} is not a regular member")
    return handle.read()


def _sample_image(key: str, image: bytes | AuditError | None) -> bytes | AuditError:
    if image is None:
        return AuditError("not_an_image", f"sample {key} has no image member ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return image


def parquet_samples(
    stream: Any, image_column: str | None = None, key_column: str | None = None
) -> Iterator[tuple[str, bytes | AuditError]]:
    """Rows of a Parquet file with an image column: raw bytes, or Hugging Face's `{bytes, path}`."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(stream)
    schema = table.schema_arrow
    image_column = image_column or _image_column(schema)
    if image_column not in schema.names:
        raise ValueError(f"no column {image_column!r} (columns: {', '.join(schema.names)})")
    if key_column is None and "key" in schema.names:
        key_column = "key"
    if key_column is not None and key_column not in schema.names:
        raise ValueError(f"no column {key_column!r} (columns: {', '.join(schema.names)})")
    columns = [image_column] + ([key_column] if key_column and key_column != image_column else [])
    row = 0
    for batch in table.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        images = batch.column(image_column).to_pylist()
        keys = batch.column(key_column).to_pylist() if key_column else range(row, row + len(images))
        for key, value in zip(keys, images, strict=True):
            yield str(key), _cell_image(value)
        row += len(images)


def _image_column(schema: Any) -> str:
    import pyarrow as pa

    for column in schema:
        kind = column.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            return column.name
        if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
            return column.name
    raise ValueError(f"no image column (binary, or a struct with `bytes`) among {', '.join(schema.names)}")


def _cell_image(value: Any) -> bytes | AuditError:
    if isinstance(value, dict):
        data = value.get("bytes")
        if data is None:
            where = f" (it names {value['path']})" if value.get("path") else ""
            return AuditError("empty", f"the image cell holds no bytes{where}")
        return data
    if value is None:
        return AuditError("empty", "the image cell is null")
    return value
