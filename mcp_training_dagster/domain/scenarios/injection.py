"""Injection of known anomaly episodes into a real (validated) stream."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mcp_training_dagster.domain.horizon import single_chunk
from mcp_training_dagster.domain.scenarios.config import (
    _DAY,
    _HOUR,
    _SCEN,
    ANOMALY_SCENARIOS,
    EPISODE_COLUMNS,
    LABEL_COLUMNS,
    SCENARIO_NAMES,
)
from mcp_training_dagster.domain.scenarios.episodes import _Episode, _Injector, _plan
from mcp_training_dagster.domain.scenarios.generation import _build_records
from mcp_training_dagster.domain.scenarios.world import _ASUS_MODELS, _OPENWRT_IFACES, _Clock, _Device, _Log, _Station


# --------------------------------------------------------------------------------------------------
# Injection into a real (validated) stream
# --------------------------------------------------------------------------------------------------
@dataclass
class Injection:
    """Known episodes to add to (and silences to cut out of) a real records table."""

    records: list[dict]  # new export records (13 keys in the service's order, newest first), ids above all
    remove_ids: np.ndarray  # int64, sorted: ids of existing records to drop (silences, replaced records)
    labels: pd.DataFrame  # LABEL_COLUMNS for the new records only
    episodes: pd.DataFrame  # EPISODE_COLUMNS, one row per injected episode


_INJECT_NEEDS: tuple[str, ...] = (
    "id",
    "device",
    "device_name",
    "timestamp",
    "process_name",
    "message",
    "event_type",
    "station_mac",
    "interface",
)
_LOOKBACK = 7 * _DAY  # history a device's stations are read from
# The columns and the time before ``start`` inject_episodes reads of the real records: a caller holding millions
# of records reads only these (give ``next_id`` then, the ids of the whole table being unknown to a slice).
INJECT_COLUMNS: tuple[str, ...] = _INJECT_NEEDS
INJECT_LOOKBACK = pd.Timedelta(seconds=_LOOKBACK + 1)
_RECENT = _DAY  # prefer stations seen this recently before the episode
_MAX_STATIONS = 64
_CONNECTED_WITHIN = 3 * _HOUR  # a station whose last line was a join/handshake/rekey this recently is on
_ACTIVE_BEFORE = 2 * _HOUR  # a silence starts where the device logged in the 2 h before
_MIN_LENGTH = 180  # shortest episode worth writing (s)
_UP_EVENTS = frozenset(
    {
        "association",
        "reassociation",
        "authentication",
        "pairwise_handshake_success",
        "group_key_success",
        "radius_accounting",
        "ap_sta_connected",
    }
)
_ASUS_IFACE = re.compile(r"^eth\d+$")
_OPENWRT_IFACE = re.compile(r"^(?:wl\d+-ap\d+|phy\d+-ap\d+|wlan\d+)$")
_OPENWRT_HOST = re.compile(r"openwrt|^GL-|^Archer", re.IGNORECASE)
_KNOWN_IFACE_PAIRS: tuple[tuple[str, str], ...] = (*dict.fromkeys(_ASUS_MODELS.values()), *_OPENWRT_IFACES)
_VENDOR_IFACES = {"asus": ("eth5", "eth6"), "openwrt": ("phy0-ap0", "phy1-ap0")}


def _emitted_device_id(device: str, name: Any) -> Any:
    """The ``device_id`` validation turns back into exactly ``device``: an integer when the key is
    one as validation prints it (``str(int)``), nothing when the key is the host name (validation then
    takes the stripped ``device_ip``), else the key as text."""
    if device.isascii() and device.isdigit() and str(int(device)) == device and int(device) < 2**62:
        return int(device)
    if isinstance(name, str) and name.strip() == device:
        return None
    return device


def _interface_pair(counts: dict[str, int], vendor: str) -> tuple[str, str]:
    """The device's two radios: its two most used interfaces (in name order); one seen -> the known
    pair holding it; none -> the vendor's default names."""
    seen = [name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:2]
    if len(seen) == 2:
        first, second = sorted(seen)
        return first, second
    if len(seen) == 1:
        for pair in _KNOWN_IFACE_PAIRS:
            if seen[0] in pair:
                return pair
        return seen[0], seen[0]
    return _VENDOR_IFACES[vendor]


