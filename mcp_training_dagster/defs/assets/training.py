"""Training stage: anomaly_model (fitted detector + calibrated threshold) and its metadata document."""

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.policy import FOLLOWS_MODEL, RETRAIN_CONDITION, with_model_config
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.defs.ui import export_links, score_distribution
from mcp_training_dagster.domain.evaluation import EvaluationSet
from mcp_training_dagster import __version__
from mcp_training_dagster.domain import model_card
from mcp_training_dagster.domain.agent_variant import AGENT_COLUMNS, AgentModel, train_agent_variant
from mcp_training_dagster.domain.object_registry import open_registry
from mcp_training_dagster.domain.stored_windows import StoredWindows, WindowTable
from mcp_training_dagster.domain.report import text_fingerprint
from mcp_training_dagster.domain import training as training_code
from mcp_training_dagster.domain.model_metadata import metadata_document
from mcp_training_dagster.domain.training import TrainedModel, TrainingError, train_and_select_scored
from mcp_training_dagster.domain.training_scores import as_table
from mcp_training_dagster.io_managers import ParquetReader


# The exports behind a model are the source_file values of horizon_records (an input: lineage, not a lookup).
EXPORTS_ONLY = {"columns": ["source_file"]}


def exports_of(horizon_records: pd.DataFrame) -> list[str]:
    """The exports with records inside the horizon, sorted."""
    return sorted(horizon_records["source_file"].astype("str").unique().tolist()) if len(horizon_records) else []


# Bump when the training code changes what a model is: part of the input fingerprint, so a code change retrains.
TRAINING_CODE_VERSION = "4"
# The asset's code version: its input (training_windows) is read lazily from the chunked file; the model is the
# one TRAINING_CODE_VERSION "4" fits (same inputs, same fingerprint, same model). "6": above the fit cap the
# diagnostics are of a sample of whole routers (diagnostics.sample), which changes them there, nowhere below. "7":
# above the cap every statistic of the training windows is of that sample (its figures), none of every window. "8": a
# local outlier factor fits at most model.detector.local_outlier_factor.max_fit_windows (the config's hash, part of
# the fingerprint, changes with the new field too).
ANOMALY_MODEL_CODE_VERSION = "8"
# training_windows read on demand (domain/stored_windows.py StoredWindows): fits read their subsample, scorings stream.
WINDOWS_LAZY = {"lazy": True}
FORCE_TAG = "mcp/force_retrain"
# Dagster concurrency pool of the steps that fit models. The shipped instance configs limit every pool to one step
# at a time (config/dagster*.yaml, concurrency.pools.default_limit: 1): two training runs created in the same second
# (the landing sensor's file_to_model_job and automation's run on a drift or code-change trigger, each seeing no
# other) then fit one after the other, and the second finds identical inputs already trained (already_trained).
TRAINING_POOL = "training"


def input_fingerprint(cfg, training_windows: pd.DataFrame | WindowTable, evaluation: EvaluationSet) -> str:
    """Same data, same evaluation set, same model config, same training code -> same fingerprint. The windows'
    part is their frame fingerprint in build_windows' order (the stored table's footer holds it)."""
    return text_fingerprint(
        as_table(training_windows).fingerprint(),
        *evaluation.fingerprints(),
        cfg.model.model_dump_json(),
        TRAINING_CODE_VERSION,
        __version__,
    )


def already_trained(context: dg.AssetExecutionContext, models_location: str, fingerprint: str) -> str | None:
    """Why training these inputs again would be no new work, or None.

    A registered model with the same fingerprint, or this asset's own last materialisation with the
    same fingerprint (its verdict, promoted or blocked, stands). ``mcp/force_retrain`` overrides."""
    if context.run.tags.get(FORCE_TAG) == "true":
        return None
    same = open_registry(models_location).find_by_fingerprint(fingerprint)
    if same:
        return f"inputs identical to registered model {same}"
    event = context.instance.get_latest_materialization_event(dg.AssetKey("anomaly_model"))
    mat = event.asset_materialization if event else None
    entry = mat.metadata.get("input_fingerprint") if mat else None
    if mat is not None and entry is not None and entry.value == fingerprint:
        version = mat.metadata.get("version")
        return f"inputs identical to the last training ({version.value if version else 'unknown version'}), whose verdict stands"
    return None


