"""Incidents stage: per export, the production model's incidents (flagged windows of a router merged).

Thin glue over ``domain/incidents.py``: the export's records are scored with the earlier exports' records
as history (gaps and "seen before" look back across files, as in training)."""

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain.incidents import INCIDENT_COLUMNS, export_incidents_with_model
from mcp_training_dagster.domain.promotion import load_production


@dg.asset(
    partitions_def=export_files,
    group_name="deployment",
    kinds={"pandas", "parquet"},
    code_version="1",
    ins={"all_records": dg.AssetIn("validated_records", partition_mapping=dg.AllPartitionMapping())},
    description=(
        "The production model's incidents in this export: flagged windows of one router (device, stations, "
        "interfaces) that overlap or follow each other, with start, end, severity, entities, event families and "
        "the reasons in words; earlier exports' records give the history."
    ),
)
def export_incidents(
    context: dg.AssetExecutionContext, settings: PipelineSettings, all_records: dict[str, pd.DataFrame]
) -> dg.Output[pd.DataFrame]:
    cfg = settings.get()
    prod = load_production(cfg.models_location)
    if prod is None:
        context.log.warning("no production model yet: no incidents")
        return dg.Output(
            pd.DataFrame(columns=list(INCIDENT_COLUMNS)), metadata={"production_version": "none", "incidents": 0}
        )
    records = all_records[context.partition_key]
    others = [r for k, r in all_records.items() if k != context.partition_key and r is not None and len(r)]
    history = pd.concat(others, ignore_index=True) if others else None
    version = prod.version
    _, incidents = export_incidents_with_model(records, history, prod.package.pipeline, prod.config)
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
