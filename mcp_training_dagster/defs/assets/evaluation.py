"""Evaluation stage: held-out data with known labels, and the figures that gate promotion."""

import shutil
from pathlib import Path

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.policy import RETRAIN_CONDITION
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain.evaluation import (
    EVALUATION_COLUMNS,
    EvaluationSet,
    build_evaluation_set,
    held_out,
    evaluation_records_since,
    time_split,
)
from mcp_training_dagster.serving.features import KEY_COLUMNS, empty_windows
from mcp_training_dagster.domain.object_landing import fetch_side_files, is_remote
from mcp_training_dagster.domain.promotion import decide, load_production
from mcp_training_dagster.domain.registry import RegistryError
from mcp_training_dagster.domain.scenarios import read_labels
from mcp_training_dagster.domain.training import TrainedModel
from mcp_training_dagster.io_managers import ParquetReader


def side_file_labels(landing, source_files: list[str]) -> pd.DataFrame | None:
    """``<export>.labels.csv`` files beside the exports in the landing folder or prefix (id,is_anomaly[,scenario])."""
    fetched = fetch_side_files(str(landing), source_files, ".labels.csv") if is_remote(str(landing)) else None
    if is_remote(str(landing)) and fetched is None:
        return None
    folder = fetched or Path(landing)
    try:
        frames = [lab for name in source_files if (lab := read_labels(folder / name)) is not None]
    finally:
        if fetched is not None:
            shutil.rmtree(fetched, ignore_errors=True)
    return pd.concat(frames, ignore_index=True).drop_duplicates("id") if frames else None


@dg.asset(
    group_name="evaluation",
    io_manager_key="model_io_manager",
    kinds={"pandas", "joblib"},
    code_version="3",
    automation_condition=RETRAIN_CONDITION,
    # read on demand: the keys of every record, then only the columns and the time the set needs
    ins={"horizon_records": dg.AssetIn(metadata={"lazy": True})},
    description=(
        "Held-out evaluation data: the last part of the training horizon in time, with labels from the exports' "
        "side files when present, otherwise with known attack episodes injected into the real stream."
    ),
)
def evaluation_dataset(
    context: dg.AssetExecutionContext, settings: PipelineSettings, horizon_records: ParquetReader
) -> dg.Output[EvaluationSet]:
    cfg = settings.get()
    ev = cfg.model.evaluation
    keys = horizon_records(["timestamp", "id", "device"])
    spec = cfg.model.windows.spec()
    if keys.empty:  # training reports the lack of data (min_training_windows); nothing to evaluate on
        empty = empty_windows()
        labels = empty.loc[:, list(KEY_COLUMNS)].assign(
            is_anomaly=pd.Series(dtype=bool), scenario=pd.Series(dtype="str")
        )
        return dg.Output(
            EvaluationSet("none", "no validated records in the training horizon", empty, labels),
            metadata={"source": "none", "dagster/row_count": 0},
        )
    split = time_split(keys["timestamp"], ev.split_fraction).floor(f"{spec.length_minutes}min")
    next_id = int(keys["id"].max()) + 1
    routers = held_out(
        keys["timestamp"], keys["device"], split, max_router_days=ev.max_held_out_router_days, seed=ev.injection_seed
    )
    del keys
    labels = side_file_labels(cfg.landing_location, sorted(horizon_records(["source_file"])["source_file"].unique()))
    since = evaluation_records_since(split, spec)
    filters: list = [("timestamp", ">=", since)]
    if routers.sampled and (labels is None or labels.empty):  # a large fleet: only the sampled routers' records
        filters.append(("device", "in", list(routers.devices)))
    data = build_evaluation_set(
        horizon_records(list(EVALUATION_COLUMNS), filters=filters),
        spec,
        split=split,
        labels=labels,
        injection_seed=ev.injection_seed,
        episodes_per_scenario=ev.injected_episodes_per_scenario,
        episodes_per_router_day=ev.injected_episodes_per_router_day,
        max_router_days=ev.max_held_out_router_days,
        routers=routers,
        service_timezone=cfg.training.service_timezone,
        next_id=next_id,
    )
    context.log.info(f"evaluation data: {data.source}, {data.size}")
    return dg.Output(
        data,
        metadata={
            "source": data.source,
            "description": data.description,
            "split_time": data.split_time,
            "dagster/row_count": data.size["windows"],
            "anomalous_windows": data.size["anomalous_windows"],
            **({"held_out_router_days": data.held_out_router_days} if data.held_out_router_days is not None else {}),
        },
    )


@dg.asset(
    group_name="evaluation",
    io_manager_key="json_io_manager",
    kinds={"json"},
    code_version="2",
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(
            "meets_quality_gates",
            asset="model_evaluation",
            blocking=True,
            description="F1 and ROC-AUC of the candidate fitted before the split, on the held-out "
            "period, reach model.evaluation.min_f1 / min_roc_auc",
        ),
        dg.AssetCheckSpec(
            "not_worse_than_production",
            asset="model_evaluation",
            blocking=True,
            description="PR-AUC of the candidate fitted before the split is at most max_regression below "
            "production's, both scored on the same held-out windows",
        ),
    ],
    description="The candidate's honest figures, its diagnostics, production's figures on the same held-out data, "
    "and the promotion decision.",
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    anomaly_model: TrainedModel,
    evaluation_dataset: EvaluationSet,
):
    cfg = settings.get()
    gates = cfg.model.evaluation
    try:
        production = load_production(cfg.models_location)
    except RegistryError as exc:  # an unusable production package must not block a good candidate
        context.log.warning(f"production model unusable, not compared: {exc}")
        production = None
    decision = decide(
        anomaly_model.evaluation,
        anomaly_model.heldout_scores,
        evaluation_dataset,
        production,
        min_f1=gates.min_f1,
        min_roc_auc=gates.min_roc_auc,
        max_regression=gates.max_regression,
    )
    ev = anomaly_model.evaluation
    report = {
        "version": anomaly_model.version,
        "evaluation": ev.as_dict() if ev is not None else {},
        "selection": anomaly_model.selection.as_dict() if anomaly_model.selection is not None else None,
        "diagnostics": anomaly_model.diagnostics,
        "gates": gates.model_dump(),
        "decision": decision.as_dict(),
        "gates_passed": {g.name: g.passed for g in decision.gates},
        "deployment_ready": decision.deployment_ready,
    }
    for line in decision.warnings:
        context.log.warning(line)
    metadata: dict[str, float] = ev.overall.figures() if ev is not None else {}
    for kind, m in ((ev.by_kind if ev is not None else None) or {}).items():
        if m.pr_auc is not None:
            metadata[f"{kind}_pr_auc"] = m.pr_auc
    yield dg.Output(
        report,
        metadata={
            **metadata,
            "source": ev.data.source if ev is not None else "none",
            "production_version": decision.production_version or "none",
            "deployment_ready": decision.deployment_ready,
        },
    )
    for gate in decision.gates:
        yield dg.AssetCheckResult(
            check_name=gate.name,
            passed=gate.passed,
            description=gate.summary,  # the deciding figures in one line (terminal, alerts, the UI's check)
            metadata={
                "compared": gate.compared,
                **{k: ("none" if v is None else v) for k, v in gate.figures.items()},
                **({"margin": gate.margin} if gate.margin is not None else {}),
            },
        )
