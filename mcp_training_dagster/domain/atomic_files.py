"""Files that appear complete or not at all, and the sweep for what killed writers leave behind.

Used by the package builder, the registry and the IO managers (for local paths): every write goes to a
hidden sibling that its writer ``flock``s, is fsynced and renamed, so a crash never leaves a file that a
later step trusts, and the sweep never removes a file another process is still writing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (the directory entry, not only the file, reaches the disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, writer: Callable[[BinaryIO], None] | bytes) -> None:
    """``path`` appears complete or not at all: written to a hidden sibling, fsynced, renamed.
    (The IO managers use this too for local paths.) The sibling is ``flock``ed while it is being
    written, so :func:`remove_stale_temp` never removes a file another run is still writing."""
    path = Path(path)
    tmp = path.with_name(f"{TEMP_FILE_PREFIX}{path.name}{TEMP_FILE_MARK}{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "xb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            if isinstance(writer, (bytes, bytearray)):
                fh.write(writer)
            else:
                writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# Leftovers of killed runs: ``.<name>.tmp-<hex>`` (write_atomic), ``.tmp-model_*`` (build_package:
# folder and ZIP), ``.tmp-import-*`` (registry import), ``.trash-*`` (registry deletion).
TEMP_FILE_PREFIX, TEMP_FILE_MARK = ".", ".tmp-"
STALE_TEMP_SECONDS = 3600.0  # far longer than any write; a run killed an hour ago is not coming back


def is_temp_name(name: str) -> bool:
    """A name only this project's interrupted writes leave behind."""
    return name.startswith((".tmp-", ".trash-")) or (name.startswith(TEMP_FILE_PREFIX) and TEMP_FILE_MARK in name[1:])


def _locked_by_writer(path: Path) -> bool:
    """True when another process holds the ``flock`` its writer takes (it is being written)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if path.is_dir() else 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases our probe lock
    return False


def remove_stale_temp(
    folder: Path, max_age_seconds: float = STALE_TEMP_SECONDS, *, now: float | None = None
) -> list[Path]:
    """Remove the temporary files and folders killed runs left directly in ``folder``: only names
    :func:`is_temp_name` accepts, only when older than ``max_age_seconds`` AND not locked by a writer
    (never a file another run is writing). Returns what was removed."""
    folder = Path(folder)
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        p = Path(entry.path)
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < max_age_seconds or _locked_by_writer(p):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:  # raced with its owner or another sweeper: leave it for the next sweep
            continue
    return removed