def _check_inject_args(
    records: pd.DataFrame, start: Any, end: Any, seed: int, episodes_per_scenario: int, scenarios: tuple[str, ...]
) -> tuple[pd.Timestamp, pd.Timestamp, tuple[str, ...]]:
    missing = [c for c in _INJECT_NEEDS if c not in getattr(records, "columns", ())]
    if missing:
        raise ValueError(f"records must be a validated records table; missing column(s) {missing}")
    if not pd.api.types.is_datetime64_dtype(records["timestamp"]):
        raise ValueError("records must be a validated records table: timestamp must be a naive datetime column")
    for label, value in (("seed", seed), ("episodes_per_scenario", episodes_per_scenario)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{label} must be an integer >= 0, got {value!r}")
    names = (scenarios,) if isinstance(scenarios, str) else tuple(scenarios)
    unknown = [n for n in names if n not in ANOMALY_SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {list(ANOMALY_SCENARIOS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"scenarios lists a scenario twice: {list(names)}")
    bounds = []
    for label, value in (("start", start), ("end", end)):
        try:
            ts = pd.Timestamp(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{label} is not a time: {value!r} ({exc})") from None
        if pd.isna(ts):
            raise ValueError(f"{label} is not a time: {value!r}")
        if ts.tzinfo is not None:
            raise ValueError(f"{label} must be naive (the service's wall-clock time), got {value!r}")
        bounds.append(ts)
    if bounds[1] <= bounds[0]:
        raise ValueError(f"end ({bounds[1]}) must be after start ({bounds[0]})")
    return bounds[0], bounds[1], names


def _codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Factorize (missing -> -1): codes and the distinct values as text."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), [str(u) for u in np.asarray(uniques, dtype=object)]


def _lookup(table: list[bool]) -> np.ndarray:
    """A per-code flag table with a final False for code -1 (missing)."""
    return np.asarray([*table, False], dtype=bool)


@dataclass
class _RealDevice:
    """One device of the real stream: where its rows are, and (once it gets an episode) its twin."""

    index: int
    key: str  # the validated ``device`` key
    lo: int  # its rows are stream positions lo..hi-1, by time
    hi: int
    wifi: int  # WiFi lines inside the period
    sim: _Device | None = None  # simulated twin: identity, interfaces, wording (built on first use)
    wlc: bool = False  # reports station events through Broadcom wlceventd too
    aid_of: dict[int, int] = field(default_factory=dict)  # station code -> last "(aid N)" seen
    aid_form: dict[int, bool] = field(default_factory=dict)  # station code -> "associated (aid N)" form
    _stations: np.ndarray | None = None

    def stations(self, stream: _Stream) -> np.ndarray:
        """Stream positions of its station lines, by time."""
        if self._stations is None:
            self._stations = self.lo + np.flatnonzero(stream.mac[self.lo : self.hi] >= 0)
        return self._stations


class _Stream:
    """The records near the injection period, as column codes sorted by (device, time).

    One factorize per column over the rows of ``[start - lookback, end)``; everything per device or
    per episode afterwards is a slice and a searchsorted, never a Python loop over records."""

    def __init__(self, records: pd.DataFrame, base: pd.Timestamp, horizon: int) -> None:
        self.records, self.horizon = records, horizon
        self._columns: dict[str, pd.Series] = {}
        stamps = records["timestamp"].to_numpy().astype("datetime64[us]").view(np.int64)
        rel = np.floor_divide(stamps - np.datetime64(base.to_pydatetime(), "us").astype(np.int64), 1_000_000)
        ok = stamps != np.iinfo(np.int64).min  # NaT
        pos = np.flatnonzero(ok & (rel >= -_LOOKBACK) & (rel < horizon))
        dev, self.keys = _codes(records["device"].take(pos))
        order = np.lexsort((records["id"].to_numpy()[pos], rel[pos], dev))  # by device, time, id
        self.pos, self.dev, self.t = pos[order], dev[order], rel[pos][order]
        self.mac, macs = _codes(records["station_mac"].take(self.pos))
        self.macs = [m.lower() for m in macs]
        self.iface, self.if_names = _codes(records["interface"].take(self.pos))
        self.ev, ev_names = _codes(records["event_type"].take(self.pos))
        self.proc, procs = _codes(records["process_name"].take(self.pos))
        procs = [p.strip().lower() for p in procs]
        self.ev_names = ev_names
        self.up = _lookup([e in _UP_EVENTS for e in ev_names])[self.ev]
        self.joins = _lookup([e in ("association", "reassociation") for e in ev_names])[self.ev]
        self.is_wlc = _lookup([p == "wlceventd" for p in procs])[self.proc]
        self.is_hostapd = _lookup([p == "hostapd" for p in procs])[self.proc]
        self.is_kernel = _lookup([p == "kernel" for p in procs])[self.proc]
        self.asus_sign = (
            _lookup([bool(_ASUS_IFACE.match(x)) for x in self.if_names])[self.iface]
            | _lookup([p in ("wlceventd", "acsd") for p in procs])[self.proc]
        )
        self.openwrt_sign = _lookup([bool(_OPENWRT_IFACE.match(x)) for x in self.if_names])[self.iface]
        self.devices = self._devices()

    def _text(self, where: np.ndarray, column: str = "message") -> pd.Series:
        if column not in self._columns:  # an Arrow column of many chunks costs a pass over all of them per take
            self._columns[column] = single_chunk(self.records[column])
        return self._columns[column].take(self.pos[where]).astype("str").reset_index(drop=True)

    def _devices(self) -> list[_RealDevice]:
        """The devices logging WiFi lines inside the period, by key (counted in one pass)."""
        bounds = np.searchsorted(self.dev, np.arange(len(self.keys) + 1))
        wifi_rows = ((self.mac >= 0) | (self.iface >= 0)) & (self.t >= 0)
        wifi = np.bincount(self.dev[wifi_rows], minlength=len(self.keys))
        out: list[_RealDevice] = []
        for code in sorted(range(len(self.keys)), key=lambda c: self.keys[c]):
            if wifi[code]:
                out.append(
                    _RealDevice(len(out), self.keys[code], int(bounds[code]), int(bounds[code + 1]), int(wifi[code]))
                )
        return out

    def twin(self, rd: _RealDevice, seed: int) -> _Device:
        """The simulated twin of a device: its identity, two most used interfaces (of station lines),
        vendor wording (from interface and process names, else the host name), wlceventd share and
        per-station "(aid N)" habits."""
        if rd.sim is not None:
            return rd.sim
        lo, hi = rd.lo, rd.hi
        sl = slice(lo, hi)
        station = self.mac[sl] >= 0
        first = lo + int(np.argmax(self.t[sl] >= 0))
        name = self.records["device_name"].iloc[int(self.pos[first])]
        host = name.strip() if isinstance(name, str) and name.strip() else rd.key
        asus, openwrt = int(self.asus_sign[sl].sum()), int(self.openwrt_sign[sl].sum())
        if openwrt != asus:
            vendor = "openwrt" if openwrt > asus else "asus"
        else:
            vendor = "openwrt" if _OPENWRT_HOST.search(host) else "asus"
        codes = self.iface[sl][station & (self.iface[sl] >= 0)]
        if not len(codes):  # no station lines with an interface: any line naming one
            codes = self.iface[sl][self.iface[sl] >= 0]
        used = np.bincount(codes, minlength=len(self.if_names))
        ifaces = _interface_pair({self.if_names[i]: int(c) for i, c in enumerate(used) if c}, vendor)
        rd.wlc = bool(self.is_wlc[sl].any())
        joins = self.joins[sl]
        p_wlc = (
            float(np.clip((joins & self.is_wlc[sl]).sum() / max(1, (joins & self.is_hostapd[sl]).sum()), 0.1, 1.0))
            if rd.wlc
            else 0.0
        )
        hostapd_joins = lo + np.flatnonzero(joins & self.is_hostapd[sl] & station)[-5000:]  # recent habits
        if len(hostapd_joins):
            aid = pd.to_numeric(self._text(hostapd_joins).str.extract(r"\(aid (\d+)\)", expand=False), errors="coerce")
            per_station = pd.DataFrame({"mac": self.mac[hostapd_joins], "aid": aid}).groupby("mac")["aid"]
            rd.aid_form = {int(k): bool(v) for k, v in per_station.count().gt(0).items()}
            rd.aid_of = {int(k): int(v) for k, v in per_station.last().dropna().items()}
        rng = np.random.default_rng([seed, 6, rd.index])
        driver = ("ath10k", "mt79")[int(rng.integers(2))]
        conn_alg = bool(rng.random() < 0.5)
        if vendor == "openwrt":
            if "ap_sta_connected" in self.ev_names:
                conn = lo + np.flatnonzero(self.ev[sl] == self.ev_names.index("ap_sta_connected"))[-200:]
                if len(conn):
                    conn_alg = bool(self._text(conn).str.contains("auth_alg=", regex=False).mean() > 0.5)
            kernel = " ".join(self._text(lo + np.flatnonzero(self.is_kernel[sl])[-200:]).tolist())
            driver = "ath10k" if "ath10k" in kernel else "mt79" if ("mt79" in kernel or "mt76" in kernel) else driver
        rd.sim = _Device(
            index=rd.index,
            device_id=_emitted_device_id(rd.key, name),
            hostname=host,
            vendor=vendor,
            ifaces=ifaces,
            radios=("wl0", "wl1") if vendor == "asus" else ("phy0", "phy1"),
            driver=driver,
            p_wlc=p_wlc,
            conn_alg=conn_alg,
            stations=[],
            phase0=0,
            wd_sod=4 * _HOUR,
            cron_pid=1000,
        )
        return rd.sim

    # ---- questions the scheduler asks (searchsorted on sorted times)
    def count(self, rd: _RealDevice, a: int, b: int) -> int:
        """Records of the device in [a, b)."""
        t = self.t[rd.lo : rd.hi]
        return int(np.searchsorted(t, b) - np.searchsorted(t, a))

    def knows_stations(self, rd: _RealDevice, at: int) -> bool:
        t = self.t[rd.stations(self)]
        return bool(np.searchsorted(t, at) > np.searchsorted(t, at - _LOOKBACK))

    def rows_between(self, rd: _RealDevice, a: int, b: int, mac: str = "") -> np.ndarray:
        """Table positions of the device's records in [a, b) (of station ``mac`` only, if given)."""
        t = self.t[rd.lo : rd.hi]
        idx = np.arange(rd.lo + int(np.searchsorted(t, a)), rd.lo + int(np.searchsorted(t, b)))
        if mac:
            codes = [i for i, m in enumerate(self.macs) if m == mac]
            idx = idx[np.isin(self.mac[idx], codes)]
        return self.pos[idx]

    def snapshot(self, rd: _RealDevice, at: int, rng: np.random.Generator) -> None:
        """Give the twin the device's own stations seen before ``at`` (the last day's, else the last
        week's; most recent first) and, as sessions, the ones still connected at ``at``."""
        dev = rd.sim
        assert dev is not None, "build the twin first"
        positions = rd.stations(self)
        t_st = self.t[positions]
        window = positions[int(np.searchsorted(t_st, at - _LOOKBACK)) : int(np.searchsorted(t_st, at))]
        codes = self.mac[window]
        uniq, inverse = np.unique(codes, return_inverse=True)
        _, first_rev = np.unique(codes[::-1], return_index=True)
        last = window[len(codes) - 1 - first_rev]  # stream position of each station's last line
        last_t = self.t[last]
        band1 = [i for i, name in enumerate(self.if_names) if name == dev.ifaces[1]]
        on_band1 = np.bincount(inverse, weights=np.isin(self.iface[window], band1), minlength=len(uniq))
        seen = np.bincount(inverse, minlength=len(uniq))
        pick = np.flatnonzero(last_t >= at - _RECENT)
        if not len(pick):
            pick = np.arange(len(uniq))
        pick = pick[np.lexsort((np.asarray([self.macs[int(uniq[i])] for i in pick], dtype=object), -last_t[pick]))]
        dev.stations = []
        starts: list[int] = []
        who: list[int] = []
        ifs: list[int] = []
        for si, i in enumerate(pick[:_MAX_STATIONS]):
            code, row = int(uniq[i]), int(last[i])
            mac = self.macs[code]
            p_band1 = float(on_band1[i] / max(1, seen[i]))
            aid = rd.aid_of.get(code, int(rng.integers(1, max(3, len(pick) // 2 + 1))))
            form = rd.aid_form.get(code, bool(rng.random() < 0.5))
            kind = "phone" if int(mac[:2], 16) & 2 else "iot"  # randomised MACs are phones, fixed ones devices
            dev.stations.append(_Station(mac, kind, False, form, p_band1, aid))
            if self.up[row] and at - int(self.t[row]) <= _CONNECTED_WITHIN:
                name = self.if_names[int(self.iface[row])] if self.iface[row] >= 0 else ""
                starts.append(int(self.t[row]))
                who.append(si)
                ifs.append(
                    1
                    if name == dev.ifaces[1] and name != dev.ifaces[0]
                    else 0
                    if name == dev.ifaces[0]
                    else int(p_band1 > 0.5)
                )
        dev.s_start = np.asarray(starts, np.int64)
        dev.s_end = np.full(len(starts), self.horizon + _DAY, np.int64)  # still on through the episode
        dev.s_station = np.asarray(who, np.int64)
        dev.s_iface = np.asarray(ifs, np.int64)


def _place(stream: _Stream, items: list[str], rng: np.random.Generator) -> list[_Episode]:
    """Place the episodes: stratified over the period (then anywhere), on devices drawn in proportion
    to the square root of their WiFi traffic, never overlapping (with a margin) on one device; what
    does not fit is left out. Silences go first (they are the longest; 1-6 h but at most their share of
    half the time) and need a device that logged in the 2 h before and logs inside (else nothing
    would go quiet)."""
    devices, horizon = stream.devices, stream.horizon
    if not devices or not items or horizon <= 0:
        return []
    weights = np.sqrt(np.asarray([rd.wifi for rd in devices], dtype=float))
    weights /= weights.sum()
    slot = horizon / len(items)
    busy: dict[int, list[tuple[int, int]]] = {d: [] for d in range(len(devices))}
    out: list[_Episode] = []
    # silences share at most half of the devices' time, so that a short period still holds the others
    share = 0.5 * horizon * len(devices) / max(1, items.count("silence"))
    for j in sorted(range(len(items)), key=lambda i: items[i] != "silence"):
        scen = items[j]
        if scen == "silence":
            longest = int(min(6 * _HOUR, horizon - 60, max(_HOUR, share)))
            if longest < _HOUR:
                continue
            params: dict[str, Any] = {}
            length = int(rng.uniform(_HOUR, longest))
        else:
            length, params = _plan(scen, rng)
            length = min(length, horizon - 60)
            if length < _MIN_LENGTH:
                continue
        order = rng.choice(len(devices), size=len(devices), replace=False, p=weights)
        for attempt in range(400):
            if scen == "silence" and attempt and attempt % 100 == 0:  # a shorter one may fit
                length = int(rng.uniform(_HOUR, max(_HOUR + 1, length)))
            if attempt < 200:
                start = int((j + rng.random()) * slot)
                if start + length + 60 > horizon:
                    continue
            else:
                start = int(rng.uniform(0, horizon - length - 60))
            d = int(order[attempt % len(devices)])
            margin = 15 * 60 if attempt < 300 else 60
            if any(start < b + margin and start + length + margin > a for a, b in busy[d]):
                continue
            rd = devices[d]
            if scen == "silence" and not (
                stream.count(rd, start - _ACTIVE_BEFORE, start) and stream.count(rd, start, start + length)
            ):
                continue
            if scen in ("deauth_flood", "reconnect_loop") and not stream.knows_stations(rd, start):
                continue
            busy[d].append((start, start + length))
            out.append(_Episode(scen, d, start, length, params))
            break
    return sorted(out, key=lambda e: (e.start, e.device))


def _episode_frame(episodes: list[_Episode], keys: list[str], base: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "scenario": pd.Series([e.scenario for e in episodes], dtype="str"),
            "is_anomaly": np.array([e.scenario in ANOMALY_SCENARIOS for e in episodes], dtype=bool),
            "device": pd.Series([keys[e.device] for e in episodes], dtype="str"),
            "entity_kind": pd.Series([e.entity_kind for e in episodes], dtype="str"),
            "entity": pd.Series([e.entity for e in episodes], dtype="str"),
            "start": pd.Series([base + pd.Timedelta(seconds=e.start) for e in episodes], dtype="datetime64[us]"),
            "end": pd.Series(
                [base + pd.Timedelta(seconds=max(e.end, e.start + 1)) for e in episodes], dtype="datetime64[us]"
            ),
        },
        columns=list(EPISODE_COLUMNS),
    )


def inject_episodes(
    records: pd.DataFrame,
    *,
    start: Any,
    end: Any,
    seed: int,
    episodes_per_scenario: int = 2,
    scenarios: tuple[str, ...] = ANOMALY_SCENARIOS,
    next_id: int | None = None,
) -> Injection:
    """Known anomaly episodes for the period ``[start, end)`` of a real, validated records table.

    ``episodes_per_scenario`` episodes of each of ``scenarios`` (anomaly scenarios only) go to the
    devices logging WiFi lines in the period (more to busier devices), never overlapping on a device.
    They are written by :func:`generate`'s own episode builders and templates on a twin of each device:
    its identity (``device_id``/``device_ip`` that validate back to its ``device`` key), its two most
    used interfaces, its vendor wording (OpenWrt or ASUS/Broadcom, from its interface and process
    names; no wlceventd lines on a device that never logs any), and for deauth floods and reconnect
    loops its own stations seen before the episode (those still connected then as the victims).
    A silence (1-6 h where the device logged in the 2 h before and logs inside) writes nothing: the
    device's records in it go to ``remove_ids``, as do a reconnect loop victim's own records during
    the loop (the loop replaces them, as in :func:`generate`). Whatever does not fit the period is
    left out, possibly everything; bad arguments raise ValueError. Deterministic for seed and table.
    The new records' ids count from ``next_id`` (default: the table's largest id + 1); only the records from
    ``INJECT_LOOKBACK`` before ``start`` are read, so a slice of a table from then on, given the whole table's
    ``next_id``, injects what the whole table would.
    """
    start_ts, end_ts, names = _check_inject_args(records, start, end, seed, episodes_per_scenario, scenarios)
    base = start_ts.ceil("s")
    horizon = max(0, int((end_ts - base) // pd.Timedelta(seconds=1)))
    stream = _Stream(records, base, horizon)
    items = [s for s in names for _ in range(episodes_per_scenario)]
    sched = np.random.default_rng([seed, 7])
    sched.shuffle(items)
    episodes = _place(stream, items, sched)

    log = _Log()
    clock = _Clock(max(horizon, 1), base.hour * _HOUR + base.minute * 60 + base.second, base.weekday())
    injector = _Injector(log, clock, set(stream.macs), seed)
    for k, ep in enumerate(episodes):
        rd = stream.devices[ep.device]
        sim = stream.twin(rd, seed)
        stream.snapshot(rd, ep.start, np.random.default_rng([seed, 8, k]))
        injector.build(ep, sim, np.random.default_rng([seed, 9, k]))

    t = np.asarray(log.t, np.int64)
    dev_idx = np.asarray(log.dev, np.int64)
    scen = np.asarray(log.scen, np.int64)
    keep = (t >= 0) & (t < horizon)
    if len(t):  # a device that never logs through wlceventd does not start to during an attack
        no_wlc = np.asarray([not rd.wlc for rd in stream.devices], dtype=bool)
        keep &= ~(no_wlc[dev_idx] & np.asarray([k.startswith("w_") for k in log.key], dtype=bool))
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((rows, t[rows]))]  # by time, then by writing order
    id_col = records["id"].to_numpy()
    first_id = next_id if next_id is not None else int(id_col.max()) + 1 if len(id_col) else 1
    ids = first_id + np.arange(len(rows), dtype=np.int64)
    sims: list[Any] = [rd.sim for rd in stream.devices]  # devices without an episode wrote nothing
    out = _build_records(log, rows, ids, t, sims, base.to_pydatetime())

    removed = [np.zeros(0, np.int64)]
    for d, mac, a, b, _everything in injector.removals:  # every real record counts as normal
        removed.append(id_col[stream.rows_between(stream.devices[d], a, b, mac)].astype(np.int64))
    labels = pd.DataFrame(
        {
            "id": ids,
            "is_anomaly": np.isin(scen[rows], [_SCEN[s] for s in ANOMALY_SCENARIOS]),
            "scenario": pd.Series(np.asarray(SCENARIO_NAMES, dtype=object)[scen[rows]], dtype="str"),
        },
        columns=list(LABEL_COLUMNS),
    )
    return Injection(
        records=out,
        remove_ids=np.unique(np.concatenate(removed)),
        labels=labels,
        episodes=_episode_frame(episodes, [rd.key for rd in stream.devices], base),
    )
