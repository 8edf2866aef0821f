"""Incidents stage: per export, the production model's incidents (flagged windows of a router merged).

Thin glue over ``domain/incidents.py``: the export's records are scored with its routers' records from the
other exports in the training horizon (``horizon_records``, read as a time slice), as training saw them."""

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain.horizon import router_context
from mcp_training_dagster.domain.incidents import INCIDENT_COLUMNS, export_incidents_with_model
from mcp_training_dagster.domain.promotion import load_production
from mcp_training_dagster.io_managers import ParquetReader


@dg.asset(
    partitions_def=export_files,
    group_name="deployment",
    kinds={"pandas", "parquet"},
    code_version="2",
    ins={"horizon_records": dg.AssetIn(metadata={"lazy": True})},
    description=(
        "The production model's incidents in this export: flagged windows of one router (device, stations, "
        "interfaces) that overlap or follow each other, with start, end, severity, entities, event families and "
        "the reasons in words; the routers' records in the other exports of the horizon give the context."
    ),
)
def export_incidents(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    validated_records: pd.DataFrame,
    horizon_records: ParquetReader,
) -> dg.Output[pd.DataFrame]:
    cfg = settings.get()
    prod = load_production(cfg.models_location)
    if prod is None:
        context.log.warning("no production model yet: no incidents")
        return dg.Output(
            pd.DataFrame(columns=list(INCIDENT_COLUMNS)), metadata={"production_version": "none", "incidents": 0}
        )
    history = router_context(horizon_records, validated_records, cfg.model.windows.spec())
    version = prod.version
    _, incidents = export_incidents_with_model(validated_records, history, prod.package.pipeline, prod.config)
    top = incidents.head(10)
    lines = "\n".join(
        f"| {r.start} | {r.device_id} | {r.severity:.2f} | {r.summary or '-'} |" for r in top.itertuples(index=False)
    )
    return dg.Output(
        incidents,
        metadata={
            "production_version": version,
            "dagster/row_count": len(incidents),
            "incidents": len(incidents),
            "top_incidents": dg.MetadataValue.md(
                "| start | router | severity | why |\n|---|---|---|---|\n" + lines if lines else "_no incidents_"
            ),
        },
    )
