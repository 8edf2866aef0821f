"""``mcp-training up``: the data root prepared, ``dagster dev`` supervised, progress a person can follow."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from mcp_training_dagster.cli.app import main
from mcp_training_dagster.cli.common import fail, hold_lock, load, prepare_data_root

STOP_TIMEOUT_S = 30  # dagster dev's time to stop its webserver, daemon and code server after SIGINT


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

    settings = load()
    if settings.training.deployment != "local":
        fail(
            "`up` starts the local deployment on this machine; the distributed one runs as services "
            "(docker compose up, or Dagster's Helm chart): see the README's distributed deployment"
        )
    home = Path(settings.training.dagster_home)  # type: ignore[arg-type]
    lock = hold_lock(home, f"mcp-training up (http://{host}:{port})")
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
    instance_yaml = Path(info["dagster_home"]) / "dagster.yaml"  # type: ignore[arg-type]
    if info["instance_yaml"] == "upgraded":
        click.echo(f"instance config: {instance_yaml} rewritten from the current template (an earlier `up` wrote it)")
    if info["instance_yaml_missing"]:  # one line, naming each missing setting
        click.echo(
            f"warning: {instance_yaml} was edited and lacks {'; '.join(info['instance_yaml_missing'])}; "  # type: ignore[arg-type]
            "add it, or delete the file for `up` to write the current template",
            err=True,
        )
    click.echo(f"Dagster UI     : http://{host}:{port}  (Ctrl-C stops it)")
    if dry_run:
        click.echo(" ".join(cmd))
        lock.__exit__(None, None, None)
        return
    _create_instance_storage(Path(info["dagster_home"]))  # type: ignore[arg-type]
    click.echo(f"Dagster's log  : {'this terminal' if verbose else log_path}")
    click.echo(
        "Drop export files into the landing folder: each is ingested, then a model is trained, evaluated "
        "and, when it passes its gates, promoted."
    )
    # Ctrl-C (SIGINT) stops `up` even when it was started with SIGINT ignored (`mcp-training up &` from a script,
    # nohup, a service manager): Python then installs no KeyboardInterrupt handler and the ignored disposition would
    # also pass through exec to dagster dev and its processes, which would outlive a SIGINT. A handled signal is
    # reset to its default at exec, so setting ours before Popen restores both. `kill` (SIGTERM) stops it the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    with open(log_path, "ab") as log:
        out = None if verbose else log
        proc = subprocess.Popen(
            cmd, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
        )  # in a session of its own: our Ctrl-C is forwarded (below), so dagster dev stops cleanly
    try:
        import dagster as dg

        from mcp_training_dagster.cli.runs import Progress

        with dg.DagsterInstance.get() as instance:
            progress = Progress(instance, settings.models_dir, f"http://{host}:{port}", click.echo)
            while proc.poll() is None:
                time.sleep(2)
                try:
                    progress.poll()
                except Exception as exc:  # noqa: BLE001 - progress is best effort; Dagster keeps running
                    click.echo(f"(progress unavailable: {exc})", err=True)
        fail(f"dagster dev exited with code {proc.returncode}; see {log_path}")
    except KeyboardInterrupt:
        click.echo("stopping Dagster ...")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                click.echo(f"dagster dev did not stop within {STOP_TIMEOUT_S} s of SIGINT: killed", err=True)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        lock.__exit__(None, None, None)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _create_instance_storage(home: Path) -> None:
    """Create (or migrate) the instance's SQLite storage once, before ``dagster dev`` starts its processes.

    On a fresh DAGSTER_HOME the code server, daemon and webserver otherwise create it at the same moment, and
    two of them can stamp the schema version: "Version table 'alembic_version' has more than one head present",
    the code server dies and no sensor ever runs (seen in 2 of 4 starts of the latency benchmark on an idle machine).
    """
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass
