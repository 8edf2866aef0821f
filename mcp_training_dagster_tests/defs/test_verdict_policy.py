"""Verdicts follow the production model (defs/policy.py, ``VERDICT_CONDITION``), seen from the automation
sensor's side: the policy is evaluated once per tick on a real instance, as ``retrain_automation_sensor``
does, with the materialisations a real run records (reported here directly, so the test can order them the
way the race orders them in a live deployment).

The race it pins down (issue 7, seen in the e2e test under ``mcp-training up``): a verdict run that started
on the old model finished just after the promotion's production_model materialisation. Dagster's eager()
counts that materialisation as having handled the promotion, so the export stayed on the old model.
"""

import pytest

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster_tests.defs.conftest import Ticks

pytestmark = pytest.mark.slow

PARTITION = "export_a.json"
VERDICTS = [dg.AssetKey("export_anomalies"), dg.AssetKey("export_drift")]
UPSTREAM = ("raw_export", "validated_records", "export_windows")


def _materialise(instance: dg.DagsterInstance, asset: str, partition: str | None = None, **metadata: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=partition, metadata=metadata))


def _promote(instance: dg.DagsterInstance, version: str) -> None:
    _materialise(instance, "production_model", version=version)


def _verdicts(instance: dg.DagsterInstance, scored_with: str) -> None:
    for asset in ("export_anomalies", "export_drift"):
        _materialise(instance, asset, PARTITION, production_version=scored_with)


@pytest.fixture
def ticks(defs: dg.Definitions, instance: dg.DagsterInstance) -> Ticks:
    """One ingested export whose verdicts were scored by production model v1, all settled."""
    instance.add_dynamic_partitions(export_files.name, [PARTITION])
    for asset in UPSTREAM:
        _materialise(instance, asset, PARTITION)
    _materialise(instance, "horizon_records")  # the verdict's router context (every export's records)
    _promote(instance, "v1")
    _verdicts(instance, "v1")
    t = Ticks(defs, instance, VERDICTS)
    t.requested_partitions()  # whatever the first look at this history requests is not what this test is about
    return t


def test_a_verdict_finishing_just_after_a_promotion_with_the_old_model_is_rescored(ticks, instance):
    assert ticks.requested_partitions() == {}
    # Within one tick: the promotion lands, then the verdict run that was scoring with v1 records its result.
    _promote(instance, "v2")
    _verdicts(instance, "v1")
    assert ticks.requested_partitions() == {"export_anomalies": [PARTITION]}  # export_drift follows it (it reads it)
    # The re-score ran with v2: nothing more to do.
    _verdicts(instance, "v2")
    assert ticks.requested_partitions() == {}
    assert ticks.requested_partitions() == {}


def test_a_verdict_already_on_the_new_model_is_not_rescored_again(ticks, instance):
    # The verdict run saw the registry's pointer move (it re-checks after scoring) and scored with v2.
    _promote(instance, "v2")
    _verdicts(instance, "v2")
    assert ticks.requested_partitions() == {}
    assert ticks.requested_partitions() == {}


def test_a_promotion_rescores_every_export_once(ticks, instance):
    _promote(instance, "v2")
    assert ticks.requested_partitions() == {"export_anomalies": [PARTITION]}
    _verdicts(instance, "v2")
    assert ticks.requested_partitions() == {}


def test_a_stale_verdict_waits_while_a_training_is_in_progress_then_is_rescored(ticks, defs, instance):
    _promote(instance, "v2")
    _verdicts(instance, "v1")
    # A training run (which ends with production_model) is created before the next tick.
    run = instance.create_run_for_job(job_def=defs.resolve_job_def("train_job"))
    instance.report_dagster_event(
        dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name), run_id=run.run_id
    )
    assert ticks.requested_partitions() == {}  # never score while production may be about to change
    instance.report_run_failed(run)
    assert ticks.requested_partitions() == {"export_anomalies": [PARTITION]}


def test_a_training_that_promotes_nothing_rescores_no_verdict(ticks, instance):
    """Every training attempt rewrites horizon_records (identical inputs, a failed gate): that alone re-scores no
    export. A fleet's 1,500 exports would otherwise be scored again (150 runs) after every attempt."""
    _materialise(instance, "horizon_records")
    assert ticks.requested_partitions() == {}
    _promote(instance, "v2")  # a promotion still re-scores every export
    assert ticks.requested_partitions() == {"export_anomalies": [PARTITION]}
