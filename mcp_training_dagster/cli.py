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
from typing import NoReturn

import click

from mcp_training_dagster.domain.exports import ExportFileError, read_export
from mcp_training_dagster.domain.validation import validate_records
from mcp_training_dagster.settings import ConfigError, Settings, config_dir, get_settings

SAMPLES_DIR = Path(__file__).parent / "sample_exports"
_DEFAULT_INSTANCE_YAML = "telemetry:\n  enabled: false\n"


def _fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and a non-zero exit: 2 for usage and input errors, 1 when work failed."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


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
    # The UI's "Join the Dagster community" prompt would cover the first view; mark it as seen
    # (Dagster keeps that in $DAGSTER_HOME/.nux/nux.yaml; config/dagster.yaml also sets nux.enabled: false).
    nux = Path(t.dagster_home) / ".nux" / "nux.yaml"  # type: ignore[arg-type]
    if not nux.exists():
        nux.parent.mkdir(parents=True, exist_ok=True)
        nux.write_text("seen: 1\n")
    return {"dagster_home": str(t.dagster_home), "landing_dir": str(settings.landing_dir), "copied_samples": copied}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the Dagster UI listens on.")
@click.option("--port", default=3000, show_default=True, type=int)
@click.option("--no-samples", is_flag=True, help="Do not copy the shipped sample exports into the landing folder.")
@click.option("--dry-run", is_flag=True, help="Prepare the folders and print the command instead of starting Dagster.")
@click.option("-v", "--verbose", is_flag=True, help="Show Dagster's own output here instead of in dagster-dev.log.")
def up(host: str, port: int, no_samples: bool, dry_run: bool, verbose: bool) -> None:
    """Prepare the data root and start Dagster (UI + daemon) with the sensors running.

    Sample exports land in the landing folder; export_file_sensor ingests them and the automation
    sensor trains, evaluates and promotes a model, with no clicks. This terminal shows what happens
    (runs finished, models registered and promoted); Dagster's own output goes to
    $DAGSTER_HOME/dagster-dev.log. One `up` per data folder: a second one, or a `train` while it runs,
    is refused."""
    import signal
    import subprocess
    import time

    settings = _settings()
    home = Path(settings.training.dagster_home)  # type: ignore[arg-type]
    lock = _hold_lock(home, f"mcp-training up (http://{host}:{port})")
    info = prepare_data_root(settings, with_samples=not no_samples)
    from mcp_training_dagster.domain.registry import ModelRegistry

    ModelRegistry(settings.models_dir).remove_stale_temp()  # leftovers of builds killed before this start
    dagster = Path(sys.executable).parent / "dagster"
    exe = str(dagster) if dagster.exists() else (shutil.which("dagster") or "dagster")
    cmd = [exe, "dev", "-m", "mcp_training_dagster.definitions", "-h", host, "-p", str(port)]
    os.environ["DAGSTER_HOME"] = str(info["dagster_home"])
    log_path = home / "dagster-dev.log"
    click.echo(f"landing folder : {info['landing_dir']}  (samples copied: {len(info['copied_samples'])})")  # type: ignore[arg-type]
    click.echo(f"DAGSTER_HOME   : {info['dagster_home']}")
    click.echo(f"Dagster UI     : http://{host}:{port}  (Ctrl-C stops it)")
    if dry_run:
        click.echo(" ".join(cmd))
        lock.__exit__(None, None, None)
        return
    click.echo(f"Dagster's log  : {'this terminal' if verbose else log_path}")
    click.echo("Drop export files into the landing folder: each is ingested, then a model is trained, evaluated "
               "and, when it passes its gates, promoted.")
    with open(log_path, "ab") as log:
        out = None if verbose else log
        proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True)  # our Ctrl-C is forwarded, so dagster dev stops cleanly
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    try:
        import dagster as dg

        from mcp_training_dagster.cli_runs import Progress

        with dg.DagsterInstance.get() as instance:
            progress = Progress(instance, settings.models_dir, f"http://{host}:{port}", click.echo)
            while proc.poll() is None:
                time.sleep(2)
                try:
                    progress.poll()
                except Exception as exc:  # noqa: BLE001 - progress is best effort; Dagster keeps running
                    click.echo(f"(progress unavailable: {exc})", err=True)
        _fail(f"dagster dev exited with code {proc.returncode}; see {log_path}")
    except KeyboardInterrupt:
        click.echo("stopping Dagster ...")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        lock.__exit__(None, None, None)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


