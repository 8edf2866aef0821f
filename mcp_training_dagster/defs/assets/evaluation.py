"""Evaluation stage: held-out data with known labels, and the figures that gate promotion."""

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.assets.features import RETRAIN_CONDITION, window_spec
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain.evaluation import (
    EvaluationSet,
    build_evaluation_set,
    evaluate_on,
    meets_quality_gates,
    not_worse_than,
    time_split,
)
from mcp_training_dagster.domain.features import KEY_COLUMNS, empty_windows
from mcp_training_dagster.domain.registry import ModelRegistry, RegistryError
from mcp_training_dagster.domain.packaging import load_package
from mcp_training_dagster.domain.scenarios import read_labels
from mcp_training_dagster.domain.scoring import anomaly_scores, feature_matrix
from mcp_training_dagster.domain.training import TrainedModel, horizon_filter, union_records

OWNERS = ["team:ml-platform"]


def side_file_labels(landing_dir, source_files: list[str]) -> pd.DataFrame | None:
    """``<export>.labels.csv`` files beside the exports in the landing folder (id,is_anomaly[,scenario])."""
    frames = [lab for name in source_files if (lab := read_labels(landing_dir / name)) is not None]
    return pd.concat(frames, ignore_index=True).drop_duplicates("id") if frames else None


@dg.asset(
    group_name="evaluation",
    io_manager_key="model_io_manager",
    kinds={"pandas", "joblib"},
    owners=OWNERS,
    tags={"stage": "evaluation"},
    code_version="1",
    automation_condition=RETRAIN_CONDITION,
    description=(
        "Held-out evaluation data: the last part of the training horizon in time, with labels from the exports' "
        "side files when present, otherwise with known attack episodes injected into the real stream."
    ),
)
def evaluation_dataset(
    context: dg.AssetExecutionContext, settings: PipelineSettings, validated_records: dict[str, pd.DataFrame]
) -> dg.Output[EvaluationSet]:
    cfg = settings.get()
    ev = cfg.model.evaluation
    records, _ = union_records(validated_records)
    in_horizon, _ = horizon_filter(records, cfg.training.training_horizon_days)
    spec = window_spec(cfg)
    if in_horizon.empty:  # training reports the lack of data (min_training_windows); nothing to evaluate on
        empty = empty_windows()
        labels = empty.loc[:, list(KEY_COLUMNS)].assign(is_anomaly=pd.Series(dtype=bool), scenario=pd.Series(dtype="str"))
        return dg.Output(EvaluationSet("none", "no validated records in the training horizon", empty, labels),
                         metadata={"source": "none", "dagster/row_count": 0})
    split = time_split(in_horizon["timestamp"], ev.split_fraction).floor(f"{spec.length_minutes}min")
    labels = side_file_labels(cfg.landing_dir, sorted(in_horizon["source_file"].unique()))
    data = build_evaluation_set(
        in_horizon, spec, split=split, labels=labels, injection_seed=ev.injection_seed,
        episodes_per_scenario=ev.injected_episodes_per_scenario, service_timezone=cfg.training.service_timezone,
    )
    context.log.info(f"evaluation data: {data.source}, {data.size}")
    return dg.Output(
        data,
        metadata={"source": data.source, "description": data.description, "split_time": data.split_time,
                  "dagster/row_count": data.size["windows"], "anomalous_windows": data.size["anomalous_windows"]},
    )


def production_figures(models_dir, data: EvaluationSet) -> dict | None:
    """The production model scored on the SAME evaluation data (None when there is none yet)."""
    registry = ModelRegistry(models_dir)
    version = registry.production()
    if version is None:
        return None
    try:
        pkg = load_package(registry.path(version))
    except (RegistryError, OSError, ValueError) as exc:
        return {"version": version, "error": str(exc)}
    cfg = pkg.metadata.get("inference_config", {})
    names = cfg.get("feature_names", [])
    if cfg.get("input") != "export_records" or any(n not in data.windows.columns for n in names):
        return {"version": version, "error": "production model takes other features; not comparable"}
    scores = anomaly_scores(pkg.pipeline, feature_matrix(data.windows, names))
    return {"version": version, **evaluate_on(scores, float(cfg["threshold"]), data)}


@dg.asset(
    group_name="evaluation",
    io_manager_key="json_io_manager",
    kinds={"json"},
    owners=OWNERS,
    tags={"stage": "evaluation"},
    code_version="1",
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec("meets_quality_gates", asset="model_evaluation", blocking=True,
                          description="F1 and ROC-AUC on held-out labelled data reach model.evaluation.min_f1 / min_roc_auc"),
        dg.AssetCheckSpec("not_worse_than_production", asset="model_evaluation", blocking=True,
                          description="PR-AUC on the same evaluation data is at most max_regression below production's"),
    ],
    description="The new model's honest figures, its diagnostics and the production model's figures on the same data.",
)
def model_evaluation(
    context: dg.AssetExecutionContext, settings: PipelineSettings, anomaly_model: TrainedModel, evaluation_dataset: EvaluationSet
):
    cfg = settings.get()
    gates = cfg.model.evaluation
    ev = anomaly_model.evaluation
    overall = (ev or {}).get("overall", {})
    deployed = evaluate_on(anomaly_model.score(evaluation_dataset.windows), anomaly_model.decision_threshold, evaluation_dataset)
    prod = production_figures(cfg.models_dir, evaluation_dataset)
    # Compare like with like: the new deployed model and production, both scored on this data.
    new_pr = deployed["overall"].get("pr_auc") or 0.0
    prod_pr = None if not prod or "overall" not in prod else (prod["overall"].get("pr_auc") or 0.0)
    passed = {
        "meets_quality_gates": meets_quality_gates(overall, gates.min_f1, gates.min_roc_auc),
        "not_worse_than_production": not_worse_than(new_pr, prod_pr, gates.max_regression),
    }
    report = {
        "version": anomaly_model.version,
        "evaluation": ev,
        "deployed_model_on_same_data": deployed["overall"],
        "production": prod,
        "selection": anomaly_model.selection,
        "diagnostics": anomaly_model.diagnostics,
        "gates": gates.model_dump(),
        "gates_passed": passed,
        "deployment_ready": all(passed.values()),
    }
    f1, auc = overall.get("f1_score") or 0.0, overall.get("roc_auc") or 0.0
    metadata = {k: float(overall[k]) for k in ("pr_auc", "roc_auc", "f1_score", "precision", "recall") if overall.get(k) is not None}
    for kind, m in ((ev or {}).get("by_kind") or {}).items():
        if m.get("pr_auc") is not None:
            metadata[f"{kind}_pr_auc"] = float(m["pr_auc"])
    yield dg.Output(report, metadata={**metadata, "source": (ev or {}).get("data", {}).get("source", "none"),
                                      "production_version": (prod or {}).get("version", "")})
    yield dg.AssetCheckResult(
        check_name="meets_quality_gates",
        passed=passed["meets_quality_gates"],
        metadata={"f1_score": f1, "roc_auc": auc, "min_f1": gates.min_f1, "min_roc_auc": gates.min_roc_auc},
    )
    yield dg.AssetCheckResult(
        check_name="not_worse_than_production",
        passed=passed["not_worse_than_production"],
        metadata={"new_pr_auc": new_pr, "production_pr_auc": prod_pr if prod_pr is not None else "none",
                  "production_version": (prod or {}).get("version", "none"), "max_regression": gates.max_regression},
    )
