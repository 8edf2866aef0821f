"""``mcp-training train``: the files landed and ingested, the asset graph run in-process, and what happened said."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mcp_training_dagster.cli.app import main
from mcp_training_dagster.cli.common import (
    check_input_file,
    fail,
    hold_lock,
    load,
    open_registry,
    prepare_data_root,
    stamp,
)
from mcp_training_dagster.cli.runs import log_run, refresh_verdicts
from mcp_training_dagster.settings import Settings

if TYPE_CHECKING:  # dagster is imported where it is used: the CLI's --help stays fast
    import dagster as dg


def _land(settings: Settings, files: tuple[Path, ...]) -> tuple[list[str], set[str]]:
    """Copy the files into the landing folder (never overwriting a different file of the same name).

    Returns every file's name there, and the names this call copied (so a failed one can be taken out again)."""
    from mcp_training_dagster.serving.exports import sha256_file

    names, copied = [], set()
    for path in files:
        target = settings.landing_dir / path.name
        if target.exists():
            if target.resolve() != path.resolve() and sha256_file(target) != sha256_file(path):
                fail(f"{path}: a different file named {path.name} is already in {settings.landing_dir}; rename one")
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

    from mcp_training_dagster.cli.runs import quiet_run_config
    from mcp_training_dagster.definitions import build_definitions

    if not verbose:
        warnings.filterwarnings("ignore")  # Dagster's preview/supersession notices are not the user's business
    settings = load()
    for path in files:
        check_input_file(path)
    home = Path(settings.training.dagster_home)  # type: ignore[arg-type]
    lock = hold_lock(home, "mcp-training train")
    try:
        info = prepare_data_root(settings, with_samples=False)
        names, copied = _land(settings, files)
        os.environ["DAGSTER_HOME"] = str(info["dagster_home"])
        log_file = Path(settings.training.data_dir) / "logs" / f"train-{stamp()}.log"
        run_config = quiet_run_config(verbose)
        defs = build_definitions(settings)
        with dg.DagsterInstance.get() as instance:
            failed = _ingest(defs, instance, settings, names, copied, run_config, log_file)
            if failed:
                fail(
                    f"nothing trained: {failed} of {len(names)} file(s) could not be ingested (see above; "
                    f"event log: {log_file})",
                    code=1,
                )
            click.echo("training: windows, candidates, evaluation gates, package ...")
            tags = {"mcp/force_retrain": "true"} if force else {}
            result = defs.resolve_job_def("train_job").execute_in_process(
                instance=instance, raise_on_error=False, run_config=run_config, tags=tags
            )
            log_run(instance, result.run_id, log_file)
            outcome = _report_training(result, settings, log_file)
            if outcome == "promoted":
                refresh_verdicts(defs, instance, run_config, log_file)
    finally:
        lock.__exit__(None, None, None)
    if outcome not in ("promoted", "registered", "unchanged"):
        sys.exit(1)


def ingested_sha256(instance: dg.DagsterInstance, name: str) -> str | None:
    """The SHA-256 of export ``name`` as last ingested (None: never). A file ingested alone carries it in its
    ``sha256`` metadata; one ingested in a batch of new files (export_file_sensor) in the batch's ``sha256_by_file``."""
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_export"), asset_partitions=[name]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    meta = records[0].asset_materialization.metadata
    if "sha256" in meta:
        return str(meta["sha256"].value)
    by_file = meta.get("sha256_by_file")
    found = by_file.value.get(name) if by_file is not None and isinstance(by_file.value, dict) else None
    return str(found) if found is not None else None


