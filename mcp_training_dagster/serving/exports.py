"""Reading export files exactly as the upstream service writes them.

An export is one JSON object ``{"export_metadata": {...}, "data": [record, ...]}``, or a ZIP
holding that object as ``data.json``. This module turns a file into a column table of the records
*as read* (nothing normalised yet) plus the facts about the file. It raises :class:`ExportFileError`
for anything that is not an export at all, naming the file and what is wrong; record-level problems
are validation's business, not this module's.

Speed: with ``msgspec`` installed (optional; the serving copy works without it) a well-formed export is
decoded straight into slotted record structs (no dict per record) and turned into columns one key at a
time; anything it refuses (an extra key, a non-object entry, NaN, bad UTF-8...) goes the general way
(orjson, then json), so the table and every error message are the same on both paths.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import lzma
import os
import threading
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from operator import attrgetter
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa

# Optional accelerators (see the module docstring): the training project installs both; a model package
# lists neither in its requirements, so its copy of this module falls back to the standard library.
try:
    import msgspec
except ImportError:  # pragma: no cover - the serving copy may run without it
    msgspec = None  # type: ignore[assignment]
try:
    import orjson
except ImportError:  # pragma: no cover - the serving copy may run without it
    orjson = None  # type: ignore[assignment]

# 2**64 has 20 digits: an integer that long is not safe through orjson (it becomes a float).
_LONG_RUN = b"1" * 20
_DIGITS_TO_ONES = bytes(0x31 if 0x30 <= i <= 0x39 else 0x30 for i in range(256))
_SCAN_CHUNK = 1 << 24

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
# The most JSON one export may hold: a plain file's size, or what a ZIP's data.json expands to.
# The upstream service capped uploads at 100 MB and JSON exports compress about tenfold, so 1 GiB
# covers the largest plausible export with room to spare, while a ZIP bomb is refused before it is
# read. Callers pass the configured value (training.input_limits.max_export_bytes).
DEFAULT_MAX_EXPORT_BYTES = 1024**3
_READABLE_COMPRESSION = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
# Errors a damaged or odd ZIP member raises while being decompressed (bad CRC, zlib/lzma stream
# errors, truncated data, an encrypted member, a method zipfile cannot decode).
_ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    RuntimeError,
    NotImplementedError,
    ValueError,
)


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
    file_mtime: float | None = None  # POSIX seconds; the fallback reference time when created_at is absent
    read_processes: int = 1  # processes that decoded the records (several when a Decoder split the file)

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


def _storable(text: str) -> str:
    """``text`` as UTF-8 can hold it: a lone UTF-16 surrogate (JSON allows the escape "\\ud800", Unicode has
    no such character, Arrow and Parquet refuse it) is kept as that escape's six characters."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_series(values: list[Any]) -> pd.Series:
    """Text (or null) values as a text column; a value with a lone surrogate kept as its escape (see
    :func:`_storable`). Only a column that holds one pays for the check."""
    try:
        return pd.Series(values, dtype="str")
    except UnicodeEncodeError:
        kept = [_storable(v) if isinstance(v, str) and not v.isascii() else v for v in values]
        series = pd.Series(kept, dtype="str")
        series.attrs["escaped"] = sum(a != b for a, b in zip(values, kept) if isinstance(a, str))
        return series


def _column_slow(values: list[Any]) -> pd.Series:
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in _NULLABLE:
        try:
            with warnings.catch_warnings():  # numpy warns on the lossy cast it then refuses
                warnings.simplefilter("ignore", RuntimeWarning)
                return pd.Series(pd.array(values, dtype=_NULLABLE[kind]))
        except (OverflowError, TypeError, ValueError):
            # Integers beyond 64 bits (2**70, -2**64): kept as their exact text, so validation can
            # quarantine those records (invalid_id) instead of the whole file failing.
            return _text_series([_to_text(v) for v in values])
    if kind in ("string", "empty"):
        return _text_series(values)
    return _text_series([_to_text(v) for v in values])


