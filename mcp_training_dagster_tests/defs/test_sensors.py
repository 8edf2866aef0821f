"""export_file_sensor, called tick by tick the way the daemon calls it, on real files in tmp.

The sensor is called directly (``sensor(context)``) so the raw SensorResult can be inspected;
between ticks the test applies the partition requests to the instance, as the daemon would.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest

import dagster as dg
from mcp_training_dagster.definitions import build_definitions
from mcp_training_dagster.defs.partitions import export_files, files_in_range
from mcp_training_dagster.defs.resources import build_resources
from mcp_training_dagster.defs.sensors import RANGE_END, RANGE_START
from mcp_training_dagster.settings import get_settings
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35, copy_sample


class Ticker:
    """Drives the sensor like the daemon: keeps the cursor, applies partition requests."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, resources: dict):
        self.sensor = defs.resolve_sensor_def("export_file_sensor")
        self.instance = instance
        self.resources = resources
        self.cursor: str | None = None
        self.requested_partitions: list[str] = []

    def tick(self, *, apply: bool = True) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources)
        result = self.sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        for request in result.dynamic_partitions_requests or []:
            assert isinstance(request, dg.AddDynamicPartitionsRequest)
            assert request.partitions_def_name == export_files.name
            self.requested_partitions.extend(request.partition_keys)
            if apply:
                self.instance.add_dynamic_partitions(export_files.name, list(request.partition_keys))
        return result

    def configure(self, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
        """New settings take effect as they do in Dagster, where the code location is reloaded: the sensor
        and its resources are built again from them (a resource carries the settings it was built with)."""
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = get_settings()
        self.sensor = build_definitions(settings).resolve_sensor_def("export_file_sensor")
        self.resources = build_resources(settings)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def skip_text(result: dg.SensorResult) -> str:
    reason = result.skip_reason
    if reason is None:
        return ""
    return reason if isinstance(reason, str) else (reason.skip_message or "")


def files_of(request: dg.RunRequest, instance: dg.DagsterInstance) -> list[str]:
    """The export files (partition keys) one run request covers: its partition, or its batch's key range, resolved
    as Dagster resolves it when it creates the run (the partitions in the order they were added)."""
    if request.partition_key is not None:
        return [request.partition_key]
    return files_in_range(instance, request.tags[RANGE_START], request.tags[RANGE_END])


def requested_files(result: dg.SensorResult, instance: dg.DagsterInstance) -> list[str]:
    return [k for r in result.run_requests for k in files_of(r, instance)]


def added_keys(result: dg.SensorResult) -> list[str]:
    return [k for r in result.dynamic_partitions_requests or [] for k in r.partition_keys]


@pytest.fixture
def ticker(defs, instance, resources) -> Ticker:
    return Ticker(defs, instance, resources)


def test_new_file_waits_one_tick_then_runs_once(ticker, landing):
    path = copy_sample(HOSTAPD_1824.name, landing)
    name = path.name

    first = ticker.tick()
    assert not first.run_requests
    assert not added_keys(first)
    assert "still changing" in skip_text(first)

    second = ticker.tick()
    assert len(second.run_requests) == 1
    run = second.run_requests[0]
    assert run.partition_key == name
    assert run.run_key == f"{name}:{sha256(path)}"
    assert added_keys(second) == [name]
    assert ticker.instance.get_dynamic_partitions(export_files.name) == [name]

    third = ticker.tick()
    assert not third.run_requests, "an unchanged file must never be re-ingested"
    assert not added_keys(third)
    assert skip_text(third)


def test_changed_content_reruns_without_new_partition(ticker, landing):
    path = copy_sample(SYSTEM_35.name, landing)
    ticker.tick()
    (first_run,) = ticker.tick().run_requests
    assert ticker.instance.has_dynamic_partition(export_files.name, path.name)

    # The upstream service re-exports the same file name with different content.
    path.write_bytes(SYSTEM_19.read_bytes())
    waiting = ticker.tick()
    assert not waiting.run_requests, "a just-modified file is not stable yet"
    rerun = ticker.tick()
    assert len(rerun.run_requests) == 1
    (second_run,) = rerun.run_requests
    assert second_run.partition_key == path.name
    assert second_run.run_key == f"{path.name}:{sha256(path)}"
    assert second_run.run_key != first_run.run_key
    assert not added_keys(rerun), "the partition already exists; no new partition request"
    assert not ticker.tick().run_requests


def test_touch_without_content_change_does_not_rerun(ticker, landing):
    path = copy_sample(SYSTEM_19.name, landing)
    ticker.tick()
    assert len(ticker.tick().run_requests) == 1
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert not ticker.tick().run_requests
    assert not ticker.tick().run_requests


def test_growing_file_is_not_ingested_until_stable(ticker, landing):
    payload = HOSTAPD_1824.read_bytes()
    path = landing / "growing.json"
    cut = [len(payload) // 4, len(payload) // 2, 3 * len(payload) // 4]
    path.write_bytes(payload[: cut[0]])
    assert not ticker.tick().run_requests
    for end in cut[1:] + [len(payload)]:
        with open(path, "ab") as fh:
            fh.write(payload[path.stat().st_size : end])
        result = ticker.tick()
        assert not result.run_requests, f"file still growing ({end} bytes) must not be ingested"
        assert "still changing" in skip_text(result)
    # Now complete and unchanged for one tick: exactly one run, of the complete content.
    done = ticker.tick()
    assert [r.partition_key for r in done.run_requests] == ["growing.json"]
    assert done.run_requests[0].run_key == f"growing.json:{hashlib.sha256(payload).hexdigest()}"


def test_part_files_are_ignored_until_renamed(ticker, landing):
    part = landing / "export_asus_system_35.json.part"
    part.write_bytes(SYSTEM_35.read_bytes()[:1000])
    for _ in range(3):
        result = ticker.tick()
        assert not result.run_requests
        assert not added_keys(result)
    part.write_bytes(SYSTEM_35.read_bytes())
    final = landing / "export_asus_system_35.json"
    part.rename(final)
    assert not ticker.tick().run_requests  # a new name: seen once first
    result = ticker.tick()
    assert [r.partition_key for r in result.run_requests] == [final.name]
    assert ticker.requested_partitions == [final.name]


def test_other_file_types_are_ignored(ticker, landing):
    (landing / "README.txt").write_text("not an export")
    (landing / ".hidden.json").write_text("{}")
    (landing / "subdir.json").mkdir()
    for _ in range(2):
        result = ticker.tick()
        assert not result.run_requests
    assert ticker.requested_partitions == []


def test_missing_landing_folder_is_not_an_error(ticker, landing):
    landing.rmdir()
    result = ticker.tick()
    assert not result.run_requests
    assert str(landing) in skip_text(result)
    landing.mkdir()
    copy_sample(SYSTEM_19.name, landing)
    ticker.tick()
    assert [r.partition_key for r in ticker.tick().run_requests] == [SYSTEM_19.name]


def test_bad_file_still_gets_its_own_run(ticker, landing):
    bad = landing / "garbage.json"
    bad.write_text("this is not JSON at all {")
    copy_sample(SYSTEM_19.name, landing)
    ticker.tick()
    result = ticker.tick()
    # Both new: one batch run over the two (a failed batch is split into a run per file: test_batches.py).
    assert sorted(requested_files(result, ticker.instance)) == sorted(["garbage.json", SYSTEM_19.name])
    assert sorted(added_keys(result)) == sorted(["garbage.json", SYSTEM_19.name])


def test_lost_cursor_reproduces_the_same_run_keys(ticker, landing):
    """The daemon skips a run_key it already launched, so a reset cursor must not invent new keys."""
    copy_sample(SYSTEM_35.name, landing)
    ticker.tick()
    (original,) = ticker.tick().run_requests
    ticker.cursor = None  # sensor reset / cursor lost
    ticker.tick()
    (again,) = ticker.tick().run_requests
    assert again.run_key == original.run_key
    assert again.partition_key == original.partition_key


def test_hashing_budget_defers_but_never_starves(ticker, landing, monkeypatch):
    # Stability over two ticks (these files are dated 2023, settled at once by default: test_landing_settled.py).
    ticker.configure(
        monkeypatch,
        MCP_TRAINING_SENSOR__MAX_BYTES_HASHED_PER_TICK="30000",
        MCP_TRAINING_SENSOR__SETTLED_AFTER_SECONDS="null",
    )
    order = [HOSTAPD_1824, SYSTEM_35, SYSTEM_19]  # 1.1 MB (over the budget on its own), 23 kB, 13 kB
    for age, sample in enumerate(order):
        path = copy_sample(sample.name, landing)
        t = 1_700_000_000 + age * 60
        os.utime(path, (t, t))  # oldest first
    first = ticker.tick()
    assert not first.run_requests
    seen = []
    for _ in range(3):
        result = ticker.tick()
        assert len(result.run_requests) == 1, [r.partition_key for r in result.run_requests]
        seen.append(result.run_requests[0].partition_key)
    assert seen == [s.name for s in order], "oldest first; a file larger than the budget still goes alone"
    assert not ticker.tick().run_requests


def test_burst_is_spread_over_ticks(ticker, landing, monkeypatch):
    ticker.configure(monkeypatch, MCP_TRAINING_SENSOR__MAX_FILES_PER_TICK="100")
    template = json.loads(SYSTEM_19.read_text())
    names = []
    for i in range(250):
        doc = dict(template, data=[dict(r, id=1_000_000 + i * 100 + j) for j, r in enumerate(template["data"])])
        name = f"burst_{i:03d}.json"
        (landing / name).write_text(json.dumps(doc))
        names.append(name)

    first = ticker.tick()
    assert not first.run_requests
    assert "250 still changing" in skip_text(first)

    requested: list[str] = []
    per_tick: list[int] = []
    for _ in range(10):
        result = ticker.tick()
        if not result.run_requests:
            break
        per_tick.append(len(requested_files(result, ticker.instance)))
        keys = added_keys(result)
        assert len(result.dynamic_partitions_requests) == 1, "one batched add request per tick"
        assert sorted(keys) == sorted(requested_files(result, ticker.instance))
        # new files share runs: sensor.files_per_run (10) each
        assert [len(files_of(r, ticker.instance)) for r in result.run_requests] == [10] * (len(keys) // 10)
        requested.extend(requested_files(result, ticker.instance))
    assert per_tick == [100, 100, 50]
    assert sorted(requested) == names, "every file requested exactly once"
    assert len(set(requested)) == len(requested)
    assert sorted(ticker.instance.get_dynamic_partitions(export_files.name)) == names
    assert not ticker.tick().run_requests


def test_partition_add_requests_are_batched_below_sqlite_limits(ticker, landing, monkeypatch):
    ticker.configure(monkeypatch, MCP_TRAINING_SENSOR__MAX_FILES_PER_TICK="2000")
    for i in range(1100):
        (landing / f"tiny_{i:04d}.json").write_text(json.dumps({"i": i}))
    ticker.tick()
    result = ticker.tick()
    assert len(result.run_requests) == 110  # 10 files per run
    assert len(requested_files(result, ticker.instance)) == 1100
    sizes = [len(r.partition_keys) for r in result.dynamic_partitions_requests]
    assert sizes == [500, 500, 100]
    assert len(set(added_keys(result))) == 1100
