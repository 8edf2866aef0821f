"""Tests of the WiFi event catalog against its own examples, the real exports and documented phrasings."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import mcp_training_dagster
from mcp_training_dagster.serving.events import (
    EVENT_CATALOG,
    EVENT_TYPES,
    WIFI_PROCESSES,
    EventPattern,
    classify_events,
)

SAMPLE_DIR = Path(mcp_training_dagster.__file__).resolve().parent / "sample_exports"
MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


def classify(lines: list[tuple[str | None, str | None]], **kwargs) -> pd.DataFrame:
    """classify_events on (message, process) pairs, with a deliberately non-default index."""
    index = pd.Index([f"r{i}" for i in range(len(lines))])
    messages = pd.Series([m for m, _ in lines], index=index, dtype=object)
    processes = pd.Series([p for _, p in lines], index=index, dtype=object)
    return classify_events(messages, processes, **kwargs)


def reference_type(message: str | None, process: str | None, wifi: frozenset[str] = WIFI_PROCESSES) -> str:
    """Sequential first match over the catalog with Python's re: the semantics, without speed tricks."""
    proc = (process or "").strip().lower()
    if message is not None:
        for row in EVENT_CATALOG:
            applies_to = wifi if row.processes == WIFI_PROCESSES else row.processes
            allowed = applies_to is None or proc in applies_to
            if allowed and re.search(row.pattern, message, re.IGNORECASE):
                return row.event_type
    return "other_wifi" if proc in wifi else "other_process"


def row_process(row: EventPattern) -> str:
    """A process name the row applies to (hostapd for WiFi rows, kernel for any-process rows)."""
    if row.processes is None:
        return "kernel"
    return "hostapd" if "hostapd" in row.processes else sorted(row.processes)[0]


# ---------------------------------------------------------------- the catalog itself


def test_event_types_order_and_catalog_rows_are_well_formed() -> None:
    assert EVENT_TYPES[:6] == (
        "association",
        "reassociation",
        "disassociation",
        "deauthentication",
        "authentication",
        "auth_failure",
    )
    assert EVENT_TYPES[-2:] == ("other_wifi", "other_process")
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES)
    assert {"hostapd", "wpa_supplicant", "wlceventd", "acsd"} <= WIFI_PROCESSES
    assert all(p == p.lower() for p in WIFI_PROCESSES)
    examples = [row.example for row in EVENT_CATALOG]
    assert len(set(examples)) == len(examples), "each row documents its own line"
    for row in EVENT_CATALOG:
        assert row.event_type in EVENT_TYPES and row.event_type not in ("other_wifi", "other_process")
        assert row.processes is None or all(p == p.lower() for p in row.processes)
        # RE2 (pyarrow) must accept the pattern and it must match its own example.
        hit = pc.match_substring_regex(pa.array([row.example]), row.pattern, ignore_case=True)
        assert hit.to_pylist() == [True], row


def test_every_catalog_type_except_fallbacks_has_a_row() -> None:
    covered = {row.event_type for row in EVENT_CATALOG}
    assert covered == set(EVENT_TYPES) - {"other_wifi", "other_process"}


def test_each_example_classifies_to_its_own_type() -> None:
    """First match wins, so an earlier row of another type catching an example is a collision."""
    lines = [(row.example, row_process(row)) for row in EVENT_CATALOG]
    out = classify(lines)
    got = list(out["event_type"])
    expected = [row.event_type for row in EVENT_CATALOG]
    assert got == expected
    # The same holds for every WiFi process a row applies to, not only hostapd.
    for row in EVENT_CATALOG:
        procs = sorted(row.processes) if row.processes is not None else ["kernel", "hostapd", "crond"]
        res = classify([(row.example, p) for p in procs])
        assert set(res["event_type"]) == {row.event_type}, (row, procs)


def test_wifi_only_rows_do_not_apply_to_other_processes() -> None:
    rows = [row for row in EVENT_CATALOG if row.processes is not None]
    out = classify([(row.example, "dnsmasq") for row in rows])
    assert set(out["event_type"]) == {"other_process"}


