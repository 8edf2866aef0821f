"""The simulated world: devices, stations, clock and log buffer; vendor phrasings; normal traffic."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcp_training_dagster.domain.scenarios.config import _DAY, _HOUR, _SCEN, NORMAL, ScenarioConfig
from mcp_training_dagster.domain.scenarios.templates import REASONS, STATUSES, TEMPLATE_CODES, TEMPLATES, _wlc_line

# --------------------------------------------------------------------------------------------------
# Simulated world
# --------------------------------------------------------------------------------------------------
# OUIs (universally administered) of common home devices, by kind.
_OUIS = {
    "iot": (
        "98:f4:ab",
        "24:6f:28",
        "84:cc:a8",
        "c8:c9:a3",
        "c4:41:1e",
        "00:0e:58",
        "44:65:0d",
        "d8:1f:12",
        "b8:27:eb",
        "dc:a6:32",
    ),
    "phone": ("f0:18:98", "a4:83:e7", "3c:22:fb", "dc:a9:04", "8c:f5:a3", "5c:e8:eb"),
    "laptop": ("3c:a9:f4", "a0:a8:cd", "f4:f5:d8", "30:d8:75", "80:c5:f2", "0c:ae:7d"),
    "tv": ("fc:65:de", "b0:a7:37", "f4:f5:d8", "30:23:03"),
    "attacker": ("00:c0:ca", "b8:27:eb", "dc:a6:32", "24:6f:28", "3c:a9:f4"),
}
_ASUS_MODELS = {
    "RT-AX3000": ("eth5", "eth6"),
    "RT-AX58U": ("eth5", "eth6"),
    "RT-AX86U": ("eth6", "eth7"),
    "RT-AX88U": ("eth6", "eth7"),
    "GT-AX6000": ("eth6", "eth7"),
    "RT-AC68U": ("eth1", "eth2"),
}
_OPENWRT_IFACES = (("wl0-ap0", "wl1-ap0"), ("phy0-ap0", "phy1-ap0"), ("wlan0", "wlan1"))
_OPENWRT_NAMES = ("OpenWrt-{loc}", "GL-MT3000-{hex3}", "Archer-C7-{loc}", "openwrt-ap-{loc_l}")
_LOCATIONS = ("Office", "Garage", "Attic", "Lobby", "Kitchen", "Lab", "Floor2", "Shop", "Annex", "Studio")
_CHANSPECS = (("0x1001 (1)", "0x1006 (6)", "0x100b (11)"), ("0xe02a (36/80)", "0xe09b (149/80)", "0xe06a (100/80)"))
_FREQS = ((2412, 2437, 2462), (5180, 5745, 5500))
_DFS_CHANNELS = (
    (5260, 52, 58, 5290, "0xe03a (52/80)"),
    (5500, 100, 106, 5530, "0xe06a (100/80)"),
    (5580, 116, 122, 5610, "0xe07a (116/80)"),
)
_CRON_CMDS = (
    "/usr/sbin/logrotate /etc/logrotate.conf",
    "/usr/lib/ddns/dynamic_dns_updater.sh -- start",
    "/sbin/fstrim -a",
    "/usr/bin/opkg-check-updates",
)


@dataclass
class _Station:
    mac: str
    kind: str  # iot | phone | laptop | tv | visitor
    churny: bool  # power-save phone that drops and rejoins every few minutes in the evening
    aid_form: bool  # ASUS prints "associated (aid N)" for this station
    p_band1: float  # probability of the second (5 GHz) interface
    aid: int


@dataclass
class _Device:
    index: int
    device_id: int
    hostname: str
    vendor: str  # "asus" | "openwrt"
    ifaces: tuple[str, str]
    radios: tuple[str, str]  # kernel names of the radios behind ifaces (wl0/wl1 or phy0/phy1)
    driver: str  # OpenWrt radio driver family: "ath10k" | "mt79"
    p_wlc: float  # share of station events ASUS also reports through wlceventd
    conn_alg: bool  # OpenWrt hostapd prints "auth_alg=open" on AP-STA-CONNECTED
    stations: list[_Station]
    phase0: int  # group rekey offset within the hour (until the first reboot)
    wd_sod: int  # second of day of the daily firmware check (ASUS)
    cron_pid: int
    reboots: list[tuple[int, int]] = field(default_factory=list)  # (up time, first rekey) per reboot
    s_start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # normal sessions
    s_end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    s_station: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    s_iface: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def connected_at(self, t: int) -> list[tuple[int, int]]:
        """(station index, interface index) of the stations the normal model has connected at ``t``."""
        hit = np.flatnonzero((self.s_start <= t) & (self.s_end > t))
        seen: dict[int, int] = {}
        for i in hit:
            seen[int(self.s_station[i])] = int(self.s_iface[i])
        return sorted(seen.items())

    def rekey_ticks(self, horizon: int) -> np.ndarray:
        """Times of the device-wide hourly group rekey; a reboot restarts the timer (new phase)."""
        bounds = [(-_DAY, self.phase0)] + [(up, first) for up, first in self.reboots]
        ticks = []
        for k, (begin, first) in enumerate(bounds):
            stop = bounds[k + 1][0] if k + 1 < len(bounds) else horizon
            origin = first if k else first - _DAY
            n0 = max(0, math.ceil((begin - origin) / _HOUR))
            n1 = max(n0, math.ceil((stop - origin) / _HOUR))
            ticks.append(origin + _HOUR * np.arange(n0, n1, dtype=np.int64))
        out = np.concatenate(ticks) if ticks else np.zeros(0, np.int64)
        return out[(out >= 0) & (out < horizon)]


class _Log:
    """Column accumulator for generated lines (one Python append per line, no per-line DataFrame work)."""

    def __init__(self) -> None:
        self.t: list[int] = []
        self.dev: list[int] = []
        self.key: list[str] = []
        self.msg: list[str] = []
        self.scen: list[int] = []
        self.mac: list[str] = []
        self.pid: list[int] = []

    def add(self, t: float, dev: _Device, key: str, scen: int, mac: str = "", **fields: Any) -> None:
        tpl = TEMPLATES[key]
        self.t.append(int(t))
        self.dev.append(dev.index)
        self.key.append(key)
        self.scen.append(scen)
        self.mac.append(mac)
        self.pid.append(int(fields.get("pid", 0)) if tpl.pid else 0)
        self.msg.append(tpl.text.format(mac=mac, MAC=mac.upper(), **fields))


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _new_mac(rng: np.random.Generator, used: set[str], ouis: tuple[str, ...] | None) -> str:
    """A MAC not yet used in this dataset: vendor OUI, or randomised (locally administered) if ``ouis`` is None."""
    while True:
        b = rng.integers(0, 256, 6)
        if ouis is None:
            b0 = (int(b[0]) & 0xFC) | 0x02
            mac = f"{b0:02x}:" + ":".join(f"{int(x):02x}" for x in b[1:])
        else:
            mac = ouis[int(rng.integers(len(ouis)))] + ":" + ":".join(f"{int(x):02x}" for x in b[3:])
        if mac not in used:
            used.add(mac)
            return mac


def _session_id(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(0, 2**63)):016X}"


def _rssi(rng: np.random.Generator) -> int:
    return int(rng.integers(-82, -35))


@dataclass
class _Clock:
    """Maps simulation seconds (0 = config.start) to the wall clock."""

    horizon: int
    sod0: int  # second of day of config.start
    wd0: int  # weekday of config.start

    def hour(self, t: float) -> float:
        return ((self.sod0 + t) % _DAY) / _HOUR

    def day_start(self, k: int) -> int:
        """Simulation time of midnight starting day ``k`` (0 = the day config.start falls in)."""
        return k * _DAY - self.sod0

    def weekday(self, k: int) -> int:
        return (self.wd0 + k) % 7


# --------------------------------------------------------------------------------------------------
# Vendor phrasings of connects, disconnects and failures
# --------------------------------------------------------------------------------------------------
# Normal disconnect phrasings per vendor: (weight, [(template, reason code or 0), ...]). The attack pools
# below use only phrasings that also appear here, so no single line gives an attack away.
_ASUS_LEAVE = (
    (0.60, (("w_disassoc", 8), ("h_disassoc", 0))),
    (0.22, (("w_deauth_ind", 3), ("h_disassoc", 0))),
    (0.06, (("w_deauth", 4), ("h_disassoc_idle", 0))),
    (0.04, (("w_deauth_ind", 1), ("h_disassoc", 0))),
    (0.03, (("w_deauth", 2), ("h_deauth_local", 0))),
    (0.02, (("w_deauth_ind", 7), ("h_disassoc", 0))),
    (0.015, (("w_deauth_ind", 6), ("h_disassoc", 0))),
    (0.015, (("w_disassoc", 1), ("h_disassoc", 0))),
    (0.01, (("w_deauth_ind", 2),)),
)
_ASUS_LEAVE_PLAIN = ((0.95, (("h_disassoc", 0),)), (0.05, (("h_disassoc_idle", 0),)))
_OPENWRT_LEAVE = (
    (0.62, (("h_disassoc", 0), ("c_disconnected", 0))),
    (0.22, (("c_disconnected", 0), ("h_deauth_idle", 0))),
    (0.12, (("c_disconnected", 0),)),
    (0.04, (("h_disassoc_idle", 0), ("c_disconnected", 0))),
)
_LOCAL_DEAUTH = {
    "asus": (("w_deauth", 1), ("h_deauth_local", 0)),
    "openwrt": (("h_deauth_local", 0), ("c_disconnected", 0)),
}
# Attack disconnect phrasings (subsets of the normal ones); weights are drawn per episode.
_ASUS_ATTACK_DISC = (
    (("w_deauth_ind", 7), ("h_disassoc", 0)),
    (("w_deauth_ind", 6), ("h_disassoc", 0)),
    (("w_deauth_ind", 1), ("h_disassoc", 0)),
    (("w_deauth_ind", 3), ("h_disassoc", 0)),
    (("w_deauth", 2), ("h_deauth_local", 0)),
    (("w_deauth", 1), ("h_deauth_local", 0)),
    (("w_disassoc", 8), ("h_disassoc", 0)),
    (("w_disassoc", 1), ("h_disassoc", 0)),
    (("h_deauth_local", 0),),
    (("h_disassoc", 0),),
)
_OPENWRT_ATTACK_DISC = (
    (("h_deauth_local", 0), ("c_disconnected", 0)),
    (("h_disassoc", 0), ("c_disconnected", 0)),
    (("c_disconnected", 0), ("h_deauth_idle", 0)),
    (("c_disconnected", 0),),
)
# Failed handshake attempts (after authenticate/associate): wrong passphrase, timeouts.
_ASUS_FAILS = (
    (("h_mic", 0), ("h_ptk_fail", 0), ("h_deauth_local", 0)),
    (("h_ptk_fail", 0), ("h_deauth_local", 0)),
    (("w_deauth_4way", 0), ("h_deauth_local", 0)),
    (("h_mic", 0), ("w_deauth_4way", 0), ("h_disassoc", 0)),
)
_OPENWRT_FAILS = (
    (("c_psk", 0), ("h_deauth_local", 0)),
    (("h_mic", 0), ("c_psk", 0), ("h_deauth_local", 0)),
    (("h_eapol_to", 0), ("h_deauth_local", 0)),
    (("h_ptk_fail", 0), ("h_deauth_local", 0)),
)


def _pick(rng: np.random.Generator, table: tuple) -> Any:
    w = np.array([row[0] for row in table], dtype=float)
    return table[int(rng.choice(len(table), p=w / w.sum()))][1]


class _Writer:
    """Emits vendor-specific line groups for one device into the log."""

    def __init__(self, log: _Log, dev: _Device, rng: np.random.Generator) -> None:
        self.log, self.dev, self.rng = log, dev, rng

    def lines(self, t: float, mac: str, iface: int, seq: tuple, scen: int, spread: bool = False) -> float:
        """Write a group of (template, code) lines for a station; ``spread`` puts a few seconds between them."""
        name = self.dev.ifaces[iface]
        for key, code in seq:
            extra: dict[str, Any] = {}
            if key.startswith("w_"):
                extra["line"] = _wlc_line(key)
                extra["rssi"] = _rssi(self.rng)
                if code:
                    extra["reason"] = f"{REASONS[code]} ({code})" if code in REASONS else ""
                    extra["status"] = f"{STATUSES[code]} ({code})" if code in STATUSES else ""
            self.log.add(t, self.dev, key, scen, mac, iface=name, **extra)
            if spread:
                t += float(self.rng.uniform(0.5, 4.0))
        return t

    def connect(
        self, t: float, st_mac: str, iface: int, scen: int, aid: int, aid_form: bool = True, roam: bool = False
    ) -> None:
        """A successful join: the association, key handshake and accounting lines of the vendor."""
        dev, rng, log, name = self.dev, self.rng, self.log, self.dev.ifaces[iface]
        if dev.vendor == "asus":
            if rng.random() < dev.p_wlc:
                self.lines(t, st_mac, iface, (("w_auth", 0), ("w_reassoc" if roam else "w_assoc", 0)), scen)
            if aid_form:
                log.add(t, dev, "h_assoc_aid", scen, st_mac, iface=name, aid=aid)
            else:
                log.add(t, dev, "h_assoc", scen, st_mac, iface=name)
            log.add(t, dev, "h_radius", scen, st_mac, iface=name, session=_session_id(rng))
            log.add(t + (1 if rng.random() < 0.08 else 0), dev, "h_ptk_ok", scen, st_mac, iface=name)
        else:
            log.add(t, dev, "h_auth", scen, st_mac, iface=name)
            log.add(t, dev, "h_assoc_aid", scen, st_mac, iface=name, aid=aid)
            t2 = t + (1 if rng.random() < 0.3 else 0)
            log.add(t2, dev, "c_connected_alg" if dev.conn_alg else "c_connected", scen, st_mac, iface=name)
            log.add(t2, dev, "h_radius", scen, st_mac, iface=name, session=_session_id(rng))
            log.add(t2, dev, "h_ptk_ok", scen, st_mac, iface=name)
            log.add(t2, dev, "c_4way", scen, st_mac, iface=name)

    def leave_seq(self, kind: str = "leave") -> tuple:
        """A normal disconnect phrasing: ``leave`` (station left) or ``local`` (AP-initiated deauth)."""
        dev, rng = self.dev, self.rng
        if kind == "local":
            seq = _LOCAL_DEAUTH[dev.vendor]
            return seq if dev.vendor == "openwrt" or rng.random() < dev.p_wlc else seq[1:]
        if dev.vendor == "openwrt":
            return _pick(rng, _OPENWRT_LEAVE)
        return _pick(rng, _ASUS_LEAVE) if rng.random() < dev.p_wlc else _pick(rng, _ASUS_LEAVE_PLAIN)

    def pre_join(self, t: float, mac: str, iface: int, scen: int, aid: int, aid_form: bool = True) -> None:
        """The authenticate/associate lines that precede a (failing) handshake."""
        dev, log, name = self.dev, self.log, self.dev.ifaces[iface]
        if dev.vendor == "asus":
            if self.rng.random() < dev.p_wlc:
                self.lines(t, mac, iface, (("w_auth", 0), ("w_assoc", 0)), scen)
            log.add(t, dev, "h_assoc_aid" if aid_form else "h_assoc", scen, mac, iface=name, aid=aid)
        else:
            log.add(t, dev, "h_auth", scen, mac, iface=name)
            log.add(t, dev, "h_assoc_aid", scen, mac, iface=name, aid=aid)

    def failed_join(
        self,
        t: float,
        mac: str,
        iface: int,
        scen: int,
        aid: int,
        weights: np.ndarray | None = None,
        aid_form: bool = True,
    ) -> float:
        """One failed join (wrong passphrase / handshake timeout); returns the time of its last line."""
        pool = _ASUS_FAILS if self.dev.vendor == "asus" else _OPENWRT_FAILS
        w = np.ones(len(pool)) if weights is None else weights
        seq = pool[int(self.rng.choice(len(pool), p=w / w.sum()))]
        self.pre_join(t, mac, iface, scen, aid, aid_form)
        # hostapd retries msg 1/4 four times (about a second apart) before giving up
        return self.lines(t + float(self.rng.uniform(1.0, 4.0)), mac, iface, seq, scen, spread=True)


# --------------------------------------------------------------------------------------------------
# Devices and normal traffic
# --------------------------------------------------------------------------------------------------
def _make_device(
    index: int, seed: int, vendor: str, cfg: ScenarioConfig, used: set[str], names: set[str], ids: np.ndarray
) -> _Device:
    rng = np.random.default_rng([seed, 1, index])
    if vendor == "asus":
        model = list(_ASUS_MODELS)[int(rng.integers(len(_ASUS_MODELS)))]
        ifaces = _ASUS_MODELS[model]
        radios = ("wl0", "wl1")
        while True:
            host = f"{model}-{int(rng.integers(0, 16**4)):04X}-{int(rng.integers(0, 16**7)):07X}-C"
            if host not in names:
                break
    else:
        ifaces = _OPENWRT_IFACES[int(rng.integers(len(_OPENWRT_IFACES)))]
        radios = ("phy0", "phy1")
        while True:
            loc = _LOCATIONS[int(rng.integers(len(_LOCATIONS)))]
            pattern = _OPENWRT_NAMES[int(rng.integers(len(_OPENWRT_NAMES)))]
            host = pattern.format(loc=loc, loc_l=loc.lower(), hex3=f"{int(rng.integers(0, 4096)):03x}")
            if host not in names:
                break
    names.add(host)
    lo, hi = cfg.stations_per_device
    n = int(rng.integers(lo, hi + 1))
    kinds = rng.choice(["iot", "phone", "laptop", "tv", "visitor"], size=n, p=[0.3, 0.35, 0.15, 0.07, 0.13])
    kinds[: min(n, 2)] = "iot"  # every home has something always on (speaker, plug, camera): hourly rekeys
    stations = []
    for k in kinds:
        k = str(k)
        randomised = (k in ("phone", "visitor") and rng.random() < 0.75) or (k == "laptop" and rng.random() < 0.2)
        mac = _new_mac(rng, used, None if randomised else _OUIS["phone" if k == "visitor" else k])
        p_band1 = {"iot": 0.08, "phone": 0.75, "laptop": 0.7, "tv": 0.8, "visitor": 0.6}[k]
        stations.append(
            _Station(
                mac,
                k,
                k == "phone" and rng.random() < 0.15,
                bool(rng.random() < 0.5),
                p_band1,
                int(rng.integers(1, max(3, n // 2))),
            )
        )
    return _Device(
        index=index,
        device_id=int(ids[index]),
        hostname=host,
        vendor=vendor,
        ifaces=ifaces,
        radios=radios,
        driver=("ath10k", "mt79")[int(rng.integers(2))],
        p_wlc=float(rng.uniform(0.25, 0.9)),
        conn_alg=bool(rng.random() < 0.5),
        stations=stations,
        phase0=int(rng.integers(0, _HOUR)),
        wd_sod=int(4 * _HOUR + rng.integers(40, 59) * 60),
        cron_pid=int(rng.integers(300, 3000)),
    )


def _presence(st: _Station, rng: np.random.Generator, clock: _Clock) -> list[tuple[float, float]]:
    """Intervals the station is in range of the router (simulated from one day before the start)."""
    n_days = int(math.ceil((clock.horizon + clock.sod0) / _DAY)) + 1
    lo, hi = float(-_DAY), float(clock.horizon)
    if st.kind == "iot":
        return [(lo, hi)]
    blocks: list[tuple[float, float]] = []
    if st.kind == "visitor":
        for _ in range(int(rng.integers(1, 3))):
            a = clock.day_start(int(rng.integers(0, max(1, n_days - 1)))) + rng.uniform(10, 21) * _HOUR
            blocks.append((a, a + rng.uniform(1, 4) * _HOUR))
    elif st.kind == "phone":  # at home except when out (work on weekdays, outings otherwise)
        away = []
        p_work = rng.uniform(0.5, 0.9)
        for k in range(-1, n_days):
            d0 = clock.day_start(k)
            if clock.weekday(k) < 5 and rng.random() < p_work:
                a = d0 + rng.normal(7.9, 0.6) * _HOUR
                away.append((a, d0 + rng.normal(17.8, 1.2) * _HOUR))
            elif rng.random() < 0.45:
                a = d0 + rng.uniform(9.5, 15.0) * _HOUR
                away.append((a, a + rng.uniform(1.5, 5.0) * _HOUR))
        t = lo
        for a, b in away:
            if a > t:
                blocks.append((t, a))
            t = max(t, b)
        blocks.append((t, hi))
    else:  # laptop / tv: in use in blocks
        for k in range(-1, n_days):
            d0 = clock.day_start(k)
            weekday = clock.weekday(k) < 5
            if st.kind == "laptop" and weekday and rng.random() < 0.5:
                blocks.append((d0 + rng.normal(8.7, 0.5) * _HOUR, d0 + rng.normal(17.3, 0.8) * _HOUR))
            if rng.random() < (0.7 if st.kind == "laptop" else 0.85):
                blocks.append((d0 + rng.normal(19.2, 0.8) * _HOUR, d0 + rng.normal(23.0, 0.6) * _HOUR))
            if not weekday and rng.random() < 0.6:
                a = d0 + rng.uniform(10, 16) * _HOUR
                blocks.append((a, a + rng.uniform(2, 6) * _HOUR))
    out: list[tuple[float, float]] = []
    for a, b in sorted(blocks):
        a, b = max(a, lo), min(b, hi)
        if b - a < 60:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _means(st: _Station, hour: float) -> tuple[float, float]:
    """(mean session length, mean gap) in seconds for the station at that hour: phones doze connected at
    night and roam in and out of power save in the evening; churny phones rejoin every few minutes."""
    if st.kind == "iot":
        return 16 * _HOUR, 40.0
    if st.kind == "tv":
        return 2 * _HOUR, 60.0
    if st.kind == "laptop":
        return 90 * 60.0, 120.0
    if st.churny and (hour >= 20 or hour < 1):
        return 300.0, 240.0
    if hour < 6:
        return 5 * _HOUR, 120.0
    if hour < 9:
        return 30 * 60.0, 60 * 60.0
    if hour < 17:
        return 45 * 60.0, 90 * 60.0
    if hour < 23:
        return 45 * 60.0, 40 * 60.0
    return 2 * _HOUR, 300.0


def _station_sessions(
    st: _Station, rng: np.random.Generator, clock: _Clock, roam_ok: bool
) -> list[tuple[int, int, int, bool, bool]]:
    """(start, end, interface, roamed in, ends by leaving) of the station's sessions."""
    out: list[tuple[int, int, int, bool, bool]] = []
    iface = int(rng.random() < st.p_band1)
    for a, b in _presence(st, rng, clock):
        t, roamed = a, False
        while t < b:
            on, off = _means(st, clock.hour(t))
            e = t + rng.exponential(on) + 5.0
            leaves = e >= b
            e = min(e, b)
            out.append((int(t), int(e), iface, roamed, leaves))
            if leaves:
                break
            roamed = roam_ok and rng.random() < 0.06
            if roamed:  # band steering / roaming between the two radios: rejoin within seconds
                iface, t = 1 - iface, e + float(rng.integers(0, 3))
            else:
                if rng.random() < 0.1:
                    iface = int(rng.random() < st.p_band1)
                t = e + rng.exponential(off) + 1.0
        iface = int(rng.random() < st.p_band1)
    return out


