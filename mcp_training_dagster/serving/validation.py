"""Validation: raw records in, typed records plus a quarantine table and a report out.

Lenient with a report: a record that cannot be used goes to quarantine with its reason, the field
at fault and its original JSON, so nothing is dropped silently. Everything else is normalised once
here (the regex work is the expensive part), so that every later stage is pure column work.

Time: naive timestamps are the service's own wall-clock reception times and stay exactly as they
are, never shifted by this machine's time zone. Timestamps that carry an offset or ``Z`` (older
upstream fixtures) are converted into ``service_timezone`` and then made naive, so one column
holds one clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from mcp_training_dagster.serving.events import EVENT_TYPES, WIFI_PROCESSES, classify_events
from mcp_training_dagster.serving.exports import RECORD_KEYS

# Syslog severities, index = severity code (RFC 5424).
LEVELS: tuple[str, ...] = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
LEVEL_CATEGORIES: tuple[str, ...] = (*LEVELS, "unknown")
_LEVEL_ALIASES = {
    **{name: name for name in LEVELS},
    "emerg": "emergency",
    "panic": "emergency",
    "crit": "critical",
    "err": "error",
    "warn": "warning",
    "informational": "info",
    "information": "info",
}

# Quarantine reasons, in the order they are tested: a record carries the first that applies.
REASONS: tuple[tuple[str, str], ...] = (
    ("not_an_object", "record"),
    ("missing_id", "id"),
    ("invalid_id", "id"),
    ("missing_timestamp", "timestamp"),
    ("invalid_timestamp", "timestamp"),
    ("implausible_timestamp", "timestamp"),
    ("missing_message", "message"),
    ("missing_device", "device_id"),
    ("duplicate_id", "id"),
)
# Duplicates are redundant copies of a kept record, not bad data: they do not count towards the
# quarantine limit that rejects a file.
NOT_BAD = frozenset({"duplicate_id"})

VALID_COLUMNS: tuple[str, ...] = (
    "id",
    "device",
    "device_name",
    "timestamp",
    "log_level",
    "severity",
    "facility",
    "process_name",
    "message",
    "event_type",
    "station_mac",
    "interface",
    "source_file",
    "record_index",
)
QUARANTINE_COLUMNS: tuple[str, ...] = ("source_file", "record_index", "id", "reason", "field", "detail", "record")

_AWARE = r"(?:[zZ]|[+-]\d{2}:?\d{2})$"
_PLAIN = r"^[1-9]\d{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d$"
TIMESTAMP_DTYPE = "datetime64[us]"

# Plausible timestamps. A record dated 2999 or 9999 parses, but its windows would overflow the
# nanosecond arithmetic of the feature code (datetime64[ns] ends in 2262) and one such record would
# move the training horizon by centuries: such records are quarantined (implausible_timestamp).
# Defaults: not before 2000, not more than a day after the export's created_at (or, without it, the
# file's time; or, for records without a file, now). Configured by training.input_limits.
DEFAULT_EARLIEST_TIMESTAMP = "2000-01-01T00:00:00"
DEFAULT_FUTURE_TOLERANCE_HOURS = 24.0
# Whatever the configuration says, nothing outside this range reaches the window arithmetic.
HARD_EARLIEST = pd.Timestamp("1970-01-01")
HARD_LATEST = pd.Timestamp("2200-01-01")


class ValidationReport(BaseModel):
    """The per-file summary a person reads in the UI or the CLI."""

    source_file: str
    records_in: int
    valid: int
    quarantined: int
    duplicates: int
    bad_fraction: float = Field(description="quarantined records other than duplicates / records_in")
    quarantine_by_reason: dict[str, int]
    level_counts: dict[str, int]
    event_counts: dict[str, int]
    process_counts: dict[str, int]
    devices: list[str]
    time_start: str | None
    time_end: str | None
    unparsed_structured_data: int
    unknown_levels: int
    warnings: list[str] = []


@dataclass(frozen=True)
class ValidationResult:
    records: pd.DataFrame  # VALID_COLUMNS, sorted by (timestamp, id), unique ids
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    report: ValidationReport


def parse_timestamps(values: pd.Series, service_timezone: str = "UTC") -> pd.Series:
    """ISO-8601 text -> naive ``datetime64[us]``; unparseable -> NaT (the caller quarantines)."""
    return _parse_timestamps(values, service_timezone)[0]


def _parse_timestamps(values: pd.Series, service_timezone: str) -> tuple[pd.Series, np.ndarray]:
    """``parse_timestamps`` and the mask of the rows in the plain form (which are not blank)."""
    values = values.astype("str")
    fast, stamps = _plain_fixed_width(values)
    if not fast.any():
        return _parse_timestamps_general(values, service_timezone), fast
    out = stamps.astype(TIMESTAMP_DTYPE)
    rest = np.flatnonzero(~fast)
    if rest.size:
        # Everything else (blank, padded, offsets, fractions, rolled-over dates...) the general way,
        # row by row the same function, so each row gets what the general path alone would give it.
        out[rest] = _parse_timestamps_general(values.iloc[rest], service_timezone).to_numpy()
    return pd.Series(out, index=values.index, dtype=TIMESTAMP_DTYPE), fast


_PLAIN_WIDTH = 19  # "YYYY-MM-DDTHH:MM:SS"
_PLAIN_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_PLAIN_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord("T"), 13: ord(":"), 16: ord(":")}


def _plain_fixed_width(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The common form "YYYY-MM-DDTHH:MM:SS" (what ``_PLAIN`` matches, and a real calendar day), read
    straight from the column's UTF-8 bytes with array arithmetic: -> (mask of such rows, their
    microseconds since 1970 (0 elsewhere)). Any other row (padded, offset, fraction, Feb 30...) is
    left to the general path."""
    n = len(values)
    fast = np.zeros(n, dtype=bool)
    micros = np.zeros(n, dtype=np.int64)
    if n == 0:
        return fast, micros
    arr = pa.array(values.array, type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    _, offsets_buf, data_buf = arr.buffers()
    if data_buf is None or offsets_buf is None:
        return fast, micros
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)
    starts = offsets[:-1]
    cand = (offsets[1:] - starts) == _PLAIN_WIDTH
    if arr.null_count:
        cand &= arr.is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(cand)
    if rows.size == 0:
        return fast, micros
    # In blocks, so the temporaries stay small (fresh memory costs page faults) and are reused.
    for lo in range(0, rows.size, _PLAIN_BLOCK):
        block = rows[lo : lo + _PLAIN_BLOCK]
        ok, seconds = _plain_seconds(data, starts[block])
        fast[block] = ok
        micros[block] = np.where(ok, seconds * 1_000_000, 0)
    return fast, micros


