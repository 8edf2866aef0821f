"""The code location itself: what it contains, how it is wired, and that Dagster's CLI loads it."""

import json
import os
import subprocess
import sys
from datetime import timedelta

import dagster as dg

from mcp_training_dagster_tests.conftest import dagster_cli
from mcp_training_dagster.definitions import build_definitions
from mcp_training_dagster.settings import load_settings
from mcp_training_dagster_tests.defs.conftest import REPO_ROOT

ASSET_KEYS = {
    "raw_export",
    "validated_records",
    "quarantined_records",
    "export_windows",
    "horizon_records",
    "training_windows",
    "anomaly_model",
    "model_metadata",
    "agent_model",
    "evaluation_dataset",
    "model_evaluation",
    "model_package",
    "production_model",
    "export_anomalies",
    "export_incidents",
}
MONITORING = {"drift_baseline", "export_drift"}  # drift (defs/assets/drift.py), automated, not in train_job
FAN_IN = ASSET_KEYS - {
    "raw_export",
    "validated_records",
    "quarantined_records",
    "export_windows",
    "export_anomalies",
    "export_incidents",
}
AUTOMATED = FAN_IN | {"export_anomalies"} | MONITORING  # verdicts and drift follow the production model
ASSET_KEYS |= MONITORING


def _specs(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    return {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}


def test_definitions_load_and_validate(defs):
    dg.Definitions.validate_loadable(defs)
    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} == ASSET_KEYS


def test_module_level_defs_validate(data_dir):
    from mcp_training_dagster import definitions

    loaded = definitions.defs()  # @dg.definitions: what workspace.yaml, [tool.dagster] and [tool.dg] load
    dg.Definitions.validate_loadable(loaded)
    assert {k.to_user_string() for k in loaded.resolve_all_asset_keys()} == ASSET_KEYS


def test_loading_the_code_location_imports_no_scikit_learn(data_dir, tmp_path):
    """Every run process loads the code location before its first step (and the code server at each start and
    reload); scikit-learn and the SciPy it pulls in cost about 1 CPU-second of that, which an ingest, verdicts or
    drift run never needs for loading (domain/training.py, agent_variant.py and results.py import it where they fit
    and measure). A module-level ``import sklearn`` in anything the definitions import fails here."""
    code = (
        "import sys; import mcp_training_dagster.definitions as d; d.defs().get_repository_def(); "
        "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def _contents(defs: dg.Definitions) -> dict[str, set[str]]:
    repo = defs.get_repository_def()
    return {
        "assets": {k.to_user_string() for k in defs.resolve_all_asset_keys()},
        "checks": {k.to_user_string() for k in defs.resolve_asset_graph().asset_check_keys},
        "jobs": {j.name for j in repo.get_all_jobs()},
        "sensors": {s.name for s in repo.sensor_defs},
        "resources": set(defs.resources or {}),
    }


def test_the_defs_folder_loads_by_itself(defs):
    """``dg.load_from_defs_folder`` (what dg tools do) finds everything build_definitions has: nothing is
    wired outside defs/; owners and tags come from defs/defs.yaml either way."""
    autoloaded = dg.load_from_defs_folder(path_within_project=REPO_ROOT)
    dg.Definitions.validate_loadable(autoloaded)
    assert (
        _contents(autoloaded)
        == _contents(defs)
        == {
            "assets": ASSET_KEYS,
            "checks": {
                "raw_export:claimed_count_matches",
                "validated_records:schema_invariants",
                "training_windows:features_finite_nonnegative",
                "anomaly_model:threshold_calibrated",
                "model_evaluation:meets_quality_gates",
                "model_evaluation:not_worse_than_production",
                "export_drift:drift_within_threshold",
            },
            "jobs": {"ingest_job", "train_job", "file_to_model_job", "production_job", "verdicts_job", "__ASSET_JOB"},
            # No implicit default_automation_condition_sensor: every automated asset is the retrain or verdict sensor's.
            "sensors": {
                "export_file_sensor",
                "ingest_batch_split_sensor",
                "retrain_automation_sensor",
                "verdict_automation_sensor",
                "alert_on_run_failure",
                "alert_on_checks_and_freshness",
            },
            "resources": {"settings", "io_manager", "model_io_manager", "json_io_manager"},
        }
    )
    specs = _specs(autoloaded)
    assert {n for n, s in specs.items() if s.tags.get("scope") == "per_export"} == {
        n for n, s in specs.items() if s.partitions_def is not None
    }
    assert all(s.tags["stage"] == s.group_name and s.owners == ["team:ml-platform"] for s in specs.values())


def test_other_settings_are_used_everywhere(data_dir, tmp_path):
    """build_definitions(other) mixes in nothing from the environment: storage, the settings resource (what
    assets and sensors read at run time), sensor intervals, freshness windows and the model config's hash."""
    from mcp_training_dagster.defs.policy import config_version
    from mcp_training_dagster.settings import get_settings

    ambient = get_settings()
    other = load_settings(
        env={
            "MCP_TRAINING_DATA_DIR": str(tmp_path / "elsewhere"),
            "MCP_TRAINING_SENSOR__INTERVAL_SECONDS": "17",
            "MCP_TRAINING_MODEL_MAX_AGE_HOURS": "7",
            "MCP_TRAINING_FRESHNESS__INGEST_QUIET_HOURS": "3",
            "MCP_MODEL_DETECTOR__CONTAMINATION": "0.04",
        }
    )
    assert config_version(other) != config_version(ambient)
    built = build_definitions(other)
    for key in ("io_manager", "model_io_manager", "json_io_manager"):
        assert built.resources[key].base_path == other.asset_storage != ambient.asset_storage, key
    resolved = built.resources["settings"].get()
    assert resolved == other and resolved.landing_dir == tmp_path / "elsewhere" / "exports"
    assert built.resolve_sensor_def("export_file_sensor").minimum_interval_seconds == 17
    assert built.resolve_sensor_def("retrain_automation_sensor").minimum_interval_seconds == 17
    specs = _specs(built)
    assert specs["production_model"].freshness_policy == dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=7))
    assert specs["raw_export"].freshness_policy == dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=3))
    assert specs["anomaly_model"].code_version.endswith(f"+{config_version(other)}")
    assert specs["training_windows"].code_version.endswith(f"+{config_version(other)}")