def test_matches_a_plain_sequential_reference_on_many_lines() -> None:
    """Dedup, fusion, process grouping and bisection must not change first-match semantics."""
    procs = ("hostapd", "acsd", "kernel", "wlceventd", None)
    lines = [(row.example, p) for row in EVENT_CATALOG for p in procs]
    lines += [(m, p) for m, p, _ in _real_records()]
    lines += [(m, p) for m, p, *_ in DOC_LINES + NEGATIVE_LINES]
    out = classify(lines)
    expected = [reference_type(m, p) for m, p in lines]
    assert list(out["event_type"]) == expected


# ---------------------------------------------------------------- the real exports


def _real_records() -> list[tuple[str, str, str]]:
    rows = []
    for path in sorted(SAMPLE_DIR.glob("*.json")):
        for rec in json.loads(path.read_text(encoding="utf-8"))["data"]:
            rows.append((rec["message"], rec["process_name"], path.name))
    return rows


_M = r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}"
# Every message shape seen in the real exports and the type it must get. A new shape in the
# fixtures fails test_real_exports_shapes until it is added here on purpose.
REAL_SHAPES: dict[str, str] = {
    rf"^eth\d+: STA {_M} WPA: group key handshake completed \(RSN\)$": "group_key_success",
    rf"^eth\d+: STA {_M} WPA: group key handshake failed \(RSN\) after \d+ tries$": "group_key_failure",
    rf"^eth\d+: STA {_M} WPA: pairwise key handshake completed \(RSN\)$": "pairwise_handshake_success",
    rf"^eth\d+: STA {_M} IEEE 802\.11: associated$": "association",
    rf"^eth\d+: STA {_M} IEEE 802\.11: associated \(aid \d+\)$": "association",
    rf"^eth\d+: STA {_M} IEEE 802\.11: disassociated$": "disassociation",
    rf"^eth\d+: STA {_M} IEEE 802\.11: deauthenticated due to local deauth request$": "deauthentication",
    rf"^eth\d+: STA {_M} RADIUS: starting accounting session [0-9A-F]+$": "radius_accounting",
    r"^\[FAUPGRADE\]\[auto_firmware_check:\(\d+\)\]retrieve firmware information$": "other_process",
    r"^\[FAUPGRADE\]\[auto_firmware_check:\(\d+\)\]no need to upgrade firmware$": "other_process",
    r"^\[FAUPGRADE\]\[auto_firmware_check:\(\d+\)\]could not retrieve firmware information: .*$": "other_process",
    r"^\[FAUPGRADE\]\[auto_firmware_check:\(\d+\)\]periodic_check [AP]M \d+:\d+$": "other_process",
    r"^time disparity of \d+ minutes detected$": "other_process",
}


def test_real_exports_shapes() -> None:
    records = _real_records()
    assert len(records) == 1824 + 35 + 19
    out = classify([(m, p) for m, p, _ in records])
    columns = zip(out["event_type"].tolist(), out["station_mac"].tolist(), out["interface"].tolist())
    for (message, process, source), (etype, mac, iface) in zip(records, columns):
        shapes = [s for s in REAL_SHAPES if re.match(s, message)]
        assert len(shapes) == 1, f"unlisted or ambiguous shape in {source}: {message!r}"
        assert etype == REAL_SHAPES[shapes[0]], (message, process)
        macs = MAC_RE.findall(message)
        if macs:
            assert mac == macs[0].lower() and len(mac) == 17, message
        else:
            assert mac is pd.NA, message
        leading = re.match(r"^(eth\d+): ", message)
        if leading:
            assert iface == leading.group(1), message
        else:
            assert iface is pd.NA, message


def test_real_hostapd_export_matches_documented_distribution() -> None:
    """docs/export-format.md counts these types in the 1,824-record file."""
    records = [r for r in _real_records() if r[2] == "export_asus_hostapd_1824.json"]
    out = classify([(m, p) for m, p, _ in records])
    counts = Counter(out["event_type"])
    assert counts == Counter(
        group_key_success=1003,
        pairwise_handshake_success=207,
        radius_accounting=207,
        disassociation=195,
        association=209,
        deauthentication=2,
        group_key_failure=1,
    )
    assert set(out["interface"]) <= {"eth5", "eth6", "eth7"}
    assert out["station_mac"].notna().all()


