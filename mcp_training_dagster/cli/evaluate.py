"""``mcp-training evaluate`` and ``mcp-training incidents`` (commands of the ``mcp-training`` group).

``evaluate`` measures the product on independent labelled exports as a new user would use it: train on
the exports alone, score them, and only then read the labels. ``incidents`` scores exports with a
registered model and merges the flagged windows of each router into incidents.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from mcp_training_dagster.cli.app import main
from mcp_training_dagster.cli.common import fail as _fail
from mcp_training_dagster.cli.common import load as _settings
from mcp_training_dagster.cli.common import history_option


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def evaluation_text(result: dict) -> str:
    """A short human-readable report of :func:`independent_eval.evaluate_exports`."""
    lines = [
        f"{len(result['exports'])} export(s), {result['records']} records, {result['routers']} routers, "
        f"{result['router_days']} router-days (trained and scored in {result['seconds']} s)"
    ]
    for level in ("device", "key"):
        f = result[level]
        lines.append(
            f"{level:<7} PR-AUC {_fmt(f['pr_auc'])}  ROC-AUC {_fmt(f['roc_auc'])}  F1 {_fmt(f['f1'])}  "
            f"precision {_fmt(f['precision'])}  recall {_fmt(f['recall'])}  "
            f"({f['positive_windows']} positive of {f['windows']} windows; tp {f['tp']} fp {f['fp']} fn {f['fn']})"
        )
        lines.append(
            "        recall by scenario: " + ", ".join(f"{k} {v:.2f}" for k, v in f["per_scenario_recall"].items())
        )
    i = result["incidents"]
    lines.append(
        f"incidents {i['incidents']}: precision {_fmt(i['incident_precision'])}, episode recall "
        f"{_fmt(i['episode_recall'])} ({i['episodes_detected']}/{i['episodes']}), false incidents "
        f"{i['false_incidents']} = {i['false_incidents_per_router_week']} per router-week"
    )
    a = result["alarms_per_router_day"]
    lines.append(f"alarms per router-day: {a['device_windows']} device windows, {a['incidents']} incidents")
    t = result["threshold"]
    lines.append(
        f"threshold: {t['method']}"
        + "".join(
            f"; {k} budget {v['budget_per_router_day']}/router-day (expected {v['expected_alarms_per_router_day']})"
            + (
                f", joining a raised alarm {v['continue_budget_per_router_day']}/router-day"
                if "continue_budget_per_router_day" in v
                else ""
            )
            for k, v in t.get("by_kind", {}).items()
        )
    )
    return "\n".join(lines)


@main.command()
@click.argument("exports", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--labels",
    "labels",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="labels.csv: id,device_id,timestamp,station_mac,scenario,is_anomaly[,interface] (read only to measure)",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--predictions",
    "pred_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write preds_device.csv, preds_key.csv (eval_windows.py input) and incidents.csv here.",
)
def evaluate(exports: tuple[Path, ...], labels: Path, fmt: str, pred_dir: Path | None) -> None:
    """Train on EXPORTS as a user would (unsupervised, the labels unseen), score them, then measure against
    LABELS: window figures at device and key level, recall per scenario, incident precision and episode recall."""
    from mcp_training_dagster.serving.exports import ExportFileError
    from mcp_training_dagster.domain.independent_eval import evaluate_exports
    from mcp_training_dagster.domain.training import TrainingError

    settings = _settings()
    try:
        result = evaluate_exports(list(exports), labels, settings, keep_predictions=pred_dir is not None)
    except (ExportFileError, TrainingError, ValueError, OSError) as exc:
        _fail(str(exc))
    incidents = result.pop("incident_table")
    preds = result.pop("predictions", None)
    if pred_dir is not None and preds is not None:
        pred_dir.mkdir(parents=True, exist_ok=True)
        cols = ["device_id", "key", "entity_kind", "window_start", "score", "is_anomaly"]
        table = preds.rename(columns={"entity": "key"}).loc[:, cols]
        table[table["key"] == "*"].to_csv(pred_dir / "preds_device.csv", index=False)
        table[table["key"] != "*"].to_csv(pred_dir / "preds_key.csv", index=False)
        incidents.to_csv(pred_dir / "incidents.csv", index=False)
    if fmt == "json":
        click.echo(json.dumps(result, indent=1, default=str))
    else:
        click.echo(evaluation_text(result))


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "version", default=None, help="Model version (default: the production model).")
@history_option
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
def incidents(files: tuple[Path, ...], version: str | None, history: tuple[Path, ...], fmt: str) -> None:
    """Score FILES with a registered model and print its incidents, most severe first: flagged windows of one
    router (device, stations, interfaces) that overlap or follow each other, with severity (the highest
    calibrated score), entities, event families and the reasons in words."""
    from mcp_training_dagster.serving.exports import ExportFileError
    from mcp_training_dagster.serving.features import WindowSpec
    from mcp_training_dagster.domain.incidents import build_incidents, incidents_to_json
    from mcp_training_dagster.domain.independent_eval import load_records
    from mcp_training_dagster.domain.package_check import load_package
    from mcp_training_dagster.domain.packaging import PackageError
    from mcp_training_dagster.cli.common import open_registry
    from mcp_training_dagster.domain.registry import RegistryError
    from mcp_training_dagster.serving.scoring import score_table, windows_with_history

    settings = _settings()
    registry = open_registry(settings)
    try:
        chosen = version or registry.production()
        if chosen is None:
            _fail("no production model yet; train one or pass --model VERSION")
        pkg = load_package(registry.path(chosen))
    except (RegistryError, PackageError) as exc:
        _fail(str(exc))
    ic = pkg.metadata["inference_config"]
    if ic.get("input") != "export_records":
        _fail(f"model {chosen} takes {ic.get('input')}, not export records; use a window model")
    spec = WindowSpec.from_dict(ic["window_spec"])
    opts = {
        "service_timezone": ic.get("service_timezone", "UTC"),
        "extra_wifi_processes": ic.get("extra_wifi_processes", ()),
    }
    for p in (*files, *history):
        if not p.is_file():
            _fail(f"{p}: no such file")
    try:
        records = load_records(list(files), **opts)
        past = load_records(list(history), **opts) if history else None
    except (ExportFileError, OSError, ValueError) as exc:
        _fail(str(exc))
    windows = windows_with_history(records, past, spec)
    table = score_table(windows, pkg.pipeline, float(ic["threshold"]), ic["feature_names"])
    out = build_incidents(table, records, spec, windows=windows)
    if fmt == "json":
        click.echo(json.dumps(incidents_to_json(out), indent=1, default=str))
    else:
        click.echo(out.to_csv(index=False), nl=False)
