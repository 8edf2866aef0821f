"""The WiFi event catalog: syslog lines -> event type, station MAC, interface.

The catalog is *data*: ``EVENT_CATALOG`` is an ordered table of ``EventPattern`` rows
(event type, RE2 regex, the processes it applies to, one real or documented example line).
Supporting a new daemon, firmware or vendor phrasing means adding a row (and its example
is tested automatically), never a new code path.

Matching rules
- Case-insensitive, **first match wins**. Rows are ordered so that the more specific fact
  comes first: radio/driver health, DFS and channel switches (any process, because the
  kernel and drivers log them), then reason codes that name a *cause* (``reason=15`` is a
  4-way handshake timeout whatever the frame that carried it), then PSK mismatch and
  authentication failures, handshakes, RADIUS, connect/disconnect, Broadcom ``wlceventd``
  frame events, and last the generic hostapd ``IEEE 802.11:`` logger phrasings.
- Station events are restricted to ``WIFI_PROCESSES`` so that a ``dnsmasq`` or ``WATCHDOG``
  line can never be read as a WiFi event (and non-WiFi lines skip most regex passes).
- Lines matching no row become ``other_wifi`` (WiFi process) or ``other_process``.
- Patterns use RE2 syntax (no lookaround, no backreferences) because pyarrow runs them;
  word boundaries and anchoring on ``": "`` keep ``deauthenticated`` apart from
  ``authenticated``, ``disassociated`` from ``associated`` and ``ReAssoc`` from ``Assoc``.

Speed (no Python loop per message): lines are classified once per *distinct* (process,
message) pair, because router logs repeat the same line per station all day (skipped when a
sample shows the lines are nearly all distinct). Rows of the same type in sequence are fused
into one alternation; one pyarrow regex pass sets aside lines matching nothing, and the rest
are bisected over the ordered rows (a line matching the first half's alternation has its
answer there), so each line costs about log2(rows) RE2 passes and first-match-wins holds.
Rows restricted to ``WIFI_PROCESSES`` follow the per-call ``wifi_processes`` override.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

EVENT_TYPES: tuple[str, ...] = (
    "association",
    "reassociation",
    "disassociation",
    "deauthentication",
    "authentication",
    "auth_failure",
    "pairwise_handshake_success",
    "pairwise_handshake_failure",
    "group_key_success",
    "group_key_failure",
    "eapol_timeout",
    "psk_mismatch",
    "radius_accounting",
    "ap_sta_connected",
    "ap_sta_disconnected",
    "radio_error",
    "dfs",
    "channel_switch",
    "driver_error",
    "beacon_loss",
    "interface_state",
    "scan_state",
    "daemon_error",
    "wifi_info",
    "other_wifi",
    "other_process",
)

# Lower-case syslog tags (without pid) of daemons whose every line is about WiFi:
# hostapd/wpa_supplicant (+ their CLIs), Broadcom/ASUS wlceventd (driver event relay),
# acsd/acsd2 (auto channel selection), eapd (EAP relay), nas (Broadcom authenticator),
# wl/wlconf (Broadcom driver tools), wps_monitor, bsd (band steering), roamast
# (ASUS roaming assistant), and OpenWrt's "wifi" scripts. "kernel" is deliberately absent:
# only its radio/DFS lines are WiFi, and the catalog catches those on any process.
WIFI_PROCESSES: frozenset[str] = frozenset(
    {
        "hostapd",
        "hostapd_cli",
        "wpa_supplicant",
        "wpa_cli",
        "wlceventd",
        "acsd",
        "acsd2",
        "eapd",
        "nas",
        "wl",
        "wlconf",
        "wps_monitor",
        "bsd",
        "roamast",
        "wifi",
    }
)


@dataclass(frozen=True)
class EventPattern:
    """One catalog row: lines matching ``pattern`` (case-insensitive) are ``event_type``."""

    event_type: str
    pattern: str  # RE2 regex (pyarrow), matched case-insensitively anywhere in the message
    processes: frozenset[str] | None  # lower-case process names it applies to; None = any
    example: str  # a real or documented line it must match (tested)


_MAC = r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}"
_W = WIFI_PROCESSES
_ACSD = frozenset({"acsd", "acsd2"})
_WLC_EV = "wlceventd_proc_event(511): eth7: "  # prefix of Broadcom wlceventd example lines

EVENT_CATALOG: tuple[EventPattern, ...] = (
    # --- radio / driver health (kernel and driver lines, any process) ---
    EventPattern(
        "radio_error",
        r"\b(?:wl|wlan|wifi|ath|ra|rai)\d+[\w.-]*:.*(?:fatal error|microcode watchdog"
        r"|psm watchdog|(?:dongle|firmware|fw) trap|firmware (?:has )?(?:crash|halt))",
        None,
        "wl0: fatal error, reinitializing",
    ),
    EventPattern(
        "radio_error",
        r"\b(?:phy\d+|ath\d+k\w*|ath9k\w*|mt76\w*|mt79\w*|brcmf\w*|dhd\w*|iwlwifi|rtw\w*|mwlwifi"
        r"|mwifiex\w*)\b.*(?:firmware (?:has )?(?:crash|halt)|fw crash|firmware error"
        r"|hardware restart was requested|(?:dongle|firmware|fw) trap|device (?:hung|hang))",
        None,
        "ath10k_pci 0000:01:00.0: firmware crashed! (guid 5e1d3c7a-0b7e-4c2e-9a43-2f1b1c0d7a21)",
    ),
    # --- driver / radio trouble short of a crash (kernel driver lines, any process) ---
    EventPattern(
        "driver_error",
        r"\b(?:ath\d+k\w*|ath9k\w*|mt76\w*|mt79\w*|brcmf\w*|dhd\w*|iwlwifi|rtw\w*|mwlwifi|mwifiex\w*"
        r"|ieee80211 phy\d+)\b.*(?:fail|error|time(?:d)? ?out|recover|restart|reset|stuck|hang|not respond"
        r"|tx (?:hang|stall)|dma)",
        None,
        "[ 812.331] ath10k_pci 0000:01:00.0: failed to get memcpy hi address for firmware address 4: -16",
    ),
    EventPattern(
        "driver_error",
        r"ACS-FAILED|\bACS: .*(?:unable|fail)|Could not set channel|Failed to set beacon"
        r"|Interface initialization failed|Unable to setup interface|Could not add STA to kernel driver"
        r"|Device or resource busy|Resource busy|\bnl80211: .*(?:fail|error|could not|unable)"
        r"|\brfkill: .*blocked|driver (?:failed|error|reported)|(?:fail|could not|unable)[^,]* (?:to|from|with|for) (?:the )?"
        r"(?:kernel )?driver|to the driver|from the driver|\bHardware (?:restart|reset)",
        _W,
        "wlan1: ACS-FAILED",
    ),
    # --- a station's link lost (missing ACKs / beacons) ---
    EventPattern(
        "beacon_loss",
        r"CTRL-EVENT-BEACON-LOSS|beacon loss|excessive missing ACKs|\bbeacon (?:miss|lost)"
        r"|\blink (?:lost|loss)\b",
        _W,
        "wl0-ap0: STA c4:41:1e:09:a4:5d IEEE 802.11: disconnected due to excessive missing ACKs",
    ),
    # --- interface / AP state changes (hostapd, netifd, bridge ports of WiFi interfaces) ---
    EventPattern(
        "interface_state",
        r"\bAP-(?:ENABLED|DISABLED)\b|interface state \w+->\w+|\bINTERFACE-(?:ENABLED|DISABLED)"
        r"|CTRL-EVENT-TERMINATING|\((?:wl|wlan|phy|ath|ra|rai)\d[^)]*\) entered \w+ state"
        r"|'(?:wl|wlan|phy|ath|ra|rai)\d[^']*' link is (?:up|down)|\bELOOP: remaining socket"
        r"|^(?:\[\s*\d+\.\d+\]\s*)?(?:wl|eth)\d+: Broadcom BCM\w* 802\.11 Wireless Controller",  # Broadcom radio attach (boot)
        None,
        "wl0-ap0: interface state ENABLED->DISABLED",
    ),
    # --- DFS radar / CAC (hostapd DFS-* events, driver "radar detected"; any process) ---
    EventPattern(
        "dfs",
        r"\bDFS-[A-Z]|\bDFS:|\bradar\b[^,]*\bdetect|\bCAC\b|channel availability check",
        None,
        "wlan1: DFS-RADAR-DETECTED freq=5260 ht_enabled=0 chan_offset=0 chan_width=3 cf1=5290 cf2=0",
    ),
    # --- channel switches (after DFS: DFS-NEW-CHANNEL is a DFS event) ---
    EventPattern(
        "channel_switch",
        r"CTRL-EVENT-(?:STARTED-)?CHANNEL-SWITCH|\bCSA\b|\bchannel switch",
        None,
        "wlan0: CTRL-EVENT-CHANNEL-SWITCH freq=5180 ht_enabled=1 ch_offset=1 ch_width=80 MHz cf1=5210 cf2=0",
    ),
    EventPattern("channel_switch", r"\bAP-CSA-FINISHED\b", None, "wlan1: AP-CSA-FINISHED freq=5180 dfs=0"),
    EventPattern(
        "channel_switch",
        r"selected channel spec|adjusted channel spec|acs_set_chspec|selected_chspec",
        _ACSD,
        "eth6: selected channel spec: 0x1006 (6)",
    ),
    # --- reason codes naming the cause beat the frame kind (802.11 reason 15/16/23) ---
    EventPattern(
        "eapol_timeout", r"\breason=15\b", _W, "wlan0: CTRL-EVENT-DISCONNECTED bssid=c4:41:1e:26:30:43 reason=15"
    ),
    EventPattern(
        "eapol_timeout",
        r"\breason: [^,]*\(15\)",
        _W,
        _WLC_EV + "Deauth_ind AB:CD:EF:01:23:45, status: 0, reason: 4-Way Handshake timeout (15), rssi:0",
    ),
    EventPattern(
        "eapol_timeout",
        r"EAPOL-Key timeout|4-?way handshake time(?:d )?out",
        _W,
        "wl0-ap0: STA c4:41:1e:09:a4:5d WPA: EAPOL-Key timeout",
    ),
    EventPattern(
        "group_key_failure",
        r"\breason=16\b|\breason: [^,]*\(16\)|group key handshake failed|group rekeying failed",
        _W,
        "eth5: STA c4:41:1e:0a:55:d2 WPA: group key handshake failed (RSN) after 4 tries",
    ),
    # --- wrong passphrase ---
    EventPattern(
        "psk_mismatch", r"AP-STA-POSSIBLE-PSK-MISMATCH", _W, "wl0-ap0: AP-STA-POSSIBLE-PSK-MISMATCH c4:41:1e:09:a4:5d"
    ),
    EventPattern(
        "psk_mismatch",
        r"CTRL-EVENT-SSID-TEMP-DISABLED.*\breason=WRONG_KEY|invalid MIC in msg 2/4",
        _W,
        'wlan0: CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid="HomeNet" auth_failures=1 duration=10 reason=WRONG_KEY',
    ),
    EventPattern(
        "psk_mismatch",
        r"pre-shared key may be incorrect",
        _W,
        "wlan0: WPA: 4-Way Handshake failed - pre-shared key may be incorrect",
    ),
    # --- authentication / association rejected ---
    EventPattern(
        "auth_failure",
        r"CTRL-EVENT-ASSOC-REJECT|CTRL-EVENT-EAP-FAILURE|CTRL-EVENT-SSID-TEMP-DISABLED",
        _W,
        "wlan0: CTRL-EVENT-ASSOC-REJECT bssid=c4:41:1e:26:30:43 status_code=17",
    ),
    EventPattern(
        "auth_failure",
        r"CTRL-EVENT-AUTH-REJECT",
        _W,
        "wlan0: CTRL-EVENT-AUTH-REJECT c4:41:1e:26:30:43 auth_type=0 auth_transaction=2 status_code=1",
    ),
    EventPattern(
        "auth_failure",  # wlceventd Auth/Assoc/ReAssoc with a non-zero status
        r":\s+(?:Auth|Assoc|ReAssoc)\s+" + _MAC + r",\s*status:\s*(?:[1-9]|[^,(]*\(\s*[1-9])",
        _W,
        _WLC_EV + "Auth AB:CD:EF:01:23:45, status: Unspecified failure (1), rssi:0",
    ),
    EventPattern(
        "auth_failure",
        r"authentication (?:failed|failure|rejected|timed out)|authentication with \S+ timed out"
        r"|\breason: [^,]*\(23\)",
        _W,
        "wl0-ap0: STA c4:41:1e:09:a4:5d IEEE 802.1X: authentication failed - EAP type: 0 (unknown)",
    ),
    # --- key handshakes ---
    EventPattern(
        "pairwise_handshake_failure",
        r"pairwise key handshake failed|4-?way handshake failed"
        r"|PTKSTART: Retry limit",
        _W,
        "eth6: STA 30:d8:75:a2:e2:6a WPA: pairwise key handshake failed (RSN) after 4 tries",
    ),
    EventPattern(
        "pairwise_handshake_success",
        r"pairwise key handshake completed|4-?way handshake completed"
        r"|\bKey negotiation completed",
        _W,
        "eth6: STA 56:6c:7e:e5:22:11 WPA: pairwise key handshake completed (RSN)",
    ),
    EventPattern(
        "pairwise_handshake_success",
        r"\bEAPOL-4WAY-HS-COMPLETED\b",
        _W,
        "wl0-ap0: EAPOL-4WAY-HS-COMPLETED c4:41:1e:09:a4:5d",
    ),
    EventPattern(
        "group_key_success",
        r"group key handshake completed",
        _W,
        "eth6: STA 30:d8:75:a2:e2:6a WPA: group key handshake completed (RSN)",
    ),
    EventPattern(
        "group_key_success",
        r"group rekeying completed",
        _W,
        "wl1-sta0: RSN: Group rekeying completed with c4:41:1e:26:30:43 [GTK=CCMP]",
    ),
    # --- RADIUS accounting (ASUS hostapd starts a session per association) ---
    EventPattern(
        "radius_accounting",
        r"\bRADIUS:.*\baccounting|accounting session|\bAccounting-(?:Request|Response)",
        _W,
        "eth6: STA 56:6c:7e:e5:22:11 RADIUS: starting accounting session E0E3FA055456AACA",
    ),
    # --- station up/down (hostapd AP-STA-*, wpa_supplicant CTRL-EVENT-*) ---
    EventPattern(
        "ap_sta_disconnected", r"\bAP-STA-DISCONNECTED\b", _W, "wl0-ap0: AP-STA-DISCONNECTED c4:41:1e:09:a4:5d"
    ),
    EventPattern(
        "ap_sta_disconnected",
        r"\bCTRL-EVENT-DISCONNECTED\b",
        _W,
        "wlan0: CTRL-EVENT-DISCONNECTED bssid=c4:41:1e:26:30:43 reason=3 locally_generated=1",
    ),
    EventPattern(
        "ap_sta_connected", r"\bAP-STA-CONNECTED\b", _W, "wl0-ap0: AP-STA-CONNECTED c4:41:1e:09:a4:5d auth_alg=open"
    ),
    EventPattern(
        "ap_sta_connected",
        r"\bCTRL-EVENT-CONNECTED\b",
        _W,
        "wlan0: CTRL-EVENT-CONNECTED - Connection to c4:41:1e:26:30:43 completed [id=0 id_str=]",
    ),
    EventPattern(
        "psk_mismatch",
        r"EAPOL-Key with invalid MIC|\bMIC (?:failure|mismatch)",
        _W,
        "eth6: STA 30:d8:75:a2:e2:6a WPA: received EAPOL-Key with invalid MIC",
    ),
    EventPattern(
        "auth_failure",
        r"CTRL-EVENT-EAP-TIMEOUT-FAILURE|No room for more AIDs|\bAP-STA-(?:POLL|)?REJECT"
        r"|association (?:rejected|failed)|\bCTRL-EVENT-SAE-UNKNOWN-PASSWORD-IDENTIFIER|\bSAE: .*(?:reject|fail)",
        _W,
        "eth6: STA 30:d8:75:a2:e2:6a IEEE 802.11: No room for more AIDs",
    ),
    EventPattern(
        "authentication",
        r"CTRL-EVENT-EAP-SUCCESS|\bEAP-SUCCESS\b",
        _W,
        "wlan0: CTRL-EVENT-EAP-SUCCESS EAP authentication completed successfully",
    ),
    # --- Broadcom wlceventd frame events: "<iface>: <Kind> <MAC>, status: ..." ---
    EventPattern(
        "deauthentication",
        r":\s+Deauth(?:_ind)?\s+" + _MAC,
        _W,
        _WLC_EV + "Deauth_ind AB:CD:EF:01:23:45, status: 0, reason: Unspecified reason (1), rssi:0",
    ),
    EventPattern(
        "disassociation",
        r":\s+Disassoc(?:_ind)?\s+" + _MAC,
        _W,
        _WLC_EV + "Disassoc AB:CD:EF:01:23:45, status: 0, reason: Disassociated because "
        "sending station is leaving (or has left) BSS (8), rssi:0",
    ),
    EventPattern(
        "reassociation",
        r":\s+ReAssoc(?:_ind)?\s+" + _MAC,
        _W,
        _WLC_EV + "ReAssoc AB:CD:EF:01:23:45, status: Successful (0), rssi:-53",
    ),
    EventPattern(
        "association",
        r":\s+Assoc(?:_ind)?\s+" + _MAC,
        _W,
        _WLC_EV + "Assoc AB:CD:EF:01:23:45, status: Successful (0), rssi:-40",
    ),
    EventPattern(
        "authentication",
        r":\s+Auth(?:_ind)?\s+" + _MAC,
        _W,
        _WLC_EV + "Auth AB:CD:EF:01:23:45, status: Successful (0), rssi:-40",
    ),
    # --- hostapd "IEEE 802.11:" logger (ASUS and OpenWrt) and wpa_supplicant phrasings ---
    EventPattern(
        "deauthentication",
        r"\bdeauthenticat(?:ed|ing|ion)\b",
        _W,
        "eth6: STA 92:3f:24:40:58:16 IEEE 802.11: deauthenticated due to local deauth request",
    ),
    EventPattern(
        "disassociation", r"\bdisassociat(?:ed|ing|ion)\b", _W, "eth6: STA 56:6c:7e:e5:22:11 IEEE 802.11: disassociated"
    ),
    EventPattern(
        "reassociation", r"\breassociat(?:ed|ion)\b", _W, "wlan0: STA c4:41:1e:09:a4:5d IEEE 802.11: reassociated"
    ),
    EventPattern(
        "association", r"IEEE 802\.11: associated\b", _W, "eth6: STA 56:6c:7e:e5:22:11 IEEE 802.11: associated (aid 5)"
    ),
    EventPattern("association", r"\bAssociated with\b", _W, "wlan0: Associated with c4:41:1e:26:30:43"),
    EventPattern(
        "authentication",
        r"IEEE 802\.1[1x]: authenticated\b|IEEE 802\.11: authentication OK",
        _W,
        "wl0-ap0: STA c4:41:1e:09:a4:5d IEEE 802.11: authenticated",
    ),
    # --- wpa_supplicant scans, BSS table and state changes; hostapd ACS/survey ---
    EventPattern(
        "scan_state",
        r"CTRL-EVENT-(?:SCAN-|SSID-REENABLED|NETWORK-NOT-FOUND|BSS-|REGDOM-|SUBNET-|SIGNAL-CHANGE|STATE|FREQ|DO-ROAM"
        r"|SKIP-ROAM|NETWORK-ADDED|NETWORK-REMOVED|AVOID-FREQ|BEACON)|\bTrying to (?:associate|authenticate)"
        r"|\bSME: Trying|\bscan(?:ning|ned|s)?\b|\bsurvey\b|\bACS\b|\bbgscan|\bState: \w+ -> \w+"
        r"|\broam(?:ing)?\b",
        _W,
        "wlan0: CTRL-EVENT-SCAN-RESULTS ",
    ),
    # --- the daemons' own errors (configuration, control interface, crypto, protocol parsing) ---
    EventPattern(
        "daemon_error",
        r"^Line \d+:|\b(?:fail(?:ed|ure|s)?|could not|couldn't|cannot|can't|unable to|errors?|invalid"
        r"|unsupported|not supported|out of memory|no memory|allocation|overflow|too (?:long|short|many)"
        r"|mismatch|missing|malformed|unexpected|truncated|refused|rejected|denied|not allowed|expired"
        r"|corrupt|bad|wrong|illegal|abort(?:ed|ing)?|drop(?:ped|ping)?|ignor(?:e|ed|ing)|disabled|reject|timeout|err"
        r"|errno|not found|not enough|does not support|did not|not present|not connected|not suppored)\b"
        r"|\b(?:ioctl|socket|bind|sendto|recvfrom|chmod|fork|setsockopt|getsockopt|select|open|write|read)"
        r"\s*[\[(:]|l2_packet_send",
        _W,
        "Line 12: invalid channel '300'",
    ),
    # --- protocol chatter deliberately left neutral: status lines of the named hostap modules ---
    EventPattern(
        "wifi_info",
        r"^(?:\S+: )?(?:DPP|NAN|P2P|WPS|TDLS|EAP|EAPOL|TLS|TLSv1|OpenSSL|wolfSSL|GnuTLS|SSL|IKEV2|KaY|MACsec"
        r"|macsec_\w+|RADIUS|DAS|ANQP|GAS|HS20|Interworking|FT|PASN|FILS|SAE|SAE-PK|OWE|RRM|WNM|MBO|DSCP"
        r"|MLD|VLAN|dbus|TEST|TESTING|PR|QM|TNC|SCARD|ENGINE|mesh|MESH|SME|RSN|WPA|WEP|IEEE 802\.1[1X]"
        r"|ctrl_iface|CTRL|CTRL-EVENT|nl80211|Driver|WEXT|l2_packet|hostapd|wpa_supplicant|PMKSA|PMKID|AP"
        r"|STA|BSS|HT|VHT|HE|EHT|morse|EPPKE|MSCS|SCS|NFC|EXT PW|WMM|Radio|BSS Coex|ACL|PKEX|MACsec"
        r"|Wi-Fi|WNM-[A-Z]+|AP-[A-Z-]+|DPP-[A-Z-]+|P2P-[A-Z-]+|WPS-[A-Z-]+|NAN-[A-Z-]+|PR-[A-Z-]+"
        r"|CTRL-EVENT-[A-Z-]+|EAP-[A-Za-z0-9-]+|[A-Z][A-Z0-9]+(?:-[A-Z0-9]+)+|Unknown event|MLME"
        r"|random|hostapd_cli|wpa_cli|FST|AKM|GTK|IGTK|BIGTK|PTK|TK|EHT-ML|ML|SA Query|OCV|HE-?SR|wolfFIPS"
        r"|LibTomCrypt|PKCS #\d+|SHA\d+|MD5|RFC \d+|DEPRECATED|Switching to|Enabling|Starting|Browser"
        r"|Using|Add|Remove|Received|Sending|Trying|EVENT_\w+|ECSA|S1G|CTWindow)\b|\btest (?:case|vector)"
        r"|\btests?$|: (?:Done|Enter|Exit)$",
        _W,
        "wlan0: DPP-CONFOBJ-SSID HomeNet",
    ),
)

# MAC: a whole 6-octet address, not part of a longer colon-hex run (DUIDs, IPv6).
_MAC_EXTRACT = (
    r"(?:^|[^0-9A-Fa-f:])(?P<mac>[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})(?:$|[^0-9A-Fa-f:]|:(?:$|[^0-9A-Fa-f]))"
)
# Interface: the leading "<name>: " token (after an optional kernel time stamp or the
# "wlceventd_proc_event(N): " prefix) if it has a digit and no underscore (which rules out
# "WPA:", "RADIUS:", "IEEE 802.11:", "l2_packet_init:"), or mac80211's "ieee80211 phyN:".
_IFACE_EXTRACT = (
    r"^(?:\[\s*\d+\.\d+\]\s*)?(?:\w+\(\d+\):\s+)?(?:(?P<iface>[A-Za-z][A-Za-z0-9.-]*\d[A-Za-z0-9.-]*)"
    r"|ieee80211 (?P<phy>phy\d+)):\s"
)
# Leading tokens with a digit that are protocol/module tags, not interfaces.
_NOT_INTERFACES = ("nl80211", "p2p", "hs20", "wpa2", "wpa3", "ieee802", "ipv4", "ipv6")
_PID_SUFFIX = r"\[\d*\]$"


def _to_large_string(values: pd.Series) -> pa.Array:
    """Arrow view of a string column (nulls kept) without a Python loop."""
    try:
        arr = pa.array(values, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects: let pandas stringify them
        arr = pa.array(values.astype("string"), type=pa.large_string(), from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _fuse(rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Merge consecutive rows of the same type into one alternation (same first-match result)."""
    fused: list[tuple[int, str]] = []
    for code, pattern in rows:
        if fused and fused[-1][0] == code:
            fused[-1] = (code, f"{fused[-1][1]}|(?:{pattern})")
        else:
            fused.append((code, f"(?:{pattern})"))
    return fused