def test_real_system_exports_are_other_process() -> None:
    records = [r for r in _real_records() if "system" in r[2]]
    out = classify([(m, p) for m, p, _ in records])
    assert set(out["event_type"]) == {"other_process"}
    assert out["station_mac"].isna().all() and out["interface"].isna().all()


# ---------------------------------------------------------------- documented phrasings

MAC1, MAC2 = "c4:41:1e:09:a4:5d", "c4:41:1e:26:30:43"
WLC = "wlceventd_proc_event(511): eth7: "
# (message, process, expected type, expected MAC, expected interface)
DOC_LINES: list[tuple[str, str, str, str | None, str | None]] = [
    # OpenWrt hostapd
    (f"wl0-ap0: STA {MAC1} IEEE 802.11: authenticated", "hostapd", "authentication", MAC1, "wl0-ap0"),
    (f"wl0-ap0: STA {MAC1} IEEE 802.11: associated (aid 5)", "hostapd", "association", MAC1, "wl0-ap0"),
    (f"wl0-ap0: AP-STA-CONNECTED {MAC1} auth_alg=open", "hostapd", "ap_sta_connected", MAC1, "wl0-ap0"),
    (f"wl0-ap0: EAPOL-4WAY-HS-COMPLETED {MAC1}", "hostapd", "pairwise_handshake_success", MAC1, "wl0-ap0"),
    (f"wl0-ap0: AP-STA-DISCONNECTED {MAC1}", "hostapd", "ap_sta_disconnected", MAC1, "wl0-ap0"),
    (f"wl0-ap0: AP-STA-POSSIBLE-PSK-MISMATCH {MAC1}", "hostapd", "psk_mismatch", MAC1, "wl0-ap0"),
    (
        f"wl0-ap0: STA {MAC1} WPA: pairwise key handshake failed (RSN) after 4 tries",
        "hostapd",
        "pairwise_handshake_failure",
        MAC1,
        "wl0-ap0",
    ),
    (f"wl0-ap0: STA {MAC1} WPA: EAPOL-Key timeout", "hostapd", "eapol_timeout", MAC1, "wl0-ap0"),
    ("wlan0: EAPOL-Key timeout", "hostapd", "eapol_timeout", None, "wlan0"),
    (f"wlan0: STA {MAC1} WPA: invalid MIC in msg 2/4 of 4-Way Handshake", "hostapd", "psk_mismatch", MAC1, "wlan0"),
    (f"wlan0: STA {MAC1} IEEE 802.11: disassociated due to inactivity", "hostapd", "disassociation", MAC1, "wlan0"),
    (
        f"wlan0: STA {MAC1} IEEE 802.11: deauthenticated due to inactivity (timer DEAUTH/REMOVE)",
        "hostapd",
        "deauthentication",
        MAC1,
        "wlan0",
    ),
    (
        f"phy0-ap0: STA {MAC1} IEEE 802.1X: authenticated - EAP type: 25 (PEAP)",
        "hostapd",
        "authentication",
        MAC1,
        "phy0-ap0",
    ),
    (
        f"wl0.1: STA {MAC1} RADIUS: starting accounting session 5F1A2B3C-00000001",
        "hostapd",
        "radius_accounting",
        MAC1,
        "wl0.1",
    ),
    # wpa_supplicant
    (
        f"wl1-sta0: RSN: Group rekeying completed with {MAC2} [GTK=CCMP]",
        "wpa_supplicant",
        "group_key_success",
        MAC2,
        "wl1-sta0",
    ),
    (
        f"wlan0: CTRL-EVENT-CONNECTED - Connection to {MAC2} completed [id=0 id_str=]",
        "wpa_supplicant",
        "ap_sta_connected",
        MAC2,
        "wlan0",
    ),
    (
        f"wlan0: CTRL-EVENT-DISCONNECTED bssid={MAC2} reason=3 locally_generated=1",
        "wpa_supplicant",
        "ap_sta_disconnected",
        MAC2,
        "wlan0",
    ),
    (f"wlan0: CTRL-EVENT-DISCONNECTED bssid={MAC2} reason=15", "wpa_supplicant", "eapol_timeout", MAC2, "wlan0"),
    (f"wlan0: CTRL-EVENT-ASSOC-REJECT bssid={MAC2} status_code=17", "wpa_supplicant", "auth_failure", MAC2, "wlan0"),
    (
        f"wlan0: CTRL-EVENT-AUTH-REJECT {MAC2} auth_type=0 auth_transaction=2 status_code=1",
        "wpa_supplicant",
        "auth_failure",
        MAC2,
        "wlan0",
    ),
    (
        'wlan0: CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid="HomeNet" auth_failures=1 duration=10 reason=WRONG_KEY',
        "wpa_supplicant",
        "psk_mismatch",
        None,
        "wlan0",
    ),
    (
        'wlan0: CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid="HomeNet" auth_failures=2 duration=20 reason=CONN_FAILED',
        "wpa_supplicant",
        "auth_failure",
        None,
        "wlan0",
    ),
    (
        "wlan0: WPA: 4-Way Handshake failed - pre-shared key may be incorrect",
        "wpa_supplicant",
        "psk_mismatch",
        None,
        "wlan0",
    ),
    ("wlan0: WPA: 4-Way Handshake failed", "wpa_supplicant", "pairwise_handshake_failure", None, "wlan0"),
    (
        f"wlan0: WPA: Key negotiation completed with {MAC2} [PTK=CCMP GTK=CCMP]",
        "wpa_supplicant",
        "pairwise_handshake_success",
        MAC2,
        "wlan0",
    ),
    (f"wlan0: Associated with {MAC2}", "wpa_supplicant", "association", MAC2, "wlan0"),
    (
        f"wlan0: Trying to associate with {MAC2} (SSID='HomeNet' freq=2412 MHz)",
        "wpa_supplicant",
        "scan_state",
        MAC2,
        "wlan0",
    ),
    # Broadcom wlceventd (upper-case MACs in the line, lower-case out)
    (
        WLC + "Disassoc AB:CD:EF:01:23:45, status: 0, reason: Disassociated because sending station is leaving "
        "(or has left) BSS (8), rssi:0",
        "wlceventd",
        "disassociation",
        "ab:cd:ef:01:23:45",
        "eth7",
    ),
    (
        WLC + "Deauth_ind AB:CD:EF:01:23:45, status: 0, reason: Class 3 frame received from nonassociated "
        "station (7), rssi:0",
        "wlceventd",
        "deauthentication",
        "ab:cd:ef:01:23:45",
        "eth7",
    ),
    (
        WLC + "Deauth AB:CD:EF:01:23:45, status: 0, reason: Unspecified reason (1), rssi:0",
        "wlceventd",
        "deauthentication",
        "ab:cd:ef:01:23:45",
        "eth7",
    ),
    (
        WLC + "Auth AB:CD:EF:01:23:45, status: Successful (0), rssi:-61",
        "wlceventd",
        "authentication",
        "ab:cd:ef:01:23:45",
        "eth7",
    ),
    (
        WLC + "Assoc AB:CD:EF:01:23:45, status: Successful (0), rssi:-61",
        "wlceventd",
        "association",
        "ab:cd:ef:01:23:45",
        "eth7",
    ),
    (
        WLC + "ReAssoc AB:CD:EF:01:23:45, status: Successful (0), rssi:-61",
        "wlceventd",
        "reassociation",
        "ab:cd:ef:01:23:45",
        "eth7",
    ),
    (WLC + "Assoc AB:CD:EF:01:23:45, status: 17, rssi:-80", "wlceventd", "auth_failure", "ab:cd:ef:01:23:45", "eth7"),
    (
        WLC + "Deauth_ind AB:CD:EF:01:23:45, status: 0, reason: 4-Way Handshake timeout (15), rssi:0",
        "wlceventd",
        "eapol_timeout",
        "ab:cd:ef:01:23:45",
        "eth7",
    ),
    # radio, DFS and channel switches: any process, including the kernel
    ("wl0: fatal error, reinitializing", "kernel", "radio_error", None, "wl0"),
    (
        "[ 1234.567890] wl1: PSM microcode watchdog fired at 8123 (seconds). Resetting.",
        "kernel",
        "radio_error",
        None,
        "wl1",
    ),
    ("ieee80211 phy0: Hardware restart was requested", "kernel", "radio_error", None, "phy0"),
    ("phy0: mt7915e firmware crashed, restarting", "kernel", "radio_error", None, "phy0"),
    (
        "wlan1: DFS-RADAR-DETECTED freq=5260 ht_enabled=0 chan_offset=0 chan_width=3 cf1=5290 cf2=0",
        "hostapd",
        "dfs",
        None,
        "wlan1",
    ),
    (
        "wlan1: DFS-CAC-START freq=5500 chan=100 sec_chan=1, width=1, seg0=106, seg1=0, cac_time=60s",
        "hostapd",
        "dfs",
        None,
        "wlan1",
    ),
    ("wl1: radar detected on chanspec 0xe06a", "kernel", "dfs", None, "wl1"),
    (
        "wlan0: CTRL-EVENT-CHANNEL-SWITCH freq=5180 ht_enabled=1 ch_offset=1 ch_width=80 MHz cf1=5210 cf2=0",
        "wpa_supplicant",
        "channel_switch",
        None,
        "wlan0",
    ),
    ("wlan1: AP-CSA-FINISHED freq=5180 dfs=0", "hostapd", "channel_switch", None, "wlan1"),
    ("eth6: selected channel spec: 0x1006 (6)", "acsd", "channel_switch", None, "eth6"),
    # WiFi daemons' other lines
    (
        "nl80211: Driver does not support authentication/association or connect commands",
        "wpa_supplicant",
        "daemon_error",
        None,
        None,
    ),
    (f"wlan0: STA {MAC1} IEEE 802.1X: authorizing port", "hostapd", "wifi_info", MAC1, "wlan0"),
]


