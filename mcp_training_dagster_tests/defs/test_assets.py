"""The assets, executed by Dagster (ingest_job / train_job in process) on the real sample exports.

Real resources (the project's IO managers) write into the test's tmp data root; the instance is a
throwaway sqlite instance. No mocks: what is asserted is what a user would see in the UI and on disk.
"""

import hashlib
import json
from pathlib import Path

import joblib
import pandas as pd
import pytest

import dagster as dg
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import failure_text, materializations, md, run_ingest

pytestmark = pytest.mark.slow  # Dagster job runs / CLI training: not in `make test-fast`

HOSTAPD = HOSTAPD_1824.name


def _stored(assets_dir: Path, asset: str, partition: str | None = None, ext: str = ".parquet") -> Path:
    return assets_dir / asset / f"{partition}{ext}" if partition else assets_dir / f"{asset}{ext}"


def _no_temp_leftovers(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if ".tmp-" in p.name]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def _write_export(path: Path, records: list[dict], total: int | None = None) -> Path:
    meta = {
        "created_at": "2025-07-01T15:50:20",
        "total_records": total if total is not None else len(records),
        "format": "json",
    }
    path.write_text(json.dumps({"export_metadata": meta, "data": records}))
    return path


# ----------------------------------------------------------------------------- ingest: good file
def test_ingest_real_hostapd_export(defs, instance, landing, assets_dir):
    path = copy_sample(HOSTAPD, landing)
    result = run_ingest(defs, instance, HOSTAPD)
    assert result.success

    (raw,) = materializations(result, "raw_export")
    raw_md = md(raw)
    assert raw.partition == HOSTAPD
    assert raw_md["dagster/row_count"] == 1824
    assert raw_md["claimed_records"] == 1824
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert raw_md["sha256"] == digest
    assert raw_md["size_bytes"] == path.stat().st_size
    assert raw_md["container"] == "json"
    assert raw.tags["dagster/data_version"] == digest, "raw_export's data version is the file's content hash"

    (valid,) = materializations(result, "validated_records")
    valid_md = md(valid)
    assert valid_md["dagster/row_count"] == 1824
    assert valid_md["records_in"] == 1824
    assert valid_md["quarantined"] == 0
    assert valid_md["time_start"] and valid_md["time_end"] and valid_md["time_start"] < valid_md["time_end"]
    assert valid_md["time_start"].startswith("2025-05-04")
    assert valid_md["time_end"].startswith("2025-06-27")
    table_rows = [line.split("|") for line in valid_md["event_types"].splitlines()[2:]]
    assert valid_md["event_types"].startswith("| event type | records |"), "event-type table shown in the UI"
    assert sum(int(cells[2]) for cells in table_rows) == 1824, "every record has exactly one event type"
    assert valid_md["devices"]

    (quarantine,) = materializations(result, "quarantined_records")
    assert md(quarantine)["dagster/row_count"] == 0
    assert md(quarantine)["bad_fraction"] == 0.0
    assert "by_reason" in md(quarantine)

    (windows,) = materializations(result, "export_windows")
    assert md(windows)["dagster/row_count"] > 100
    assert set(md(windows)["windows_by_kind"]) == {"device", "station", "interface"}

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["schema_invariants"].passed
    assert checks["claimed_count_matches"].passed

    # Stored where the IO managers say, readable, and complete.
    stored = pd.read_parquet(_stored(assets_dir, "validated_records", HOSTAPD))
    assert len(stored) == 1824
    assert stored["id"].is_unique
    assert stored["timestamp"].is_monotonic_increasing
    assert len(pd.read_parquet(_stored(assets_dir, "raw_export", HOSTAPD))) == 1824
    assert len(pd.read_parquet(_stored(assets_dir, "quarantined_records", HOSTAPD))) == 0
    assert _stored(assets_dir, "export_windows", HOSTAPD).is_file()
    _no_temp_leftovers(assets_dir)
    assert path.read_bytes() == HOSTAPD_1824.read_bytes(), "the landing file is never modified"


