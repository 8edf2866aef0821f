"""Training stage: anomaly_model (fitted detector + calibrated threshold) and its metadata document."""

from datetime import timedelta

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.assets.features import RETRAIN_CONDITION
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain.features import FEATURE_DOCS
from mcp_training_dagster.domain.training import TrainedModel, TrainingError, train_model
from mcp_training_dagster.settings import get_settings

OWNERS = ["team:ml-platform"]
_MAX_AGE = timedelta(hours=get_settings().training.model_max_age_hours)


def model_card(model: TrainedModel) -> str:
    params = model.detector.model_dump()
    kind = model.detector.kind
    rows = "\n".join(f"| {k} | {v} |" for k, v in {**params.get(kind, {}), "contamination": params["contamination"]}.items())
    return (
        f"## {kind} `{model.version}`\n\n"
        f"Trained {model.trained_at} on {model.n_windows} windows ({model.windows_by_kind}) "
        f"spanning {model.data_start} .. {model.data_end}, in {model.training_seconds:.2f} s.\n\n"
        f"**Threshold** {model.threshold:.6f}, convention `{model.score_convention}`: {model.score_definition}.\n\n"
        f"Fraction of training windows above the threshold: {model.training_flag_rate:.3%} "
        "(a calibration diagnostic, not an accuracy figure: there are no labels here).\n\n"
        f"| parameter | value |\n|---|---|\n{rows}\n"
    )


@dg.asset(
    group_name="training",
    io_manager_key="model_io_manager",
    kinds={"scikitlearn", "joblib"},
    owners=OWNERS,
    tags={"stage": "training"},
    code_version="1",
    automation_condition=RETRAIN_CONDITION,
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=_MAX_AGE),
    check_specs=[
        dg.AssetCheckSpec(
            "threshold_calibrated",
            asset="anomaly_model",
            description="fraction of training windows above the threshold is within 2x of the configured contamination",
        )
    ],
    description=(
        "Fitted scikit-learn Pipeline (log1p -> scaler -> detector from config/model_config.yaml) with its "
        "threshold calibrated on the training scores; higher score = more anomalous."
    ),
)
def anomaly_model(context: dg.AssetExecutionContext, settings: PipelineSettings, training_windows: pd.DataFrame):
    cfg = settings.get()
    try:
        model = train_model(
            training_windows,
            cfg.model.detector,
            window_minutes=cfg.model.windows.length_minutes,
            min_windows=cfg.model.training.min_training_windows,
        )
    except TrainingError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    context.log.info(f"trained {model.version} in {model.training_seconds:.2f}s, threshold {model.threshold:.5f}")
    yield dg.Output(
        model,
        metadata={
            "version": model.version,
            "detector": cfg.model.detector.kind,
            "n_windows": model.n_windows,
            "training_seconds": model.training_seconds,
            "threshold": model.threshold,
            "score_convention": model.score_convention,
            "training_flag_rate": model.training_flag_rate,
            "parameters": dg.MetadataValue.json(cfg.model.detector.model_dump()),
            "model_card": dg.MetadataValue.md(model_card(model)),
        },
    )
    c = cfg.model.detector.contamination
    yield dg.AssetCheckResult(
        check_name="threshold_calibrated",
        passed=c / 2 <= model.training_flag_rate <= c * 2,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"training_flag_rate": model.training_flag_rate, "contamination": c},
    )


def metadata_document(model: TrainedModel, export_files: list[str]) -> dict:
    """The metadata.json shape the inference side reads (evaluation comes from the evaluation stage)."""
    return {
        "model_info": {
            "version": model.version,
            "created_at": model.trained_at,
            "model_type": type(model.pipeline.named_steps["detector"]).__name__,
            "model_name": "WiFiAnomalyWindows",
            "description": "Window-level WiFi anomaly detector trained on router log exports",
            "training_source": "export_data",
            "export_files": export_files,
        },
        "training_info": {
            "training_samples": model.n_windows,
            "n_samples": model.n_windows,
            "windows_by_kind": model.windows_by_kind,
            "feature_names": list(model.feature_names),
            "feature_descriptions": {k: FEATURE_DOCS[k] for k in model.feature_names},
            "feature_count": len(model.feature_names),
            "window_minutes": model.window_minutes,
            "model_parameters": model.detector.model_dump(),
            "training_duration": model.training_seconds,
            "data_start": model.data_start,
            "data_end": model.data_end,
            "library_versions": model.library_versions,
        },
        "inference_config": {
            "threshold": model.threshold,
            "score_convention": model.score_convention,
            "score_definition": model.score_definition,
        },
        "diagnostics": {
            "training_flag_rate": model.training_flag_rate,
            "score_quantiles": model.score_quantiles,
            "note": "unsupervised diagnostics on the training windows; not accuracy",
        },
        "evaluation_info": {"status": "not_evaluated"},
        "deployment_info": {"status": "available", "deployed_at": None, "deployed_by": None},
    }


@dg.asset(
    group_name="training",
    io_manager_key="json_io_manager",
    kinds={"json"},
    owners=OWNERS,
    tags={"stage": "training"},
    code_version="1",
    automation_condition=dg.AutomationCondition.eager(),
    description="metadata.json of the current model: version, features, parameters, threshold and its sign convention.",
)
def model_metadata(context: dg.AssetExecutionContext, anomaly_model: TrainedModel) -> dg.Output[dict]:
    # The exports behind the model come from training_windows' own materialisation record (lineage),
    # so the windows table itself does not have to carry file names.
    event = context.instance.get_latest_materialization_event(dg.AssetKey("training_windows"))
    files: list[str] = []
    if event is not None and event.asset_materialization is not None:
        entry = event.asset_materialization.metadata.get("exports_in_horizon")
        files = list(entry.value) if entry is not None else []
    doc = metadata_document(anomaly_model, export_files=files)
    return dg.Output(
        doc,
        metadata={"version": anomaly_model.version, "export_files": len(files), "document": dg.MetadataValue.json(doc["model_info"])},
    )