class _Lock:
    """The data folder's lock, held for the rest of the command (released by ``__exit__`` or at exit)."""

    def __init__(self, cm) -> None:  # noqa: ANN001 - a contextmanager object
        self._cm = cm
        self.fd = cm.__enter__()

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self._cm.__exit__(*exc)


def _hold_lock(home: Path, holder: str) -> _Lock:
    """Take the data folder's lock for the whole command, or one line saying who holds it."""
    from mcp_training_dagster.cli_runs import DataFolderBusy, data_folder_lock

    try:
        return _Lock(data_folder_lock(home, holder))
    except DataFolderBusy as exc:
        _fail(f"this data folder ({home.parent}) is in use by {exc}; stop it first, or drop export files into "
              "its landing folder, which it watches")
        raise  # unreachable


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


def _check_input_file(path: Path) -> None:
    """One clear line for a path that cannot be an export, before anything slow happens."""
    if path.is_dir():
        _fail(f"{path}: is a folder; pass the export files in it (for example {path}/*.json)")
    if not path.exists():
        _fail(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        _fail(f"{path}: cannot be read (permission denied)")


def _land(settings: Settings, files: tuple[Path, ...]) -> tuple[list[str], set[str]]:
    """Copy the files into the landing folder (never overwriting a different file of the same name).

    Returns every file's name there, and the names this call copied (so a failed one can be taken out again)."""
    from mcp_training_dagster.domain.exports import sha256_file

    names, copied = [], set()
    for path in files:
        target = settings.landing_dir / path.name
        if target.exists():
            if target.resolve() != path.resolve() and sha256_file(target) != sha256_file(path):
                _fail(f"{path}: a different file named {path.name} is already in {settings.landing_dir}; rename one")
        else:
            tmp = target.with_name(target.name + ".part")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
            copied.add(path.name)
        for side in (".labels.csv", ".episodes.csv"):  # labels travel with their export
            src, dst = path.with_name(path.name + side), target.with_name(target.name + side)
            if src.exists() and not dst.exists():
                shutil.copyfile(src, dst)
        names.append(path.name)
    return names, copied


@main.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Train even when the inputs are identical to a model already trained.")
@click.option("-v", "--verbose", is_flag=True, help="Print Dagster's event stream here (it always goes to a log file).")
def train(files: tuple[Path, ...], force: bool, verbose: bool) -> None:
    """Train on export files by running the asset graph in-process (the same assets the UI shows).

    The files are copied into the landing folder and ingested as partitions (a file whose content
    was already ingested is not processed again); then training, evaluation and packaging run over
    every export in the training horizon, and every export's verdicts follow the production model.
    Same inputs, same code and config: no new version. Exit 0 with a new or unchanged model, 1 when a
    file could not be ingested or the candidate was blocked by its gates, 2 on a usage error."""
    import warnings

    import dagster as dg

    from mcp_training_dagster.cli_runs import quiet_run_config
    from mcp_training_dagster.definitions import build_definitions

    if not verbose:
        warnings.filterwarnings("ignore")  # Dagster's preview/supersession notices are not the user's business
    settings = _settings()
    for path in files:
        _check_input_file(path)
    home = Path(settings.training.dagster_home)  # type: ignore[arg-type]
    lock = _hold_lock(home, "mcp-training train")
    try:
        info = prepare_data_root(settings, with_samples=False)
        names, copied = _land(settings, files)
        os.environ["DAGSTER_HOME"] = str(info["dagster_home"])
        log_file = Path(settings.training.data_dir) / "logs" / f"train-{_stamp()}.log"  # type: ignore[arg-type]
        run_config = quiet_run_config(verbose)
        defs = build_definitions(settings)
        with dg.DagsterInstance.get() as instance:
            failed = _ingest(defs, instance, settings, names, copied, run_config, log_file)
            if failed:
                _fail(f"nothing trained: {failed} of {len(names)} file(s) could not be ingested (see above; "
                      f"event log: {log_file})", code=1)
            click.echo("training: windows, candidates, evaluation gates, package ...")
            tags = {"mcp/force_retrain": "true"} if force else {}
            result = defs.resolve_job_def("train_job").execute_in_process(
                instance=instance, raise_on_error=False, run_config=run_config, tags=tags)
            _log_run(instance, result.run_id, log_file)
            outcome = _report_training(result, settings, log_file)
            if outcome == "promoted":
                _refresh_verdicts(defs, instance, run_config, log_file)
    finally:
        lock.__exit__(None, None, None)
    if outcome not in ("promoted", "registered", "unchanged"):
        sys.exit(1)


def _stamp() -> str:
    from datetime import datetime

    return datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def _log_run(instance, run_id: str, log_file: Path) -> None:  # noqa: ANN001
    from mcp_training_dagster.cli_runs import write_event_log

    write_event_log(instance, run_id, log_file)


def _ingest(defs, instance, settings: Settings, names: list[str], copied: set[str], run_config: dict,  # noqa: ANN001
            log_file: Path) -> int:
    """Ingest each landed file that is new or changed; returns how many failed (each said in one line).

    A failed file that this command copied in is taken out of the landing folder again and its partition
    removed, so it does not sit there failing; the user's own file is untouched."""
    import dagster as dg

    from mcp_training_dagster.cli_runs import failure_lines, materialization
    from mcp_training_dagster.defs.partitions import export_files
    from mcp_training_dagster.domain.exports import sha256_file

    known = set(instance.get_dynamic_partitions(export_files.name))
    new = [n for n in names if n not in known]
    if new:
        instance.add_dynamic_partitions(export_files.name, new)
    ingest = defs.resolve_job_def("ingest_job")
    failed = 0
    for name in names:
        records = [] if name in new else instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_export"), asset_partitions=[name]), limit=1
        ).records
        mat = records[0].asset_materialization if records else None
        seen = mat.metadata.get("sha256") if mat else None
        if seen is not None and seen.value == sha256_file(settings.landing_dir / name):
            click.echo(f"{name}: already ingested (same content), skipped")
            continue
        result = ingest.execute_in_process(instance=instance, partition_key=name, raise_on_error=False,
                                           run_config=run_config)
        _log_run(instance, result.run_id, log_file)
        if result.success:
            v = materialization(result, "validated_records") or {}
            click.echo(f"{name}: ingested {v.get('records_in', '?')} records, {v.get('dagster/row_count', '?')} valid, "
                       f"{v.get('quarantined', 0)} quarantined ({v.get('time_start', '')} .. {v.get('time_end', '')})")
            continue
        failed += 1
        why = "; ".join(failure_lines(result)) or "see the event log"
        if name in copied:
            (settings.landing_dir / name).unlink(missing_ok=True)
            instance.delete_dynamic_partition(export_files.name, name)
            fate = "removed from the landing folder again; fix the file and train again"
        else:
            fate = f"it stays in {settings.landing_dir}: fix or remove it there"
        click.echo(f"error: {name}: {why} ({fate})", err=True)
    return failed


