"""Feature stage: per-file windows (drift checks and scoring of one export) and the training fan-in."""

import numpy as np
import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.serving.features import FEATURE_COLUMNS, WindowSpec, build_windows
from mcp_training_dagster.domain.report import frame_fingerprint, markdown_table
from mcp_training_dagster.domain.training import horizon_filter, union_records
from mcp_training_dagster.settings import Settings

# The retraining policy (triggers and guards) lives in one place: defs/policy.py.
from mcp_training_dagster.defs.policy import RETRAIN_CONDITION, with_model_config


def window_spec(settings: Settings) -> WindowSpec:
    w = settings.model.windows
    return WindowSpec(
        length_minutes=w.length_minutes,
        entities=tuple(w.entities),
        burst_seconds=w.burst_seconds,
        silence_cap_hours=w.silence_cap_hours,
    )


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
    windows = build_windows(validated_records, window_spec(settings.get()))
    return dg.Output(windows, metadata=window_metadata(windows))


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
    description=(
        "Fan-in: validated records of every export inside the training horizon (measured back from the newest "
        "record seen), de-duplicated by id ACROSS files because exports overlap, aggregated into feature windows."
    ),
)
def training_windows(
    context: dg.AssetExecutionContext, settings: PipelineSettings, validated_records: dict[str, pd.DataFrame]
):
    cfg = settings.get()
    records, union = union_records(validated_records)
    in_horizon, cutoff = horizon_filter(records, cfg.training.training_horizon_days)
    windows = build_windows(in_horizon, window_spec(cfg))
    used = sorted(in_horizon["source_file"].unique().tolist()) if len(in_horizon) else []
    context.log.info(
        f"{len(validated_records)} exports, {len(records)} distinct records ({union.identical} identical copies counted "
        f"once, {union.id_conflicts} records reusing another event's id kept), {len(in_horizon)} in the horizon "
        f"-> {len(windows)} windows"
    )
    for line in union.lines():
        context.log.warning(line)
    yield dg.Output(
        windows,
        metadata={
            **window_metadata(windows),
            "exports_loaded": len(validated_records),
            "exports_in_horizon": dg.MetadataValue.json(used),
            "records_distinct": len(records),
            "records_in_horizon": len(in_horizon),
            "cross_file_duplicates": union.identical,
            "id_conflicts_kept": union.id_conflicts,
            "records_by_export": dg.MetadataValue.md(markdown_table(union.by_file)),
            "horizon_cutoff": str(cutoff) if cutoff is not None else "",
        },
        data_version=dg.DataVersion(frame_fingerprint(windows)),
    )
    values = windows.loc[:, list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    bad = int((~np.isfinite(values) | (values < 0)).any(axis=1).sum()) if len(values) else 0
    yield dg.AssetCheckResult(check_name="features_finite_nonnegative", passed=bad == 0, metadata={"bad_rows": bad})
