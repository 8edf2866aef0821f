"""Reading export files exactly as the upstream service writes them.

An export is one JSON object ``{"export_metadata": {...}, "data": [record, ...]}``, or a ZIP
holding that object as ``data.json``. This module turns a file into a column table of the records
*as read* (nothing normalised yet) plus the facts about the file. It raises :class:`ExportFileError`
for anything that is not an export at all, naming the file and what is wrong; record-level problems
are validation's business, not this module's.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

# The 13 keys the service writes, in its order. Unknown extra keys are kept in ``extra``.
RECORD_KEYS: tuple[str, ...] = (
    "id",
    "device_id",
    "device_ip",
    "timestamp",
    "log_level",
    "process_name",
    "message",
    "raw_message",
    "structured_data",
    "pushed_to_ai",
    "pushed_at",
    "push_attempts",
    "last_push_error",
)
# Raw table: record position, the 13 keys as read (int/bool when a column is homogeneous, else text), unknown keys as JSON text, and the JSON text of
# any entry that was not an object at all (so validation can quarantine it verbatim).
RAW_COLUMNS: tuple[str, ...] = ("record_index", *RECORD_KEYS, "extra", "non_object")

ZIP_MEMBER = "data.json"
MAX_ZIP_MEMBER_BYTES = 4 * 1024**3  # refuse zip bombs: a data.json larger than this is not an export


class ExportFileError(ValueError):
    """The file is not a usable export; the message names the file and the problem."""

    def __init__(self, file: str, problem: str):
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem


@dataclass(frozen=True)
class ExportFacts:
    """What we know about the file itself (shown in the UI, used for change detection)."""

    file_name: str
    sha256: str
    size_bytes: int
    container: str  # "json" | "zip"
    created_at: str | None
    claimed_records: int | None
    actual_records: int
    declared_format: str | None
    warnings: tuple[str, ...] = field(default=())

    @property
    def count_mismatch(self) -> bool:
        return self.claimed_records is not None and self.claimed_records != self.actual_records


@dataclass(frozen=True)
class RawExport:
    facts: ExportFacts
    records: pd.DataFrame  # RAW_COLUMNS, values as read


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _to_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    # bool before int: JSON true stays "true", not "True"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_NULLABLE = {"integer": "Int64", "boolean": "boolean", "floating": "Float64"}


def _column_slow(values: list[Any]) -> pd.Series:
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in _NULLABLE:
        return pd.Series(pd.array(values, dtype=_NULLABLE[kind]))
    if kind in ("string", "empty"):
        return pd.Series(values, dtype="str")
    return pd.Series([_to_text(v) for v in values], dtype="str")


def _column(values: list[Any]) -> pd.Series:
    """One raw column: its natural type when homogeneous (ids stay integers), JSON text when mixed."""
    # Fast path: let Arrow infer the type of the common homogeneous columns; anything it does not
    # infer cleanly as text / int / bool / all-null goes the general way below.
    try:
        arr = pa.array(values)
    except Exception:  # mixed types, huge ints, odd text: the general path decides
        return _column_slow(values)
    typ = arr.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return pd.Series(pd.array(arr.cast(pa.large_string()), dtype="str"))
    if pa.types.is_null(typ):
        return pd.Series(pd.array(pa.nulls(len(values), type=pa.large_string()), dtype="str"))
    if pa.types.is_int64(typ):
        if arr.null_count == 0:
            return pd.Series(pd.arrays.IntegerArray(arr.to_numpy(zero_copy_only=False), np.zeros(len(arr), dtype=bool)))
        mask = arr.is_null().to_numpy(zero_copy_only=False)
        data = arr.fill_null(0).to_numpy(zero_copy_only=False)
        return pd.Series(pd.arrays.IntegerArray(data, mask))
    if pa.types.is_boolean(typ):
        return _bool_series(arr)
    return _column_slow(values)


def _bool_series(arr: pa.Array) -> pd.Series:
    mask = arr.is_null().to_numpy(zero_copy_only=False)
    data = arr.fill_null(False).to_numpy(zero_copy_only=False)
    return pd.Series(pd.arrays.BooleanArray(data, mask))


def _null_text(n: int) -> pd.Series:
    return pd.Series(pd.array(pa.nulls(n, type=pa.large_string()), dtype="str"))


def _text_columns(objs: list[dict[str, Any]], sample_size: int = 2_000) -> dict[str, pd.Series]:
    """Fast path for the keys that look like all-text (or all-null) columns: one Arrow conversion of
    the records, which refuses any value that is not text / null (then the general path decides)."""
    n = len(objs)
    sample = objs[:sample_size] + objs[sample_size :: max(1, n // sample_size)]
    try:
        sample_type = pa.array(sample).type
    except Exception:
        return {}
    if not pa.types.is_struct(sample_type):
        return {}
    fields = []
    for key in RECORD_KEYS:
        idx = sample_type.get_field_index(key)
        if idx < 0:
            continue
        typ = sample_type.field(idx).type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            fields.append(pa.field(key, pa.large_string()))
        elif pa.types.is_null(typ):
            fields.append(pa.field(key, pa.null()))
        elif pa.types.is_boolean(typ):  # Arrow refuses non-bool values here (ints are not strict)
            fields.append(pa.field(key, pa.bool_()))
    if not fields:
        return {}
    try:
        table = pa.array(objs, type=pa.struct(fields))
    except Exception:
        return {}
    out: dict[str, pd.Series] = {}
    for fld in fields:
        col = table.field(fld.name)
        if pa.types.is_boolean(fld.type):
            out[fld.name] = _bool_series(col)
            continue
        if pa.types.is_null(fld.type):
            col = pa.nulls(n, type=pa.large_string())
        out[fld.name] = pd.Series(pd.array(col, dtype="str"))
    return out


def records_to_frame(data: list[Any]) -> pd.DataFrame:
    """Column-wise construction: one pass per key, no per-row DataFrame work."""
    n = len(data)
    is_obj = [isinstance(r, dict) for r in data]
    all_obj = all(is_obj)
    objs = data if all_obj else [r if ok else {} for r, ok in zip(data, is_obj)]
    cols: dict[str, Any] = {"record_index": np.arange(n, dtype=np.int64)}
    text_cols = _text_columns(objs)
    for key in RECORD_KEYS:
        col = text_cols.get(key)
        cols[key] = _column([r.get(key) for r in objs]) if col is None else col
    known = frozenset(RECORD_KEYS)
    extras: list[str | None] = [None] * n
    superset = list(map(known.issuperset, objs))
    if not all(superset):
        for i in (i for i, ok in enumerate(superset) if not ok):
            r = objs[i]
            unknown = {k: v for k, v in r.items() if k not in known}
            if unknown:
                extras[i] = json.dumps(unknown, ensure_ascii=False, default=str)
    cols["extra"] = pd.Series(extras, dtype="str") if not all(superset) else _null_text(n)
    if all_obj:
        cols["non_object"] = _null_text(n)
    else:
        cols["non_object"] = pd.Series(
            [None if ok else json.dumps(r, ensure_ascii=False, default=str) for r, ok in zip(data, is_obj)],
            dtype="str",
        )
    return pd.DataFrame(cols, columns=list(RAW_COLUMNS))


def _json_from_bytes(name: str, payload: bytes) -> Any:
    # (the cheap test first: stripping a large file would copy it)
    if not payload or (payload[:1].isspace() and not payload.strip()):
        raise ExportFileError(name, "file is empty")
    try:
        # orjson parses ~1.6-2x faster than json; anything it refuses (invalid UTF-8, NaN, integers
        # beyond 64 bits, bad syntax) goes through json, so results and error messages stay json's.
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(payload)
    except UnicodeDecodeError as exc:
        raise ExportFileError(name, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        # A complete export is one object, so its last non-blank byte is "}"; anything else was cut off.
        body = payload.strip()
        truncated = body.startswith(b"{") and (not body.endswith(b"}") or exc.pos >= len(body) - 1)
        kind = "truncated JSON (ends before the export is complete)" if truncated else "not valid JSON"
        raise ExportFileError(name, f"{kind}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _unzip(name: str, fh: BinaryIO) -> bytes:
    try:
        with zipfile.ZipFile(fh) as zf:
            members = {Path(i.filename).name: i for i in zf.infolist() if not i.is_dir()}
            info = members.get(ZIP_MEMBER)
            if info is None:
                raise ExportFileError(name, f"ZIP export has no {ZIP_MEMBER} (members: {sorted(members)[:10]})")
            if info.file_size > MAX_ZIP_MEMBER_BYTES:
                raise ExportFileError(name, f"{ZIP_MEMBER} unpacks to {info.file_size} bytes, over the limit")
            return zf.read(info)
    except zipfile.BadZipFile as exc:
        raise ExportFileError(name, f"not a readable ZIP file ({exc})") from None


def parse_export_bytes(name: str, payload: bytes, sha256: str | None = None) -> RawExport:
    """Parse an export held in memory (JSON, or a ZIP with data.json)."""
    container = "json"
    sha = sha256 or hashlib.sha256(payload).hexdigest()
    size = len(payload)
    if payload[:4] == b"PK\x03\x04":
        container = "zip"
        payload = _unzip(name, io.BytesIO(payload))
    doc = _json_from_bytes(name, payload)
    del payload
    return _from_document(name, doc, sha, size, container)


def read_export(path: Path | str) -> RawExport:
    """Read an export file from disk; the file is never modified."""
    path = Path(path)
    name = path.name
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise ExportFileError(name, f"file not found at {path}") from None
    except IsADirectoryError:
        raise ExportFileError(name, "is a directory, not an export file") from None
    return parse_export_bytes(name, payload)


def _from_document(name: str, doc: Any, sha: str, size: int, container: str) -> RawExport:
    if not isinstance(doc, dict):
        raise ExportFileError(name, f"top level must be a JSON object, found {type(doc).__name__}")
    if "data" not in doc:
        raise ExportFileError(name, f"no 'data' key at the top level (keys: {sorted(doc)[:10]})")
    data = doc["data"]
    if not isinstance(data, list):
        raise ExportFileError(name, f"'data' must be a list of records, found {type(data).__name__}")
    if not data:
        raise ExportFileError(name, "'data' is empty: the export holds no records")
    meta = doc.get("export_metadata")
    warnings: list[str] = []
    if meta is None:
        meta = {}
        warnings.append("no export_metadata block")
    elif not isinstance(meta, dict):
        warnings.append(f"export_metadata is {type(meta).__name__}, not an object; ignored")
        meta = {}
    claimed_raw = meta.get("total_records")
    claimed: int | None = None
    if claimed_raw is not None:
        try:
            claimed = int(claimed_raw)
        except (TypeError, ValueError):
            warnings.append(f"export_metadata.total_records is not a number: {claimed_raw!r}")
    if claimed is not None and claimed != len(data):
        warnings.append(f"export_metadata.total_records says {claimed} but the file holds {len(data)} records")
    extra_top = sorted(set(doc) - {"data", "export_metadata"})
    if extra_top:
        warnings.append(f"unknown top-level keys ignored: {extra_top}")
    facts = ExportFacts(
        file_name=name,
        sha256=sha,
        size_bytes=size,
        container=container,
        created_at=str(meta["created_at"]) if meta.get("created_at") is not None else None,
        claimed_records=claimed,
        actual_records=len(data),
        declared_format=str(meta["format"]) if meta.get("format") is not None else None,
        warnings=tuple(warnings),
    )
    return RawExport(facts=facts, records=records_to_frame(data))
