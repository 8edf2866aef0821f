"""The command line through click's test runner: same code path as the assets, clear errors, exit codes."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mcp_training_dagster.cli import main
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35

pytestmark = pytest.mark.slow  # Dagster job runs / CLI training: not in `make test-fast`


@pytest.fixture
def run(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster_home"))  # restored after the test
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_every_command_has_help(run) -> None:
    for cmd in (
        [],
        ["validate"],
        ["train"],
        ["score"],
        ["generate"],
        ["up"],
        ["models"],
        ["models", "list"],
        ["models", "show"],
        ["models", "promote"],
        ["models", "rollback"],
        ["models", "package"],
        ["models", "delete"],
    ):
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
    lines = dict(
        line.split(None, 1) for line in first.output.splitlines() if line.startswith(("version", "package", "zip"))
    )
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
    # --history: the router's other exports feed the gaps and history features (here its system log's records)
    hist = run("score", SYSTEM_35, "--history", HOSTAPD_1824, "--history", SYSTEM_19)
    assert hist.exit_code == 0, hist.output
    alone = run("score", SYSTEM_35)
    both = pd.read_csv(pd.io.common.StringIO(hist.output)).merge(
        pd.read_csv(pd.io.common.StringIO(alone.output)),
        on=["device_id", "entity", "window_start"],
        suffixes=("_h", "_a"),
    )
    assert len(both) and (both["score_h"] != both["score_a"]).any()
    assert run("score", HOSTAPD_1824, "--history", tmp_path / "nope.json").exit_code != 0

    # the same files again: nothing re-ingested, nothing retrained, no new version (and the CLI says so)
    again = run("train", HOSTAPD_1824, SYSTEM_35, SYSTEM_19)
    assert again.exit_code == 0, again.output
    assert "already ingested (same content), skipped" in again.output
    assert "no new version" in again.output and "version    " not in again.output
    assert sorted(p.name for p in (data_dir / "models").glob("model_*") if p.is_dir()) == [
        f"model_{v1}",
        f"model_{v1}_agent5",
    ]

    # --force trains again on purpose: a new version
    second = run("train", "--force")
    assert second.exit_code == 0, second.output
    v2 = next(line.split()[1] for line in second.output.splitlines() if line.startswith("version"))
    assert v2 != v1

    listing = run("models", "list")
    assert listing.exit_code == 0
    assert v1 in listing.output and v2 in listing.output and f"{v1}_agent5" in listing.output
    header, *rows = listing.output.splitlines()
    assert header.split() == ["VERSION", "CREATED", "(UTC)", "TYPE", "INPUT", "F1", "ROC-AUC", "PR-AUC", "READY"]
    assert len({row.index("IsolationForest") for row in rows if "IsolationForest" in row}) == 1  # aligned columns
    shown = json.loads(run("models", "show", v1).output)
    assert shown["metadata"]["model_info"]["version"] == f"model_{v1}"

    # production is the newest passing model; roll back, promote, refuse to delete the protected ones
    prod = json.loads(run("models", "list", "--format", "json").output)
    current = [e["version"] for e in prod if e["is_production"]]
    assert current == [v2]
    assert _verdict_version(data_dir, HOSTAPD_1824.name) == v2, "verdicts follow the promoted model"
    rolled = run("models", "rollback")
    assert rolled.output.splitlines()[0] == f"production is now {v1}"
    assert _verdict_version(data_dir, HOSTAPD_1824.name) == v1, "a rollback re-scores the exports"
    assert run("models", "promote", v2).exit_code == 0
    refused = run("models", "delete", v2)
    assert refused.exit_code != 0 and refused.output.startswith("error:") and refused.output.count("\n") == 1
    assert run("models", "delete", v1).exit_code != 0  # the predecessor is kept for rollback
    assert run("models", "delete", f"{v1}_agent5").exit_code == 0
    assert not (data_dir / "models" / f"model_{v1}_agent5").exists()
    v3 = next(line.split()[1] for line in run("train", "--force").output.splitlines() if line.startswith("version"))
    deleted = run("models", "delete", v1)  # no longer the rollback target: goes, with nothing orphaned
    assert deleted.exit_code == 0, deleted.output
    assert not list((data_dir / "models").glob(f"model_{v1}*")) and v3 != v2
    assert run("models", "promote", v2).exit_code == 0

    dest = tmp_path / "out"
    copied = run("models", "package", v2, "--dest", dest)
    assert copied.exit_code == 0, copied.output
    with zipfile.ZipFile(copied.output.strip()) as zf:
        assert {"model.joblib", "metadata.json", "deployment_manifest.json"} <= set(zf.namelist())
        assert all("/" not in n for n in zf.namelist())
    assert run("models", "package", v2, "--dest", dest).exit_code != 0  # never overwrites


def _verdict_version(data_dir: Path, export: str) -> str | None:
    """production_version of the export's latest verdicts, from the Dagster instance the CLI used."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        recs = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("export_anomalies"), asset_partitions=[export]), limit=1
        ).records
        return recs[0].asset_materialization.metadata["production_version"].value if recs else None


