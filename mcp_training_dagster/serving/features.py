"""Feature windows: fixed-length, clock-aligned, per device and per finer entity.

Every feature is a pure function of the records of one entity in its window (and, for the
"before" features, the entity's record just before it), never a batch-wide rank, frequency or
statistic, so a window gets the same vector in training and at serving time whatever else is in
the batch. Everything is computed with sorted numpy arrays and counts (``np.add.at`` of ones,
``bincount``): a few sorts (radix sorts of small integer codes where possible), then linear passes, no
per-row Python and no per-window loops. The table's row order is decided first (:func:`_layout`), so
each feature column is written once, in place. Per-record values are classified once per record and
spread to the record's rows (one per kind it belongs to), not classified per row.

Entities (``entity_kind``):
  device     the whole router (``entity = "*"``)
  station    one client MAC on that router
  interface  one radio/interface on that router (``eth6``, ``wl0-ap0``)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mcp_training_dagster.serving.events import EVENT_TYPES

# The catalog (names, meanings, model features, event families, the window spec) is its own module;
# its names are re-exported here, where most callers look for them.
from mcp_training_dagster.serving.feature_catalog import (
    AGGREGATE_FEATURES,
    DEAUTH_EVENTS,
    DEVICE_ENTITY,
    ENTITY_KINDS,
    FAILURE_EVENTS,
    FEATURE_COLUMNS,
    FEATURE_DOCS,
    JOIN_EVENTS,
    KEY_COLUMNS,
    MODEL_FEATURES,
    RADIO_CONTROL_EVENTS,
    RADIO_FAULT_EVENTS,
    RECORD_COLUMNS,
    RESTART_EVENTS,
    SEVERITY_FEATURES,
    WindowSpec,
)
from mcp_training_dagster.serving.record_flags import (
    after_restart,
    event_bits,
    repeat_radio_errors,
    station_sequence_flags,
)
from mcp_training_dagster.serving.window_arrays import device_time_order, first_appearance, range_max, stable_order

__all__ = [
    "AGGREGATE_FEATURES",
    "DEAUTH_EVENTS",
    "DEVICE_ENTITY",
    "ENTITY_KINDS",
    "FAILURE_EVENTS",
    "FEATURE_COLUMNS",
    "FEATURE_DOCS",
    "JOIN_EVENTS",
    "KEY_COLUMNS",
    "MODEL_FEATURES",
    "RADIO_CONTROL_EVENTS",
    "RADIO_FAULT_EVENTS",
    "RECORD_COLUMNS",
    "RESTART_EVENTS",
    "SEVERITY_FEATURES",
    "WindowSpec",
    "build_windows",
    "empty_windows",
]


def empty_windows() -> pd.DataFrame:
    cols = {c: pd.Series(dtype="str") for c in ("device", "entity_kind", "entity")}
    cols["window_start"] = pd.Series(dtype="datetime64[us]")
    cols.update({f: pd.Series(dtype="float32") for f in FEATURE_COLUMNS})
    return pd.DataFrame(cols)


def _event_codes(event_type: pd.Series) -> np.ndarray:
    """Codes by event NAME in catalog order (a categorical's own order may differ); unknown names
    are an error, not silently some other event."""
    if isinstance(event_type.dtype, pd.CategoricalDtype) and list(event_type.cat.categories) == list(EVENT_TYPES):
        codes = event_type.cat.codes.to_numpy(np.int16)
    else:
        codes = pd.Categorical(event_type.astype("str"), categories=EVENT_TYPES).codes.astype(np.int16)
    if (codes < 0).any():
        unknown = sorted(set(event_type[codes < 0].astype("str")))[:5]
        raise ValueError(f"event types not in the catalog: {unknown}")
    return codes


def _str_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (int32, first-appearance order, missing -> -1) and the distinct strings.

    An Arrow-backed ``str`` column (what validation writes) is dictionary-encoded by Arrow directly, as
    ``pd.factorize`` does for it, minus pandas' wrapping; anything else goes through ``pd.factorize``."""
    if isinstance(values.array, pd.arrays.ArrowStringArray) and len(values):
        data = pa.array(values.array)  # the column's Arrow data, not a copy
        encoded = data.dictionary_encode()
        combined = encoded.combine_chunks() if isinstance(encoded, pa.ChunkedArray) else encoded
        indices = combined.indices
        if indices.null_count:
            indices = indices.fill_null(-1)
        return indices.to_numpy(zero_copy_only=False).astype(np.int32), combined.dictionary.to_numpy(
            zero_copy_only=False
        )
    codes, uniques = pd.factorize(values.astype("str"))
    return np.asarray(codes).astype(np.int32), np.asarray(uniques, dtype=object)


NS_FROM_US_LIMIT = np.iinfo(np.int64).max // 1000  # microseconds beyond this overflow as nanoseconds


def _timestamps_ns(timestamps: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds (read only). A naive microsecond column (what validation writes)
    without NaT is scaled here, the values the cast to nanoseconds gives; anything else is cast by pandas."""
    values = timestamps.to_numpy()
    if values.dtype == np.dtype("datetime64[us]") and len(values):
        us = values.view(np.int64)
        if -NS_FROM_US_LIMIT < us.min() and us.max() < NS_FROM_US_LIMIT:  # NaT is the int64 minimum
            return us * 1000
    return timestamps.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _merge_uniques(parts: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """A factorization over the concatenation of parts, from each part's own distinct values
    (in first-appearance order): per part the map local code -> combined code, and the uniques."""
    combined = pd.Index([], dtype=object)
    maps = []
    for uniq in parts:
        uniq = np.asarray(uniq, dtype=object)
        if len(combined):
            idx = np.asarray(combined.get_indexer(pd.Index(uniq, dtype=object)), dtype=np.int64)
        else:
            idx = np.full(len(uniq), -1, dtype=np.int64)
        new = idx < 0
        idx[new] = len(combined) + np.arange(int(new.sum()), dtype=np.int64)
        combined = combined.append(pd.Index(uniq[new], dtype=object))
        maps.append(idx)
    return maps, np.asarray(combined, dtype=object)


def _str_column(uniques: np.ndarray, codes: np.ndarray) -> pd.Series:
    """Strings back from codes (a ``str`` column), built by Arrow from the distinct values. The key
    columns come in runs (rows are sorted by kind, device, entity), so the strings are taken once per
    run and the runs decoded (a copy per row, no lookup per row) when runs are few."""
    values = pa.array(np.asarray(uniques, dtype=object), type=pa.large_string())
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    if len(codes) and len(change) < RUNS_PER_ROW_LIMIT * len(codes):
        ends = pa.array(np.r_[change, len(codes)].astype(np.int64))
        runs = values.take(pa.array(codes[np.r_[0, change]]))
        arr = pc.run_end_decode(pa.RunEndEncodedArray.from_arrays(ends, runs))
    else:
        arr = values.take(pa.array(codes))
    return pd.Series(pd.arrays.ArrowStringArray(arr, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))


RUNS_PER_ROW_LIMIT = 0.25  # _str_column decodes runs while they are fewer than this per row


def _locally_administered(macs: np.ndarray) -> np.ndarray:
    """Bit 1 of the first octet marks randomised/private MACs (phones rotate these).

    Called on the distinct MACs only. Two ASCII hex digits (every MAC validation keeps) are read by
    table lookup on their code points, anything else by ``int(mac[:2], 16)`` as before."""

    def la(mac: str) -> bool:
        try:
            return bool(int(mac[:2], 16) & 0x02)
        except ValueError:
            return False

    heads = np.asarray([str(m) for m in macs], dtype="U2").view(np.uint32).reshape(-1, 2)
    digit = np.full(128, -1, dtype=np.int16)
    for ch in "0123456789abcdefABCDEF":
        digit[ord(ch)] = int(ch, 16)
    ascii_heads = np.minimum(heads, 127)
    hex_heads = (heads < 128).all(axis=1) & (digit[ascii_heads] >= 0).all(axis=1)
    out = (digit[ascii_heads[:, 1]] & 0x02) > 0
    for i in np.flatnonzero(~hex_heads):
        out[i] = la(str(macs[i]))
    return out


def build_windows(records: pd.DataFrame, spec: WindowSpec | None = None) -> pd.DataFrame:
    """Aggregate validated records into feature windows (one row per entity and window), then add
    the features that look back in time (quiet device windows, trailing activity, device context)."""
    spec = spec or WindowSpec()
    if records.empty:
        return empty_windows()
    agg = _aggregate(records, spec)
    if agg is None:
        return empty_windows()
    return _with_history(agg, spec)


class _Layout(NamedTuple):
    """Where every window goes in the table: windows with records and the quiet device windows after
    them, in (kind, device, entity, time) order; the per-row arrays are in that order."""

    n: int  # rows of the table
    real_at: np.ndarray  # row of each window with records (aggregation order)
    quiet_at: np.ndarray  # row of each quiet window
    q_silence: np.ndarray  # a quiet window's silence_before_s (float32)
    kind: np.ndarray  # per row: index into ENTITY_KINDS
    dev: np.ndarray  # per row: code into dev_uniques
    ent: np.ndarray  # per row: code into ent_uniques
    dev_code: np.ndarray  # per row: device in order of first appearance (the sort key)
    ent_code: np.ndarray  # per row: entity in order of first appearance (the sort key)
    win: np.ndarray  # per row: window index, window_start // length
    gap_from: np.ndarray  # per row: time of the entity's record before the window's first one (NO_GAP: none)


class _Aggregated(NamedTuple):
    """The table block (rows x FEATURE_COLUMNS, float32, column-major) with the aggregate columns filled
    in final row order, where they are laid out, and the distinct strings the codes stand for."""

    out: np.ndarray
    layout: _Layout
    dev_uniques: np.ndarray
    ent_uniques: np.ndarray


def _aggregate(records: pd.DataFrame, spec: WindowSpec) -> _Aggregated | None:
    """The table block with every aggregate feature (None: no windows): records grouped per (kind,
    device, entity, window), the rows laid out (:func:`_layout`: those windows plus the quiet device
    windows), then each feature written into its column at its windows' rows. Arrays only: the table
    (a DataFrame) is built once, at the end of :func:`_with_history`."""
    kinds = [(k, kind) for k, kind in enumerate(ENTITY_KINDS) if kind in spec.entities]
    if not kinds:
        raise ValueError("no entity kinds to build windows for (model.windows.entities is empty)")

    # Strings are encoded once, on the records, as integer codes (missing -> -1).
    dev_rec, dev_uniques = _str_codes(records["device"])
    if len(dev_rec) and dev_rec.min() < 0:
        raise ValueError("records without a device cannot be windowed (validation quarantines them)")
    mac_rec, mac_uniques = _str_codes(records["station_mac"])
    iface_rec, iface_uniques = _str_codes(records["interface"])
    ts_rec = _timestamps_ns(records["timestamp"])
    event_rec = _event_codes(records["event_type"])
    sev_rec = records["severity"].to_numpy(dtype=np.int16)
    n_rec = len(ts_rec)

    # Device codes: first appearance over the concatenated kinds' rows (in record order).
    if kinds[0][1] != "device":
        parts = [dev_rec[(mac_rec if kind == "station" else iface_rec) >= 0] for _, kind in kinds]
        seen = np.asarray(pd.unique(np.concatenate(parts)), dtype=np.int64)
        remap = np.full(len(dev_uniques), len(seen), dtype=np.int64)  # devices without rows: last
        remap[seen] = np.arange(len(seen))
        dev_rec = remap[dev_rec]
        dev_uniques = np.concatenate([dev_uniques[seen], dev_uniques[np.setdiff1d(np.arange(len(dev_uniques)), seen)]])

    # Rows of each kind are sorted by (device, entity, time), stably (ties keep record order).
    # Putting the records in (device, time) order first makes that a sort on (device, entity) alone,
    # the device rows need no sort, and every gather of per-row values below stays inside one
    # device's block of records (cache-sized) instead of jumping across all of them.
    n_dev = max(len(dev_uniques), 1)
    by_device = device_time_order(dev_rec, ts_rec, n_dev)
    if by_device is not None:
        dev_rec, mac_rec, iface_rec = dev_rec[by_device], mac_rec[by_device], iface_rec[by_device]
        ts_rec, event_rec, sev_rec = ts_rec[by_device], event_rec[by_device], sev_rec[by_device]
        del by_device

    # Entity codes: a factorization over the concatenated kinds' entity strings.
    part_uniques, part_local, part_rows = [], [], []
    for _, kind in kinds:
        if kind == "device":
            part_uniques.append(np.asarray([DEVICE_ENTITY], dtype=object))
            part_rows.append(None)
            part_local.append(None)
        else:
            codes, uniq = (mac_rec, mac_uniques) if kind == "station" else (iface_rec, iface_uniques)
            sel = np.flatnonzero(codes >= 0)
            part_uniques.append(uniq)
            part_rows.append(sel)
            part_local.append(codes[sel])
    ent_maps, ent_uniques = _merge_uniques(part_uniques)
    n_ent = max(len(ent_uniques), 1)

    idx_parts: list[np.ndarray | None] = []  # per kind, its rows' records (None: all records, in order)
    ent_parts, kind_parts = [], []
    station_rows = None  # rows with a station MAC in (device, station, time) order
    for (kind_code, kind_name), sel, local, emap in zip(kinds, part_rows, part_local, ent_maps):
        if sel is None:
            idx_parts.append(None)  # the records are in (device, time) order already
            ent_parts.append(np.full(n_rec, emap[0], dtype=np.int32))
            kind_parts.append(np.full(n_rec, kind_code, dtype=np.int8))
        else:
            ent = emap.astype(np.int32)[local]
            if len(emap) < 2 or (emap[1:] > emap[:-1]).all():
                # The merged codes keep the local order: the same sort on the (fewer) local codes.
                o = stable_order(dev_rec[sel], n_dev, local, max(len(emap), 1))
            else:
                o = stable_order(dev_rec[sel], n_dev, ent, n_ent)
            idx_parts.append(sel[o])
            ent_parts.append(ent[o])
            kind_parts.append(np.full(len(o), kind_code, dtype=np.int8))
            if kind_name == "station":
                station_rows = sel[o]
    if station_rows is None:
        sel = np.flatnonzero(mac_rec >= 0)
        station_rows = sel[stable_order(dev_rec[sel], n_dev, mac_rec[sel], max(len(mac_uniques), 1))]
    win_rec = ts_rec // spec.length_ns
    station_seq = _StationSequence(station_rows, dev_rec[station_rows], mac_rec[station_rows], win_rec[station_rows])
    del station_rows
    bits_rec = event_bits(event_rec)
    repeat_leave_rec, unannounced_rec = station_sequence_flags(
        station_seq.rows, station_seq.dev, station_seq.mac, ts_rec, bits_rec
    )
    unannounced_rec &= ~after_restart(station_seq.rows, station_seq.dev, dev_rec, bits_rec)
    repeat_radio_rec = repeat_radio_errors(dev_rec, ts_rec, bits_rec)
    del bits_rec
    del part_rows, part_local
    # Per-row arrays (about three rows per record), gathered kind by kind straight into place (no
    # index array over all rows): each is dropped as soon as it is used up, since a fresh process
    # pays for every new page (the peak, not the arithmetic, is most of its cost).
    n = sum(n_rec if idx is None else len(idx) for idx in idx_parts)
    if n == 0:
        return None
    ent = np.concatenate(ent_parts)
    kind = np.concatenate(kind_parts)
    del ent_parts, kind_parts

    rows = _RecordRows(idx_parts, n_rec, n)
    rows_of = rows.gather

    dev, ts, win = rows_of(dev_rec), rows_of(ts_rec), rows_of(win_rec)

    new_entity = np.empty(n, dtype=bool)
    new_entity[0] = True
    np.not_equal(kind[1:], kind[:-1], out=new_entity[1:])
    new_entity[1:] |= (dev[1:] != dev[:-1]) | (ent[1:] != ent[:-1])
    new_group = new_entity.copy()
    new_group[1:] |= win[1:] != win[:-1]
    starts = np.flatnonzero(new_group)
    # Where each kind's rows are, and the interface rows' entity numbers (rows of one are contiguous).
    part_at = dict(
        zip((name for _, name in kinds), np.cumsum([0] + [n_rec if i is None else len(i) for i in idx_parts]))
    )
    iface_part = None
    if "interface" in part_at:
        lo = int(part_at["interface"])
        records = idx_parts[[name for _, name in kinds].index("interface")]
        assert records is not None
        iface_part = (lo, records, np.cumsum(new_entity[lo:], dtype=np.int32) - 1)

    # Group-level facts first: they decide the layout, and every feature is then written in final row order.
    cap_s = float(spec.silence_cap_hours) * 3600.0
    prev_same_entity = ~new_entity[starts]
    ts_prev = ts[starts - 1]  # the row before each window's first (the first row's "previous" is unused)
    gap = np.minimum((ts[starts] - ts_prev) / 1e9, cap_s)
    gap = np.where(prev_same_entity, gap, cap_s)
    gap_from = np.where(prev_same_entity, ts_prev, NO_GAP)
    del ts_prev
    kind_s = kind[starts]
    group_size = np.diff(np.r_[starts, n])
    last_ts = ts[starts + (group_size - 1)]
    del prev_same_entity
    layout = _layout(kind_s, dev[starts], ent[starts], win[starts], last_ts, gap_from, spec)
    del dev, ent, last_ts, gap_from, new_entity
    # Burst runs (equal (window, sub-bucket)) are contiguous because rows are time-sorted; the
    # sub-bucket is computed in place of the timestamps, which are used up.
    new_run = new_group.copy()
    bucket = np.floor_divide(ts, int(spec.burst_seconds) * 1_000_000_000, out=ts)
    new_run[1:] |= bucket[1:] != bucket[:-1]
    del bucket, ts
    table = _Table(layout)
    row_at = np.repeat(layout.real_at, group_size)  # per aggregated record: its window's row in the table
    del starts

    flags = (repeat_leave_rec, repeat_radio_rec, unannounced_rec)
    unkeyed = (mac_rec < 0) & (iface_rec < 0)
    _record_counts(table, row_at, group_size, rows, event_rec, sev_rec, flags, unkeyed)
    del flags, unkeyed, group_size, repeat_leave_rec, repeat_radio_rec, unannounced_rec
    _station_features(table, row_at, station_seq, part_at, iface_part, mac_rec, win, mac_uniques)
    del station_seq, iface_part, win
    iface = rows_of(iface_rec)
    _interface_and_burst_features(table, row_at, iface, len(iface_uniques), new_group, new_run)
    del iface, new_group, new_run

    # Silence before the window: gap from the entity's previous record to the window's first one.
    table.put("silence_before_s", gap, quiet=layout.q_silence)
    # The kind columns straight from the rows' kinds (quiet windows are device windows): no scatter.
    for i, k in enumerate(ENTITY_KINDS):
        table.column(f"kind_{k}")[:] = layout.kind == i
    return _Aggregated(table.out, layout, dev_uniques, ent_uniques)


class _RecordRows:
    """Where the records' rows are: per kind (in row order), the records of its rows (``parts``; None:
    all records, in order), so a kind's rows are a slice of the table's per-row arrays."""

    def __init__(self, parts: list[np.ndarray | None], n_rec: int, n: int) -> None:
        self.parts, self.n_rec, self.n = parts, n_rec, n
        self._row_in_part: dict[int, np.ndarray] = {}

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Per-record ``values`` at the rows: one pass writing each kind's slice in place, no index over all rows."""
        out = np.empty(self.n, dtype=values.dtype)
        at = 0
        for idx in self.parts:
            if idx is None:
                out[at : at + len(values)] = values
                at += len(values)
            else:
                np.take(values, idx, out=out[at : at + len(idx)], mode="clip")  # valid indices: no checked copy
                at += len(idx)
        return out

    def rows_with(self, flag: np.ndarray) -> np.ndarray:
        """The rows of the records where ``flag`` (per record) is set: for a few flagged records, cheaper
        than gathering the flag to every row and picking the rows out."""
        records = np.flatnonzero(flag)
        found = []
        at = 0
        for k, idx in enumerate(self.parts):
            if idx is None:
                found.append(records + at)
                at += self.n_rec
                continue
            if k not in self._row_in_part:
                row_in_part = np.full(self.n_rec, -1, dtype=np.int64)
                row_in_part[idx] = np.arange(len(idx))
                self._row_in_part[k] = row_in_part
            pos = self._row_in_part[k][records]
            found.append(pos[pos >= 0] + at)
            at += len(idx)
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _record_counts(
    table: _Table,
    row_at: np.ndarray,
    group_size: np.ndarray,
    rows: _RecordRows,
    event: np.ndarray,
    sev: np.ndarray,
    flags: tuple[np.ndarray, np.ndarray, np.ndarray],
    unkeyed: np.ndarray,
) -> None:
    """Records per window: all of them, per event type and severity bucket, WiFi errors, the flagged
    ones (repeat leaves, repeat radio errors, unannounced joins: ``flags``) and the unkeyed ones. All of
    them per window is its size (``group_size``, aggregation order). The other values are per record
    (``event``: catalog codes, see :func:`_event_codes`), classified once per record and then spread to
    its ``rows``, each record counting in each of its windows."""
    table.put("n_records", group_size)
    table.count_codes([f"ev_{t}" for t in EVENT_TYPES], row_at, rows.gather(event))
    sev_bucket = rows.gather(_severity_bucket(sev))
    if (sev_bucket >= 0).all():
        table.count_codes([name for name, _, _ in SEVERITY_FEATURES], row_at, sev_bucket)
    else:
        has_bucket = np.flatnonzero(sev_bucket >= 0)
        table.count_codes([name for name, _, _ in SEVERITY_FEATURES], row_at[has_bucket], sev_bucket[has_bucket])
        del has_bucket
    del sev_bucket
    wifi_error = (sev >= 0) & (sev <= 3) & (event != EVENT_TYPES.index("other_process"))
    table.count("wifi_errors", row_at[rows.rows_with(wifi_error)])
    del wifi_error
    for name, flag in zip(("repeat_leaves", "repeat_radio_errors", "unannounced_joins"), flags):
        table.count(name, row_at[rows.rows_with(flag)])
    table.count("n_unkeyed", row_at[rows.rows_with(unkeyed)])


class _StationSequence(NamedTuple):
    """The records with a station in (device, station, time) order (``rows``) and their device, station
    and window: the order of the device rows with a station (the device rows are the records) and of
    the station rows (those records, sorted the same way)."""

    rows: np.ndarray
    dev: np.ndarray
    mac: np.ndarray
    win: np.ndarray


def _station_runs(same_entity: np.ndarray, mac: np.ndarray, win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows in (entity, station, time) order (``same_entity``: a row's entity is its predecessor's),
    the first row of each (entity, window, station) and whether that station's previous row in the
    entity is in the window just before."""
    same_station = np.zeros(len(mac), dtype=bool)
    same_station[1:] = same_entity[1:] & (mac[1:] == mac[:-1])
    first = ~same_station
    first[1:] |= win[1:] != win[:-1]
    continues = np.zeros(len(mac), dtype=bool)
    continues[1:] = same_station[1:] & (win[1:] == win[:-1] + 1)
    fi = np.flatnonzero(first)
    return fi, continues[fi]


def _station_features(
    table: _Table,
    row_at: np.ndarray,
    seq: _StationSequence,
    part_at: dict[str, int],
    iface_part: tuple[int, np.ndarray, np.ndarray] | None,
    mac_rec: np.ndarray,
    win: np.ndarray,
    mac_uniques: np.ndarray,
) -> None:
    """Distinct stations (and randomised ones) per window, and stations new since the previous window,
    from the rows with a station ordered by (entity, station, time), so a (window, station) pair is a run.

    Device and station rows need no sort: in that order both are the station sequence ``seq`` (a device
    row is its record, ``part_at``: where each kind's rows begin; a station row is the record at the same
    place of the station rows), so its runs are found once and placed twice. The interface rows with a
    station (``iface_part``: their first row, records and entity numbers) are sorted by (entity, station)."""
    la = _locally_administered(mac_uniques)
    p_rows, p_macs, p_seen = [], [], []
    if len(seq.rows):
        same_device = np.zeros(len(seq.rows), dtype=bool)
        same_device[1:] = seq.dev[1:] == seq.dev[:-1]
        fi, seen = _station_runs(same_device, seq.mac, seq.win)
        del same_device
        p_mac = seq.mac[fi]
        if "device" in part_at:
            p_rows.append(row_at[seq.rows[fi] + part_at["device"]])
            p_macs.append(p_mac)
            p_seen.append(seen)
        if "station" in part_at:
            p_rows.append(row_at[fi + part_at["station"]])
            p_macs.append(p_mac)
            p_seen.append(seen)
    if iface_part is not None:
        lo, records, entity = iface_part
        keyed = np.flatnonzero(mac_rec[records] >= 0)
        order = stable_order(
            entity[keyed], int(entity[-1]) + 1 if len(entity) else 1, mac_rec[records[keyed]], max(len(mac_uniques), 1)
        )
        h = keyed[order]
        del keyed, order
        h_entity, h_mac = entity[h], mac_rec[records[h]]
        h += lo
        same_entity = np.zeros(len(h), dtype=bool)
        same_entity[1:] = h_entity[1:] == h_entity[:-1]
        fi, seen = _station_runs(same_entity, h_mac, win[h])
        p_rows.append(row_at[h[fi]])
        p_macs.append(h_mac[fi])
        p_seen.append(seen)
    p_row = np.concatenate(p_rows) if p_rows else np.zeros(0, dtype=row_at.dtype)
    p_mac = np.concatenate(p_macs) if p_macs else np.zeros(0, dtype=np.int32)
    seen_just_before = np.concatenate(p_seen) if p_seen else np.zeros(0, dtype=bool)
    table.count("n_stations", p_row)
    table.count("n_new_stations", p_row[~seen_just_before])
    table.count("n_random_macs", p_row[la[p_mac]])


PRESENCE_BYTES_PER_ROW = 16  # the interface presence table up to this many bytes per record and table row


def _interface_and_burst_features(
    table: _Table, row_at: np.ndarray, iface: np.ndarray, n_iface: int, new_group: np.ndarray, new_run: np.ndarray
) -> None:
    """Distinct interfaces per window; the longest run of records in one burst sub-bucket (``new_run``
    starts a run of equal (window, sub-bucket): rows are time-sorted; ``new_group`` starts a window) and
    the sub-buckets with records.

    Distinct interfaces: one byte per (row, interface) marks it present, byte 0 of a row standing for
    "no interface" (code -1) and left out, a row's bytes padded to whole 64-bit words, so a row's count
    is the sum of its bytes without byte 0 (no pass picks the records out): a word's byte sum is the top
    byte of the word times 0x0101010101010101 (at most 8, so no byte carries into the next)."""
    n, n_rows = len(row_at), table.layout.n
    width = 8 * (n_iface // 8 + 1)  # bytes per row: "none" and the interfaces, in whole words
    if n_rows * width <= PRESENCE_BYTES_PER_ROW * (n + n_rows):
        present = np.zeros(n_rows * width, dtype=np.uint8)
        cell = row_at.astype(np.int64)
        cell *= width
        cell += iface
        cell += 1
        present[cell] = 1
        del cell
        words = present.view(np.uint64).reshape(n_rows, width // 8)
        words[:, 0] &= np.frombuffer(bytes([0] + [0xFF] * 7), dtype=np.uint64)[0]  # byte 0 cleared, any byte order
        words *= np.uint64(0x0101010101010101)
        words >>= np.uint64(56)
        table.column("n_interfaces")[:] = words[:, 0] if width == 8 else words.sum(axis=1)
    else:
        has_iface = np.flatnonzero(iface >= 0)
        n_if = max(n_iface, 1)
        ipair = np.unique(row_at[has_iface].astype(np.int64) * n_if + iface[has_iface])
        table.column("n_interfaces")[:] = np.bincount(ipair // n_if, minlength=n_rows)

    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.r_[run_start, n])
    first_run_of_group = np.flatnonzero(new_group[run_start])  # a window's first record starts a run
    table.put("peak_burst", np.maximum.reduceat(run_len, first_run_of_group))
    table.put("active_buckets", np.diff(np.r_[first_run_of_group, len(run_start)]))


class _Table:
    """The output block (rows x FEATURE_COLUMNS, float32, column-major), filled a column at a time.

    Counts are ``np.add.at`` (or ``bincount``) over each record's final row, so a column is written once,
    in place; per-window values are put at their windows' rows. Quiet device windows get 0 unless told."""

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        # Zeros from the allocator (fresh pages are zero already): count columns need no separate fill.
        self.out = np.zeros((layout.n, len(FEATURE_COLUMNS)), dtype=np.float32, order="F")
        self.col = {name: i for i, name in enumerate(FEATURE_COLUMNS)}
        self._real_at = layout.real_at.astype(np.intp)  # an index array converted once, not per column

    def column(self, name: str) -> np.ndarray:
        return self.out[:, self.col[name]]

    def count(self, name: str, rows: np.ndarray) -> None:
        """How many of ``rows`` (one per counted record: its row) fall on each row: float32 ones added into
        the zero column (unbuffered ``np.add.at``: no integer column to allocate and convert, and faster
        than ``bincount`` at any size here), exact below 2**24 rows in all; ``bincount`` beyond."""
        if len(rows) < EXACT_FLOAT_COUNT:
            np.add.at(self.column(name), rows, np.float32(1))
        else:
            self.column(name)[:] = np.bincount(rows, minlength=self.layout.n)

    def put(self, name: str, per_window: np.ndarray, quiet: np.ndarray | float = 0.0) -> None:
        """One value per window with records (aggregation order) and ``quiet`` for the quiet windows."""
        target = self.column(name)
        target[self._real_at] = per_window
        target[self.layout.quiet_at] = quiet

    def count_codes(self, names: list[str], row: np.ndarray, code: np.ndarray) -> None:
        """Column ``names[c]``: records with code ``c`` per row, from each record's row ``row`` (records
        in aggregation order: a window's records are contiguous). Needs ``n_records`` filled first.

        One unbuffered ``np.add.at`` of float32 ones into the column-major block, every column at once: a
        single pass over the records. Adding ones in float32 is exact while a window has fewer than 2**24
        records (``n_records`` bounds every cell); beyond that the counts are made in integers and
        rounded once, as a float32 column always held them (:func:`_fill_counts`)."""
        columns = np.asarray([self.col[name] for name in names], dtype=np.int64)
        if not len(row):
            return
        if self.column("n_records").max() >= EXACT_FLOAT_COUNT:
            # Each record's group (aggregation order) from its row: non-decreasing, as _fill_counts needs.
            group_of_row = np.empty(self.layout.n, dtype=np.int64)
            group_of_row[self.layout.real_at] = np.arange(len(self.layout.real_at))
            _fill_counts(self.out, list(columns), group_of_row[row], code, self.layout.real_at)
            return
        flat = self.out.reshape(-1, order="F")  # a view: the block is column-major
        if (np.diff(columns) == 1).all():  # consecutive columns: the code's column is an offset
            cell = code.astype(np.int64)
            cell += columns[0]
        else:
            cell = columns[code]
        cell *= self.layout.n
        cell += row
        np.add.at(flat, cell, np.float32(1))


def _layout(
    kind: np.ndarray,
    dev: np.ndarray,
    ent: np.ndarray,
    win: np.ndarray,
    last_ts: np.ndarray,
    gap_from: np.ndarray,
    spec: WindowSpec,
) -> _Layout:
    """The table's rows: the windows with records (per-window arrays in aggregation order) plus the quiet
    device windows, sorted by (kind, device, entity, time), device and entity in order of first appearance.

    Quiet device windows: after each device window, the empty windows up to its next one (at most the
    silence cap), so a router that stops logging is visible as windows with no records."""
    L = spec.length_ns
    window_s = L / 1e9
    cap_s = float(spec.silence_cap_hours) * 3600.0
    kind = kind.astype(np.int8)
    n_real = len(win)
    src = np.zeros(0, dtype=np.int64)
    q_win = np.zeros(0, dtype=win.dtype)
    q_silence = np.zeros(0, dtype=np.float32)
    d = np.flatnonzero(kind == ENTITY_KINDS.index("device"))
    if len(d) > 1:
        same = dev[d[1:]] == dev[d[:-1]]
        gap = np.where(same, win[d[1:]] - win[d[:-1]] - 1, 0)
        n_fill = np.minimum(gap, int(cap_s // window_s)).astype(np.int64)
        src = np.repeat(d[:-1], n_fill)
        if len(src):
            step = np.arange(len(src)) - np.repeat(np.cumsum(n_fill) - n_fill, n_fill) + 1
            q_win = win[src] + step
            q_silence = np.minimum(((q_win + 1) * L - last_ts[src]) / 1e9, cap_s).astype(np.float32)
    if len(src):
        kind, dev, ent, win = np.r_[kind, kind[src]], np.r_[dev, dev[src]], np.r_[ent, ent[src]], np.r_[win, q_win]
        gap_from = np.r_[gap_from, np.full(len(src), NO_GAP, dtype=np.int64)]
    dev_code, ent_code = first_appearance(dev), first_appearance(ent)
    order = _row_order(kind, dev_code, ent_code, win)
    # Row numbers in 32 bits while they fit: every record carries its row, so this halves that array.
    row_type = np.int32 if len(order) < np.iinfo(np.int32).max else np.int64
    position = np.empty(len(order), dtype=row_type)
    position[order] = np.arange(len(order), dtype=row_type)
    return _Layout(
        n=len(order),
        real_at=position[:n_real],
        quiet_at=position[n_real:],
        q_silence=q_silence,
        kind=kind[order],
        dev=dev[order],
        ent=ent[order],
        dev_code=dev_code[order],
        ent_code=ent_code[order],
        win=win[order],
        gap_from=gap_from[order],
    )


def _fill_counts(feat: np.ndarray, columns: list[int], gid: np.ndarray, code: np.ndarray, place: np.ndarray) -> None:
    """``feat[place[g], columns[c]]`` = records with group ``g`` (non-decreasing) and code ``c``
    (0..len(columns)-1); every other row is left as it is (zero: the table starts as zeros).

    The integer path of :meth:`_Table.count_codes` (a window of 2**24 records or more, where adding
    float32 ones would stop being exact): one radix sort by code (a stable sort of small integers) keeps
    each code's groups in order, so the (code, group) pairs are runs and their counts are run lengths,
    written straight into the columns (and rounded to float32 once, as a bincount per code was)."""
    if not len(gid):
        return
    by_code = np.argsort(code, kind="stable")
    g, c = gid[by_code], code[by_code]
    new_pair = np.empty(len(g), dtype=bool)
    new_pair[0] = True
    np.not_equal(g[1:], g[:-1], out=new_pair[1:])
    new_pair[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(new_pair)
    counts = np.diff(np.r_[starts, len(g)])
    column_of = np.asarray(columns, dtype=np.int64)[c[starts]]
    flat = feat.reshape(-1, order="F")  # a view: feat is column-major
    flat[column_of * feat.shape[0] + place[g[starts]]] = counts


def _severity_bucket(sev: np.ndarray) -> np.ndarray:
    """Per record, the index of its SEVERITY_FEATURES bucket (-1: none), by table lookup instead of a
    pair of comparisons per bucket."""
    lo = min(b[1] for b in SEVERITY_FEATURES) - 1
    hi = max(b[2] for b in SEVERITY_FEATURES) + 1
    table = np.full(hi - lo + 1, -1, dtype=np.int8)
    for k, (_, first, last) in enumerate(SEVERITY_FEATURES):
        if (table[first - lo : last - lo + 1] >= 0).any():
            raise ValueError("severity buckets overlap: a record would count in two")
        table[first - lo : last - lo + 1] = k
    return table[np.clip(sev, lo, hi) - lo]


SILENCE_FACTOR = 1.5  # silent_beyond_usual: a gap this many times the device's longest gap of the day before
UNSEEN_HISTORY_S = 3600  # dev_unseen_stations counts once the device has this much history
NO_GAP = np.iinfo(np.int64).min


def _with_history(agg: _Aggregated, spec: WindowSpec) -> pd.DataFrame:
    """Add trailing activity, the usual gap and device context to the table laid out by :func:`_layout`
    (quiet device windows included), then the key columns.

    Everything here is a pure function of the entity's records in and before the window, computed
    from the windows themselves (windows are clock-aligned, so "the 24 h before" is a whole number
    of windows) with sorted keys, ``searchsorted`` and a (device, window) slot table: no per-window
    loops. Fills the table block in place, so no wide table is copied, reordered or re-encoded."""
    L = spec.length_ns
    window_s = L / 1e9
    cap_s = float(spec.silence_cap_hours) * 3600.0
    lay, out = agg.layout, agg.out
    kind_code, dev_code, ent_code, win, gap_from = lay.kind, lay.dev_code, lay.ent_code, lay.win, lay.gap_from
    n = lay.n
    out_col = {name: i for i, name in enumerate(FEATURE_COLUMNS)}

    def feature(name: str) -> np.ndarray:
        return out[:, out_col[name]]

    n_records = feature("n_records").astype(np.float64)

    # Trailing activity: records of the same entity in the windows of the history before this one.
    new_entity = np.r_[
        True, (kind_code[1:] != kind_code[:-1]) | (dev_code[1:] != dev_code[:-1]) | (ent_code[1:] != ent_code[:-1])
    ]
    eg = np.cumsum(new_entity) - 1
    lag = int(round(spec.history_hours * 3600 / window_s))
    offset = win - win.min()
    span = int(offset.max()) + 1
    key = eg * span + offset
    before = np.r_[0.0, np.cumsum(n_records)]
    # key is sorted and unique: each row is the first with its key, so the windows before it end at the row
    lo = np.searchsorted(key, eg * span + np.maximum(offset - lag, 0), side="left")
    expected = (before[:n] - before[lo]) / lag
    silence = feature("silence_before_s").astype(np.float64)
    out[:, out_col["expected_records"]] = expected.astype(np.float32)
    out[:, out_col["missed_records"]] = (silence * expected / window_s).astype(np.float32)

    # Event families.
    for name, events in (
        ("grp_joins", JOIN_EVENTS),
        ("grp_leaves", DEAUTH_EVENTS),
        ("grp_failures", FAILURE_EVENTS),
        ("grp_radio_control", RADIO_CONTROL_EVENTS),
        ("grp_radio_faults", RADIO_FAULT_EVENTS),
    ):
        _sum_columns(out, [out_col[f"ev_{t}"] for t in events], into=out_col[name])

    # Silence against the device's own usual gap: the longest gap between two of its records in the
    # history before the window (a gap that began before the history, the tail of an earlier outage,
    # does not count: only its part inside would be seen, and it is not the device's normal rhythm).
    # These and the device context are written straight into their columns (zeros until then).
    rel = {name: feature(name) for name in ("gap_vs_usual", "silence_excess", "silent_beyond_usual")}
    dv = np.flatnonzero(kind_code == ENTITY_KINDS.index("device"))
    if len(dv):
        ended = (n_records[dv] > 0) & ~new_entity[dv]
        completed = np.where(ended, silence[dv], 0.0)
        first_win = offset[np.flatnonzero(new_entity)][eg[dv]]
        has_history = offset[dv] - first_win >= lag
        d_lo = np.searchsorted(key[dv], eg[dv] * span + np.maximum(offset[dv] - lag, 0), side="left")
        d_hi = np.arange(len(dv))  # the windows strictly before (key is sorted and unique)
        # Only the first gap ending in the history can have begun before it: take it apart.
        nxt = np.minimum.accumulate(np.where(ended, np.arange(len(dv)), len(dv))[::-1])[::-1]
        first_end = np.r_[nxt, len(dv)][d_lo]
        inside = first_end < d_hi
        fe = np.minimum(first_end, len(dv) - 1)
        history_start = (win[dv] - lag) * L
        first_gap = np.where(inside & (gap_from[dv][fe] >= history_start), completed[fe], 0.0)
        rest = range_max(completed, np.minimum(first_end + 1, d_hi), d_hi)
        usual = np.maximum(np.maximum(rest, first_gap), window_s)
        sil = silence[dv]
        excess = np.maximum(sil - usual, 0.0) / window_s
        rel["gap_vs_usual"][dv] = np.where(has_history, sil / usual, 0.0)
        rel["silence_excess"][dv] = np.where(has_history, excess, 0.0)
        rel["silent_beyond_usual"][dv] = has_history & (sil > SILENCE_FACTOR * usual)

    # Device context: the device row's own figures and its stations' windows, joined on (device, window)
    # through one slot per (device, window): a table lookup and ``bincount``, no search.
    dev_first = np.full(int(dev_code.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(dev_first, dev_code, offset)
    slot, n_slots = _device_window_slots(dev_code, offset, dev_first)
    ctx = {name: feature(name) for name in FEATURE_COLUMNS if name.startswith("dev_")}
    is_dev = kind_code == ENTITY_KINDS.index("device")
    if is_dev.any():
        dev_row = np.full(n_slots, -1, dtype=np.int64)
        dev_row[slot[is_dev]] = np.flatnonzero(is_dev)
        at = dev_row[slot]
        sources = {
            "dev_records": feature("n_records"),
            "dev_stations": feature("n_stations"),
            "dev_deauth": feature("grp_leaves"),  # the same float32 sum as before, already in the table
            "dev_failures": feature("grp_failures"),
        }
        if (at >= 0).all():  # every row's device has a row for its window (the usual case): plain gathers
            for name, values in sources.items():
                np.take(values, at, out=ctx[name], mode="clip")  # valid indices: no checked copy
        else:
            hit = np.flatnonzero(at >= 0)
            at = at[hit]
            for name, values in sources.items():
                ctx[name][hit] = values[at]
    is_sta = kind_code == ENTITY_KINDS.index("station")
    if is_sta.any():
        sta_slot = slot[is_sta]
        # "Not seen in the 24 h before" means nothing before the device has any history: every station is
        # new in its first hour (a connected station logs at least at the hourly group rekey).
        mature = offset[is_sta] - dev_first[dev_code[is_sta]] >= int(round(UNSEEN_HISTORY_S / window_s))
        unseen = np.bincount(sta_slot, weights=(silence[is_sta] >= cap_s) & mature, minlength=n_slots)
        busiest = np.zeros(n_slots)
        np.maximum.at(busiest, sta_slot, n_records[is_sta])
        # A (device, window) without station windows reads 0 from both, as it should.
        ctx["dev_unseen_stations"][:] = unseen[slot]
        ctx["dev_max_station_records"][:] = busiest[slot]
    windows = pd.DataFrame(out, columns=list(FEATURE_COLUMNS), copy=False)
    for i, (name, column) in enumerate(_key_columns(agg, spec).items()):
        windows.insert(i, name, column)
    return windows


def _key_columns(agg: _Aggregated, spec: WindowSpec) -> dict[str, pd.Series | np.ndarray]:
    """The key columns (KEY_COLUMNS order) from the layout: Arrow takes of the distinct strings."""
    lay = agg.layout
    keys: dict[str, pd.Series | np.ndarray] = {
        "device": _str_column(agg.dev_uniques, lay.dev),
        "entity_kind": _str_column(np.asarray(ENTITY_KINDS, dtype=object), lay.kind.astype(np.int64)),
        "entity": _str_column(agg.ent_uniques, lay.ent),
        # Whole minutes: the window start in microseconds is exact, as the nanoseconds cast to microseconds.
        "window_start": (lay.win * (spec.length_ns // 1000)).astype("datetime64[us]"),
    }
    return {name: keys[name] for name in KEY_COLUMNS}


PACKED_KEY_LIMIT = 2.0**62  # (kind, device, entity, window) packed in one int64 below this


def _row_order(kind: np.ndarray, dev: np.ndarray, ent: np.ndarray, win: np.ndarray) -> np.ndarray:
    """The permutation sorting windows by (kind, device, entity, window); the four are unique per window.

    The windows arrive nearly in that order (only quiet windows and entities shared by devices are out of
    place), so one stable sort of a packed int64 key (a run-aware merge sort) costs a fraction of a
    four-key ``lexsort``, which re-sorts every key from scratch. Falls back to ``lexsort`` if the key
    would not fit in 63 bits."""
    offset = win - win.min() if len(win) else win
    sizes = [int(a.max()) + 1 if len(a) else 1 for a in (kind, dev, ent, offset)]
    if np.prod([float(x) for x in sizes]) >= PACKED_KEY_LIMIT:
        return np.lexsort((win, ent, dev, kind))
    key = kind.astype(np.int64)
    for values, size in zip((dev, ent, offset), sizes[1:]):
        key *= size  # in place: no new array per key
        key += values
    return np.argsort(key, kind="stable")


EXACT_FLOAT_COUNT = 2**24  # float32 holds every integer below this: counting by adding ones is exact
DENSE_SLOTS_PER_ROW = 4  # a dense (device, window) table up to this many slots per window row


def _device_window_slots(dev: np.ndarray, offset: np.ndarray, dev_first: np.ndarray) -> tuple[np.ndarray, int]:
    """Per row, an integer slot shared by exactly the rows of the same (device, window), and the number of slots.

    Usually a dense table, each device's windows from its first to its last one: device rows are
    nearly dense already (quiet windows fill their gaps up to the silence cap), so the table is about
    as long as the rows and a slot is plain arithmetic. When that would be sparse (long gaps between
    windows, beyond the cap), the distinct (device, window) pairs are numbered by ``np.unique``."""
    dev_last = np.full(len(dev_first), -1, dtype=np.int64)
    np.maximum.at(dev_last, dev, offset)
    width = np.maximum(dev_last - dev_first + 1, 0)
    n_slots = int(width.sum())
    if n_slots <= DENSE_SLOTS_PER_ROW * len(dev) + 1024:
        base = np.cumsum(width) - width - dev_first
        return base[dev] + offset, n_slots
    span = int(offset.max()) + 1
    uniq, slot = np.unique(dev.astype(np.int64) * span + offset, return_inverse=True)
    return slot.reshape(-1), len(uniq)


def _sum_columns(out: np.ndarray, columns: list[int], into: int) -> None:
    """Column ``into`` = row sums of some float32 columns, in float32 (counts: exact), summed in place."""
    total = out[:, into]
    total[:] = out[:, columns[0]]
    for c in columns[1:]:
        total += out[:, c]