def test_the_settings_resource_rebuilds_the_same_settings_in_another_process(data_dir, tmp_path):
    """A run worker re-imports the code location in a new process; the resource carries what its settings
    were loaded from (config folder, variables with paths resolved), so the worker gets the same settings."""
    from mcp_training_dagster.defs.resources import PipelineSettings

    other = load_settings(
        env={"MCP_TRAINING_DATA_DIR": str(tmp_path / "elsewhere"), "MCP_MODEL_DETECTOR__CONTAMINATION": "0.04"}
    )
    resource = build_definitions(other).resources["settings"]
    code = (
        "import json, sys; from mcp_training_dagster.defs.resources import PipelineSettings; "
        "print(PipelineSettings(**json.loads(sys.argv[1])).get().model_dump_json())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TRAINING_", "MCP_MODEL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(resource.model_dump())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == other.model_dump_json()
    # The Launchpad may still move the data root.
    moved = PipelineSettings(**{**resource.model_dump(), "data_dir": str(tmp_path / "moved")}).get()
    assert moved.landing_dir == tmp_path / "moved" / "exports" and moved.model == other.model


def test_lineage(defs):
    deps = {name: {d.asset_key.to_user_string() for d in spec.deps} for name, spec in _specs(defs).items()}
    assert deps["raw_export"] == set()
    assert deps["validated_records"] == {"raw_export"}
    assert deps["quarantined_records"] == {"raw_export"}
    assert deps["export_windows"] == {"validated_records"}
    assert deps["horizon_records"] == {"validated_records"}
    assert deps["training_windows"] == {"horizon_records"}
    assert deps["evaluation_dataset"] == {"horizon_records"}
    assert deps["anomaly_model"] == {"training_windows", "evaluation_dataset", "horizon_records"}
    assert deps["agent_model"] == {"horizon_records", "evaluation_dataset"}
    assert deps["model_metadata"] == {"anomaly_model", "horizon_records"}
    assert deps["model_evaluation"] == {"anomaly_model", "evaluation_dataset"}
    assert deps["model_package"] == {
        "anomaly_model",
        "model_metadata",
        "model_evaluation",
        "agent_model",
        "training_windows",
    }
    assert deps["production_model"] == {"model_package"}
    # the verdict scores the export with its routers' records from the other exports (horizon_records)
    assert deps["export_anomalies"] == {"validated_records", "horizon_records", "production_model"}
    assert deps["export_incidents"] == {"validated_records", "horizon_records"}


def test_every_asset_is_documented_and_owned(defs):
    specs = _specs(defs)
    for name, spec in specs.items():
        assert spec.group_name and spec.group_name != "default", name
        assert spec.kinds, f"{name} has no kinds"
        assert spec.owners, f"{name} has no owners"
        assert spec.description and len(spec.description) > 20, f"{name} has no real description"
    assert {n for n, s in specs.items() if s.group_name == "ingest"} == {
        "raw_export",
        "validated_records",
        "quarantined_records",
    }
    assert specs["anomaly_model"].group_name == "training"
    assert specs["model_metadata"].group_name == "training"


def test_partitioning_and_automation(defs):
    specs = _specs(defs)
    for name in ("raw_export", "validated_records", "quarantined_records", "export_windows"):
        assert isinstance(specs[name].partitions_def, dg.DynamicPartitionsDefinition), name
        assert specs[name].partitions_def.name == "export_files"
    assert specs["export_anomalies"].partitions_def.name == "export_files"
    for name in FAN_IN:
        assert specs[name].partitions_def is None, name
        assert specs[name].automation_condition is not None, f"{name} is never retrained automatically"


def test_sensors_present_and_running_by_default(defs):
    for name in ("export_file_sensor", "retrain_automation_sensor", "verdict_automation_sensor"):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, name
    ingest_sensor = defs.resolve_sensor_def("export_file_sensor")
    # ingest_job; file_to_model_job (ingest + training in one run) for one file on an idle system
    assert {job.name for job in ingest_sensor.jobs} == {"ingest_job", "file_to_model_job"}
    targeted = {}
    for name in ("retrain_automation_sensor", "verdict_automation_sensor"):
        sensor = defs.resolve_sensor_def(name)
        assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
        targeted[name] = {k.to_user_string() for k in sensor.asset_selection.resolve(defs.resolve_asset_graph())}
    assert targeted["verdict_automation_sensor"] == {"export_anomalies", "export_drift"}
    assert targeted["retrain_automation_sensor"] | targeted["verdict_automation_sensor"] == AUTOMATED
    assert not targeted["retrain_automation_sensor"] & targeted["verdict_automation_sensor"]


def test_jobs_resolve(defs):
    ingest_job = defs.resolve_job_def("ingest_job")
    train_job = defs.resolve_job_def("train_job")
    ingest_keys = {k.to_user_string() for k in ingest_job.asset_layer.executable_asset_keys}
    train_keys = {k.to_user_string() for k in train_job.asset_layer.executable_asset_keys}
    assert ingest_keys == {"raw_export", "validated_records", "quarantined_records", "export_windows"}
    assert train_keys == FAN_IN
    one_run = {k.to_user_string() for k in defs.resolve_job_def("file_to_model_job").asset_layer.executable_asset_keys}
    assert one_run == ingest_keys | train_keys | {"drift_baseline"}
    assert ingest_job.partitions_def is not None and ingest_job.partitions_def.name == "export_files"


def test_executor_in_process_by_default(defs):
    assert defs.resolve_job_def("ingest_job").executor_def.name == "in_process"
    assert defs.resolve_job_def("train_job").executor_def.name == "in_process"


def test_executor_switches_to_multiprocess(data_dir):
    env = {"MCP_TRAINING_DATA_DIR": str(data_dir), "MCP_TRAINING_EXECUTOR": "multiprocess"}
    multi = build_definitions(load_settings(env=env))
    dg.Definitions.validate_loadable(multi)
    for job in ("ingest_job", "train_job", "file_to_model_job"):
        assert multi.resolve_job_def(job).executor_def.name == "multiprocess", job


def test_executor_from_environment(data_dir, monkeypatch):
    from mcp_training_dagster.settings import get_settings

    monkeypatch.setenv("MCP_TRAINING_EXECUTOR", "multiprocess")
    multi = build_definitions(get_settings())
    assert multi.resolve_job_def("train_job").executor_def.name == "multiprocess"


def test_dagster_cli_validates_the_module(data_dir, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MCP_TRAINING_DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [dagster_cli(), "definitions", "validate", "-m", "mcp_training_dagster.definitions"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Validation successful" in proc.stdout + proc.stderr


def test_health_follows_the_production_model(defs):
    """Freshness is the production model's (what the inference side gets), not the last training attempt's."""
    specs = _specs(defs)
    assert specs["production_model"].freshness_policy is not None
    assert specs["anomaly_model"].freshness_policy is None
    graph = defs.resolve_asset_graph()
    condition = graph.get(dg.AssetKey("model_package")).automation_condition
    assert [op.get_label() for op in condition.operands] == ["eager", "all_deps_blocking_checks_passed"]


def test_secrets_stay_out_of_the_resource_config(data_dir, tmp_path, monkeypatch):
    """The resource's config is shown in the Launchpad and stored in every run's snapshot: a webhook URL's token
    or a broker's password is not copied there, and the run still gets it from its own environment."""
    hook = "https://hooks.example.invalid/services/T000/B000/s3cr3t-token"
    broker = "redis://:p4ssw0rd@127.0.0.1:6379/0"
    secret_env = {"MCP_TRAINING_ALERTS__WEBHOOK_URL": hook, "MCP_TRAINING_CELERY_BROKER": broker}
    other = load_settings(env={"MCP_TRAINING_DATA_DIR": str(tmp_path / "d"), **secret_env})
    resource = build_definitions(other).resources["settings"]
    shown = json.dumps(resource.model_dump())
    assert "s3cr3t-token" not in shown and "p4ssw0rd" not in shown
    for k, v in secret_env.items():
        monkeypatch.setenv(k, v)  # the run worker's environment (the deployment's env file)
    resolved = resource.get()
    assert resolved.training.alerts.webhook_url == hook and resolved.training.celery_broker == broker