def _report_training(result, settings: Settings, log_file: Path) -> str:  # noqa: ANN001
    """Print what the training run did; returns promoted | registered | unchanged | blocked | failed."""
    from mcp_training_dagster.cli_runs import (
        check_outcomes,
        describe_checks,
        failure_lines,
        materialization,
        observations,
    )
    from mcp_training_dagster.domain.registry import ModelRegistry

    tw = materialization(result, "training_windows") or {}
    if tw:
        click.echo(f"  windows    {tw.get('dagster/row_count')} from {len(tw.get('exports_in_horizon') or [])} export(s) "
                   f"({tw.get('records_in_horizon')} records in the horizon; {tw.get('cross_file_duplicates', 0)} identical "
                   f"copies counted once, {tw.get('id_conflicts_kept', 0)} records reusing an id kept)")
    model = materialization(result, "anomaly_model")
    gates = [c for c in check_outcomes(result) if c.name in ("meets_quality_gates", "not_worse_than_production")]
    if model is not None:
        click.echo(f"  model      {model['version']} ({model['detector']}, threshold {model['threshold']:.4f}, "
                   f"{model['n_windows']} windows, {model['training_seconds']:.1f} s)")
    for line in describe_checks(gates):
        click.echo(f"  gate       {line}")
    blocked = [g for g in gates if not g.passed]
    if model is not None and blocked:
        prod = ModelRegistry(settings.models_dir).production()
        why = "; ".join(f"{g.name}: {g.description}" for g in blocked)
        click.echo(f"error: {model['version']} was not packaged, its gates failed ({why}). Production stays "
                   f"{prod or 'none'}.", err=True)
        return "blocked"
    failures = failure_lines(result)
    if failures:
        for line in failures:
            click.echo(f"error: {line}", err=True)
        click.echo(f"error: training failed; event log: {log_file}", err=True)
        return "failed"
    if model is None:
        prod = ModelRegistry(settings.models_dir).production()
        click.echo(f"no new version: the inputs (data, config, code) are identical to a model already trained; "
                   f"production is {prod or 'none'} (use --force to train anyway)")
        return "unchanged"
    package = materialization(result, "model_package")
    if package is None:
        noted = observations(result, "model_package")
        why = noted[0]["blocked_because"] if noted else "its evaluation gates failed"
        click.echo(f"error: {model['version']} was not packaged: {why}. Production stays "
                   f"{ModelRegistry(settings.models_dir).production() or 'none'}.", err=True)
        return "blocked"
    click.echo(f"version    {package['version']}")
    click.echo(f"package    {package['package_path']}")
    click.echo(f"zip        {package['package_zip']}")
    click.echo(f"production {package['production']} (promoted: {package['promoted']})")
    if package.get("barely_passing"):
        click.echo("warning: the new model passes a gate by a small margin; see its model card", err=True)
    return "promoted" if package["promoted"] else "registered"