def test_a_large_export_is_read_on_two_cores_into_the_one_core_table(defs, instance, landing, assets_dir, tmp_path):
    """Over 16 MiB of JSON, raw_export decodes the records in two processes (training.read_processes): the
    stored table is the one a single core makes, and the UI says how the file was read."""
    from mcp_training_dagster.domain.export_split import SPLIT_MIN_BYTES
    from mcp_training_dagster.serving.exports import read_export

    sample = json.loads(HOSTAPD_1824.read_bytes())
    copies = [{**r, "id": r["id"] + k * 10_000_000} for k in range(16) for r in sample["data"]]
    doc = {"export_metadata": {**sample["export_metadata"], "total_records": len(copies)}, "data": copies}
    path = landing / "large_export.json"
    path.write_text(json.dumps(doc, indent=2))
    assert path.stat().st_size >= SPLIT_MIN_BYTES

    result = run_ingest(defs, instance, path.name)
    assert result.success
    (raw,) = materializations(result, "raw_export")
    assert md(raw)["read_processes"] == 2
    assert md(raw)["dagster/row_count"] == len(copies)
    one_core = read_export(path)
    assert one_core.facts.read_processes == 1
    one_core.records.to_parquet(tmp_path / "one_core.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(_stored(assets_dir, "raw_export", path.name)), pd.read_parquet(tmp_path / "one_core.parquet")
    )


