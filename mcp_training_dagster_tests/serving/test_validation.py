"""Validation: typed records, quarantine with reasons, de-duplication by id, the report."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.validation import (
    LEVELS,
    QUARANTINE_COLUMNS,
    VALID_COLUMNS,
    ValidationResult,
    check_schema,
    validate_records,
)
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_35

SD_30 = '{"priority": 30, "facility": 3, "severity_code": 6}'
GROUP_KEY = "eth6: STA 30:d8:75:a2:e2:6a WPA: group key handshake completed (RSN)"


def record(i: Any, **overrides: Any) -> dict[str, Any]:
    rec = {
        "id": i,
        "device_id": 3,
        "device_ip": "RT-AX3000-4040-62971F1-C",
        "timestamp": "2025-06-01T10:00:00",
        "log_level": "info",
        "process_name": "hostapd",
        "message": GROUP_KEY,
        "raw_message": None,
        "structured_data": SD_30,
        "pushed_to_ai": False,
        "pushed_at": None,
        "push_attempts": 0,
        "last_push_error": None,
    }
    rec.update(overrides)
    return rec


def write_export(path: Path, data: list[Any]) -> Path:
    doc = {
        "export_metadata": {"created_at": "2025-06-27T09:38:14.611774", "total_records": len(data), "format": "json"},
        "data": data,
    }
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def assert_nothing_dropped(result: ValidationResult, n_in: int) -> None:
    rep = result.report
    assert rep.records_in == n_in
    assert rep.valid == len(result.records)
    assert rep.quarantined == len(result.quarantine)
    assert rep.valid + rep.quarantined == rep.records_in
    seen = sorted([*result.records["record_index"].tolist(), *result.quarantine["record_index"].tolist()])
    assert seen == list(range(n_in)), "every input record is either valid or quarantined, exactly once"


def validate_file(path: Path, **kw: Any) -> ValidationResult:
    raw = read_export(path)
    result = validate_records(raw.records, path.name, **kw)
    assert_nothing_dropped(result, len(raw.records))
    return result


def validate_data(tmp_path: Path, data: list[Any], name: str = "export.json", **kw: Any) -> ValidationResult:
    return validate_file(write_export(tmp_path / name, data), **kw)


# --------------------------------------------------------------------------- real file
@pytest.fixture(scope="module")
def real() -> ValidationResult:
    return validate_file(HOSTAPD_1824)


def test_real_fixture_all_valid(real: ValidationResult) -> None:
    rep = real.report
    assert rep.records_in == 1824
    assert rep.valid == 1824
    assert rep.quarantined == 0
    assert rep.duplicates == 0
    assert rep.bad_fraction == 0.0
    assert rep.quarantine_by_reason == {}
    assert list(real.quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert list(real.records.columns) == list(VALID_COLUMNS)
    assert check_schema(real.records) == []


def test_real_fixture_sorted_unique(real: ValidationResult) -> None:
    recs = real.records
    assert recs["id"].is_unique
    keys = list(zip(recs["timestamp"], recs["id"]))
    assert keys == sorted(keys)
    assert recs["timestamp"].is_monotonic_increasing
    assert recs.index.tolist() == list(range(len(recs)))


def test_real_fixture_levels_severity_facility(real: ValidationResult) -> None:
    recs = real.records
    assert set(recs["log_level"].astype(str)) == {"info"}
    assert (recs["severity"] == 6).all()
    assert (recs["facility"] == 3).all()  # from the structured_data JSON string
    assert real.report.level_counts == {"info": 1824}
    assert real.report.unparsed_structured_data == 0
    assert real.report.unknown_levels == 0
    assert set(recs["device"]) == {"3"}
    assert set(recs["device_name"]) == {"RT-AX3000-4040-62971F1-C"}
    assert set(recs["source_file"]) == {HOSTAPD_1824.name}


def test_real_fixture_timestamps_not_shifted(real: ValidationResult) -> None:
    recs = real.records
    assert str(recs["timestamp"].dtype) == "datetime64[us]"
    assert recs["timestamp"].iloc[0] == pd.Timestamp("2025-05-04T22:05:15")
    assert recs["timestamp"].iloc[-1] == pd.Timestamp("2025-06-27T09:16:56")
    assert real.report.time_start == "2025-05-04T22:05:15"
    assert real.report.time_end == "2025-06-27T09:16:56"
    # every record keeps exactly the wall-clock string it had in the file
    doc = json.loads(HOSTAPD_1824.read_text(encoding="utf-8"))
    by_id = {r["id"]: r["timestamp"] for r in doc["data"]}
    got = {int(i): t.strftime("%Y-%m-%dT%H:%M:%S") for i, t in zip(recs["id"], recs["timestamp"])}
    assert got == by_id


def test_real_fixture_shared_timestamps_all_kept(real: ValidationResult) -> None:
    doc = json.loads(HOSTAPD_1824.read_text(encoding="utf-8"))
    in_file = Counter(r["timestamp"] for r in doc["data"])
    out = Counter(t.strftime("%Y-%m-%dT%H:%M:%S") for t in real.records["timestamp"])
    assert out == in_file
    # documented "1,303 share a second with another": records beyond the first in their second
    assert sum(c - 1 for c in in_file.values() if c > 1) == 1303
    assert sum(c for c in out.values() if c > 1) == 1627  # all of them kept, none folded together
    pairs = Counter(zip(real.records["timestamp"], real.records["message"]))
    assert any(c > 1 for c in pairs.values()), "the file has (timestamp, message) repeats, all kept"


def test_real_fixture_events(real: ValidationResult) -> None:
    counts = real.report.event_counts
    assert counts["group_key_success"] == 1003
    assert counts["pairwise_handshake_success"] == 207
    assert counts["radius_accounting"] == 207
    assert counts["disassociation"] == 195
    assert sum(counts.values()) == 1824


def test_real_system_levels_from_file() -> None:
    res = validate_file(SYSTEM_35)
    assert res.report.level_counts == {"emergency": 33, "error": 2}
    assert set(res.records.loc[res.records["log_level"] == "emergency", "severity"]) == {0}
    assert set(res.records.loc[res.records["log_level"] == "error", "severity"]) == {3}
    assert set(res.records["event_type"].astype(str)) == {"other_process"}


def test_naive_timestamps_ignore_machine_time_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        res = validate_data(tmp_path, [record(1, timestamp="2025-06-01T10:00:00")], service_timezone="Europe/Berlin")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert res.records["timestamp"].iloc[0] == pd.Timestamp("2025-06-01T10:00:00")
    assert os.environ.get("TZ") != "America/New_York"


# ------------------------------------------------------------------------------- levels
@pytest.mark.parametrize(
    ("raw_level", "canonical"),
    [
        ("INFO", "info"),
        ("Info", "info"),
        ("warn", "warning"),
        ("WARNING", "warning"),
        ("err", "error"),
        ("crit", "critical"),
        ("emerg", "emergency"),
        ("notice", "notice"),
        (" debug ", "debug"),
    ],
)
def test_levels_canonicalised(tmp_path: Path, raw_level: str, canonical: str) -> None:
    res = validate_data(tmp_path, [record(1, log_level=raw_level, structured_data=None)])
    row = res.records.iloc[0]
    assert row["log_level"] == canonical
    assert int(row["severity"]) == LEVELS.index(canonical)
    assert res.report.level_counts == {canonical: 1}
    assert res.report.unknown_levels == 0


def test_level_missing_filled_from_structured_data(tmp_path: Path) -> None:
    res = validate_data(tmp_path, [record(1, log_level=None, structured_data='{"priority": 11}')])
    row = res.records.iloc[0]
    assert row["log_level"] == "error"  # 11 = facility 1 * 8 + severity 3
    assert int(row["severity"]) == 3
    assert int(row["facility"]) == 1


def test_level_wins_over_structured_data(tmp_path: Path) -> None:
    res = validate_data(tmp_path, [record(1, log_level="warning", structured_data=SD_30)])
    assert res.records["log_level"].iloc[0] == "warning"
    assert int(res.records["severity"].iloc[0]) == 4
    assert int(res.records["facility"].iloc[0]) == 3


def test_unknown_level_without_structured_data(tmp_path: Path) -> None:
    res = validate_data(tmp_path, [record(1, log_level="loud", structured_data=None), record(2)])
    unknown = res.records[res.records["id"] == 1].iloc[0]
    assert unknown["log_level"] == "unknown"
    assert int(unknown["severity"]) == -1
    assert res.report.unknown_levels == 1
    assert res.report.quarantined == 0  # an odd level is not a reason to drop a record


@pytest.mark.parametrize(
    ("structured", "facility"),
    [({"priority": 30, "facility": 3, "severity_code": 6}, 3), ({}, -1), (None, -1), ('{"priority": 30}', 3)],
    ids=["object", "empty-object", "null", "priority-only"],
)
def test_structured_data_shapes(tmp_path: Path, structured: Any, facility: int) -> None:
    res = validate_data(tmp_path, [record(1, structured_data=structured), record(2)])
    row = res.records[res.records["id"] == 1].iloc[0]
    assert int(row["facility"]) == facility
    assert int(row["severity"]) == 6
    assert res.report.unparsed_structured_data == 0


def test_structured_data_not_json_counted(tmp_path: Path) -> None:
    res = validate_data(tmp_path, [record(1, structured_data="priority=30"), record(2)])
    assert res.report.unparsed_structured_data == 1
    assert res.report.valid == 2


# ---------------------------------------------------------------------------- timestamps
@pytest.mark.parametrize(
    ("zone", "stamp", "expected"),
    [
        ("UTC", "2025-06-01T10:00:00Z", "2025-06-01T10:00:00"),
        ("UTC", "2025-06-01T10:00:00+02:00", "2025-06-01T08:00:00"),
        ("UTC", "2025-06-01T10:00:00.250Z", "2025-06-01T10:00:00.250"),
        ("Europe/Berlin", "2025-06-01T10:00:00Z", "2025-06-01T12:00:00"),
        ("Europe/Berlin", "2025-06-01T10:00:00+02:00", "2025-06-01T10:00:00"),
        ("Europe/Berlin", "2025-01-15T10:00:00Z", "2025-01-15T11:00:00"),
        ("Europe/Berlin", "2025-06-01T10:00:00", "2025-06-01T10:00:00"),  # naive: kept as is
    ],
)
def test_aware_timestamps_converted_to_service_zone(tmp_path: Path, zone: str, stamp: str, expected: str) -> None:
    res = validate_data(
        tmp_path, [record(1, timestamp=stamp), record(2, timestamp="2025-06-01T09:00:00")], service_timezone=zone
    )
    ts = res.records.set_index("id")["timestamp"]
    assert ts.dt.tz is None
    assert ts.loc[1] == pd.Timestamp(expected)
    assert ts.loc[2] == pd.Timestamp("2025-06-01T09:00:00")


def test_default_service_zone_is_utc(tmp_path: Path) -> None:
    res = validate_data(tmp_path, [record(1, timestamp="2025-06-01T10:00:00+02:00")])
    assert res.records["timestamp"].iloc[0] == pd.Timestamp("2025-06-01T08:00:00")


# ---------------------------------------------------------------------------- quarantine
def _without(rec: dict, key: str) -> dict:
    return {k: v for k, v in rec.items() if k != key}


QUARANTINE_CASES = {
    "missing_timestamp_key": (_without(record(7), "timestamp"), "missing_timestamp", "timestamp", "no 'timestamp'"),
    "null_timestamp": (record(7, timestamp=None), "missing_timestamp", "timestamp", "no 'timestamp'"),
    "unparseable_timestamp": (
        record(7, timestamp="yesterday noon"),
        "invalid_timestamp",
        "timestamp",
        "yesterday noon",
    ),
    "impossible_date": (record(7, timestamp="2025-13-45T10:00:00"), "invalid_timestamp", "timestamp", "2025-13-45"),
    "missing_message_key": (_without(record(7), "message"), "missing_message", "message", "no 'message'"),
    "null_message": (record(7, message=None), "missing_message", "message", "no 'message'"),
    "blank_message": (record(7, message="   "), "missing_message", "message", "no 'message'"),
    "non_object": ("just a string", "not_an_object", "record", "not a JSON object"),
    "non_object_list": ([1, 2, 3], "not_an_object", "record", "not a JSON object"),
    "missing_id_key": (_without(record(7), "id"), "missing_id", "id", "no 'id'"),
    "null_id": (record(None), "missing_id", "id", "no 'id'"),
    "blank_id": (record(""), "missing_id", "id", "no 'id'"),
    "text_id": (record("abc"), "invalid_id", "id", "abc"),
    "fractional_id": (record(7.5), "invalid_id", "id", "7.5"),
    "missing_device": (record(7, device_id=None, device_ip=None), "missing_device", "device_id", "device_ip"),
}


@pytest.mark.parametrize("case", list(QUARANTINE_CASES))
def test_quarantine_reason_field_detail_record(tmp_path: Path, case: str) -> None:
    bad, reason, field, detail = QUARANTINE_CASES[case]
    res = validate_data(tmp_path, [record(1), bad, record(2, timestamp="2025-06-01T10:00:01")])
    assert res.records["id"].tolist() == [1, 2]
    assert res.report.quarantine_by_reason == {reason: 1}
    assert res.report.bad_fraction == pytest.approx(1 / 3)
    q = res.quarantine.iloc[0]
    assert q["reason"] == reason
    assert q["field"] == field
    assert detail in q["detail"]
    assert q["source_file"] == "export.json"
    assert int(q["record_index"]) == 1
    original = json.loads(q["record"])
    if not isinstance(bad, dict):
        assert original == bad
    else:
        # the original record, key for key (keys it lacked may be shown as null)
        for key, value in bad.items():
            if key == field and reason == "invalid_id":
                assert str(original[key]) == str(value)
            else:
                assert original[key] == value, key
        assert all(original[k] is None for k in original if k not in bad)


def test_device_falls_back_to_device_ip(tmp_path: Path) -> None:
    res = validate_data(tmp_path, [record(1, device_id=None, device_ip="RT-B"), record(2)])
    devices = res.records.set_index("id")["device"]
    assert devices.loc[1] == "RT-B"
    assert devices.loc[2] == "3"
    assert res.report.devices == ["3", "RT-B"]


def test_device_id_string_or_int(tmp_path: Path) -> None:
    res = validate_data(tmp_path, [record(1, device_id="router-a"), record(2, device_id=3)])
    assert res.records.set_index("id")["device"].to_dict() == {1: "router-a", 2: "3"}


def test_first_applicable_reason_wins(tmp_path: Path) -> None:
    bad = record(None, timestamp=None, message=None, device_id=None, device_ip=None)
    res = validate_data(tmp_path, [bad, record(1)])
    assert res.quarantine["reason"].tolist() == ["missing_id"]


def test_string_integer_id_is_accepted(tmp_path: Path) -> None:
    res = validate_data(tmp_path, [record("17"), record(18)])
    assert res.records["id"].tolist() == [17, 18]
    assert res.records["id"].dtype == np.int64


# ---------------------------------------------------------------------------- duplicates
def test_duplicate_ids_quarantined_not_bad(tmp_path: Path) -> None:
    data = [
        record(5, timestamp="2025-06-01T10:00:05", message="eth6: STA 30:d8:75:a2:e2:6a IEEE 802.11: disassociated"),
        record(5, timestamp="2025-06-01T10:00:01", message=GROUP_KEY),
        record(6),
    ]
    res = validate_data(tmp_path, data)
    assert res.records["id"].tolist() == [6, 5]  # sorted by (timestamp, id): 10:00:00 before 10:00:01
    assert res.records["id"].is_unique
    assert res.report.duplicates == 1
    assert res.report.quarantine_by_reason == {"duplicate_id": 1}
    assert res.report.bad_fraction == 0.0
    q = res.quarantine.iloc[0]
    assert (q["reason"], q["field"]) == ("duplicate_id", "id")
    # the kept copy is the first by (timestamp, id): the 10:00:01 one, whatever the file order
    kept = res.records.set_index("id").loc[5]
    assert kept["timestamp"] == pd.Timestamp("2025-06-01T10:00:01")
    assert kept["message"] == GROUP_KEY
    rev = validate_data(tmp_path, list(reversed(data)), name="reversed.json")
    kept_rev = rev.records.set_index("id").loc[5]
    assert kept_rev["timestamp"] == kept["timestamp"]
    assert kept_rev["message"] == kept["message"]
    assert check_schema(res.records) == []


def test_duplicate_ids_same_timestamp_deterministic(tmp_path: Path) -> None:
    data = [record(5, message="first copy"), record(5, message="second copy"), record(5, message="third copy")]
    path = write_export(tmp_path / "dups.json", data)
    a, b = validate_file(path), validate_file(path)
    assert a.records["message"].tolist() == b.records["message"].tolist() == ["first copy"]
    assert a.quarantine["record_index"].tolist() == [1, 2]
    assert a.report.duplicates == 2


def test_duplicates_do_not_count_as_bad(tmp_path: Path) -> None:
    data = [record(1), record(1), record(2, message=None), record(3)]
    res = validate_data(tmp_path, data)
    assert res.report.quarantine_by_reason == {"duplicate_id": 1, "missing_message": 1}
    assert res.report.bad_fraction == pytest.approx(1 / 4)


def test_never_dedup_on_timestamp_or_message(tmp_path: Path) -> None:
    data = [record(i) for i in range(1, 6)]  # same timestamp, same message, distinct ids
    res = validate_data(tmp_path, data)
    assert res.report.valid == 5
    assert res.records["id"].tolist() == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------- check_schema
def test_check_schema_reports_shuffled(real: ValidationResult) -> None:
    shuffled = real.records.sample(frac=1.0, random_state=7).reset_index(drop=True)
    problems = check_schema(shuffled)
    assert any("sorted" in p for p in problems)


def test_check_schema_reports_duplicates(real: ValidationResult) -> None:
    dup = pd.concat([real.records, real.records.iloc[[5]]], ignore_index=True)
    dup = dup.sort_values(["timestamp", "id"], kind="stable").reset_index(drop=True)
    problems = check_schema(dup)
    assert any("unique" in p for p in problems)
    assert not any("sorted" in p for p in problems)


def test_check_schema_reports_missing_columns_and_nulls(real: ValidationResult) -> None:
    assert any("missing columns" in p for p in check_schema(real.records.drop(columns=["message"])))
    broken = real.records.copy()
    broken.loc[len(broken) - 1, "timestamp"] = pd.NaT
    assert any("timestamp" in p for p in check_schema(broken))


# -------------------------------------------------------------------------------- report
def test_report_consistent_with_tables(tmp_path: Path) -> None:
    data = [
        record(1, timestamp="2025-06-01T10:00:00"),
        record(
            2,
            timestamp="2025-06-01T09:00:00",
            log_level="warning",
            message="eth6: STA 30:d8:75:a2:e2:6a IEEE 802.11: disassociated",
        ),
        record(
            3,
            timestamp="2025-06-01T11:30:00",
            process_name="crond",
            log_level="error",
            message="crond: USER admin pid 1234 cmd ntp",
        ),
        record(3, timestamp="2025-06-01T11:30:00"),
        record(4, timestamp=None),
        "junk",
        record(5, device_id=None, device_ip="RT-B", timestamp="2025-06-01T08:00:00"),
    ]
    res = validate_data(tmp_path, data)
    rep, recs, q = res.report, res.records, res.quarantine
    assert rep.event_counts == {str(k): int(v) for k, v in recs["event_type"].value_counts().items() if v}
    assert rep.level_counts == {str(k): int(v) for k, v in recs["log_level"].value_counts().items() if v}
    assert rep.process_counts == {str(k): int(v) for k, v in recs["process_name"].value_counts().items()}
    assert rep.quarantine_by_reason == {str(k): int(v) for k, v in q["reason"].value_counts().items()}
    assert rep.quarantine_by_reason == {"duplicate_id": 1, "missing_timestamp": 1, "not_an_object": 1}
    assert rep.time_start == recs["timestamp"].min().isoformat() == "2025-06-01T08:00:00"
    assert rep.time_end == recs["timestamp"].max().isoformat() == "2025-06-01T11:30:00"
    assert rep.devices == sorted(recs["device"].unique()) == ["3", "RT-B"]
    assert rep.duplicates == 1
    assert rep.bad_fraction == pytest.approx(2 / 7)
    assert sum(rep.level_counts.values()) == sum(rep.event_counts.values()) == rep.valid == 4
    assert check_schema(recs) == []


def test_warnings_passed_through(tmp_path: Path) -> None:
    raw = read_export(write_export(tmp_path / "w.json", [record(1)]))
    res = validate_records(raw.records, "w.json", warnings=["claimed 5 records"])
    assert res.report.warnings == ["claimed 5 records"]


def test_extra_wifi_processes(tmp_path: Path) -> None:
    data = [record(1, process_name="myapd", message="something about the radio")]
    plain = validate_data(tmp_path, data)
    assert plain.records["event_type"].iloc[0] == "other_process"
    extra = validate_data(tmp_path, data, name="extra.json", extra_wifi_processes=["MyApd"])
    assert extra.records["event_type"].iloc[0] == "other_wifi"


def test_all_quarantined_file(tmp_path: Path) -> None:
    res = validate_data(tmp_path, [record(1, message=None), "junk"])
    assert res.report.valid == 0
    assert res.report.bad_fraction == 1.0
    assert res.report.time_start is None and res.report.time_end is None
    assert list(res.records.columns) == list(VALID_COLUMNS)


# --------------------------------------------------------------------------- fixed-width timestamps == general path
_STAMP_QUIRKS = [
    "2025-06-27T09:16:56",
    "2024-02-29T23:59:59",  # leap day
    "2023-02-29T00:00:00",  # no such day: Arrow would roll it over to March 1st
    "2000-02-29T12:00:00",
    "1900-02-29T12:00:00",
    "2025-04-31T10:00:00",
    "2025-13-01T00:00:00",
    "2025-00-10T00:00:00",
    "2025-06-00T00:00:00",
    "2025-06-27T24:00:00",
    "2025-06-27T23:60:00",
    "2025-06-27T23:59:60",
    "0999-01-01T00:00:00",
    "1000-01-01T00:00:00",
    "9999-12-31T23:59:59",
    "1969-12-31T23:59:59",
    " 2025-06-27T09:16:56",
    "2025-06-27T09:16:56 ",
    "\u30002025-06-27T09:16:56",
    "2025-06-27 09:16:56",
    "2025-06-27T09:16:56Z",
    "2025-06-27T09:16:56+02:00",
    "2025-06-27T09:16:56.5",
    "2025-06-27T09:16:5x",
    "2025-06-27T09:16:5\u0661",
    "2025/06/27T09:16:56",
    "",
    "   ",
    None,
]


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
def test_fixed_width_timestamps_give_the_general_paths_values(tz: str) -> None:
    from mcp_training_dagster.serving.validation import _parse_timestamps_general, parse_timestamps

    real = read_export(HOSTAPD_1824).records["timestamp"].astype("str")
    values = pd.concat([pd.Series(_STAMP_QUIRKS * 3, dtype="str"), real], ignore_index=True)
    for series in (values, values.iloc[7:], values.iloc[::-1]):
        pd.testing.assert_series_equal(parse_timestamps(series, tz), _parse_timestamps_general(series, tz))
