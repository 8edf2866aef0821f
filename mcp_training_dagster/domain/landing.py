"""The landing folder: which export files are new or changed, and stable enough to ingest.

Pure logic behind ``export_file_sensor`` so it can be reasoned about and tested without Dagster.
State is a small JSON document (the sensor cursor):

``{"v": 1, "files": {name: {"size": int, "mtime_ns": int, "sha256": str | null, "done": str | null}}}``

* ``size``/``mtime_ns``: what the previous tick saw. A file is *stable* when both are unchanged
  since then, so a file still being copied in is left alone until it stops growing.
* ``done``: content hash of the version already handed to ingestion. A file whose stat changed is
  hashed again; an unchanged hash (e.g. ``touch``) triggers nothing, a changed one re-ingests.

Work per tick is bounded (files and bytes hashed), so a burst of a thousand files is spread over
several ticks instead of timing one out.

Containment: an entry that resolves outside the landing folder (a symbolic link to ``/etc/passwd``
or to an export elsewhere) is refused before anything reads it, here and in the ingest asset
(:func:`resolve_landing_file`). An entry the scan cannot handle (a name that is not UTF-8, one that
vanishes or cannot be stat'ed mid-scan) is skipped and reported; it never fails the tick.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path

from mcp_training_dagster.serving.exports import sha256_file

STATE_VERSION = 1
# Characters Dagster refuses in partition keys, plus path separators.
_BAD_KEY_CHARS = set("\a\b\f\n\r\t\v\0/\\")


class LandingError(ValueError):
    """A partition key / landing entry that must not be read; the message names it and why."""


def display_name(name: str) -> str:
    """A file name safe to print, log and store: bytes that are not UTF-8 shown as ``\\xff``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class ReadyFile:
    name: str
    sha256: str
    size: int


@dataclass
class ScanResult:
    ready: list[ReadyFile] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # seen changing this tick; re-checked next tick
    deferred: int = 0  # stable and pending, but over this tick's budget
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it can never be ingested
    state: dict = field(default_factory=dict)

    def cursor(self) -> str:
        return json.dumps(self.state, separators=(",", ":"), sort_keys=True)


def load_state(cursor: str | None) -> dict:
    if not cursor:
        return {"v": STATE_VERSION, "files": {}}
    try:
        state = json.loads(cursor)
    except ValueError:
        return {"v": STATE_VERSION, "files": {}}
    if not isinstance(state, dict) or state.get("v") != STATE_VERSION or not isinstance(state.get("files"), dict):
        return {"v": STATE_VERSION, "files": {}}
    state["files"] = {k: v for k, v in state["files"].items() if isinstance(v, dict)}
    return state


def partition_key_problem(name: str) -> str | None:
    """Why ``name`` cannot be a partition key (and a file name below the landing folder), or None.

    Applied where keys are added (the sensor) and where they are used (the ingest asset, the IO
    managers): a key added by hand through the UI or the API is checked as strictly as a scanned one."""
    if not isinstance(name, str) or not name:
        return "empty partition key"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8, so it cannot be a partition key; rename the file"
    if name in (".", "..") or "..." in name or any(c in _BAD_KEY_CHARS for c in name):
        return "file name cannot be a partition key (path separators, '.', '..', '...' or control characters)"
    return None


def resolve_landing_file(folder: Path, key: str) -> Path:
    """The file a partition key names, resolved, or :class:`LandingError` before anything is read:
    a key that is not a plain file name, an entry that resolves outside ``folder`` (a symbolic link
    to ``/etc/passwd``, ``../`` traversal) or that is not a regular file."""
    problem = partition_key_problem(key)
    shown = display_name(key) if isinstance(key, str) else repr(key)
    if problem:
        raise LandingError(f"{shown}: {problem}")
    root = Path(folder).resolve()
    try:
        target = (root / key).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        raise LandingError(f"{shown}: cannot be resolved ({exc})") from None
    if not target.is_relative_to(root) or target == root:
        raise LandingError(f"{shown}: resolves outside the landing folder {root} (to {target}); refused, not read")
    if target.exists() and not target.is_file():
        raise LandingError(f"{shown}: not a regular file")
    return target


