"""Retraining through Declarative Automation, evaluated with Dagster's own evaluator (no daemon).

``dg.evaluate_automation_conditions`` requests nothing on its very first evaluation (no cursor yet),
so each test evaluates once before anything is materialised and passes the cursor on.
"""

import pytest

import dagster as dg
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import run_ingest

pytestmark = pytest.mark.slow  # Dagster job runs / CLI training: not in `make test-fast`

TRAINING = ("training_windows", "anomaly_model", "model_metadata")


def _requested(result) -> dict[str, int]:
    return {name: result.get_num_requested(dg.AssetKey(name)) for name in TRAINING}


def test_new_validated_data_requests_retraining(defs, instance, landing):
    baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert baseline.total_requested == 0

    copy_sample(HOSTAPD_1824.name, landing)
    assert run_ingest(defs, instance, HOSTAPD_1824.name).success

    after_ingest = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
    assert _requested(after_ingest) == {name: 1 for name in TRAINING}, "the whole chain retrains in one go"
    # Ingest assets are the sensor's business, never requested by automation.
    for name in ("raw_export", "validated_records", "quarantined_records", "export_windows"):
        assert after_ingest.get_num_requested(dg.AssetKey(name)) == 0, name

    # Once handled (here: the chain materialised as the requested run would), the new production model
    # re-scores the export's verdicts, and then nothing more is asked.
    assert defs.resolve_job_def("train_job").execute_in_process(instance=instance).success
    promoted = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after_ingest.cursor)
    assert promoted.get_num_requested(dg.AssetKey("export_anomalies")) == 1
    assert promoted.total_requested == 1
    assert (
        defs.resolve_job_def("verdicts_job")
        .execute_in_process(instance=instance, partition_key=HOSTAPD_1824.name)
        .success
    )
    settled = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=promoted.cursor)
    assert settled.total_requested == 0


def test_failed_partition_does_not_block_retraining(defs, instance, landing):
    baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)

    copy_sample(HOSTAPD_1824.name, landing)
    (landing / "permanently_bad.json").write_text("definitely not JSON")
    assert not run_ingest(defs, instance, "permanently_bad.json", raise_on_error=False).success
    assert run_ingest(defs, instance, HOSTAPD_1824.name).success
    assert set(instance.get_dynamic_partitions("export_files")) == {"permanently_bad.json", HOSTAPD_1824.name}

    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
    assert _requested(result) == {name: 1 for name in TRAINING}

    # And the requested run really succeeds with the failed partition still registered.
    run = defs.resolve_job_def("train_job").execute_in_process(instance=instance)
    assert run.success


def test_new_file_after_training_requests_retraining_again(defs, instance, landing):
    copy_sample(HOSTAPD_1824.name, landing)
    assert run_ingest(defs, instance, HOSTAPD_1824.name).success
    assert defs.resolve_job_def("train_job").execute_in_process(instance=instance).success
    baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)

    copy_sample(SYSTEM_35.name, landing)
    assert run_ingest(defs, instance, SYSTEM_35.name).success
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
    assert result.get_num_requested(dg.AssetKey("training_windows")) == 1
    assert result.get_num_requested(dg.AssetKey("anomaly_model")) == 1
