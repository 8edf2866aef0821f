"""What the command line needs around in-process Dagster runs: quiet execution with the event log kept in a
file, one-line summaries of what each run did, and the progress ``up`` prints.

The runs are the same jobs the daemon launches, on the same instance (``$DAGSTER_HOME`` under the data
folder), so everything the CLI does is visible in the UI afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import dagster as dg

from mcp_training_dagster.defs.alerts import step_failure_text
from mcp_training_dagster.domain.report import fmt


def quiet_run_config(verbose: bool) -> dict[str, Any]:
    """Dagster's console logger silent unless ``--verbose`` (the command prints its own summary, failures
    included); the full event log stays in the instance and in the command's log file."""
    return {} if verbose else {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def write_event_log(instance: dg.DagsterInstance, run_id: str, log_file: Path) -> None:
    """Append the run's whole event stream (what ``--verbose`` would have printed) to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as fh:
        for entry in instance.all_logs(run_id):
            when = datetime.fromtimestamp(entry.timestamp, timezone.utc).strftime("%H:%M:%S")
            step = f" [{entry.step_key}]" if entry.step_key else ""
            fh.write(
                f"{when} {run_id[:8]}{step} {entry.dagster_event.event_type_value if entry.dagster_event else 'LOG'}: "
                f"{entry.message or entry.user_message}\n"
            )


def materialization(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any] | None:
    """Metadata (plain values) of ``asset``'s materialisation in this run, or None when it was not materialised."""
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in mat.metadata.items()}
    return None


def observations(result: dg.ExecuteInProcessResult, asset: str) -> list[dict[str, Any]]:
    out = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_OBSERVATION":
            obs = event.asset_observation_data.asset_observation
            if obs.asset_key == dg.AssetKey(asset):
                out.append({k: v.value for k, v in obs.metadata.items()})
    return out


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def check_outcomes(result: dg.ExecuteInProcessResult) -> list[CheckOutcome]:
    """Every asset check evaluated in the run, in order."""
    out = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.asset_check_evaluation_data
            out.append(
                CheckOutcome(
                    ev.check_name, bool(ev.passed), ev.description or "", {k: v.value for k, v in ev.metadata.items()}
                )
            )
    return out


def failure_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    """One line per failed step: the step and what went wrong (the Failure's description, else the error
    message's last line: the exception, not the trace)."""
    lines = []
    for event in result.get_step_failure_events():
        text = step_failure_text(event)
        failure = event.step_failure_data.user_failure_data
        if not (failure is not None and failure.description):
            text = (text.splitlines() or ["error"])[-1]
        lines.append(f"{event.step_key}: {text}")
    return lines


def describe_checks(checks: list[CheckOutcome]) -> list[str]:
    """Checks as a person reads them: name, verdict and the figures that decided it."""
    lines = []
    for c in checks:
        figures = {k: v for k, v in c.metadata.items() if k != "compared"}
        lines.append(
            f"{'passed' if c.passed else 'FAILED'} {c.name}: {fmt(figures)}"
            + (f"\n             ({c.description})" if c.description else "")
        )
    return lines


