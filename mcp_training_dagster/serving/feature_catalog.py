"""The feature catalog: which window features exist, what each means, which the detector sees, and the
event families they are built from. What is computed lives here; how (the windowing kernel) lives in
``features.py``, which re-exports these names. Shipped in every package with the rest of the serving core.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_training_dagster.serving.events import EVENT_TYPES

ENTITY_KINDS: tuple[str, ...] = ("device", "station", "interface")
DEVICE_ENTITY = "*"
KEY_COLUMNS: tuple[str, ...] = ("device", "entity_kind", "entity", "window_start")
# The record columns build_windows reads (the fan-in loads only these).
RECORD_COLUMNS: tuple[str, ...] = ("device", "station_mac", "interface", "timestamp", "event_type", "severity")

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
    "wifi_errors": "WiFi records (every event type but `other_process`) with syslog severity emergency..error (0-3)",
    "n_stations": "distinct station MACs seen in the window",
    "n_new_stations": "distinct stations not seen by this entity in the immediately preceding window",
    "n_random_macs": "distinct locally-administered (randomised) station MACs",
    "n_interfaces": "distinct interfaces seen in the window",
    "peak_burst": "most records in any one burst sub-bucket (default 10 s) of the window",
    "active_buckets": "burst sub-buckets with at least one record (spread of activity)",
    "silence_before_s": "seconds since the entity's previous record before this window (capped)",
    "repeat_leaves": "disconnect records of a station whose previous record (>= 5 s earlier) was also a disconnect: kicked again without rejoining",
    "repeat_radio_errors": "radio, driver or lost-link records of the device within 10 minutes after its previous one: a failing radio, not a lone reset",
    "unannounced_joins": "first join records of a station whose previous record was neither a join, a disconnect nor a failure, with no restart of the router's interfaces in between: rejoined while still connected",
    "kind_device": "1 for a device-level window",
    "kind_station": "1 for a station-level window",
    "kind_interface": "1 for an interface-level window",
    "n_unkeyed": "records naming neither a station nor an interface (device windows: scored as key `-`)",
}
AGGREGATE_FEATURES: tuple[str, ...] = tuple(FEATURE_DOCS)
# Features that look back beyond the window: the entity's own normal activity, so silence is judged
# against that device's usual gaps rather than a global constant.
FEATURE_DOCS.update(
    {
        "expected_records": "mean records per window of the entity over the history (24 h) before the window",
        "missed_records": "records the entity would normally have sent while silent: silence_before_s x expected_records / window length",
    }
)
# The device's situation in the same window, on every window of that device: a station's reconnect
# means something else during a flood of unknown MACs than during a reboot of the router.
FEATURE_DOCS.update(
    {
        "dev_records": "records of the whole device in the same window",
        "dev_stations": "distinct stations on the device in the same window",
        "dev_unseen_stations": "stations of the device in the window with no record in the silence cap (24 h) before (0 until the device has an hour of history)",
        "dev_max_station_records": "records of the device's busiest station in the window",
        "dev_deauth": "deauthentications, disassociations and AP-STA disconnects on the device in the window",
        "dev_failures": "authentication, handshake, EAPOL and PSK failures on the device in the window",
    }
)
# Event families (sums of the ev_ columns above): one family per behaviour, so a detector splits on
# "many failures" rather than on which of five rare failure wordings a router happens to print.
FEATURE_DOCS.update(
    {
        "grp_joins": "association, reassociation, authentication and AP-STA-CONNECTED records in the window",
        "grp_leaves": "deauthentication, disassociation and AP-STA-DISCONNECTED records in the window",
        "grp_failures": "authentication, handshake, group key, EAPOL-timeout and PSK-mismatch failures in the window",
        "grp_radio_control": "DFS and channel-switch records in the window",
        "grp_radio_faults": "radio errors, driver errors and lost links (missing ACKs, beacon loss) in the window",
    }
)
# A router's silence judged against its own longest gap of the day before (routers log at least at
# every hourly group rekey, busy ones far more often). Device windows only (0 for stations and
# interfaces, which come and go), and 0 until the device has a full history (history_hours) of records.
FEATURE_DOCS.update(
    {
        "gap_vs_usual": "device windows: silence_before_s / the device's longest gap between two of its records in the history before (floor: one window)",
        "silence_excess": "device windows: windows of silence beyond that longest gap, max(0, silence_before_s - usual) / window length",
        "silent_beyond_usual": "device windows: 1 when the device has been silent longer than 1.5 x its longest gap in the history before (hourly-rekey jitter beats 1 x by seconds)",
    }
)
FEATURE_COLUMNS: tuple[str, ...] = tuple(FEATURE_DOCS)
# The curated subset the detector should see (measured in the tuning report): event families instead
# of the 20 single event types, relative silence instead of raw seconds, the device context, and the
# station sequences (kicked again without rejoining, rejoined without leaving, radio errors in a series).
# n_stations and dev_failures are left out: they repeat n_records/grp_failures and only added noise.
# wifi_errors: WiFi lines their daemon logs as errors (syslog 0-3), whatever their wording: a failing radio
# says so at error level, while a flood or a reconnect loop is info/notice traffic. Not sev_error_or_worse:
# other daemons log routine work at error level too (ASUS's WATCHDOG logs its daily firmware check as
# "emergency"), which would make a router's daily housekeeping an alarm.
MODEL_FEATURES: tuple[str, ...] = (
    "kind_device",
    "kind_station",
    "kind_interface",
    "n_records",
    "n_random_macs",
    "grp_joins",
    "grp_leaves",
    "grp_failures",
    "grp_radio_faults",
    "grp_radio_control",
    "dev_unseen_stations",
    "dev_max_station_records",
    "dev_deauth",
    "gap_vs_usual",
    "silence_excess",
    "silent_beyond_usual",
    "repeat_leaves",
    "unannounced_joins",
    "repeat_radio_errors",
    "wifi_errors",
)
JOIN_EVENTS: tuple[str, ...] = ("association", "reassociation", "authentication", "ap_sta_connected")
# Interface lifecycle lines (AP-ENABLED/DISABLED, interface state changes, bridge ports, link up/down) are
# not in a family: every boot, WiFi reload and configuration change writes a burst of them, so on their own
# they mean "restarted", not "in trouble"; a failing interface shows itself by driver errors (radio faults).
# They announce the rejoins that follow instead (unannounced_joins).
RADIO_CONTROL_EVENTS: tuple[str, ...] = ("dfs", "channel_switch")
RESTART_EVENTS: tuple[str, ...] = ("interface_state", "channel_switch")  # the AP (re)started or moved channel
RADIO_FAULT_EVENTS: tuple[str, ...] = ("radio_error", "driver_error", "beacon_loss")
DEAUTH_EVENTS: tuple[str, ...] = ("deauthentication", "disassociation", "ap_sta_disconnected")
FAILURE_EVENTS: tuple[str, ...] = (
    "auth_failure",
    "pairwise_handshake_failure",
    "group_key_failure",
    "eapol_timeout",
    "psk_mismatch",
)


@dataclass(frozen=True)
class WindowSpec:
    length_minutes: int = 5
    entities: tuple[str, ...] = ENTITY_KINDS
    burst_seconds: int = 10
    silence_cap_hours: float = 24.0
    history_hours: float = 24.0

    def __post_init__(self) -> None:
        if (self.history_hours * 60) % self.length_minutes:
            raise ValueError("history_hours must be a whole number of windows")

    @property
    def length_ns(self) -> int:
        return int(self.length_minutes) * 60 * 1_000_000_000

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> WindowSpec:
        """The spec a package records in ``inference_config.window_spec`` (JSON lists back to tuples)."""
        fields = dict(fields)
        if "entities" in fields:
            fields["entities"] = tuple(fields["entities"])
        return cls(**fields)
