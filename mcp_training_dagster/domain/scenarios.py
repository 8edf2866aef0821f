"""Labelled scenario generator: realistic router syslog in the upstream export format, with ground truth.

Why: real exports carry no labels, so precision and recall can only be measured on data whose
anomalies we know. This module simulates WiFi routers (ASUS/Broadcom ``hostapd`` + ``wlceventd`` and
OpenWrt ``hostapd`` phrasings), calibrated on the real ASUS export shipped in ``sample_exports``, and
injects attack episodes and benign lookalikes, labelling every record.

Design rules
- Normal traffic is modelled per station (IoT devices always on, phones following a home/away day with
  power-save churn, laptops/TVs in blocks, occasional visitors), so counts, diurnal shape, the hourly
  device-wide group rekey burst and the connect/disconnect line groups look like the real file.
- Attacks differ from normal traffic in the *rates and combinations* of events, never in a wording of
  their own: every phrasing (and reason code) an attack uses also occurs, rarely, in normal or benign
  traffic. Wording, reason codes and intensity vary per episode and per device.
- Every template is classified by the project's event catalog to the event type it is meant to be
  (tested), and the station MAC is the first MAC of each line, as validation expects.
- Reproducible: ``numpy.random.default_rng`` streams derived from the seed (no global random state, no
  wall clock), so the same config gives byte-identical records. The stations and sessions of a device
  do not depend on which episodes are configured (separate streams).

Episodes never overlap on one device, avoid the first day (history for detectors) and are spread over
the period by stratified sampling. Records produced by an episode are labelled with its scenario; normal
records of other stations during an episode stay ``normal``. Silence episodes have no records (only an
episode row); a station episode replaces that station's own normal records inside its window.

``inject_episodes`` writes the same anomaly episodes, with the same builders and templates, into a
held-out period of a REAL validated stream: on a simulated twin of each real device (its device key,
host name, interfaces, vendor wording and known stations), returning the new records with their
labels, the episodes, and the ids of real records a silence (or a reconnect loop) takes away.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

ANOMALY_SCENARIOS: tuple[str, ...] = (
    "deauth_flood",
    "auth_bruteforce",
    "reconnect_loop",
    "mac_flood",
    "radio_fault",
    "silence",
)
BENIGN_SCENARIOS: tuple[str, ...] = ("reboot_wave", "mistyped_passphrase", "iot_gtk_deauth", "boot_dfs")
NORMAL = "normal"
SCENARIO_NAMES: tuple[str, ...] = (NORMAL, *ANOMALY_SCENARIOS, *BENIGN_SCENARIOS)
_SCEN = {name: i for i, name in enumerate(SCENARIO_NAMES)}

LABEL_COLUMNS: tuple[str, ...] = ("id", "is_anomaly", "scenario")
EPISODE_COLUMNS: tuple[str, ...] = ("scenario", "is_anomaly", "device", "entity_kind", "entity", "start", "end")
_LEVELS: tuple[str, ...] = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY = 86_400
_HOUR = 3_600


# --------------------------------------------------------------------------------------------------
# Message templates: the only place wording lives. Each names the event type the catalog must give it.
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    """One syslog line shape: process, syslog facility/severity, text, intended event type."""

    process: str
    facility: int
    severity: int
    text: str  # str.format fields: iface, mac (lower), MAC (upper), aid, session, rssi, reason, status, ...
    event_type: str
    pid: bool = False  # the tag carries "[pid]" and structured_data a "pid" (like crond)


_DAEMON, _USER, _KERN, _CRON = 3, 1, 0, 9
_INFO, _NOTICE, _WARNING, _ERROR, _CRIT, _EMERG = 6, 5, 4, 3, 2, 0
_STA = "{iface}: STA {mac} "
_WLC = "wlceventd_proc_event({line}): {iface}: "

TEMPLATES: dict[str, Template] = {
    # hostapd logger lines (ASUS and OpenWrt), daemon.info as in the real export
    "h_auth": Template("hostapd", _DAEMON, _INFO, _STA + "IEEE 802.11: authenticated", "authentication"),
    "h_assoc": Template("hostapd", _DAEMON, _INFO, _STA + "IEEE 802.11: associated", "association"),
    "h_assoc_aid": Template("hostapd", _DAEMON, _INFO, _STA + "IEEE 802.11: associated (aid {aid})", "association"),
    "h_radius": Template("hostapd", _DAEMON, _INFO, _STA + "RADIUS: starting accounting session {session}",
                         "radius_accounting"),
    "h_ptk_ok": Template("hostapd", _DAEMON, _INFO, _STA + "WPA: pairwise key handshake completed (RSN)",
                         "pairwise_handshake_success"),
    "h_gtk_ok": Template("hostapd", _DAEMON, _INFO, _STA + "WPA: group key handshake completed (RSN)",
                         "group_key_success"),
    "h_gtk_fail": Template("hostapd", _DAEMON, _INFO, _STA + "WPA: group key handshake failed (RSN) after 4 tries",
                           "group_key_failure"),
    "h_ptk_fail": Template("hostapd", _DAEMON, _INFO, _STA + "WPA: pairwise key handshake failed (RSN) after 4 tries",
                           "pairwise_handshake_failure"),
    "h_mic": Template("hostapd", _DAEMON, _INFO, _STA + "WPA: invalid MIC in msg 2/4 of 4-Way Handshake",
                      "psk_mismatch"),
    "h_eapol_to": Template("hostapd", _DAEMON, _INFO, _STA + "WPA: EAPOL-Key timeout", "eapol_timeout"),
    "h_disassoc": Template("hostapd", _DAEMON, _INFO, _STA + "IEEE 802.11: disassociated", "disassociation"),
    "h_disassoc_idle": Template("hostapd", _DAEMON, _INFO, _STA + "IEEE 802.11: disassociated due to inactivity",
                                "disassociation"),
    "h_deauth_local": Template("hostapd", _DAEMON, _INFO,
                               _STA + "IEEE 802.11: deauthenticated due to local deauth request", "deauthentication"),
    "h_deauth_idle": Template("hostapd", _DAEMON, _INFO,
                              _STA + "IEEE 802.11: deauthenticated due to inactivity (timer DEAUTH/REMOVE)",
                              "deauthentication"),
    # hostapd control events (OpenWrt), daemon.notice
    "c_connected": Template("hostapd", _DAEMON, _NOTICE, "{iface}: AP-STA-CONNECTED {mac}", "ap_sta_connected"),
    "c_connected_alg": Template("hostapd", _DAEMON, _NOTICE, "{iface}: AP-STA-CONNECTED {mac} auth_alg=open",
                                "ap_sta_connected"),
    "c_4way": Template("hostapd", _DAEMON, _NOTICE, "{iface}: EAPOL-4WAY-HS-COMPLETED {mac}",
                       "pairwise_handshake_success"),
    "c_disconnected": Template("hostapd", _DAEMON, _NOTICE, "{iface}: AP-STA-DISCONNECTED {mac}",
                               "ap_sta_disconnected"),
    "c_psk": Template("hostapd", _DAEMON, _NOTICE, "{iface}: AP-STA-POSSIBLE-PSK-MISMATCH {mac}", "psk_mismatch"),
    "c_cac_start": Template("hostapd", _DAEMON, _NOTICE,
                            "{iface}: DFS-CAC-START freq={freq} chan={chan} sec_chan=1, width=1, seg0={seg0}, "
                            "seg1=0, cac_time={cac}s", "dfs"),
    "c_cac_done": Template("hostapd", _DAEMON, _NOTICE,
                           "{iface}: DFS-CAC-COMPLETED success=1 freq={freq} ht_enabled=0 chan_offset=0 "
                           "chan_width=3 cf1={cf1} cf2=0", "dfs"),
    "c_csa_start": Template("hostapd", _DAEMON, _NOTICE,
                            "{iface}: CTRL-EVENT-STARTED-CHANNEL-SWITCH freq={freq} ht_enabled=1 ch_offset=1 "
                            "ch_width=80 MHz cf1={cf1} cf2=0", "channel_switch"),
    "c_csa_done": Template("hostapd", _DAEMON, _NOTICE, "{iface}: AP-CSA-FINISHED freq={freq} dfs=0",
                           "channel_switch"),
    "c_ap_enabled": Template("hostapd", _DAEMON, _NOTICE, "{iface}: AP-ENABLED", "interface_state"),
    # Broadcom wlceventd (ASUS): upper-case MACs, status/reason text with the numeric code
    "w_auth": Template("wlceventd", _USER, _INFO, _WLC + "Auth {MAC}, status: Successful (0), rssi:{rssi}",
                       "authentication"),
    "w_auth_fail": Template("wlceventd", _USER, _INFO, _WLC + "Auth {MAC}, status: {status}, rssi:{rssi}",
                            "auth_failure"),
    "w_assoc": Template("wlceventd", _USER, _INFO, _WLC + "Assoc {MAC}, status: Successful (0), rssi:{rssi}",
                        "association"),
    "w_assoc_fail": Template("wlceventd", _USER, _INFO, _WLC + "Assoc {MAC}, status: {status}, rssi:{rssi}",
                             "auth_failure"),
    "w_reassoc": Template("wlceventd", _USER, _INFO, _WLC + "ReAssoc {MAC}, status: Successful (0), rssi:{rssi}",
                          "reassociation"),
    "w_deauth": Template("wlceventd", _USER, _INFO, _WLC + "Deauth {MAC}, status: 0, reason: {reason}, rssi:0",
                         "deauthentication"),
    "w_deauth_ind": Template("wlceventd", _USER, _INFO,
                             _WLC + "Deauth_ind {MAC}, status: 0, reason: {reason}, rssi:0", "deauthentication"),
    "w_disassoc": Template("wlceventd", _USER, _INFO, _WLC + "Disassoc {MAC}, status: 0, reason: {reason}, rssi:0",
                           "disassociation"),
    "w_deauth_4way": Template("wlceventd", _USER, _INFO,
                              _WLC + "Deauth_ind {MAC}, status: 0, reason: 4-Way Handshake timeout (15), rssi:0",
                              "eapol_timeout"),
    # acsd (ASUS auto channel selection, also runs the DFS checks)
    "a_chanspec": Template("acsd", _DAEMON, _NOTICE, "{iface}: selected channel spec: {chanspec}", "channel_switch"),
    "a_adjusted": Template("acsd", _DAEMON, _NOTICE, "{iface}: adjusted channel spec: {chanspec}", "channel_switch"),
    "a_cac_start": Template("acsd", _DAEMON, _NOTICE,
                            "{iface}: DFS: channel availability check started on chanspec {chanspec}", "dfs"),
    "a_cac_done": Template("acsd", _DAEMON, _NOTICE, "{iface}: DFS: CAC completed on chanspec {chanspec}, no radar "
                           "detected", "dfs"),
    # kernel: radio/driver health (caught on any process) and harmless boot lines
    "k_fatal": Template("kernel", _KERN, _ERROR, "{radio}: fatal error, reinitializing", "radio_error"),
    "k_psm": Template("kernel", _KERN, _CRIT, "{radio}: PSM microcode watchdog fired at {n} (seconds). Resetting.",
                      "radio_error"),
    "k_trap": Template("kernel", _KERN, _CRIT, "dhd{unit}: dongle trap detected, firmware halted", "radio_error"),
    "k_hwrestart": Template("kernel", _KERN, _ERROR, "ieee80211 {phy}: Hardware restart was requested",
                            "radio_error"),
    "k_ath_crash": Template("kernel", _KERN, _ERROR, "ath10k_pci 0000:0{bus}:00.0: firmware crashed! (guid {guid})",
                            "radio_error"),
    "k_mt_error": Template("kernel", _KERN, _ERROR, "mt7915e 0000:0{bus}:00.0: Firmware Error Detected",
                           "radio_error"),
    "k_boot_wl": Template("kernel", _KERN, _INFO, "{radio}: Broadcom BCM{chip} 802.11 Wireless Controller {ver}",
                          "other_process"),
    "k_boot_linux": Template("kernel", _KERN, _NOTICE,
                             "Linux version {kver} (builder@buildhost) (gcc version 12.3.0) #0 SMP", "other_process"),
    # non-WiFi background with the real levels (crond error with pid, WATCHDOG emergency)
    "cr_disparity": Template("crond", _CRON, _ERROR, "time disparity of {n} minutes detected", "other_process", True),
    "cr_job": Template("crond", _CRON, _INFO, "USER root pid {n} cmd {cmd}", "other_process", True),
    "wd_retrieve": Template("WATCHDOG", _USER, _EMERG, "[FAUPGRADE][auto_firmware_check:(6193)]retrieve firmware "
                            "information", "other_process"),
    "wd_noneed": Template("WATCHDOG", _USER, _EMERG, "[FAUPGRADE][auto_firmware_check:(6210)]no need to upgrade "
                          "firmware", "other_process"),
    "wd_periodic": Template("WATCHDOG", _USER, _EMERG, "[FAUPGRADE][auto_firmware_check:(6163)]periodic_check AM "
                            "{hm}", "other_process"),
    "p_init": Template("procd", _DAEMON, _INFO, "- init complete -", "other_process"),
    "n_up": Template("netifd", _DAEMON, _NOTICE, "Interface '{net}' is now up", "other_process"),
}

# 802.11 reason / status codes as Broadcom prints them (text, then the code in parentheses).
REASONS: dict[int, str] = {
    1: "Unspecified reason",
    2: "Previous authentication no longer valid",
    3: "Deauthenticated because sending station is leaving (or has left) IBSS or ESS",
    4: "Disassociated due to inactivity",
    6: "Class 2 frame received from nonauthenticated station",
    7: "Class 3 frame received from nonassociated station",
    8: "Disassociated because sending station is leaving (or has left) BSS",
}
STATUSES: dict[int, str] = {
    1: "Unspecified failure",
    13: "Responding station does not support the specified authentication algorithm",
    17: "Association denied because AP is unable to handle additional associated STAs",
    53: "Invalid pairwise master key identifier",
}
# The reason/status codes each template may carry (all of them are tested against the catalog).
TEMPLATE_CODES: dict[str, tuple[int, ...]] = {
    "w_deauth": (1, 2, 3, 4, 6, 7, 8),
    "w_deauth_ind": (1, 2, 3, 4, 6, 7, 8),
    "w_disassoc": (1, 3, 4, 8),
    "w_auth_fail": (1, 13),
    "w_assoc_fail": (1, 17, 53),
}
_WLC_LINES = {"Auth": 527, "Assoc": 537, "ReAssoc": 537, "Deauth": 494, "Deauth_ind": 494, "Disassoc": 511}


def _wlc_line(key: str) -> int:
    """The source line wlceventd prints for a frame kind (Broadcom logs one line number per handler)."""
    text = TEMPLATES[key].text
    kind = text.split("{iface}: ", 1)[1].split(" ", 1)[0] if key.startswith("w_") else ""
    return _WLC_LINES.get(kind, 511)


def template_fields(key: str, mac: str = "c4:41:1e:09:a4:5d", iface: str = "eth6", code: int | None = None
                    ) -> dict[str, Any]:
    """Example field values for template ``key`` (a documented line per template; the tests render them)."""
    fields: dict[str, Any] = {
        "iface": iface, "mac": mac, "MAC": mac.upper(), "aid": 3, "session": "E0E3FA055456AACA", "rssi": -52,
        "line": _wlc_line(key), "radio": "wl1", "unit": 1, "bus": 2, "phy": "phy1", "n": 4411,
        "guid": "5e1d3c7a-0b7e-4c2e-9a43-2f1b1c0d7a21",
        "freq": 5260, "chan": 52, "seg0": 58, "cac": 60, "cf1": 5290, "chanspec": "0xe09b (52/80)", "chip": "6755",
        "ver": "17.10.188.6401", "kver": "5.15.167", "cmd": "/usr/sbin/logrotate /etc/logrotate.conf", "hm": "4:56",
        "net": "lan",
    }
    codes = TEMPLATE_CODES.get(key)
    if codes:
        c = codes[0] if code is None else code
        fields["reason"] = f"{REASONS.get(c, '')} ({c})"
        fields["status"] = f"{STATUSES.get(c, '')} ({c})"
    return fields


def render(key: str, **fields: Any) -> str:
    """The message of template ``key`` with ``fields`` filled in."""
    return TEMPLATES[key].text.format(**fields)


# --------------------------------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------------------------------
class ScenarioConfig(BaseModel):
    """What to generate. Validated so a typo in a scenario name fails loudly instead of silently."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    start: datetime = datetime(2025, 6, 1)  # naive, the service's wall-clock time (whole seconds)
    days: float = 7.0
    n_devices: int = 3
    stations_per_device: tuple[int, int] = (8, 30)  # inclusive range, drawn per device
    episodes_per_scenario: int = 3  # per anomaly scenario, over the whole dataset
    benign_per_scenario: int = 3  # per benign lookalike
    scenarios: tuple[str, ...] = ANOMALY_SCENARIOS
    benign: tuple[str, ...] = BENIGN_SCENARIOS
    first_id: int = 1

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        if v < 0:
            raise ValueError("seed must be >= 0 (numpy seed sequences take non-negative integers)")
        return v

    @field_validator("start")
    @classmethod
    def _naive(cls, v: datetime) -> datetime:
        if v.tzinfo is not None:
            raise ValueError("start must be naive (the service's wall-clock time)")
        return v.replace(microsecond=0)

    @field_validator("days")
    @classmethod
    def _days(cls, v: float) -> float:
        if not (0.1 <= v <= 400):
            raise ValueError("days must be between 0.1 and 400")
        return v

    @field_validator("n_devices")
    @classmethod
    def _devices(cls, v: int) -> int:
        if not (1 <= v <= 500):
            raise ValueError("n_devices must be between 1 and 500")
        return v

    @field_validator("stations_per_device")
    @classmethod
    def _stations(cls, v: tuple[int, int]) -> tuple[int, int]:
        lo, hi = v
        if not (1 <= lo <= hi <= 250):
            raise ValueError("stations_per_device must be (lo, hi) with 1 <= lo <= hi <= 250")
        return v

    @field_validator("episodes_per_scenario", "benign_per_scenario")
    @classmethod
    def _count(cls, v: int) -> int:
        if v < 0:
            raise ValueError("episode counts must be >= 0")
        return v

    @field_validator("first_id")
    @classmethod
    def _first_id(cls, v: int) -> int:
        if v < 0:
            raise ValueError("first_id must be >= 0")
        return v

    @model_validator(mode="after")
    def _names(self) -> "ScenarioConfig":
        for field_name, allowed in (("scenarios", ANOMALY_SCENARIOS), ("benign", BENIGN_SCENARIOS)):
            names = getattr(self, field_name)
            unknown = [n for n in names if n not in allowed]
            if unknown:
                raise ValueError(f"unknown {field_name} {unknown}; choose from {list(allowed)}")
            if len(set(names)) != len(names):
                raise ValueError(f"{field_name} lists a scenario twice: {list(names)}")
        return self


