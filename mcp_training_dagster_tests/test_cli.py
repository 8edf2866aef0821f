"""The command line through click's test runner: same code path as the assets, clear errors, exit codes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mcp_training_dagster.cli import main
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35


@pytest.fixture
def run(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster_home"))  # restored after the test
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_every_command_has_help(run) -> None:
    for cmd in ([], ["validate"], ["train"], ["score"], ["generate"], ["up"], ["models"], ["models", "list"],
                ["models", "show"], ["models", "promote"], ["models", "rollback"], ["models", "package"], ["models", "delete"]):
        result = run(*cmd, "--help")
        assert result.exit_code == 0, cmd
        assert "Usage:" in result.output


def test_validate_exit_codes(run, tmp_path: Path) -> None:
    ok = run("validate", HOSTAPD_1824, SYSTEM_35)
    assert ok.exit_code == 0 and "1824 records, 1824 valid" in ok.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [')
    result = run("validate", HOSTAPD_1824, bad, "--format", "json")
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["ok"] for r in rows] == [True, False] and "truncated" in rows[1]["error"]


def test_generate_writes_labelled_export_and_never_overwrites(run, tmp_path: Path) -> None:
    out = tmp_path / "gen.json"
    result = run("generate", out, "--seed", "3", "--days", "2", "--devices", "2", "--episodes", "1", "--benign", "1")
    assert result.exit_code == 0, result.output
    assert out.is_file() and Path(f"{out}.labels.csv").is_file() and Path(f"{out}.episodes.csv").is_file()
    labels = pd.read_csv(f"{out}.labels.csv")
    assert len(labels) == len(json.loads(out.read_text())["data"]) and labels["is_anomaly"].sum() > 0
    again = run("generate", out, "--seed", "3")
    assert again.exit_code != 0 and "already exists" in again.output
    assert run("validate", out).exit_code == 0
    bad = run("generate", tmp_path / "x.json", "--days", "0")
    assert bad.exit_code != 0 and bad.output.count("\n") == 1  # one clear line


def test_train_score_and_registry(run, data_dir: Path, tmp_path: Path) -> None:
    first = run("train", HOSTAPD_1824, SYSTEM_35, SYSTEM_19)
    assert first.exit_code == 0, first.output
    lines = dict(line.split(None, 1) for line in first.output.splitlines() if line.startswith(("version", "package", "zip")))
    v1 = lines["version"].strip()
    assert Path(lines["package"].strip()) == data_dir / "models" / f"model_{v1}"
    assert (data_dir / "exports" / HOSTAPD_1824.name).is_file()  # landed, the original untouched

    # score: one row per window, the columns, higher = more anomalous, with reasons
    csv = run("score", HOSTAPD_1824)
    assert csv.exit_code == 0
    table = pd.read_csv(pd.io.common.StringIO(csv.output))
    assert list(table.columns) == ["device_id", "entity", "window_start", "score", "is_anomaly", "reasons"]
    assert table["score"].is_monotonic_decreasing and table["is_anomaly"].any()
    assert set(table["entity"]) >= {"*", "eth6"}
    pd.to_datetime(table["window_start"], format="%Y-%m-%dT%H:%M:%S")
    flagged = table[table["is_anomaly"]]
    assert flagged["reasons"].notna().all()
    js = json.loads(run("score", HOSTAPD_1824, "--format", "json", "--anomalies-only", "--model", v1).output)
    assert len(js) == len(flagged) and all(r["is_anomaly"] for r in js)

    # a second training of the same files: nothing re-ingested, a new version
    second = run("train", HOSTAPD_1824)
    assert second.exit_code == 0, second.output
    assert "already ingested (same content), skipped" in second.output
    v2 = next(line.split()[1] for line in second.output.splitlines() if line.startswith("version"))
    assert v2 != v1

    listing = run("models", "list")
    assert listing.exit_code == 0
    assert v1 in listing.output and v2 in listing.output and f"{v1}_agent5" in listing.output
    shown = json.loads(run("models", "show", v1).output)
    assert shown["metadata"]["model_info"]["version"] == f"model_{v1}"

    # production is the newest passing model; roll back, promote, refuse to delete the protected ones
    prod = json.loads(run("models", "list", "--format", "json").output)
    current = [e["version"] for e in prod if e["is_production"]]
    assert current == [v2]
    assert run("models", "rollback").output.strip() == f"production is now {v1}"
    assert run("models", "promote", v2).exit_code == 0
    refused = run("models", "delete", v2)
    assert refused.exit_code != 0 and refused.output.startswith("error:") and refused.output.count("\n") == 1
    assert run("models", "delete", v1).exit_code != 0  # the predecessor is kept for rollback
    assert run("models", "delete", f"{v1}_agent5").exit_code == 0
    assert not (data_dir / "models" / f"model_{v1}_agent5").exists()

    dest = tmp_path / "out"
    copied = run("models", "package", v2, "--dest", dest)
    assert copied.exit_code == 0, copied.output
    with zipfile.ZipFile(copied.output.strip()) as zf:
        assert {"model.joblib", "metadata.json", "deployment_manifest.json"} <= set(zf.namelist())
        assert all("/" not in n for n in zf.namelist())
    assert run("models", "package", v2, "--dest", dest).exit_code != 0  # never overwrites


@pytest.mark.parametrize("bad", ["../etc", "model_../x", "/tmp/x", "20250101", ""])
def test_bad_version_strings_are_one_clear_line(run, bad: str) -> None:
    for cmd in (["models", "show", bad], ["models", "promote", bad], ["models", "delete", bad], ["score", str(HOSTAPD_1824), "--model", bad]):
        result = run(*cmd)
        assert result.exit_code != 0, cmd
        assert result.output.startswith("error:") and result.output.count("\n") == 1, (cmd, result.output)


def test_score_without_production_model(run) -> None:
    result = run("score", HOSTAPD_1824)
    assert result.exit_code != 0 and "no production model" in result.output


def test_up_dry_run_prepares_the_data_root(run, data_dir: Path) -> None:
    result = run("up", "--dry-run")
    assert result.exit_code == 0
    assert "dagster dev" in result.output.replace("/dagster dev", "dagster dev") or " dev -m mcp_training_dagster.definitions" in result.output
    assert (data_dir / "exports" / HOSTAPD_1824.name).is_file()
    assert (data_dir / "dagster_home" / "dagster.yaml").is_file()