def _check_catalog(catalog: tuple[EventPattern, ...]) -> None:
    """Fail at import on a malformed row rather than misclassify silently."""
    for row in catalog:
        if row.event_type not in EVENT_TYPES or row.event_type in ("other_wifi", "other_process"):
            raise ValueError(f"catalog row has invalid event type {row.event_type!r}")
        if row.processes is not None and any(p != p.lower() for p in row.processes):
            raise ValueError(f"catalog row {row.event_type!r}: process names must be lower-case")


_check_catalog(EVENT_CATALOG)
_TYPE_CODE = {t: i for i, t in enumerate(EVENT_TYPES)}
_OTHER_WIFI = EVENT_TYPES.index("other_wifi")
_OTHER_PROCESS = EVENT_TYPES.index("other_process")


def _regex_hits(msgs: pa.Array, rows: np.ndarray, pattern: str) -> np.ndarray:
    """Boolean mask over ``rows`` (positions in ``msgs``): does the line match ``pattern``?"""
    sub = msgs if rows.size == len(msgs) else msgs.take(pa.array(rows))
    hit = pc.match_substring_regex(sub, pattern, ignore_case=True)
    return hit.fill_null(False).to_numpy(zero_copy_only=False)


def _first_match(msgs: pa.Array, rows: np.ndarray, rules: list[tuple[int, str]], codes: np.ndarray) -> None:
    """Write into ``codes[rows]`` the type of the first rule each line matches.

    Bisection over the ordered rules: a line matching the alternation of the first half has
    its answer there, otherwise in the second half. Each line thus costs about log2(rules)
    regex passes instead of one per rule, which matters when lines are all distinct."""
    pending = [(rows, 0, len(rules))]
    while pending:
        rows, lo, hi = pending.pop()
        if rows.size == 0:
            continue
        if hi - lo == 1:
            codes[rows] = rules[lo][0]
            continue
        mid = (lo + hi) // 2
        hit = _regex_hits(msgs, rows, "|".join(p for _, p in rules[lo:mid]))
        pending.append((rows[hit], lo, mid))
        pending.append((rows[~hit], mid, hi))