def _refresh_verdicts(defs, instance, run_config: dict, log_file: Path) -> None:  # noqa: ANN001
    """Re-score every ingested export with the production model (what the daemon's automation does under `up`)."""
    import dagster as dg

    from mcp_training_dagster.cli_runs import materialization
    from mcp_training_dagster.defs.partitions import export_files

    job = defs.resolve_job_def("verdicts_job")
    flagged = scored = 0
    for name in instance.get_dynamic_partitions(export_files.name):
        if not instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("export_windows"),
                                                                     asset_partitions=[name]), limit=1).records:
            continue  # never ingested successfully: nothing to score
        result = job.execute_in_process(instance=instance, partition_key=name, raise_on_error=False, run_config=run_config)
        _log_run(instance, result.run_id, log_file)
        m = materialization(result, "export_anomalies")
        if m:
            scored += 1
            flagged += int(m.get("flagged", 0))
    click.echo(f"verdicts   {scored} export(s) re-scored by the production model: {flagged} windows flagged")


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
    from mcp_training_dagster.domain.promotion import load_production
    from mcp_training_dagster.domain.registry import RegistryError
    from mcp_training_dagster.domain.scoring import export_file_windows

    _check_input_file(file)  # before the model load, which takes seconds
    settings = _settings()
    try:
        prod = load_production(settings.models_dir, version)
    except RegistryError as exc:
        _fail(str(exc))
    if prod is None:
        _fail("no production model yet; train one or pass --model VERSION")
    ic = prod.config
    if ic.get("input") != "export_records":
        _fail(f"model {prod.version} takes {ic.get('input')}, not export records; score with a window model")
    spec = WindowSpec(**{**ic["window_spec"], "entities": tuple(ic["window_spec"]["entities"])})
    try:
        windows = export_file_windows(file, spec, service_timezone=ic.get("service_timezone", "UTC"),
                                      extra_wifi_processes=ic.get("extra_wifi_processes", ()))
    except (ExportFileError, OSError) as exc:
        _fail(f"{file}: {getattr(exc, 'problem', None) or exc}")
    table = prod.score_table(windows)
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


