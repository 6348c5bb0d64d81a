"""Mark clean images with each scheme, attack every copy, and audit each attacked file as bytes.

The audit is the public `scan.audit_bytes` with default `AuditOptions`, so the benchmark measures
whatever the audit does today. Each attacked image is audited as the bytes of its own format (a
JPEG attack as .jpg bytes), the clean copies under the same attacks give the false positives, and
only the audit is timed, not the attack.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from suite.audit.scan import AuditOptions, audit_bytes, init_worker, new_record, pool_context, worker_options
from suite.robustness.attacks import ATTACKS, Attack
from suite.robustness.corpus import CleanImage
from suite.watermark import embed


@dataclass(frozen=True)
class Task:
    """One attacked image to audit: the clean image (a lossless PNG on disk), the scheme to mark into
    it first (None for the clean copy) and the attack."""

    source: str
    image: str  # the clean image's name
    embedded: str | None
    attack: str


def save_clean(images: Sequence[CleanImage], folder: Path) -> Iterator[tuple[str, str]]:
    """Each clean image as a PNG in `folder`, for the workers to read: (path, name)."""
    for n, clean in enumerate(images):
        path = folder / f"{n:04d}.png"
        clean.image.save(path, compress_level=1)
        yield str(path), clean.name


@functools.lru_cache(maxsize=2)
def copy_of(path: str, scheme: str | None) -> Image.Image:
    """The clean image, or a copy marked with `scheme` by invisible-watermark (made once per worker)."""
    with Image.open(path) as image:
        clean = image.convert("RGB")
    return clean if scheme is None else embed(clean, scheme)


def attack_and_audit(task: Task, options: AuditOptions) -> dict[str, Any]:
    """The audit record of one attacked image, with where it came from and how long the audit took
    (wall and CPU seconds of this process)."""
    attack: Attack = ATTACKS[task.attack]
    data = attack.apply(copy_of(task.source, task.embedded))
    record = new_record(
        path=f"{task.image}/{task.embedded or 'clean'}/{attack.name}.{attack.suffix}",
        image=task.image,
        embedded=task.embedded,
        attack=attack.name,
        format=attack.encoding.format,
        bytes=len(data),
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    audit_bytes(data, options, record)
    record["cpu_seconds"] = round(time.process_time() - cpu_start, 6)  # what a busy machine does not inflate
    record["seconds"] = round(time.perf_counter() - start, 6)
    return record


def _in_worker(task: Task) -> dict[str, Any]:
    return attack_and_audit(task, worker_options())


def run(
    images: Sequence[CleanImage],
    schemes: Sequence[str],
    attacks: Sequence[Attack],
    workers: int,
    options: AuditOptions | None = None,
) -> Iterator[dict[str, Any]]:
    """One record per (image, clean or marked copy, attack), in that order, as each is audited."""
    options = options or AuditOptions()
    with tempfile.TemporaryDirectory(prefix="sdsuite-robustness-") as folder:
        tasks = [
            Task(path, image, scheme, attack.name)
            for path, image in save_clean(images, Path(folder))
            for scheme in (None, *schemes)
            for attack in attacks
        ]
        if workers == 1:
            for task in tasks:
                yield attack_and_audit(task, options)
            return
        with pool_context().Pool(workers, init_worker, (options,)) as pool:
            yield from pool.imap(_in_worker, tasks, chunksize=len(attacks))
