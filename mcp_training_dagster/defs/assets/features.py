"""Feature stage: per-file windows (drift checks and scoring of one export), the training fan-in (the records in
the horizon, once) and its windows."""

import numpy as np
import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.io_managers import ParquetReader
from mcp_training_dagster.serving.features import FEATURE_COLUMNS, RECORD_COLUMNS, build_windows
from mcp_training_dagster.domain.horizon import select_records
from mcp_training_dagster.domain.report import frame_fingerprint, markdown_table

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
def export_windows(settings: PipelineSettings, validated_records: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    windows = build_windows(validated_records, settings.get().model.windows.spec())
    return dg.Output(windows, metadata=window_metadata(windows))


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
) -> dg.Output[pd.DataFrame]:
    cfg = settings.get()
    result = select_records(validated_records, cfg.training.training_horizon_days)
    union = result.union
    context.log.info(
        f"{len(validated_records)} exports, {result.distinct} distinct records ({union.identical} identical copies "
        f"counted once, {union.id_conflicts} records reusing another event's id kept), {len(result.records)} in the horizon"
    )
    for line in union.lines():
        context.log.warning(line)
    return dg.Output(
        result.records,
        metadata={
            "exports_loaded": len(validated_records),
            "exports_in_horizon": dg.MetadataValue.json(result.exports),
            "records_distinct": result.distinct,
            "records_in_horizon": len(result.records),
            "cross_file_duplicates": union.identical,
            "id_conflicts_kept": union.id_conflicts,
            "records_by_export": dg.MetadataValue.md(markdown_table(union.by_file)),
            "horizon_cutoff": str(result.cutoff) if result.cutoff is not None else "",
        },
    )


@dg.asset(
    group_name="features",
    kinds={"pandas", "parquet"},
    code_version=with_model_config("2"),
    automation_condition=RETRAIN_CONDITION,
    check_specs=[
        dg.AssetCheckSpec(
            "features_finite_nonnegative",
            asset="training_windows",
            blocking=True,
            description="every feature is a finite, non-negative number",
        )
    ],
    ins={"horizon_records": dg.AssetIn(metadata={"columns": list(RECORD_COLUMNS)})},
    description="Feature windows of every record inside the training horizon (horizon_records).",
)
def training_windows(context: dg.AssetExecutionContext, settings: PipelineSettings, horizon_records: pd.DataFrame):
    windows = build_windows(horizon_records, settings.get().model.windows.spec())
    context.log.info(f"{len(horizon_records)} records in the horizon -> {len(windows)} windows")
    yield dg.Output(
        windows,
        metadata={**window_metadata(windows), "records_in_horizon": len(horizon_records)},
        data_version=dg.DataVersion(frame_fingerprint(windows)),
    )
    bad_rows = np.zeros(len(windows), dtype=bool)
    for name in FEATURE_COLUMNS:  # column by column: no float64 copy of the whole table
        values = windows[name].to_numpy()
        bad_rows |= ~np.isfinite(values) | (values < 0)
    bad = int(bad_rows.sum())
    yield dg.AssetCheckResult(check_name="features_finite_nonnegative", passed=bad == 0, metadata={"bad_rows": bad})