_PLAIN_BLOCK = 1 << 16
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0, 0, 0], dtype=np.int32)


def _plain_seconds(data: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For 19-byte strings starting at ``first`` in ``data``: (is it "YYYY-MM-DDTHH:MM:SS" with a
    first digit 1-9 and a real calendar day, seconds since 1970 as int64)."""
    ok = np.ones(first.size, dtype=bool)
    for pos, sep in _PLAIN_SEPARATORS.items():
        ok &= data[first + pos] == sep
    d = []  # the 14 digit positions, each as its value 0..9 (anything else fails ``ok``)
    for pos in _PLAIN_DIGITS:
        digit = data[first + pos] - np.uint8(ord("0"))  # wraps around below "0"
        ok &= digit <= 9
        d.append(digit.astype(np.int32))
    year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]
    month, day = d[4] * 10 + d[5], d[6] * 10 + d[7]
    hour, minute, second = d[8] * 10 + d[9], d[10] * 10 + d[11], d[12] * 10 + d[13]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    last_day = _MONTH_DAYS[month & 15] + ((month == 2) & leap)
    ok &= (year >= 1000) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= last_day)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = (era * 146097 + doe - 719468).astype(np.int64)
    return ok, days * 86400 + hour * 3600 + minute * 60 + second


def _parse_timestamps_general(values: pd.Series, service_timezone: str = "UTC") -> pd.Series:
    """``parse_timestamps`` without the fixed-width shortcut: every form, through Arrow and pandas."""
    text = values.astype("str").str.strip()
    out = pd.Series(pd.NaT, index=values.index, dtype=TIMESTAMP_DTYPE)
    present = text.notna() & (text != "")
    # Fast path for the common plain form "YYYY-MM-DDTHH:MM:SS" (naive, whole seconds): Arrow parses
    # it; a rolled-over impossible date (Arrow turns Feb 30 into Mar 1) fails the day check and,
    # like every other form, goes the general way below.
    fast = np.zeros(len(text), dtype=bool)
    if present.any():
        arr = pa.array(text.array, type=pa.large_string())
        plain = pc.fill_null(pc.match_substring_regex(arr, _PLAIN), False)
        if pc.any(plain).as_py():
            parsed = pc.strptime(arr, format="%Y-%m-%dT%H:%M:%S", unit="us", error_is_null=True)
            day_text = pc.utf8_slice_codeunits(
                pc.if_else(plain, arr, pa.scalar("2000-01-01", pa.large_string())), 8, 10
            )
            same_day = pc.equal(pc.day(parsed), pc.cast(day_text, pa.int64()))
            fast_arr = pc.fill_null(pc.and_(plain, same_day), False)
            fast = fast_arr.to_numpy(zero_copy_only=False)
            if fast.any():
                stamps = parsed.to_numpy(zero_copy_only=False)
                values_us = out.to_numpy(copy=True)
                values_us[fast] = stamps[fast].astype(TIMESTAMP_DTYPE)
                out = pd.Series(values_us, index=values.index, dtype=TIMESTAMP_DTYPE)
    present = present & ~fast
    aware = present & text.str.contains(_AWARE, regex=True, na=False)
    naive = present & ~aware
    if naive.any():
        out[naive] = pd.to_datetime(text[naive], format="ISO8601", errors="coerce").astype(TIMESTAMP_DTYPE)
    if aware.any():
        parsed = pd.to_datetime(text[aware], format="ISO8601", errors="coerce", utc=True)
        out[aware] = parsed.dt.tz_convert(service_timezone).dt.tz_localize(None).astype(TIMESTAMP_DTYPE)
    return out


def _map_unique(values: pd.Series, fn: Any, rows: np.ndarray | None = None) -> tuple[np.ndarray, list[Any]]:
    """Apply ``fn`` once per distinct value: levels and structured_data have a handful of values.
    With ``rows``: the codes of those rows, and ``fn`` only on the values they hold (``fn(None)`` for the rest)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if rows is None:
        return codes, [fn(u) for u in uniques]
    codes = codes[rows]
    used = np.zeros(len(uniques), dtype=bool)
    used[codes[codes >= 0]] = True
    return codes, [fn(u) if ok else fn(None) for u, ok in zip(uniques, used)]


def _parse_structured(text: Any) -> tuple[int, int, bool]:
    """-> (severity_code, facility, parsed_ok); -1 where absent."""
    try:
        obj = json.loads(text) if isinstance(text, str) else text
    except (TypeError, ValueError):
        return -1, -1, False
    if not isinstance(obj, dict):
        return -1, -1, False

    def _int(key: str) -> int:
        v = obj.get(key)
        try:
            return int(v) if v is not None and not isinstance(v, bool) else -1
        except (TypeError, ValueError):
            return -1

    sev, fac, pri = _int("severity_code"), _int("facility"), _int("priority")
    if sev < 0 and pri >= 0:
        sev = pri % 8
    if fac < 0 and pri >= 0:
        fac = pri // 8
    return (sev if 0 <= sev <= 7 else -1), fac, True


def _canonical_level(text: Any) -> str:
    if not isinstance(text, str):
        return "unknown"
    return _LEVEL_ALIASES.get(text.strip().lower(), "unknown")


def _record_json(raw: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """The original record, for the quarantine table (only quarantined rows, so few)."""
    out: list[str] = []
    if len(rows) == 0:  # (selecting no rows of a wide table is not free)
        return out
    sub = raw.iloc[rows]
    for _, row in sub.iterrows():
        if isinstance(row["non_object"], str):
            out.append(row["non_object"])
            continue
        rec: dict[str, Any] = {k: (None if pd.isna(row[k]) else row[k]) for k in RECORD_KEYS}
        rec = {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        if isinstance(row["extra"], str):
            rec.update(json.loads(row["extra"]))
        out.append(json.dumps(rec, ensure_ascii=False, default=str))
    return out


def _to_int_ids(raw_ids: pd.Series, text: pd.Series | None = None) -> tuple[pd.Series, pd.Series]:
    """-> (ids as float64 with NaN, mask of values present but not an integer)."""
    numeric = pd.to_numeric(raw_ids, errors="coerce")
    as_float = numeric.astype("float64")
    if text is None and not _is_text(raw_ids):
        present = raw_ids.notna()  # numbers / booleans: their text is never blank
    else:
        text = raw_ids.astype("str") if text is None else text
        present = raw_ids.notna() & (text.str.strip() != "")
    invalid = present & (as_float.isna() | (np.floor(as_float) != as_float) | (as_float.abs() > 2**62))
    return as_float, invalid


def _is_text(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.StringDtype) or values.dtype == object


def _blank(text: pd.Series) -> np.ndarray:
    """``text.isna() | (text.str.strip() == "")`` for a str column, stripping only the rows that can
    be blank: those that are empty or do not start with a printable, non-space ASCII character (read
    from the column's UTF-8 bytes; a long message is not copied to learn that)."""
    out = text.isna().to_numpy(dtype=bool, copy=True)
    rows = np.flatnonzero(_may_be_blank(text) & ~out)
    if rows.size:
        out[rows] = (text.iloc[rows].str.strip() == "").to_numpy(dtype=bool, na_value=False)
    return out


def _may_be_blank(text: pd.Series) -> np.ndarray:
    """Rows whose text is empty or starts with a byte outside "!".."~" (whitespace, control
    characters, anything not ASCII): only those can strip to nothing. Null rows count as True."""
    n = len(text)
    arr = pa.array(text.array, type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    _, offsets_buf, data_buf = arr.buffers()
    if n == 0 or offsets_buf is None or data_buf is None or len(data_buf) == 0:
        return np.ones(n, dtype=bool)
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)
    starts = offsets[:-1]
    first = data[np.minimum(starts, len(data) - 1)]  # (an empty last string points past the end)
    return (offsets[1:] == starts) | (first < 0x21) | (first > 0x7E)


def _stripped_text(values: pd.Series) -> pd.Series:
    """``values.astype("str").str.strip()``; a numeric column (device ids) is turned into text once
    per distinct value."""
    if _is_text(values):
        return values.astype("str").str.strip()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    text = pd.Series(uniques).astype("str").str.strip()
    return pd.Series(text.array.take(codes, allow_fill=True), index=values.index, dtype="str")


def _parse_reference(text: Any) -> pd.Timestamp | None:
    """An export's created_at (naive service time; an offset is dropped) or None when unusable."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        ts = pd.Timestamp(text.strip())
    except (ValueError, OverflowError):
        return None
    return None if pd.isna(ts) else ts.tz_localize(None) if ts.tzinfo is not None else ts


def timestamp_range(
    *,
    created_at: str | None = None,
    file_mtime: float | None = None,
    service_timezone: str = "UTC",
    earliest: str | pd.Timestamp = DEFAULT_EARLIEST_TIMESTAMP,
    future_tolerance_hours: float = DEFAULT_FUTURE_TOLERANCE_HOURS,
    now: pd.Timestamp | None = None,
) -> tuple[pd.Timestamp, pd.Timestamp, str]:
    """-> (earliest, latest, what latest is measured from) for one export's records.

    The reference is the export's ``created_at``, else the file's modification time (in the
    service's clock), else now; never later than now, so a created_at of 9999 cannot widen the
    range. Both ends are clamped to [1970, 2200], which the window arithmetic represents exactly."""
    now = now if now is not None else pd.Timestamp.now(tz=service_timezone).tz_localize(None)
    ref, basis = _parse_reference(created_at), "export created_at"
    if ref is None and file_mtime is not None:
        ref = pd.Timestamp(file_mtime, unit="s", tz="UTC").tz_convert(service_timezone).tz_localize(None)
        basis = "file time"
    if ref is None or ref > now:
        ref, basis = now, "now" if ref is None else f"now ({basis} is in the future)"
    lo = min(max(pd.Timestamp(earliest), HARD_EARLIEST), HARD_LATEST)
    hi = min(ref + pd.Timedelta(hours=future_tolerance_hours), HARD_LATEST)
    return lo, hi, f"{basis} + {future_tolerance_hours:g}h"


def validate_records(
    raw: pd.DataFrame,
    source_file: str,
    *,
    service_timezone: str = "UTC",
    extra_wifi_processes: Iterable[str] = (),
    warnings: Iterable[str] = (),
    earliest_timestamp: str | pd.Timestamp = DEFAULT_EARLIEST_TIMESTAMP,
    future_tolerance_hours: float = DEFAULT_FUTURE_TOLERANCE_HOURS,
) -> ValidationResult:
    """Normalise, quarantine and de-duplicate the records of one export.

    The plausible timestamp range is measured from the export's created_at / file time, which
    :func:`exports.read_export` attaches to the raw table (``raw.attrs``); see :func:`timestamp_range`."""
    n = len(raw)
    reason = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)
    unflagged = np.ones(n, dtype=bool)

    def flag(mask: Any, name: str, why: Any) -> None:
        """``why``: a scalar, or a callable taking the row mask and returning the details of those rows."""
        m = np.asarray(mask, dtype=bool) & unflagged
        if not m.any():
            return
        reason[m] = name
        detail[m] = why if np.isscalar(why) else np.asarray(why(m), dtype=object)
        unflagged[m] = False

    flag(raw["non_object"].notna(), "not_an_object", "entry in 'data' is not a JSON object")

    # Events are classified line by line, so all lines can be classified while the checks below run
    # (Arrow's regex kernels release the GIL: the work goes to the other core); the kept rows' results
    # are taken afterwards. (A quarantined line costs a classification it does not need; there are few.)
    # (classify_events trims and lower-cases the process names itself, and reads a null one as "", so
    # it is given them as they are and starts at once.)
    msg = raw["message"].astype("str")
    extra = {p.lower() for p in extra_wifi_processes}
    classifier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classify_events")
    events_future = classifier.submit(
        classify_events,
        msg,
        raw["process_name"].astype("str"),
        wifi_processes=(WIFI_PROCESSES | extra) if extra else None,
    )
    process_all = raw["process_name"].astype("str").str.strip().fillna("")

    raw_id = raw["id"]
    # The ids' text: only the quarantined rows' is needed when the ids are numbers.
    id_text_all = raw_id.astype("str") if _is_text(raw_id) else None

    def id_text(rows: Any) -> pd.Series:
        return id_text_all.iloc[rows] if id_text_all is not None else raw_id.iloc[rows].astype("str")

    ids, bad_id = _to_int_ids(raw_id, id_text_all)
    if id_text_all is not None:
        missing_id = raw_id.isna() | (id_text_all.str.strip() == "")
    else:  # numbers / booleans: their text is never blank
        missing_id = raw_id.isna()
    flag(missing_id, "missing_id", "no 'id'")
    flag(bad_id, "invalid_id", lambda m: "'id' is not an integer within ±2^62: " + id_text(m).fillna(""))

    ts_text = raw["timestamp"].astype("str")
    ts, plain = _parse_timestamps(ts_text, service_timezone)
    ts_blank = np.zeros(n, dtype=bool)  # a plain timestamp is not blank: only the other rows are looked at
    if not plain.all():
        rest = np.flatnonzero(~plain)
        ts_blank[rest] = _blank(ts_text.iloc[rest])
    flag(ts_blank, "missing_timestamp", "no 'timestamp'")
    flag(ts.isna(), "invalid_timestamp", lambda m: "unparseable 'timestamp': " + ts_text[m].fillna(""))
    lo, hi, basis = timestamp_range(
        created_at=raw.attrs.get("export_created_at"),
        file_mtime=raw.attrs.get("file_mtime"),
        service_timezone=service_timezone,
        earliest=earliest_timestamp,
        future_tolerance_hours=future_tolerance_hours,
    )
    outside = ts.notna() & ((ts < lo) | (ts > hi))
    flag(
        outside,
        "implausible_timestamp",
        lambda m: (
            f"'timestamp' outside the plausible range {lo.isoformat()} .. {hi.isoformat()} ({basis}): "
            + ts_text[m].fillna("")
        ),
    )

    flag(_blank(msg), "missing_message", "no 'message'")

    device = _stripped_text(raw["device_id"])
    device_ip = raw["device_ip"].astype("str")
    if (device.isna() | (device == "")).any():  # (device_ip is only stripped when it is needed)
        device = device.where(device.notna() & (device != ""), device_ip.str.strip())
        flag(device.isna() | (device == ""), "missing_device", "neither 'device_id' nor 'device_ip'")

    # Order by (timestamp, id) before de-duplicating so the kept copy is deterministic.
    ok = unflagged.copy()
    order = np.lexsort((ids.to_numpy(na_value=np.inf), ts.to_numpy()))
    order = order[ok[order]]
    ids_sorted = ids.to_numpy()[order]
    if (ids_sorted[1:] > ids_sorted[:-1]).all():  # ids rising with time (the service's): no repeats
        dup_sorted = np.zeros(len(ids_sorted), dtype=bool)
    else:
        dup_sorted = pd.Series(ids_sorted).duplicated(keep="first").to_numpy()
    dup_rows = order[dup_sorted]
    is_dup = np.zeros(n, dtype=bool)
    is_dup[dup_rows] = True
    flag(is_dup, "duplicate_id", "same 'id' as an earlier record in this file")
    keep_rows = order[~dup_sorted]

    # ---- the kept records, typed
    def kept_col(series: pd.Series) -> pd.Series:
        return series.take(keep_rows).reset_index(drop=True)

    # Levels and structured_data: a handful of distinct values, mapped once each, then the kept rows' codes.
    lvl_codes, lvl_names = _map_unique(raw["log_level"], _canonical_level, keep_rows)
    lvl_table = np.asarray([LEVEL_CATEGORIES.index(name) for name in lvl_names] + [len(LEVELS)], dtype=np.int64)
    lvl_cat = lvl_table[lvl_codes]  # code -1 picks the sentinel ("unknown")
    sd_codes, sd_parsed = _map_unique(raw["structured_data"], _parse_structured, keep_rows)
    sd_table = np.asarray(sd_parsed + [(-1, -1, True)], dtype=np.int64).reshape(-1, 3)
    sd_rows = sd_table[sd_codes]  # code -1 picks the sentinel row (absent structured_data)
    sev_from_sd, facility, sd_ok = sd_rows[:, 0], sd_rows[:, 1], sd_rows[:, 2].astype(bool)
    # The level string wins; structured_data's severity fills in where the level is unknown.
    severity = np.where(lvl_cat < len(LEVELS), lvl_cat, sev_from_sd).astype(np.int64)
    level_codes = np.where(severity >= 0, severity, len(LEVELS))

    # Everything that does not need the events is built while the classifier thread still runs;
    # only the three event columns (and their counts) wait for it.
    log_level = pd.Categorical.from_codes(level_codes, categories=LEVEL_CATEGORIES)
    columns: dict[str, Any] = {
        "id": ids.to_numpy()[keep_rows].astype(np.int64),
        "device": kept_col(device).array,
        "device_name": kept_col(device_ip).array,
        "timestamp": ts.to_numpy()[keep_rows],
        "log_level": log_level,
        "severity": pd.array(np.where(severity >= 0, severity, -1), dtype="int8"),
        "facility": pd.array(np.where(facility >= 0, facility, -1), dtype="int16"),
        "process_name": kept_col(process_all).array,
        "message": kept_col(msg).array,
        "source_file": pd.Series(source_file, index=pd.RangeIndex(len(keep_rows)), dtype="str").array,
        "record_index": raw["record_index"].to_numpy()[keep_rows],
    }
    for col in ("device", "device_name", "process_name", "message", "source_file"):
        columns[col] = pd.Series(columns[col]).astype("str").array

    # ---- quarantine table
    q_rows = np.flatnonzero(~unflagged)
    field_of = dict(REASONS)
    quarantine = pd.DataFrame(
        {
            "source_file": pd.Series([source_file] * len(q_rows), dtype="str"),
            "record_index": raw["record_index"].to_numpy()[q_rows],
            "id": pd.Series(id_text(q_rows).to_numpy(), dtype="str"),
            "reason": pd.Series(reason[q_rows], dtype="str"),
            "field": pd.Series([field_of[r] for r in reason[q_rows]], dtype="str"),
            "detail": pd.Series(detail[q_rows], dtype="str"),
            "record": pd.Series(_record_json(raw, q_rows), dtype="str"),
        },
        columns=list(QUARANTINE_COLUMNS),
    )

    by_reason = {k: int(v) for k, v in pd.Series(reason[q_rows]).value_counts().items()}
    n_bad = sum(v for k, v in by_reason.items() if k not in NOT_BAD)
    kept_ts = pd.Series(columns["timestamp"], dtype=TIMESTAMP_DTYPE)
    report_fields: dict[str, Any] = {
        "level_counts": _counts(pd.Series(log_level)),
        "process_counts": _counts(pd.Series(columns["process_name"])),
        "devices": sorted(pd.Series(columns["device"]).unique().tolist()),
        "time_start": kept_ts.min().isoformat() if len(keep_rows) else None,
        "time_end": kept_ts.max().isoformat() if len(keep_rows) else None,
        "unknown_levels": int((pd.Series(log_level) == "unknown").sum()),
    }

    events = events_future.result()
    # (the classifier's thread, now free, takes the kept rows' interfaces while this one takes the rest)
    interface = classifier.submit(lambda: kept_col(events["interface"].astype("str")).astype("str").array)
    classifier.shutdown(wait=False)
    event_type = kept_col(events["event_type"]).array
    if list(event_type.categories) != list(EVENT_TYPES):
        event_type = pd.Categorical(np.asarray(event_type), categories=EVENT_TYPES)
    columns["event_type"] = event_type
    columns["station_mac"] = kept_col(events["station_mac"].astype("str")).astype("str").array
    columns["interface"] = interface.result()
    records = pd.DataFrame(columns, columns=list(VALID_COLUMNS))

    report = ValidationReport(
        source_file=source_file,
        records_in=n,
        valid=len(records),
        quarantined=len(q_rows),
        duplicates=by_reason.get("duplicate_id", 0),
        bad_fraction=(n_bad / n) if n else 0.0,
        quarantine_by_reason=by_reason,
        level_counts=report_fields["level_counts"],
        event_counts=_counts(records["event_type"]),
        process_counts=report_fields["process_counts"],
        devices=report_fields["devices"],
        time_start=report_fields["time_start"],
        time_end=report_fields["time_end"],
        unparsed_structured_data=int((~sd_ok).sum()),
        unknown_levels=report_fields["unknown_levels"],
        warnings=list(warnings),
    )
    return ValidationResult(records=records, quarantine=quarantine, report=report)


def _counts(series: pd.Series) -> dict[str, int]:
    counts = series.value_counts(sort=True)
    return {str(k): int(v) for k, v in counts.items() if v > 0}


def check_schema(records: pd.DataFrame) -> list[str]:
    """Invariants later stages rely on; returns the broken ones (empty = fine)."""
    problems: list[str] = []
    missing = [c for c in VALID_COLUMNS if c not in records.columns]
    if missing:
        return [f"missing columns: {missing}"]
    if not pd.api.types.is_datetime64_dtype(records["timestamp"]) or records["timestamp"].isna().any():
        problems.append("timestamp must be a non-null naive datetime column")
    elif len(records) and (records["timestamp"].min() < HARD_EARLIEST or records["timestamp"].max() > HARD_LATEST):
        # Beyond this range the window arithmetic (datetime64[ns]) would overflow silently.
        problems.append(f"timestamps outside {HARD_EARLIEST.date()} .. {HARD_LATEST.date()}")
    if records["id"].duplicated().any():
        problems.append("ids are not unique")
    key = records[["timestamp", "id"]]
    if not key.equals(key.sort_values(["timestamp", "id"], kind="stable")):
        problems.append("records are not sorted by (timestamp, id)")
    if records["message"].isna().any():
        problems.append("null messages")
    return problems
