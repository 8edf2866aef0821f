"""Synthetic exports in the service's exact format, reproducible from a seed (see ``benchmarks.run``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.probe import MIB

if TYPE_CHECKING:  # numpy is imported lazily: the orchestrator stays small
    import numpy as np


# ---------------------------------------------------------------------------------------------
# Generator (synthetic exports in the service's exact format)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    """One kind of syslog line: its share of records, syslog facts and message templates.

    Templates are ``str.format`` strings over ``i`` (interface), ``m``/``M`` (station MAC in
    lower/upper case), ``s`` (session id), ``a`` (association id), ``r`` (RSSI) and ``k``
    (minutes). They must not contain characters that JSON escapes (checked at import)."""

    weight: float
    process: str
    tag: str  # syslog tag in raw_message (with the pid when the daemon logs one)
    facility: int
    severity: int
    asus: str
    openwrt: str
    pid: int | None = None


_WLC = "wlceventd_proc_event({n}): {{i}}: "
_LINES: tuple[_Line, ...] = (
    _Line(
        0.535,
        "hostapd",
        "hostapd",
        3,
        6,
        "{i}: STA {m} WPA: group key handshake completed (RSN)",
        "{i}: STA {m} WPA: group key handshake completed (RSN)",
    ),
    _Line(
        0.110,
        "hostapd",
        "hostapd",
        3,
        6,
        "{i}: STA {m} WPA: pairwise key handshake completed (RSN)",
        "{i}: EAPOL-4WAY-HS-COMPLETED {m}",
    ),
    _Line(
        0.110,
        "hostapd",
        "hostapd",
        3,
        6,
        "{i}: STA {m} RADIUS: starting accounting session {s:016X}",
        "{i}: STA {m} IEEE 802.11: authenticated",
    ),
    _Line(0.110, "hostapd", "hostapd", 3, 6, "{i}: STA {m} IEEE 802.11: disassociated", "{i}: AP-STA-DISCONNECTED {m}"),
    _Line(
        0.055,
        "hostapd",
        "hostapd",
        3,
        6,
        "{i}: STA {m} IEEE 802.11: associated",
        "{i}: AP-STA-CONNECTED {m} auth_alg=open",
    ),
    _Line(
        0.055,
        "hostapd",
        "hostapd",
        3,
        6,
        "{i}: STA {m} IEEE 802.11: associated (aid {a})",
        "{i}: STA {m} IEEE 802.11: associated (aid {a})",
    ),
    _Line(
        0.004,
        "hostapd",
        "hostapd",
        3,
        6,
        "{i}: STA {m} IEEE 802.11: deauthenticated due to local deauth request",
        "{i}: STA {m} IEEE 802.11: deauthenticated due to local deauth request",
    ),
    _Line(
        0.001,
        "hostapd",
        "hostapd",
        3,
        6,
        "{i}: STA {m} WPA: group key handshake failed (RSN) after 4 tries",
        "{i}: STA {m} WPA: group key handshake failed (RSN) after 4 tries",
    ),
    _Line(
        0.004,
        "wlceventd",
        "wlceventd",
        3,
        6,
        _WLC.format(n=511) + "Disassoc {M}, status: 0, reason: Disassociated because sending station is "
        "leaving (or has left) BSS (8), rssi:0",
        "{i}: STA {m} IEEE 802.11: disassociated",
    ),
    _Line(
        0.003,
        "wlceventd",
        "wlceventd",
        3,
        6,
        _WLC.format(n=494) + "Auth {M}, status: Successful (0), rssi:-{r}",
        "{i}: STA {m} IEEE 802.11: authenticated",
    ),
    _Line(
        0.005,
        "WATCHDOG",
        "WATCHDOG",
        1,
        0,
        "[FAUPGRADE][auto_firmware_check:(6193)]retrieve firmware information",
        "[FAUPGRADE][auto_firmware_check:(6193)]retrieve firmware information",
    ),
    _Line(
        0.005,
        "WATCHDOG",
        "WATCHDOG",
        1,
        0,
        "[FAUPGRADE][auto_firmware_check:(6210)]no need to upgrade firmware",
        "[FAUPGRADE][auto_firmware_check:(6210)]no need to upgrade firmware",
    ),
    _Line(
        0.003,
        "crond",
        "crond[1412]",
        9,
        3,
        "time disparity of {k} minutes detected",
        "time disparity of {k} minutes detected",
        pid=1412,
    ),
)
_LEVELS = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MODELS = ("RT-AX3000", "RT-AX58U", "RT-AX86U", "GT-AX6000", "RT-AX88U", "RT-AC68U")
_N_DEVICES = 20
_N_OPENWRT = 2  # the last devices speak OpenWrt hostapd phrasing on wlX-apY interfaces
_STATIONS_PER_DEVICE = 200  # 4,000 stations in all
_ASUS_IFACES = (("eth5", 0.35), ("eth6", 0.60), ("eth7", 0.05))
_OPENWRT_IFACES = (("wl0-ap0", 0.4), ("wl1-ap0", 0.6))
_RECORDS_PER_SECOND = 0.5  # all devices together: 1M records span about 23 days
_RECORDS_PER_BURST = 1.6  # records are grouped in seconds: most records share their second
_START = "2025-05-01T00:00:00"
_CHUNK = 100_000

_RECORD = (
    '    {{\n      "id": {id},\n      "device_id": {dev},\n      "device_ip": "{host}",\n'
    '      "timestamp": "{ts}",\n      "log_level": "{level}",\n      "process_name": "{proc}",\n'
    '      "message": "{msg}",\n      "raw_message": "<{pri}>{stamp} {host} {tag}: {msg}\\n",\n'
    '      "structured_data": "{sd}",\n      "pushed_to_ai": false,\n      "pushed_at": null,\n'
    '      "push_attempts": 0,\n      "last_push_error": null\n    }}'
)


def _check_lines() -> None:
    for line in _LINES:
        for text in (line.asus, line.openwrt, line.tag, line.process):
            if any(c in text for c in '"\\') or not text.isascii():
                raise ValueError(f"generator template needs JSON escaping: {text!r}")
    if abs(sum(line.weight for line in _LINES) - 1.0) > 1e-9:
        raise ValueError("generator line weights must sum to 1")


_check_lines()


def _structured_data_text(line: _Line) -> str:
    """The JSON-escaped body of the ``structured_data`` string, e.g. ``{\\"priority\\": 30, ...}``."""
    obj: dict[str, int] = {} if line.pid is None else {"pid": line.pid}
    priority = line.facility * 8 + line.severity
    obj.update(priority=priority, facility=line.facility, severity_code=line.severity)
    return json.dumps(json.dumps(obj))[1:-1]


@dataclass(frozen=True)
class _Fleet:
    """Routers and their stations."""

    device_ids: list[int]
    hosts: list[str]
    openwrt: np.ndarray  # bool per device
    macs: list[str]  # per station, lower case
    macs_upper: list[str]
    station_iface: np.ndarray  # interface code per station (index into _iface_names())


def _iface_names() -> list[str]:
    return [name for name, _ in _ASUS_IFACES] + [name for name, _ in _OPENWRT_IFACES]


def _station_macs(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` stations' MACs, lower case; about 30% are phones' private MACs (locally administered bit set)."""
    import numpy as np

    octets = rng.integers(0, 256, size=(n, 6), dtype=np.int64)
    randomised = rng.random(n) < 0.3
    octets[:, 0] = np.where(randomised, (octets[:, 0] | 0x02) & 0xFE, octets[:, 0] & 0xFC)
    return [":".join(f"{o:02x}" for o in row) for row in octets.tolist()]