@dataclass
class GeneratedData:
    """Export records plus their ground truth."""

    records: list[dict]  # export records, 13 keys each in the service's order, newest first
    labels: pd.DataFrame  # LABEL_COLUMNS: one row per record
    episodes: pd.DataFrame  # EPISODE_COLUMNS: one row per injected episode
    config: ScenarioConfig
    # extras for tests and reports: the simulated devices, and each record's intended event type/station
    devices: pd.DataFrame = field(default_factory=pd.DataFrame)
    intended_events: pd.DataFrame = field(default_factory=pd.DataFrame)  # id, event_type, station_mac


# --------------------------------------------------------------------------------------------------
# Simulated world
# --------------------------------------------------------------------------------------------------
# OUIs (universally administered) of common home devices, by kind.
_OUIS = {
    "iot": ("98:f4:ab", "24:6f:28", "84:cc:a8", "c8:c9:a3", "c4:41:1e", "00:0e:58", "44:65:0d", "d8:1f:12",
            "b8:27:eb", "dc:a6:32"),
    "phone": ("f0:18:98", "a4:83:e7", "3c:22:fb", "dc:a9:04", "8c:f5:a3", "5c:e8:eb"),
    "laptop": ("3c:a9:f4", "a0:a8:cd", "f4:f5:d8", "30:d8:75", "80:c5:f2", "0c:ae:7d"),
    "tv": ("fc:65:de", "b0:a7:37", "f4:f5:d8", "30:23:03"),
    "attacker": ("00:c0:ca", "b8:27:eb", "dc:a6:32", "24:6f:28", "3c:a9:f4"),
}
_ASUS_MODELS = {"RT-AX3000": ("eth5", "eth6"), "RT-AX58U": ("eth5", "eth6"), "RT-AX86U": ("eth6", "eth7"),
                "RT-AX88U": ("eth6", "eth7"), "GT-AX6000": ("eth6", "eth7"), "RT-AC68U": ("eth1", "eth2")}