def _classify_unique(msgs: pa.Array, proc_codes: np.ndarray, proc_names: list[str], wifi: frozenset[str]) -> np.ndarray:
    """Event codes for distinct (message, process) pairs; ``proc_names[proc_codes[i]]`` is line i's process.

    Lines are grouped by which catalog rows apply to their process (any / WiFi / acsd ...),
    lines matching no applicable row at all are set aside with one pass, and the rest go
    through ``_first_match``."""
    is_wifi = np.array([p in wifi for p in proc_names], dtype=bool)
    codes = np.where(is_wifi[proc_codes], _OTHER_WIFI, _OTHER_PROCESS).astype(np.int16)
    valid = pc.is_valid(msgs).to_numpy(zero_copy_only=False)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, proc in enumerate(proc_names):
        applies = tuple(
            k
            for k, row in enumerate(EVENT_CATALOG)
            if row.processes is None or proc in (wifi if row.processes == WIFI_PROCESSES else row.processes)
        )
        groups.setdefault(applies, []).append(i)
    for applies, members in groups.items():
        in_group = np.zeros(len(proc_names), dtype=bool)
        in_group[members] = True
        rows = np.flatnonzero(in_group[proc_codes] & valid)
        if rows.size == 0 or not applies:
            continue
        rules = _fuse([(_TYPE_CODE[EVENT_CATALOG[k].event_type], EVENT_CATALOG[k].pattern) for k in applies])
        any_hit = _regex_hits(msgs, rows, "|".join(p for _, p in rules))
        _first_match(msgs, rows[any_hit], rules, codes)
    return codes