def _registry_call(fn, *args):  # noqa: ANN001, ANN002, ANN202 - one clear line and exit 2 on a refused operation
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
    from mcp_training_dagster.domain.report import fmt as num

    entries = _registry_call(_registry(_settings()).list)
    if fmt == "json":
        click.echo(json.dumps([{**e.__dict__, "path": str(e.path)} for e in entries], default=str, indent=1))
        return
    if not entries:
        click.echo("no models registered")
        return
    rows = [["", "VERSION", "CREATED (UTC)", "TYPE", "INPUT", "F1", "ROC-AUC", "PR-AUC", "READY"]]
    for e in entries:
        created = (e.created_at or "?").replace("T", " ")[:19]
        rows.append(["*" if e.is_production else "", e.version, created, e.model_type or "?", e.input_kind or "?",
                     num(e.f1), num(e.roc_auc), num(e.pr_auc), "yes" if e.deployment_ready else "no"]
                    + ([f"ERROR {e.error}"] if e.error else []))
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(widths[i]) if i < len(widths) else c for i, c in enumerate(r)).rstrip())


@models.command("show")
@click.argument("version")
def models_show(version: str) -> None:
    """Metadata, manifest and status of one version (JSON)."""
    click.echo(json.dumps(_registry_call(_registry(_settings()).show, version), indent=1, default=str))


def _record_production(settings: Settings) -> None:
    """Tell Dagster that production changed (the production_model asset), and re-score every export unless a
    running `up` is there to do it through its automation."""
    import warnings

    import dagster as dg

    from mcp_training_dagster.cli_runs import DataFolderBusy, data_folder_lock, quiet_run_config
    from mcp_training_dagster.definitions import build_definitions

    home = Path(settings.training.dagster_home)  # type: ignore[arg-type]
    if not (home / "dagster.yaml").exists():
        return  # no Dagster instance here yet (registry used on its own)
    warnings.filterwarnings("ignore")
    os.environ["DAGSTER_HOME"] = str(home)
    defs = build_definitions(settings)
    log_file = Path(settings.training.data_dir) / "logs" / f"models-{_stamp()}.log"  # type: ignore[arg-type]
    run_config = quiet_run_config(False)
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("production_job").execute_in_process(
            instance=instance, raise_on_error=False, run_config=run_config)
        _log_run(instance, result.run_id, log_file)
        try:
            with data_folder_lock(home, "mcp-training models"):
                _refresh_verdicts(defs, instance, run_config, log_file)
        except DataFolderBusy:
            click.echo("verdicts   the running `up` re-scores every export through its automation")


@models.command("promote")
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote even a package whose evaluation gates did not pass.")
def models_promote(version: str, force: bool) -> None:
    """Make VERSION the production model (its files are verified against its manifest first)."""
    settings = _settings()
    registry = _registry(settings)
    before = _registry_call(registry.production)
    _registry_call(lambda: registry.promote(version, "cli", force=force))
    now = registry.production()
    click.echo(f"production is now {now}")
    if now != before:
        _record_production(settings)


