"""``mcp-training``: the command-line door to the same code the assets run.

``up`` prepares the data root and starts Dagster (webserver + daemon) with the sensors on;
``validate`` checks export files with exactly the functions the ingest assets call.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click

from mcp_training_dagster.domain.exports import ExportFileError, read_export
from mcp_training_dagster.domain.validation import validate_records
from mcp_training_dagster.settings import ConfigError, Settings, config_dir, get_settings

SAMPLES_DIR = Path(__file__).parent / "sample_exports"
_DEFAULT_INSTANCE_YAML = "telemetry:\n  enabled: false\n"


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigError as exc:
        _fail(str(exc))
        raise  # unreachable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train WiFi anomaly-detection models from MCP log exports (Dagster assets)."""


def prepare_data_root(settings: Settings, with_samples: bool = True) -> dict[str, object]:
    """Create the folders, seed the landing folder with the shipped samples (never overwriting
    a file that is already there) and put the instance config into the Dagster home."""
    t = settings.training
    for folder in (t.data_dir, settings.landing_dir, settings.models_dir, t.dagster_home):
        Path(folder).mkdir(parents=True, exist_ok=True)
    if "://" not in settings.asset_storage:
        Path(settings.asset_storage).mkdir(parents=True, exist_ok=True)
    copied: list[str] = []
    if with_samples:
        for sample in sorted(SAMPLES_DIR.glob("*.json")):
            target = settings.landing_dir / sample.name
            if not target.exists():
                tmp = target.with_name(target.name + ".part")  # the sensor ignores *.part
                shutil.copyfile(sample, tmp)
                os.replace(tmp, target)
                copied.append(sample.name)
    instance_yaml = Path(t.dagster_home) / "dagster.yaml"  # type: ignore[arg-type]
    if not instance_yaml.exists():
        cdir = config_dir()
        template = cdir / "dagster.yaml" if cdir else None
        text = template.read_text() if template and template.exists() else _DEFAULT_INSTANCE_YAML
        instance_yaml.write_text(text)
    return {"dagster_home": str(t.dagster_home), "landing_dir": str(settings.landing_dir), "copied_samples": copied}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the Dagster UI listens on.")
@click.option("--port", default=3000, show_default=True, type=int)
@click.option("--no-samples", is_flag=True, help="Do not copy the shipped sample exports into the landing folder.")
@click.option("--dry-run", is_flag=True, help="Prepare the folders and print the command instead of starting Dagster.")
def up(host: str, port: int, no_samples: bool, dry_run: bool) -> None:
    """Prepare the data root and start Dagster (UI + daemon) with the sensors running.

    Sample exports land in the landing folder; export_file_sensor ingests them and the
    automation sensor trains a model, with no clicks."""
    settings = _settings()
    info = prepare_data_root(settings, with_samples=not no_samples)
    dagster = Path(sys.executable).parent / "dagster"
    exe = str(dagster) if dagster.exists() else (shutil.which("dagster") or "dagster")
    cmd = [exe, "dev", "-m", "mcp_training_dagster.definitions", "-h", host, "-p", str(port)]
    env = {**os.environ, "DAGSTER_HOME": str(info["dagster_home"])}
    click.echo(f"landing folder : {info['landing_dir']}  (samples copied: {len(info['copied_samples'])})")  # type: ignore[arg-type]
    click.echo(f"DAGSTER_HOME   : {info['dagster_home']}")
    click.echo(f"Dagster UI     : http://{host}:{port}  (Ctrl-C stops it)")
    if dry_run:
        click.echo(" ".join(cmd))
        return
    os.execvpe(exe, cmd, env)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(files: tuple[Path, ...], fmt: str) -> None:
    """Check export files: exit 0 when every file is usable, 1 when any is not.

    A file is unusable when it is not an export at all or when more of its records are
    quarantined than training.quarantine.max_fraction allows."""
    settings = _settings()
    limit = settings.training.quarantine.max_fraction
    all_ok = True
    for path in files:
        try:
            raw = read_export(path)
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


if __name__ == "__main__":
    main()