@pytest.mark.parametrize(("message", "process", "etype", "mac", "iface"), DOC_LINES, ids=lambda v: str(v)[:50])
def test_documented_phrasings(message: str, process: str, etype: str, mac: str | None, iface: str | None) -> None:
    out = classify([(message, process)]).iloc[0]
    assert out["event_type"] == etype
    assert (out["station_mac"] is pd.NA) if mac is None else (out["station_mac"] == mac)
    assert (out["interface"] is pd.NA) if iface is None else (out["interface"] == iface)


def test_documented_phrasings_in_one_batch() -> None:
    """Same answers when all lines go through one call (dedup and grouping across processes)."""
    out = classify([(m, p) for m, p, *_ in DOC_LINES] * 3)
    assert list(out["event_type"]) == [t for _, _, t, _, _ in DOC_LINES] * 3
    assert out["station_mac"].tolist() == [pd.NA if m is None else m for *_, m, _ in DOC_LINES] * 3


# ---------------------------------------------------------------- look-alikes that must not be confused

# (message, process, expected type, type it must NOT be matched by at pattern level)
NEGATIVE_LINES: list[tuple[str, str, str, str]] = [
    (
        f"eth6: STA {MAC1} IEEE 802.11: deauthenticated due to local deauth request",
        "hostapd",
        "deauthentication",
        "authentication",
    ),
    (f"eth6: STA {MAC1} IEEE 802.11: disassociated", "hostapd", "disassociation", "association"),
    (f"wlan0: STA {MAC1} IEEE 802.11: reassociated", "hostapd", "reassociation", "association"),
    (
        WLC + "Deauth_ind AB:CD:EF:01:23:45, status: 0, reason: Deauthenticated because sending station "
        "is leaving (or has left) IBSS or ESS (3), rssi:0",
        "wlceventd",
        "deauthentication",
        "authentication",
    ),
    (
        WLC + "Disassoc AB:CD:EF:01:23:45, status: 0, reason: Previous authentication no longer valid (2), rssi:0",
        "wlceventd",
        "disassociation",
        "association",
    ),
    (
        WLC + "Disassoc_ind AB:CD:EF:01:23:45, status: 0, reason: Disassociated due to inactivity (4), rssi:0",
        "wlceventd",
        "disassociation",
        "association",
    ),
    (WLC + "ReAssoc AB:CD:EF:01:23:45, status: Successful (0), rssi:-53", "wlceventd", "reassociation", "association"),
    (
        WLC + "Deauth AB:CD:EF:01:23:45, status: 0, reason: Unspecified reason (1), rssi:0",
        "wlceventd",
        "deauthentication",
        "authentication",
    ),
    (f"wl0-ap0: AP-STA-DISCONNECTED {MAC1}", "hostapd", "ap_sta_disconnected", "ap_sta_connected"),
    (
        f"wlan0: CTRL-EVENT-DISCONNECTED bssid={MAC2} reason=3",
        "wpa_supplicant",
        "ap_sta_disconnected",
        "ap_sta_connected",
    ),
    ("wlan1: AP-CSA-FINISHED freq=5180 dfs=0", "hostapd", "channel_switch", "dfs"),
    (
        f"eth6: STA {MAC1} WPA: group key handshake completed (RSN)",
        "hostapd",
        "group_key_success",
        "pairwise_handshake_success",
    ),
    # Non-WiFi processes never get station events, whatever their wording.
    (f"DHCPACK(br0) 192.168.1.23 {MAC1} associated-host", "dnsmasq-dhcp", "other_process", "association"),
    (
        "[FAUPGRADE][auto_firmware_check:(1234)]could not retrieve firmware information: webs_state_update = 0",
        "WATCHDOG",
        "other_process",
        "radio_error",
    ),
    # A wired port's "fatal error" is not a radio error.
    ("eth0: link down, fatal error count 0", "netifd", "other_process", "radio_error"),
]