def _normal_traffic(dev: _Device, clock: _Clock, log: _Log, seed: int) -> None:
    """Sessions, hourly group rekeys and background processes of one device (scenario ``normal``)."""
    rng = np.random.default_rng([seed, 2, dev.index])
    w = _Writer(log, dev, rng)
    T, scen = clock.horizon, _SCEN[NORMAL]
    starts, ends, who, ifs = [], [], [], []
    for si, st in enumerate(dev.stations):
        sessions = _station_sessions(st, rng, clock, roam_ok=st.kind in ("phone", "laptop", "visitor"))
        for j, (s, e, iface, roamed, leaves) in enumerate(sessions):
            starts.append(s)
            ends.append(e)
            who.append(si)
            ifs.append(iface)
            aid = st.aid if dev.vendor == "asus" else int(rng.integers(1, 2 + len(dev.stations)))
            if 0 <= s < T:
                prev_end = sessions[j - 1][1] if j else -_DAY
                lead = float(rng.uniform(25, 90))
                if not roamed and s - lead > max(prev_end, 0) and rng.random() < 0.015:
                    # a benign single failed handshake (timeout, bad MIC) before the join succeeds
                    w.failed_join(s - lead, st.mac, iface, scen, aid, aid_form=st.aid_form)
                elif dev.vendor == "asus" and not roamed and s - 10 > max(prev_end, 0) and rng.random() < 0.006:
                    key = ("w_auth_fail", "w_assoc_fail")[int(rng.integers(2))]
                    codes = TEMPLATE_CODES[key]
                    code = codes[int(rng.integers(len(codes)))]
                    w.lines(s - int(rng.integers(2, 10)), st.mac, iface, ((key, code),), scen)
                w.connect(s, st.mac, iface, scen, aid, st.aid_form, roam=roamed)
            if 0 <= e < T:
                roam_out = j + 1 < len(sessions) and sessions[j + 1][3]
                if roam_out:
                    seq = w.leave_seq("leave")
                elif rng.random() < (0.015 if not leaves else 0.03):
                    seq = w.leave_seq("local")  # normal single deauth "due to local deauth request"
                else:
                    seq = w.leave_seq("leave")
                w.lines(e, st.mac, iface, seq, scen)
    dev.s_start = np.asarray(starts, np.int64)
    dev.s_end = np.asarray(ends, np.int64)
    dev.s_station = np.asarray(who, np.int64)
    dev.s_iface = np.asarray(ifs, np.int64)

    # Hourly group rekey: every station connected at the tick, in a burst of a couple of seconds.
    for tick in dev.rekey_ticks(T):
        hit = np.flatnonzero((dev.s_start <= tick - 2) & (dev.s_end > tick + 2))
        step = rng.uniform(0.05, 0.25)
        for rank, i in enumerate(hit[np.argsort(dev.s_station[hit], kind="stable")]):
            log.add(
                tick + min(2, int(rank * step)),
                dev,
                "h_gtk_ok",
                scen,
                dev.stations[int(dev.s_station[i])].mac,
                iface=dev.ifaces[int(dev.s_iface[i])],
            )

    # Background: daily firmware check (ASUS WATCHDOG, emergency) or cron jobs (OpenWrt), occasional
    # automatic channel re-selection, and an occasional lone radio reset that is not an incident.
    n_days = int(math.ceil((T + clock.sod0) / _DAY)) + 1
    for k in range(n_days):
        d0 = clock.day_start(k)
        if dev.vendor == "asus":
            t = d0 + dev.wd_sod + int(rng.integers(0, 50))
            for dt in (0, 30):
                if 0 <= t + dt < T:
                    log.add(t + dt, dev, "wd_retrieve", scen)
                    log.add(t + dt, dev, "wd_noneed", scen)
        else:
            minute = 17 + dev.index % 30
            for h in range(1, 24, 3):
                t = d0 + h * _HOUR + minute * 60
                if 0 <= t < T:
                    dev.cron_pid += int(rng.integers(3, 40))
                    log.add(
                        t,
                        dev,
                        "cr_job",
                        scen,
                        n=dev.cron_pid + 1,
                        pid=dev.cron_pid,
                        cmd=_CRON_CMDS[(h // 3) % len(_CRON_CMDS)],
                    )
    for t in np.sort(rng.uniform(0, T, rng.poisson(T / (10 * _HOUR)))):
        band = int(rng.integers(2))
        if dev.vendor == "asus":
            spec = _CHANSPECS[band][int(rng.integers(3))]
            log.add(
                t,
                dev,
                "a_chanspec" if rng.random() < 0.7 else "a_adjusted",
                scen,
                iface=dev.ifaces[band],
                chanspec=spec,
            )
        elif rng.random() < 0.25:
            freq = _FREQS[band][int(rng.integers(3))]
            log.add(t, dev, "c_csa_done", scen, iface=dev.ifaces[band], freq=freq)
    for t in rng.uniform(0, T, rng.poisson(T / (4 * _DAY))):  # a lone radio reset now and then is normal
        _radio_line(log, dev, rng, t, int(rng.integers(2)), scen)


def _radio_line(
    log: _Log,
    dev: _Device,
    rng: np.random.Generator,
    t: float,
    radio: int,
    scen: int,
    keys: tuple[str, ...] | None = None,
    weights: np.ndarray | None = None,
) -> None:
    """One driver/radio error line for radio ``radio`` in the device's kernel phrasing."""
    if keys is None:
        keys = (
            ("k_fatal", "k_psm", "k_trap")
            if dev.vendor == "asus"
            else ("k_hwrestart", "k_ath_crash" if dev.driver == "ath10k" else "k_mt_error")
        )
    w = np.ones(len(keys)) if weights is None else weights
    key = keys[int(rng.choice(len(keys), p=w / w.sum()))]
    guid = "-".join(f"{int(rng.integers(0, 16**n)):0{n}x}" for n in (8, 4, 4, 4, 12))
    log.add(
        t,
        dev,
        key,
        scen,
        radio=dev.radios[radio],
        phy=dev.radios[radio],
        unit=radio,
        bus=radio + 1,
        n=int(t) % 100000 + 1000,
        guid=guid,
    )
