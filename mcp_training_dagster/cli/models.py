"""``mcp-training models``: list, show, promote, roll back, delete and hand out registered models."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import click

from mcp_training_dagster.cli.app import main
from mcp_training_dagster.cli.common import fail, load, open_registry, stamp
from mcp_training_dagster.cli.runs import log_run, refresh_verdicts
from mcp_training_dagster.settings import Settings


@main.group()
def models() -> None:
    """List, inspect, promote, roll back, package and delete registered models."""


def registry_call(fn, *args):  # noqa: ANN001, ANN002, ANN202 - one clear line and exit 2 on a refused operation
    from mcp_training_dagster.domain.packaging import PackageError
    from mcp_training_dagster.domain.registry import RegistryError

    try:
        return fn(*args)
    except (RegistryError, PackageError) as exc:
        fail(str(exc))


@models.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def models_list(fmt: str) -> None:
    """Registered versions, newest first; * marks production."""
    from mcp_training_dagster.domain.report import fmt as num

    entries = registry_call(open_registry(load()).list)
    if fmt == "json":
        click.echo(json.dumps([{**e.__dict__, "path": str(e.path)} for e in entries], default=str, indent=1))
        return
    if not entries:
        click.echo("no models registered")
        return
    rows = [["", "VERSION", "CREATED (UTC)", "TYPE", "INPUT", "F1", "ROC-AUC", "PR-AUC", "READY"]]
    for e in entries:
        created = (e.created_at or "?").replace("T", " ")[:19]
        rows.append(
            [
                "*" if e.is_production else "",
                e.version,
                created,
                e.model_type or "?",
                e.input_kind or "?",
                num(e.f1),
                num(e.roc_auc),
                num(e.pr_auc),
                "yes" if e.deployment_ready else "no",
            ]
            + ([f"ERROR {e.error}"] if e.error else [])
        )
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(widths[i]) if i < len(widths) else c for i, c in enumerate(r)).rstrip())


@models.command("show")
@click.argument("version")
def models_show(version: str) -> None:
    """Metadata, manifest and status of one version (JSON)."""
    click.echo(json.dumps(registry_call(open_registry(load()).show, version), indent=1, default=str))


def _record_production(settings: Settings) -> None:
    """Tell Dagster that production changed (the production_model asset), and re-score every export unless a
    running `up` is there to do it through its automation."""
    import warnings

    import dagster as dg

    from mcp_training_dagster.cli.common import DataFolderBusy, data_folder_lock
    from mcp_training_dagster.cli.runs import quiet_run_config
    from mcp_training_dagster.definitions import build_definitions

    home = Path(settings.training.dagster_home)  # type: ignore[arg-type]
    if not (home / "dagster.yaml").exists():
        return  # no Dagster instance here yet (registry used on its own)
    warnings.filterwarnings("ignore")
    os.environ["DAGSTER_HOME"] = str(home)
    defs = build_definitions(settings)
    log_file = Path(settings.training.data_dir) / "logs" / f"models-{stamp()}.log"
    run_config = quiet_run_config(False)
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("production_job").execute_in_process(
            instance=instance, raise_on_error=False, run_config=run_config
        )
        log_run(instance, result.run_id, log_file)
        try:
            with data_folder_lock(home, "mcp-training models"):
                refresh_verdicts(defs, instance, run_config, log_file)
        except DataFolderBusy:
            click.echo("verdicts   the running `up` re-scores every export through its automation")


@models.command("promote")
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote even a package whose evaluation gates did not pass.")
def models_promote(version: str, force: bool) -> None:
    """Make VERSION the production model (its files are verified against its manifest first)."""
    settings = load()
    registry = open_registry(settings)
    before = registry_call(registry.production)
    registry_call(lambda: registry.promote(version, "cli", force=force))
    now = registry.production()
    click.echo(f"production is now {now}")
    if now != before:
        _record_production(settings)


@models.command("rollback")
def models_rollback() -> None:
    """Return production to the previous production version."""
    settings = load()
    click.echo(f"production is now {registry_call(open_registry(settings).rollback)}")
    _record_production(settings)


@models.command("delete")
@click.argument("version")
def models_delete(version: str) -> None:
    """Delete VERSION and its agent variant (never the production model or its predecessor)."""
    for v in registry_call(open_registry(load()).delete, version):
        click.echo(f"deleted {v}")


@models.command("package")
@click.argument("version")
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to copy model_<version>_deployment.zip into (created if its parent exists; never overwriting).",
)
def models_package(version: str, dest: Path) -> None:
    """Verify VERSION's files and the deployment ZIP itself, and copy that ZIP to DEST."""
    from mcp_training_dagster.domain.package_check import verify_package, verify_zip
    from mcp_training_dagster.domain.packaging import MANIFEST_FILE

    if dest.exists() and not dest.is_dir():
        fail(f"--dest {dest}: is a file, not a folder")
    if not dest.exists() and not dest.parent.is_dir():
        fail(f"--dest {dest}: its parent folder {dest.parent} does not exist")
    registry = open_registry(load())
    path = registry_call(registry.path, version)
    registry_call(verify_package, path)
    zips = [registry_call(registry.deployment_zip, version)]
    try:
        dest.mkdir(exist_ok=True)
    except OSError as exc:
        fail(f"--dest {dest}: cannot create it ({exc.strerror})")
    target = dest / zips[0].name
    if target.exists():
        fail(f"{target} already exists")
    # Verify what is handed out: the copy itself, against the verified folder's manifest.
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(zips[0], tmp)
    try:
        verify_zip(tmp, expected_manifest=(path / MANIFEST_FILE).read_bytes())
    except ValueError as exc:
        tmp.unlink(missing_ok=True)
        fail(f"{zips[0].name}: {exc}")
    os.replace(tmp, target)
    click.echo(str(target))