def test_train_keeps_another_routers_records_with_reused_ids(run, data_dir: Path, tmp_path: Path) -> None:
    """A second router's export numbers its records from the same ids: a new model learns from both."""
    assert run("train", HOSTAPD_1824).exit_code == 0
    other = tmp_path / "export_other_router_20250628.json"
    doc = json.loads(HOSTAPD_1824.read_text())
    for r in doc["data"]:
        r["timestamp"] = (pd.Timestamp(r["timestamp"]) + pd.Timedelta(days=1)).isoformat()
        r["device_id"], r["device_ip"] = 77, "RT-OTHER-77"
    other.write_text(json.dumps(doc))
    result = run("train", other)
    assert result.exit_code == 0, result.output
    assert f"{2 * len(doc['data'])} records reusing an id kept" in result.output  # both sides of each id
    version = next(line.split()[1] for line in result.output.splitlines() if line.startswith("version"))
    meta = json.loads((data_dir / "models" / f"model_{version}" / "metadata.json").read_text())
    assert other.name in meta["model_info"]["export_files"] and HOSTAPD_1824.name in meta["model_info"]["export_files"]
    # The better-informed model replaced the first: judged like with like, on held-out data neither saw fitted.
    assert json.loads((data_dir / "models" / "production.json").read_text())["version"] == version
    assert "candidate_pr_auc" in result.output and "production_pr_auc" in result.output


