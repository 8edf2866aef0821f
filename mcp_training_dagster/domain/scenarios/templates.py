"""Message templates (the only place wording lives) and the 802.11 reason/status codes they carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    "h_radius": Template(
        "hostapd", _DAEMON, _INFO, _STA + "RADIUS: starting accounting session {session}", "radius_accounting"
    ),
    "h_ptk_ok": Template(
        "hostapd", _DAEMON, _INFO, _STA + "WPA: pairwise key handshake completed (RSN)", "pairwise_handshake_success"
    ),
    "h_gtk_ok": Template(
        "hostapd", _DAEMON, _INFO, _STA + "WPA: group key handshake completed (RSN)", "group_key_success"
    ),
    "h_gtk_fail": Template(
        "hostapd", _DAEMON, _INFO, _STA + "WPA: group key handshake failed (RSN) after 4 tries", "group_key_failure"
    ),
    "h_ptk_fail": Template(
        "hostapd",
        _DAEMON,
        _INFO,
        _STA + "WPA: pairwise key handshake failed (RSN) after 4 tries",
        "pairwise_handshake_failure",
    ),
    "h_mic": Template(
        "hostapd", _DAEMON, _INFO, _STA + "WPA: invalid MIC in msg 2/4 of 4-Way Handshake", "psk_mismatch"
    ),
    "h_eapol_to": Template("hostapd", _DAEMON, _INFO, _STA + "WPA: EAPOL-Key timeout", "eapol_timeout"),
    "h_disassoc": Template("hostapd", _DAEMON, _INFO, _STA + "IEEE 802.11: disassociated", "disassociation"),
    "h_disassoc_idle": Template(
        "hostapd", _DAEMON, _INFO, _STA + "IEEE 802.11: disassociated due to inactivity", "disassociation"
    ),
    "h_deauth_local": Template(
        "hostapd", _DAEMON, _INFO, _STA + "IEEE 802.11: deauthenticated due to local deauth request", "deauthentication"
    ),
    "h_deauth_idle": Template(
        "hostapd",
        _DAEMON,
        _INFO,
        _STA + "IEEE 802.11: deauthenticated due to inactivity (timer DEAUTH/REMOVE)",
        "deauthentication",
    ),
    # hostapd control events (OpenWrt), daemon.notice
    "c_connected": Template("hostapd", _DAEMON, _NOTICE, "{iface}: AP-STA-CONNECTED {mac}", "ap_sta_connected"),
    "c_connected_alg": Template(
        "hostapd", _DAEMON, _NOTICE, "{iface}: AP-STA-CONNECTED {mac} auth_alg=open", "ap_sta_connected"
    ),
    "c_4way": Template(
        "hostapd", _DAEMON, _NOTICE, "{iface}: EAPOL-4WAY-HS-COMPLETED {mac}", "pairwise_handshake_success"
    ),
    "c_disconnected": Template(
        "hostapd", _DAEMON, _NOTICE, "{iface}: AP-STA-DISCONNECTED {mac}", "ap_sta_disconnected"
    ),
    "c_psk": Template("hostapd", _DAEMON, _NOTICE, "{iface}: AP-STA-POSSIBLE-PSK-MISMATCH {mac}", "psk_mismatch"),
    "c_cac_start": Template(
        "hostapd",
        _DAEMON,
        _NOTICE,
        "{iface}: DFS-CAC-START freq={freq} chan={chan} sec_chan=1, width=1, seg0={seg0}, seg1=0, cac_time={cac}s",
        "dfs",
    ),
    "c_cac_done": Template(
        "hostapd",
        _DAEMON,
        _NOTICE,
        "{iface}: DFS-CAC-COMPLETED success=1 freq={freq} ht_enabled=0 chan_offset=0 chan_width=3 cf1={cf1} cf2=0",
        "dfs",
    ),
    "c_csa_start": Template(
        "hostapd",
        _DAEMON,
        _NOTICE,
        "{iface}: CTRL-EVENT-STARTED-CHANNEL-SWITCH freq={freq} ht_enabled=1 ch_offset=1 "
        "ch_width=80 MHz cf1={cf1} cf2=0",
        "channel_switch",
    ),
    "c_csa_done": Template("hostapd", _DAEMON, _NOTICE, "{iface}: AP-CSA-FINISHED freq={freq} dfs=0", "channel_switch"),
    "c_ap_enabled": Template("hostapd", _DAEMON, _NOTICE, "{iface}: AP-ENABLED", "interface_state"),
    # Broadcom wlceventd (ASUS): upper-case MACs, status/reason text with the numeric code
    "w_auth": Template(
        "wlceventd", _USER, _INFO, _WLC + "Auth {MAC}, status: Successful (0), rssi:{rssi}", "authentication"
    ),
    "w_auth_fail": Template(
        "wlceventd", _USER, _INFO, _WLC + "Auth {MAC}, status: {status}, rssi:{rssi}", "auth_failure"
    ),
    "w_assoc": Template(
        "wlceventd", _USER, _INFO, _WLC + "Assoc {MAC}, status: Successful (0), rssi:{rssi}", "association"
    ),
    "w_assoc_fail": Template(
        "wlceventd", _USER, _INFO, _WLC + "Assoc {MAC}, status: {status}, rssi:{rssi}", "auth_failure"
    ),
    "w_reassoc": Template(
        "wlceventd", _USER, _INFO, _WLC + "ReAssoc {MAC}, status: Successful (0), rssi:{rssi}", "reassociation"
    ),
    "w_deauth": Template(
        "wlceventd", _USER, _INFO, _WLC + "Deauth {MAC}, status: 0, reason: {reason}, rssi:0", "deauthentication"
    ),
    "w_deauth_ind": Template(
        "wlceventd", _USER, _INFO, _WLC + "Deauth_ind {MAC}, status: 0, reason: {reason}, rssi:0", "deauthentication"
    ),
    "w_disassoc": Template(
        "wlceventd", _USER, _INFO, _WLC + "Disassoc {MAC}, status: 0, reason: {reason}, rssi:0", "disassociation"
    ),
    "w_deauth_4way": Template(
        "wlceventd",
        _USER,
        _INFO,
        _WLC + "Deauth_ind {MAC}, status: 0, reason: 4-Way Handshake timeout (15), rssi:0",
        "eapol_timeout",
    ),
    # acsd (ASUS auto channel selection, also runs the DFS checks)
    "a_chanspec": Template("acsd", _DAEMON, _NOTICE, "{iface}: selected channel spec: {chanspec}", "channel_switch"),
    "a_adjusted": Template("acsd", _DAEMON, _NOTICE, "{iface}: adjusted channel spec: {chanspec}", "channel_switch"),
    "a_cac_start": Template(
        "acsd", _DAEMON, _NOTICE, "{iface}: DFS: channel availability check started on chanspec {chanspec}", "dfs"
    ),
    "a_cac_done": Template(
        "acsd", _DAEMON, _NOTICE, "{iface}: DFS: CAC completed on chanspec {chanspec}, no radar detected", "dfs"
    ),
    # kernel: radio/driver health (caught on any process) and harmless boot lines
    "k_fatal": Template("kernel", _KERN, _ERROR, "{radio}: fatal error, reinitializing", "radio_error"),
    "k_psm": Template(
        "kernel", _KERN, _CRIT, "{radio}: PSM microcode watchdog fired at {n} (seconds). Resetting.", "radio_error"
    ),
    "k_trap": Template("kernel", _KERN, _CRIT, "dhd{unit}: dongle trap detected, firmware halted", "radio_error"),
    "k_hwrestart": Template("kernel", _KERN, _ERROR, "ieee80211 {phy}: Hardware restart was requested", "radio_error"),
    "k_ath_crash": Template(
        "kernel", _KERN, _ERROR, "ath10k_pci 0000:0{bus}:00.0: firmware crashed! (guid {guid})", "radio_error"
    ),
    "k_mt_error": Template("kernel", _KERN, _ERROR, "mt7915e 0000:0{bus}:00.0: Firmware Error Detected", "radio_error"),
    # the radio attaching at boot: an interface lifecycle line (events.py types it interface_state)
    "k_boot_wl": Template(
        "kernel", _KERN, _INFO, "{radio}: Broadcom BCM{chip} 802.11 Wireless Controller {ver}", "interface_state"
    ),
    "k_boot_linux": Template(
        "kernel",
        _KERN,
        _NOTICE,
        "Linux version {kver} (builder@buildhost) (gcc version 12.3.0) #0 SMP",
        "other_process",
    ),
    # non-WiFi background with the real levels (crond error with pid, WATCHDOG emergency)
    "cr_disparity": Template("crond", _CRON, _ERROR, "time disparity of {n} minutes detected", "other_process", True),
    "cr_job": Template("crond", _CRON, _INFO, "USER root pid {n} cmd {cmd}", "other_process", True),
    "wd_retrieve": Template(
        "WATCHDOG",
        _USER,
        _EMERG,
        "[FAUPGRADE][auto_firmware_check:(6193)]retrieve firmware information",
        "other_process",
    ),
    "wd_noneed": Template(
        "WATCHDOG", _USER, _EMERG, "[FAUPGRADE][auto_firmware_check:(6210)]no need to upgrade firmware", "other_process"
    ),
    "wd_periodic": Template(
        "WATCHDOG", _USER, _EMERG, "[FAUPGRADE][auto_firmware_check:(6163)]periodic_check AM {hm}", "other_process"
    ),
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


def template_fields(
    key: str, mac: str = "c4:41:1e:09:a4:5d", iface: str = "eth6", code: int | None = None
) -> dict[str, Any]:
    """Example field values for template ``key`` (a documented line per template; the tests render them)."""
    fields: dict[str, Any] = {
        "iface": iface,
        "mac": mac,
        "MAC": mac.upper(),
        "aid": 3,
        "session": "E0E3FA055456AACA",
        "rssi": -52,
        "line": _wlc_line(key),
        "radio": "wl1",
        "unit": 1,
        "bus": 2,
        "phy": "phy1",
        "n": 4411,
        "guid": "5e1d3c7a-0b7e-4c2e-9a43-2f1b1c0d7a21",
        "freq": 5260,
        "chan": 52,
        "seg0": 58,
        "cac": 60,
        "cf1": 5290,
        "chanspec": "0xe09b (52/80)",
        "chip": "6755",
        "ver": "17.10.188.6401",
        "kver": "5.15.167",
        "cmd": "/usr/sbin/logrotate /etc/logrotate.conf",
        "hm": "4:56",
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