def test_zip_export_and_awkward_file_names(defs, instance, landing, assets_dir):
    import zipfile

    with zipfile.ZipFile(landing / "export_asus_system_19.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(SYSTEM_19, "data.json")
    odd = "Export #2 (copy) ü [v2].json"
    copy_sample(SYSTEM_35.name, landing, as_name=odd)

    zipped = run_ingest(defs, instance, "export_asus_system_19.zip")
    raw_md = md(materializations(zipped, "raw_export")[0])
    assert raw_md["container"] == "zip"
    assert raw_md["dagster/row_count"] == 19
    assert md(materializations(zipped, "validated_records")[0])["dagster/row_count"] == 19

    awkward = run_ingest(defs, instance, odd)
    assert md(materializations(awkward, "validated_records")[0])["dagster/row_count"] == 35
    stored = pd.read_parquet(_stored(assets_dir, "validated_records", odd))
    assert set(stored["source_file"]) == {odd}
    assert instance.get_materialized_partitions(dg.AssetKey("validated_records")) == {"export_asus_system_19.zip", odd}


# ------------------------------------------------------------------------ ingest: not an export
def test_not_an_export_fails_only_its_own_partition(defs, instance, landing, assets_dir):
    good = copy_sample(SYSTEM_35.name, landing)
    truncated = landing / "truncated.json"
    payload = SYSTEM_35.read_bytes()
    truncated.write_bytes(payload[: payload.rindex(b"}")])  # cut between records: clearly truncated

    bad_result = run_ingest(defs, instance, truncated.name, raise_on_error=False)
    assert not bad_result.success
    text = failure_text(bad_result)
    assert "truncated.json" in text
    assert "truncated JSON" in text, text
    failed_steps = {e.step_key for e in bad_result.get_step_failure_events()}
    assert failed_steps == {"raw_export"}
    assert not bad_result.get_asset_materialization_events()

    good_result = run_ingest(defs, instance, good.name)
    assert good_result.success
    assert md(materializations(good_result, "validated_records")[0])["dagster/row_count"] == 35

    assert not (assets_dir / "raw_export" / "truncated.json.parquet").exists()
    assert _stored(assets_dir, "validated_records", good.name).is_file()
    # The failed partition stays registered (its run failed), the good one is materialised.
    assert set(instance.get_dynamic_partitions("export_files")) == {truncated.name, good.name}
    assert instance.get_materialized_partitions(dg.AssetKey("validated_records")) == {good.name}


def test_not_an_export_messages(defs, instance, landing):
    cases = {
        "empty.json": (b"", "file is empty"),
        "no_data.json": (b'{"export_metadata": {}}', "no 'data' key"),
        "a_list.json": (b"[1, 2, 3]", "top level must be a JSON object"),
        "no_records.json": (b'{"data": []}', "holds no records"),
        "binary.json": (b'{"data": ["\xc3\x28"]}', "not UTF-8"),
    }
    for name, (content, problem) in cases.items():
        (landing / name).write_bytes(content)
        result = run_ingest(defs, instance, name, raise_on_error=False)
        assert not result.success, name
        text = failure_text(result)
        assert name in text and problem in text, text
    assert instance.get_latest_materialization_event(dg.AssetKey("raw_export")) is None


def test_export_cut_inside_a_string_is_reported_as_truncated(defs, instance, landing):
    """A copy interrupted anywhere (most of an export is string content) must say 'truncated'."""
    payload = SYSTEM_35.read_bytes()
    end = payload.index(b"FAUPGRADE") + 4  # the cut falls inside a message string
    path = landing / "cut_inside_a_string.json"
    path.write_bytes(payload[:end])
    result = run_ingest(defs, instance, path.name, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert path.name in text
    assert "truncated JSON" in text, text


# --------------------------------------------------------------------- ingest: too many bad records
def test_file_over_quarantine_limit_is_rejected_but_quarantine_kept(defs, instance, landing, assets_dir):
    records = json.loads(SYSTEM_35.read_text())["data"]
    for r in records[:30]:  # 30 of 35 records lose their timestamp: 85.7% bad, limit 50%
        del r["timestamp"]
    path = _write_export(landing / "mostly_bad.json", records)

    result = run_ingest(defs, instance, path.name, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "mostly_bad.json" in text
    assert "85.7%" in text and "50.0%" in text and "max_fraction" in text, text
    assert {e.step_key for e in result.get_step_failure_events()} == {"validate_export"}

    # The quarantine table is written (so the rejected records can be inspected) ...
    (q,) = materializations(result, "quarantined_records")
    assert md(q)["dagster/row_count"] == 30
    stored_q = pd.read_parquet(_stored(assets_dir, "quarantined_records", path.name))
    assert len(stored_q) == 30
    assert set(stored_q["reason"]) == {"missing_timestamp"}
    assert set(stored_q["field"]) == {"timestamp"}
    originals = [json.loads(text) for text in stored_q["record"]]
    assert all(rec.get("timestamp") is None for rec in originals)
    assert sorted(rec["id"] for rec in originals) == sorted(r["id"] for r in records[:30])
    # ... and the validated table is stored EMPTY and marked rejected, so no earlier version of the
    # file can keep feeding training.
    (v,) = materializations(result, "validated_records")
    assert md(v)["rejected"] is True and md(v)["dagster/row_count"] == 0
    assert len(pd.read_parquet(_stored(assets_dir, "validated_records", path.name))) == 0
    assert not materializations(result, "export_windows")
    _no_temp_leftovers(assets_dir)


def test_file_under_quarantine_limit_is_accepted(defs, instance, landing):
    records = json.loads(SYSTEM_35.read_text())["data"]
    records[0]["timestamp"] = "not a time"
    records[1]["id"] = records[2]["id"]  # a duplicate id: removed, but not counted as bad
    path = _write_export(landing / "few_bad.json", records)
    result = run_ingest(defs, instance, path.name)
    q_md = md(materializations(result, "quarantined_records")[0])
    assert q_md["dagster/row_count"] == 2
    assert q_md["duplicates"] == 1
    assert "invalid_timestamp" in q_md["by_reason"] and "duplicate_id" in q_md["by_reason"]
    assert md(materializations(result, "validated_records")[0])["dagster/row_count"] == 33


# ----------------------------------------------------------------------------------------- train
def test_train_job_on_good_and_failed_partitions(defs, instance, landing, assets_dir, settings):
    for sample in (HOSTAPD_1824, SYSTEM_35, SYSTEM_19):
        copy_sample(sample.name, landing)
        assert run_ingest(defs, instance, sample.name).success
    (landing / "broken.json").write_text('{"data": [')
    assert not run_ingest(defs, instance, "broken.json", raise_on_error=False).success
    assert len(instance.get_dynamic_partitions("export_files")) == 4

    result = defs.resolve_job_def("train_job").execute_in_process(instance=instance)
    assert result.success, failure_text(result)

    tw = md(materializations(result, "training_windows")[0])
    hr = md(materializations(result, "horizon_records")[0])  # the fan-in: union and horizon, once
    assert hr["exports_loaded"] == 3, "the failed partition is skipped, not fatal"
    assert hr["exports_in_horizon"] == sorted([HOSTAPD, SYSTEM_35.name, SYSTEM_19.name])
    # system_19 is a subset of system_35 (same ids): counted once.
    assert hr["cross_file_duplicates"] == 19
    assert hr["records_distinct"] == 1824 + 35
    assert hr["id_conflicts_kept"] == 0
    assert tw["records_in_horizon"] == hr["records_in_horizon"] == hr["dagster/row_count"]
    assert tw["dagster/row_count"] > 1000
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["features_finite_nonnegative"].passed

    model_mat = materializations(result, "anomaly_model")[0]
    am = md(model_mat)
    assert am["score_convention"] == "higher_is_more_anomalous"
    assert isinstance(am["threshold"], float)
    assert am["training_seconds"] >= 0
    assert am["n_windows"] == tw["dagster/row_count"]
    assert am["version"] in am["model_card"]
    assert "Threshold" in am["model_card"]
    # the shipped samples' router logs only crond/WATCHDOG for days: most training windows are the silence,
    # which the check says instead of comparing them with a contamination the threshold no longer uses
    tc = checks["threshold_calibrated"]
    assert tc.passed and "expected alarms a router-day (budget" in (tc.description or "")

    # Storage: the model, its metadata document and the windows, nothing half-written.
    model_path = _stored(assets_dir, "anomaly_model", ext=".joblib")
    meta_path = _stored(assets_dir, "model_metadata", ext=".json")
    windows_path = _stored(assets_dir, "training_windows")
    for p in (model_path, meta_path, windows_path):
        assert p.is_file(), p
    _no_temp_leftovers(assets_dir)

    model = joblib.load(model_path)
    assert model.version == am["version"]
    assert model.threshold == pytest.approx(am["threshold"])
    windows = pd.read_parquet(windows_path)
    scores = model.score(windows)
    assert len(scores) == len(windows)
    # verdicts come from the calibration (per-kind tail thresholds): the training flag rate is theirs
    assert (scores > model.decision_threshold).mean() == pytest.approx(model.training_flag_rate)
    # on windows with records (quiet windows of a silent router are flagged by the silence rule, one incident)
    active = (windows["n_records"] > 0).to_numpy()
    assert 0 < (scores[active] > model.decision_threshold).mean() <= 0.05

    doc = json.loads(meta_path.read_text())
    assert doc["model_info"]["version"] == f"model_{am['version']}"  # the folder name, as the inference side wants
    assert doc["model_info"]["export_files"] == sorted([HOSTAPD, SYSTEM_35.name, SYSTEM_19.name])
    assert doc["inference_config"]["threshold"] == pytest.approx(am["threshold"])
    assert doc["inference_config"]["score_convention"] == "higher_is_more_anomalous"
    assert doc["training_info"]["training_samples"] == am["n_windows"]
    mm = md(materializations(result, "model_metadata")[0])
    assert mm["version"] == am["version"]
    assert mm["export_files"] == 3

    # Evaluation: injected episodes in the held-out part of the real stream, figures with their source.
    ed = md(materializations(result, "evaluation_dataset")[0])
    assert ed["source"] == "injected" and ed["anomalous_windows"] > 0
    assert ed["held_out_router_days"] > 0  # what the injected prevalence was scaled to
    basic = doc["evaluation_info"]["basic_metrics"]
    assert doc["evaluation_info"]["source"] == "injected"
    assert {"f1_score", "precision", "recall", "roc_auc", "pr_auc", "threshold_value"} <= set(basic)
    assert basic["threshold_value"] == pytest.approx(am["threshold"])
    me = md(materializations(result, "model_evaluation")[0])
    assert me["pr_auc"] == pytest.approx(basic["pr_auc"]) and me["source"] == "injected"
    assert checks["meets_quality_gates"].passed and checks["not_worse_than_production"].passed

    # Package: registered, promoted (first model), in the inference contract's layout.
    pkg = md(materializations(result, "model_package")[0])
    assert pkg["version"] == am["version"] and pkg["promoted"] is True and pkg["production"] == am["version"]
    folder = Path(pkg["package_path"])
    assert folder.name == f"model_{am['version']}" and folder.parent == settings.models_dir
    for name in (
        "model.joblib",
        "metadata.json",
        "deployment_manifest.json",
        "README.md",
        "requirements.txt",
        "validate_model.py",
        "score_export.py",
    ):
        assert (folder / name).is_file(), name
    assert Path(pkg["package_zip"]).name == f"model_{am['version']}_deployment.zip"
    assert (settings.models_dir / f"model_{am['version']}_agent5" / "metadata.json").is_file()
    assert "### Evaluation" in pkg["model_card"]

    # The production model, and its verdict on an export (through lineage: export_anomalies reads production_model).
    prod = md(materializations(result, "production_model")[0])
    assert prod["version"] == am["version"]
    verdict = defs.resolve_job_def("verdicts_job").execute_in_process(instance=instance, partition_key=HOSTAPD)
    va = md(materializations(verdict, "export_anomalies")[0])
    assert va["production_version"] == am["version"]
    assert 0 < va["flagged"] < va["dagster/row_count"]
    table = pd.read_parquet(_stored(assets_dir, "export_anomalies", HOSTAPD))
    assert list(table.columns[:3]) == ["router", "device_id", "entity"]
    assert set(table["router"]) == {"RT-AX3000-4040-62971F1-C"}  # the hostname the export gives, not only an id


def test_train_job_fails_clearly_with_too_little_data(defs, instance, landing):
    copy_sample(SYSTEM_19.name, landing)
    assert run_ingest(defs, instance, SYSTEM_19.name).success
    result = defs.resolve_job_def("train_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "min_training_windows" in text, text
    assert instance.get_latest_materialization_event(dg.AssetKey("anomaly_model")) is None


def test_train_job_before_any_export_fails_clearly(defs, instance):
    """Training with nothing ingested yet: a plain 'not enough data' failure, not a type-check error."""
    result = defs.resolve_job_def("train_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "DagsterTypeCheckDidNotPass" not in text, text
    assert "min_training_windows" in text, text


def test_rejected_new_version_of_a_file_stops_feeding_training(defs, instance, landing, assets_dir):
    records = json.loads(SYSTEM_35.read_text())["data"]
    path = _write_export(landing / "changes.json", records)
    assert run_ingest(defs, instance, path.name).success
    assert len(pd.read_parquet(_stored(assets_dir, "validated_records", path.name))) == 35

    for r in records[:30]:  # the file is replaced by a mostly broken version
        del r["timestamp"]
    _write_export(path, records)
    assert not run_ingest(defs, instance, path.name, raise_on_error=False).success
    assert len(pd.read_parquet(_stored(assets_dir, "validated_records", path.name))) == 0


def test_failed_gate_means_no_package_whichever_run_materialises_it(data_dir, monkeypatch, landing):
    """The daemon may run model_package in a run of its own: a failed blocking check still means no package."""
    monkeypatch.setenv("MCP_MODEL_EVALUATION__MIN_F1", "0.99")
    from mcp_training_dagster.definitions import build_definitions
    from mcp_training_dagster.settings import get_settings

    settings = get_settings()
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        for sample in (HOSTAPD_1824, SYSTEM_35):
            copy_sample(sample.name, landing)
            assert run_ingest(defs, instance, sample.name).success
        trained = defs.resolve_job_def("train_job").execute_in_process(instance=instance, raise_on_error=False)
        checks = {c.check_name: c for c in trained.get_asset_check_evaluations()}
        assert not checks["meets_quality_gates"].passed
        assert not materializations(trained, "model_package")

        alone = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("model_package")], raise_on_error=False
        )
        assert alone.success, failure_text(alone)
        assert not materializations(alone, "model_package")
        blocked = [e for e in alone.all_events if e.event_type_value == "ASSET_OBSERVATION"]
        assert blocked and "meets_quality_gates failed" in str(
            blocked[0].asset_observation_data.asset_observation.metadata["blocked_because"].value
        )
    assert not list(settings.models_dir.glob("model_*")), "a failed blocking check means no package"