def test_train_on_a_non_export_fails_and_cleans_up(run, data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "export_notjson_20250101_000000.json"
    bad.write_text("this is not json\n")
    result = run("train", bad)
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "DEBUG" not in result.output
    assert bad.name in result.stderr and "nothing trained" in result.stderr
    assert not (data_dir / "exports" / bad.name).exists(), "the failed copy does not sit in the landing folder"
    assert bad.is_file(), "the user's own file is untouched"
    assert not list((data_dir / "models").glob("model_*"))
    import dagster as dg

    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        assert bad.name not in instance.get_dynamic_partitions("export_files")


def test_train_is_quiet_and_keeps_dagsters_log_in_a_file(run, data_dir: Path) -> None:
    result = run("train", SYSTEM_35, HOSTAPD_1824)
    assert result.exit_code == 0, result.output
    assert "DEBUG" not in result.output and "dagster - " not in result.output
    assert len(result.output.splitlines()) < 25, result.output
    for word in ("ingested", "windows", "model", "gate", "production", "verdicts"):
        assert word in result.output, word
    logs = list((data_dir / "logs").glob("train-*.log"))
    assert len(logs) == 1 and "STEP_SUCCESS" in logs[0].read_text()


def _not_packaged_line(result, pattern: str) -> str:
    """The one "was not packaged" line of a blocked training, asserted to say why in ``pattern``'s figures."""
    (line,) = [x for x in result.stderr.splitlines() if "was not packaged" in x]
    assert re.search(pattern, line), line
    return line


def test_blocked_candidate_is_not_packaged_and_says_why(run, data_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("MCP_MODEL_EVALUATION__MIN_F1", "0.99")
    result = run("train", HOSTAPD_1824, SYSTEM_35)
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "AttributeError" not in result.output
    assert "FAILED meets_quality_gates" in result.output and "was not packaged" in result.stderr
    assert not list((data_dir / "models").glob("model_*")), "a failed blocking check means no package"
    # The one line says why in figures: the candidate's F1 against the minimum, on how many held-out windows.
    _not_packaged_line(
        result,
        r"meets_quality_gates: candidate fitted before the split: F1 \d\.\d{3} \(min 0\.990\), ROC-AUC \d\.\d{3} "
        r"\(min 0\.600\) on [\d,]+ held-out windows \([\d,]+ anomalous\)",
    )


def test_candidate_worse_than_production_says_by_how_much(run, data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Blocked by not_worse_than_production: both PR-AUCs, the windows compared and the allowed regression in the
    one line (the gate forced to fail: a real candidate on another router's data is better than production)."""
    from mcp_training_dagster.domain import promotion

    assert run("train", HOSTAPD_1824).exit_code == 0
    production = json.loads((data_dir / "models" / "production.json").read_text())["version"]
    other = tmp_path / "export_other_router_20250628.json"
    doc = json.loads(HOSTAPD_1824.read_text())
    for r in doc["data"]:
        r["timestamp"] = (pd.Timestamp(r["timestamp"]) + pd.Timedelta(days=1)).isoformat()
        r["device_id"], r["device_ip"] = 77, "RT-OTHER-77"
    other.write_text(json.dumps(doc))
    monkeypatch.setattr(promotion, "not_worse_than", lambda *_: False)
    result = run("train", other)
    assert result.exit_code == 1, result.output
    line = _not_packaged_line(
        result,
        rf"not_worse_than_production: candidate PR-AUC \d\.\d{{3}} vs production {production} \d\.\d{{3}} on "
        r"[\d,]+ held-out windows neither was fitted on \([\d,]+ anomalous\); allowed regression 0\.020",
    )
    assert f"Production stays {production}" in line


def test_train_refuses_while_the_data_folder_is_in_use(run, data_dir: Path) -> None:
    from mcp_training_dagster.cli.common import data_folder_lock

    with data_folder_lock(data_dir / "dagster_home", "mcp-training up (http://127.0.0.1:3000)"):
        result = run("train", HOSTAPD_1824)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "in use by mcp-training up" in result.stderr
    assert not (data_dir / "exports" / HOSTAPD_1824.name).exists(), "nothing copied into the watched folder"


def test_wrong_paths_are_one_clear_line(run, tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cases = {
        ("generate", tmp_path / "missing" / "dir" / "out.json"): "does not exist",
        ("generate", tmp_path / "x.json", "--days", "-1"): "--days",
        ("train", tmp_path): "is a folder",
        ("train", tmp_path / "nope.json"): "no such file",
        ("score", tmp_path / "nope.json"): "no such file",
        ("models", "package", "20250101_000000_000000_abcdef", "--dest", a_file): "is a file",
        ("models", "package", "20250101_000000_000000_abcdef", "--dest", tmp_path / "no" / "dest"): "does not exist",
    }
    for args, words in cases.items():
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error:") and result.output.count("\n") == 1, (args, result.output)
        assert words in result.output, (args, result.output)


@pytest.mark.parametrize("bad", ["../etc", "model_../x", "/tmp/x", "20250101", ""])
def test_bad_version_strings_are_one_clear_line(run, bad: str) -> None:
    for cmd in (
        ["models", "show", bad],
        ["models", "promote", bad],
        ["models", "delete", bad],
        ["score", str(HOSTAPD_1824), "--model", bad],
    ):
        result = run(*cmd)
        assert result.exit_code != 0, cmd
        assert result.output.startswith("error:") and result.output.count("\n") == 1, (cmd, result.output)


def test_score_without_production_model(run) -> None:
    result = run("score", HOSTAPD_1824)
    assert result.exit_code != 0 and "no production model" in result.output


def test_up_dry_run_prepares_the_data_root(run, data_dir: Path) -> None:
    result = run("up", "--dry-run")
    assert result.exit_code == 0
    assert (
        "dagster dev" in result.output.replace("/dagster dev", "dagster dev")
        or " dev -m mcp_training_dagster.definitions" in result.output
    )
    assert (data_dir / "exports" / HOSTAPD_1824.name).is_file()
    assert (data_dir / "dagster_home" / "dagster.yaml").is_file()
    assert (data_dir / "dagster_home" / ".nux" / "nux.yaml").is_file(), "no community prompt over the first view"
