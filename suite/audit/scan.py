"""Paths in, one record per file out: decode, detect and read provenance, on every core.

A scan never stops on a bad file. Each failure becomes one record with `status: "error"`, an
`error_kind` from ERROR_KINDS and a readable `error`; images the reference refuses (fewer than
256x256 pixels) get `status: "too_small"`. Records come back in input order as soon as each is
ready, so a writer can flush them while the scan goes on.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import io
import multiprocessing
import os
import signal
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from suite.audit import searches
from suite.audit.decode import block_grid
from suite.audit.defaults import DEFAULT_ALPHA, MAX_FILE_BYTES, MAX_PIXELS, image_formats
from suite.audit.detect import Evidence, examine
from suite.audit.png import decode_rgb, read_chunks
from suite.audit.readers import decode_jpeg_rgb, read_pixels
from suite.watermark import MIN_PIXELS, SCHEMES, Scheme

# Folders are searched for these; files named on the command line are read whatever their name.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".avif", ".bmp", ".tif", ".tiff", ".gif"}
)
ERROR_KINDS = (
    "not_found",
    "empty",
    "too_large",
    "not_a_file",
    "unreadable",
    "symlink_loop",
    "not_an_image",
    "truncated",
    "decompression_bomb",
    "no_blocks",
    "corrupt",
)


class AuditError(Exception):
    """A file that cannot be audited, with the kind of failure (one of ERROR_KINDS)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class AuditOptions:
    schemes: tuple[Scheme, ...] = tuple(SCHEMES.values())
    alpha: float = DEFAULT_ALPHA
    max_pixels: int = MAX_PIXELS
    metadata: bool = True
    search: str = "auto"  # the searches for edited marks: auto | always | never (searches.wanted)


def expand(inputs: Iterable[str], all_files: bool = False) -> Iterator[str]:
    """Files, folders (recursive, sorted, symlinked folders not followed) and globs, in order,
    each file once however many times (and under whatever names) it is given.

    A path that exists is taken as a path even if it contains glob characters; a name that does
    not exist and matches nothing is still yielded, so that it gets its own `not_found` record.
    """
    seen: set[tuple[int, int] | str] = set()
    for path in _expand_all(inputs, all_files):
        try:
            info = os.stat(path)
            identity: tuple[int, int] | str = (info.st_dev, info.st_ino)
        except (OSError, ValueError):
            identity = path
        if identity not in seen:
            seen.add(identity)
            yield path


def _expand_all(inputs: Iterable[str], all_files: bool) -> Iterator[str]:
    for item in inputs:
        if os.path.isdir(item):
            yield from _walk(item, all_files)
        elif os.path.lexists(item) or not glob.has_magic(item):
            yield item
        else:
            matches = sorted(glob.iglob(item, recursive=True))
            if not matches:
                yield item
            for match in matches:
                if os.path.isdir(match):
                    yield from _walk(match, all_files)
                else:
                    yield match


def _walk(folder: str, all_files: bool) -> Iterator[str]:
    """The files under `folder`; a folder that cannot be listed is yielded too, so that it gets
    its own `unreadable` record instead of vanishing from the count."""
    unlisted: list[OSError] = []
    for root, dirs, files in os.walk(folder, onerror=unlisted.append):
        yield from (str(error.filename) for error in unlisted)
        unlisted.clear()
        dirs.sort()
        for name in sorted(files):
            if all_files or os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                yield os.path.join(root, name)
    yield from (str(error.filename) for error in unlisted)