def _column(values: list[Any]) -> pd.Series:
    """One raw column: its natural type when homogeneous (ids stay integers), JSON text when mixed."""
    # Fast path: let Arrow infer the type of the common homogeneous columns; anything it does not
    # infer cleanly as text / int / bool / all-null goes the general way below.
    try:
        arr = pa.array(values)
    except Exception:  # mixed types, huge ints, odd text: the general path decides
        return _column_slow(values)
    column = arrow_column(arr)
    return _column_slow(values) if column is None else column


def arrow_column(arr: pa.Array) -> pd.Series | None:
    """The raw column of an Arrow array of one of the types a raw column keeps (text, int64, bool, all null),
    else None."""
    typ = arr.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return pd.Series(pd.array(arr.cast(pa.large_string()), dtype="str"))
    if pa.types.is_null(typ):
        return _null_text(len(arr))
    if pa.types.is_int64(typ):
        if arr.null_count == 0:
            return pd.Series(pd.arrays.IntegerArray(arr.to_numpy(zero_copy_only=False), np.zeros(len(arr), dtype=bool)))
        mask = arr.is_null().to_numpy(zero_copy_only=False)
        data = arr.fill_null(0).to_numpy(zero_copy_only=False)
        return pd.Series(pd.arrays.IntegerArray(data, mask))
    if pa.types.is_boolean(typ):
        return _bool_series(arr)
    return None


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


def _has_long_digit_run(payload: bytes) -> bool:
    """Whether ``payload`` holds 20 digits in a row: a bytes translate + substring search per 16 MiB
    chunk (about 10x faster than a regex, and bounded memory)."""
    step, overlap = _SCAN_CHUNK, len(_LONG_RUN) - 1
    return any(
        _LONG_RUN in payload[i : i + step + overlap].translate(_DIGITS_TO_ONES) for i in range(0, len(payload), step)
    )


if msgspec is not None:
    # One struct per record: every known key, any JSON value (exactly what json would give, big ints
    # included), absent = None like ``dict.get``; an unknown key is refused (the general path keeps it).
    _Record = msgspec.defstruct("_Record", [(k, Any, None) for k in RECORD_KEYS], forbid_unknown_fields=True, gc=False)
    _Document = msgspec.defstruct(
        "_Document",
        [("data", list[_Record]), ("export_metadata", Any, None)],  # type: ignore[valid-type]
        forbid_unknown_fields=True,
        gc=False,
    )
    _DECODER = msgspec.json.Decoder(_Document)


def _decode_typed(payload: bytes) -> dict[str, Any] | None:
    """The export as ``{"export_metadata": ..., "data": [record struct, ...]}``, or None when msgspec is
    missing or the payload is anything but a plain export (then the general path decides)."""
    if msgspec is None:
        return None
    try:
        doc = _DECODER.decode(payload)
    except (msgspec.MsgspecError, ValueError, RecursionError):  # e.g. bad UTF-8: the general path words it
        return None
    return {"export_metadata": doc.export_metadata, "data": doc.data}  # type: ignore[attr-defined]


# The text columns of a large export are built in the system allocator: Arrow grows a column's value
# buffer by doubling it, which the default pool (mimalloc) does by copying into fresh, zeroed memory
# (with a system time that varies from run to run), while glibc remaps a large block in place; the
# blocks and their join below measured faster in it too.
_TEXT_POOL = pa.system_memory_pool()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection for the duration: building the columns allocates no cycles, but
    each collection the allocations trigger would walk the list of every decoded record (~30 ms for
    400,000 records). The collector is switched back on only if it was on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_BLOCK_RECORDS = 8_192


def _struct_records_to_frame(data: list[Any], *, release: bool = False) -> pd.DataFrame:
    """Columns from decoded record structs (no extras, no non-objects): see :func:`struct_columns`."""
    n = len(data)
    text, general = struct_columns(data, release=release)
    cols: dict[str, Any] = {"record_index": np.arange(n, dtype=np.int64)}
    for key in RECORD_KEYS:
        cols[key] = _column(general.pop(key)) if key in general else pd.Series(pd.array(text.pop(key), dtype="str"))
    cols["extra"] = _null_text(n)
    cols["non_object"] = _null_text(n)
    return pd.DataFrame(cols, columns=list(RAW_COLUMNS))