@pytest.mark.parametrize(("message", "process", "etype", "not_type"), NEGATIVE_LINES, ids=lambda v: str(v)[:50])
def test_look_alikes(message: str, process: str, etype: str, not_type: str) -> None:
    assert classify([(message, process)]).iloc[0]["event_type"] == etype
    if process.lower() in WIFI_PROCESSES:
        # Not just saved by row order: no row of the look-alike type matches at all.
        for row in EVENT_CATALOG:
            if row.event_type == not_type:
                assert not re.search(row.pattern, message, re.IGNORECASE), (row.pattern, message)


# ---------------------------------------------------------------- MAC and interface extraction


@pytest.mark.parametrize(
    ("message", "mac", "iface"),
    [
        (f"eth6: STA {MAC1.upper()} IEEE 802.11: associated", MAC1, "eth6"),
        (f"wlan0: CTRL-EVENT-CONNECTED - Connection to {MAC2} completed, sta {MAC1}", MAC2, "wlan0"),
        ("eth6: DUID 00:01:00:01:2a:3b:4c:5d:6e:7f renewed", None, "eth6"),  # longer colon-hex run: no MAC
        (f"STA {MAC1}: probe", MAC1, None),
        ("WPA: received EAPOL-Key frame", None, None),
        ("RADIUS: accounting server unreachable", None, None),
        ("IEEE 802.11: driver had channel switch", None, None),
        ("l2_packet_init: socket(PF_PACKET): Address family not supported", None, None),
    ],
)
def test_mac_and_interface_extraction(message: str, mac: str | None, iface: str | None) -> None:
    out = classify([(message, "hostapd")]).iloc[0]
    assert (out["station_mac"] is pd.NA) if mac is None else (out["station_mac"] == mac)
    assert (out["interface"] is pd.NA) if iface is None else (out["interface"] == iface)


