"""Deployment stage: the registered package (and its promotion), the production model, and its verdict per export.

``production_model`` is what the inference side gets. Verdicts (``export_anomalies``) depend on it in the
graph, so promoting or rolling back a model (here or with ``mcp-training models promote|rollback``)
re-scores every export through lineage; its freshness policy makes a stale production model visible.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.defs.policy import VERDICT_CONDITION
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain import model_card
from mcp_training_dagster.domain.agent_variant import AgentModel, build_agent_package
from mcp_training_dagster.domain.object_registry import open_registry, package_staging
from mcp_training_dagster.domain.packaging import build_package
from mcp_training_dagster.domain.promotion import ProductionModel, PromotionDecision, load_production
from mcp_training_dagster.domain.horizon import parquet_statistics, router_context
from mcp_training_dagster.domain.stored_windows import StoredWindows
from mcp_training_dagster.domain.report import markdown_table
from mcp_training_dagster.io_managers import ParquetReader, StagedParquet
from mcp_training_dagster.serving.scoring import SCORE_COLUMNS, windows_with_history
from mcp_training_dagster.domain.training import TrainedModel
from mcp_training_dagster.domain.training_scores import top_windows

VERDICT_COLUMNS = ("router", *SCORE_COLUMNS)
T = TypeVar("T")


def package_agent_variant(cfg, model: TrainedModel, agent: AgentModel, window_metadata: dict, models_dir) -> dict:
    """The agent variant's own package (``model_<version>_agent5``); ready only when its own figures pass the gates."""
    gates = cfg.model.evaluation
    info, ready = build_agent_package(
        agent,
        models_dir,
        model_version=model.version,
        export_files=window_metadata["model_info"]["export_files"],
        contamination=cfg.model.agent_variant.contamination,
        window_minutes=cfg.model.windows.length_minutes,
        service_timezone=cfg.training.service_timezone,
        min_f1=gates.min_f1,
        min_roc_auc=gates.min_roc_auc,
    )
    overall = agent.evaluation.overall if agent.evaluation is not None else None
    where = cfg.models_location.rstrip("/")
    return {
        "version": info.version,
        "path": f"{where}/{info.path.name}",
        "zip": f"{where}/{info.zip_path.name}",
        "deployment_ready": ready,
        "f1_score": overall.f1_score if overall else None,
        "roc_auc": overall.roc_auc if overall else None,
    }


@dg.asset(
    group_name="deployment",
    io_manager_key="json_io_manager",
    kinds={"json"},
    code_version="3",
    output_required=False,
    ins={"training_windows": dg.AssetIn(metadata={"lazy": True})},
    automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    description=(
        "models/model_<version>/ and model_<version>_deployment.zip in the inference contract's layout, registered "
        "and (registry.auto_promote) promoted. Only a candidate that passed every evaluation gate is packaged: a "
        "blocked candidate leaves no package, whichever run materialises this, and is recorded as an observation."
    ),
)
def model_package(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    anomaly_model: TrainedModel,
    model_metadata: dict,
    model_evaluation: dict,
    agent_model: AgentModel,
    training_windows: ParquetReader,
):
    cfg = settings.get()
    decision = PromotionDecision.from_dict(model_evaluation["decision"])
    registry = open_registry(cfg.models_location)
    if model_evaluation.get("version") != anomaly_model.version or not decision.deployment_ready:
        why = (
            "its evaluation is of another model"
            if model_evaluation.get("version") != anomaly_model.version
            else "; ".join(f"{g.name} failed: {g.summary}" for g in decision.failed)
        )
        context.log.warning(f"{anomaly_model.version} blocked, not packaged: {why}")
        context.log_event(
            dg.AssetObservation(
                asset_key="model_package",
                metadata={
                    "blocked_version": anomaly_model.version,
                    "blocked_because": why,
                    "production": registry.production() or "none",
                },
            )
        )
        return
    # the card's most anomalous training windows, scored row group by row group of the stored windows (above the
    # fit cap those of the sample of whole routers training scored: the card shows what training's showed)
    card = model_card.render(anomaly_model, top_windows(anomaly_model, StoredWindows(training_windows)), decision)
    # Local folder, or built in a staging folder and published to the object store (config only).
    with package_staging(cfg.models_location) as staging:
        info = build_package(
            staging,
            anomaly_model.version,
            anomaly_model.pipeline,
            model_metadata,
            model_card_md=card,
            deployment_ready=True,
        )
        agent = package_agent_variant(cfg, anomaly_model, agent_model, model_metadata, models_dir=staging)
    where = cfg.models_location.rstrip("/")
    package_path, package_zip = f"{where}/{info.path.name}", f"{where}/{info.zip_path.name}"
    promoted = False
    if cfg.training.registry.auto_promote:
        registry.promote(info.version, by="dagster:model_package")
        promoted = True
    removed = registry.apply_retention(cfg.training.registry.keep_versions)
    summary = {
        "version": info.version,
        "path": package_path,
        "zip": package_zip,
        "deployment_ready": True,
        "promoted": promoted,
        "production": registry.production(),
        "files": list(info.files),
        "agent_variant": agent,
        "removed_by_retention": removed,
        "warnings": decision.warnings,
    }
    context.log.info(f"packaged {info.version} at {package_path} (promoted={promoted})")
    yield dg.Output(
        summary,
        metadata={
            "version": info.version,
            "package_path": dg.MetadataValue.path(package_path),
            "package_zip": dg.MetadataValue.path(package_zip),
            "promoted": promoted,
            "production": registry.production() or "none",
            "barely_passing": bool(decision.warnings),
            "model_card": dg.MetadataValue.md(card),
        },
    )


