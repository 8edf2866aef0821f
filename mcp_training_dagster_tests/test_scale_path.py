"""The scale path is configuration: the multiprocess executor with a persistent instance and
a shared storage path runs the same definitions, each step in its own process."""

import dagster as dg
import pandas as pd
import pytest

from mcp_training_dagster.definitions import build_definitions
from mcp_training_dagster.settings import get_settings
from mcp_training_dagster_tests.conftest import copy_sample


def ingest_job_from_settings() -> dg.JobDefinition:
    """Module-level so Dagster can reconstruct it in each step process."""
    return build_definitions(get_settings()).resolve_job_def("ingest_job")


@pytest.mark.slow
def test_multiprocess_executor_by_configuration(data_dir, landing, tmp_path, monkeypatch):
    monkeypatch.setenv("MCP_TRAINING_EXECUTOR", "multiprocess")
    copy_sample("export_asus_system_35.json", landing)
    defs = build_definitions(get_settings())
    job = defs.resolve_job_def("ingest_job")
    assert job.executor_def.name == "multiprocess"

    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        instance.add_dynamic_partitions("export_files", ["export_asus_system_35.json"])
        with dg.execute_job(
            dg.reconstructable(ingest_job_from_settings),
            instance=instance,
            tags={"dagster/partition": "export_asus_system_35.json"},
        ) as result:
            assert result.success
            step_pids = {e.pid for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
    # every step ran in a process of its own, and all wrote to the shared storage path
    assert len(step_pids) >= 3
    stored = pd.read_parquet(data_dir / "assets" / "validated_records" / "export_asus_system_35.json.parquet")
    assert len(stored) == 35
    assert stored["timestamp"].is_monotonic_increasing
