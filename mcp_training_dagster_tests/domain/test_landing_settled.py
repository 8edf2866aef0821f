"""Stability in one tick: a file last modified long enough ago (e.g. renamed in, atomic and final) is ingested on
the first tick; one still being written waits for the next tick, as before."""

import os
import shutil

from mcp_training_dagster.domain.landing import scan_landing
from mcp_training_dagster_tests.conftest import SYSTEM_35


def test_settled_file_is_ready_on_the_first_tick(tmp_path):
    staging, landing = tmp_path / "staging", tmp_path / "exports"
    staging.mkdir(), landing.mkdir()
    shutil.copyfile(SYSTEM_35, staging / "a.json")
    os.utime(staging / "a.json", (os.path.getmtime(staging / "a.json") - 10,) * 2)  # written 10 s ago
    os.rename(staging / "a.json", landing / "a.json")  # moved in: atomic, keeps its mtime
    result = scan_landing(landing, None, settled_after_seconds=2.0)
    assert [f.name for f in result.ready] == ["a.json"] and not result.waiting


def test_file_being_written_waits_a_tick(tmp_path):
    shutil.copyfile(SYSTEM_35, tmp_path / "b.json")  # modified just now
    first = scan_landing(tmp_path, None, settled_after_seconds=2.0)
    assert first.waiting == ["b.json"] and not first.ready
    now = os.path.getmtime(tmp_path / "b.json") + 0.5
    again = scan_landing(tmp_path, first.cursor(), settled_after_seconds=2.0, now=now)
    assert [f.name for f in again.ready] == ["b.json"], "unchanged since the last tick: stable, as before"


def test_old_file_changed_in_place_is_judged_by_its_new_mtime(tmp_path):
    path = tmp_path / "c.json"
    shutil.copyfile(SYSTEM_35, path)
    t0 = os.path.getmtime(path)
    first = scan_landing(tmp_path, None, settled_after_seconds=2.0, now=t0 + 60)
    assert [f.name for f in first.ready] == ["c.json"]
    with open(path, "a") as fh:  # appended to: a new version is being written
        fh.write(" ")
    t1 = os.path.getmtime(path)
    second = scan_landing(tmp_path, first.cursor(), settled_after_seconds=2.0, now=t1 + 0.1)
    assert second.waiting == ["c.json"] and not second.ready
    third = scan_landing(tmp_path, second.cursor(), settled_after_seconds=2.0, now=t1 + 5)
    assert [f.name for f in third.ready] == ["c.json"]


def test_a_burst_still_spreads_over_ticks(tmp_path):
    for i in range(25):
        shutil.copyfile(SYSTEM_35, tmp_path / f"e{i:02}.json")
    now = max(os.path.getmtime(p) for p in tmp_path.iterdir()) + 10
    first = scan_landing(tmp_path, None, max_files=10, settled_after_seconds=2.0, now=now)
    assert len(first.ready) == 10 and first.deferred == 15
    second = scan_landing(tmp_path, first.cursor(), max_files=10, settled_after_seconds=2.0, now=now + 5)
    assert len(second.ready) == 10
