"""One setting selects the deployment; the definitions follow from it with no code difference."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_training_dagster.definitions import build_definitions
from mcp_training_dagster.defs.location import executor_for
from mcp_training_dagster.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTED = {"MCP_TRAINING_DEPLOYMENT": "distributed", "MCP_TRAINING_OBJECT_STORE": "s3://fleet-bucket/mcp/"}


def test_local_is_the_default_and_unchanged(tmp_path: Path) -> None:
    s = load_settings(REPO / "config", env={"MCP_TRAINING_DATA_DIR": str(tmp_path)})
    t = s.training
    assert (t.deployment, t.executor) == ("local", "in_process")
    assert s.landing_location == str(tmp_path / "exports") and s.models_location == str(tmp_path / "models")
    assert s.asset_storage == str(tmp_path / "assets")
    assert executor_for(s).name == "in_process"


def test_distributed_puts_everything_under_the_object_store() -> None:
    s = load_settings(REPO / "config", env=DISTRIBUTED)
    assert s.training.object_store == "s3://fleet-bucket/mcp"
    assert s.landing_location == "s3://fleet-bucket/mcp/exports"
    assert s.asset_storage == "s3://fleet-bucket/mcp/assets"
    assert s.models_location == "s3://fleet-bucket/mcp/models"
    assert s.training.executor == "celery"


def test_explicit_choices_still_win() -> None:
    s = load_settings(
        REPO / "config",
        env={**DISTRIBUTED, "MCP_TRAINING_EXECUTOR": "multiprocess", "MCP_TRAINING_ASSET_STORAGE": "s3://other/assets"},
    )
    assert (s.training.executor, s.asset_storage) == ("multiprocess", "s3://other/assets")


@pytest.mark.parametrize("store", [None, "", "/srv/not-an-object-store"])
def test_distributed_needs_an_object_store_url(store) -> None:
    env = {"MCP_TRAINING_DEPLOYMENT": "distributed"} | (
        {"MCP_TRAINING_OBJECT_STORE": store} if store is not None else {}
    )
    with pytest.raises(ConfigError, match="object_store"):
        load_settings(REPO / "config", env=env)


@pytest.mark.distributed
def test_distributed_definitions_use_celery_and_the_bucket() -> None:
    """Needs the `distributed` extra (dagster-celery), as every machine of that deployment does."""
    s = load_settings(REPO / "config", env={**DISTRIBUTED, "MCP_TRAINING_CELERY_BROKER": "redis://broker:6379/0"})
    defs = build_definitions(s)
    job = defs.resolve_job_def("ingest_job")
    assert job.executor_def.name == "celery"
    io = defs.resources["io_manager"]
    assert io.base_path == "s3://fleet-bucket/mcp/assets"
