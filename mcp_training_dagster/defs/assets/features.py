"""Feature stage: per-file windows (drift checks and scoring of one export), the training fan-in (the records in
the horizon, once) and its windows."""

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.io_managers import ParquetReader, StagedParquet
from mcp_training_dagster.serving.features import FEATURE_COLUMNS, RECORD_COLUMNS, build_windows
from mcp_training_dagster.domain.horizon import write_horizon_records
from mcp_training_dagster.domain.stored_windows import CHUNK_RECORDS, write_training_windows
from mcp_training_dagster.domain.report import markdown_table

# The retraining policy (triggers and guards) lives in one place: defs/policy.py.
from mcp_training_dagster.defs.policy import RETRAIN_CONDITION, with_model_config


def window_metadata(windows: pd.DataFrame) -> dict:
    by_kind = {str(k): int(v) for k, v in windows["entity_kind"].value_counts().items()}
    return {
        "dagster/row_count": len(windows),
        "windows_by_kind": dg.MetadataValue.json(by_kind),
        "first_window": str(windows["window_start"].min()) if len(windows) else "",
        "last_window": str(windows["window_start"].max()) if len(windows) else "",
        "feature_count": len(FEATURE_COLUMNS),
    }


@dg.asset(
    partitions_def=export_files,
    group_name="features",
    kinds={"pandas", "parquet"},
    code_version="2",
    description="Feature windows of this export alone (same features as training): for drift checks and scoring.",
)
def export_windows(settings: PipelineSettings, validated_records: dict[str, pd.DataFrame]) -> dg.Output:
    spec = settings.get().model.windows.spec()
    windows = {key: build_windows(records, spec) for key, records in validated_records.items()}
    if len(windows) == 1:
        (table,) = windows.values()
        return dg.Output(table, metadata=window_metadata(table))
    # an ingest batch: one table per partition, the metadata counted over the batch
    return dg.Output(windows, metadata={**window_metadata(pd.concat(windows.values())), "files": len(windows)})


HORIZON_RECORDS_DESCRIPTION = (
    "Fan-in: validated records of every export inside the training horizon (measured back from the newest "
    "record seen), each event once ACROSS files because exports overlap, ordered by (timestamp, id); the exports "
    "that contributed are its source_file values. Read column-wise from the validated partitions."
)


@dg.asset(
    group_name="features",
    kinds={"pandas", "parquet"},
    code_version="1",
    automation_condition=RETRAIN_CONDITION,
    ins={"validated_records": dg.AssetIn(partition_mapping=dg.AllPartitionMapping(), metadata={"lazy": True})},
    description=HORIZON_RECORDS_DESCRIPTION,
)
def horizon_records(
    context: dg.AssetExecutionContext, settings: PipelineSettings, validated_records: dict[str, ParquetReader]
):
    cfg = settings.get()
    staged = StagedParquet()  # written here a row group at a time, published as it is by the Parquet IO manager
    try:
        result = write_horizon_records(validated_records, cfg.training.training_horizon_days, staged.path)
    except BaseException:
        staged.cleanup()
        raise
    union = result.union
    context.log.info(
        f"{len(validated_records)} exports, {result.distinct} distinct records ({union.identical} identical copies "
        f"counted once, {union.id_conflicts} records reusing another event's id kept), {result.rows} in the horizon"
    )
    for line in union.lines():
        context.log.warning(line)
    return dg.Output(
        staged,
        metadata={
            "exports_loaded": len(validated_records),
            "exports_in_horizon": dg.MetadataValue.json(result.exports),
            "records_distinct": result.distinct,
            "records_in_horizon": result.rows,
            "cross_file_duplicates": union.identical,
            "id_conflicts_kept": union.id_conflicts,
            "records_by_export": dg.MetadataValue.md(markdown_table(union.by_file)),
            "horizon_cutoff": str(result.cutoff) if result.cutoff is not None else "",
        },
    )


TRAINING_WINDOWS_DESCRIPTION = (
    "Feature windows of every record inside the training horizon (horizon_records), built chunk by chunk of whole "
    f"routers (at most {CHUNK_RECORDS:,} records each) and stored as one Parquet file with one row group per chunk: never every "
    "window in memory at once. Rows are stored chunk by chunk; `entity_order` with `window_start` gives back "
    "build_windows' order (the data version is the fingerprint of the windows in that order). Its readers take it "
    "lazily, row group by row group (domain/stored_windows.py StoredWindows)."
)


@dg.asset(
    group_name="features",
    kinds={"pandas", "parquet"},
    code_version=with_model_config("3"),
    automation_condition=RETRAIN_CONDITION,
    check_specs=[
        dg.AssetCheckSpec(
            "features_finite_nonnegative",
            asset="training_windows",
            blocking=True,
            description="every feature is a finite, non-negative number",
        )
    ],
    ins={"horizon_records": dg.AssetIn(metadata={"lazy": True})},
    description=TRAINING_WINDOWS_DESCRIPTION,
)
def training_windows(context: dg.AssetExecutionContext, settings: PipelineSettings, horizon_records: ParquetReader):
    staged = StagedParquet()  # written here chunk by chunk, published as it is by the Parquet IO manager
    try:
        # the records' only reference is handed over (see write_training_windows): no second copy of them
        report = write_training_windows(
            horizon_records(list(RECORD_COLUMNS)), settings.get().model.windows.spec(), staged.path
        )
    except BaseException:
        staged.cleanup()
        raise
    context.log.info(
        f"{report.records} records in the horizon -> {report.windows} windows in {report.chunks} device chunks"
    )
    by_kind = dict(sorted(report.by_kind.items(), key=lambda kv: -kv[1]))
    yield dg.Output(
        staged,
        metadata={
            "dagster/row_count": report.windows,
            "windows_by_kind": dg.MetadataValue.json(by_kind),
            "first_window": str(report.first_window) if report.windows else "",
            "last_window": str(report.last_window) if report.windows else "",
            "feature_count": len(FEATURE_COLUMNS),
            "records_in_horizon": report.records,
            "device_chunks": report.chunks,
            "records_per_chunk_max": CHUNK_RECORDS,
        },
        data_version=dg.DataVersion(report.fingerprint),
    )
    yield dg.AssetCheckResult(
        check_name="features_finite_nonnegative", passed=report.bad_rows == 0, metadata={"bad_rows": report.bad_rows}
    )
