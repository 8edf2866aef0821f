"""The file-to-model path: one export landing on an idle system is ingested AND trained on in one run.

``export_file_sensor`` picks ``file_to_model_job`` (ingest + the retraining it makes due, one process launch
instead of two and no wait for the automation sensor's tick) only when the retraining policy's guards hold:
one file, nothing ingesting or training, no training already due. Otherwise ``ingest_job``, and automation
trains (debounced). The runs here are the sensor's requests executed as the daemon's run worker would,
in process, on real sample exports and a real temp instance.
"""

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.domain.registry import ModelRegistry
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import materializations, run_ingest
from mcp_training_dagster_tests.defs.test_policy_guards import _create, _report

pytestmark = pytest.mark.slow

TRAINING = {
    "horizon_records",
    "training_windows",
    "evaluation_dataset",
    "anomaly_model",
    "agent_model",
    "model_metadata",
    "model_evaluation",
    "model_package",
    "production_model",
    "drift_baseline",
}


def other_router_export(folder: Path, name: str, device: int = 70, days: int = 60) -> Path:
    """The real hostapd sample as another router's export, later: new data of the real size, renamed in."""
    doc = json.loads(HOSTAPD_1824.read_text())
    for r in doc["data"]:
        r["timestamp"] = (datetime.fromisoformat(r["timestamp"]) + timedelta(days=days)).isoformat()
        r["device_id"], r["device_ip"] = device, f"RT-OTHER-{device}"
    doc["export_metadata"]["created_at"] = max(r["timestamp"] for r in doc["data"])
    staged = folder.parent / f".{name}.part"
    staged.write_text(json.dumps(doc))
    old = datetime.now().timestamp() - 5  # written a moment ago, then moved in (atomic): complete on the first tick
    os.utime(staged, (old, old))
    return staged.rename(folder / name)


def tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, resources: dict, cursor: str | None = None
) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def("export_file_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=defs)
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(export_files.name, list(request.partition_keys))
    return result


def jobs(result: dg.SensorResult) -> list[str | None]:
    return [r.job_name for r in result.run_requests or []]


class Sensor:
    """export_file_sensor ticked as the daemon ticks it: the cursor carried, partition requests applied."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, resources: dict) -> None:
        self.defs, self.instance, self.resources, self.cursor = defs, instance, resources, None

    def jobs(self) -> list[str | None]:
        self.result = tick(self.defs, self.instance, self.resources, self.cursor)
        self.cursor = self.result.cursor
        return jobs(self.result)


def idle_system(defs, instance, landing, resources, *, train: bool) -> Sensor:
    """Two samples seen by the sensor and ingested, then a training run that has finished: executed by train_job
    (``train``), else only recorded, as the daemon records a finished run (what the guards read)."""
    for sample in (HOSTAPD_1824, SYSTEM_35):
        copy_sample(sample.name, landing)
        os.utime(landing / sample.name, (1e9, 1e9))
    watcher = Sensor(defs, instance, resources)
    assert watcher.jobs() == ["ingest_job"]  # two files in one tick: a burst, ingested in one batch run
    for sample in (HOSTAPD_1824, SYSTEM_35):
        run_ingest(defs, instance, sample.name)
    if train:
        assert defs.resolve_job_def("train_job").execute_in_process(instance=instance).success
    else:
        _report(instance, _create(defs, instance, "train_job"), dg.DagsterEventType.RUN_SUCCESS)
    return watcher


@pytest.fixture
def sensor(defs, instance, landing, resources) -> Sensor:
    return idle_system(defs, instance, landing, resources, train=False)


@pytest.fixture
def trained_sensor(defs, instance, landing, resources) -> Sensor:
    return idle_system(defs, instance, landing, resources, train=True)


ONE_RUN = {"raw_export", "validated_records", "quarantined_records", "export_windows"} | TRAINING


def test_the_job_is_ingest_plus_the_automated_training_run(defs):
    job = defs.resolve_job_def("file_to_model_job")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert keys == ONE_RUN
    assert job.partitions_def is not None and job.partitions_def.name == export_files.name
    assert job.executor_def.name == "in_process"


def test_one_file_on_an_idle_system_becomes_a_model_in_one_run(defs, trained_sensor, landing, settings):
    sensor = trained_sensor
    instance = sensor.instance
    cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor  # it saw the idle system
    before = set(ModelRegistry(settings.models_dir).versions())
    other_router_export(landing, "export_router70.json")
    assert sensor.jobs() == ["file_to_model_job"]
    request = sensor.result.run_requests[0]
    assert request.partition_key == "export_router70.json" and request.tags["dagster/priority"] == "10"

    assert {k.to_user_string() for k in request.asset_selection or []} == ONE_RUN
    run = defs.resolve_job_def("file_to_model_job").execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags=request.tags,
        asset_selection=list(request.asset_selection),
    )
    assert run.dagster_run.asset_selection == set(request.asset_selection)
    assert run.success
    new = {v for v in set(ModelRegistry(settings.models_dir).versions()) - before if not v.endswith("_agent5")}
    assert len(new) == 1, new
    (package,) = materializations(run, "model_package")
    assert package.metadata["version"].value in new
    meta = json.loads((settings.models_dir / f"model_{new.pop()}" / "metadata.json").read_text())
    assert "export_router70.json" in meta["model_info"]["export_files"]
    # Unpartitioned assets of the partitioned run are recorded unpartitioned, as automation's would be.
    (windows,) = materializations(run, "training_windows")
    assert windows.partition is None

    # What the automation sensor does next: nothing of what that run did again (no training, no second
    # production_model), and every export's verdicts and drift re-scored by the new production model.
    requested = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    for key in TRAINING:
        assert requested.get_num_requested(dg.AssetKey(key)) == 0, key
    assert requested.get_num_requested(dg.AssetKey("export_anomalies")) == 3  # the two samples and the new file


def test_an_export_older_than_the_horizon_is_named_by_up(defs, trained_sensor, landing, settings):
    """An old export dropped in trains nothing (every record is older than the training horizon): `up` says so
    under the run's line instead of showing only "success"."""
    from mcp_training_dagster.cli.runs import Progress

    sensor = trained_sensor
    lines: list[str] = []
    progress = Progress(sensor.instance, settings.models_dir, "http://127.0.0.1:3000", lines.append)
    before = set(ModelRegistry(settings.models_dir).versions())
    other_router_export(landing, "export_router70_old.json", days=-90)
    assert sensor.jobs() == ["file_to_model_job"]
    request = sensor.result.run_requests[0]
    run = defs.resolve_job_def("file_to_model_job").execute_in_process(
        instance=sensor.instance,
        partition_key=request.partition_key,
        tags=request.tags,
        asset_selection=list(request.asset_selection),
    )
    assert run.success
    assert set(ModelRegistry(settings.models_dir).versions()) == before
    progress.poll()
    said = [line for line in lines if "export_router70_old.json:" in line and "training horizon" in line]
    assert said and "so it trains nothing" in said[0], lines
    assert any("file_to_model_job [export_router70_old.json]: success" in line for line in lines), lines


def test_a_burst_is_ingested_and_left_to_automation(sensor, landing):
    copy_sample(SYSTEM_19.name, landing)
    os.utime(landing / SYSTEM_19.name, (1e9, 1e9))
    other_router_export(landing, "export_router70.json")
    assert sensor.jobs() == ["ingest_job"]  # one batch: the two files' partition range
    assert sensor.result.run_requests[0].tags["export/batch_files"] == "2"


def test_a_file_still_arriving_makes_it_a_burst(sensor, landing):
    other_router_export(landing, "export_router70.json")
    copy_sample(SYSTEM_19.name, landing)  # just written: judged on the next tick
    assert sensor.jobs() == ["ingest_job"]


def test_a_file_arriving_while_another_is_ingested_waits_for_automation(defs, sensor, landing):
    _create(defs, sensor.instance, "ingest_job", SYSTEM_19.name)  # queued, not finished
    other_router_export(landing, "export_router70.json")
    assert sensor.jobs() == ["ingest_job"]


def test_never_two_trainings_at_once(defs, sensor, landing):
    _create(defs, sensor.instance, "train_job")  # a training queued or running
    other_router_export(landing, "export_router70.json")
    assert sensor.jobs() == ["ingest_job"]


def test_verdict_runs_are_not_in_the_way(defs, sensor, landing):
    # What automation creates to re-score an export: a run of its verdicts and drift, queued.
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("export_anomalies"), dg.AssetKey("export_drift")}
    )
    sensor.instance.create_run_for_job(
        job_def=job,
        tags={"dagster/partition": HOSTAPD_1824.name},
        asset_selection={dg.AssetKey("export_anomalies"), dg.AssetKey("export_drift")},
    )
    other_router_export(landing, "export_router70.json")
    assert sensor.jobs() == ["file_to_model_job"]


def test_a_training_already_due_stays_automations(defs, sensor, landing):
    copy_sample(SYSTEM_19.name, landing)
    os.utime(landing / SYSTEM_19.name, (1e9, 1e9))
    assert sensor.jobs() == ["file_to_model_job"]  # (this tick's run is not executed: it only made the partition)
    run_ingest(defs, sensor.instance, SYSTEM_19.name)  # validated data newer than the last training run
    other_router_export(landing, "export_router70.json")
    assert sensor.jobs() == ["ingest_job"]


def test_a_first_file_on_a_fresh_system_trains_in_its_run(defs, instance, landing, resources):
    copy_sample(HOSTAPD_1824.name, landing)
    os.utime(landing / HOSTAPD_1824.name, (1e9, 1e9))
    assert jobs(tick(defs, instance, resources)) == ["file_to_model_job"]