def _extract(msgs: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Lower-case station MAC and interface name of each (distinct) message."""
    mac = pc.ascii_lower(pc.struct_field(pc.extract_regex(msgs, _MAC_EXTRACT), "mac"))
    parts = pc.extract_regex(msgs, _IFACE_EXTRACT)
    iface_tok, phy_tok = pc.struct_field(parts, "iface"), pc.struct_field(parts, "phy")
    iface = pc.if_else(pc.equal(iface_tok, ""), phy_tok, iface_tok)
    not_iface = pa.array(_NOT_INTERFACES, pa.large_string())
    bad = pc.fill_null(pc.is_in(pc.ascii_lower(iface), value_set=not_iface), True)
    iface = pc.if_else(pc.or_(bad, pc.equal(iface, "")), pa.scalar(None, pa.large_string()), iface)
    return mac, iface


def _worth_deduplicating(msgs: pa.Array, sample_size: int = 20_000) -> bool:
    """Whether hashing the lines pays: router logs repeat lines, but a log with counters or
    time stamps in every line is all distinct and hashing it costs more than it saves.
    Decided on an evenly strided sample (its distinct share over-estimates the whole's)."""
    n = len(msgs)
    if n <= 4 * sample_size:
        return True
    sample = msgs.take(pa.array(np.arange(0, n, n // sample_size)))
    return len(pc.unique(sample)) < 0.8 * len(sample)


def classify_events(
    messages: pd.Series,
    process_names: pd.Series,
    *,
    wifi_processes: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Classify syslog lines into ``EVENT_TYPES`` and extract station MAC and interface.

    ``messages`` and ``process_names`` are paired row by row and must share their index;
    the result has that index and columns ``event_type`` (Categorical over EVENT_TYPES),
    ``station_mac`` (first whole MAC in the line, lower-case, else <NA>) and ``interface``
    (string, else <NA>). ``wifi_processes`` replaces ``WIFI_PROCESSES`` for this call, e.g.
    to treat a site-specific daemon as WiFi (its lines then also get the WiFi patterns).
    Work is done once per distinct (process, message) pair, so repetitive logs are cheap.
    """
    if len(messages) != len(process_names) or not messages.index.equals(process_names.index):
        raise ValueError("messages and process_names must have the same length and index")
    wifi = WIFI_PROCESSES if wifi_processes is None else frozenset(p.strip().lower() for p in wifi_processes)

    msgs = _to_large_string(messages)
    proc_enc = pc.dictionary_encode(_to_large_string(process_names), null_encoding="encode")
    proc_idx = proc_enc.indices.to_numpy().astype(np.int64, copy=False)
    # Process names: lower-case, without a "[pid]" suffix; null -> "" (not WiFi).
    procs_clean = pc.replace_substring_regex(
        pc.utf8_trim_whitespace(pc.utf8_lower(proc_enc.dictionary)), _PID_SUFFIX, ""
    )
    proc_names = [p or "" for p in procs_clean.to_pylist()]

    msg_idx: np.ndarray | None = None  # row -> distinct message; None = rows are their own messages
    msg_dict = msgs
    if _worth_deduplicating(msgs):
        msg_enc = pc.dictionary_encode(msgs, null_encoding="encode")
        msg_idx, msg_dict = msg_enc.indices.to_numpy().astype(np.int64, copy=False), msg_enc.dictionary

    # The MAC and interface of each distinct line are extracted on a second thread while the lines are classified
    # here: both are Arrow regex kernels, which release the GIL.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract_keys") as pool:
        extracted = pool.submit(_extract, msg_dict)
        codes = _event_codes(msgs, msg_idx, msg_dict, proc_idx, proc_names, wifi)
        mac, iface = extracted.result()
    if msg_idx is not None:
        indices = pa.array(msg_idx)
        mac, iface = mac.take(indices), iface.take(indices)
    event_type = pd.Categorical.from_codes(codes, categories=list(EVENT_TYPES))
    return pd.DataFrame(
        {
            "event_type": event_type,
            "station_mac": pd.arrays.ArrowStringArray(mac),
            "interface": pd.arrays.ArrowStringArray(iface),
        },
        index=messages.index,
    )


def _event_codes(
    msgs: pa.Array,
    msg_idx: np.ndarray | None,
    msg_dict: pa.Array,
    proc_idx: np.ndarray,
    proc_names: list[str],
    wifi: frozenset[str],
) -> np.ndarray:
    """Each line's event code, classifying each distinct (process, message) pair once."""
    n_msg = len(msg_dict)
    # Distinct (process, message) pairs to classify, and each row's pair.
    if msg_idx is None:
        pair_codes, pair_msgs, pair_proc = None, msgs, proc_idx
    elif len(proc_names) <= 1:
        pair_codes, pair_msgs, pair_proc = msg_idx, msg_dict, np.zeros(n_msg, dtype=np.int64)
    else:
        pair_codes, pair_keys = pd.factorize(proc_idx * n_msg + msg_idx)
        pair_msgs, pair_proc = msg_dict.take(pa.array(pair_keys % n_msg)), pair_keys // n_msg
    pair_events = _classify_unique(pair_msgs, pair_proc, proc_names, wifi)
    return pair_events if pair_codes is None else pair_events[pair_codes]