@dg.asset(
    group_name="training",
    io_manager_key="model_io_manager",
    kinds={"scikitlearn", "joblib"},
    code_version=with_model_config(ANOMALY_MODEL_CODE_VERSION),
    automation_condition=RETRAIN_CONDITION,
    pool=TRAINING_POOL,
    output_required=False,
    ins={"horizon_records": dg.AssetIn(metadata=EXPORTS_ONLY), "training_windows": dg.AssetIn(metadata=WINDOWS_LAZY)},
    description=(
        "Fitted scikit-learn Pipeline (log1p -> scaler -> detector from config/model_config.yaml) with its "
        "threshold calibrated on the training scores; higher score = more anomalous. Fitted on at most 1M windows "
        "(a seeded uniform subsample above that, recorded as fit_sample in its metadata), read from training_windows "
        "on demand, row group by row group. Above 1M windows no statistic scores every training window: the "
        "diagnostics (seed stability, later windows' flag rate), the training flag rate and score quantiles, the "
        "score distribution and the model card's top windows are of a seeded sample of whole routers of about 1M "
        "windows (diagnostics_sample names them); below, of every window. Not materialised when its "
        "inputs (data, evaluation set, config, training code) are identical to a model already trained."
    ),
)
def anomaly_model(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    training_windows: ParquetReader,
    evaluation_dataset: EvaluationSet,
    horizon_records: pd.DataFrame,
):
    cfg = settings.get()
    m = cfg.model
    windows = StoredWindows(training_windows)
    fingerprint = input_fingerprint(cfg, windows, evaluation_dataset)
    why_not = already_trained(context, cfg.models_location, fingerprint)
    if why_not:
        context.log.info(f"no new model: {why_not}")
        return
    try:
        trained = train_and_select_scored(
            windows,
            m.detector,
            evaluation_dataset,
            window_minutes=m.windows.length_minutes,
            min_windows=m.training.min_training_windows,
            split_fraction=m.evaluation.split_fraction,
            stability_seeds=m.evaluation.stability_seeds,
            alarm_budget=m.alarms,
            input_fingerprint=fingerprint,
            fit_cap=training_code.FIT_WINDOWS_CAP,  # read at run time (a test may lower it)
        )
    except TrainingError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    model = trained.model
    card = model_card.render(model, trained.top)
    context.log.info(
        f"trained {model.version} ({model.detector.kind}) in {model.training_seconds:.2f}s, threshold {model.threshold:.5f}"
    )
    figures = model.evaluation.overall.figures() if model.evaluation is not None else {}
    yield dg.Output(
        model,
        metadata={
            "version": model.version,
            "input_fingerprint": fingerprint,
            "detector": model.detector.kind,
            "n_windows": model.n_windows,
            "training_seconds": model.training_seconds,
            "threshold": model.threshold,
            "score_convention": model.score_convention,
            "training_flag_rate": model.training_flag_rate,
            **{f"eval_{k}": v for k, v in figures.items()},
            "model_card": dg.MetadataValue.md(card),
            "fit_sample": dg.MetadataValue.json(model.fit_sample or {"windows": model.n_windows, "chosen": "all"}),
            "diagnostics_sample": dg.MetadataValue.json(
                (model.diagnostics or {}).get("sample") or {"windows": model.n_windows, "chosen": "all"}
            ),
            "score_distribution": score_distribution(
                model, scores=trained.scores, sample=(model.diagnostics or {}).get("sample")
            ),
            "trained_on": export_links(exports_of(horizon_records), cfg.training.alerts.webserver_base_url),
        },
    )


