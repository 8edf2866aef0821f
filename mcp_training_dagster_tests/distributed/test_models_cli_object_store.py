"""`mcp-training models` on the distributed deployment's registry (``<object_store>/models`` on an S3 server
on 127.0.0.1): the same commands, the same output and the same refusals as on a local models folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mcp_training_dagster.domain.object_registry import ObjectRegistry, package_staging
from mcp_training_dagster_tests.domain.test_registry import make, tiny_model  # noqa: F401  (fixture)

pytestmark = pytest.mark.distributed


@pytest.fixture
def fleet(s3_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The distributed deployment's environment, and the `mcp-training models` command run in it (in process,
    as click runs it: the exit code, stdout and stderr the user sees)."""
    from click.testing import CliRunner

    from mcp_training_dagster.cli import main

    store = f"s3://{s3_env.new_bucket()}/fleet"
    for key in [k for k in os.environ if k.startswith(("MCP_TRAINING_", "MCP_MODEL_", "DAGSTER_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MCP_TRAINING_DEPLOYMENT", "distributed")
    monkeypatch.setenv("MCP_TRAINING_OBJECT_STORE", store)
    monkeypatch.setenv("MCP_TRAINING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # fetched packages: this test's, not the user's
    runner = CliRunner()
    return store, lambda *args: runner.invoke(main, ["models", *args])


def test_models_commands_work_on_the_object_store_registry(fleet, tiny_model, tmp_path: Path) -> None:
    store, cli = fleet
    with package_staging(f"{store}/models") as staging:
        v0, v1 = make(staging, tiny_model, 0), make(staging, tiny_model, 1)
        agent = make(staging, tiny_model, 1, agent=True, base=v1)

    listed = cli("list", "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    entries = {e["version"]: e for e in json.loads(listed.stdout)}
    assert set(entries) == {v0, v1, agent}
    assert entries[v1]["path"] == f"{store}/models/model_{v1}" and entries[v1]["deployment_ready"]

    assert cli("promote", v0).exit_code == 0
    promoted = cli("promote", v1)
    assert promoted.exit_code == 0 and f"production is now {v1}" in promoted.stdout, promoted.stderr
    rows = [line.split() for line in cli("list").stdout.splitlines()[1:]]
    assert [r[1] for r in rows if r[0] == "*"] == [v1], rows  # * marks production
    shown = json.loads(cli("show", v1).stdout)
    assert shown["is_production"] and shown["metadata"]["model_info"]["version"] == f"model_{v1}"

    out = tmp_path / "handed_out"
    packaged = cli("package", v1, "--dest", str(out))
    assert packaged.exit_code == 0, packaged.stderr
    assert (out / f"model_{v1}_deployment.zip").is_file()

    refused = cli("delete", v0)  # the rollback target
    assert refused.exit_code != 0 and refused.stderr.count("\n") == 1 and "rollback" in refused.stderr
    rolled = cli("rollback")
    assert rolled.exit_code == 0 and f"production is now {v0}" in rolled.stdout, rolled.stderr
    deleted = cli("delete", agent)  # neither production nor the rollback target
    assert deleted.exit_code == 0 and f"deleted {agent}" in deleted.stdout, deleted.stderr
    assert agent not in {e["version"] for e in json.loads(cli("list", "--format", "json").stdout)}
    missing = cli("show", "20990101_000000_000000_abcdef")
    assert missing.exit_code != 0 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    assert ObjectRegistry(f"{store}/models").production() == v0
