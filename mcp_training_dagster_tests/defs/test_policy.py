"""The retraining policy (defs/policy.py), one trigger at a time, evaluated by Dagster's own evaluator.

One story on the real samples: train on the hostapd export, then a router whose logs look nothing like it
(the system export) arrives. Each step evaluates the automation conditions as the daemon's
retrain_automation_sensor would and asserts what a user would see: a training requested, or not."""

import pytest

import dagster as dg
from mcp_training_dagster.defs.policy import RETRAIN_CONDITION
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import materializations, md, report_freshness_failed, run_ingest

MODEL = dg.AssetKey("anomaly_model")
FAN_IN = ("horizon_records", "training_windows", "evaluation_dataset", "anomaly_model", "agent_model")


def _evaluate(defs, instance, cursor):
    return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)


def _run(defs, instance, assets, partition=None) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey(a) for a in assets], partition_key=partition
    )


def _with_code_version(defs: dg.Definitions, key: dg.AssetKey, version: str) -> dg.Definitions:
    """The same definitions after someone changed the training code (bumped its code_version)."""
    assets = [
        a.map_asset_specs(lambda s: s.replace_attributes(code_version=version) if s.key == key else s)
        if isinstance(a, dg.AssetsDefinition) and key in a.keys
        else a
        for a in defs.assets
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        sensors=defs.sensors,
        resources=defs.resources,
        executor=defs.executor,
    )


def test_every_fan_in_asset_has_the_one_policy(defs):
    for name in FAN_IN:
        assert defs.resolve_assets_def(name).automation_conditions_by_key[dg.AssetKey(name)] is RETRAIN_CONDITION


@pytest.fixture
def few_drift_windows(data_dir, monkeypatch):
    """Set before the definitions are built (the settings resource carries the settings it was built with)."""
    monkeypatch.setenv("MCP_TRAINING_DRIFT__MIN_WINDOWS", "1")  # the system export has few windows


@pytest.mark.slow  # two trainings and five Dagster runs: started early under xdist (conftest.py)
def test_each_trigger_requests_one_training_and_drift_is_measured_per_export(
    few_drift_windows, defs, instance, landing
):
    cursor = _evaluate(defs, instance, None).cursor

    # new_data: a validated export requests the whole fan-in, once.
    copy_sample(HOSTAPD_1824.name, landing)
    assert run_ingest(defs, instance, HOSTAPD_1824.name).success
    result = _evaluate(defs, instance, cursor)
    assert result.get_num_requested(MODEL) == 1
    assert defs.resolve_job_def("train_job").execute_in_process(instance=instance).success
    assert _run(defs, instance, ["drift_baseline"]).success
    result = _evaluate(defs, instance, result.cursor)
    assert result.get_num_requested(MODEL) == 0, "handled: nothing new, nothing requested"

    # The export the model was trained on does not drift from its own baseline.
    same = _run(defs, instance, ["export_anomalies", "export_drift"], HOSTAPD_1824.name)
    [check] = same.get_asset_check_evaluations()
    assert check.passed and md(materializations(same, "export_drift")[0])["max_psi"] < 0.1

    # drift: another router's export, no training triggered by its data yet (the cursor handled it) ...
    copy_sample(SYSTEM_35.name, landing)
    assert run_ingest(defs, instance, SYSTEM_35.name).success
    cursor = _evaluate(defs, instance, result.cursor).cursor  # new_data fires here; pretend it was handled
    result = _evaluate(defs, instance, dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor)
    assert result.get_num_requested(MODEL) == 0
    drifted = _run(defs, instance, ["export_anomalies", "export_drift"], SYSTEM_35.name)
    [check] = drifted.get_asset_check_evaluations()
    figures = md(materializations(drifted, "export_drift")[0])
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert figures["drifted_features"] and figures["max_psi"] > 0.1, "which features moved, by how much"
    assert drifted.success, "a WARN check alerts, it fails nothing"
    # ... makes retraining due on the next evaluation,
    result = _evaluate(defs, instance, result.cursor)
    assert result.get_num_requested(MODEL) == 1
    # ... and once a training run was created for it, drift is handled (no loop even if no new model comes out).
    assert defs.resolve_job_def("train_job").execute_in_process(instance=instance).success
    _run(defs, instance, ["drift_baseline"])
    result = _evaluate(defs, instance, result.cursor)
    assert result.get_num_requested(MODEL) == 0
    # Re-measured against the retrained production model, the export it was trained on is shown, not judged:
    # its own training data never makes retraining due again (the loop CI once caught under `mcp-training up`).
    again = _run(defs, instance, ["export_anomalies", "export_drift"], SYSTEM_35.name)
    [check] = again.get_asset_check_evaluations()
    figures = md(materializations(again, "export_drift")[0])
    assert check.passed and figures["not_new_data"] and not figures["judged"]
    assert "not new data" in check.description
    result = _evaluate(defs, instance, result.cursor)
    assert result.get_num_requested(MODEL) == 0

    # too_old: the production model's FreshnessPolicy (model_max_age_hours) turns FAIL, as the FreshnessDaemon reports it.
    report_freshness_failed(instance, "production_model")
    result = _evaluate(defs, instance, result.cursor)
    assert result.get_num_requested(MODEL) == 1
    result = _evaluate(defs, instance, result.cursor)
    assert result.get_num_requested(MODEL) == 0, "requested once, not on every tick while it stays FAIL"

    # code_changed: the training code's code_version changes.
    changed = _with_code_version(defs, MODEL, "changed-for-test")
    calm = _evaluate(defs, instance, None)
    result = _evaluate(changed, instance, calm.cursor)
    assert result.get_num_requested(MODEL) == 1


