"""``mcp-training``: the command-line door to the same code the assets run.

``up`` prepares the data root and starts Dagster (webserver + daemon) with the sensors on;
``validate`` checks export files with exactly the functions the ingest assets call; ``train`` runs
the asset graph itself in-process; ``score`` uses a registered package exactly as the inference
side would; ``models`` manages the registry; ``generate`` writes labelled scenario exports.
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


def _land(settings: Settings, files: tuple[Path, ...]) -> list[str]:
    """Copy the files into the landing folder (never overwriting a different file of the same name)."""
    from mcp_training_dagster.domain.exports import sha256_file

    names = []
    for path in files:
        if not path.is_file():
            _fail(f"{path}: no such file")
        target = settings.landing_dir / path.name
        if target.exists():
            if target.resolve() != path.resolve() and sha256_file(target) != sha256_file(path):
                _fail(f"{path}: a different file named {path.name} is already in {settings.landing_dir}; rename one")
        else:
            tmp = target.with_name(target.name + ".part")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        for side in (".labels.csv", ".episodes.csv"):  # labels travel with their export
            src, dst = path.with_name(path.name + side), target.with_name(target.name + side)
            if src.exists() and not dst.exists():
                shutil.copyfile(src, dst)
        names.append(path.name)
    return names


@main.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def train(files: tuple[Path, ...]) -> None:
    """Train on export files by running the asset graph in-process (the same assets the UI shows).

    The files are copied into the landing folder and ingested as partitions (a file whose content
    was already ingested is not processed again); then training, evaluation and packaging run over
    every export in the training horizon. Prints the new version and where its package is."""
    import dagster as dg

    from mcp_training_dagster.defs.partitions import export_files
    from mcp_training_dagster.definitions import build_definitions
    from mcp_training_dagster.domain.exports import sha256_file

    settings = _settings()
    info = prepare_data_root(settings, with_samples=False)
    names = _land(settings, files)
    os.environ["DAGSTER_HOME"] = str(info["dagster_home"])
    defs = build_definitions(settings)
    with dg.DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(export_files.name))
        new = [n for n in names if n not in known]
        if new:
            instance.add_dynamic_partitions(export_files.name, new)
        ingest = defs.resolve_job_def("ingest_job")
        for name in names:
            records = [] if name in new else instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_export"), asset_partitions=[name]), limit=1
            ).records
            mat = records[0].asset_materialization if records else None
            seen = mat.metadata.get("sha256") if mat else None
            if seen is not None and seen.value == sha256_file(settings.landing_dir / name):
                click.echo(f"{name}: already ingested (same content), skipped")
                continue
            result = ingest.execute_in_process(instance=instance, partition_key=name, raise_on_error=False)
            click.echo(f"{name}: {'ingested' if result.success else 'FAILED (see the Dagster UI or logs)'}")
        result = defs.resolve_job_def("train_job").execute_in_process(instance=instance, raise_on_error=False)
        summary = result.output_for_node("model_package") if result.success else None
    if not summary:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        checks = [e.event_specific_data.asset_check_evaluation for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        reasons = [f"check {c.check_name} failed" for c in checks if c and not c.passed]
        _fail(f"training did not produce a package ({', '.join(failed + reasons) or 'see the run logs'})")
    click.echo(f"version    {summary['version']}")
    click.echo(f"package    {summary['path']}")
    click.echo(f"zip        {summary['zip']}")
    click.echo(f"production {summary['production']} (promoted: {summary['promoted']}, deployment_ready: {summary['deployment_ready']})")


def _registry(settings: Settings):  # -> ModelRegistry
    from mcp_training_dagster.domain.registry import ModelRegistry

    return ModelRegistry(settings.models_dir)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--model", "version", default=None, help="Model version (default: the production model).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--anomalies-only", is_flag=True, help="Only the windows flagged as anomalous.")
def score(file: Path, version: str | None, fmt: str, anomalies_only: bool) -> None:
    """Score an export with a registered model: one row per window, most anomalous first.

    Columns: device_id, entity (station MAC, interface, or * for the whole device), window_start
    (ISO-8601), score (higher = more anomalous), is_anomaly (score > the model's threshold), reasons."""
    from mcp_training_dagster.domain.features import WindowSpec
    from mcp_training_dagster.domain.packaging import PackageError, load_package
    from mcp_training_dagster.domain.registry import RegistryError
    from mcp_training_dagster.domain.scoring import export_file_windows, score_table

    settings = _settings()
    registry = _registry(settings)
    try:
        chosen = version or registry.production()
        if chosen is None:
            _fail("no production model yet; train one or pass --model VERSION")
        pkg = load_package(registry.path(chosen))
    except (RegistryError, PackageError) as exc:
        _fail(str(exc))
    ic = pkg.metadata["inference_config"]
    if ic.get("input") != "export_records":
        _fail(f"model {chosen} takes {ic.get('input')}, not export records; score with a window model")
    try:
        windows = export_file_windows(file, WindowSpec(**{**ic["window_spec"], "entities": tuple(ic["window_spec"]["entities"])}), service_timezone=ic.get("service_timezone", "UTC"),
                                      extra_wifi_processes=ic.get("extra_wifi_processes", ()))
    except (ExportFileError, OSError) as exc:
        _fail(str(exc))
    table = score_table(windows, pkg.pipeline, float(ic["threshold"]), ic["feature_names"])
    if anomalies_only:
        table = table[table["is_anomaly"]]
    table = table.loc[:, ["device_id", "entity", "window_start", "score", "is_anomaly", "reasons"]]
    if fmt == "json":
        click.echo(table.to_json(orient="records", indent=1))
    else:
        click.echo(table.to_csv(index=False), nl=False)


@main.group()
def models() -> None:
    """List, inspect, promote, roll back, package and delete registered models."""


def _registry_call(fn, *args):  # one clear line and exit 2 on a refused operation
    from mcp_training_dagster.domain.packaging import PackageError
    from mcp_training_dagster.domain.registry import RegistryError

    try:
        return fn(*args)
    except (RegistryError, PackageError) as exc:
        _fail(str(exc))


@models.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def models_list(fmt: str) -> None:
    """Registered versions, newest first; * marks production."""
    entries = _registry_call(_registry(_settings()).list)
    if fmt == "json":
        click.echo(json.dumps([{**e.__dict__, "path": str(e.path)} for e in entries], default=str, indent=1))
        return
    if not entries:
        click.echo("no models registered")
    for e in entries:
        f = lambda v: "  n/a" if v is None else f"{v:.3f}"  # noqa: E731
        click.echo(f"{'*' if e.is_production else ' '} {e.version}  {e.model_type or '?':<18} {e.input_kind or '?':<28} "
                   f"f1 {f(e.f1)}  roc_auc {f(e.roc_auc)}  pr_auc {f(e.pr_auc)}  ready {e.deployment_ready}"
                   + (f"  ERROR {e.error}" if e.error else ""))


@models.command("show")
@click.argument("version")
def models_show(version: str) -> None:
    """Metadata, manifest and status of one version (JSON)."""
    click.echo(json.dumps(_registry_call(_registry(_settings()).show, version), indent=1, default=str))


@models.command("promote")
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote even a package whose evaluation gates did not pass.")
def models_promote(version: str, force: bool) -> None:
    """Make VERSION the production model (its files are verified against its manifest first)."""
    registry = _registry(_settings())
    _registry_call(lambda: registry.promote(version, "cli", force=force))
    click.echo(f"production is now {version}")


@models.command("rollback")
def models_rollback() -> None:
    """Return production to the previous production version."""
    click.echo(f"production is now {_registry_call(_registry(_settings()).rollback)}")


@models.command("delete")
@click.argument("version")
def models_delete(version: str) -> None:
    """Delete VERSION (never the production model or its predecessor)."""
    _registry_call(_registry(_settings()).delete, version)
    click.echo(f"deleted {version}")


@models.command("package")
@click.argument("version")
@click.option("--dest", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="Folder to copy model_<version>_deployment.zip into (never overwriting).")
def models_package(version: str, dest: Path) -> None:
    """Verify VERSION's files against its manifest and copy its deployment ZIP to DEST."""
    from mcp_training_dagster.domain.packaging import verify_package

    registry = _registry(_settings())
    path = _registry_call(registry.path, version)
    _registry_call(verify_package, path)
    zips = sorted(path.parent.glob(f"{path.name}_deployment.zip"))
    if not zips:
        _fail(f"{path.name}_deployment.zip is missing from {path.parent}")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / zips[0].name
    if target.exists():
        _fail(f"{target} already exists")
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(zips[0], tmp)
    os.replace(tmp, target)
    click.echo(str(target))


@main.command()
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--days", default=7.0, show_default=True, type=float)
@click.option("--devices", default=3, show_default=True, type=int)
@click.option("--start", default="2025-06-01T00:00:00", show_default=True, help="First timestamp (service time, naive).")
@click.option("--episodes", default=3, show_default=True, type=int, help="Episodes per anomaly scenario.")
@click.option("--benign", default=3, show_default=True, type=int, help="Episodes per benign lookalike.")
def generate(output: Path, seed: int, days: float, devices: int, start: str, episodes: int, benign: int) -> None:
    """Write a labelled scenario export: OUTPUT (export JSON), OUTPUT.labels.csv and OUTPUT.episodes.csv.

    Realistic traffic for several routers with injected attacks and benign lookalikes; the same seed
    gives the same file. Never overwrites."""
    from datetime import datetime

    from pydantic import ValidationError

    from mcp_training_dagster.domain.scenarios import ScenarioConfig, generate as run, write_export

    try:
        cfg = ScenarioConfig(seed=seed, days=days, n_devices=devices, start=datetime.fromisoformat(start),
                             episodes_per_scenario=episodes, benign_per_scenario=benign)
    except (ValidationError, ValueError) as exc:
        _fail(f"bad scenario settings: {exc}".splitlines()[0])
    data = run(cfg)
    try:
        paths = write_export(data, output)
    except FileExistsError as exc:
        _fail(f"{exc.filename or exc}: already exists, not overwritten")
    n_anom = int(data.labels["is_anomaly"].sum())
    click.echo(f"{paths['export'] if 'export' in paths else output}: {len(data.records)} records, {n_anom} anomalous, "
               f"{len(data.episodes)} episodes (seed {seed})")


if __name__ == "__main__":
    main()

from mcp_training_dagster.commands_eval import evaluate, incidents  # noqa: E402

main.add_command(evaluate)
main.add_command(incidents)
