"""The landing area on an object store (``s3://bucket/prefix`` or any fsspec URL): scan and read.

The same contract as the local landing folder (:mod:`landing`), with object-store facts:

* **Listing** is one ``ls`` of the landing prefix per tick (``refresh=True``: the filesystem object
  lives as long as the code server, and fsspec would otherwise answer from a stale listing cache).
  Only objects directly under the prefix count, so a partition key is the object's name relative
  to the prefix, exactly as a file name in the local folder.
* **New or changed** is decided by the **ETag** the listing already carries: the sensor reads no
  object bytes at all, so a tick over 1,500 objects costs one paginated listing. A single-part
  upload's ETag is the MD5 of its content; a multipart upload's differs, so re-uploading identical
  content in parts re-ingests it once (harmless: ingest is idempotent, the data version is the
  SHA-256 computed by the run). Filesystems without ETags fall back to the content hash, within the
  per-tick byte budget.
* **Stable**: a PUT publishes an object atomically, but an uploader may still replace it; like
  a local file, an object is handed over once its (size, ETag) is unchanged between two ticks.
* Temporary names (``*.part``, ``*.tmp``, ...) and names that cannot be partition keys are ignored,
  and work per tick is bounded (``max_files``), so a burst is spread over several ticks.

Cursor: ``{"v": 1, "files": {name: {"size", "etag" (or modification time), "fp" (fingerprint of what
is there now, once known), "done" (fingerprint handed to ingestion)}}}``.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from mcp_training_dagster.domain.export_split import split_decoder
from mcp_training_dagster.serving.exports import (
    DEFAULT_MAX_EXPORT_BYTES,
    ExportFileError,
    RawExport,
    parse_export_bytes,
    read_export,
)
from mcp_training_dagster.domain.landing import ScanResult, is_candidate, load_state, partition_key_problem


def is_remote(location: str) -> bool:
    """True for an object-store URL (``s3://...``); local paths and ``file://`` URLs are folders."""
    return "://" in location and not location.startswith(("file://", "local://"))


def filesystem(location: str) -> tuple[Any, str]:
    """``(fsspec filesystem, root path without protocol)``; credentials and endpoint come from the
    standard environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...), as for the IO managers."""
    fs, root = fsspec.core.url_to_fs(location.rstrip("/"))
    return fs, root.rstrip("/")


@dataclass(frozen=True)
class ReadyObject:
    name: str
    etag: str  # the object's ETag, or "sha256:<hex>" where the store has none
    size: int


@dataclass
class ObjectScanResult(ScanResult):
    ready: list[ReadyObject] = field(default_factory=list)  # type: ignore[assignment]


def _etag(info: dict[str, Any]) -> str | None:
    for key in ("ETag", "etag", "md5Hash"):
        value = info.get(key)
        if value:
            return str(value).strip('"')
    return None


def _sha256(fs: Any, path: str) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def scan_object_landing(
    location: str,
    cursor: str | None,
    *,
    patterns: tuple[str, ...] = ("*.json", "*.zip"),
    ignore: tuple[str, ...] = ("*.part", "*.tmp", ".*"),
    max_files: int = 100,
    max_bytes: int = 2_000_000_000,
    fs: Any = None,
) -> ObjectScanResult:
    """One sensor tick over the landing prefix (see the module docstring)."""
    if fs is None:
        fs, root = filesystem(location)
    else:
        root = location.split("://", 1)[-1].rstrip("/")
    state = load_state(cursor)
    files: dict[str, dict] = state["files"]
    result = ObjectScanResult(state=state)
    try:
        listing = fs.ls(root, detail=True, refresh=True)
    except FileNotFoundError:
        listing = []
    present: set[str] = set()
    candidates: list[dict[str, Any]] = []
    for info in listing:
        if info.get("type") != "file":
            continue  # "sub-folders" (common prefixes) are not exports
        name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
        if not is_candidate(name, patterns, ignore):
            continue
        problem = partition_key_problem(name)
        if problem:
            result.skipped[name] = problem
            continue
        present.add(name)
        candidates.append({**info, "_name": name})

    budget_files, budget_bytes = max_files, max_bytes
    for info in sorted(candidates, key=lambda i: (str(i.get("LastModified", "")), i["_name"])):  # oldest first
        name, size = info["_name"], int(info.get("size") or 0)
        etag = _etag(info)
        rec = files.get(name)
        # Without an ETag the modification time stands in for "did it change since the last tick".
        seen = {
            "size": size,
            "etag": etag or str(info.get("LastModified") or info.get("mtime") or info.get("created") or ""),
        }
        if rec is None or rec.get("size") != size or rec.get("etag") != seen["etag"]:
            files[name] = {**seen, "fp": etag, "done": rec.get("done") if rec else None}
            result.waiting.append(name)
            continue
        if rec.get("fp") is not None and rec.get("fp") == rec.get("done"):
            continue  # stable and already handed over
        if budget_files <= 0:
            result.deferred += 1
            continue
        fingerprint = rec.get("fp")
        if fingerprint is None:  # no ETag on this store: hash the content, within the byte budget
            if size > budget_bytes and budget_bytes != max_bytes:
                result.deferred += 1
                continue
            fingerprint = _sha256(fs, f"{root}/{name}")
            budget_bytes -= size
            rec["fp"] = fingerprint
            if fingerprint == rec.get("done"):
                continue  # rewritten with identical content
        budget_files -= 1
        rec["done"] = fingerprint
        result.ready.append(ReadyObject(name=name, etag=fingerprint, size=size))

    for gone in set(files) - present:
        del files[gone]
    return result


def read_landed_export(
    location: str, name: str, *, max_bytes: int = DEFAULT_MAX_EXPORT_BYTES, processes: int = 1
) -> RawExport:
    """Read export ``name`` from the landing folder or prefix; objects are read through fsspec
    straight into memory (no local copy). At most ``max_bytes`` of JSON, decoded on ``processes`` cores."""
    decode = split_decoder(processes)
    if not is_remote(location):
        return read_export(Path(location.removeprefix("file://")) / name, max_bytes=max_bytes, decode=decode)
    fs, root = filesystem(location)
    try:
        payload = fs.cat_file(f"{root}/{name}")
    except FileNotFoundError:
        raise ExportFileError(name, f"object not found at {location.rstrip('/')}/{name}") from None
    return parse_export_bytes(name, payload, max_bytes=max_bytes, decode=decode)


def fetch_side_files(location: str, names: list[str], suffix: str) -> Path | None:
    """Copy ``<name><suffix>`` objects (e.g. ``.labels.csv``) that exist into a fresh temporary
    folder and return it, so readers written for local files can use them; None when none exist."""
    fs, root = filesystem(location)
    found = [n for n in names if fs.exists(f"{root}/{n}{suffix}")]
    if not found:
        return None
    dest = Path(tempfile.mkdtemp(prefix="mcp-side-files-"))
    for n in found:
        (dest / f"{n}{suffix}").write_bytes(fs.cat_file(f"{root}/{n}{suffix}"))
    return dest
