"""Training stage: anomaly_model (fitted detector + calibrated threshold) and its metadata document."""

from datetime import timedelta

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.assets.features import RETRAIN_CONDITION, window_spec
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain.evaluation import EvaluationSet
from mcp_training_dagster.domain.scoring import score_table
from mcp_training_dagster.domain.training import (
    calibration_card,
    AgentModel,
    TrainedModel,
    TrainingError,
    horizon_filter,
    metadata_document,
    train_agent_variant,
    train_and_select,
    union_records,
)
from mcp_training_dagster.settings import get_settings

OWNERS = ["team:ml-platform"]
_MAX_AGE = timedelta(hours=get_settings().training.model_max_age_hours)


def _metrics_table(ev: dict | None) -> str:
    if not ev:
        return "_No evaluation data: no labelled records and nothing to inject into._\n"
    rows = []
    for name, m in [("all windows", ev["overall"]), *[(f"{k} windows", v) for k, v in ev["by_kind"].items()]]:
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        pr = "n/a" if m["pr_auc"] is None else f"{m['pr_auc']:.3f}"
        rows.append(f"| {name} | {m['n_windows']} | {m['n_anomalous']} | {m['precision']:.3f} | {m['recall']:.3f} "
                    f"| {m['f1_score']:.3f} | {auc} | {pr} |")
    scen = ", ".join(f"{k} {v:.2f}" for k, v in ev["recall_by_scenario"].items()) or "n/a"
    benign = ", ".join(f"{k} {v:.2f}" for k, v in ev["benign_flag_rate"].items()) or "n/a"
    d = ev["data"]
    return (
        f"Source **{d['source']}**: {d['description']} ({d['windows']} windows, {d['anomalous_windows']} anomalous).\n\n"
        "| windows | n | anomalous | precision | recall | F1 | ROC-AUC | PR-AUC |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nDevice-window recall per scenario: {scen}.  \nFlag rate on benign lookalikes: {benign}.\n"
    )


def top_windows(model: TrainedModel, windows: pd.DataFrame, n: int = 8) -> pd.DataFrame:
    """The most anomalous training windows with the features that drove them (for the model card)."""
    return score_table(windows, model.pipeline, model.threshold, model.feature_names).head(n)


def model_card(model: TrainedModel, top_windows: pd.DataFrame | None = None) -> str:
    params = model.detector.model_dump(mode="json")
    kind = model.detector.kind
    rows = "\n".join(f"| {k} | {v} |" for k, v in {**params.get(kind, {}), "contamination": params["contamination"]}.items())
    top = ""
    if top_windows is not None and len(top_windows):
        lines = "\n".join(
            f"| {r.window_start} | {r.device_id} | {r.entity_kind} `{r.entity}` | {r.score:.4f} | {r.reasons or '-'} |"
            for r in top_windows.itertuples(index=False)
        )
        top = ("\n### Most anomalous training windows, and what drove them\n\n"
               "| window | device | entity | score | features furthest above normal (value, +standard units) |\n"
               f"|---|---|---|---|---|\n{lines}\n")
    sel = model.selection or {}
    return (
        f"## {kind} `{model.version}`\n\n"
        f"Trained {model.trained_at} on {model.n_windows} windows ({model.windows_by_kind}) "
        f"spanning {model.data_start} .. {model.data_end}, in {model.training_seconds:.2f} s. "
        f"{len(model.feature_names)} features per window (see metadata.json `feature_descriptions`).\n\n"
        f"**Threshold** {model.threshold:.6f}, convention `{model.score_convention}`: {model.score_definition}. "
        "`predict()` returns -1 exactly for those windows.\n\n"
        f"{calibration_card(model)}"
        "### Evaluation (held-out data with known labels; fitted before the split, never on it)\n\n"
        f"{_metrics_table(model.evaluation)}\n"
        f"Detector selection: {sel.get('criterion', 'n/a')}; candidates {sel.get('candidates', {})}.\n\n"
        "### Diagnostics (unsupervised, not accuracy)\n\n"
        f"Fraction of training windows above the threshold: {model.training_flag_rate:.3%}; "
        f"{ {k: v for k, v in (model.diagnostics or {}).items() if k != 'score_quantiles'} }\n"
        f"{top}\n"
        f"| parameter | value |\n|---|---|\n{rows}\n"
    )