def _make_fleet(rng: np.random.Generator) -> _Fleet:
    import numpy as np

    device_ids = sorted(rng.choice(np.arange(1, 100), _N_DEVICES, replace=False).tolist())
    hosts = []
    for d in range(_N_DEVICES):
        if d >= _N_DEVICES - _N_OPENWRT:
            hosts.append(f"OpenWrt-AP-{d:02d}")
        else:
            model = _MODELS[int(rng.integers(len(_MODELS)))]
            hosts.append(f"{model}-{int(rng.integers(16**4)):04X}-{int(rng.integers(16**7)):07X}-C")
    openwrt = np.arange(_N_DEVICES) >= _N_DEVICES - _N_OPENWRT
    n_st = _N_DEVICES * _STATIONS_PER_DEVICE
    macs = _station_macs(rng, n_st)
    on_openwrt = openwrt[np.arange(n_st) // _STATIONS_PER_DEVICE]
    asus_if = rng.choice(len(_ASUS_IFACES), n_st, p=[w for _, w in _ASUS_IFACES])
    owrt_if = len(_ASUS_IFACES) + rng.choice(len(_OPENWRT_IFACES), n_st, p=[w for _, w in _OPENWRT_IFACES])
    station_iface = np.where(on_openwrt, owrt_if, asus_if)
    return _Fleet(device_ids, hosts, openwrt, macs, [m.upper() for m in macs], station_iface)


@dataclass(frozen=True)
class _Draws:
    """Everything random about the records, as arrays in chronological order."""

    seconds: np.ndarray  # int64 epoch seconds
    ids: np.ndarray
    device: np.ndarray
    station: np.ndarray
    line: np.ndarray
    session: np.ndarray
    aid: np.ndarray
    rssi: np.ndarray
    minutes: np.ndarray


def _record_extras(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """The draws of a record's session id, AID, RSSI and uptime minutes, drawn last (after the records' times,
    stations and lines), in this order: both generators' streams depend on it."""
    import numpy as np

    return {
        "session": rng.integers(0, 2**63, n, dtype=np.int64),
        "aid": rng.integers(1, 12, n),
        "rssi": rng.integers(30, 90, n),
        "minutes": 3_756_000 + rng.integers(0, 2_000, n),
    }


def _draw(rng: np.random.Generator, n: int) -> _Draws:
    import numpy as np

    start = int(np.datetime64(_START, "s").astype(np.int64))
    span = max(3600, int(n / _RECORDS_PER_SECOND))
    n_bursts = max(1, int(n / _RECORDS_PER_BURST))
    burst_second = start + rng.integers(0, span, n_bursts)
    burst_device = rng.integers(0, _N_DEVICES, n_bursts)
    burst = rng.integers(0, n_bursts, n)
    seconds, device = burst_second[burst], burst_device[burst]
    # Skewed popularity: a few chatty stations per router, a long tail of rare ones.
    station = device * _STATIONS_PER_DEVICE + (_STATIONS_PER_DEVICE * rng.random(n) ** 2).astype(np.int64)
    line = rng.choice(len(_LINES), n, p=[x.weight for x in _LINES])
    order = np.lexsort((rng.random(n), seconds))
    ids = 20_000 + np.cumsum(rng.integers(1, 4, n))  # ids grow with time, with gaps (other devices)
    return _Draws(
        seconds=seconds[order],
        ids=ids,
        device=device[order],
        station=station[order],
        line=line[order],
        **_record_extras(rng, n),
    )


def _day_stamps(seconds: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Syslog date prefix (``Jun  7``) per record, formatted once per distinct day."""
    import numpy as np

    days = seconds // 86_400
    uniq, inverse = np.unique(days, return_inverse=True)
    labels = []
    for d in uniq.tolist():
        date = np.datetime64(int(d), "D").astype(object)
        labels.append(f"{_MONTHS[date.month - 1]} {date.day:>2}")
    return inverse, labels


def _record_texts(fleet: _Fleet, draws: _Draws, rows: np.ndarray) -> list[str]:
    """The pretty-printed JSON text of the records at ``rows`` (chronological positions)."""
    iso = draws.seconds[rows].astype("datetime64[s]").astype(str).tolist()
    day_idx, day_labels = _day_stamps(draws.seconds[rows])
    device = draws.device[rows].tolist()
    station = draws.station[rows].tolist()
    iface_names = _iface_names()
    iface = [iface_names[c] for c in fleet.station_iface[draws.station[rows]].tolist()]
    templates = ([ln.asus for ln in _LINES], [ln.openwrt for ln in _LINES])
    sd = [_structured_data_text(ln) for ln in _LINES]
    columns = zip(
        draws.ids[rows].tolist(),
        device,
        station,
        iface,
        draws.line[rows].tolist(),
        fleet.openwrt[draws.device[rows]].tolist(),
        iso,
        day_idx.tolist(),
        draws.session[rows].tolist(),
        draws.aid[rows].tolist(),
        draws.rssi[rows].tolist(),
        draws.minutes[rows].tolist(),
    )
    out: list[str] = []
    for rid, d, st, ifc, line_no, ow, ts, day, sess, aid, rssi, minutes in columns:
        ln = _LINES[line_no]
        msg = templates[ow][line_no].format(
            i=ifc, m=fleet.macs[st], M=fleet.macs_upper[st], s=sess, a=aid, r=rssi, k=minutes
        )
        out.append(
            _RECORD.format(
                id=rid,
                dev=fleet.device_ids[d],
                host=fleet.hosts[d],
                ts=ts,
                level=_LEVELS[ln.severity],
                proc=ln.process,
                msg=msg,
                pri=ln.facility * 8 + ln.severity,
                stamp=f"{day_labels[day]} {ts[11:]}",
                tag=ln.tag,
                sd=sd[line_no],
            )
        )
    return out


def _created_at(rng: np.random.Generator, last_second: int) -> str:
    """Naive ISO time with microseconds, a few minutes after the newest record."""
    import numpy as np

    micros = (last_second + int(rng.integers(60, 3600))) * 1_000_000 + int(rng.integers(0, 1_000_000))
    return str(np.datetime64(micros, "us"))


def _export_name(rng: np.random.Generator, created_at: str) -> str:
    """``export_<uuid4>_<YYYYmmdd_HHMMSS>.json`` like the service, derived from the seed."""
    import uuid

    uid = uuid.UUID(bytes=rng.bytes(16), version=4)
    stamp = created_at[:19].replace("-", "").replace(":", "").replace("T", "_")
    return f"export_{uid}_{stamp}.json"


def _export_head(created_at: str, n_records: int) -> str:
    """The export's text up to its first record, as ``json.dump(doc, fh, indent=2)`` writes it."""
    return (
        '{\n  "export_metadata": {\n    "created_at": "%s",\n    "total_records": %d,\n'
        '    "format": "json"\n  },\n  "data": [\n' % (created_at, n_records)
    )


_EXPORT_TAIL = "\n  ]\n}"


def export_text_chunks(n_records: int, seed: int) -> tuple[str, Iterator[str]]:
    """-> (file name, the export's text in pieces).

    The text is exactly what ``json.dump(doc, fh, indent=2, ensure_ascii=False)`` writes, built
    per record with format strings (the generic encoder with ``indent`` is pure Python and slow)."""
    import numpy as np

    if n_records < 1:
        raise ValueError("an export holds at least one record")
    rng = np.random.default_rng(seed)
    fleet = _make_fleet(rng)
    draws = _draw(rng, n_records)
    created_at = _created_at(rng, int(draws.seconds[-1]))
    name = _export_name(rng, created_at)

    def pieces() -> Iterator[str]:
        yield _export_head(created_at, n_records)
        newest_first = np.arange(n_records - 1, -1, -1)
        for lo in range(0, n_records, _CHUNK):
            text = ",\n".join(_record_texts(fleet, draws, newest_first[lo : lo + _CHUNK]))
            yield text if lo == 0 else ",\n" + text
        yield _EXPORT_TAIL

    return name, pieces()


def write_export(folder: Path, n_records: int, seed: int) -> Path:
    """Write a generated export into ``folder``; returns its path."""
    name, pieces = export_text_chunks(n_records, seed)
    path = folder / name
    with open(path, "w", encoding="utf-8") as fh:
        for piece in pieces:
            fh.write(piece)
    return path


def records_for_megabytes(megabytes: float, seed: int, sample: int = 5_000) -> int:
    """How many generated records make an export of about ``megabytes`` MiB."""
    _, pieces = export_text_chunks(sample, seed)
    size = sum(len(p.encode("utf-8")) for p in pieces)
    return max(1, round(megabytes * MIB * sample / size))


# ---------------------------------------------------------------------------------------------
# A fleet: every router a device of its own, a daily export per router overlapping the previous by an hour
# ---------------------------------------------------------------------------------------------

_DAY = 86_400
FLEET_OVERLAP_SECONDS = 3_600  # a day's export starts an hour before its day: the previous export's last hour
_FLEET_SEED = 20_260_000


@dataclass(frozen=True)
class FleetExport:
    """One generated export of a fleet: router ``router``'s day ``day``, records in [start, end) (epoch s)."""

    path: Path
    router: int
    day: int
    start: int
    end: int
    records: int


def fleet_end(now: float | None = None) -> int:
    """The default end of a generated fleet (epoch seconds): the last UTC midnight. The newest records are
    yesterday's last; an export's created_at is up to an hour after its end (validation measures the plausible
    range from the earlier of created_at and now, with a day's tolerance)."""
    import time

    return int((time.time() if now is None else now) // _DAY) * _DAY


def _router(rng: np.random.Generator, router: int) -> _Fleet:
    """Router ``router`` as a one-device fleet: its own device_id, name, stations and interfaces (every tenth an
    OpenWrt access point, like the single-export generator's share)."""
    import numpy as np

    openwrt = router % 10 == 9
    if openwrt:
        host = f"OpenWrt-AP-{router:03d}"
    else:
        model = _MODELS[int(rng.integers(len(_MODELS)))]
        host = f"{model}-{router:04X}-{int(rng.integers(16**7)):07X}-C"
    macs = _station_macs(rng, _STATIONS_PER_DEVICE)
    if openwrt:
        iface = len(_ASUS_IFACES) + rng.choice(
            len(_OPENWRT_IFACES), _STATIONS_PER_DEVICE, p=[w for _, w in _OPENWRT_IFACES]
        )
    else:
        iface = rng.choice(len(_ASUS_IFACES), _STATIONS_PER_DEVICE, p=[w for _, w in _ASUS_IFACES])
    return _Fleet([1 + router], [host], np.array([openwrt]), macs, [m.upper() for m in macs], iface)


def _router_stream(
    rng: np.random.Generator, router: int, routers: int, start: int, hours: int, per_hour: float
) -> _Draws:
    """A router's records over ``hours`` hours from ``start``, in time order: hour h holds
    ``floor((h + 1) * per_hour) - floor(h * per_hour)`` records (so any 25 hours hold ``25 * per_hour`` within one),
    grouped in bursts of a second like the single-export generator's. Ids grow with time and are unique across
    the fleet: router r's are ``r`` modulo ``routers`` (one service numbering every router's records)."""
    import numpy as np

    edges = np.floor(np.arange(hours + 1) * per_hour).astype(np.int64)
    counts = np.diff(edges)
    n = int(counts.sum())
    bursts = np.where(counts > 0, np.maximum(1, np.rint(counts / _RECORDS_PER_BURST)), 0).astype(np.int64)
    hour_start = start + 3600 * np.arange(hours, dtype=np.int64)
    burst_second = np.repeat(hour_start, bursts) + rng.integers(0, 3600, int(bursts.sum()))
    first_burst = np.r_[0, np.cumsum(bursts)[:-1]]
    burst = np.repeat(first_burst, counts) + (rng.random(n) * np.repeat(bursts, counts)).astype(np.int64)
    seconds = burst_second[burst]
    order = np.lexsort((rng.random(n), seconds))
    station = (_STATIONS_PER_DEVICE * rng.random(n) ** 2).astype(np.int64)
    line = rng.choice(len(_LINES), n, p=[x.weight for x in _LINES])
    ids = 20_000 + routers * np.cumsum(rng.integers(1, 4, n)) + router
    return _Draws(
        seconds=seconds[order],
        ids=ids,
        device=np.zeros(n, dtype=np.int64),
        station=station[order],
        line=line[order],
        **_record_extras(rng, n),
    )


def _write_export_text(path: Path, created_at: str, texts: list[str]) -> None:
    """The export document exactly as ``export_text_chunks`` writes it, records newest first."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(_export_head(created_at, len(texts)))
        fh.write(",\n".join(texts))
        fh.write(_EXPORT_TAIL)


def router_exports(
    folder: Path,
    router: int,
    days: int,
    records: int,
    *,
    routers: int = 1,
    end: int | None = None,
    seed: int = _FLEET_SEED,
) -> list[FleetExport]:
    """Router ``router``'s ``days`` daily exports, written into ``folder`` as ``router<r>_day<d>.json``.

    The router is a device of its own (``_router``) with its own seeded traffic, generated as one stream over
    its days and sliced per day: the day-d export holds the records of [day d - 1 h, day d + 24 h), so it
    repeats the previous export's last hour record for record (same ids, same text), as the service re-exports
    them. About ``records`` records per export (exactly when ``records`` is a multiple of 25); the last day
    ends at ``end`` (epoch seconds, default :func:`fleet_end`)."""
    import numpy as np

    if records < 25 or days < 1:
        raise ValueError("a fleet export holds at least 25 records (one an hour), a router at least one day")
    rng = np.random.default_rng([seed, router])
    device = _router(rng, router)
    first_day = (fleet_end() if end is None else end) - days * _DAY
    start = first_day - FLEET_OVERLAP_SECONDS
    hours = days * 24 + FLEET_OVERLAP_SECONDS // 3600
    draws = _router_stream(rng, router, routers, start, hours, records / (24 + FLEET_OVERLAP_SECONDS / 3600))
    texts: dict[int, str] = {}  # row -> record text: the overlap hour's records are formatted once
    out = []
    for d in range(days):
        lo_s, hi_s = first_day + d * _DAY - FLEET_OVERLAP_SECONDS, first_day + (d + 1) * _DAY
        lo, hi = np.searchsorted(draws.seconds, [lo_s, hi_s])
        rows = np.arange(hi - 1, lo - 1, -1)  # newest first, like the service
        missing = np.array([r for r in rows.tolist() if r not in texts], dtype=np.int64)
        if len(missing):
            texts.update(zip(missing.tolist(), _record_texts(device, draws, missing)))
        created_at = _created_at(rng, hi_s)
        path = folder / f"router{router:03d}_day{d:02d}.json"
        _write_export_text(path, created_at, [texts[r] for r in rows.tolist()])
        for r in range(lo, min(hi, int(np.searchsorted(draws.seconds, hi_s - FLEET_OVERLAP_SECONDS)))):
            texts.pop(r, None)  # only the last hour is needed again
        out.append(FleetExport(path, router, d, lo_s, hi_s, int(hi - lo)))
    return out


def write_fleet(
    folder: Path, routers: int, days: int, records: int, *, end: int | None = None, seed: int = _FLEET_SEED
) -> list[FleetExport]:
    """``routers`` x ``days`` exports (see :func:`router_exports`), router by router; all routers' days end at the
    same ``end``."""
    folder.mkdir(parents=True, exist_ok=True)
    end = fleet_end() if end is None else end
    out: list[FleetExport] = []
    for r in range(routers):
        out.extend(router_exports(folder, r, days, records, routers=routers, end=end, seed=seed))
    return out
