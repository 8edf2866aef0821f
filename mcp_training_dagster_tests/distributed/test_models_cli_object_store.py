"""`mcp-training models` on the distributed deployment's registry (``<object_store>/models`` on an S3 server
on 127.0.0.1): the same commands, the same output and the same refusals as on a local models folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_training_dagster.domain.object_registry import ObjectRegistry, package_staging
from mcp_training_dagster_tests.domain.test_registry import make, tiny_model  # noqa: F401  (fixture)

pytestmark = pytest.mark.distributed


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_training_dagster.cli", "models", *args], env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture
def fleet(s3_env, tmp_path: Path) -> tuple[str, dict[str, str]]:
    store = f"s3://{s3_env.new_bucket()}/fleet"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TRAINING_", "MCP_MODEL_", "DAGSTER_"))}
    env.update(MCP_TRAINING_DEPLOYMENT="distributed", MCP_TRAINING_OBJECT_STORE=store,
               MCP_TRAINING_DATA_DIR=str(tmp_path / "data"), TMPDIR=str(tmp_path))
    return store, env


def test_models_commands_work_on_the_object_store_registry(fleet, tiny_model, tmp_path: Path) -> None:
    store, env = fleet
    with package_staging(f"{store}/models") as staging:
        v0, v1 = make(staging, tiny_model, 0), make(staging, tiny_model, 1)
        agent = make(staging, tiny_model, 1, agent=True, base=v1)

    listed = _cli(env, "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    entries = {e["version"]: e for e in json.loads(listed.stdout)}
    assert set(entries) == {v0, v1, agent}
    assert entries[v1]["path"] == f"{store}/models/model_{v1}" and entries[v1]["deployment_ready"]

    assert _cli(env, "promote", v0).returncode == 0
    promoted = _cli(env, "promote", v1)
    assert promoted.returncode == 0 and f"production is now {v1}" in promoted.stdout, promoted.stderr
    rows = [line.split() for line in _cli(env, "list").stdout.splitlines()[1:]]
    assert [r[1] for r in rows if r[0] == "*"] == [v1], rows  # * marks production
    shown = json.loads(_cli(env, "show", v1).stdout)
    assert shown["is_production"] and shown["metadata"]["model_info"]["version"] == f"model_{v1}"

    out = tmp_path / "handed_out"
    packaged = _cli(env, "package", v1, "--dest", str(out))
    assert packaged.returncode == 0, packaged.stderr
    assert (out / f"model_{v1}_deployment.zip").is_file()

    refused = _cli(env, "delete", v0)  # the rollback target
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1 and "rollback" in refused.stderr
    rolled = _cli(env, "rollback")
    assert rolled.returncode == 0 and f"production is now {v0}" in rolled.stdout, rolled.stderr
    deleted = _cli(env, "delete", agent)  # neither production nor the rollback target
    assert deleted.returncode == 0 and f"deleted {agent}" in deleted.stdout, deleted.stderr
    assert agent not in {e["version"] for e in json.loads(_cli(env, "list", "--format", "json").stdout)}
    missing = _cli(env, "show", "20990101_000000_000000_abcdef")
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    assert ObjectRegistry(f"{store}/models").production() == v0