_OPENWRT_IFACES = (("wl0-ap0", "wl1-ap0"), ("phy0-ap0", "phy1-ap0"), ("wlan0", "wlan1"))
_OPENWRT_NAMES = ("OpenWrt-{loc}", "GL-MT3000-{hex3}", "Archer-C7-{loc}", "openwrt-ap-{loc_l}")
_LOCATIONS = ("Office", "Garage", "Attic", "Lobby", "Kitchen", "Lab", "Floor2", "Shop", "Annex", "Studio")
_CHANSPECS = (("0x1001 (1)", "0x1006 (6)", "0x100b (11)"), ("0xe02a (36/80)", "0xe09b (149/80)", "0xe06a (100/80)"))
_FREQS = ((2412, 2437, 2462), (5180, 5745, 5500))
_DFS_CHANNELS = ((5260, 52, 58, 5290, "0xe03a (52/80)"), (5500, 100, 106, 5530, "0xe06a (100/80)"),
                 (5580, 116, 122, 5610, "0xe07a (116/80)"))
_CRON_CMDS = ("/usr/sbin/logrotate /etc/logrotate.conf", "/usr/lib/ddns/dynamic_dns_updater.sh -- start",
              "/sbin/fstrim -a", "/usr/bin/opkg-check-updates")


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
_LOCAL_DEAUTH = {"asus": (("w_deauth", 1), ("h_deauth_local", 0)), "openwrt": (("h_deauth_local", 0),
                                                                               ("c_disconnected", 0))}