def _read(path: str) -> bytes:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise AuditError("not_found", "no such file (or a dangling symlink)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AuditError("symlink_loop", "symlink loop") from None
        raise AuditError("unreadable", exc.strerror or str(exc)) from None
    if stat.S_ISDIR(info.st_mode):  # a folder reaches here only when it could not be listed
        try:
            os.scandir(path).close()
        except OSError as exc:
            raise AuditError("unreadable", f"a folder that cannot be listed: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise AuditError("not_a_file", "not a regular file (a device, pipe or socket is never opened)")
    if info.st_size == 0:
        raise AuditError("empty", "zero-byte file")
    if info.st_size > MAX_FILE_BYTES:
        raise AuditError("too_large", f"{info.st_size:,} bytes: over the {MAX_FILE_BYTES:,}-byte limit")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise AuditError("unreadable", exc.strerror or str(exc)) from None


def load_rgb(image: Image.Image) -> np.ndarray:
    """Pixels as the reference path sees them: RGB uint8, alpha dropped (not composited).

    16-bit samples keep their high byte, which restores an 8-bit image widened by x256 or x257
    exactly; palette, grayscale, CMYK and the rest go through PIL's RGB conversion.
    """
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.asarray(image).astype(np.int64)
        shift = 8 if image.mode != "I" or wide.max(initial=0) > 255 else 0
        gray = np.clip(wide >> shift, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """The image's header read; `max_pixels` decides what is a bomb, not PIL's own limit, so that
    --max-pixels can lift it (PIL's limit is a global: set aside under a lock, for threads)."""
    with _PIL_LIMIT:
        pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            image = Image.open(io.BytesIO(data), formats=image_formats())
        except UnidentifiedImageError:
            raise AuditError(
                "not_an_image", f"not an image in a format the audit reads ({', '.join(image_formats())})"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise _classify(exc) from None
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit
    if image.width * image.height > max_pixels:
        raise AuditError(
            "decompression_bomb",
            f"{image.width}x{image.height} is over the {max_pixels:,}-pixel limit (a decompression-bomb guard; "
            "--max-pixels lifts it)",
        )
    damaged = read_chunks(data).damaged if image.format == "PNG" else None
    if damaged:
        kind = damaged.decode("latin-1")
        raise AuditError("corrupt", f"the PNG's {kind} chunk fails its CRC check: the file is damaged")
    return image


_PIL_LIMIT = threading.Lock()


def _classify(exc: Exception) -> AuditError:
    text = str(exc)
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return AuditError("truncated", text or "truncated file")
    return AuditError("corrupt", f"{type(exc).__name__}: {text}")


def _mark(evidence: Evidence, reading: str) -> dict[str, Any]:
    scheme = evidence.scheme
    decoded = None
    if scheme.message is not None:
        raw = np.packbits(evidence.bits).tobytes()
        decoded = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in raw.decode("latin-1"))
    return {
        "scheme": scheme.name,
        "detected": evidence.detected,
        "p_value": evidence.p_value,
        "bit_accuracy": round(evidence.bit_accuracy, 4),
        "bits": (evidence.bits.astype(np.uint8) + ord("0")).tobytes().decode("ascii"),
        "decoded": decoded,
        "exact": bool(np.array_equal(evidence.bits, np.asarray(scheme.bits, dtype=bool))),
        "z": round(evidence.z, 3),
        "order": evidence.order,
        "path": evidence.path,
        "reading": reading,
        "search": evidence.realignment.as_record() if evidence.realignment else None,
    }


def new_record(**names: Any) -> dict[str, Any]:
    """An `error` record naming where the bytes came from (`path`, or a shard's `shard` and `key`)."""
    return {
        **names,
        "status": "error",
        "error": None,
        "error_kind": None,
        "width": None,
        "height": None,
        "watermarks": [],
        "metadata": {},
    }


def audit_file(path: str, options: AuditOptions) -> dict[str, Any]:
    """One file's record (docs/audit.md, Records); never raises for a bad file."""
    record = new_record(path=path)
    try:
        data = _read(path)
    except AuditError as exc:
        record["error"], record["error_kind"] = str(exc), exc.kind
        return record
    return audit_bytes(data, options, record)


def audit_bytes(data: bytes, options: AuditOptions, record: dict[str, Any]) -> dict[str, Any]:
    """Fill `record` (from new_record) with what one image's bytes show; never raises for bad bytes.

    What it decides depends on the bytes alone, not on where they came from."""
    try:
        if not data:
            raise AuditError("empty", "zero-byte file")
        image = _open(data, options.max_pixels)
        record["width"], record["height"] = image.width, image.height
        try:
            fast_png = image.format == "PNG" and read_chunks(data).fast
            if options.metadata:
                if image.format == "PNG" and not fast_png:
                    image.load()  # PIL reads the chunks after the pixels only when it decodes them
                record["metadata"] = _metadata(image, data)
            if image.width * image.height < MIN_PIXELS:
                record["status"] = "too_small"
                record["error"] = f"{image.width}x{image.height}: the reference needs at least 256x256 pixels"
                return record
            if 0 in block_grid(image.height, image.width):
                raise AuditError("no_blocks", "narrower than the 8-pixel blocks the watermark lives in")
            rgb = decode_rgb(data) if fast_png else decode_jpeg_rgb(image, data)
            if rgb is None:
                image.seek(0)
                rgb = load_rgb(image)
            pixels = read_pixels(rgb, image, data)
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise _classify(exc) from None
        finally:
            image.close()
        evidence = examine(rgb, list(options.schemes), options.alpha, blocks=pixels.blocks())
        if searches.wanted(options.search):
            evidence = searches.reexamine(
                rgb, pixels.u, evidence, options.alpha, options.search == "always", pixels.lossy_chroma
            )
        record["watermarks"] = [_mark(e, pixels.reading) for e in evidence]
        record["status"] = "ok"
    except AuditError as exc:
        record["error"], record["error_kind"] = str(exc), exc.kind
    except MemoryError:
        record["error"], record["error_kind"] = "out of memory decoding the image", "decompression_bomb"
    except Exception as exc:  # a decoder plugin choking on hostile bytes must not end the scan
        record["error"], record["error_kind"] = f"{type(exc).__name__}: {exc}"[:500], "corrupt"
    return record


def _metadata(image: Image.Image, data: bytes) -> dict[str, Any]:
    from suite.audit.metadata import extract

    try:
        return extract(image, data)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


_options: AuditOptions | None = None


def init_worker(options: AuditOptions) -> None:
    """A pool worker's set-up (the audit's, and the robustness benchmark's); Ctrl-C is the parent's
    to handle (it stops the pool): a worker that took it too would print a traceback of its own."""
    global _options
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _options = options
    settle_process()


# glibc's malloc (mallopt's parameter numbers): arrays up to 32 MB come from the heap, and freed
# memory stays there for the next image unless 64 MB of it sit unused.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_KEPT_MEMORY = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20), (_M_TOP_PAD, 16 << 20))


def settle_process() -> None:
    """Set up a process that audits image after image: one OpenCV thread (the engine already uses
    every core), and freed memory kept for the next image. By default glibc maps every array over
    128 KB afresh and faults its pages in again: a fifth of a 512x512 JPEG's audit."""
    import cv2

    cv2.setNumThreads(1)
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: its allocator is left as it is
        return
    for parameter, value in _KEPT_MEMORY:
        mallopt(parameter, value)


def worker_options() -> AuditOptions:
    """The options init_worker gave this worker."""
    if _options is None:
        raise RuntimeError("audit worker used before init_worker")
    return _options


def _audit_in_worker(path: str) -> dict[str, Any]:
    return audit_file(path, worker_options())


def scan(paths: Iterable[str], options: AuditOptions, workers: int | None = None) -> Iterator[dict[str, Any]]:
    """Records for `paths` in order, as they are produced; `workers=1` stays in this process."""
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        settle_process()
        for path in paths:
            yield audit_file(path, options)
        return
    with pool_context().Pool(workers, init_worker, (options,)) as pool:
        yield from pool.imap(_audit_in_worker, paths, chunksize=4)


def pool_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a clean server process, never from the caller.

    A plain fork copies OpenCV's thread pool in a state its child cannot use (the child then
    hangs in cvtColor), so the caller must not be forked once it has decoded anything itself.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["suite.audit.scan", "suite.audit.metadata"])
        return context
    return multiprocessing.get_context("spawn")