@dg.asset(
    group_name="training",
    io_manager_key="model_io_manager",
    kinds={"scikitlearn", "joblib"},
    owners=OWNERS,
    tags={"stage": "training"},
    code_version="2",
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
def anomaly_model(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    training_windows: pd.DataFrame,
    evaluation_dataset: EvaluationSet,
):
    cfg = settings.get()
    m = cfg.model
    try:
        model = train_and_select(
            training_windows,
            m.detector,
            evaluation_dataset,
            window_minutes=m.windows.length_minutes,
            min_windows=m.training.min_training_windows,
            split_fraction=m.evaluation.split_fraction,
            stability_seeds=m.evaluation.stability_seeds,
            alarm_budget=m.alarms,
        )
    except TrainingError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    card = model_card(model, top_windows(model, training_windows))
    context.log.info(f"trained {model.version} ({model.detector.kind}) in {model.training_seconds:.2f}s, threshold {model.threshold:.5f}")
    overall = (model.evaluation or {}).get("overall", {})
    yield dg.Output(
        model,
        metadata={
            "version": model.version,
            "detector": model.detector.kind,
            "n_windows": model.n_windows,
            "training_seconds": model.training_seconds,
            "threshold": model.threshold,
            "score_convention": model.score_convention,
            "training_flag_rate": model.training_flag_rate,
            **{f"eval_{k}": float(overall[k]) for k in ("pr_auc", "roc_auc", "f1_score", "precision", "recall")
               if overall.get(k) is not None},
            "selection": dg.MetadataValue.json(model.selection or {}),
            "parameters": dg.MetadataValue.json(model.detector.model_dump(mode="json")),
            "model_card": dg.MetadataValue.md(card),
        },
    )
    c = m.detector.contamination
    yield dg.AssetCheckResult(
        check_name="threshold_calibrated",
        passed=c / 2 <= model.training_flag_rate <= c * 2,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"training_flag_rate": model.training_flag_rate, "contamination": c},
    )


@dg.asset(
    group_name="training",
    io_manager_key="json_io_manager",
    kinds={"json"},
    owners=OWNERS,
    tags={"stage": "training"},
    code_version="2",
    automation_condition=dg.AutomationCondition.eager(),
    description="metadata.json of the current model: version, features, parameters, threshold and its sign convention.",
)
def model_metadata(context: dg.AssetExecutionContext, settings: PipelineSettings, anomaly_model: TrainedModel) -> dg.Output[dict]:
    # The exports behind the model come from training_windows' own materialisation record (lineage),
    # so the windows table itself does not have to carry file names.
    event = context.instance.get_latest_materialization_event(dg.AssetKey("training_windows"))
    files: list[str] = []
    if event is not None and event.asset_materialization is not None:
        entry = event.asset_materialization.metadata.get("exports_in_horizon")
        files = list(entry.value) if entry is not None else []
    cfg = settings.get()
    doc = metadata_document(anomaly_model, export_files=files, spec=window_spec(cfg), service_timezone=cfg.training.service_timezone,
                            extra_wifi_processes=tuple(cfg.model.events.extra_wifi_processes))
    return dg.Output(
        doc,
        metadata={"version": anomaly_model.version, "export_files": len(files), "document": dg.MetadataValue.json(doc["model_info"])},
    )


@dg.asset(
    group_name="training",
    io_manager_key="model_io_manager",
    kinds={"scikitlearn", "joblib"},
    owners=OWNERS,
    tags={"stage": "training"},
    code_version="1",
    automation_condition=RETRAIN_CONDITION,
    description=(
        "The variant for today's inference agent: an unscaled IsolationForest on exactly the agent's 5-value window "
        "vector [log_count, error_count, warning_count, 0, 0] of hostapd/wpa_supplicant records."
    ),
)
def agent_model(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    validated_records: dict[str, pd.DataFrame],
    evaluation_dataset: EvaluationSet,
) -> dg.Output[AgentModel]:
    cfg = settings.get()
    records, _ = union_records(validated_records)
    in_horizon, _ = horizon_filter(records, cfg.training.training_horizon_days)
    try:
        model = train_agent_variant(in_horizon, evaluation_dataset, window_minutes=cfg.model.windows.length_minutes,
                                    contamination=cfg.model.agent_variant.contamination,
                                    random_state=cfg.model.detector.random_state)
    except TrainingError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    overall = (model.evaluation or {}).get("overall", {})
    return dg.Output(model, metadata={
        "threshold": model.threshold, "n_windows": len(model.vectors),
        **{f"eval_{k}": float(overall[k]) for k in ("pr_auc", "roc_auc", "f1_score") if overall.get(k) is not None},
    })