def struct_columns(data: list[Any], *, release: bool = False) -> tuple[dict[str, pa.Array], dict[str, list[Any]]]:
    """The text columns of decoded record structs as Arrow arrays, and every value of each other key.

    A block of records at a time, every key of the block in turn (one C-level pass per key), so the
    block's records and values are still in the CPU cache for the next key: text columns are built
    block by block and joined at the end (about 0.08 s less for 400,000 records than key by key over
    the whole list). A key with any value that is not text (or null) is set aside with all its values,
    for the caller to type as one whole column (``_column``).

    With ``release`` (the caller owns ``data`` and is done with it), each block's records are freed
    as soon as its columns are built, while they are still in the cache (freeing 400,000 records
    afterwards costs ~0.1 s); ``data`` is left holding None."""
    n = len(data)
    getters = [(key, attrgetter(key)) for key in RECORD_KEYS]
    text_blocks: dict[str, list[pa.Array]] = {key: [] for key in RECORD_KEYS}
    general: dict[str, list[Any]] = {}  # key -> every value, for a key that is not all text
    with _gc_paused():
        for lo in range(0, n, _BLOCK_RECORDS):
            block = data[lo : lo + _BLOCK_RECORDS]
            for key, get in getters:
                values = list(map(get, block))
                if key in general:
                    general[key] += values
                    continue
                try:  # refuses any non-text value
                    text_blocks[key].append(pa.array(values, type=pa.large_string(), memory_pool=_TEXT_POOL))
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    # the earlier blocks' values of this key were all text or null: read back from Arrow
                    general[key] = [*(v for arr in text_blocks[key] for v in arr.to_pylist()), *values]
                    text_blocks[key].clear()
            if release:
                data[lo : lo + len(block)] = [None] * len(block)
            del block, values
        text = _join_all({key: text_blocks.pop(key) for key in RECORD_KEYS if key not in general})
    return text, general


_JOIN_THREAD_MIN_BLOCKS = 8


def _join_all(blocks_by_key: dict[str, list[pa.Array]]) -> dict[str, pa.Array]:
    """Each text column's blocks joined into one array. Arrow copies them without the GIL, so for a
    large export every other column is joined on a second thread (~0.025 s less for 400,000 records)."""
    keys = list(blocks_by_key)
    if max(map(len, blocks_by_key.values()), default=0) < _JOIN_THREAD_MIN_BLOCKS:
        return {key: _joined(blocks_by_key[key]) for key in keys}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="join_columns") as pool:
        futures = {key: pool.submit(_joined, blocks_by_key[key]) for key in keys[1::2]}
        out = {key: _joined(blocks_by_key[key]) for key in keys[0::2]}
        out.update((key, future.result()) for key, future in futures.items())
    return {key: out[key] for key in keys}


def _joined(blocks: list[pa.Array]) -> pa.Array:
    if not blocks:
        return pa.array([], type=pa.large_string())
    return blocks[0] if len(blocks) == 1 else pa.concat_arrays(blocks, memory_pool=_TEXT_POOL)


def records_to_frame(data: list[Any]) -> pd.DataFrame:
    """Column-wise construction: one pass per key, no per-row DataFrame work."""
    n = len(data)
    if msgspec is not None and n and isinstance(data[0], _Record):
        return _struct_records_to_frame(data)
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
    cols["extra"] = _text_series(extras) if not all(superset) else _null_text(n)
    if all_obj:
        cols["non_object"] = _null_text(n)
    else:
        cols["non_object"] = _text_series(
            [None if ok else json.dumps(r, ensure_ascii=False, default=str) for r, ok in zip(data, is_obj)]
        )
    frame = pd.DataFrame(cols, columns=list(RAW_COLUMNS))
    if escaped := sum(c.attrs.get("escaped", 0) for c in cols.values() if isinstance(c, pd.Series)):
        frame.attrs["escaped_surrogates"] = escaped  # (_from_document turns it into the file's warning)
    return frame


# A faster decoder the caller may offer (the training project's domain/export_split.py, several cores):
# it returns the document with "data" already a raw table, or None to leave the file to this module.
Decoder = Callable[[bytes], dict[str, Any] | None]


