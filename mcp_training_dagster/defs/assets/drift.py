"""Monitoring stage: the training baseline of each packaged model and the drift of every export against
the production model's baseline (a WARN asset check: it alerts and makes retraining due, it blocks nothing)."""

import json
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import pandas as pd

import dagster as dg
from upath import UPath
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.defs.policy import VERDICT_CONDITION
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.settings import DriftConfig
from mcp_training_dagster.domain.drift import (
    FLAG_SHARE_OVER,
    DriftReport,
    build_baseline,
    compare,
    drift_features,
    flagged_share,
    not_new_data,
)
from mcp_training_dagster.domain.stored_windows import StoredWindows
from mcp_training_dagster.domain.report import markdown_table
from mcp_training_dagster.domain.training import TrainedModel
from mcp_training_dagster.domain.training_scores import flagged_share_of, windows_with_records
from mcp_training_dagster.io_managers import ParquetReader

DRIFT_CHECK = "drift_within_threshold"


def baseline_path(models_location: str | Path, version: str) -> UPath:
    """One small JSON per model version beside the registry (a local folder, or the object-store prefix of the
    distributed deployment): a rollback finds its model's baseline."""
    return UPath(str(models_location)) / "drift_baselines" / f"{version}.json"


@dg.asset(
    group_name="monitoring",
    io_manager_key="json_io_manager",
    kinds={"json"},
    code_version="3",  # "3": above the fit cap the flagged share is of training's sample of whole routers
    automation_condition=dg.AutomationCondition.eager(),
    ins={"training_windows": dg.AssetIn(metadata={"lazy": True})},
    description=(
        "The packaged model's training baseline for drift: per model feature, quantile bin edges and the share of "
        "training windows (with records) in each bin, the share of training windows the model flagged, and the "
        "exports it was trained on. Reads training_windows row group by row group: the verdicts chunk by chunk, "
        "the features only of the windows with records. Above the fit cap the flagged share is of the sample of "
        "whole routers the model's training statistics are of (flag_rate_sample). "
        "Written to models/drift_baselines/<version>.json, read by export_drift for the production version."
    ),
)
def drift_baseline(
    settings: PipelineSettings,
    model_package: dict,
    anomaly_model: TrainedModel,
    model_metadata: dict,
    training_windows: ParquetReader,
) -> dg.Output[dict]:
    cfg = settings.get()
    if model_package.get("version") != anomaly_model.version:
        raise dg.Failure(
            description=f"package {model_package.get('version')} is not model {anomaly_model.version}",
            allow_retries=False,
        )
    # The flagged share as the verdicts compute it (the same scorer export_anomalies uses), so the export's
    # share and the baseline's are comparable.
    windows = StoredWindows(training_windows)
    share = flagged_share_of(anomaly_model, windows)
    baseline = build_baseline(
        windows_with_records(windows, drift_features(anomaly_model.feature_names)),
        anomaly_model.feature_names,
        flag_rate=share or 0.0,
        version=anomaly_model.version,
        bins=cfg.training.drift.bins,
    )
    baseline["flag_rate_over"] = FLAG_SHARE_OVER
    sample = (anomaly_model.diagnostics or {}).get("sample") or {}
    if "drift_baseline.flag_rate" in sample.get("figures", ()):  # above the fit cap: of training's sample
        baseline["flag_rate_sample"] = sample
    # Drift is about new data. An export the model was trained on, or one that ends before its training data
    # does (left out by the horizon), is not: export_drift shows its figures but does not judge it, so a
    # retrain never "drifts" from its own past (which would retrain again, for nothing, forever).
    baseline["exports"] = list(model_metadata.get("model_info", {}).get("export_files", []))
    baseline["data_end"] = anomaly_model.data_end
    path = baseline_path(cfg.models_location, anomaly_model.version)
    text = json.dumps(baseline, indent=1)
    if "://" in str(cfg.models_location):  # an object-store PUT is atomic
        path.write_text(text)
    else:  # a local folder: write aside, then rename
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    means = pd.DataFrame(
        [{"feature": k, "mean": v["mean"], "bins": len(v["shares"])} for k, v in baseline["features"].items()]
    )
    return dg.Output(
        baseline,
        metadata={
            "version": anomaly_model.version,
            "windows_with_records": baseline["windows"],
            "training_flag_rate": baseline["flag_rate"],
            "path": dg.MetadataValue.path(str(path)),
            "features": dg.MetadataValue.md(markdown_table(means, digits=4)),
        },
    )