def _ingest(
    defs,
    instance,
    settings: Settings,
    names: list[str],
    copied: set[str],
    run_config: dict,  # noqa: ANN001
    log_file: Path,
) -> int:
    """Ingest each landed file that is new or changed; returns how many failed (each said in one line).

    A failed file that this command copied in is taken out of the landing folder again and its partition
    removed, so it does not sit there failing; the user's own file is untouched."""

    from mcp_training_dagster.cli.runs import failure_lines, materialization
    from mcp_training_dagster.defs.partitions import export_files
    from mcp_training_dagster.serving.exports import sha256_file

    known = set(instance.get_dynamic_partitions(export_files.name))
    new = [n for n in names if n not in known]
    if new:
        instance.add_dynamic_partitions(export_files.name, new)
    ingest = defs.resolve_job_def("ingest_job")
    failed = 0
    for name in names:
        seen = None if name in new else ingested_sha256(instance, name)
        if seen is not None and seen == sha256_file(settings.landing_dir / name):
            click.echo(f"{name}: already ingested (same content), skipped")
            continue
        result = ingest.execute_in_process(
            instance=instance, partition_key=name, raise_on_error=False, run_config=run_config
        )
        log_run(instance, result.run_id, log_file)
        if result.success:
            v = materialization(result, "validated_records") or {}
            click.echo(
                f"{name}: ingested {v.get('records_in', '?')} records, {v.get('dagster/row_count', '?')} valid, "
                f"{v.get('quarantined', 0)} quarantined ({v.get('time_start', '')} .. {v.get('time_end', '')})"
            )
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
    from mcp_training_dagster.cli.runs import (
        check_outcomes,
        describe_checks,
        failure_lines,
        materialization,
        observations,
    )

    tw = materialization(result, "training_windows") or {}
    if tw:
        tw = {**(materialization(result, "horizon_records") or {}), **tw}
        click.echo(
            f"  windows    {tw.get('dagster/row_count')} from {len(tw.get('exports_in_horizon') or [])} export(s) "
            f"({tw.get('records_in_horizon')} records in the horizon; {tw.get('cross_file_duplicates', 0)} identical "
            f"copies counted once, {tw.get('id_conflicts_kept', 0)} records reusing an id kept)"
        )
    model = materialization(result, "anomaly_model")
    gates = [c for c in check_outcomes(result) if c.name in ("meets_quality_gates", "not_worse_than_production")]
    if model is not None:
        click.echo(
            f"  model      {model['version']} ({model['detector']}, threshold {model['threshold']:.4f}, "
            f"{model['n_windows']} windows, {model['training_seconds']:.1f} s)"
        )
    for line in describe_checks(gates):
        click.echo(f"  gate       {line}")
    blocked = [g for g in gates if not g.passed]
    if model is not None and blocked:
        prod = open_registry(settings).production()
        why = "; ".join(f"{g.name}: {g.description}" for g in blocked)
        click.echo(
            f"error: {model['version']} was not packaged, its gates failed ({why}). Production stays {prod or 'none'}.",
            err=True,
        )
        return "blocked"
    failures = failure_lines(result)
    if failures:
        for line in failures:
            click.echo(f"error: {line}", err=True)
        click.echo(f"error: training failed; event log: {log_file}", err=True)
        return "failed"
    if model is None:
        prod = open_registry(settings).production()
        click.echo(
            f"no new version: the inputs (data, config, code) are identical to a model already trained; "
            f"production is {prod or 'none'} (use --force to train anyway)"
        )
        return "unchanged"
    package = materialization(result, "model_package")
    if package is None:
        noted = observations(result, "model_package")
        why = noted[0]["blocked_because"] if noted else "its evaluation gates failed"
        click.echo(
            f"error: {model['version']} was not packaged: {why}. Production stays "
            f"{open_registry(settings).production() or 'none'}.",
            err=True,
        )
        return "blocked"
    click.echo(f"version    {package['version']}")
    click.echo(f"package    {package['package_path']}")
    click.echo(f"zip        {package['package_zip']}")
    click.echo(f"production {package['production']} (promoted: {package['promoted']})")
    if package.get("barely_passing"):
        click.echo("warning: the new model passes a gate by a small margin; see its model card", err=True)
    return "promoted" if package["promoted"] else "registered"
