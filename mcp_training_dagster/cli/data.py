"""``validate``, ``score`` and ``generate``: export files checked, scored by a registered model, or written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mcp_training_dagster.cli.app import main
from mcp_training_dagster.cli.common import check_input_file, fail, history_option, load
from mcp_training_dagster.domain.export_split import split_decoder
from mcp_training_dagster.serving.exports import ExportFileError, read_export
from mcp_training_dagster.serving.validation import validate_records


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(files: tuple[Path, ...], fmt: str) -> None:
    """Check export files: exit 0 when every file is usable, 1 when any is not.

    A file is unusable when it is not an export at all or when more of its records are
    quarantined than training.quarantine.max_fraction allows."""
    settings = load()
    limit = settings.training.quarantine.max_fraction
    all_ok = True
    for path in files:
        try:
            # As raw_export reads it: the same size limit and cores.
            raw = read_export(
                path,
                max_bytes=settings.training.input_limits.max_export_bytes,
                decode=split_decoder(settings.training.read_processes),
            )
        except ExportFileError as exc:
            all_ok = False
            _emit(fmt, {"file": str(path), "ok": False, "error": exc.problem}, f"{path}: INVALID: {exc.problem}")
            continue
        result = validate_records(
            raw.records,
            path.name,
            service_timezone=settings.training.service_timezone,
            extra_wifi_processes=settings.model.events.extra_wifi_processes,
            warnings=raw.facts.warnings,
        )
        rep = result.report
        ok = rep.bad_fraction <= limit
        all_ok &= ok
        verdict = "ok" if ok else f"REJECTED: {rep.bad_fraction:.1%} bad records > limit {limit:.1%}"
        text = (
            f"{path}: {verdict}: {rep.records_in} records, {rep.valid} valid, {rep.quarantined} quarantined "
            f"{rep.quarantine_by_reason or ''}, {rep.time_start} .. {rep.time_end}"
            + "".join(f"\n  warning: {w}" for w in rep.warnings)
        )
        _emit(fmt, {"file": str(path), "ok": ok, "sha256": raw.facts.sha256, **rep.model_dump()}, text)
    sys.exit(0 if all_ok else 1)


def _emit(fmt: str, obj: dict, text: str) -> None:
    click.echo(json.dumps(obj, default=str) if fmt == "json" else text)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--model", "version", default=None, help="Model version (default: the production model).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--anomalies-only", is_flag=True, help="Only the windows flagged as anomalous.")
@history_option
def score(file: Path, version: str | None, fmt: str, anomalies_only: bool, history: tuple[Path, ...] = ()) -> None:
    """Score an export with a registered model: one row per window, most anomalous first.

    Columns: device_id, entity (station MAC, interface, or * for the whole device), window_start
    (ISO-8601), score (higher = more anomalous), is_anomaly (score > the model's threshold), reasons."""
    # Imported here, not at the top: the CLI starts fast for the commands that need none of this.
    import pandas as pd

    from mcp_training_dagster.domain.promotion import load_production
    from mcp_training_dagster.domain.registry import RegistryError
    from mcp_training_dagster.serving.features import WindowSpec
    from mcp_training_dagster.serving.scoring import export_file_records, export_file_windows

    check_input_file(file)  # before the model load, which takes seconds
    for h in history:
        check_input_file(h)
    settings = load()
    try:
        prod = load_production(settings.models_location, version)
    except RegistryError as exc:
        fail(str(exc))
    if prod is None:
        fail("no production model yet; train one or pass --model VERSION")
    ic = prod.config
    if ic.get("input") != "export_records":
        fail(f"model {prod.version} takes {ic.get('input')}, not export records; score with a window model")
    spec = WindowSpec.from_dict(ic["window_spec"])
    opts = {
        "service_timezone": ic.get("service_timezone", "UTC"),
        "extra_wifi_processes": ic.get("extra_wifi_processes", ()),
    }
    past = None
    for h in history:
        try:
            part = export_file_records(h, **opts)
        except (ExportFileError, OSError) as exc:
            fail(f"{h}: {getattr(exc, 'problem', None) or exc}")
        past = part if past is None else pd.concat([past, part], ignore_index=True)
    if past is not None:
        past = past.sort_values(["timestamp", "id"], kind="stable").reset_index(drop=True)
    try:
        windows = export_file_windows(file, spec, history=past, **opts)
    except (ExportFileError, OSError) as exc:
        fail(f"{file}: {getattr(exc, 'problem', None) or exc}")
    table = prod.score_table(windows)
    if anomalies_only:
        table = table[table["is_anomaly"]]
    table = table.loc[:, ["device_id", "entity", "window_start", "score", "is_anomaly", "reasons"]]
    if fmt == "json":
        click.echo(table.to_json(orient="records", indent=1))
    else:
        click.echo(table.to_csv(index=False), nl=False)


# Option names as the user typed them, for pydantic errors that name a ScenarioConfig field.
_GENERATE_OPTIONS = {
    "seed": "--seed",
    "days": "--days",
    "n_devices": "--devices",
    "start": "--start",
    "episodes_per_scenario": "--episodes",
    "benign_per_scenario": "--benign",
}


@main.command()
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--days", default=7.0, show_default=True, type=float)
@click.option("--devices", default=3, show_default=True, type=int)
@click.option(
    "--start", default="2025-06-01T00:00:00", show_default=True, help="First timestamp (service time, naive)."
)
@click.option("--episodes", default=3, show_default=True, type=int, help="Episodes per anomaly scenario.")
@click.option("--benign", default=3, show_default=True, type=int, help="Episodes per benign lookalike.")
def generate(output: Path, seed: int, days: float, devices: int, start: str, episodes: int, benign: int) -> None:
    """Write a labelled scenario export: OUTPUT (export JSON), OUTPUT.labels.csv and OUTPUT.episodes.csv.

    Realistic traffic for several routers with injected attacks and benign lookalikes; the same seed
    gives the same file. Never overwrites."""
    from datetime import datetime

    from pydantic import ValidationError

    from mcp_training_dagster.domain.scenarios import ScenarioConfig, generate as run, write_export

    if not output.parent.is_dir():
        fail(f"{output}: its folder {output.parent} does not exist")
    if output.is_dir():
        fail(f"{output}: is a folder; name the export file to write")
    try:
        first = datetime.fromisoformat(start)
    except ValueError:
        fail(f"--start {start!r}: not an ISO-8601 time (for example 2025-06-01T00:00:00)")
    try:
        cfg = ScenarioConfig(
            seed=seed,
            days=days,
            n_devices=devices,
            start=first,
            episodes_per_scenario=episodes,
            benign_per_scenario=benign,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else ""
        fail(f"{_GENERATE_OPTIONS.get(field, field)} {err.get('input')!r}: {err['msg']}")
    except ValueError as exc:
        fail(f"bad scenario settings: {exc}".splitlines()[0])
    data = run(cfg)
    try:
        paths = write_export(data, output)
    except FileExistsError as exc:
        fail(f"{exc.filename or exc}: already exists, not overwritten")
    except OSError as exc:
        fail(f"{output}: cannot write ({exc.strerror})")
    n_anom = int(data.labels["is_anomaly"].sum())
    click.echo(
        f"{paths['export'] if 'export' in paths else output}: {len(data.records)} records, {n_anom} anomalous, "
        f"{len(data.episodes)} episodes (seed {seed})"
    )