@dg.asset_check(
    asset=anomaly_model,
    description="the threshold keeps its promise: with a false-alarm budget, each kind's expected alarms per "
    "router-day are within its budget; without one (legacy), the training flag rate is within 2x of contamination",
)
def threshold_calibrated(settings: PipelineSettings, anomaly_model: TrainedModel) -> dg.AssetCheckResult:
    rate = anomaly_model.training_flag_rate
    cal = anomaly_model.calibration
    sample = (anomaly_model.diagnostics or {}).get("sample") or {}
    # above the fit cap the rate is of a sample of whole routers: said beside it
    of = (
        f" (of {sample['windows']} sampled: diagnostics_sample)"
        if "training_flag_rate" in sample.get("figures", ())
        else ""
    )
    if cal:
        kinds = cal["thresholds"]
        over = [k for k, v in kinds.items() if v["expected_alarms_per_router_day"] > v["budget_per_router_day"] + 1e-9]
        return dg.AssetCheckResult(
            passed=not over,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(
                f"{k}: {v['expected_alarms_per_router_day']} expected alarms a router-day (budget "
                f"{v['budget_per_router_day']})"
                for k, v in kinds.items()
            )
            + f"; training windows flagged {rate:.1%}{of} (quiet windows under the silence rule and alarms' extent "
            "included)",
            metadata={"training_flag_rate": rate, "over_budget": over},
        )
    c = settings.get().model.detector.contamination
    return dg.AssetCheckResult(
        passed=c / 2 <= rate <= c * 2,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"training windows flagged {rate:.1%}{of}, contamination {c:.1%} (pass: within 2x)",
        metadata={"training_flag_rate": rate, "contamination": c},
    )


@dg.asset(
    group_name="training",
    io_manager_key="json_io_manager",
    kinds={"json"},
    code_version="2",
    automation_condition=FOLLOWS_MODEL,
    ins={"horizon_records": dg.AssetIn(metadata=EXPORTS_ONLY)},
    description="metadata.json of the current model: version, features, parameters, threshold and its sign convention.",
)
def model_metadata(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    anomaly_model: TrainedModel,
    horizon_records: pd.DataFrame,
) -> dg.Output[dict]:
    files = exports_of(horizon_records)
    cfg = settings.get()
    doc = metadata_document(
        anomaly_model,
        export_files=files,
        spec=cfg.model.windows.spec(),
        service_timezone=cfg.training.service_timezone,
        extra_wifi_processes=tuple(cfg.model.events.extra_wifi_processes),
    )
    return dg.Output(
        doc,
        metadata={
            "version": anomaly_model.version,
            "export_files": len(files),
            "document": dg.MetadataValue.json(doc["model_info"]),
            "trained_on": export_links(files, cfg.training.alerts.webserver_base_url),
        },
    )


@dg.asset(
    group_name="training",
    io_manager_key="model_io_manager",
    kinds={"scikitlearn", "joblib"},
    code_version="1",
    automation_condition=RETRAIN_CONDITION,
    pool=TRAINING_POOL,
    ins={"horizon_records": dg.AssetIn(metadata={"columns": list(AGENT_COLUMNS)})},
    description=(
        "The variant for today's inference agent: an unscaled IsolationForest on exactly the agent's 5-value window "
        "vector [log_count, error_count, warning_count, 0, 0] of hostapd/wpa_supplicant records."
    ),
)
def agent_model(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    horizon_records: pd.DataFrame,
    evaluation_dataset: EvaluationSet,
) -> dg.Output[AgentModel]:
    cfg = settings.get()
    in_horizon = horizon_records
    if in_horizon.empty:
        raise dg.Failure(
            description="no validated records in the training horizon: ingest an export first", allow_retries=False
        )
    try:
        model = train_agent_variant(
            in_horizon,
            evaluation_dataset,
            window_minutes=cfg.model.windows.length_minutes,
            contamination=cfg.model.agent_variant.contamination,
            random_state=cfg.model.detector.random_state,
        )
    except TrainingError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    figures = (
        model.evaluation.overall.figures(("pr_auc", "roc_auc", "f1_score")) if model.evaluation is not None else {}
    )
    return dg.Output(
        model,
        metadata={
            "threshold": model.threshold,
            "n_windows": len(model.vectors),
            **{f"eval_{k}": v for k, v in figures.items()},
        },
    )
