"""Deployment stage: the registered package (and its promotion), and the production model's verdict per export."""

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.assets.training import model_card, top_windows
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain.agent_variant import agent_metadata, agent_model_card, agent_version
from mcp_training_dagster.domain.evaluation import meets_quality_gates
from mcp_training_dagster.domain.packaging import build_package, load_package
from mcp_training_dagster.domain.object_registry import open_registry, package_staging
from mcp_training_dagster.domain.scoring import SCORE_COLUMNS, score_table
from mcp_training_dagster.domain.training import BASIC_METRICS, AgentModel, TrainedModel

OWNERS = ["team:ml-platform"]


def package_agent_variant(cfg, model: TrainedModel, agent: AgentModel, window_metadata: dict, models_dir=None) -> dict:
    """The agent variant's own package (``model_<version>_agent5``); ready only when its own figures pass the gates."""
    gates = cfg.model.evaluation
    overall = (agent.evaluation or {}).get("overall") or {}
    ready = meets_quality_gates(overall, gates.min_f1, gates.min_roc_auc)
    version = agent_version(model.version)
    metadata = agent_metadata(
        version=version, estimator=agent.estimator, threshold=agent.threshold, vectors=agent.vectors,
        basic_metrics={k: overall.get(k) for k in BASIC_METRICS if overall.get(k) is not None} or {"f1_score": 0.0, "roc_auc": 0.0},
        contamination=cfg.model.agent_variant.contamination, window_minutes=cfg.model.windows.length_minutes,
        evaluation=agent.evaluation, export_files=window_metadata["model_info"]["export_files"],
        training_duration=agent.training_seconds, service_timezone=cfg.training.service_timezone,
    )
    info = build_package(models_dir or cfg.models_dir, version, agent.estimator, metadata,
                         model_card_md=agent_model_card(metadata), deployment_ready=ready)
    where = cfg.models_location.rstrip("/")
    return {"version": info.version, "path": f"{where}/{info.path.name}", "zip": f"{where}/{info.zip_path.name}",
            "deployment_ready": ready,
            "f1_score": overall.get("f1_score"), "roc_auc": overall.get("roc_auc")}


@dg.asset(
    group_name="deployment",
    io_manager_key="json_io_manager",
    kinds={"json"},
    owners=OWNERS,
    tags={"stage": "deployment"},
    code_version="1",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "models/model_<version>/ and model_<version>_deployment.zip in the inference contract's layout, registered; "
        "promoted to production when every evaluation gate passed (blocking checks on model_evaluation)."
    ),
)
def model_package(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    anomaly_model: TrainedModel,
    model_metadata: dict,
    model_evaluation: dict,
    agent_model: AgentModel,
    training_windows: pd.DataFrame,
) -> dg.Output[dict]:
    cfg = settings.get()
    ready = bool(model_evaluation["deployment_ready"])
    card = model_card(anomaly_model, top_windows(anomaly_model, training_windows))
    # Local folder, or built in a staging folder and published to the object store (config only).
    with package_staging(cfg.models_location) as staging:
        info = build_package(staging, anomaly_model.version, anomaly_model.pipeline, model_metadata,
                             model_card_md=card, deployment_ready=ready)
        agent = package_agent_variant(cfg, anomaly_model, agent_model, model_metadata, models_dir=staging)
    registry = open_registry(cfg.models_location)
    where = cfg.models_location.rstrip("/")
    package_path, package_zip = f"{where}/{info.path.name}", f"{where}/{info.zip_path.name}"
    promoted = False
    if ready and cfg.training.registry.auto_promote:
        registry.promote(info.version, by="dagster:model_package")
        promoted = True
    removed = registry.apply_retention(cfg.training.registry.keep_versions)
    summary = {"version": info.version, "path": package_path, "zip": package_zip, "deployment_ready": ready,
               "promoted": promoted, "production": registry.production(), "files": list(info.files),
               "agent_variant": agent, "removed_by_retention": removed}
    context.log.info(f"packaged {info.version} at {package_path} (ready={ready}, promoted={promoted})")
    return dg.Output(summary, metadata={
        "version": info.version, "package_path": dg.MetadataValue.path(package_path),
        "package_zip": dg.MetadataValue.path(package_zip),
        "deployment_ready": ready, "promoted": promoted, "production": registry.production() or "none",
        "model_card": dg.MetadataValue.md(card),
    })


@dg.asset(
    partitions_def=export_files,
    group_name="deployment",
    kinds={"pandas", "parquet"},
    owners=OWNERS,
    tags={"stage": "deployment"},
    code_version="1",
    automation_condition=dg.AutomationCondition.eager(),
    description="The production model's verdict on this export: every window's score, whether it is anomalous, and why.",
)
def export_anomalies(context: dg.AssetExecutionContext, settings: PipelineSettings, export_windows: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    cfg = settings.get()
    registry = open_registry(cfg.models_location)
    version = registry.production()
    if version is None:
        context.log.warning("no production model yet: nothing to score with")
        return dg.Output(pd.DataFrame(columns=list(SCORE_COLUMNS)), metadata={"production_version": "none", "flagged": 0})
    pkg = load_package(registry.path(version))
    ic = pkg.metadata["inference_config"]
    table = score_table(export_windows, pkg.pipeline, float(ic["threshold"]), ic["feature_names"])
    flagged = table[table["is_anomaly"]]
    top = flagged.head(10)
    lines = "\n".join(f"| {r.window_start} | {r.entity_kind} `{r.entity}` | {r.score:.4f} | {r.reasons or '-'} |"
                      for r in top.itertuples(index=False))
    return dg.Output(table, metadata={
        "production_version": version,
        "dagster/row_count": len(table),
        "flagged": len(flagged),
        "flag_rate": float(len(flagged) / len(table)) if len(table) else 0.0,
        "top_anomalies": dg.MetadataValue.md("| window | entity | score | why |\n|---|---|---|---|\n" + lines if lines else "_none flagged_"),
    })
