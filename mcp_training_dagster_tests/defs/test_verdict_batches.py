"""Verdicts over several exports in one run: a promotion re-scores every export, and a fleet has thousands.

The automation sensor hands the due verdicts to Dagster as one backfill; the verdict assets' backfill policy
(``verdicts_per_run``) splits it into partition ranges, and a range run must store exactly what a run per
export stores.
"""

from pathlib import Path

import pandas as pd
import pytest

import dagster as dg
from dagster._core.definitions.automation_tick_evaluation_context import build_run_requests_with_backfill_policies
from dagster._core.definitions.events import AssetKeyPartitionKey
from mcp_training_dagster.cli.runs import Progress
from mcp_training_dagster.definitions import build_definitions
from mcp_training_dagster.defs.policy import DRIFT_CHECK_KEY
from mcp_training_dagster.defs.sensors import RANGE_END, RANGE_START
from mcp_training_dagster.settings import Settings
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import Ticks
from mcp_training_dagster_tests.defs.test_batches import run_batch, stored

pytestmark = pytest.mark.slow

VERDICTS = [dg.AssetKey("export_anomalies"), dg.AssetKey("export_drift")]


@pytest.fixture
def two_per_run(settings: Settings) -> dg.Definitions:
    return build_definitions(
        settings.model_copy(update={"training": settings.training.model_copy(update={"verdicts_per_run": 2})})
    )


def _verdicts(
    defs: dg.Definitions, instance: dg.DagsterInstance, names: list[str], **tags: str
) -> dg.ExecuteInProcessResult:
    return defs.get_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=VERDICTS, tags={RANGE_START: names[0], RANGE_END: names[-1], **tags}
    )


def test_a_promotion_rescores_every_export_in_ranges_that_store_what_a_run_each_stores(
    two_per_run, settings, instance, landing, assets_dir: Path
):
    defs = two_per_run
    names = [copy_sample(s.name, landing).name for s in (HOSTAPD_1824, SYSTEM_35, SYSTEM_19)]
    assert run_batch(defs, instance, names).success
    ticks = Ticks(defs, instance, VERDICTS)  # the automation sensor, ticking from here on
    trained = defs.resolve_job_def("train_job").execute_in_process(instance=instance)
    version = next(m for m in trained.asset_materializations_for_node("production_model")).metadata["version"].value
    baseline = defs.get_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("drift_baseline")]
    )
    assert baseline.success

    # What the automation sensor requests once production exists: every export's verdicts (one backfill) ...
    due = ticks.requested_partitions()
    assert due == {"export_anomalies": sorted(names), "export_drift": sorted(names)}
    # ... which Dagster's backfill daemon runs as the policy says: verdicts_per_run (2) exports per run.
    graph = defs.resolve_asset_graph()
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        runs = build_run_requests_with_backfill_policies(
            [AssetKeyPartitionKey(k, n) for k in VERDICTS for n in names], graph, instance
        )
    assert sorted((r.tags[RANGE_START], r.tags[RANGE_END]) for r in runs) == [
        (names[0], names[1]),
        (names[2], names[2]),
    ]
    assert all(set(r.asset_selection or []) == set(VERDICTS) for r in runs)

    # One range run over the three exports: a materialisation per export and asset, the figures per export.
    lines: list[str] = []  # what `mcp-training up` prints as runs finish
    progress = Progress(instance, settings.models_dir, "http://127.0.0.1:3000", lines.append)
    batch = _verdicts(defs, instance, names)
    assert batch.success
    progress.poll()
    assert f"export_anomalies, export_drift [{names[0]} .. {names[-1]}, 3 files]: success" in "\n".join(lines)
    for asset in ("export_anomalies", "export_drift"):
        mats = [m for m in batch.get_asset_materialization_events() if m.asset_key == dg.AssetKey(asset)]
        assert sorted(m.partition for m in mats) == sorted(names), asset
    anomalies = next(m for m in batch.asset_materializations_for_node("export_anomalies")).metadata
    assert anomalies["production_version"].value == version and anomalies["files"].value == 3
    assert all(n in anomalies["by_file"].value for n in names)
    checks = batch.get_asset_check_evaluations()
    assert [c.asset_check_key for c in checks] == [DRIFT_CHECK_KEY]  # one evaluation for the run's exports
    assert "exports" in (checks[0].description or "")
    in_range = {(a, n): stored(assets_dir, a, n) for a in ("export_anomalies", "export_drift") for n in names}
    assert all(len(in_range["export_anomalies", n]) for n in names)

    # The same exports, a run each: the same tables.
    for n in names:
        job = defs.get_implicit_global_asset_job_def()
        assert job.execute_in_process(instance=instance, asset_selection=VERDICTS, partition_key=n).success
    for (asset, n), table in in_range.items():
        pd.testing.assert_frame_equal(stored(assets_dir, asset, n), table, obj=f"{asset}[{n}]")

    # Scored by production: nothing left due.
    assert ticks.requested_partitions() == {}


def test_the_verdicts_backfill_policy_follows_settings(defs, two_per_run):
    for d, n in ((defs, 10), (two_per_run, 2)):
        graph = d.resolve_asset_graph()
        for key in VERDICTS:
            assert graph.get(key).backfill_policy == dg.BackfillPolicy.multi_run(n)
        assert graph.get(dg.AssetKey("export_incidents")).backfill_policy is None
