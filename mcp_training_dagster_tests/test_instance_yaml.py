"""`up` keeps $DAGSTER_HOME/dagster.yaml current: a file an earlier `up` wrote is rewritten from the template (an install
made before the "training" pool gets concurrency.pools.default_limit), one a person edited is left alone with one
warning line naming what it lacks. Through `mcp-training up --dry-run`, as a user runs it (it prepares the data root
and prints what it would start)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mcp_training_dagster.cli import main
from mcp_training_dagster.cli.common import install_instance_yaml, stamped_instance_yaml, written_by_up

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = (REPO_ROOT / "config" / "dagster.yaml").read_text()

# config/dagster.yaml as the first `up`s copied it (commit e15543d): no pools, the run limit in the coordinator.
BEFORE_POOLS = """\
# Dagster instance template for one machine: sqlite storage under $DAGSTER_HOME.
# `mcp-training up` copies this to $DAGSTER_HOME/dagster.yaml. For a multi-machine deployment use
# config/dagster.distributed.yaml instead (Postgres storage).
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2        # 2 cores: one ingest and one training run at a time is plenty
sensors:
  use_threads: true
  num_workers: 2
auto_materialize:
  use_sensors: true
"""


@pytest.fixture
def home(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MCP_TRAINING_CONFIG_DIR", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster_home"))  # `up` sets it; restored after the test
    (data_dir / "dagster_home").mkdir(parents=True)
    return data_dir / "dagster_home"


def _up() -> tuple[str, str]:
    result = CliRunner().invoke(main, ["up", "--dry-run", "--no-samples"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def _pools(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()).get("concurrency") or {}).get("pools") or {}


def test_an_install_from_before_the_training_pool_is_upgraded(home: Path) -> None:
    (home / "dagster.yaml").write_text(BEFORE_POOLS)
    out, err = _up()
    text = (home / "dagster.yaml").read_text()
    assert text.endswith(TEMPLATE) and text.startswith("# Written by `mcp-training up`")
    assert _pools(home / "dagster.yaml") == {"default_limit": 1}
    assert "rewritten from the current template" in out and not err
    # The next start finds it current: nothing rewritten, nothing said.
    out, err = _up()
    assert (home / "dagster.yaml").read_text() == text and "rewritten" not in out and not err


def test_an_edited_instance_config_is_left_alone_with_one_warning_line(home: Path) -> None:
    edited = BEFORE_POOLS.replace("num_workers: 2", "num_workers: 4  # ours")
    (home / "dagster.yaml").write_text(edited)
    out, err = _up()
    assert (home / "dagster.yaml").read_text() == edited, "a person's file is never rewritten"
    assert err.count("\n") == 1 and err.startswith("warning: ") and "concurrency.pools.default_limit: 1" in err, err
    assert "rewritten" not in out


def test_an_edited_file_that_has_the_pool_is_not_warned_about(home: Path) -> None:
    edited = TEMPLATE.replace("num_workers: 2", "num_workers: 4")
    (home / "dagster.yaml").write_text(edited)
    out, err = _up()
    assert (home / "dagster.yaml").read_text() == edited and not err and "rewritten" not in out


def test_the_stamp_tells_an_unedited_copy_from_an_edited_one(home: Path) -> None:
    older = stamped_instance_yaml(BEFORE_POOLS, "config/dagster.yaml")
    assert written_by_up(older) and written_by_up(BEFORE_POOLS)
    assert not written_by_up(older.replace("num_workers: 2", "num_workers: 3"))
    assert not written_by_up(BEFORE_POOLS + "\n")  # not an exact copy any more
    target = home / "dagster.yaml"
    target.write_text(older)  # a template `up` stamped, changed since: rewritten
    assert install_instance_yaml(home) == ("upgraded", []) and target.read_text().endswith(TEMPLATE)
    assert install_instance_yaml(home) == ("current", [])
    target.unlink()
    assert install_instance_yaml(home) == ("written", [])
    target.write_text(TEMPLATE)  # an exact copy of the current template (`cp config/dagster.yaml`): stamped
    assert install_instance_yaml(home) == ("current", []) and target.read_text().startswith("# Written by")
    target.write_text("telemetry:\n  enabled: true\n")
    state, missing = install_instance_yaml(home)
    assert state == "edited" and [m.split(" (")[0] for m in missing] == ["concurrency.pools.default_limit: 1"]
