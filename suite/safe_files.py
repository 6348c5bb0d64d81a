"""Files a user names: a pipe or device is never opened for reading, an input is never written
over, and an output is written under a temporary name and renamed, so a killed run never leaves
a half-written file in its place."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from suite.errors import UsageError


def regular_input(path: str | Path) -> Path:
    """`path` when it is a regular file; otherwise a UsageError that says what it is."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{path}: is a folder; name a file")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path}: not a regular file (a pipe, device or socket is never read)")
    return Path(path)


def is_regular_file(path: str | Path) -> bool:
    """True for a regular file (following links); False for anything else, missing or unreadable."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def refuse_overwriting(output: str | Path, inputs: Iterable[str | Path]) -> None:
    """A UsageError when `output` is one of `inputs` (the same file by device and inode, under any name)."""
    try:
        out = os.stat(output)
    except (OSError, ValueError):
        return  # nothing there yet, so nothing to lose
    for path in inputs:
        try:
            info = os.stat(path)
        except (OSError, ValueError):
            continue
        if (info.st_dev, info.st_ino) == (out.st_dev, out.st_ino):
            alias = "" if str(path) == str(output) else f" (as {path})"
            raise UsageError(f"{output}: is one of the inputs{alias}; refusing to write over it: choose another output")


def check_output(path: str | Path) -> None:
    """A UsageError for an output that cannot be a file: a folder, or a file in a folder that does not exist."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; name a file to write")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{path}: folder {parent} does not exist; create it first")


def _new_file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def replaced_on_success(path: str | Path, mode: str = "w", newline: str | None = None) -> Iterator[IO]:
    """A handle on a temporary file beside `path`, renamed over it when the block ends (also on
    Ctrl-C, so the output holds what was done); removed when the block fails otherwise.

    A device or pipe (`/dev/stdout`, `/dev/full`) is written directly. A write that fails
    (a full disk, a read-only folder) is a UsageError naming `path`.
    """
    path = Path(path)
    check_output(path)
    encoding = None if "b" in mode else "utf-8"
    if path.exists() and not path.is_file():
        try:
            with open(path, mode, encoding=encoding, newline=newline) as handle:
                yield handle
        except OSError as exc:
            if exc.filename is not None:
                raise
            raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
        return
    file_mode = _new_file_mode(path)
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write in {path.parent}: {exc.strerror}") from None
    try:
        try:
            with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
                try:
                    yield handle
                except KeyboardInterrupt:
                    handle.close()
                    os.chmod(temporary, file_mode)
                    os.replace(temporary, path)
                    raise
            os.chmod(temporary, file_mode)
            os.replace(temporary, path)
        except OSError as exc:
            if exc.filename not in (None, temporary, str(path)):
                raise
            raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


@contextlib.contextmanager
def written_in_place(path: str | Path, append: bool = False) -> Iterator[IO]:
    """A text handle on `path` itself, for outputs streamed line by line (a killed run keeps every
    complete line); a write that fails (a full disk) is a UsageError naming `path`."""
    check_output(path)
    try:
        handle = open(path, "a" if append else "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        with handle:
            yield handle
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