def _json_from_bytes(name: str, payload: bytes, decode: Decoder | None = None) -> Any:
    # (the cheap test first: stripping a large file would copy it)
    if not payload or (payload[:1].isspace() and not payload.strip()):
        raise ExportFileError(name, "file is empty")
    if decode is not None and (decoded := decode(payload)) is not None:
        return decoded
    typed = _decode_typed(payload)
    if typed is not None:
        return typed
    try:
        # orjson parses ~1.6-2x faster than json; anything it refuses (invalid UTF-8, NaN, bad syntax)
        # goes through json, so results and error messages stay json's. orjson turns integers beyond
        # 64 bits into floats (losing the id's text), so a payload with a 20-digit run goes to json too.
        if orjson is not None and not _has_long_digit_run(payload):
            return orjson.loads(payload)
    except ValueError:  # orjson.JSONDecodeError is a ValueError
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
        # ("Unterminated string starting at" + the position: one "at", not two)
        where = f"{exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"
        raise ExportFileError(name, f"{kind}: {where}") from None


def _limit_problem(what: str, size: int, max_bytes: int) -> str:
    return (
        f"{what} {size:,} bytes, over the limit of {max_bytes:,} bytes of JSON per export "
        "(input_limits.max_export_bytes)"
    )


def _unzip(name: str, fh: BinaryIO, max_bytes: int = DEFAULT_MAX_EXPORT_BYTES) -> bytes:
    """The one ``data.json`` of a ZIP export, streamed and bounded: never more than ``max_bytes``
    are held, whatever the headers claim. Every way a member can fail to decompress is one
    :class:`ExportFileError` naming the file, the member and the problem."""
    try:
        with zipfile.ZipFile(fh) as zf:
            files = [i for i in zf.infolist() if not i.is_dir()]
            found = [i for i in files if i.filename.replace("\\", "/").rsplit("/", 1)[-1] == ZIP_MEMBER]
            if not found:
                names = sorted(i.filename for i in files)
                raise ExportFileError(name, f"ZIP export has no {ZIP_MEMBER} (members: {names[:10]})")
            if len(found) > 1:
                raise ExportFileError(
                    name,
                    f"ambiguous ZIP export: {len(found)} members named {ZIP_MEMBER} "
                    f"({[i.filename for i in found][:10]}); an export holds exactly one",
                )
            info = found[0]
            member = f"member {info.filename!r}"
            if info.flag_bits & 0x1:
                raise ExportFileError(name, f"{member} is encrypted; exports are never encrypted")
            if info.compress_type not in _READABLE_COMPRESSION:
                raise ExportFileError(
                    name,
                    f"{member} uses compression method {info.compress_type}, which cannot be read "
                    f"(supported: {', '.join(_READABLE_COMPRESSION.values())})",
                )
            if info.file_size > max_bytes:
                raise ExportFileError(name, _limit_problem(f"{member} would expand to", info.file_size, max_bytes))
            out = bytearray()
            try:
                with zf.open(info) as src:
                    while chunk := src.read(1 << 20):
                        out += chunk
                        if len(out) > max_bytes:  # the header lied about the size
                            raise ExportFileError(
                                name, _limit_problem(f"{member} expands to more than", max_bytes, max_bytes)
                            )
            except ExportFileError:
                raise
            except _ZIP_READ_ERRORS as exc:
                raise ExportFileError(
                    name, f"{member} cannot be decompressed (corrupt ZIP?): {type(exc).__name__}: {exc}"
                ) from None
            return bytes(out)
    except ExportFileError:
        raise
    except zipfile.BadZipFile as exc:
        raise ExportFileError(name, f"not a readable ZIP file ({exc})") from None
    except (zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError) as exc:
        raise ExportFileError(name, f"not a readable ZIP file ({type(exc).__name__}: {exc})") from None


