"""Break an export, a training and a freshness window on purpose; find each alert in the alert file and at a
webhook receiver on 127.0.0.1. The sensors are Dagster's (run_failure_sensor, a cursor sensor), called as the
daemon would call them."""

import json
import re
import shutil

import pytest

import dagster as dg
from mcp_training_dagster.domain.alerts import read_alerts
from mcp_training_dagster.definitions import build_definitions
from mcp_training_dagster.settings import get_settings, load_settings
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_35
from mcp_training_dagster_tests.defs.conftest import report_freshness_failed, run_ingest
from mcp_training_dagster_tests.webhook import webhook_receiver


@pytest.fixture
def hook(data_dir, monkeypatch):
    with webhook_receiver() as receiver:
        monkeypatch.setenv("MCP_TRAINING_ALERTS__WEBHOOK_URL", receiver.url)
        yield receiver


def _on_failure(defs, instance, result: dg.ExecuteInProcessResult) -> None:
    sensor = defs.resolve_sensor_def("alert_on_run_failure")
    ctx = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"settings": defs.resources["settings"]},
    )
    sensor(ctx.for_run_failure())


def _tick(defs, instance, cursor=None) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def("alert_on_checks_and_freshness")
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources={"settings": defs.resources["settings"]}
    )
    return sensor(ctx)


