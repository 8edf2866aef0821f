"""Feature windows: fixed-length, clock-aligned, per device and per finer entity.

Every feature is a pure function of the records of one entity in its window (and, for the
"before" features, the entity's record just before it), never a batch-wide rank, frequency or
statistic, so a window gets the same vector in training and at serving time whatever else is in
the batch. Everything is computed with sorted numpy arrays and ``bincount``: one sort, then linear
passes, no per-row Python and no per-window loops.

Entities (``entity_kind``):
  device     the whole router (``entity = "*"``)
  station    one client MAC on that router
  interface  one radio/interface on that router (``eth6``, ``wl0-ap0``)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from mcp_training_dagster.domain.events import EVENT_TYPES

ENTITY_KINDS: tuple[str, ...] = ("device", "station", "interface")
DEVICE_ENTITY = "*"
KEY_COLUMNS: tuple[str, ...] = ("device", "entity_kind", "entity", "window_start")

# Severity buckets over syslog severity codes (0..7); -1 = unknown.
SEVERITY_FEATURES: tuple[tuple[str, int, int], ...] = (
    ("sev_error_or_worse", 0, 3),  # emergency, alert, critical, error
    ("sev_warning", 4, 4),
    ("sev_notice", 5, 5),
    ("sev_info_debug", 6, 7),
)

# name -> one-line meaning (the README's feature table is generated from this).
FEATURE_DOCS: dict[str, str] = {
    "n_records": "records of the entity in the window",
    **{f"ev_{t}": f"records classified as `{t}` by the event catalog" for t in EVENT_TYPES},
    "sev_error_or_worse": "records with syslog severity emergency..error (0-3)",
    "sev_warning": "records with severity warning (4)",
    "sev_notice": "records with severity notice (5)",
    "sev_info_debug": "records with severity info or debug (6-7)",
    "n_stations": "distinct station MACs seen in the window",
    "n_new_stations": "distinct stations not seen by this entity in the immediately preceding window",
    "n_random_macs": "distinct locally-administered (randomised) station MACs",
    "n_interfaces": "distinct interfaces seen in the window",
    "peak_burst": "most records in any one burst sub-bucket (default 10 s) of the window",
    "active_buckets": "burst sub-buckets with at least one record (spread of activity)",
    "silence_before_s": "seconds since the entity's previous record before this window (capped)",
    "kind_device": "1 for a device-level window",
    "kind_station": "1 for a station-level window",
    "kind_interface": "1 for an interface-level window",
}
FEATURE_COLUMNS: tuple[str, ...] = tuple(FEATURE_DOCS)


@dataclass(frozen=True)
class WindowSpec:
    length_minutes: int = 5
    entities: tuple[str, ...] = ENTITY_KINDS
    burst_seconds: int = 10
    silence_cap_hours: float = 24.0

    @property
    def length_ns(self) -> int:
        return int(self.length_minutes) * 60 * 1_000_000_000


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
    """Integer codes (first-appearance order, missing -> -1) and the distinct strings."""
    codes, uniques = pd.factorize(values.astype("str"))
    return np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object)


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


def _stable_order(primary: np.ndarray, n_primary: int, secondary: np.ndarray, n_secondary: int) -> np.ndarray:
    """Stable argsort by (primary, secondary), both non-negative integer codes."""
    small = np.iinfo(np.uint16).max
    if n_primary * n_secondary <= small:
        return np.argsort((primary * n_secondary + secondary).astype(np.uint16), kind="stable")
    if n_primary <= small and n_secondary <= small:
        o = np.argsort(secondary.astype(np.uint16), kind="stable")
        return o[np.argsort(primary[o].astype(np.uint16), kind="stable")]
    return np.argsort(primary.astype(np.int64) * n_secondary + secondary, kind="stable")


def _str_column(uniques: np.ndarray, codes: np.ndarray) -> pd.Series:
    """Strings back from codes (a ``str`` column), built by Arrow from the distinct values."""
    arr = pa.array(np.asarray(uniques, dtype=object), type=pa.large_string()).take(pa.array(codes))
    return pd.Series(pd.arrays.ArrowStringArray(arr, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))


def _entity_rows(records: pd.DataFrame, spec: WindowSpec) -> pd.DataFrame:
    """One row per (record, entity it belongs to): a record counts for its device, its station
    and its interface, each within its own kind."""
    base = pd.DataFrame(
        {
            "device": records["device"].astype("str").to_numpy(),
            "ts": records["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
            "event": _event_codes(records["event_type"]),
            "severity": records["severity"].to_numpy(dtype=np.int16),
            "mac": records["station_mac"].astype("str").to_numpy(),
            "iface": records["interface"].astype("str").to_numpy(),
        }
    )
    parts = []
    for kind_code, kind in enumerate(ENTITY_KINDS):
        if kind not in spec.entities:
            continue
        if kind == "device":
            part = base.assign(entity=DEVICE_ENTITY)
        elif kind == "station":
            part = base[base["mac"].notna()].assign(entity=lambda d: d["mac"])
        else:
            part = base[base["iface"].notna()].assign(entity=lambda d: d["iface"])
        parts.append(part.assign(kind=np.int8(kind_code)))
    return pd.concat(parts, ignore_index=True) if parts else base.iloc[:0].assign(entity="", kind=np.int8(0))


def _locally_administered(macs: np.ndarray) -> np.ndarray:
    """Bit 1 of the first octet marks randomised/private MACs (phones rotate these).

    Called on the distinct MACs only, so the per-value parse is cheap."""
    def la(mac: str) -> bool:
        try:
            return bool(int(mac[:2], 16) & 0x02)
        except ValueError:
            return False

    return np.fromiter((la(str(m)) for m in macs), dtype=bool, count=len(macs))


def build_windows(records: pd.DataFrame, spec: WindowSpec | None = None) -> pd.DataFrame:
    """Aggregate validated records into feature windows (one row per entity and window)."""
    spec = spec or WindowSpec()
    if records.empty:
        return empty_windows()
    kinds = [(k, kind) for k, kind in enumerate(ENTITY_KINDS) if kind in spec.entities]
    if not kinds:
        return _build_windows_rows(records, spec)

    # Strings are encoded once, on the records, as integer codes (missing -> -1).
    dev_rec, dev_uniques = _str_codes(records["device"])
    if len(dev_rec) and dev_rec.min() < 0:  # missing devices: keep the general path's exact behaviour
        return _build_windows_rows(records, spec)
    mac_rec, mac_uniques = _str_codes(records["station_mac"])
    iface_rec, iface_uniques = _str_codes(records["interface"])
    ts_rec = records["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    event_rec = _event_codes(records["event_type"])
    sev_rec = records["severity"].to_numpy(dtype=np.int16)
    n_rec = len(ts_rec)
    dev_rec, mac_rec, iface_rec = dev_rec.astype(np.int32), mac_rec.astype(np.int32), iface_rec.astype(np.int32)

    # Device codes: first appearance over the concatenated kinds' rows (in record order).
    if kinds[0][1] != "device":
        parts = [dev_rec[(mac_rec if kind == "station" else iface_rec) >= 0] for _, kind in kinds]
        seen = np.asarray(pd.unique(np.concatenate(parts)), dtype=np.int64)
        remap = np.full(len(dev_uniques), len(seen), dtype=np.int64)  # devices without rows: last
        remap[seen] = np.arange(len(seen))
        dev_rec = remap[dev_rec]
        dev_uniques = np.concatenate([dev_uniques[seen], dev_uniques[np.setdiff1d(np.arange(len(dev_uniques)), seen)]])

    # Rows of each kind are sorted by (device, entity, time), stably (ties keep record order).
    # Sorting the records by time first makes that a sort on (device, entity) alone.
    if n_rec > 1 and not (ts_rec[1:] >= ts_rec[:-1]).all():
        by_time = np.argsort(ts_rec, kind="stable")
        dev_rec, mac_rec, iface_rec = dev_rec[by_time], mac_rec[by_time], iface_rec[by_time]
        ts_rec, event_rec, sev_rec = ts_rec[by_time], event_rec[by_time], sev_rec[by_time]

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

    n_dev = max(len(dev_uniques), 1)

    idx_parts, ent_parts, kind_parts = [], [], []
    for (kind_code, _), sel, local, emap in zip(kinds, part_rows, part_local, ent_maps):
        if sel is None:
            o = np.argsort(dev_rec.astype(np.uint16), kind="stable") if n_dev <= 65535 else np.argsort(dev_rec, kind="stable")
            idx_parts.append(o)
            ent_parts.append(np.full(len(o), emap[0], dtype=np.int64))
        else:
            ent = emap[local]
            o = _stable_order(dev_rec[sel], n_dev, ent, n_ent)
            idx_parts.append(sel[o])
            ent_parts.append(ent[o])
        kind_parts.append(np.full(len(idx_parts[-1]), kind_code, dtype=np.int8))
    ridx = np.concatenate(idx_parts)
    ent = np.concatenate(ent_parts).astype(np.int32)
    kind = np.concatenate(kind_parts)
    dev, ts = dev_rec[ridx], ts_rec[ridx]
    event, sev, mac, iface = event_rec[ridx], sev_rec[ridx], mac_rec[ridx], iface_rec[ridx]
    win = ts // spec.length_ns
    n = len(ridx)
    if n == 0:
        return _build_windows_rows(records, spec)

    new_entity = np.empty(n, dtype=bool)
    new_entity[0] = True
    np.not_equal(kind[1:], kind[:-1], out=new_entity[1:])
    new_entity[1:] |= (dev[1:] != dev[:-1]) | (ent[1:] != ent[:-1])
    new_group = new_entity.copy()
    new_group[1:] |= win[1:] != win[:-1]
    gid = np.cumsum(new_group, dtype=np.int32) - 1
    starts = np.flatnonzero(new_group)
    n_groups = len(starts)
    egid = np.cumsum(new_entity, dtype=np.int32) - 1

    feat = np.empty((n_groups, len(FEATURE_COLUMNS)), dtype=np.float32, order="F")
    col = {name: i for i, name in enumerate(FEATURE_COLUMNS)}

    n_types = len(EVENT_TYPES)
    event = event.clip(0, n_types - 1)
    feat[:, col["n_records"]] = np.diff(np.r_[starts, n])
    for i, t in enumerate(EVENT_TYPES):
        feat[:, col[f"ev_{t}"]] = np.bincount(gid[event == i], minlength=n_groups)
    for name, lo, hi in SEVERITY_FEATURES:
        feat[:, col[name]] = np.bincount(gid[(sev >= lo) & (sev <= hi)], minlength=n_groups)

    # Distinct stations (and randomised ones) per window, and stations new since the previous window:
    # rows with a station, ordered by (entity, station, time), so a (window, station) pair is a run.
    la = _locally_administered(mac_uniques)
    h = np.flatnonzero(mac >= 0)
    n_mac = max(len(mac_uniques), 1)
    o = _stable_order(egid[h], int(egid[-1]) + 1, mac[h], n_mac)
    h = h[o]
    h_egid, h_mac, h_win = egid[h], mac[h], win[h]
    same_station = np.zeros(len(h), dtype=bool)
    same_station[1:] = (h_egid[1:] == h_egid[:-1]) & (h_mac[1:] == h_mac[:-1])
    first = ~same_station
    first[1:] |= h_win[1:] != h_win[:-1]
    fi = np.flatnonzero(first)
    p_gid, p_mac = gid[h[fi]], h_mac[fi]
    seen_just_before = same_station[fi]
    seen_just_before[seen_just_before] = h_win[fi[seen_just_before]] == h_win[fi[seen_just_before] - 1] + 1
    feat[:, col["n_stations"]] = np.bincount(p_gid, minlength=n_groups)
    feat[:, col["n_new_stations"]] = np.bincount(p_gid[~seen_just_before], minlength=n_groups)
    feat[:, col["n_random_macs"]] = np.bincount(p_gid[la[p_mac]], minlength=n_groups)

    has_iface = iface >= 0
    n_if = max(len(iface_uniques), 1)
    if n_groups * n_if <= 16 * n:
        present = np.zeros(n_groups * n_if, dtype=bool)
        present[gid[has_iface].astype(np.int64) * n_if + iface[has_iface]] = True
        feat[:, col["n_interfaces"]] = present.reshape(n_groups, n_if).sum(axis=1)
    else:
        ipair = np.unique(gid[has_iface] * n_if + iface[has_iface])
        feat[:, col["n_interfaces"]] = np.bincount(ipair // n_if, minlength=n_groups)

    # Burstiness: runs of equal (window, sub-bucket) are contiguous because rows are time-sorted.
    bucket = ts // (int(spec.burst_seconds) * 1_000_000_000)
    new_run = new_group.copy()
    new_run[1:] |= bucket[1:] != bucket[:-1]
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.r_[run_start, n])
    run_gid = gid[run_start]
    first_run_of_group = np.flatnonzero(np.r_[True, run_gid[1:] != run_gid[:-1]])
    feat[:, col["peak_burst"]] = np.maximum.reduceat(run_len, first_run_of_group)
    feat[:, col["active_buckets"]] = np.bincount(run_gid, minlength=n_groups)

    # Silence before the window: gap from the entity's previous record to the window's first one.
    cap_s = float(spec.silence_cap_hours) * 3600.0
    prev_same_entity = ~new_entity[starts]
    gap = np.full(n_groups, cap_s)
    prev_idx = starts[prev_same_entity] - 1
    gap[prev_same_entity] = np.minimum((ts[starts[prev_same_entity]] - ts[prev_idx]) / 1e9, cap_s)
    feat[:, col["silence_before_s"]] = gap
    kind_s = kind[starts]
    for i, k in enumerate(ENTITY_KINDS):
        feat[:, col[f"kind_{k}"]] = kind_s == i

    data = {
        "device": _str_column(dev_uniques, dev[starts]),
        "entity_kind": _str_column(np.asarray(ENTITY_KINDS, dtype=object), kind_s.astype(np.int64)),
        "entity": _str_column(ent_uniques, ent[starts]),
        "window_start": (win[starts] * spec.length_ns).astype("datetime64[ns]").astype("datetime64[us]"),
    }
    for name, i in col.items():
        data[name] = feat[:, i]
    return pd.DataFrame(data, copy=False)


def _build_windows_rows(records: pd.DataFrame, spec: WindowSpec) -> pd.DataFrame:
    """The general path over per-row string columns (used for inputs the coded path does not cover)."""
    spec = spec or WindowSpec()
    if records.empty:
        return empty_windows()
    rows = _entity_rows(records, spec)
    n = len(rows)
    dev_codes, dev_uniques = pd.factorize(rows["device"])
    ent_codes, ent_uniques = pd.factorize(rows["entity"])
    ts = rows["ts"].to_numpy()
    win = ts // spec.length_ns
    kind = rows["kind"].to_numpy()

    # One sort: entity first, then time. Everything after is a linear pass over sorted arrays.
    order = np.lexsort((ts, ent_codes, dev_codes, kind))
    kind, dev, ent, ts, win = kind[order], dev_codes[order], ent_codes[order], ts[order], win[order]
    event = rows["event"].to_numpy()[order]
    sev = rows["severity"].to_numpy()[order]
    mac = rows["mac"].to_numpy()[order]

    new_entity = np.r_[True, (kind[1:] != kind[:-1]) | (dev[1:] != dev[:-1]) | (ent[1:] != ent[:-1])]
    new_group = new_entity | np.r_[True, win[1:] != win[:-1]]
    gid = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    n_groups = len(starts)
    egid = np.cumsum(new_entity) - 1

    n_types = len(EVENT_TYPES)
    ev_counts = np.bincount(gid * n_types + event.clip(0, n_types - 1), minlength=n_groups * n_types)
    ev_counts = ev_counts.reshape(n_groups, n_types)
    n_records = np.bincount(gid, minlength=n_groups)

    sev_cols = {
        name: np.bincount(gid, weights=((sev >= lo) & (sev <= hi)).astype(np.float64), minlength=n_groups)
        for name, lo, hi in SEVERITY_FEATURES
    }

    # Distinct stations (and randomised ones) per window, and stations new since the previous window.
    has_mac = pd.notna(mac)
    mac_codes, mac_uniques = pd.factorize(pd.Series(mac[has_mac], dtype="str"))
    pair = pd.DataFrame({"gid": gid[has_mac], "egid": egid[has_mac], "win": win[has_mac], "mac": mac_codes})
    pair = pair.drop_duplicates(["gid", "mac"])
    n_stations = np.bincount(pair["gid"].to_numpy(), minlength=n_groups)
    la = _locally_administered(np.asarray(mac_uniques, dtype=object))
    n_random = np.bincount(pair["gid"].to_numpy(), weights=la[pair["mac"].to_numpy()].astype(float), minlength=n_groups)
    pair = pair.sort_values(["egid", "mac", "win"], kind="stable")
    same = (pair["egid"].to_numpy()[1:] == pair["egid"].to_numpy()[:-1]) & (
        pair["mac"].to_numpy()[1:] == pair["mac"].to_numpy()[:-1]
    )
    seen_just_before = np.r_[False, same & (pair["win"].to_numpy()[1:] == pair["win"].to_numpy()[:-1] + 1)]
    n_new = np.bincount(pair["gid"].to_numpy(), weights=(~seen_just_before).astype(float), minlength=n_groups)

    iface = rows["iface"].to_numpy()[order]
    has_iface = pd.notna(iface)
    if has_iface.any():
        iface_codes, _ = pd.factorize(pd.Series(iface[has_iface], dtype="str"))
        ipair = pd.DataFrame({"gid": gid[has_iface], "i": iface_codes}).drop_duplicates()
        n_ifaces = np.bincount(ipair["gid"].to_numpy(), minlength=n_groups)
    else:
        n_ifaces = np.zeros(n_groups, dtype=np.int64)

    # Burstiness: runs of equal (window, sub-bucket) are contiguous because rows are time-sorted.
    bucket = ts // (int(spec.burst_seconds) * 1_000_000_000)
    run_start = np.flatnonzero(np.r_[True, (gid[1:] != gid[:-1]) | (bucket[1:] != bucket[:-1])])
    run_len = np.diff(np.r_[run_start, n])
    run_gid = gid[run_start]
    first_run_of_group = np.flatnonzero(np.r_[True, run_gid[1:] != run_gid[:-1]])
    peak = np.maximum.reduceat(run_len, first_run_of_group)
    active = np.bincount(run_gid, minlength=n_groups)

    # Silence before the window: gap from the entity's previous record to the window's first one.
    cap_s = float(spec.silence_cap_hours) * 3600.0
    prev_same_entity = ~new_entity[starts]
    gap = np.full(n_groups, cap_s)
    prev_idx = starts[prev_same_entity] - 1
    gap[prev_same_entity] = np.minimum((ts[starts[prev_same_entity]] - ts[prev_idx]) / 1e9, cap_s)

    out = pd.DataFrame(
        {
            "device": pd.Series(np.asarray(dev_uniques, dtype=object)[dev[starts]], dtype="str"),
            "entity_kind": pd.Series(np.asarray(ENTITY_KINDS, dtype=object)[kind[starts]], dtype="str"),
            "entity": pd.Series(np.asarray(ent_uniques, dtype=object)[ent[starts]], dtype="str"),
            "window_start": (win[starts] * spec.length_ns).astype("datetime64[ns]").astype("datetime64[us]"),
        }
    )
    features = {
        "n_records": n_records,
        **{f"ev_{t}": ev_counts[:, i] for i, t in enumerate(EVENT_TYPES)},
        **sev_cols,
        "n_stations": n_stations,
        "n_new_stations": n_new,
        "n_random_macs": n_random,
        "n_interfaces": n_ifaces,
        "peak_burst": peak,
        "active_buckets": active,
        "silence_before_s": gap,
        **{f"kind_{k}": (kind[starts] == i).astype(np.float32) for i, k in enumerate(ENTITY_KINDS)},
    }
    feat = pd.DataFrame({k: np.asarray(v, dtype=np.float32) for k, v in features.items()}, columns=list(FEATURE_COLUMNS))
    return pd.concat([out, feat], axis=1)