@dg.asset(
    partitions_def=export_files,
    deps=["drift_baseline"],
    group_name="monitoring",
    kinds={"pandas", "parquet"},
    code_version="1",
    automation_condition=VERDICT_CONDITION,
    ins={
        "export_windows": dg.AssetIn(metadata={"lazy": True}),
        "export_anomalies": dg.AssetIn(metadata={"lazy": True}),
    },
    check_specs=[
        dg.AssetCheckSpec(
            DRIFT_CHECK,
            asset="export_drift",
            blocking=False,
            description="no model feature with PSI above drift.threshold and the flagged share within "
            "drift.flag_share_threshold of training (WARN: alerts and makes retraining due)",
        )
    ],
    description="This export's drift against the production model's training baseline: PSI and KS per feature on "
    "the windows with records, and the change in the share of windows the production model flags. Over several "
    "exports in one run (verdicts_per_run), each is judged alone and the check fails if any drifted.",
)
def export_drift(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    export_windows: dict[str, ParquetReader],
    export_anomalies: dict[str, ParquetReader],
    production_model: dict,
):
    d = settings.get().training.drift
    version = production_model["version"]
    keys = list(context.partition_keys)
    if missing := [k for k in keys if k not in export_windows or k not in export_anomalies]:
        raise dg.Failure(description=f"no windows or verdicts stored for {', '.join(missing)}", allow_retries=False)
    path = baseline_path(settings.get().models_location, version)
    if not path.exists():
        context.log.warning(f"no drift baseline for production model {version} ({path}); drift not judged")
        empty = pd.DataFrame(columns=["feature", "psi", "ks", "baseline_mean", "export_mean", "drifted"])
        yield dg.Output(
            empty if len(keys) == 1 else {k: empty for k in keys},
            metadata={"production_version": version, "judged": False},
        )
        yield dg.AssetCheckResult(
            check_name=DRIFT_CHECK,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"no baseline for production model {version}",
            metadata={"judged": False},
        )
        return
    baseline = json.loads(path.read_text())
    judged = {k: export_drift_of(k, export_windows[k](), export_anomalies[k](), baseline, d) for k in keys}
    for key, j in judged.items():
        context.log.info(f"drift of {key} vs {version}: {j.summary}")
    if len(keys) == 1:
        yield from _one_drift(version, d.threshold, judged[keys[0]])
    else:
        yield from _range_drift(version, d.threshold, judged)


@dataclass(frozen=True)
class ExportDrift:
    """One export judged against the baseline: the report, whether it counts (new data) and its summary line."""

    report: DriftReport
    not_new: str | None
    flag_rate: float | None

    @property
    def judged(self) -> bool:
        return self.report.enough and not self.not_new

    @property
    def passed(self) -> bool:
        return bool(self.not_new) or self.report.passed

    @property
    def summary(self) -> str:
        s = self.report.summary()
        return f"{self.not_new}: not new data, not judged ({s})" if self.not_new else s


def export_drift_of(
    key: str, windows: pd.DataFrame, anomalies: pd.DataFrame, baseline: dict, d: DriftConfig
) -> ExportDrift:
    not_new = not_new_data(key, windows, baseline)
    flagged = anomalies["is_anomaly"] if "is_anomaly" in anomalies.columns else pd.Series(dtype=bool)
    if baseline.get("flag_rate_over") == FLAG_SHARE_OVER:
        flag_rate = flagged_share(anomalies, windows) if len(flagged) else None
    else:  # a baseline written before: a share of every window, so the export's is too
        flag_rate = float(flagged.mean()) if len(flagged) else None
    report = compare(
        windows,
        baseline,
        flag_rate=flag_rate,
        threshold=d.threshold,
        flag_share_threshold=d.flag_share_threshold,
        min_windows=d.min_windows,
    )
    return ExportDrift(report=report, not_new=not_new or None, flag_rate=flag_rate)


def _figures(version: str, threshold: float, j: ExportDrift) -> dict[str, Any]:
    r = j.report
    return {
        "production_version": version,
        "judged": j.judged,
        "not_new_data": bool(j.not_new),
        "windows_with_records": r.windows,
        "max_psi": r.max_psi,
        "drifted_features": dg.MetadataValue.json(r.drifted),
        "flag_rate": j.flag_rate if j.flag_rate is not None else 0.0,
        "baseline_flag_rate": r.baseline_flag_rate,
        "flag_share_change": r.flag_share_change or 0.0,
        "threshold": threshold,
    }


def _one_drift(version: str, threshold: float, j: ExportDrift):
    figures = _figures(version, threshold, j)
    yield dg.Output(
        j.report.table,
        metadata={
            **figures,
            "dagster/row_count": len(j.report.table),
            "drift": dg.MetadataValue.md(f"**{j.summary}**\n\n" + markdown_table(j.report.table, digits=4)),
        },
    )
    yield dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=j.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=j.summary,
        metadata={
            **figures,
            "psi_by_feature": dg.MetadataValue.json(dict(zip(j.report.table["feature"], j.report.table["psi"]))),
        },
    )


def _range_drift(version: str, threshold: float, judged: dict[str, ExportDrift]):
    """One output and one check for the run's exports: Dagster keeps one metadata set per output and one check
    evaluation per run, so the check fails if any export drifted and names each (by_file has every export)."""
    rows = [
        {
            "file": k,
            "judged": j.judged,
            "passed": j.passed,
            "windows_with_records": j.report.windows,
            "max_psi": j.report.max_psi,
            "flag_share_change": j.report.flag_share_change,
            "drifted": ", ".join(j.report.drifted),
        }
        for k, j in judged.items()
    ]
    drifted = {k: j for k, j in judged.items() if not j.passed}
    description = (
        f"{len(drifted)} of {len(judged)} exports drifted: "
        + "; ".join(f"{k}: {j.summary}" for k, j in drifted.items())
        if drifted
        else f"none of {len(judged)} exports drifted"
    )
    by_file = dg.MetadataValue.md(markdown_table(pd.DataFrame(rows), digits=4))
    figures: dict[str, Any] = {
        "production_version": version,
        "files": len(judged),
        "judged": sum(j.judged for j in judged.values()),
        "drifted_files": dg.MetadataValue.json(sorted(drifted)),
        "threshold": threshold,
    }
    yield dg.Output(
        {k: j.report.table for k, j in judged.items()},
        metadata={
            **figures,
            "dagster/row_count": sum(len(j.report.table) for j in judged.values()),
            "by_file": by_file,
        },
    )
    yield dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        description=description[:2000],
        metadata={**figures, "by_file": by_file},
    )
