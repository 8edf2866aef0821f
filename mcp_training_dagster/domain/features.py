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