def test_mac_is_always_a_whole_lower_case_address() -> None:
    records = _real_records()
    out = classify([(m, p) for m, p, _ in records])
    macs = out["station_mac"].dropna()
    assert len(macs) == 1824
    assert macs.str.fullmatch(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}").all()


# ---------------------------------------------------------------- nulls, processes, output contract


def test_nulls_do_not_crash() -> None:
    index = pd.Index([7, 3, 11, 5, 2])
    messages = pd.Series(
        [None, np.nan, None, "eth6: STA aa:bb:cc:dd:ee:ff IEEE 802.11: associated", None], index=index, dtype=object
    )
    processes = pd.Series(["hostapd", "crond", None, None, "WLCEVENTD"], index=index, dtype=object)
    out = classify_events(messages, processes)
    assert list(out["event_type"]) == ["other_wifi", "other_process", "other_process", "other_process", "other_wifi"]
    assert out["station_mac"].tolist() == [pd.NA, pd.NA, pd.NA, "aa:bb:cc:dd:ee:ff", pd.NA]
    assert out["interface"].tolist() == [pd.NA, pd.NA, pd.NA, "eth6", pd.NA]


def test_nullable_string_inputs() -> None:
    messages = pd.Series(["wl0-ap0: AP-STA-DISCONNECTED c4:41:1e:09:a4:5d", pd.NA], dtype="string")
    processes = pd.Series([pd.NA, "hostapd"], dtype="string")
    out = classify_events(messages, processes)
    # A WiFi line without a process is still not trusted as a station event.
    assert list(out["event_type"]) == ["other_process", "other_wifi"]


