"""The fleet benchmarks' generator (``benchmarks.generator.write_fleet``): every router a device of its own, each
day's export repeating exactly the previous day's last hour, in the service's format (read and validated by the
real code, nothing quarantined), and the training fan-in counting an overlap record once and every router."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmarks.generator import FLEET_OVERLAP_SECONDS, fleet_end, router_exports, write_fleet
from mcp_training_dagster.domain.horizon import frame_readers, select_records
from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.validation import validate_records

ROUTERS, DAYS, RECORDS = 3, 3, 250
END = fleet_end(1_780_000_000)  # a fixed UTC midnight: the test does not depend on today


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("fleet")
    exports = write_fleet(folder, ROUTERS, DAYS, RECORDS, end=END)
    raw = {e.path.name: read_export(e.path) for e in exports}
    valid = {name: validate_records(r.records, name) for name, r in raw.items()}
    return exports, raw, valid


def _seconds(ts: pd.Series) -> pd.Series:
    return (pd.to_datetime(ts).astype("datetime64[s]").astype("int64")).astype(int)


def test_one_export_per_router_and_day_in_the_real_format_nothing_quarantined(fleet) -> None:
    exports, raw, valid = fleet
    assert [(e.router, e.day) for e in exports] == [(r, d) for r in range(ROUTERS) for d in range(DAYS)]
    for e in exports:
        assert e.records == RECORDS  # a multiple of 25: exactly (24 + 1 hours) x 10 records
        facts = raw[e.path.name].facts
        assert facts.claimed_records == facts.actual_records == e.records and not facts.warnings
        assert facts.created_at is not None and pd.Timestamp(facts.created_at).timestamp() > e.end
        v = valid[e.path.name]
        assert v.report.quarantined == 0, v.report.quarantine_by_reason
        assert v.report.bad_fraction == 0.0
        assert len(v.records) == e.records
        ts = _seconds(raw[e.path.name].records["timestamp"])
        assert ts.min() >= e.start and ts.max() < e.end  # [day - 1 h, day + 24 h)
        assert e.end - e.start == 86_400 + FLEET_OVERLAP_SECONDS
        assert e.end == END - (DAYS - 1 - e.day) * 86_400
        assert ts.is_monotonic_decreasing  # newest first, like the service


def test_every_router_is_a_device_of_its_own(fleet) -> None:
    exports, _, valid = fleet
    devices: dict[int, set[tuple[str, str]]] = {}
    ids: dict[int, set[int]] = {}
    for e in exports:
        rec = valid[e.path.name].records
        devices.setdefault(e.router, set()).update(zip(rec["device"], rec["device_name"]))
        ids.setdefault(e.router, set()).update(rec["id"].tolist())
    assert all(len(d) == 1 for d in devices.values())  # one device_id and one name per router
    pairs = [next(iter(d)) for d in devices.values()]
    assert len({p[0] for p in pairs}) == ROUTERS and len({p[1] for p in pairs}) == ROUTERS
    for a in range(ROUTERS):
        for b in range(a + 1, ROUTERS):
            assert not ids[a] & ids[b]  # no record id shared between routers
    # their own traffic: the routers' stations differ
    macs = [
        set(pd.concat([valid[e.path.name].records["station_mac"] for e in exports if e.router == r]).dropna())
        for r in range(ROUTERS)
    ]
    assert all(macs) and not macs[0] & macs[1]


def test_consecutive_days_share_exactly_the_last_hour_record_for_record(fleet) -> None:
    exports, raw, _ = fleet
    by_key = {(e.router, e.day): e for e in exports}
    for r in range(ROUTERS):
        for d in range(1, DAYS):
            prev, cur = by_key[(r, d - 1)], by_key[(r, d)]
            a, b = raw[prev.path.name].records, raw[cur.path.name].records
            shared = set(a["id"]) & set(b["id"])
            overlap = cur.start, cur.start + FLEET_OVERLAP_SECONDS  # the hour before day d
            in_a = a[_seconds(a["timestamp"]).between(overlap[0], overlap[1] - 1)]
            in_b = b[_seconds(b["timestamp"]).between(overlap[0], overlap[1] - 1)]
            assert shared == set(in_a["id"]) == set(in_b["id"]) and len(shared) == RECORDS // 25
            cols = [c for c in a.columns if c != "record_index"]
            same = in_a.sort_values("id")[cols].reset_index(drop=True)
            assert same.equals(in_b.sort_values("id")[cols].reset_index(drop=True))  # the same records, byte for byte
        # days two apart share nothing
        if DAYS > 2:
            assert not set(raw[by_key[(r, 0)].path.name].records["id"]) & set(
                raw[by_key[(r, 2)].path.name].records["id"]
            )


def test_the_fan_in_counts_an_overlap_record_once_and_keeps_every_router(fleet) -> None:
    _, _, valid = fleet
    result = select_records(frame_readers({n: v.records for n, v in valid.items()}), horizon_days=None)
    overlaps = ROUTERS * (DAYS - 1) * (RECORDS // 25)
    assert result.union.identical == overlaps
    assert result.union.id_conflicts == 0
    assert result.distinct == ROUTERS * DAYS * RECORDS - overlaps
    assert result.records["device"].nunique() == ROUTERS


def test_generation_is_reproducible(tmp_path: Path, fleet) -> None:
    exports, _, _ = fleet
    again = router_exports(tmp_path, 1, DAYS, RECORDS, routers=ROUTERS, end=END)
    for e in again:
        assert e.path.read_bytes() == next(x.path for x in exports if x.path.name == e.path.name).read_bytes()