def is_candidate(name: str, patterns: tuple[str, ...], ignore: tuple[str, ...]) -> bool:
    if any(fnmatch.fnmatch(name, pat) for pat in ignore):
        return False
    return any(fnmatch.fnmatch(name, pat) for pat in patterns)


def scan_landing(
    folder: Path,
    cursor: str | None,
    *,
    patterns: tuple[str, ...] = ("*.json", "*.zip"),
    ignore: tuple[str, ...] = ("*.part", "*.tmp", ".*"),
    max_files: int = 100,
    max_bytes: int = 2_000_000_000,
    settled_after_seconds: float | None = None,
    now: float | None = None,
) -> ScanResult:
    """One tick: stat everything (cheap), hash only stable changed files, within the budget.

    A new or changed file is stable when its size and mtime are the same as on the previous tick, or,
    with ``settled_after_seconds``, at once when it was last modified at least that long ago: a writer
    that is still copying keeps bumping the mtime, and a file renamed in (atomic, final) keeps the mtime
    of when it was written. That judges a complete export in one tick instead of two."""
    state = load_state(cursor)
    now = time.time() if now is None else now
    files: dict[str, dict] = state["files"]
    result = ScanResult(state=state)
    if not folder.is_dir():
        return result
    present: set[str] = set()
    candidates: list[tuple[str, os.stat_result]] = []
    root = folder.resolve()
    with os.scandir(folder) as it:
        for entry in it:
            try:
                if not is_candidate(entry.name, patterns, ignore):
                    continue
                problem = partition_key_problem(entry.name)
                if problem is None and entry.is_symlink():
                    target = Path(entry.path).resolve()
                    if not target.is_relative_to(root):
                        problem = "symbolic link to a file outside the landing folder; refused, not read"
                if problem:
                    result.skipped[display_name(entry.name)] = problem
                    continue
                if not entry.is_file(follow_symlinks=True):
                    continue
                candidates.append((entry.name, entry.stat()))
            except (OSError, RuntimeError) as exc:  # vanished, link loop, unreadable: this entry only, never the tick
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                result.skipped[display_name(entry.name)] = f"cannot be examined ({why})"
                continue
            present.add(entry.name)

    budget_files, budget_bytes = max_files, max_bytes
    for name, st in sorted(candidates, key=lambda c: (c[1].st_mtime_ns, c[0])):  # oldest first
        rec = files.get(name)
        stat_now = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if rec is None or rec.get("size") != st.st_size or rec.get("mtime_ns") != st.st_mtime_ns:
            # New or still changing: remember what we saw and look again next tick.
            prev_done = rec.get("done") if rec else None
            files[name] = rec = {**stat_now, "sha256": None, "done": prev_done}
            settled = settled_after_seconds is not None and now - st.st_mtime_ns / 1e9 >= settled_after_seconds
            if not settled:
                result.waiting.append(name)
                continue
        if rec.get("sha256") is not None and rec.get("sha256") == rec.get("done"):
            continue  # stable and already ingested
        if budget_files <= 0 or (st.st_size > budget_bytes and budget_bytes != max_bytes):
            result.deferred += 1
            continue
        try:
            sha = sha256_file(resolve_landing_file(folder, name))
        except (OSError, LandingError) as exc:  # swapped for a link or removed since the stat
            result.skipped[display_name(name)] = str(exc)
            continue
        budget_files -= 1
        budget_bytes -= st.st_size
        rec["sha256"] = sha
        if sha == rec.get("done"):
            continue  # touched but identical content: nothing to do
        rec["done"] = sha
        result.ready.append(ReadyFile(name=name, sha256=sha, size=st.st_size))

    # Forget files that disappeared; their partitions and stored data stay (nothing is lost).
    for gone in set(files) - present:
        del files[gone]
    return result


def batches(sizes: Sequence[int], per_batch: int, max_bytes: int) -> list[range]:
    """Consecutive positions of files grouped into batches of at most ``per_batch`` files and ``max_bytes`` together,
    order kept (a batch is a contiguous range of partition keys). A file larger than ``max_bytes`` is a batch alone.

    Why batch: Dagster starts each run in a fresh process (seconds of imports and code loading), while a typical
    export takes a fraction of a second to ingest; a fleet landing at once is hundreds of files."""
    out: list[range] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= per_batch or total + size > max_bytes):
            out.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        out.append(range(start, len(sizes)))
    return out
