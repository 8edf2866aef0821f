"""The event catalog against the universe of hostapd / wpa_supplicant syslog lines.

``data/hostap/syslog_formats.tsv.gz`` holds every logging call of hostap that reaches syslog by
default (``wpa_msg*`` and the ``*_logger`` calls at INFO and above, ``wpa_printf`` at MSG_INFO,
MSG_WARNING and MSG_ERROR), cut from ``../shared/reference/hostap/log_formats.tsv`` (BSD licence beside
it). Each format is rendered as the daemon prints it and must be typed to a specific family or
deliberately marked neutral (``wifi_info``), not left as ``other_wifi``."""

from __future__ import annotations

from mcp_training_dagster.serving.events import classify_events
from mcp_training_dagster_tests.domain.hostap_formats import syslog_lines

TARGET = 0.90


def test_default_syslog_formats_are_typed(capsys) -> None:
    d = syslog_lines()
    assert len(d) > 6000
    ev = classify_events(d["line"], d["process"])["event_type"].astype(str)
    typed = float((ev != "other_wifi").mean())
    rest = d.loc[ev == "other_wifi", ["level", "line"]]
    with capsys.disabled():
        print(
            f"\ncatalog types {typed:.1%} of {len(d)} default-syslog hostap formats; untyped remainder ({len(rest)}):"
        )
        for level, line in rest.itertuples(index=False):
            print(f"  {level:<11} {line}")
    assert typed >= TARGET


def test_new_families_on_known_lines() -> None:
    import pandas as pd

    lines = {
        "wlan1: ACS-FAILED": "driver_error",
        "Could not set channel for kernel driver": "driver_error",
        "wl0-ap0: STA c4:41:1e:09:a4:5d IEEE 802.11: Could not add STA to kernel driver": "driver_error",
        "wlan0: CTRL-EVENT-BEACON-LOSS ": "beacon_loss",
        "wl0-ap0: STA c4:41:1e:09:a4:5d IEEE 802.11: disconnected due to excessive missing ACKs": "beacon_loss",
        "phy0-ap0: interface state ENABLED->DISABLED": "interface_state",
        "wl0-ap0: AP-DISABLED": "interface_state",
        "wlan0: CTRL-EVENT-SCAN-RESULTS ": "scan_state",
        "Line 3: invalid channel": "daemon_error",
        "wl1-sta0: Unknown event 23": "wifi_info",
        "eth6: STA 30:d8:75:a2:e2:6a WPA: received EAPOL-Key with invalid MIC": "psk_mismatch",
    }
    out = classify_events(pd.Series(list(lines)), pd.Series(["hostapd"] * len(lines)))["event_type"].astype(str)
    assert dict(zip(lines, out)) == lines
    kernel = pd.Series(
        [
            "[  812.331] ath10k_pci 0000:01:00.0: failed to get memcpy hi address for firmware address 4: -16",
            "[ 12.5] br-lan: port 2(phy0-ap0) entered forwarding state",
        ]
    )
    got = classify_events(kernel, pd.Series(["kernel", "kernel"]))["event_type"].astype(str).tolist()
    assert got == ["driver_error", "interface_state"]