def test_empty_input() -> None:
    out = classify_events(pd.Series([], dtype="str"), pd.Series([], dtype="str"))
    assert len(out) == 0 and list(out.columns) == ["event_type", "station_mac", "interface"]
    assert list(out["event_type"].cat.categories) == list(EVENT_TYPES)


def test_process_names_are_normalised() -> None:
    line = "eth6: STA aa:bb:cc:dd:ee:ff IEEE 802.11: associated"
    procs = ("HOSTAPD", " hostapd ", "hostapd[1234]", "Wpa_Supplicant", "dnsmasq")
    out = classify([(line, p) for p in procs])
    assert list(out["event_type"]) == ["association"] * 4 + ["other_process"]


def test_wifi_processes_override() -> None:
    lines = [("eth6: STA aa:bb:cc:dd:ee:ff IEEE 802.11: associated", "mywifid"), ("hello", "mywifid")]
    assert list(classify(lines)["event_type"]) == ["other_process", "other_process"]
    out = classify(lines, wifi_processes=WIFI_PROCESSES | {"MyWifiD"})
    assert list(out["event_type"]) == ["association", "other_wifi"]


def test_output_contract_and_index() -> None:
    index = pd.Index([1000, 5, 42, -3], name="record_id")
    messages = pd.Series(
        [
            "eth6: STA 30:d8:75:a2:e2:6a WPA: group key handshake completed (RSN)",
            "time disparity of 5 minutes detected",
            "eth5: STA c4:41:1e:0a:55:d2 WPA: group key handshake failed (RSN) after 4 tries",
            "eth6: STA 30:d8:75:a2:e2:6a WPA: group key handshake completed (RSN)",
        ],
        index=index,
        dtype="str",
    )
    processes = pd.Series(["hostapd", "crond", "hostapd", "hostapd"], index=index, dtype="str")
    out = classify_events(messages, processes)
    assert out.index.equals(index) and out.index.name == "record_id"
    assert isinstance(out["event_type"].dtype, pd.CategoricalDtype)
    assert list(out["event_type"].cat.categories) == list(EVENT_TYPES)
    assert isinstance(out["station_mac"].dtype, pd.StringDtype) and out["station_mac"].dtype.na_value is pd.NA
    assert isinstance(out["interface"].dtype, pd.StringDtype)
    assert out.loc[5, "event_type"] == "other_process" and out.loc[5, "station_mac"] is pd.NA
    assert out.loc[42].tolist() == ["group_key_failure", "c4:41:1e:0a:55:d2", "eth5"]
    expected_rekey = ["group_key_success", "30:d8:75:a2:e2:6a", "eth6"]
    assert out.loc[-3].tolist() == out.loc[1000].tolist() == expected_rekey


def test_misaligned_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        classify_events(pd.Series(["a", "b"], index=[0, 1]), pd.Series(["x", "y"], index=[1, 0]))
    with pytest.raises(ValueError):
        classify_events(pd.Series(["a", "b"]), pd.Series(["x"]))


def test_large_all_distinct_batch_agrees_with_small_batches() -> None:
    """Big logs whose lines are all distinct skip de-duplication; the answers must not change."""
    base = [(m, p) for m, p, *_ in DOC_LINES + NEGATIVE_LINES] + [(None, "hostapd"), (None, None)]
    rounds = range(90_000 // len(base) + 1)
    lines = [(None if m is None else f"{m} seq={i}", p) for i in rounds for m, p in base]
    big = classify(lines)
    assert len(big) > 90_000
    small = pd.concat([classify(lines[i : i + 5_000]) for i in range(0, len(lines), 5_000)])
    assert big["event_type"].tolist() == small["event_type"].tolist()
    assert big["station_mac"].tolist() == small["station_mac"].tolist()
    assert big["interface"].tolist() == small["interface"].tolist()