@dg.asset(
    group_name="deployment",
    io_manager_key="json_io_manager",
    kinds={"json"},
    code_version="1",
    automation_condition=dg.AutomationCondition.eager(),
    # Its freshness policy (training.model_max_age_hours) comes from settings: policy.freshness_policies.
    description=(
        "The registry's production model, verified against its manifest: what the inference side loads. "
        "Materialised after every package and by `mcp-training models promote|rollback`; its freshness is the "
        "production model's, so blocked retrains show here as an ageing model."
    ),
)
def production_model(settings: PipelineSettings, model_package: dict) -> dg.Output[dict]:
    # model_package is an input, not only an edge: when a retrain is blocked or has nothing new to train,
    # model_package yields nothing, so production_model is skipped too and no export is re-scored for nothing.
    del model_package  # production is read from the registry (also after `models promote|rollback`)
    cfg = settings.get()
    location = cfg.models_location
    prod = load_production(location)
    if prod is None:
        raise dg.Failure(description=f"no production model in {location} yet", allow_retries=False)
    pointer = open_registry(location).pointer() or {}
    doc = {
        "version": prod.version,
        "location": location,
        "threshold": prod.threshold,
        "data_end": prod.data_end,
        "promoted_at": pointer.get("promoted_at"),
        "promoted_by": pointer.get("promoted_by"),
    }
    return dg.Output(
        doc,
        metadata={k: ("none" if v is None else v) for k, v in doc.items()},
        data_version=dg.DataVersion(prod.version),
    )


def router_names(validated_records: pd.DataFrame) -> pd.Series:
    """Device key -> the router's name as the export gives it (``device_ip`` is the hostname there)."""
    if validated_records.empty or "device_name" not in validated_records.columns:
        return pd.Series(dtype="str")
    names = validated_records.loc[:, ["device", "device_name"]].dropna()
    return names.groupby("device", observed=True)["device_name"].agg(lambda s: s.mode().iat[0]).astype("str")


def export_context_windows(
    settings: PipelineSettings, validated_records: pd.DataFrame, horizon_records: ParquetReader
) -> pd.DataFrame:
    """This export's windows computed with its routers' records from every export in the training horizon
    (earlier or overlapping), as training saw them: a sparse system log beside the router's hostapd export is
    not scored as "silent", and the first windows keep their gaps and history."""
    spec = settings.get().model.windows.spec()
    return windows_with_history(validated_records, router_context(horizon_records, validated_records, spec), spec)


def verdict_table(
    settings: PipelineSettings, prod: ProductionModel, validated_records: pd.DataFrame, horizon_records: ParquetReader
) -> pd.DataFrame:
    """The production model's verdict on one export: every window with its router, score, flag and reasons."""
    table = prod.score_table(export_context_windows(settings, validated_records, horizon_records))
    names = router_names(validated_records)
    table.insert(0, "router", table["device_id"].map(names).fillna(table["device_id"]).astype("str"))
    return table.loc[:, list(VERDICT_COLUMNS)]


TOP_COLUMNS = ["router", "window_start", "entity_kind", "entity", "score", "reasons"]


