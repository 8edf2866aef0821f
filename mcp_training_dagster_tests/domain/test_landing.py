"""The landing folder scan behind export_file_sensor: stability, change detection, budgets."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mcp_training_dagster.domain.landing import (
    STATE_VERSION,
    ScanResult,
    load_state,
    scan_landing,
)
from mcp_training_dagster.settings import SensorConfig
from mcp_training_dagster_tests.conftest import SYSTEM_19, copy_sample


class Sensor:
    """Ticks scan_landing, carrying the cursor between ticks like the sensor does."""

    def __init__(self, folder: Path, **kw) -> None:
        self.folder, self.kw, self.cursor = folder, kw, None

    def tick(self) -> ScanResult:
        result = scan_landing(self.folder, self.cursor, **self.kw)
        self.cursor = result.cursor()
        return result


def ready_names(result: ScanResult) -> list[str]:
    return [r.name for r in result.ready]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bump_mtime(path: Path, seconds: int = 5) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_new_file_waiting_then_ready_once(landing: Path) -> None:
    path = copy_sample(SYSTEM_19.name, landing)
    s = Sensor(landing)
    first = s.tick()
    assert first.waiting == [path.name]
    assert first.ready == []
    second = s.tick()
    assert second.waiting == []
    assert len(second.ready) == 1
    r = second.ready[0]
    assert (r.name, r.sha256, r.size) == (path.name, sha(path), path.stat().st_size)
    third = s.tick()
    assert third.ready == [] and third.waiting == [] and third.deferred == 0


def test_touched_file_identical_content_not_ready_again(landing: Path) -> None:
    path = copy_sample(SYSTEM_19.name, landing)
    s = Sensor(landing)
    s.tick()
    assert ready_names(s.tick()) == [path.name]
    bump_mtime(path)
    touched = s.tick()
    assert touched.waiting == [path.name]
    assert touched.ready == []
    settled = s.tick()
    assert settled.ready == []  # same hash as the version already handed over
    assert settled.waiting == []
    assert s.tick().ready == []
    assert json.loads(s.cursor)["files"][path.name]["done"] == sha(path)


def test_changed_content_ready_again_with_new_sha(landing: Path) -> None:
    path = copy_sample(SYSTEM_19.name, landing, as_name="export_a.json")
    s = Sensor(landing)
    s.tick()
    first_sha = s.tick().ready[0].sha256
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["data"] = doc["data"][:10]
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    bump_mtime(path)
    assert s.tick().waiting == [path.name]
    again = s.tick()
    assert len(again.ready) == 1
    assert again.ready[0].sha256 == sha(path) != first_sha
    assert again.ready[0].size == path.stat().st_size
    assert s.tick().ready == []


def test_same_size_rewrite_detected_by_hash(landing: Path) -> None:
    path = landing / "export_b.json"
    path.write_bytes(b'{"data": [1]}')
    s = Sensor(landing)
    s.tick()
    old = s.tick().ready[0].sha256
    path.write_bytes(b'{"data": [2]}')  # same size
    bump_mtime(path)
    s.tick()
    again = s.tick()
    assert [r.sha256 for r in again.ready] == [sha(path)]
    assert again.ready[0].sha256 != old


def test_growing_file_never_ready_until_stable(landing: Path) -> None:
    path = landing / "export_growing.json"
    path.write_bytes(b'{"export_metadata": {}, "data": [')
    s = Sensor(landing)
    for i in range(5):
        result = s.tick()
        assert result.ready == [], i
        assert result.waiting == [path.name]
        with open(path, "ab") as fh:
            fh.write(b'{"id": %d},' % i)
    with open(path, "ab") as fh:
        fh.write(b'{"id": 99}]}')
    assert s.tick().waiting == [path.name]
    done = s.tick()
    assert [(r.name, r.sha256) for r in done.ready] == [(path.name, sha(path))]


def test_ignored_names(landing: Path) -> None:
    for name in ("upload.json.part", "export.json.tmp", ".hidden.json", "notes.txt", "export.csv"):
        (landing / name).write_text("{}", encoding="utf-8")
    (landing / "subdir.json").mkdir()
    good = copy_sample(SYSTEM_19.name, landing)
    s = Sensor(landing)
    assert s.tick().waiting == [good.name]
    assert ready_names(s.tick()) == [good.name]
    assert set(json.loads(s.cursor)["files"]) == {good.name}


def test_configured_ignore_patterns(landing: Path) -> None:
    cfg = SensorConfig()
    for name in ("a.json.partial", "b.json.crdownload", "~c.json", ".d.json", "e.zip", "f.json"):
        (landing / name).write_text("{}", encoding="utf-8")
    s = Sensor(landing, patterns=cfg.file_patterns, ignore=cfg.ignore_patterns)
    assert sorted(s.tick().waiting) == ["e.zip", "f.json"]
    assert sorted(ready_names(s.tick())) == ["e.zip", "f.json"]


def test_max_files_budget(landing: Path) -> None:
    paths = []
    for i in range(25):
        p = landing / f"export_{i:02d}.json"
        p.write_text(json.dumps({"data": [{"id": i}]}), encoding="utf-8")
        os.utime(p, ns=(1_700_000_000_000_000_000 + i, 1_700_000_000_000_000_000 + i * 1_000_000))
        paths.append(p)
    s = Sensor(landing, max_files=10)
    first = s.tick()
    assert len(first.waiting) == 25 and first.ready == []
    seen: list[str] = []
    per_tick = []
    for _ in range(3):
        r = s.tick()
        per_tick.append((len(r.ready), r.deferred))
        seen += ready_names(r)
    assert per_tick == [(10, 15), (10, 5), (5, 0)]
    assert len(seen) == len(set(seen)) == 25  # none twice
    assert set(seen) == {p.name for p in paths}
    assert seen[:10] == [f"export_{i:02d}.json" for i in range(10)]  # oldest first
    after = s.tick()
    assert after.ready == [] and after.deferred == 0


def test_max_bytes_budget_defers_but_never_starves(landing: Path) -> None:
    for name in ("a.json", "b.json", "c.json"):
        (landing / name).write_bytes(b"x" * 1000)
    s = Sensor(landing, max_bytes=1500)
    s.tick()
    r = s.tick()
    assert len(r.ready) == 1 and r.deferred == 2
    seen = ready_names(r)
    for _ in range(2):
        seen += ready_names(s.tick())
    assert sorted(seen) == ["a.json", "b.json", "c.json"]
    big = landing / "big.json"
    big.write_bytes(b"y" * 5000)  # bigger than the whole budget: still taken alone
    s.tick()
    assert ready_names(s.tick()) == ["big.json"]


def test_deleted_file_forgotten(landing: Path) -> None:
    keep = copy_sample(SYSTEM_19.name, landing, as_name="keep.json")
    gone = copy_sample(SYSTEM_19.name, landing, as_name="gone.json")
    s = Sensor(landing)
    s.tick()
    s.tick()
    assert set(json.loads(s.cursor)["files"]) == {"keep.json", "gone.json"}
    gone.unlink()
    r = s.tick()
    assert r.ready == [] and r.waiting == []
    assert set(json.loads(s.cursor)["files"]) == {keep.name}
    # the same name arriving again is a new file
    copy_sample(SYSTEM_19.name, landing, as_name="gone.json")
    assert s.tick().waiting == ["gone.json"]
    assert ready_names(s.tick()) == ["gone.json"]


@pytest.mark.parametrize(
    "cursor",
    [
        None,
        "",
        "not json at all",
        "[]",
        "null",
        json.dumps({"v": 0, "files": {"export.json": {"size": 1, "mtime_ns": 1, "sha256": "x", "done": "x"}}}),
        json.dumps({"files": {}}),
        json.dumps({"v": STATE_VERSION}),
        json.dumps({"v": STATE_VERSION, "files": []}),
        json.dumps({"v": STATE_VERSION, "files": {"export.json": 5}}),
    ],
    ids=[
        "none",
        "empty",
        "garbage",
        "list",
        "null",
        "old-version",
        "no-version",
        "no-files",
        "files-list",
        "entry-not-object",
    ],
)
def test_corrupt_or_old_cursor_treated_as_empty(landing: Path, cursor: str | None) -> None:
    path = copy_sample(SYSTEM_19.name, landing, as_name="export.json")
    result = scan_landing(landing, cursor)
    assert result.waiting == [path.name]
    assert result.ready == []
    assert json.loads(result.cursor())["v"] == STATE_VERSION
    nxt = scan_landing(landing, result.cursor())
    assert ready_names(nxt) == [path.name]


def test_load_state_defaults() -> None:
    assert load_state(None) == {"v": STATE_VERSION, "files": {}}
    assert load_state("{broken") == {"v": STATE_VERSION, "files": {}}


def test_control_characters_and_dots_skipped(landing: Path) -> None:
    bad_names = ["bad\tname.json", "line\nbreak.json", "export...json"]
    for name in bad_names:
        (landing / name).write_text("{}", encoding="utf-8")
    good = copy_sample(SYSTEM_19.name, landing)
    s = Sensor(landing)
    first = s.tick()
    assert set(first.skipped) == set(bad_names)
    assert all("partition key" in why for why in first.skipped.values())
    assert first.waiting == [good.name]
    second = s.tick()
    assert ready_names(second) == [good.name]
    assert set(second.skipped) == set(bad_names)
    assert set(json.loads(s.cursor)["files"]) == {good.name}


def test_missing_folder(tmp_path: Path) -> None:
    result = scan_landing(tmp_path / "nope", None)
    assert result.ready == [] and result.waiting == [] and result.skipped == {}


def test_cursor_is_compact_json(landing: Path) -> None:
    copy_sample(SYSTEM_19.name, landing)
    s = Sensor(landing)
    s.tick()
    state = json.loads(s.cursor)
    entry = state["files"][SYSTEM_19.name]
    assert entry["size"] == SYSTEM_19.stat().st_size
    assert entry["sha256"] is None and entry["done"] is None
    assert " " not in s.cursor
