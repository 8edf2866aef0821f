"""Feature windows: exact values on hand-made records, purity, and the real sample."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.serving.events import EVENT_TYPES
from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.features import (
    DEVICE_ENTITY,
    FEATURE_COLUMNS,
    KEY_COLUMNS,
    WindowSpec,
    build_windows,
)
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster_tests.conftest import HOSTAPD_1824

STA_A = "30:d8:75:a2:e2:6a"  # globally administered (first octet 0x30: bit 1 clear)
STA_R = "da:a1:19:00:00:01"  # locally administered / randomised (0xda: bit 1 set)
STA_C = "c4:41:1e:09:a1:83"  # globally administered
CAP = 24 * 3600.0


def make_records(rows: list[tuple], device: str = "3") -> pd.DataFrame:
    """Validated-record-like table from (timestamp, event_type, station_mac, interface, severity)."""
    df = pd.DataFrame(rows, columns=["timestamp", "event_type", "station_mac", "interface", "severity"])
    n = len(df)
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "device": pd.Series([device] * n, dtype="str"),
            "timestamp": pd.to_datetime(df["timestamp"]).astype("datetime64[us]"),
            "severity": pd.array(df["severity"], dtype="int8"),
            "event_type": pd.Categorical(df["event_type"], categories=EVENT_TYPES),
            "station_mac": df["station_mac"].astype("str"),
            "interface": df["interface"].astype("str"),
        }
    )


# Three 5-minute windows for device "3": 10:00, 10:05, 10:20.
ROWS = [
    ("2025-06-01 10:01:00", "association", STA_A, "eth6", 6),
    ("2025-06-01 10:01:05", "pairwise_handshake_success", STA_A, "eth6", 6),
    ("2025-06-01 10:03:20", "deauthentication", STA_R, "eth7", 4),
    ("2025-06-01 10:06:00", "group_key_success", STA_A, "eth6", 6),
    ("2025-06-01 10:06:01", "group_key_success", STA_R, "eth6", 6),
    ("2025-06-01 10:20:00", "other_process", None, None, 0),
]


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return build_windows(make_records(ROWS), WindowSpec(length_minutes=5, burst_seconds=10))


def win(windows: pd.DataFrame, kind: str, entity: str, start: str) -> pd.Series:
    sel = windows[
        (windows["entity_kind"] == kind)
        & (windows["entity"] == entity)
        & (windows["window_start"] == pd.Timestamp(start))
    ]
    assert len(sel) == 1, (kind, entity, start, len(sel))
    return sel.iloc[0]


def test_columns_and_dtypes(small: pd.DataFrame) -> None:
    assert list(small.columns) == [*KEY_COLUMNS, *FEATURE_COLUMNS]
    assert str(small["window_start"].dtype) == "datetime64[us]"
    for col in FEATURE_COLUMNS:
        assert small[col].dtype == np.float32, col
    assert not small.duplicated(list(KEY_COLUMNS)).any()
    values = small.loc[:, list(FEATURE_COLUMNS)].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all()


def test_window_counts_per_kind(small: pd.DataFrame) -> None:
    counts = small["entity_kind"].value_counts().to_dict()
    # device: 10:00, 10:05, 10:20 with records and the quiet 10:10, 10:15 between them;
    # station A: 10:00, 10:05; station R: 10:00, 10:05;
    # interface eth6: 10:00, 10:05; eth7: 10:00 (the 10:20 record has no station/interface)
    assert counts == {"device": 5, "station": 4, "interface": 3}
    assert set(small.loc[small["entity_kind"] == "device", "entity"]) == {DEVICE_ENTITY}
    assert set(small.loc[small["entity_kind"] == "station", "entity"]) == {STA_A, STA_R}
    assert set(small.loc[small["entity_kind"] == "interface", "entity"]) == {"eth6", "eth7"}
    assert set(small["device"]) == {"3"}


def test_window_start_clock_aligned(small: pd.DataFrame) -> None:
    busy = small[(small["entity_kind"] == "device") & (small["n_records"] > 0)]
    starts = sorted(busy["window_start"])
    assert starts == [
        pd.Timestamp("2025-06-01 10:00"),
        pd.Timestamp("2025-06-01 10:05"),
        pd.Timestamp("2025-06-01 10:20"),
    ]
    assert (small["window_start"] == small["window_start"].dt.floor("5min")).all()


def test_window_alignment_other_lengths() -> None:
    recs = make_records([("2025-06-01 10:07:59", "association", STA_A, "eth6", 6)])
    for minutes, expected in [(1, "10:07"), (15, "10:00"), (60, "10:00"), (10, "10:00")]:
        w = build_windows(recs, WindowSpec(length_minutes=minutes, entities=("device",)))
        assert w["window_start"].tolist() == [pd.Timestamp(f"2025-06-01 {expected}")], minutes


def test_event_and_severity_counts(small: pd.DataFrame) -> None:
    d0 = win(small, "device", "*", "2025-06-01 10:00")
    assert d0["n_records"] == 3
    assert d0["ev_association"] == 1
    assert d0["ev_pairwise_handshake_success"] == 1
    assert d0["ev_deauthentication"] == 1
    assert sum(d0[f"ev_{t}"] for t in EVENT_TYPES) == d0["n_records"]
    assert (d0["sev_info_debug"], d0["sev_warning"], d0["sev_notice"], d0["sev_error_or_worse"]) == (2, 1, 0, 0)
    d2 = win(small, "device", "*", "2025-06-01 10:20")
    assert d2["n_records"] == 1
    assert d2["ev_other_process"] == 1
    assert d2["sev_error_or_worse"] == 1  # severity 0 = emergency
    assert d2["n_stations"] == 0 and d2["n_interfaces"] == 0
    sta_r = win(small, "station", STA_R, "2025-06-01 10:00")
    assert sta_r["n_records"] == 1 and sta_r["ev_deauthentication"] == 1 and sta_r["sev_warning"] == 1


def test_stations_new_and_random(small: pd.DataFrame) -> None:
    d0 = win(small, "device", "*", "2025-06-01 10:00")
    assert (d0["n_stations"], d0["n_new_stations"], d0["n_random_macs"], d0["n_interfaces"]) == (2, 2, 1, 2)
    d1 = win(small, "device", "*", "2025-06-01 10:05")
    # both stations were seen in the immediately preceding window: not new
    assert (d1["n_stations"], d1["n_new_stations"], d1["n_random_macs"], d1["n_interfaces"]) == (2, 0, 1, 1)
    # per interface: R was on eth7 before, so it is new on eth6
    e1 = win(small, "interface", "eth6", "2025-06-01 10:05")
    assert (e1["n_stations"], e1["n_new_stations"], e1["n_random_macs"]) == (2, 1, 1)
    assert win(small, "station", STA_A, "2025-06-01 10:00")["n_random_macs"] == 0
    assert win(small, "station", STA_R, "2025-06-01 10:00")["n_random_macs"] == 1


def test_station_not_new_only_if_seen_in_immediately_preceding_window() -> None:
    rows = [
        ("2025-06-01 10:00:10", "group_key_success", STA_A, "eth6", 6),
        ("2025-06-01 10:05:10", "group_key_success", STA_C, "eth6", 6),  # A absent here
        ("2025-06-01 10:10:10", "group_key_success", STA_A, "eth6", 6),  # A back after a gap window
        ("2025-06-01 10:10:20", "group_key_success", STA_C, "eth6", 6),  # C seen just before
    ]
    w = build_windows(make_records(rows), WindowSpec(entities=("device",)))
    assert w["n_new_stations"].tolist() == [1, 1, 1]
    assert w["n_stations"].tolist() == [1, 1, 2]


def test_random_mac_bit() -> None:
    macs = ["da:a1:19:00:00:01", "30:d8:75:a2:e2:6a", "02:00:00:00:00:01", "c4:41:1e:09:a1:83", "9a:eb:8a:3f:c4:c0"]
    rows = [("2025-06-01 10:00:00", "association", m, "eth6", 6) for m in macs]
    w = build_windows(make_records(rows), WindowSpec(entities=("device", "station")))
    dev = w[w["entity_kind"] == "device"].iloc[0]
    assert dev["n_stations"] == 5
    assert dev["n_random_macs"] == 3  # da, 02, 9a have bit 1 of the first octet set
    per_station = w[w["entity_kind"] == "station"].set_index("entity")["n_random_macs"].to_dict()
    assert per_station == {
        "da:a1:19:00:00:01": 1,
        "30:d8:75:a2:e2:6a": 0,
        "02:00:00:00:00:01": 1,
        "c4:41:1e:09:a1:83": 0,
        "9a:eb:8a:3f:c4:c0": 1,
    }


def test_peak_burst_and_active_buckets() -> None:
    rows = [
        # bucket 10:00:00-10:00:09: 3 records
        ("2025-06-01 10:00:00", "deauthentication", STA_A, "eth6", 6),
        ("2025-06-01 10:00:04", "deauthentication", STA_A, "eth6", 6),
        ("2025-06-01 10:00:09", "deauthentication", STA_A, "eth6", 6),
        # bucket 10:00:10-10:00:19: 1 record
        ("2025-06-01 10:00:10", "deauthentication", STA_A, "eth6", 6),
        # bucket 10:02:30-10:02:39: 2 records
        ("2025-06-01 10:02:31", "deauthentication", STA_A, "eth6", 6),
        ("2025-06-01 10:02:39", "deauthentication", STA_A, "eth6", 6),
    ]
    w = build_windows(make_records(rows), WindowSpec(burst_seconds=10))
    for kind in ("device", "station", "interface"):
        row = w[w["entity_kind"] == kind].iloc[0]
        assert (row["n_records"], row["peak_burst"], row["active_buckets"]) == (6, 3, 3), kind
    coarse = build_windows(make_records(rows), WindowSpec(burst_seconds=60, entities=("device",))).iloc[0]
    assert (coarse["peak_burst"], coarse["active_buckets"]) == (4, 2)


def test_silence_before(small: pd.DataFrame) -> None:
    assert win(small, "device", "*", "2025-06-01 10:00")["silence_before_s"] == CAP  # first window gets the cap
    assert win(small, "device", "*", "2025-06-01 10:05")["silence_before_s"] == 160  # 10:03:20 -> 10:06:00
    assert win(small, "device", "*", "2025-06-01 10:20")["silence_before_s"] == 839  # 10:06:01 -> 10:20:00
    assert win(small, "station", STA_A, "2025-06-01 10:05")["silence_before_s"] == 295  # 10:01:05 -> 10:06:00
    assert win(small, "station", STA_R, "2025-06-01 10:05")["silence_before_s"] == 161
    assert win(small, "interface", "eth6", "2025-06-01 10:05")["silence_before_s"] == 295
    assert win(small, "interface", "eth7", "2025-06-01 10:00")["silence_before_s"] == CAP


def test_silence_capped() -> None:
    rows = [
        ("2025-06-01 10:00:00", "association", STA_A, "eth6", 6),
        ("2025-06-03 10:00:00", "association", STA_A, "eth6", 6),  # two days later
        ("2025-06-03 11:00:00", "association", STA_A, "eth6", 6),
    ]
    w = build_windows(make_records(rows), WindowSpec(entities=("device",), silence_cap_hours=24))
    busy = w[w["n_records"] > 0]
    assert busy["silence_before_s"].tolist() == [CAP, CAP, 3600]
    w2 = build_windows(make_records(rows), WindowSpec(entities=("device",), silence_cap_hours=0.5))
    busy2 = w2[w2["n_records"] > 0]
    assert busy2["silence_before_s"].tolist() == [1800, 1800, 1800]
    # quiet windows follow a record for at most the cap: 0.5 h = 6 windows after each of the first two
    assert (w2["n_records"] == 0).sum() == 6 + 6
    assert (w["n_records"] == 0).sum() == 288 + 11  # 24 h after the first record, then 10:05..10:55


def test_kind_one_hot(small: pd.DataFrame) -> None:
    for kind in ("device", "station", "interface"):
        sub = small[small["entity_kind"] == kind]
        assert (sub[f"kind_{kind}"] == 1).all()
        others = [k for k in ("device", "station", "interface") if k != kind]
        assert (sub[[f"kind_{k}" for k in others]] == 0).all().all()


def test_device_only_spec() -> None:
    w = build_windows(make_records(ROWS), WindowSpec(entities=("device",)))
    assert set(w["entity_kind"]) == {"device"}
    assert len(w) == 5 and (w["n_records"] > 0).sum() == 3
    assert w["n_records"].sum() == len(ROWS)
    assert (w["kind_device"] == 1).all() and (w["kind_station"] == 0).all()


def test_station_only_spec() -> None:
    w = build_windows(make_records(ROWS), WindowSpec(entities=("station",)))
    assert set(w["entity_kind"]) == {"station"}
    assert w["n_records"].sum() == 5  # the record without a MAC belongs to no station


def test_empty_input() -> None:
    empty = make_records(ROWS).iloc[:0]
    w = build_windows(empty)
    assert w.empty
    assert list(w.columns) == [*KEY_COLUMNS, *FEATURE_COLUMNS]


def test_input_order_does_not_matter(small: pd.DataFrame) -> None:
    shuffled = make_records(ROWS).sample(frac=1.0, random_state=3).reset_index(drop=True)
    w = build_windows(shuffled, WindowSpec(length_minutes=5, burst_seconds=10))
    key = list(KEY_COLUMNS)
    pd.testing.assert_frame_equal(
        w.sort_values(key).reset_index(drop=True), small.sort_values(key).reset_index(drop=True)
    )


def test_event_type_as_plain_text_equals_categorical(small: pd.DataFrame) -> None:
    recs = make_records(ROWS)
    recs["event_type"] = recs["event_type"].astype("str")
    w = build_windows(recs, WindowSpec(length_minutes=5, burst_seconds=10))
    pd.testing.assert_frame_equal(w, small)


def test_event_type_categorical_with_other_categories_counted_by_name(small: pd.DataFrame) -> None:
    # e.g. a categorical that only holds the categories in use (after remove_unused_categories)
    recs = make_records(ROWS)
    recs["event_type"] = recs["event_type"].cat.remove_unused_categories()
    w = build_windows(recs, WindowSpec(length_minutes=5, burst_seconds=10))
    d0 = win(w, "device", "*", "2025-06-01 10:00")
    assert d0["ev_deauthentication"] == 1
    assert d0["ev_association"] == 1
    pd.testing.assert_frame_equal(w, small)


# ---------------------------------------------------------------------------- purity
def _sorted(w: pd.DataFrame) -> pd.DataFrame:
    return w.sort_values([c for c in KEY_COLUMNS if c in w.columns]).reset_index(drop=True)


def test_window_features_do_not_depend_on_other_devices() -> None:
    a = make_records(ROWS, device="A")
    b = make_records(
        [
            ("2025-06-01 10:00:30", "deauthentication", STA_A, "eth6", 3),  # same MAC and interface names
            ("2025-06-01 10:00:31", "deauthentication", STA_A, "eth6", 3),
            ("2025-06-01 10:04:59", "association", "02:11:22:33:44:55", "wl0-ap0", 6),
            ("2025-06-01 12:00:00", "radio_error", None, "eth6", 2),
        ]
        * 5,
        device="B",
    )
    b["id"] += 1000
    alone = build_windows(a)
    together = build_windows(pd.concat([b, a], ignore_index=True))
    assert set(together["device"]) == {"A", "B"}
    pd.testing.assert_frame_equal(_sorted(together[together["device"] == "A"]), _sorted(alone))


# ------------------------------------------------------------------------- real sample
@pytest.fixture(scope="module")
def real_records() -> pd.DataFrame:
    raw = read_export(HOSTAPD_1824)
    return validate_records(raw.records, HOSTAPD_1824.name).records


def test_real_fixture_device_windows_sum_to_record_count(real_records: pd.DataFrame) -> None:
    w = build_windows(real_records)
    dev = w[w["entity_kind"] == "device"]
    assert dev["n_records"].sum() == len(real_records) == 1824
    ev_total = sum(dev[f"ev_{t}"].sum() for t in EVENT_TYPES)
    assert ev_total == 1824
    assert dev["ev_group_key_success"].sum() == 1003
    # every record with a MAC counts once for its station
    st = w[w["entity_kind"] == "station"]
    assert st["n_records"].sum() == real_records["station_mac"].notna().sum()
    assert (w["window_start"] == w["window_start"].dt.floor("5min")).all()
    assert not w.duplicated(list(KEY_COLUMNS)).any()
    assert set(w["entity_kind"]) == {"device", "station", "interface"}
    n_windows = real_records["timestamp"].dt.floor("5min").nunique()
    assert (dev["n_records"] > 0).sum() == n_windows


def test_real_fixture_device_only(real_records: pd.DataFrame) -> None:
    full = build_windows(real_records)
    dev = build_windows(real_records, WindowSpec(entities=("device",)))
    assert set(dev["entity_kind"]) == {"device"}
    # the same device windows; only the context taken from station windows is absent
    from_stations = ["dev_unseen_stations", "dev_max_station_records"]
    assert (dev[from_stations] == 0).all().all()
    pd.testing.assert_frame_equal(
        dev.drop(columns=from_stations).reset_index(drop=True),
        full[full["entity_kind"] == "device"].drop(columns=from_stations).reset_index(drop=True),
    )


def test_scales_with_copies_of_the_data(real_records: pd.DataFrame) -> None:
    """Linear-ish sanity: k devices with the same traffic give k times the windows, each device
    getting exactly the single-device features (no timing assertion)."""
    single = build_windows(real_records)
    copies = []
    for k in range(4):
        c = real_records.copy()
        c["device"] = f"dev{k}"
        c["id"] = c["id"] + k * 10_000_000
        copies.append(c)
    many = build_windows(pd.concat(copies, ignore_index=True))
    assert len(many) == 4 * len(single)
    ref = _sorted(single.drop(columns=["device"]))
    for k in range(4):
        mine = _sorted(many[many["device"] == f"dev{k}"].drop(columns=["device"]))
        pd.testing.assert_frame_equal(mine, ref)


def test_hand_records_through_validation_match_direct(tmp_path: Any) -> None:
    """Messages classified by the real catalog give the event and station columns features use."""
    import json

    msgs = [
        ("2025-06-01T10:00:01", "eth6: STA 30:d8:75:a2:e2:6a IEEE 802.11: associated"),
        ("2025-06-01T10:00:02", "eth6: STA 30:d8:75:a2:e2:6a WPA: pairwise key handshake completed (RSN)"),
        ("2025-06-01T10:00:03", "eth6: STA da:a1:19:00:00:01 IEEE 802.11: deauthenticated due to local deauth request"),
    ]
    data = [
        {
            "id": i,
            "device_id": 3,
            "device_ip": "RT",
            "timestamp": ts,
            "log_level": "info",
            "process_name": "hostapd",
            "message": m,
            "structured_data": None,
        }
        for i, (ts, m) in enumerate(msgs, 1)
    ]
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"export_metadata": {}, "data": data}), encoding="utf-8")
    recs = validate_records(read_export(path).records, path.name).records
    w = build_windows(recs)
    dev = win(w, "device", "*", "2025-06-01 10:00")
    assert (dev["ev_association"], dev["ev_pairwise_handshake_success"], dev["ev_deauthentication"]) == (1, 1, 1)
    assert (dev["n_stations"], dev["n_random_macs"], dev["n_interfaces"]) == (2, 1, 1)
    assert dev["peak_burst"] == 3 and dev["active_buckets"] == 1


# ------------------------------------------------------- quiet windows, history, context
def test_quiet_device_windows(small: pd.DataFrame) -> None:
    quiet = small[(small["entity_kind"] == "device") & (small["n_records"] == 0)]
    assert quiet["window_start"].dt.strftime("%H:%M").tolist() == ["10:10", "10:15"]
    # silence runs from the last record (10:06:01) to the END of the quiet window
    assert quiet["silence_before_s"].tolist() == [539, 839]
    aggregate_only = [c for c in FEATURE_COLUMNS if c.startswith(("ev_", "sev_", "n_", "peak", "active"))]
    assert (quiet[aggregate_only] == 0).all().all()
    assert (quiet["kind_device"] == 1).all()
    # stations and interfaces get no quiet windows (they come and go)
    assert (small.loc[small["entity_kind"] != "device", "n_records"] > 0).all()


def test_expected_and_missed_records() -> None:
    # one record every 5 minutes for a day, then an hour of nothing, then one record
    start = pd.Timestamp("2025-06-01 00:00:30")
    times = [start + pd.Timedelta(minutes=5 * i) for i in range(288)]
    times.append(times[-1] + pd.Timedelta(hours=1, minutes=5))
    rows = [(str(t), "group_key_success", STA_A, "eth6", 6) for t in times]
    w = build_windows(make_records(rows), WindowSpec(entities=("device",)))
    by_time = w.set_index("window_start")
    first, last_busy = by_time.iloc[0], by_time.loc[pd.Timestamp(times[287]).floor("5min")]
    assert first["expected_records"] == 0  # no history yet
    assert last_busy["expected_records"] == pytest.approx(287 / 288)
    quiet = w[w["n_records"] == 0]
    assert len(quiet) == 12
    # the device normally sends ~1 record per window, so an hour of silence misses ~12 of them
    deepest = quiet.iloc[-1]
    assert deepest["silence_before_s"] == pytest.approx(3600 + 270)
    assert deepest["missed_records"] == pytest.approx(
        deepest["silence_before_s"] / 300 * deepest["expected_records"], rel=1e-5
    )
    assert deepest["missed_records"] > 12


def test_device_context_on_every_window(small: pd.DataFrame) -> None:
    for kind, entity in (("device", "*"), ("station", STA_A), ("interface", "eth7")):
        row = win(small, kind, entity, "2025-06-01 10:00")
        assert row["dev_records"] == 3
        assert row["dev_stations"] == 2
        assert row["dev_deauth"] == 1
        assert row["dev_failures"] == 0
        assert row["dev_unseen_stations"] == 0  # the device has no history yet: "unseen" means nothing
        assert row["dev_max_station_records"] == 2  # STA_A: association + handshake
    later = win(small, "station", STA_A, "2025-06-01 10:05")
    assert later["dev_unseen_stations"] == 0 and later["dev_max_station_records"] == 1


def test_unseen_stations_once_the_device_has_an_hour_of_history() -> None:
    rows = [
        ("2025-06-01 08:00:00", "group_key_success", STA_C, "eth6", 6),
        ("2025-06-01 08:30:00", "association", STA_A, "eth6", 6),  # new, but no history yet: 0
        ("2025-06-01 09:30:00", "association", STA_R, "eth6", 6),  # 90 min of history: counts
        ("2025-06-01 09:31:00", "group_key_success", STA_C, "eth6", 6),
    ]  # seen 91 min before: not new
    w = build_windows(make_records(rows))
    assert win(w, "device", "*", "2025-06-01 08:30")["dev_unseen_stations"] == 0
    assert win(w, "device", "*", "2025-06-01 09:30")["dev_unseen_stations"] == 1


def test_joins_after_a_restart_are_announced() -> None:
    # the router's AP restarts (interface lifecycle lines): its stations rejoin without having left
    rows = [
        ("2025-06-01 10:00:00", "group_key_success", STA_A, "eth6", 6),
        ("2025-06-01 10:00:10", "group_key_success", STA_C, "eth6", 6),
        ("2025-06-01 10:01:00", "interface_state", None, "eth6", 5),  # AP-ENABLED after a reboot
        ("2025-06-01 10:01:05", "association", STA_A, "eth6", 6),  # announced by the restart
        ("2025-06-01 10:02:00", "group_key_success", STA_A, "eth6", 6),
        ("2025-06-01 10:03:00", "association", STA_A, "eth6", 6),  # no restart since: unannounced
        ("2025-06-01 10:03:30", "association", STA_C, "eth6", 6),
    ]  # restart since its last: announced
    w = build_windows(make_records(rows))
    d = win(w, "device", "*", "2025-06-01 10:00")
    assert d["unannounced_joins"] == 1
    assert d["grp_radio_control"] == 0  # lifecycle lines are not radio control


def test_event_families(small: pd.DataFrame) -> None:
    d0 = win(small, "device", "*", "2025-06-01 10:00")
    assert (d0["grp_joins"], d0["grp_leaves"], d0["grp_failures"], d0["grp_radio_control"]) == (1, 1, 0, 0)
    rows = [
        ("2025-06-01 10:00:01", "authentication", STA_A, "eth6", 6),
        ("2025-06-01 10:00:02", "reassociation", STA_A, "eth6", 6),
        ("2025-06-01 10:00:03", "ap_sta_connected", STA_A, "eth6", 5),
        ("2025-06-01 10:00:04", "ap_sta_disconnected", STA_A, "eth6", 5),
        ("2025-06-01 10:00:05", "disassociation", STA_A, "eth6", 6),
        ("2025-06-01 10:00:06", "psk_mismatch", STA_A, "eth6", 5),
        ("2025-06-01 10:00:07", "eapol_timeout", STA_A, "eth6", 6),
        ("2025-06-01 10:00:08", "group_key_failure", STA_A, "eth6", 6),
        ("2025-06-01 10:00:09", "auth_failure", STA_A, "eth6", 6),
        ("2025-06-01 10:00:10", "pairwise_handshake_failure", STA_A, "eth6", 6),
        ("2025-06-01 10:00:11", "dfs", None, "eth7", 5),
        ("2025-06-01 10:00:12", "channel_switch", None, "eth7", 5),
        ("2025-06-01 10:00:13", "radio_error", None, "eth7", 3),
    ]
    w = build_windows(make_records(rows), WindowSpec(entities=("device",))).iloc[0]
    assert (w["grp_joins"], w["grp_leaves"], w["grp_failures"], w["grp_radio_control"]) == (3, 2, 5, 2)
    assert w["ev_radio_error"] == 1


def _day_then_gap() -> pd.DataFrame:
    # one record every 5 minutes for a day (00:00:30 .. 23:55:30), then 1 h 5 min of nothing, then one record
    start = pd.Timestamp("2025-06-01 00:00:30")
    times = [start + pd.Timedelta(minutes=5 * i) for i in range(288)]
    times.append(times[-1] + pd.Timedelta(hours=1, minutes=5))
    return make_records([(str(t), "group_key_success", STA_A, "eth6", 6) for t in times])


def test_silence_against_usual_gap() -> None:
    w = build_windows(_day_then_gap())
    dev = w[w["entity_kind"] == "device"].set_index("window_start")
    cols = ["gap_vs_usual", "silence_excess", "silent_beyond_usual"]
    # the first day has no full history: all 0 (even the busy windows with 300 s gaps)
    assert (dev.loc[:"2025-06-01 23:55", cols] == 0).all().all()
    # the usual gap of the day before is 300 s (one per window); the quiet window 00:00 ends 570 s
    # after the last record (23:55:30)
    q0 = dev.loc[pd.Timestamp("2025-06-02 00:00")]
    assert q0["n_records"] == 0
    assert q0["gap_vs_usual"] == pytest.approx(570 / 300)
    assert q0["silence_excess"] == pytest.approx(270 / 300)
    assert q0["silent_beyond_usual"] == 1
    deepest = dev.loc[pd.Timestamp("2025-06-02 00:55")]
    assert deepest["gap_vs_usual"] == pytest.approx(3870 / 300)
    assert deepest["silence_excess"] == pytest.approx(3570 / 300)
    # the record that ends the silence: a gap of 3900 s, the quiet windows do not count as gaps
    back = dev.loc[pd.Timestamp("2025-06-02 01:00")]
    assert back["n_records"] == 1
    assert back["gap_vs_usual"] == pytest.approx(13.0)
    assert back["silence_excess"] == pytest.approx(12.0)
    assert back["silent_beyond_usual"] == 1
    # device windows only
    assert (w.loc[w["entity_kind"] != "device", cols] == 0).all().all()


def test_silence_within_usual_gap_is_not_beyond() -> None:
    # a day with one record per hour (hourly rekey only), then the same hourly pattern: never beyond usual
    start = pd.Timestamp("2025-06-01 00:00:10")
    rows = [(str(start + pd.Timedelta(hours=i)), "group_key_success", STA_A, "eth6", 6) for i in range(40)]
    w = build_windows(make_records(rows), WindowSpec(entities=("device",)))
    later = w[w["window_start"] >= pd.Timestamp("2025-06-02 00:00")]
    assert len(later) and (later["silent_beyond_usual"] == 0).all() and (later["silence_excess"] == 0).all()
    busy = later[later["n_records"] > 0]
    assert busy["gap_vs_usual"].to_numpy() == pytest.approx(np.ones(len(busy)))
    quiet = later[later["n_records"] == 0]
    assert quiet["gap_vs_usual"].max() == pytest.approx(3590 / 3600)


def test_model_features_are_documented_columns() -> None:
    from mcp_training_dagster.serving.features import FEATURE_DOCS, MODEL_FEATURES

    assert set(MODEL_FEATURES) <= set(FEATURE_COLUMNS)
    assert len(set(MODEL_FEATURES)) == len(MODEL_FEATURES)
    assert list(FEATURE_DOCS) == list(FEATURE_COLUMNS)
    assert all(isinstance(v, str) and v and "\n" not in v for v in FEATURE_DOCS.values())


# ------------------------------------------------------- station and radio sequences
def test_repeat_leaves_and_unannounced_joins() -> None:
    rows = [
        # STA_A: joins, rekeys, then rejoins WITHOUT leaving (unannounced), then is kicked three times
        ("2025-06-01 10:00:00", "authentication", STA_A, "eth6", 6),  # first record: no previous
        ("2025-06-01 10:00:00", "association", STA_A, "eth6", 6),  # part of the same join
        ("2025-06-01 10:00:01", "pairwise_handshake_success", STA_A, "eth6", 6),
        ("2025-06-01 10:01:00", "group_key_success", STA_A, "eth6", 6),
        ("2025-06-01 10:02:00", "association", STA_A, "eth6", 6),  # unannounced (previous: rekey)
        ("2025-06-01 10:02:00", "ap_sta_connected", STA_A, "eth6", 5),  # same join: previous is a join
        ("2025-06-01 10:03:00", "deauthentication", STA_A, "eth6", 6),  # previous: a join
        ("2025-06-01 10:03:00", "disassociation", STA_A, "eth6", 6),  # same disconnect (0 s later)
        ("2025-06-01 10:03:04", "deauthentication", STA_A, "eth6", 6),  # 4 s: below the 5 s minimum
        ("2025-06-01 10:06:00", "deauthentication", STA_A, "eth6", 6),  # kicked again: repeat (next window)
        ("2025-06-01 10:06:30", "association", STA_A, "eth6", 6),  # rejoin after a disconnect: normal
        ("2025-06-01 10:06:40", "disassociation", STA_A, "eth6", 6),  # previous: a join
        # STA_C: a failed handshake, then a join (previous is a failure: announced) and a normal leave
        ("2025-06-01 10:01:00", "pairwise_handshake_failure", STA_C, "eth7", 4),
        ("2025-06-01 10:01:30", "association", STA_C, "eth7", 6),
        ("2025-06-01 10:04:00", "disassociation", STA_C, "eth7", 6),
    ]
    w = build_windows(make_records(rows))
    cols = ["repeat_leaves", "unannounced_joins"]
    assert win(w, "device", "*", "2025-06-01 10:00")[cols].tolist() == [0, 1]
    assert win(w, "device", "*", "2025-06-01 10:05")[cols].tolist() == [1, 0]
    assert win(w, "station", STA_A, "2025-06-01 10:00")[cols].tolist() == [0, 1]
    assert win(w, "station", STA_A, "2025-06-01 10:05")[cols].tolist() == [1, 0]
    assert win(w, "station", STA_C, "2025-06-01 10:00")[cols].tolist() == [0, 0]
    assert win(w, "interface", "eth6", "2025-06-01 10:00")[cols].tolist() == [0, 1]
    assert win(w, "interface", "eth7", "2025-06-01 10:00")[cols].tolist() == [0, 0]


def test_sequences_do_not_cross_devices_or_stations() -> None:
    # the same MAC on two routers, and two MACs on one router: each has its own previous record
    a = make_records([("2025-06-01 10:00:00", "deauthentication", STA_A, "eth6", 6)], device="1")
    b = make_records(
        [
            ("2025-06-01 10:00:30", "deauthentication", STA_A, "eth6", 6),
            ("2025-06-01 10:01:00", "deauthentication", STA_C, "eth6", 6),
            ("2025-06-01 10:01:10", "group_key_success", STA_R, "eth6", 6),
            ("2025-06-01 10:01:20", "association", STA_C, "eth6", 6),
        ],
        device="2",
    )
    b["id"] += 10
    w = build_windows(pd.concat([a, b], ignore_index=True))
    dev = w[w["entity_kind"] == "device"]
    assert dev["repeat_leaves"].tolist() == [0, 0]
    assert dev["unannounced_joins"].tolist() == [0, 0]


def test_repeat_radio_errors() -> None:
    rows = [
        ("2025-06-01 10:00:10", "radio_error", None, "eth6", 3),  # a lone reset: first of the device
        ("2025-06-01 11:00:00", "radio_error", None, "eth7", 3),  # an hour later: lone again
        ("2025-06-01 11:00:30", "radio_error", None, "eth7", 3),  # 30 s later: a series
        ("2025-06-01 11:04:00", "radio_error", None, "eth6", 2),  # 210 s later (other radio): still the device's series
        ("2025-06-01 11:14:00", "radio_error", None, "eth7", 3),  # exactly 600 s later: counted
        ("2025-06-01 11:24:01", "radio_error", None, "eth7", 3),  # 601 s later: lone
        ("2025-06-01 11:24:05", "association", STA_A, "eth7", 6),
    ]
    w = build_windows(make_records(rows))
    assert win(w, "device", "*", "2025-06-01 10:00")["repeat_radio_errors"] == 0
    assert win(w, "device", "*", "2025-06-01 11:00")["repeat_radio_errors"] == 2
    assert win(w, "device", "*", "2025-06-01 11:10")["repeat_radio_errors"] == 1
    assert win(w, "device", "*", "2025-06-01 11:20")["repeat_radio_errors"] == 0
    assert win(w, "interface", "eth7", "2025-06-01 11:00")["repeat_radio_errors"] == 1
    assert win(w, "interface", "eth6", "2025-06-01 11:00")["repeat_radio_errors"] == 1
    assert win(w, "station", STA_A, "2025-06-01 11:20")["repeat_radio_errors"] == 0


def test_usual_gap_counts_a_gap_that_began_before_the_history_whole() -> None:
    # one record an hour at hh:00:10 for two days, except a 5 h outage on day 1 (12:00:10 -> 17:00:10)
    start = pd.Timestamp("2025-06-01 00:00:10")
    hours = [h for h in range(0, 44) if not 12 < h < 17]
    rows = [(str(start + pd.Timedelta(hours=h)), "group_key_success", STA_A, "eth6", 6) for h in hours]
    w = build_windows(make_records(rows), WindowSpec(entities=("device",)))
    dev = w.set_index("window_start")
    # 12:00 on day 2: the history (from 12:00 on day 1) holds the whole outage: the usual gap is 18000 s
    q = dev.loc[pd.Timestamp("2025-06-02 12:00")]
    assert q["n_records"] == 1 and q["silence_before_s"] == 3600
    assert q["gap_vs_usual"] == pytest.approx(3600 / 18000)
    # 12:05 on day 2: the history starts at 12:05 on day 1, after the outage began; the outage ended inside
    # it and counts whole, as long as it is in the history
    q = dev.loc[pd.Timestamp("2025-06-02 12:05")]
    assert q["n_records"] == 0 and q["silence_before_s"] == 590
    assert q["gap_vs_usual"] == pytest.approx(590 / 18000)
    assert q["silence_excess"] == 0 and q["silent_beyond_usual"] == 0
    # 17:05 on day 2: the outage ended before the history began: the usual gap is the hourly one again
    q = dev.loc[pd.Timestamp("2025-06-02 17:05")]
    assert q["silence_before_s"] == 590 and q["gap_vs_usual"] == pytest.approx(590 / 3600)


def test_a_router_that_logs_once_a_day_is_not_silent_between_its_records() -> None:
    """A daily rhythm (a firmware check at 04:56, nothing else: a system-log export) is the router's usual
    gap: the gap that began before the 24 h history counts whole, so the hours before the next check are not
    a silence; a day without the check is."""
    start = pd.Timestamp("2025-06-01 04:56:10")
    days = [0, 1, 2, 3, 5]  # no record on day 4
    rows = [(str(start + pd.Timedelta(days=d)), "other_process", None, None, 0) for d in days]
    w = build_windows(make_records(rows), WindowSpec(entities=("device",)))
    dev = w.set_index("window_start")
    between = dev.loc[pd.Timestamp("2025-06-03 06:00") : pd.Timestamp("2025-06-04 04:50")]
    assert len(between) > 250 and between["silent_beyond_usual"].sum() == 0
    missed = dev.loc[pd.Timestamp("2025-06-05 17:00") : pd.Timestamp("2025-06-06 04:50")]
    assert missed["silent_beyond_usual"].all()  # 36 h after the last check: 1.5 x the daily gap
