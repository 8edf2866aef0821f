"""Ingest batches: several new files in one run over a partition key range, as export_file_sensor requests them.

A batch must store exactly what a run per file stores, and a batch with a bad file must end with every good file
ingested and the bad one failed alone (ingest_batch_split_sensor), as if each file had landed by itself.
"""

import hashlib
from pathlib import Path

import pandas as pd

import dagster as dg
from mcp_training_dagster.cli.train import ingested_sha256
from mcp_training_dagster.defs.partitions import export_files, files_in_range
from mcp_training_dagster.defs.sensors import RANGE_END, RANGE_START, ingest_batch_split_sensor
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import run_ingest

PER_FILE = ("raw_export", "validated_records", "quarantined_records", "export_windows")


def run_batch(defs: dg.Definitions, instance: dg.DagsterInstance, names: list[str]) -> dg.ExecuteInProcessResult:
    """What the daemon does for the sensor's batch request: the partitions added in order, one run over their range."""
    instance.add_dynamic_partitions(
        export_files.name, [n for n in names if not instance.has_dynamic_partition(export_files.name, n)]
    )
    return defs.resolve_job_def("ingest_job").execute_in_process(
        instance=instance, tags={RANGE_START: names[0], RANGE_END: names[-1]}, raise_on_error=False
    )


def stored(assets_dir: Path, asset: str, name: str) -> pd.DataFrame:
    return pd.read_parquet(assets_dir / asset / f"{name}.parquet")


def test_a_batch_stores_each_file_as_a_run_of_its_own_would(defs, instance, landing, assets_dir):
    names = [copy_sample(s.name, landing).name for s in (HOSTAPD_1824, SYSTEM_35, SYSTEM_19)]
    batch = run_batch(defs, instance, names)
    assert batch.success
    assert files_in_range(instance, names[0], names[-1]) == names
    in_batch = {(a, n): stored(assets_dir, a, n) for a in PER_FILE for n in names}

    # one materialisation per file and asset, and the per-file facts in the batch's metadata
    for asset in PER_FILE:
        mats = batch.asset_materializations_for_node("validate_export" if "records" in asset else asset)
        keys = {m.partition for m in mats if m.asset_key == dg.AssetKey(asset)}
        assert keys == set(names), asset
    raw = next(m for m in batch.asset_materializations_for_node("raw_export"))
    assert raw.metadata["files"].value == 3
    assert raw.metadata["batch_records"].value == sum(len(in_batch["raw_export", n]) for n in names)
    # the batch's total is not passed off as each file's row count (the UI shows dagster/row_count per partition)
    assert "dagster/row_count" not in raw.metadata
    for n in names:  # what `mcp-training train` reads to skip a file it has seen
        assert ingested_sha256(instance, n) == hashlib.sha256((landing / n).read_bytes()).hexdigest()
    validated = next(
        m for m in batch.asset_materializations_for_node("validate_export") if m.asset_key.path == ["validated_records"]
    )
    assert validated.metadata["rejected"].value == []
    for n in names:
        assert n in validated.metadata["by_file"].value
    checks = {c.check_name: c.passed for c in batch.get_asset_check_evaluations()}
    assert checks == {"claimed_count_matches": True, "schema_invariants": True}

    # the same files, a run each: the same tables
    for n in names:
        assert run_ingest(defs, instance, n).success
    for (asset, n), table in in_batch.items():
        pd.testing.assert_frame_equal(stored(assets_dir, asset, n), table, obj=f"{asset}[{n}]")
    assert ingested_sha256(instance, names[0]) == hashlib.sha256((landing / names[0]).read_bytes()).hexdigest()


def failure_of(result: dg.ExecuteInProcessResult) -> dg.DagsterEvent:
    return next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)


def test_a_failed_batch_is_split_into_a_run_per_file(defs, instance, landing, assets_dir):
    baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    good = copy_sample(SYSTEM_19.name, landing).name
    (landing / "garbage.json").write_text("this is not JSON at all {")
    names = [good, "garbage.json", copy_sample(SYSTEM_35.name, landing).name]
    batch = run_batch(defs, instance, names)
    assert not batch.success
    message = "\n".join(
        e.step_failure_data.error.message for e in batch.all_events if e.is_step_failure and e.step_failure_data.error
    )
    assert "1 of the 3 files of this batch" in message and "garbage.json" in message
    assert good not in message.split("\n", 1)[1]  # only the bad file is named as a problem
    assert not (assets_dir / "raw_export" / f"{good}.parquet").exists()  # nothing stored from a failed step

    run = instance.get_run_by_id(batch.run_id)
    context = dg.build_run_status_sensor_context(
        sensor_name="ingest_batch_split_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure_of(batch),
    ).for_run_failure()
    requests = ingest_batch_split_sensor(context)
    # the bad file's run first: the good files' runs, created after it, judge validated_records' blocking check
    assert [r.partition_key for r in requests] == ["garbage.json", good, names[2]]
    assert len({r.run_key for r in requests}) == 3 and all(batch.run_id in r.run_key for r in requests)

    # each file alone: the good ones ingested, the bad one fails with its own message
    outcome = {r.partition_key: run_ingest(defs, instance, r.partition_key, raise_on_error=False) for r in requests}
    assert outcome[good].success and outcome[names[2]].success
    assert not outcome["garbage.json"].success
    assert (assets_dir / "validated_records" / f"{good}.parquet").exists()
    # ... so the burst still retrains (a failed run's planned check, if it were the latest, would block it)
    requested = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
    assert requested.get_num_requested(dg.AssetKey("training_windows")) == 1


def test_a_run_of_one_file_is_not_split(defs, instance, landing):
    name = copy_sample(SYSTEM_19.name, landing).name
    (landing / name).write_text("{ not json")
    alone = run_ingest(defs, instance, name, raise_on_error=False)
    assert not alone.success
    context = dg.build_run_status_sensor_context(
        sensor_name="ingest_batch_split_sensor",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(alone.run_id),
        dagster_event=failure_of(alone),
    ).for_run_failure()
    assert isinstance(ingest_batch_split_sensor(context), dg.SkipReason)


def test_up_names_a_batch_by_its_files(defs, instance, landing, settings):
    """What `mcp-training up` prints for a finished batch run: its first and last file and how many."""
    from mcp_training_dagster.cli.runs import Progress

    lines: list[str] = []
    progress = Progress(instance, settings.models_dir, "http://127.0.0.1:3000", lines.append)
    names = [copy_sample(s.name, landing).name for s in (HOSTAPD_1824, SYSTEM_35)]
    instance.add_dynamic_partitions(export_files.name, names)
    defs.resolve_job_def("ingest_job").execute_in_process(
        instance=instance, tags={RANGE_START: names[0], RANGE_END: names[1], "export/batch_files": "2"}
    )
    progress.poll()
    assert any(f"ingest_job [{names[0]} .. {names[1]}, 2 files]: success" in line for line in lines), lines