def parse_export_bytes(
    name: str,
    payload: bytes,
    sha256: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_EXPORT_BYTES,
    file_mtime: float | None = None,
    decode: Decoder | None = None,
) -> RawExport:
    """Parse an export held in memory (JSON, or a ZIP with data.json); at most ``max_bytes`` of JSON.
    ``decode``: a faster decoder to try first (see :data:`Decoder`), which must give the same table."""
    hashed: list[str] = []

    def digest(data: bytes) -> None:
        hashed.append(hashlib.sha256(data).hexdigest())

    # hashlib releases the GIL: the file (as given, a ZIP too) is hashed on the other core while it is parsed.
    hasher = threading.Thread(target=digest, args=(payload,), daemon=True)
    if sha256 is None:
        hasher.start()
    try:
        container = "json"
        size = len(payload)
        if payload[:4] == b"PK\x03\x04":
            container = "zip"
            payload = _unzip(name, io.BytesIO(payload), max_bytes)
        elif size > max_bytes:
            raise ExportFileError(name, _limit_problem("file is", size, max_bytes))
        try:
            doc = _json_from_bytes(name, payload, decode)
            del payload
            if sha256 is None:
                hasher.join()
            return _from_document(name, doc, sha256 or hashed[0], size, container, file_mtime)
        except RecursionError:
            # A nesting bomb ([[[[...]]]]): an export record is a flat object, a few levels at most.
            raise ExportFileError(name, "JSON nested too deeply to be an export (nesting bomb?)") from None
    finally:
        if hasher.is_alive():
            hasher.join()


def read_export(
    path: Path | str, *, max_bytes: int = DEFAULT_MAX_EXPORT_BYTES, decode: Decoder | None = None
) -> RawExport:
    """Read an export file from disk; the file is never modified. A plain file over ``max_bytes``
    is refused before it is read; a ZIP's data.json is bounded while it is decompressed. See
    :func:`parse_export_bytes` for ``decode``."""
    path = Path(path)
    name = path.name
    try:
        st = path.stat()
        if os.path.isdir(path):
            raise IsADirectoryError(path)
        if st.st_size > max_bytes and not _looks_like_zip(path):
            raise ExportFileError(name, _limit_problem("file is", st.st_size, max_bytes))
        payload = path.read_bytes()
    except FileNotFoundError:
        raise ExportFileError(name, f"file not found at {path}") from None
    except IsADirectoryError:
        raise ExportFileError(name, "is a directory, not an export file") from None
    except PermissionError as exc:
        raise ExportFileError(name, f"cannot be read ({exc.strerror})") from None
    return parse_export_bytes(name, payload, max_bytes=max_bytes, file_mtime=st.st_mtime, decode=decode)


def _looks_like_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _from_document(
    name: str, doc: Any, sha: str, size: int, container: str, file_mtime: float | None = None
) -> RawExport:
    if not isinstance(doc, dict):
        raise ExportFileError(name, f"top level must be a JSON object, found {type(doc).__name__}")
    if "data" not in doc:
        raise ExportFileError(name, f"no 'data' key at the top level (keys: {sorted(doc)[:10]})")
    data = doc["data"]  # a list, or already a column table (from a Decoder)
    if not isinstance(data, list | pd.DataFrame):
        raise ExportFileError(name, f"'data' must be a list of records, found {type(data).__name__}")
    if not len(data):
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
        file_mtime=file_mtime,
    )
    if isinstance(data, pd.DataFrame):
        records = data
        facts = replace(facts, read_processes=int(records.attrs.pop("read_processes", 1)))  # set by the Decoder
    elif msgspec is not None and isinstance(data[0], _Record):  # decoded here: freed as it is turned into columns
        records = _struct_records_to_frame(data, release=True)
    else:
        records = records_to_frame(data)
        if escaped := records.attrs.pop("escaped_surrogates", 0):
            note = (
                f"{escaped} text value(s) held a lone UTF-16 surrogate escape (e.g. \\ud800: not Unicode text), "
                "kept as the escape's characters"
            )
            facts = replace(facts, warnings=(*facts.warnings, note))
    # The reference time of the plausible-timestamp range travels with the table (validation reads
    # it; Parquet keeps DataFrame.attrs), so every reader of this table applies the same range.
    records.attrs.update(export_created_at=facts.created_at, file_mtime=file_mtime)
    return RawExport(facts=facts, records=records)