@models.command("rollback")
def models_rollback() -> None:
    """Return production to the previous production version."""
    settings = _settings()
    click.echo(f"production is now {_registry_call(_registry(settings).rollback)}")
    _record_production(settings)


@models.command("delete")
@click.argument("version")
def models_delete(version: str) -> None:
    """Delete VERSION and its agent variant (never the production model or its predecessor)."""
    for v in _registry_call(_registry(_settings()).delete, version):
        click.echo(f"deleted {v}")


@models.command("package")
@click.argument("version")
@click.option("--dest", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="Folder to copy model_<version>_deployment.zip into (created if its parent exists; never overwriting).")
def models_package(version: str, dest: Path) -> None:
    """Verify VERSION's files and the deployment ZIP itself, and copy that ZIP to DEST."""
    from mcp_training_dagster.domain.packaging import MANIFEST_FILE, verify_package, verify_zip

    if dest.exists() and not dest.is_dir():
        _fail(f"--dest {dest}: is a file, not a folder")
    if not dest.exists() and not dest.parent.is_dir():
        _fail(f"--dest {dest}: its parent folder {dest.parent} does not exist")
    registry = _registry(_settings())
    path = _registry_call(registry.path, version)
    _registry_call(verify_package, path)
    zips = sorted(path.parent.glob(f"{path.name}_deployment.zip"))
    if not zips:
        _fail(f"{path.name}_deployment.zip is missing from {path.parent}")
    try:
        dest.mkdir(exist_ok=True)
    except OSError as exc:
        _fail(f"--dest {dest}: cannot create it ({exc.strerror})")
    target = dest / zips[0].name
    if target.exists():
        _fail(f"{target} already exists")
    # Verify what is handed out: the copy itself, against the verified folder's manifest.
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(zips[0], tmp)
    try:
        verify_zip(tmp, expected_manifest=(path / MANIFEST_FILE).read_bytes())
    except ValueError as exc:
        tmp.unlink(missing_ok=True)
        _fail(f"{zips[0].name}: {exc}")
    os.replace(tmp, target)
    click.echo(str(target))


# Option names as the user typed them, for pydantic errors that name a ScenarioConfig field.
_GENERATE_OPTIONS = {"seed": "--seed", "days": "--days", "n_devices": "--devices", "start": "--start",
                     "episodes_per_scenario": "--episodes", "benign_per_scenario": "--benign"}


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

    if not output.parent.is_dir():
        _fail(f"{output}: its folder {output.parent} does not exist")
    if output.is_dir():
        _fail(f"{output}: is a folder; name the export file to write")
    try:
        first = datetime.fromisoformat(start)
    except ValueError:
        _fail(f"--start {start!r}: not an ISO-8601 time (for example 2025-06-01T00:00:00)")
    try:
        cfg = ScenarioConfig(seed=seed, days=days, n_devices=devices, start=first,
                             episodes_per_scenario=episodes, benign_per_scenario=benign)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else ""
        _fail(f"{_GENERATE_OPTIONS.get(field, field)} {err.get('input')!r}: {err['msg']}")
    except ValueError as exc:
        _fail(f"bad scenario settings: {exc}".splitlines()[0])
    data = run(cfg)
    try:
        paths = write_export(data, output)
    except FileExistsError as exc:
        _fail(f"{exc.filename or exc}: already exists, not overwritten")
    except OSError as exc:
        _fail(f"{output}: cannot write ({exc.strerror})")
    n_anom = int(data.labels["is_anomaly"].sum())
    click.echo(f"{paths['export'] if 'export' in paths else output}: {len(data.records)} records, {n_anom} anomalous, "
               f"{len(data.episodes)} episodes (seed {seed})")


if __name__ == "__main__":
    main()