# Attack disconnect phrasings (subsets of the normal ones); weights are drawn per episode.
_ASUS_ATTACK_DISC = (
    (("w_deauth_ind", 7), ("h_disassoc", 0)), (("w_deauth_ind", 6), ("h_disassoc", 0)),
    (("w_deauth_ind", 1), ("h_disassoc", 0)), (("w_deauth_ind", 3), ("h_disassoc", 0)),
    (("w_deauth", 2), ("h_deauth_local", 0)), (("w_deauth", 1), ("h_deauth_local", 0)),
    (("w_disassoc", 8), ("h_disassoc", 0)), (("w_disassoc", 1), ("h_disassoc", 0)),
    (("h_deauth_local", 0),), (("h_disassoc", 0),),
)
_OPENWRT_ATTACK_DISC = (
    (("h_deauth_local", 0), ("c_disconnected", 0)), (("h_disassoc", 0), ("c_disconnected", 0)),
    (("c_disconnected", 0), ("h_deauth_idle", 0)), (("c_disconnected", 0),),
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

    def connect(self, t: float, st_mac: str, iface: int, scen: int, aid: int, aid_form: bool = True,
                roam: bool = False) -> None:
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

    def failed_join(self, t: float, mac: str, iface: int, scen: int, aid: int, weights: np.ndarray | None = None,
                    aid_form: bool = True) -> float:
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
def _make_device(index: int, seed: int, vendor: str, cfg: ScenarioConfig, used: set[str], names: set[str],
                 ids: np.ndarray) -> _Device:
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
        stations.append(_Station(mac, k, k == "phone" and rng.random() < 0.15, bool(rng.random() < 0.5), p_band1,
                                 int(rng.integers(1, max(3, n // 2)))))
    return _Device(
        index=index, device_id=int(ids[index]), hostname=host, vendor=vendor, ifaces=ifaces, radios=radios,
        driver=("ath10k", "mt79")[int(rng.integers(2))], p_wlc=float(rng.uniform(0.25, 0.9)),
        conn_alg=bool(rng.random() < 0.5), stations=stations, phase0=int(rng.integers(0, _HOUR)),
        wd_sod=int(4 * _HOUR + rng.integers(40, 59) * 60), cron_pid=int(rng.integers(300, 3000)),
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
    out = []
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


def _station_sessions(st: _Station, rng: np.random.Generator, clock: _Clock, roam_ok: bool
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
            log.add(tick + min(2, int(rank * step)), dev, "h_gtk_ok", scen,
                    dev.stations[int(dev.s_station[i])].mac, iface=dev.ifaces[int(dev.s_iface[i])])

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
                    log.add(t, dev, "cr_job", scen, n=dev.cron_pid + 1, pid=dev.cron_pid,
                            cmd=_CRON_CMDS[(h // 3) % len(_CRON_CMDS)])
    for t in np.sort(rng.uniform(0, T, rng.poisson(T / (10 * _HOUR)))):
        band = int(rng.integers(2))
        if dev.vendor == "asus":
            spec = _CHANSPECS[band][int(rng.integers(3))]
            log.add(t, dev, "a_chanspec" if rng.random() < 0.7 else "a_adjusted", scen, iface=dev.ifaces[band],
                    chanspec=spec)
        elif rng.random() < 0.25:
            freq = _FREQS[band][int(rng.integers(3))]
            log.add(t, dev, "c_csa_done", scen, iface=dev.ifaces[band], freq=freq)
    for t in rng.uniform(0, T, rng.poisson(T / (4 * _DAY))):  # a lone radio reset now and then is normal
        _radio_line(log, dev, rng, t, int(rng.integers(2)), scen)


def _radio_line(log: _Log, dev: _Device, rng: np.random.Generator, t: float, radio: int, scen: int,
                keys: tuple[str, ...] | None = None, weights: np.ndarray | None = None) -> None:
    """One driver/radio error line for radio ``radio`` in the device's kernel phrasing."""
    if keys is None:
        keys = ("k_fatal", "k_psm", "k_trap") if dev.vendor == "asus" else (
            "k_hwrestart", "k_ath_crash" if dev.driver == "ath10k" else "k_mt_error")
    w = np.ones(len(keys)) if weights is None else weights
    key = keys[int(rng.choice(len(keys), p=w / w.sum()))]
    guid = "-".join(f"{int(rng.integers(0, 16**n)):0{n}x}" for n in (8, 4, 4, 4, 12))
    log.add(t, dev, key, scen, radio=dev.radios[radio], phy=dev.radios[radio], unit=radio, bus=radio + 1,
            n=int(t) % 100000 + 1000, guid=guid)


# --------------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------------
@dataclass
class _Episode:
    scenario: str
    device: int
    start: int
    length: int  # planned (reserved) length in seconds
    params: dict[str, Any]
    entity_kind: str = "device"
    entity: str = "*"
    end: int = 0  # actual end (exclusive)


def _plan(scenario: str, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
    """Reserved length (s) and the parameters drawn before placing the episode."""
    if scenario == "deauth_flood":
        return int(_loguniform(rng, 180, 1800)), {}
    if scenario == "auth_bruteforce":
        return int(_loguniform(rng, 300, 3600)), {}
    if scenario == "reconnect_loop":
        return int(_loguniform(rng, 900, 3600)), {}
    if scenario == "mac_flood":
        return int(_loguniform(rng, 180, 1800)), {}
    if scenario == "radio_fault":
        return int(_loguniform(rng, 300, 3600)), {}
    if scenario == "silence":
        return int(rng.uniform(1, 6) * _HOUR), {}
    if scenario == "reboot_wave":
        gap, span = int(rng.uniform(60, 240)), int(rng.uniform(60, 180))
        return gap + max(span + 20, 115) + 10, {"gap": gap, "span": span}
    if scenario == "mistyped_passphrase":
        return 200, {"fails": int(rng.integers(1, 4))}
    if scenario == "iot_gtk_deauth":
        return _HOUR + 400, {}  # holds one rekey tick wherever it starts
    if scenario == "boot_dfs":
        return 150, {}
    raise ValueError(f"unknown scenario {scenario!r}")


def _schedule(cfg: ScenarioConfig, clock: _Clock) -> list[_Episode]:
    """Place every episode: stratified over the period after the first day, never overlapping (with a
    margin) on one device; silence lands in the daytime when a network is busy."""
    rng = np.random.default_rng([cfg.seed, 3])
    items = [s for s in cfg.scenarios for _ in range(cfg.episodes_per_scenario)]
    items += [s for s in cfg.benign for _ in range(cfg.benign_per_scenario)]
    rng.shuffle(items)
    T = clock.horizon
    lo = _DAY if T >= 2 * _DAY else T // 4
    margin = 15 * 60
    busy: dict[int, list[tuple[int, int]]] = {d: [] for d in range(cfg.n_devices)}
    slot = (T - lo) / max(1, len(items))
    dev_off = int(rng.integers(cfg.n_devices))
    out = []
    for j, scen in enumerate(items):
        length, params = _plan(scen, rng)
        for attempt in range(600):  # stratified first, then anywhere, then (silence) at any hour
            base = lo + (j + rng.random()) * slot if attempt < 200 else lo + rng.random() * (T - lo)
            if scen == "silence" and attempt < 400:  # a normally busy period: daytime
                day = math.floor((base + clock.sod0) / _DAY)
                latest = max(8.5, 20 - length / _HOUR)
                base = clock.day_start(day) + rng.uniform(8, latest) * _HOUR
            start = int(base)
            d = (j + dev_off + attempt) % cfg.n_devices
            if start < lo or start + length > T - 60:
                continue
            if any(start < b + margin and start + length + margin > a for a, b in busy[d]):
                continue
            busy[d].append((start, start + length))
            out.append(_Episode(scen, d, start, length, params))
            break
        else:
            raise ValueError(
                f"cannot place {len(items)} non-overlapping episodes on {cfg.n_devices} device(s) over "
                f"{cfg.days} days (failed on {scen!r}); use more days or devices, or fewer episodes")
    return sorted(out, key=lambda e: (e.start, e.device))


class _Injector:
    """Writes the records of each episode and says which normal records it replaces."""

    def __init__(self, log: _Log, clock: _Clock, used: set[str], seed: int) -> None:
        self.log, self.clock, self.used, self.seed = log, clock, used, seed
        self.removals: list[tuple[int, str, int, int, bool]] = []  # device, mac or "", start, end, all scenarios

    def run(self, ep: _Episode, dev: _Device, k: int) -> None:
        self.build(ep, dev, np.random.default_rng([self.seed, 4, k]))

    def build(self, ep: _Episode, dev: _Device, rng: np.random.Generator) -> None:
        """Write episode ``ep`` on ``dev`` with ``rng`` (also used by :func:`inject_episodes`)."""
        getattr(self, "_" + ep.scenario)(ep, dev, rng, _Writer(self.log, dev, rng), _SCEN[ep.scenario])

    def _target_station(self, dev: _Device, t: int, rng: np.random.Generator, kinds: tuple[str, ...],
                        connected: bool | None) -> tuple[int, int]:
        """A known station (preferring ``kinds``) that is / is not connected at ``t``; (station, iface)."""
        now = dict(dev.connected_at(t))
        cands = [i for i, st in enumerate(dev.stations)
                 if st.kind in kinds and (connected is None or (i in now) == connected)]
        if not cands:
            cands = [i for i in range(len(dev.stations)) if connected is None or (i in now) == connected]
        if not cands:
            cands = list(range(len(dev.stations)))
        si = cands[int(rng.integers(len(cands)))]
        st = dev.stations[si]
        return si, now.get(si, int(rng.random() < st.p_band1))

    def _deauth_flood(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        now = dev.connected_at(ep.start)
        if not now:
            now = [(i, int(rng.random() < st.p_band1)) for i, st in enumerate(dev.stations)]
        if rng.random() < 0.35 or len(now) <= 2:
            idx = rng.choice(len(now), size=min(len(now), int(rng.integers(1, 3))), replace=False)
            targets = [now[int(i)] for i in idx]
        else:
            targets = now
        pool = _ASUS_ATTACK_DISC if dev.vendor == "asus" else _OPENWRT_ATTACK_DISC
        weights = rng.dirichlet(np.full(len(pool), 0.6))
        rate = _loguniform(rng, 0.04, 0.8)  # deauth frames logged per second
        p_back = rng.uniform(0.2, 0.8)  # victims that try to rejoin
        n = max(10, int(rng.poisson(rate * ep.length)))
        times = np.sort(rng.uniform(ep.start, ep.start + ep.length - 10, n)).astype(np.int64)
        last = ep.start
        for t in times:
            si, iface = targets[int(rng.integers(len(targets)))]
            st = dev.stations[si]
            seq = pool[int(rng.choice(len(pool), p=weights))]
            w.lines(int(t), st.mac, iface, seq, scen)
            last = max(last, int(t))
            if rng.random() < p_back:
                back = int(t) + int(rng.integers(1, 9))
                if back < ep.start + ep.length:
                    w.connect(back, st.mac, iface, scen, st.aid, st.aid_form)
                    last = max(last, back + 1)
        ep.end = last + 1
        if len(targets) == 1:
            ep.entity_kind, ep.entity = "station", dev.stations[targets[0][0]].mac

    def _auth_bruteforce(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer,
                         scen: int) -> None:
        n_att = 1 if rng.random() < 0.7 else int(rng.integers(2, 4))
        pool = _ASUS_FAILS if dev.vendor == "asus" else _OPENWRT_FAILS
        weights = rng.dirichlet(np.full(len(pool), 0.7))
        last = ep.start
        macs = []
        for _ in range(n_att):
            mac = _new_mac(rng, self.used, None if rng.random() < 0.5 else _OUIS["attacker"])
            macs.append(mac)
            iface = int(rng.integers(2))
            gap = _loguniform(rng, 2.0, 20.0)
            t = ep.start + rng.uniform(0, min(60, ep.length / 4))
            aid = int(rng.integers(1, 12))
            while t < ep.start + ep.length - 15:
                if dev.vendor == "asus" and rng.random() < 0.15:
                    codes = TEMPLATE_CODES["w_auth_fail"]
                    end = w.lines(t, mac, iface, (("w_auth_fail", codes[int(rng.integers(len(codes)))]),), scen)
                else:
                    end = w.failed_join(t, mac, iface, scen, aid, weights, aid_form=rng.random() < 0.5)
                last = max(last, int(end))
                t = end + gap * rng.uniform(0.5, 1.5)
        ep.end = last + 1
        if n_att == 1:
            ep.entity_kind, ep.entity = "station", macs[0]

    def _reconnect_loop(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer,
                        scen: int) -> None:
        si, iface = self._target_station(dev, ep.start, rng, ("iot", "tv", "laptop"), connected=True)
        st = dev.stations[si]
        period = rng.uniform(3, 20)
        local_share = rng.uniform(0, 0.4)
        t = float(ep.start)
        stop = ep.start + ep.length - 5
        while t < stop:
            w.connect(t, st.mac, iface, scen, st.aid, st.aid_form)
            up = period * rng.uniform(0.3, 0.7)
            w.lines(t + up, st.mac, iface, w.leave_seq("local" if rng.random() < local_share else "leave"), scen)
            t += period * rng.uniform(0.8, 1.2)
        w.connect(t, st.mac, iface, scen, st.aid, st.aid_form)  # ... and finally it stays
        ep.end = int(t) + 2
        ep.entity_kind, ep.entity = "station", st.mac
        self.removals.append((dev.index, st.mac, ep.start, ep.end, False))

    def _mac_flood(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        n = int(_loguniform(rng, 30, 400))
        p_rand = rng.uniform(0.7, 0.98)
        p_iface = rng.uniform(0.1, 0.9)
        p_assoc = rng.uniform(0.3, 0.9)
        arrivals = np.sort(rng.uniform(ep.start, ep.start + ep.length - 30, n))
        last = ep.start
        for t in arrivals:
            mac = _new_mac(rng, self.used, None if rng.random() < p_rand else _OUIS["phone"])
            iface = int(rng.random() < p_iface)
            aid = int(rng.integers(1, 60))
            if dev.vendor == "asus":
                if rng.random() < dev.p_wlc:
                    w.lines(t, mac, iface, (("w_auth", 0),), scen)
                if rng.random() < p_assoc:
                    if rng.random() < 0.15 and rng.random() < dev.p_wlc:
                        w.lines(t, mac, iface, (("w_assoc_fail", 17),), scen)
                        end = t
                    else:
                        w.pre_join(t, mac, iface, scen, aid, aid_form=rng.random() < 0.5)
                        end = t + rng.uniform(1, 20)
                        w.lines(end, mac, iface, w.leave_seq("leave"), scen)
                else:
                    end = t + rng.uniform(1, 10)
                    w.lines(end, mac, iface, (("w_deauth_ind", 2 if rng.random() < 0.5 else 3),), scen)
            else:
                if rng.random() < p_assoc:
                    w.pre_join(t, mac, iface, scen, aid)
                    end = t + rng.uniform(1, 20)
                    seq = (("h_eapol_to", 0), ("h_deauth_local", 0)) if rng.random() < 0.3 else (("h_disassoc", 0),)
                    w.lines(end, mac, iface, seq, scen)
                else:
                    w.log.add(t, dev, "h_auth", scen, mac, iface=dev.ifaces[iface])
                    end = t + rng.uniform(1, 10)
                    w.lines(end, mac, iface, (("h_deauth_idle", 0),), scen)
            last = max(last, int(end))
        ep.end = last + 1

    def _radio_fault(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        radio = int(rng.integers(2))
        keys = ("k_fatal", "k_psm", "k_trap") if dev.vendor == "asus" else (
            "k_hwrestart", "k_ath_crash" if dev.driver == "ath10k" else "k_mt_error")
        weights = rng.dirichlet(np.full(len(keys), 0.8))
        gap = _loguniform(rng, 5, 45)
        p_switch = rng.uniform(0.0, 0.25)
        p_drop = rng.uniform(0.0, 0.6)  # a reset that kicks the radio's stations, which rejoin
        stop = ep.start + ep.length - 2
        t = ep.start + rng.uniform(0, 5)
        last = ep.start
        while t < stop:
            _radio_line(self.log, dev, rng, t, radio, scen, keys, weights)
            if rng.random() < p_switch:
                if dev.vendor == "asus":
                    self.log.add(t + 1, dev, "a_adjusted" if rng.random() < 0.5 else "a_chanspec", scen,
                                 iface=dev.ifaces[radio], chanspec=_CHANSPECS[radio][int(rng.integers(3))])
                else:
                    self.log.add(t + 1, dev, "c_csa_start", scen, iface=dev.ifaces[radio],
                                 freq=_FREQS[radio][int(rng.integers(3))], cf1=_FREQS[radio][0] + 30)
                    self.log.add(t + 1, dev, "c_csa_done", scen, iface=dev.ifaces[radio],
                                 freq=_FREQS[radio][int(rng.integers(3))])
            if rng.random() < p_drop:
                for si, iface in dev.connected_at(int(t)):
                    back = t + rng.uniform(5, 40)
                    if iface == radio and back < stop:
                        st = dev.stations[si]
                        w.connect(back, st.mac, iface, scen, st.aid, st.aid_form)
                        last = max(last, int(back) + 1)
            last = max(last, int(t) + 2)
            t += gap * rng.uniform(0.3, 1.7)
        ep.end = last + 1

    def _silence(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        ep.end = ep.start + ep.length
        self.removals.append((dev.index, "", ep.start, ep.end, True))

    def _reboot_wave(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        down = ep.start
        up = down + ep.params["gap"]
        log = self.log
        if dev.vendor == "asus":
            for r in (0, 1):
                log.add(up, dev, "k_boot_wl", scen, radio=dev.radios[r], chip=("6755", "43684")[r],
                        ver="17.10.188.6401")
            dev.cron_pid = int(rng.integers(300, 3000))
            log.add(up + int(rng.integers(30, 60)), dev, "cr_disparity", scen, n=int(rng.integers(10**5, 4 * 10**6)),
                    pid=dev.cron_pid)
            t = up + int(rng.integers(60, 100))
            log.add(t, dev, "wd_periodic", scen, hm=f"{dev.wd_sod // _HOUR}:{(dev.wd_sod % _HOUR) // 60:02d}")
            log.add(t + 7, dev, "wd_retrieve", scen)
            log.add(t + 7, dev, "wd_noneed", scen)
        else:
            log.add(up, dev, "k_boot_linux", scen, kver="5.15.167")
            log.add(up + 18, dev, "n_up", scen, net="lan")
            log.add(up + 24, dev, "p_init", scen)
            for r in (0, 1):
                log.add(up + 26 + r, dev, "c_ap_enabled", scen, iface=dev.ifaces[r])
        last = up + 110
        for si, iface in dev.connected_at(down):
            st = dev.stations[si]
            t = up + 15 + rng.uniform(0, ep.params["span"])
            w.connect(t, st.mac, iface, scen, st.aid, st.aid_form)
            last = max(last, int(t) + 1)
        ep.end = last + 1
        self.removals.append((dev.index, "", down, up, False))

    def _mistyped_passphrase(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer,
                             scen: int) -> None:
        si, iface = self._target_station(dev, ep.start, rng, ("phone", "laptop", "visitor"), connected=False)
        st = dev.stations[si]
        t = float(ep.start)
        for _ in range(ep.params["fails"]):
            t = w.failed_join(t, st.mac, iface, scen, st.aid, aid_form=st.aid_form) + rng.uniform(8, 40)
        w.connect(t, st.mac, iface, scen, st.aid, st.aid_form)
        ep.end = int(t) + 2
        ep.entity_kind, ep.entity = "station", st.mac
        self.removals.append((dev.index, st.mac, ep.start, ep.end, False))

    def _iot_gtk_deauth(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        ticks = dev.rekey_ticks(self.clock.horizon)
        ticks = ticks[(ticks >= ep.start) & (ticks < ep.start + _HOUR)]
        tick = int(ticks[0]) if len(ticks) else ep.start
        si, iface = self._target_station(dev, tick, rng, ("iot",), connected=True)
        st = dev.stations[si]
        t0 = tick + int(rng.integers(3, 7))
        self.log.add(t0, dev, "h_gtk_fail", scen, st.mac, iface=dev.ifaces[iface])
        t1 = t0 + int(rng.integers(4, 7))
        w.lines(t1, st.mac, iface, w.leave_seq("local"), scen)
        t2 = t1 + int(_loguniform(rng, 10, 300))
        w.connect(t2, st.mac, iface, scen, st.aid, st.aid_form)
        ep.start, ep.end = tick, t2 + 2
        ep.entity_kind, ep.entity = "station", st.mac
        self.removals.append((dev.index, st.mac, ep.start, ep.end, False))

    def _boot_dfs(self, ep: _Episode, dev: _Device, rng: np.random.Generator, w: _Writer, scen: int) -> None:
        freq, chan, seg0, cf1, spec = _DFS_CHANNELS[int(rng.integers(len(_DFS_CHANNELS)))]
        iface = dev.ifaces[1]
        t = ep.start + 1
        cac = 60
        if dev.vendor == "asus":
            if rng.random() < 0.5:
                self.log.add(t - 1, dev, "a_chanspec", scen, iface=iface, chanspec=spec)
            self.log.add(t, dev, "a_cac_start", scen, iface=iface, chanspec=spec)
            self.log.add(t + cac, dev, "a_cac_done", scen, iface=iface, chanspec=spec)
            self.log.add(t + cac + 1, dev, "a_adjusted", scen, iface=iface, chanspec=spec)
        else:
            if rng.random() < 0.5:
                self.log.add(t - 1, dev, "c_csa_start", scen, iface=iface, freq=freq, cf1=cf1)
            self.log.add(t, dev, "c_cac_start", scen, iface=iface, freq=freq, chan=chan, seg0=seg0, cac=cac)
            self.log.add(t + cac, dev, "c_cac_done", scen, iface=iface, freq=freq, cf1=cf1)
            self.log.add(t + cac + 1, dev, "c_ap_enabled", scen, iface=iface)
        ep.start, ep.end = ep.start, t + cac + 2


# --------------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------------
def generate(config: ScenarioConfig | None = None, **overrides: Any) -> GeneratedData:
    """Generate labelled export records for ``config`` (or ``ScenarioConfig(**overrides)``)."""
    if config is None:
        cfg = ScenarioConfig(**overrides)
    elif overrides:
        cfg = ScenarioConfig(**{**config.model_dump(), **overrides})
    else:
        cfg = config
    T = int(round(cfg.days * _DAY))
    start = cfg.start
    clock = _Clock(T, start.hour * _HOUR + start.minute * 60 + start.second, start.weekday())
    setup = np.random.default_rng([cfg.seed, 0])
    id_pool = max(1000, 10 * cfg.n_devices)
    ids = setup.choice(np.arange(1, id_pool), size=cfg.n_devices, replace=False)
    vendor_off = int(setup.integers(2))
    used: set[str] = set()
    names: set[str] = set()
    devices = [_make_device(i, cfg.seed, ("asus", "openwrt")[(i + vendor_off) % 2], cfg, used, names, ids)
               for i in range(cfg.n_devices)]

    episodes = _schedule(cfg, clock)
    for ep in episodes:  # reboots restart the group-rekey timer: known before any rekey is written
        if ep.scenario == "reboot_wave":
            up = ep.start + ep.params["gap"]
            devices[ep.device].reboots.append((up, up + int(np.random.default_rng([cfg.seed, 5, up]).integers(
                600, _HOUR))))
    for dev in devices:
        dev.reboots.sort()

    log = _Log()
    for dev in devices:
        _normal_traffic(dev, clock, log, cfg.seed)
    injector = _Injector(log, clock, used, cfg.seed)
    for k, ep in enumerate(episodes):
        injector.run(ep, devices[ep.device], k)

    t = np.asarray(log.t, np.int64)
    dev_idx = np.asarray(log.dev, np.int64)
    scen = np.asarray(log.scen, np.int64)
    mac = np.asarray(log.mac, dtype=object)
    keep = (t >= 0) & (t < T)
    normal = scen == _SCEN[NORMAL]
    for d, m, a, b, everything in injector.removals:
        hit = (dev_idx == d) & (t >= a) & (t < b)
        if not everything:
            hit &= normal
        if m:
            hit &= mac == m
        keep &= ~hit
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((rows, t[rows]))]  # by time, then by writing order (line groups stay in order)
    ids_out = cfg.first_id + np.arange(len(rows), dtype=np.int64)

    records = _build_records(log, rows, ids_out, t, devices, start)
    scen_names = np.asarray(SCENARIO_NAMES, dtype=object)[scen[rows]]
    anomalous = np.isin(scen[rows], [_SCEN[s] for s in ANOMALY_SCENARIOS])
    labels = pd.DataFrame({"id": ids_out, "is_anomaly": anomalous,
                           "scenario": pd.Series(scen_names, dtype="str")})
    intended = pd.DataFrame({
        "id": ids_out,
        "event_type": pd.Series([TEMPLATES[log.key[i]].event_type for i in rows], dtype="str"),
        "station_mac": pd.Series([log.mac[i] or None for i in rows], dtype="str"),
    })
    base = pd.Timestamp(start)
    ep_df = pd.DataFrame({
        "scenario": pd.Series([e.scenario for e in episodes], dtype="str"),
        "is_anomaly": np.array([e.scenario in ANOMALY_SCENARIOS for e in episodes], dtype=bool),
        "device": pd.Series([str(devices[e.device].device_id) for e in episodes], dtype="str"),
        "entity_kind": pd.Series([e.entity_kind for e in episodes], dtype="str"),
        "entity": pd.Series([e.entity for e in episodes], dtype="str"),
        "start": pd.Series([base + pd.Timedelta(seconds=e.start) for e in episodes], dtype="datetime64[us]"),
        "end": pd.Series([base + pd.Timedelta(seconds=max(e.end, e.start + 1)) for e in episodes],
                         dtype="datetime64[us]"),
    }, columns=list(EPISODE_COLUMNS))
    dev_df = pd.DataFrame({
        "device": pd.Series([str(d.device_id) for d in devices], dtype="str"),
        "device_id": np.array([d.device_id for d in devices], dtype=np.int64),
        "hostname": pd.Series([d.hostname for d in devices], dtype="str"),
        "vendor": pd.Series([d.vendor for d in devices], dtype="str"),
        "interfaces": pd.Series([",".join(d.ifaces) for d in devices], dtype="str"),
        "n_stations": np.array([len(d.stations) for d in devices], dtype=np.int64),
    })
    return GeneratedData(records=records, labels=labels, episodes=ep_df, config=cfg, devices=dev_df,
                         intended_events=intended)


def _build_records(log: _Log, rows: np.ndarray, ids: np.ndarray, t: np.ndarray, devices: list[_Device],
                   start: datetime) -> list[dict]:
    """Export records, newest first (the service orders by timestamp descending)."""
    base = np.datetime64(start.replace(microsecond=0), "s")
    stamps = np.datetime_as_string(base + t[rows].astype("timedelta64[s]"), unit="s").tolist()
    headers: dict[str, str] = {}
    sd_cache: dict[tuple[int, int, int], str] = {}
    out: list[dict] = []
    for k in range(len(rows) - 1, -1, -1):
        i = int(rows[k])
        tpl = TEMPLATES[log.key[i]]
        dev = devices[log.dev[i]]
        ts = stamps[k]
        head = headers.get(ts)
        if head is None:
            head = headers[ts] = f"{_MONTHS[int(ts[5:7]) - 1]} {int(ts[8:10]):>2} {ts[11:19]}"
        pid = log.pid[i]
        pri = tpl.facility * 8 + tpl.severity
        sd_key = (tpl.facility, tpl.severity, pid)
        sd = sd_cache.get(sd_key)
        if sd is None:
            obj = {"pid": pid} if pid else {}
            obj.update({"priority": pri, "facility": tpl.facility, "severity_code": tpl.severity})
            sd = sd_cache[sd_key] = json.dumps(obj)
        tag = f"{tpl.process}[{pid}]" if pid else tpl.process
        msg = log.msg[i]
        out.append({
            "id": int(ids[k]),
            "device_id": dev.device_id,
            "device_ip": dev.hostname,
            "timestamp": ts,
            "log_level": _LEVELS[tpl.severity],
            "process_name": tpl.process,
            "message": msg,
            "raw_message": f"<{pri}>{head} {dev.hostname} {tag}: {msg}\n",
            "structured_data": sd,
            "pushed_to_ai": False,
            "pushed_at": None,
            "push_attempts": 0,
            "last_push_error": None,
        })
    return out


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


_INJECT_NEEDS: tuple[str, ...] = ("id", "device", "device_name", "timestamp", "process_name", "message",
                                  "event_type", "station_mac", "interface")
_LOOKBACK = 7 * _DAY  # history a device's stations are read from
_RECENT = _DAY  # prefer stations seen this recently before the episode
_MAX_STATIONS = 64
_CONNECTED_WITHIN = 3 * _HOUR  # a station whose last line was a join/handshake/rekey this recently is on
_ACTIVE_BEFORE = 2 * _HOUR  # a silence starts where the device logged in the 2 h before
_MIN_LENGTH = 180  # shortest episode worth writing (s)
_UP_EVENTS = frozenset({"association", "reassociation", "authentication", "pairwise_handshake_success",
                        "group_key_success", "radius_accounting", "ap_sta_connected"})
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


def _check_inject_args(records: pd.DataFrame, start: Any, end: Any, seed: int, episodes_per_scenario: int,
                       scenarios: tuple[str, ...]) -> tuple[pd.Timestamp, pd.Timestamp, tuple[str, ...]]:
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

    def stations(self, stream: "_Stream") -> np.ndarray:
        """Stream positions of its station lines, by time."""
        if self._stations is None:
            self._stations = self.lo + np.flatnonzero(stream.mac[self.lo:self.hi] >= 0)
        return self._stations


class _Stream:
    """The records near the injection period, as column codes sorted by (device, time).

    One factorize per column over the rows of ``[start - lookback, end)``; everything per device or
    per episode afterwards is a slice and a searchsorted, never a Python loop over records."""

    def __init__(self, records: pd.DataFrame, base: pd.Timestamp, horizon: int) -> None:
        self.records, self.horizon = records, horizon
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
        self.asus_sign = (_lookup([bool(_ASUS_IFACE.match(x)) for x in self.if_names])[self.iface]
                          | _lookup([p in ("wlceventd", "acsd") for p in procs])[self.proc])
        self.openwrt_sign = _lookup([bool(_OPENWRT_IFACE.match(x)) for x in self.if_names])[self.iface]
        self.devices = self._devices()

    def _text(self, where: np.ndarray, column: str = "message") -> pd.Series:
        return self.records[column].take(self.pos[where]).astype("str").reset_index(drop=True)

    def _devices(self) -> list[_RealDevice]:
        """The devices logging WiFi lines inside the period, by key (counted in one pass)."""
        bounds = np.searchsorted(self.dev, np.arange(len(self.keys) + 1))
        wifi_rows = ((self.mac >= 0) | (self.iface >= 0)) & (self.t >= 0)
        wifi = np.bincount(self.dev[wifi_rows], minlength=len(self.keys))
        out: list[_RealDevice] = []
        for code in sorted(range(len(self.keys)), key=lambda c: self.keys[c]):
            if wifi[code]:
                out.append(_RealDevice(len(out), self.keys[code], int(bounds[code]), int(bounds[code + 1]),
                                       int(wifi[code])))
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
        p_wlc = float(np.clip((joins & self.is_wlc[sl]).sum() / max(1, (joins & self.is_hostapd[sl]).sum()),
                              0.1, 1.0)) if rd.wlc else 0.0
        hostapd_joins = lo + np.flatnonzero(joins & self.is_hostapd[sl] & station)[-5000:]  # recent habits
        if len(hostapd_joins):
            aid = pd.to_numeric(self._text(hostapd_joins).str.extract(r"\(aid (\d+)\)", expand=False),
                                errors="coerce")
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
            index=rd.index, device_id=_emitted_device_id(rd.key, name), hostname=host, vendor=vendor, ifaces=ifaces,
            radios=("wl0", "wl1") if vendor == "asus" else ("phy0", "phy1"), driver=driver, p_wlc=p_wlc,
            conn_alg=conn_alg, stations=[], phase0=0, wd_sod=4 * _HOUR, cron_pid=1000,
        )
        return rd.sim

    # ---- questions the scheduler asks (searchsorted on sorted times)
    def count(self, rd: _RealDevice, a: int, b: int) -> int:
        """Records of the device in [a, b)."""
        t = self.t[rd.lo:rd.hi]
        return int(np.searchsorted(t, b) - np.searchsorted(t, a))

    def knows_stations(self, rd: _RealDevice, at: int) -> bool:
        t = self.t[rd.stations(self)]
        return bool(np.searchsorted(t, at) > np.searchsorted(t, at - _LOOKBACK))

    def rows_between(self, rd: _RealDevice, a: int, b: int, mac: str = "") -> np.ndarray:
        """Table positions of the device's records in [a, b) (of station ``mac`` only, if given)."""
        t = self.t[rd.lo:rd.hi]
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
        window = positions[int(np.searchsorted(t_st, at - _LOOKBACK)):int(np.searchsorted(t_st, at))]
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
                ifs.append(1 if name == dev.ifaces[1] and name != dev.ifaces[0] else
                           0 if name == dev.ifaces[0] else int(p_band1 > 0.5))
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
            length, params = int(rng.uniform(_HOUR, longest)), {}
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
            if scen == "silence" and not (stream.count(rd, start - _ACTIVE_BEFORE, start)
                                          and stream.count(rd, start, start + length)):
                continue
            if scen in ("deauth_flood", "reconnect_loop") and not stream.knows_stations(rd, start):
                continue
            busy[d].append((start, start + length))
            out.append(_Episode(scen, d, start, length, params))
            break
    return sorted(out, key=lambda e: (e.start, e.device))


def _episode_frame(episodes: list[_Episode], keys: list[str], base: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame({
        "scenario": pd.Series([e.scenario for e in episodes], dtype="str"),
        "is_anomaly": np.array([e.scenario in ANOMALY_SCENARIOS for e in episodes], dtype=bool),
        "device": pd.Series([keys[e.device] for e in episodes], dtype="str"),
        "entity_kind": pd.Series([e.entity_kind for e in episodes], dtype="str"),
        "entity": pd.Series([e.entity for e in episodes], dtype="str"),
        "start": pd.Series([base + pd.Timedelta(seconds=e.start) for e in episodes], dtype="datetime64[us]"),
        "end": pd.Series([base + pd.Timedelta(seconds=max(e.end, e.start + 1)) for e in episodes],
                         dtype="datetime64[us]"),
    }, columns=list(EPISODE_COLUMNS))


def inject_episodes(records: pd.DataFrame, *, start: Any, end: Any, seed: int, episodes_per_scenario: int = 2,
                    scenarios: tuple[str, ...] = ANOMALY_SCENARIOS) -> Injection:
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
    first_id = int(id_col.max()) + 1 if len(id_col) else 1
    ids = first_id + np.arange(len(rows), dtype=np.int64)
    sims: list[Any] = [rd.sim for rd in stream.devices]  # devices without an episode wrote nothing
    out = _build_records(log, rows, ids, t, sims, base.to_pydatetime())

    removed = [np.zeros(0, np.int64)]
    for d, mac, a, b, _everything in injector.removals:  # every real record counts as normal
        removed.append(id_col[stream.rows_between(stream.devices[d], a, b, mac)].astype(np.int64))
    labels = pd.DataFrame({
        "id": ids,
        "is_anomaly": np.isin(scen[rows], [_SCEN[s] for s in ANOMALY_SCENARIOS]),
        "scenario": pd.Series(np.asarray(SCENARIO_NAMES, dtype=object)[scen[rows]], dtype="str"),
    }, columns=list(LABEL_COLUMNS))
    return Injection(records=out, remove_ids=np.unique(np.concatenate(removed)), labels=labels,
                     episodes=_episode_frame(episodes, [rd.key for rd in stream.devices], base))


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------
def export_document(data: GeneratedData, created_at: datetime | None = None) -> dict:
    """The export object as the service writes it. ``created_at`` defaults to shortly after the last
    record (deterministic, unlike the wall clock)."""
    if created_at is None:
        last = max((r["timestamp"] for r in data.records), default=None)
        if last is None:
            last_dt = data.config.start + timedelta(days=data.config.days)
        else:
            last_dt = datetime.fromisoformat(last)
        created_at = last_dt + timedelta(seconds=97, microseconds=611774)
    return {
        "export_metadata": {"created_at": created_at.isoformat(timespec="microseconds"),
                            "total_records": len(data.records), "format": "json"},
        "data": data.records,
    }


def _side_path(export_path: Path, suffix: str) -> Path:
    export_path = Path(export_path)
    return export_path.with_name(export_path.name + suffix)


def write_export(data: GeneratedData, path: Path) -> dict[str, Path]:
    """Write the export JSON (``indent=2`` like the service), ``<path>.labels.csv`` and
    ``<path>.episodes.csv``. Refuses to overwrite any of them (a landing folder must never see a file
    change under the same name)."""
    path = Path(path)
    paths = {"export": path, "labels": _side_path(path, ".labels.csv"), "episodes": _side_path(path, ".episodes.csv")}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise FileExistsError(f"refusing to overwrite {existing}")
    labels = data.labels.loc[:, list(LABEL_COLUMNS)].copy()
    labels["is_anomaly"] = labels["is_anomaly"].astype(bool).astype(int)
    eps = data.episodes.loc[:, list(EPISODE_COLUMNS)].copy()
    eps["is_anomaly"] = eps["is_anomaly"].astype(bool).astype(int)
    for col in ("start", "end"):
        eps[col] = pd.to_datetime(eps[col]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    # side files first, the export last: a watcher picking up the export finds its labels beside it
    with open(paths["labels"], "x", encoding="utf-8", newline="") as fh:
        labels.to_csv(fh, index=False)
    with open(paths["episodes"], "x", encoding="utf-8", newline="") as fh:
        eps.to_csv(fh, index=False)
    with open(paths["export"], "x", encoding="utf-8") as fh:
        json.dump(export_document(data), fh, indent=2, ensure_ascii=False)
    return paths


def _read_side_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: file is empty (expected a header {','.join(required)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: line 1: missing column(s) {missing}; found {list(df.columns)}")
    return df


_TRUE = {"1", "true", "yes", "t", "y"}
_FALSE = {"0", "false", "no", "f", "n"}


def _parse_bool(path: Path, values: pd.Series, column: str) -> np.ndarray:
    low = values.str.strip().str.lower()
    bad = ~low.isin(_TRUE | _FALSE)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}: line {i + 2}: {column} must be 0/1 or true/false, got {values.iloc[i]!r}")
    return low.isin(_TRUE).to_numpy()


def read_labels(export_path: Path) -> pd.DataFrame | None:
    """Labels beside an export (``<export>.labels.csv``: id,is_anomaly[,scenario]), or None if there are
    none. Without a scenario column, scenario is "anomaly"/"normal". Raises ValueError naming the file
    and line of bad content."""
    path = _side_path(Path(export_path), ".labels.csv")
    if not path.exists():
        return None
    df = _read_side_csv(path, ("id", "is_anomaly"))
    ids = pd.to_numeric(df["id"].str.strip(), errors="coerce")
    bad = ids.isna() | (ids != np.floor(ids))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}: line {i + 2}: id must be an integer, got {df['id'].iloc[i]!r}")
    ids = ids.astype(np.int64)
    dup = ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(f"{path}: line {i + 2}: id {int(ids.iloc[i])} is labelled twice")
    flags = _parse_bool(path, df["is_anomaly"], "is_anomaly")
    if "scenario" in df.columns:
        scen = df["scenario"].str.strip()
        empty = scen == ""
        scen = scen.where(~empty, pd.Series(np.where(flags, "anomaly", NORMAL), index=scen.index))
    else:
        scen = pd.Series(np.where(flags, "anomaly", NORMAL))
    return pd.DataFrame({"id": ids.to_numpy(), "is_anomaly": flags, "scenario": pd.Series(scen.to_numpy(),
                                                                                          dtype="str")})


def read_episodes(export_path: Path) -> pd.DataFrame | None:
    """Episodes beside an export (``<export>.episodes.csv``), or None if there are none; ValueError
    naming the file and line of bad content."""
    path = _side_path(Path(export_path), ".episodes.csv")
    if not path.exists():
        return None
    df = _read_side_csv(path, EPISODE_COLUMNS)
    out = pd.DataFrame({c: pd.Series(df[c].str.strip().to_numpy(), dtype="str")
                        for c in ("scenario", "device", "entity_kind", "entity")})
    out.insert(1, "is_anomaly", _parse_bool(path, df["is_anomaly"], "is_anomaly"))
    for col in ("start", "end"):
        parsed = pd.to_datetime(df[col].str.strip(), errors="coerce", format="ISO8601")
        if parsed.isna().any():
            i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise ValueError(f"{path}: line {i + 2}: {col} is not an ISO-8601 time: {df[col].iloc[i]!r}")
        if getattr(parsed.dt, "tz", None) is not None:
            raise ValueError(f"{path}: {col} must be naive (service wall-clock) times")
        out[col] = parsed.astype("datetime64[us]")
    bad = out["end"] <= out["start"]
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}: line {i + 2}: end must be after start")
    return out.loc[:, list(EPISODE_COLUMNS)]
