"""The per-export incidents asset in the graph: ingest two exports, train, then materialise export_incidents."""

from __future__ import annotations

import pandas as pd

import dagster as dg
from mcp_training_dagster.domain.incidents import INCIDENT_COLUMNS
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import failure_text, materializations, md, run_ingest


def test_export_incidents_asset(defs, instance, landing):
    for sample in (HOSTAPD_1824, SYSTEM_35):
        copy_sample(sample.name, landing)
        assert run_ingest(defs, instance, sample.name).success
    result = defs.resolve_job_def("train_job").execute_in_process(instance=instance)
    assert result.success, failure_text(result)
    job = defs.resolve_implicit_global_asset_job_def()
    out = job.execute_in_process(
        instance=instance, partition_key=HOSTAPD_1824.name, asset_selection=[dg.AssetKey("export_incidents")]
    )
    assert out.success, failure_text(out)
    meta = md(materializations(out, "export_incidents")[0])
    assert meta["production_version"] != "none"
    table = out.output_for_node("export_incidents")
    assert isinstance(table, pd.DataFrame) and list(table.columns) == list(INCIDENT_COLUMNS)
    assert meta["incidents"] == len(table)
    if len(table):
        assert (pd.to_datetime(table["end"]) > pd.to_datetime(table["start"])).all()
        assert table["severity"].is_monotonic_decreasing