def test_the_daemon_path_evaluates_the_custom_drift_condition(defs, instance, landing):
    """The policy holds a custom condition, which the AssetDaemon cannot deserialise (it silently evaluates
    nothing): the retrain sensor must run it in the code server. Ticked here as the sensor daemon would."""
    assert not RETRAIN_CONDITION.is_serializable
    sensor = defs.resolve_sensor_def("retrain_automation_sensor")
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    copy_sample(HOSTAPD_1824.name, landing)
    assert run_ingest(defs, instance, HOSTAPD_1824.name).success
    second = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))
    requested = {k.to_user_string() for r in second.run_requests for k in (r.asset_selection or [])}
    assert {"training_windows", "anomaly_model", "model_package", "drift_baseline"} <= requested


def test_a_model_config_change_is_a_code_version_change(data_dir, monkeypatch):
    """Editing config/model_config.yaml (here through its MCP_MODEL_* override) changes the code_version of the
    assets built from the model config when the code location reloads, which is what ``code_changed`` retrains on."""
    from mcp_training_dagster.definitions import defs as code_location
    from mcp_training_dagster.defs.policy import config_version
    from mcp_training_dagster.settings import get_settings

    def code_versions() -> dict[str, str | None]:
        return {s.key.to_user_string(): s.code_version for s in code_location().resolve_all_asset_specs()}

    before, old_hash = code_versions(), config_version(get_settings())
    for name in ("anomaly_model", "training_windows"):
        assert before[name].endswith(f"+{old_hash}"), before[name]
    monkeypatch.setenv("MCP_MODEL_DETECTOR__CONTAMINATION", "0.05")
    after, new_hash = code_versions(), config_version(get_settings())
    assert new_hash != old_hash
    assert {name for name in before if before[name] != after[name]} == {"anomaly_model", "training_windows"}
    assert after["anomaly_model"].endswith(f"+{new_hash}")


def test_a_rejected_file_landing_last_does_not_hold_back_the_good_ones(defs, instance, landing):
    """A good export and then a mostly broken one land; the broken one is rejected (stored empty, its run failed).
    The good export is still trained on at once: the rejection does not leave a failed blocking check on
    validated_records that would hold every training back until some later good file arrives."""
    import json

    cursor = _evaluate(defs, instance, None).cursor
    copy_sample(HOSTAPD_1824.name, landing)
    assert run_ingest(defs, instance, HOSTAPD_1824.name).success
    records = json.loads(SYSTEM_35.read_text())["data"]
    for r in records[:30]:  # 86% of its records lose their timestamp: over the quarantine limit
        del r["timestamp"]
    (landing / "mostly_bad.json").write_text(json.dumps({"export_metadata": {}, "data": records}))
    rejected = run_ingest(defs, instance, "mostly_bad.json", raise_on_error=False)
    assert not rejected.success
    [check] = [c for c in rejected.get_asset_check_evaluations() if c.check_name == "schema_invariants"]
    assert check.passed, "the stored table (empty) keeps every invariant"
    assert "rejected" in (check.description or "")

    result = _evaluate(defs, instance, cursor)
    assert result.get_num_requested(dg.AssetKey("horizon_records")) == 1
    assert result.get_num_requested(MODEL) == 1