def _top(table: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The first ``n`` flagged windows, for the materialisation's ``top_anomalies``."""
    return table.loc[table["is_anomaly"], TOP_COLUMNS].head(n)


def _staged(table: pd.DataFrame) -> StagedParquet:
    """A verdict table written now (as the IO manager would), so a run over many exports holds one at a time."""
    staged = StagedParquet()
    statistics = parquet_statistics([str(c) for c in table.columns])
    table.to_parquet(staged.path, index=False, compression="zstd", write_statistics=statistics)
    return staged


@dg.asset(
    partitions_def=export_files,
    group_name="deployment",
    kinds={"pandas", "parquet"},
    code_version="3",
    automation_condition=VERDICT_CONDITION,
    ins={
        "horizon_records": dg.AssetIn(metadata={"lazy": True}),
        "validated_records": dg.AssetIn(metadata={"lazy": True}),
    },
    description="The production model's verdict on this export: every window of its entities (computed with the "
    "same routers' records in the other exports of the training horizon, as training saw them), its router, "
    "score, whether it is anomalous, and why. Re-scored whenever production_model changes; when many exports are "
    "due at once, verdicts_per_run of them per run (a partition range).",
)
def export_anomalies(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    validated_records: dict[str, ParquetReader],
    horizon_records: ParquetReader,
    production_model: dict,
) -> dg.Output:
    # The input is the edge that re-scores every export when production changes; the scoring uses production
    # as it is now, and again if a promotion landed while this run scored: the registry's pointer moves before
    # production_model materialises, so a run that raced a promotion is never left stale (CI caught one).
    location = production_model["location"]
    prod = load_production(location)
    if prod is None:
        raise dg.Failure(description="no production model", allow_retries=False)
    keys = list(context.partition_keys)
    if missing := [k for k in keys if k not in validated_records]:
        raise dg.Failure(description=f"no validated records stored for {', '.join(missing)}", allow_retries=False)
    if len(keys) == 1:
        return _one_verdict(context, settings, location, prod, validated_records[keys[0]](), horizon_records)
    return _range_verdicts(context, settings, location, prod, {k: validated_records[k] for k in keys}, horizon_records)


def _newer_production(
    context: dg.AssetExecutionContext, location: str, prod: ProductionModel
) -> ProductionModel | None:
    """Production as it is now, if a promotion landed since ``prod`` was loaded (None otherwise)."""
    if open_registry(location).production() in (None, prod.version):  # the pointer only: cheap
        return None
    current = load_production(location)
    if current is not None:
        context.log.info(f"production changed to {current.version} while scoring with {prod.version}: scoring again")
    return current


def _by_production(
    context: dg.AssetExecutionContext, location: str, prod: ProductionModel, score: Callable[[ProductionModel], T]
) -> tuple[ProductionModel, T]:
    """``score(prod)``, and again (at most 3 times) if a promotion landed meanwhile: the model returned is the one
    that scored."""
    result = score(prod)
    for _ in range(3):
        if (current := _newer_production(context, location, prod)) is None:
            break
        prod, result = current, score(current)
    return prod, result


def _verdict_metadata(version: str, windows: int, flagged: int, top: pd.DataFrame) -> dict[str, Any]:
    return {
        "production_version": version,
        "dagster/row_count": windows,
        "flagged": flagged,
        "flag_rate": float(flagged / windows) if windows else 0.0,
        "top_anomalies": dg.MetadataValue.md(markdown_table(top, digits=4) if len(top) else "_none flagged_"),
    }


def _one_verdict(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    location: str,
    prod: ProductionModel,
    records: pd.DataFrame,
    horizon_records: ParquetReader,
) -> dg.Output:
    prod, table = _by_production(
        context, location, prod, lambda p: verdict_table(settings, p, records, horizon_records)
    )
    flagged = int(table["is_anomaly"].sum())
    context.log.info(f"{flagged} of {len(table)} windows flagged by {prod.version}")
    return dg.Output(table, metadata=_verdict_metadata(prod.version, len(table), flagged, _top(table)))


def _range_verdicts(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    location: str,
    prod: ProductionModel,
    readers: dict[str, ParquetReader],
    horizon_records: ParquetReader,
) -> dg.Output:
    """Several exports in one run (a backfill's partition range): each scored exactly as alone and written as it
    is scored. Dagster keeps one metadata set per output, so the per-export figures go in ``by_file``."""
    staged: dict[str, StagedParquet] = {}

    def score_all(p: ProductionModel) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
        rows: list[dict[str, Any]] = []
        tops: list[pd.DataFrame] = []
        for key, reader in readers.items():
            table = verdict_table(settings, p, reader(), horizon_records)
            if key in staged:  # scored again: the earlier table is replaced
                staged[key].cleanup()
            staged[key] = _staged(table)
            rows.append({"file": key, "windows": len(table), "flagged": int(table["is_anomaly"].sum())})
            tops.append(_top(table).assign(file=key))
        return rows, tops

    try:
        prod, (rows, tops) = _by_production(context, location, prod, score_all)
    except BaseException:
        for done in staged.values():
            done.cleanup()
        raise
    windows, flagged = sum(r["windows"] for r in rows), sum(r["flagged"] for r in rows)
    top = pd.concat(tops, ignore_index=True).sort_values("score", ascending=False).head(10) if tops else pd.DataFrame()
    context.log.info(f"{flagged} of {windows} windows of {len(rows)} exports flagged by {prod.version}")
    return dg.Output(
        staged,
        metadata={
            **_verdict_metadata(prod.version, windows, flagged, top),
            "files": len(rows),
            "by_file": dg.MetadataValue.md(markdown_table(pd.DataFrame(rows))),
        },
    )