class Progress:
    """What ``up`` prints while Dagster works: finished runs, and every change of the registry.

    Read from the instance and the registry every few seconds (both are the source of truth the UI shows),
    so nothing here depends on parsing Dagster's own log output."""

    def __init__(self, instance: dg.DagsterInstance, models_dir: Path, ui: str, echo) -> None:  # noqa: ANN001
        from mcp_training_dagster.domain.registry import ModelRegistry

        self.instance, self.registry, self.ui, self.echo = instance, ModelRegistry(models_dir), ui, echo
        self.started = datetime.now(timezone.utc).timestamp()
        self.seen_runs: set[str] = set()
        self.versions = set(self.registry.versions())
        self.production = self.registry.production()
        from mcp_training_dagster.settings import get_settings

        self.alerts_file = get_settings().training.alerts.file  # alerts written by the alert sensors
        self.alerts_offset = self.alerts_file.stat().st_size if self.alerts_file and self.alerts_file.exists() else 0

    def poll_alerts(self) -> None:
        """Echo each new alert (one JSON line each) as it is written: the person at the terminal hears it too."""
        import json

        if not self.alerts_file or not self.alerts_file.exists():
            return
        with open(self.alerts_file, "rb") as fh:
            fh.seek(self.alerts_offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.alerts_offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                alert = json.loads(line)
            except ValueError:
                continue
            self.echo(f"{_clock()} ALERT {alert.get('kind')}: {alert.get('what')}")

    def poll(self) -> None:
        from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

        from mcp_training_dagster.defs.partitions import files_in_range
        from mcp_training_dagster.defs.sensors import RANGE_END, RANGE_START

        done = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
        records = self.instance.get_run_records(
            filters=RunsFilter(statuses=done, updated_after=datetime.fromtimestamp(self.started, timezone.utc)),
            limit=200,
        )
        for rec in sorted(records, key=lambda r: r.update_timestamp):
            run = rec.dagster_run
            if run.run_id in self.seen_runs:
                continue
            self.seen_runs.add(run.run_id)
            part = run.tags.get("dagster/partition")
            files = [part] if part else []
            if part is None and RANGE_START in run.tags:  # an ingest batch or verdicts: its first and last file
                files = files_in_range(self.instance, run.tags[RANGE_START], run.tags.get(RANGE_END, ""))
                n = run.tags.get("export/batch_files") or len(files)
                part = f"{run.tags[RANGE_START]} .. {run.tags.get(RANGE_END, '?')}, {n} files"
            job = run.job_name
            if job.startswith("__ASSET_JOB") and run.asset_selection:  # automation: name what it materialised
                job = ", ".join(sorted(k.to_user_string() for k in run.asset_selection))
            what = f"{job}{f' [{part}]' if part else ''}"
            line = f"{_clock()} {what}: {run.status.value.lower()}"
            if run.status != DagsterRunStatus.SUCCESS:
                line += f" (details: {self.ui}/runs/{run.run_id})"
            self.echo(line)
            for entry in self.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
                ev = entry.get_dagster_event().asset_check_evaluation_data
                if not ev.passed:
                    self.echo(f"{_clock()}   check {ev.check_name} FAILED: {ev.description or ''}")
            for entry in self.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION):
                md = entry.get_dagster_event().asset_observation_data.asset_observation.metadata
                if "blocked_because" in md:
                    self.echo(f"{_clock()}   {md['blocked_version'].value} not packaged: {md['blocked_because'].value}")
            if run.status == DagsterRunStatus.SUCCESS:
                for line in self._outside_horizon(run.run_id, files):
                    self.echo(f"{_clock()}   {line}")
        self.poll_alerts()
        versions = set(self.registry.versions())
        for v in sorted(versions - self.versions):
            self.echo(f"{_clock()} registered model {v}")
        self.versions = versions
        production = self.registry.production()
        if production != self.production:
            self.echo(f"{_clock()} production is now {production} (was {self.production or 'none'})")
            self.production = production

    def _outside_horizon(self, run_id: str, files: list[str]) -> list[str]:
        """The run's exports that its training left out because every record is older than the horizon: an old
        export dropped in trains nothing, and the user should hear why rather than see only "success"."""
        if not files:
            return []
        for entry in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            mat = entry.get_dagster_event().step_materialization_data.materialization
            if mat.asset_key != dg.AssetKey("horizon_records"):
                continue
            listed = mat.metadata["exports_in_horizon"].value if "exports_in_horizon" in mat.metadata else None
            cutoff = mat.metadata["horizon_cutoff"].value if "horizon_cutoff" in mat.metadata else ""
            if not isinstance(listed, list) or not cutoff:
                return []
            inside = set(listed)
            return [
                f"{f}: no record inside the training horizon (records from {cutoff} on), so it trains nothing"
                for f in files
                if f not in inside
            ]
        return []


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")


def log_run(instance, run_id: str, log_file: Path) -> None:  # noqa: ANN001
    write_event_log(instance, run_id, log_file)


def refresh_verdicts(defs, instance, run_config: dict, log_file: Path) -> None:  # noqa: ANN001
    """Re-score every ingested export with the production model (what the daemon's automation does under `up`)."""
    import dagster as dg

    from mcp_training_dagster.defs.partitions import export_files

    job = defs.resolve_job_def("verdicts_job")
    flagged = scored = 0
    for name in instance.get_dynamic_partitions(export_files.name):
        if not instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("export_windows"), asset_partitions=[name]), limit=1
        ).records:
            continue  # never ingested successfully: nothing to score
        result = job.execute_in_process(
            instance=instance, partition_key=name, raise_on_error=False, run_config=run_config
        )
        log_run(instance, result.run_id, log_file)
        m = materialization(result, "export_anomalies")
        if m:
            scored += 1
            flagged += int(m.get("flagged", 0))
    click.echo(f"verdicts   {scored} export(s) re-scored by the production model: {flagged} windows flagged")