def test_broken_export_training_and_freshness_each_alert(hook, defs, instance, landing, caplog, monkeypatch):
    alerts_file = get_settings().training.alerts.file
    assert alerts_file is not None and str(alerts_file).startswith(str(landing.parent))
    started = _tick(defs, instance)  # the sensor's first tick: it alerts on what happens from now on

    # 1. A broken export: not JSON -> its ingest run fails -> run-failure alert naming file, step and error.
    (landing / "broken.json").write_text('{"export_metadata": {}, "data": [')
    failed = run_ingest(defs, instance, "broken.json", raise_on_error=False)
    assert not failed.success
    _on_failure(defs, instance, failed)

    # 2. An export whose claimed count lies: a failed (warn) check -> check alert for that partition.
    doc = json.loads(SYSTEM_35.read_text())
    doc["export_metadata"]["total_records"] = 999
    (landing / "liar.json").write_text(json.dumps(doc))
    assert run_ingest(defs, instance, "liar.json").success
    first = _tick(defs, instance, started.cursor)

    # 3. A training that cannot succeed (more windows required than exist) -> run-failure alert for train_job.
    with monkeypatch.context() as env:  # for this run only; undone even when the test fails
        env.setenv("MCP_MODEL_TRAINING__MIN_TRAINING_WINDOWS", "100000000")
        train = defs.resolve_job_def("train_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not train.success
    _on_failure(defs, instance, train)

    # 4. The ingest freshness window fails, as the FreshnessDaemon reports it -> freshness alert naming the folder.
    report_freshness_failed(instance, "raw_export")
    second = _tick(defs, instance, first.cursor)
    third = _tick(defs, instance, second.cursor)
    assert third.skip_reason, "each event alerts once"

    alerts = read_alerts(alerts_file)
    by_kind = {}
    for a in alerts:
        by_kind.setdefault(a["kind"], []).append(a)
    export_failure = next(a for a in by_kind["run_failure"] if a["partition"] == "broken.json")
    assert export_failure["job"] == "ingest_job" and "truncated JSON" in export_failure["what"]
    assert export_failure["run_url"] == f"http://127.0.0.1:3000/runs/{failed.run_id}"
    training_failure = next(a for a in by_kind["run_failure"] if a["job"] == "train_job")
    assert training_failure["run_id"] == train.run_id and "anomaly_model" in training_failure["what"]
    check = next(a for a in by_kind["check_failure"] if a["partition"] == "liar.json")
    assert check["asset"] == "raw_export" and check["details"]["check"] == "claimed_count_matches"
    assert check["severity"] == "warning"
    fresh = by_kind["freshness"]
    assert len(fresh) == 1 and str(landing) in fresh[0]["what"] and "stopped" in fresh[0]["what"]

    # Every alert reached the webhook too, identical to the file; the secret never appears in the logs.
    assert hook.alerts == alerts
    assert all(r["path"].endswith("SECRET-TOKEN") for r in hook.requests)
    assert "SECRET-TOKEN" not in caplog.text


def _liar(landing, name: str) -> str:
    """An export whose claimed record count lies: its ingest run fails the (warn) claimed_count_matches check."""
    doc = json.loads(SYSTEM_35.read_text())
    doc["export_metadata"]["total_records"] = 999
    (landing / name).write_text(json.dumps(doc))
    return name


def test_a_new_sensor_starts_from_now_not_from_every_past_failure(hook, defs, instance, landing):
    """An instance that already has failed checks (and a FAIL freshness state) when the sensor starts, or a
    sensor whose cursor was reset: its first tick alerts nothing and leaves a cursor; the next failure alerts once."""
    for name in ("old-1.json", "old-2.json"):
        assert run_ingest(defs, instance, _liar(landing, name)).success
    report_freshness_failed(instance, "raw_export")
    alerts_file = get_settings().training.alerts.file

    first = _tick(defs, instance)
    assert first.cursor and "from now on" in first.skip_reason.skip_message
    assert read_alerts(alerts_file) == [] and hook.requests == [], "the past is not replayed"
    assert len(json.loads(first.cursor)["checks"]["raw_export:claimed_count_matches"]) == 2

    assert run_ingest(defs, instance, _liar(landing, "new.json")).success
    second = _tick(defs, instance, first.cursor)
    [alert] = read_alerts(alerts_file)
    assert alert["kind"] == "check_failure" and alert["partition"] == "new.json"
    assert alert["details"]["check"] == "claimed_count_matches" and hook.alerts == [alert]
    assert _tick(defs, instance, second.cursor).skip_reason, "and only once"


def _scored(instance, partition: str, version: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization("export_anomalies", partition=partition, metadata={"production_version": version})
    )


def test_verdicts_still_by_a_replaced_model_after_the_lag_alert_once_per_promotion(hook, defs, instance, monkeypatch):
    """Verdicts older than production (a freshness rule relative to production_model): after
    verdicts_max_lag_hours the exports still scored by a replaced model are named, once per promotion."""
    alerts_file = get_settings().training.alerts.file
    instance.add_dynamic_partitions("export_files", ["a.json", "b.json"])
    instance.report_runless_asset_event(dg.AssetMaterialization("production_model", metadata={"version": "v1"}))
    _scored(instance, "a.json", "v1")
    _scored(instance, "b.json", "v1")
    cursor = _tick(defs, instance).cursor
    assert read_alerts(alerts_file) == [], "every verdict is by production"

    instance.report_runless_asset_event(dg.AssetMaterialization("production_model", metadata={"version": "v2"}))
    _scored(instance, "a.json", "v2")
    cursor = _tick(defs, instance, cursor).cursor
    assert read_alerts(alerts_file) == [], "b.json is behind, but within the 1 h default window"

    monkeypatch.setenv("MCP_TRAINING_FRESHNESS__VERDICTS_MAX_LAG_HOURS", "0")  # the window has passed
    defs = build_definitions(load_settings())
    cursor = _tick(defs, instance, cursor).cursor
    [alert] = read_alerts(alerts_file)
    assert alert["kind"] == "freshness" and alert["asset"] == "export_anomalies", alert
    assert "b.json" in alert["what"] and "a.json" not in alert["what"] and "v2" in alert["what"], alert["what"]
    assert alert["details"]["scored_with"] == {"b.json": "v1"} and hook.alerts == [alert]
    _tick(defs, instance, cursor)
    assert len(read_alerts(alerts_file)) == 1, "once per promotion"


def test_a_blocked_promotion_alerts_with_the_figures_that_blocked_it(hook, data_dir, instance, landing, monkeypatch):
    """A candidate below the F1 minimum: the check-failure alert's one line carries its F1 against the minimum and
    the held-out windows it was measured on, not only what was compared."""
    monkeypatch.setenv("MCP_MODEL_EVALUATION__MIN_F1", "0.99")  # before the definitions: their settings carry it
    defs = build_definitions(get_settings())
    started = _tick(defs, instance)
    shutil.copyfile(HOSTAPD_1824, landing / HOSTAPD_1824.name)
    assert run_ingest(defs, instance, HOSTAPD_1824.name).success
    defs.resolve_job_def("train_job").execute_in_process(instance=instance, raise_on_error=False)
    _tick(defs, instance, started.cursor)
    (alert,) = [a for a in read_alerts(get_settings().training.alerts.file) if a["kind"] == "check_failure"]
    assert alert["asset"] == "model_evaluation" and alert["details"]["check"] == "meets_quality_gates"
    assert re.search(
        r"^check model_evaluation/meets_quality_gates failed: candidate fitted before the split: F1 \d\.\d{3} "
        r"\(min 0\.990\), ROC-AUC \d\.\d{3} \(min 0\.600\) on [\d,]+ held-out windows \([\d,]+ anomalous\)$",
        alert["what"],
    ), alert["what"]
    assert hook.alerts == [alert]
