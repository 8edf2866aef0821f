"""Incidents: flagged windows of one router that overlap or follow each other become one incident."""

from __future__ import annotations

import pandas as pd

from mcp_training_dagster.serving.features import WindowSpec
from mcp_training_dagster.domain.incidents import INCIDENT_COLUMNS, build_incidents, incidents_to_json


def _table() -> pd.DataFrame:
    rows = [  # device_id, entity, kind, window_start, score, is_anomaly
        ("1", "*", "device", "2025-01-02T10:00:00", 2.0, True),
        ("1", "aa:bb:cc:dd:ee:01", "station", "2025-01-02T10:05:00", 1.0, True),  # follows: same incident
        ("1", "eth6", "interface", "2025-01-02T10:05:00", 0.5, True),
        ("1", "*", "device", "2025-01-02T12:00:00", 0.3, True),  # later: another incident
        ("2", "*", "device", "2025-01-02T10:00:00", 0.9, True),  # other router
        ("1", "*", "device", "2025-01-02T11:00:00", -1.0, False),
    ]
    return pd.DataFrame(
        rows, columns=["device_id", "entity", "entity_kind", "window_start", "score", "is_anomaly"]
    ).assign(reasons="")


def _records() -> pd.DataFrame:
    t0 = pd.Timestamp("2025-01-02T10:01:00")
    rows = [
        (i, "1", t0 + pd.Timedelta(seconds=10 * i), "deauthentication", f"aa:bb:cc:dd:ee:{i % 9:02x}")
        for i in range(14)
    ]
    rows += [
        (
            100 + i,
            "1",
            pd.Timestamp("2025-01-01T12:00:00") + pd.Timedelta(hours=i),
            "deauthentication",
            "aa:bb:cc:dd:ee:01",
        )
        for i in range(3)
    ]
    df = pd.DataFrame(rows, columns=["id", "device", "timestamp", "event_type", "station_mac"])
    return df.sort_values("timestamp").reset_index(drop=True)


def test_merge_and_describe() -> None:
    inc = build_incidents(_table(), _records(), WindowSpec())
    assert list(inc.columns) == list(INCIDENT_COLUMNS)
    assert len(inc) == 3
    first = inc.iloc[0]
    assert (first["device_id"], first["start"], first["end"]) == ("1", "2025-01-02T10:00:00", "2025-01-02T10:10:00")
    assert first["severity"] == 2.0 and first["n_windows"] == 3
    assert "aa:bb:cc:dd:ee:01" in first["entities"] and "eth6" in first["entities"]
    assert "14 deauthentications/disconnections of 9 stations in 5 min; usual: 0-0" in first["summary"]
    assert "disconnections" in first["event_families"]
    assert inc["severity"].is_monotonic_decreasing
    assert len(incidents_to_json(inc)) == 3


def test_nothing_flagged() -> None:
    t = _table().assign(is_anomaly=False)
    assert build_incidents(t, _records()).empty
