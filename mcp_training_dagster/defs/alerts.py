"""Alerts: Dagster tells us what failed, ``domain.alerts.AlertWriter`` records it (JSON lines) and posts it.

* ``alert_on_run_failure`` is Dagster's ``@run_failure_sensor`` (what ``make_email_on_run_failure_sensor``
  and dagster-slack's ``make_slack_on_run_failure_sensor`` are built on), configured to write our alert
  instead of an email: one alert per failed run, naming the failed steps, the partition and the run link.
* ``alert_on_checks_and_freshness`` covers what Dagster ships no factory for: failed asset checks
  (blocking gates, warnings, and drift, which gets ``kind: drift``) and freshness policies turning FAIL
  (no export ingested, model too old). It reads Dagster's own records (check executions, freshness
  states) with a cursor, so each event alerts once. Its first tick (a new instance, a new or reset sensor)
  only records where history stands (failed checks, freshness states): it alerts on what happens after it
  starts, never replays the past. Per check the cursor keeps the latest failed executions' ids
  (``domain.alerts.new_check_failures`` says why not one high-water id). It also alerts, once per
  promotion, when exports' verdicts are still by a replaced model ``verdicts_max_lag_hours`` after it: a
  freshness rule relative to another asset, which Dagster's ``FreshnessPolicy`` cannot express.
"""

import json
import time

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.definitions.freshness import FreshnessState
from mcp_training_dagster.defs.partitions import EXPORT_FILES
from mcp_training_dagster.defs.policy import DRIFT_CHECK_KEY, PRODUCTION, latest_partition_metadata, production_version
from mcp_training_dagster.domain.alerts import Alert, AlertWriter, Severity, new_check_failures, run_url
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.settings import Settings

PARTITION_TAG = "dagster/partition"
CHECK_HISTORY_PER_TICK = 50


def writer_for(cfg: Settings) -> AlertWriter:
    a = cfg.training.alerts
    assert a.file is not None
    return AlertWriter(a.file, a.webhook_url, timeout_seconds=a.timeout_seconds, retries=a.retries)


def step_failure_text(event: dg.DagsterEvent) -> str:
    """What went wrong in a failed step, as a person reads it: the ``dg.Failure``'s description, else the
    error's message with Dagster's step-execution wrapper removed. Shared by the alerts and the CLI."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    err = data.error
    if err is None:
        return ""
    while err.cause is not None and err.cls_name == "DagsterExecutionStepExecutionError":
        err = err.cause
    return err.message.strip() or err.cls_name or "error"


def _failed_steps(context: dg.RunFailureSensorContext) -> list[dict]:
    return [{"step": e.step_key, "error": step_failure_text(e)[:2000]} for e in context.get_step_failure_events()]


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
    description="Every failed run (ingest, training, verdicts) -> one alert in the alert file and the webhook.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, settings: PipelineSettings) -> None:
    cfg = settings.get()
    run = context.dagster_run
    steps = _failed_steps(context)
    assets = sorted({k.to_user_string() for k in (run.asset_selection or [])})
    failed = ", ".join(s["step"] for s in steps if s["step"]) or "the run"
    first_error = next((s["error"] for s in steps if s["error"]), context.failure_event.message or "")
    partition = run.tags.get(PARTITION_TAG)
    alert = Alert(
        kind="run_failure",
        severity="error",
        what=f"run of {run.job_name}{f' for {partition}' if partition else ''} failed in {failed}: {first_error}"[
            :1000
        ],
        asset=steps[0]["step"] if steps else (assets[0] if assets else None),
        partition=partition,
        run_id=run.run_id,
        job=run.job_name,
        run_url=run_url(cfg.training.alerts.webserver_base_url, run.run_id),
        details={"failed_steps": steps, "assets": assets, "sensor": run.tags.get("dagster/sensor_name")},
    )
    delivery = writer_for(cfg).write(alert)
    context.log.info(f"alert written ({'posted' if delivery.posted else 'not posted'}): {alert.what[:200]}")


def _check_alert(cfg: Settings, instance: dg.DagsterInstance, record) -> Alert:
    evaluation = record.evaluation
    run = instance.get_run_by_id(record.run_id) if record.run_id else None
    key = record.key
    is_drift = key == DRIFT_CHECK_KEY
    meta = {k: v.value for k, v in (evaluation.metadata or {}).items()} if evaluation is not None else {}
    severity: Severity = (
        "warning" if (evaluation is not None and evaluation.severity == dg.AssetCheckSeverity.WARN) else "error"
    )
    partition = (
        record.partition
        or (evaluation.partition if evaluation is not None else None)
        or (run.tags.get(PARTITION_TAG) if run is not None else None)
    )
    figures = ", ".join(f"{k}={v}" for k, v in meta.items() if isinstance(v, (int, float, str, bool)))[:300]
    description = (evaluation.description if evaluation is not None else None) or figures
    what = (
        f"drift in {partition or key.asset_key.to_user_string()}: {description}"
        if is_drift
        else f"check {key.asset_key.to_user_string()}/{key.name} failed"
        + (f" for {partition}" if partition else "")
        + (f": {description}" if description else "")
    )
    return Alert(
        kind="drift" if is_drift else "check_failure",
        severity=severity,
        what=what[:1000],
        asset=key.asset_key.to_user_string(),
        partition=partition,
        run_id=record.run_id,
        run_url=run_url(cfg.training.alerts.webserver_base_url, record.run_id),
        details={
            "check": key.name,
            "blocking": bool(evaluation.blocking) if evaluation is not None else None,
            "metadata": json.loads(json.dumps(meta, default=str)),
        },
        job=run.job_name if run is not None else None,
    )


def _freshness_alert(cfg: Settings, key: dg.AssetKey, state: str, updated_at: str) -> Alert:
    name = key.to_user_string()
    t = cfg.training
    if name == "raw_export":
        what = (
            f"no export ingested for over {t.freshness.ingest_quiet_hours:g} h from {t.landing_dir}: "
            "the exporter or the log service may have stopped"
        )
    elif name in ("anomaly_model", "production_model"):
        what = f"{name} is older than {t.model_max_age_hours:g} h (model_max_age_hours)"
    else:
        what = f"{name} is overdue (freshness {state})"
    return Alert(
        kind="freshness",
        severity="error" if state == "FAIL" else "warning",
        what=what,
        asset=name,
        details={"state": state, "since": updated_at, "landing_dir": str(t.landing_dir)},
    )


VERDICTS = dg.AssetKey("export_anomalies")


def _verdicts_lag_alert(
    cfg: Settings, instance: dg.DagsterInstance, done: str | None
) -> tuple[Alert | None, str | None]:
    """The per-export verdicts older than the production model after ``freshness.verdicts_max_lag_hours``: a
    freshness rule Dagster's FreshnessPolicy cannot state (it is relative to another asset), checked once per
    production version, when its window has passed (one query then, none before or after).

    Returns the alert (or None) and the production version now settled (checked, alerted or not)."""
    latest = instance.get_latest_materialization_event(PRODUCTION)
    current = production_version(instance)
    if latest is None or current is None or current == done:
        return None, done
    lag_h = cfg.training.freshness.verdicts_max_lag_hours
    age_h = (time.time() - latest.timestamp) / 3600
    if age_h < lag_h:
        return None, done  # the re-scores still have time
    exports = instance.get_dynamic_partitions(EXPORT_FILES)
    scored_with = latest_partition_metadata(instance, VERDICTS, exports, "production_version") if exports else {}
    behind = sorted(k for k, v in scored_with.items() if v != current)
    if not behind:
        return None, current
    shown = ", ".join(behind[:10]) + (f" and {len(behind) - 10} more" if len(behind) > 10 else "")
    what = (
        f"verdicts of {len(behind)} export(s) are still not by production model {current}, "
        f"promoted {age_h:.1f} h ago (verdicts_max_lag_hours {lag_h:g}): {shown}"
    )
    return Alert(
        kind="freshness",
        severity="warning",
        what=what,
        asset=VERDICTS.to_user_string(),
        details={
            "production_version": current,
            "behind": behind[:100],
            "behind_count": len(behind),
            "scored_with": {k: scored_with[k] for k in behind[:100]},
        },
    ), current


@dg.sensor(
    name="alert_on_checks_and_freshness",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
    description=(
        "Failed asset checks (gates, warnings, drift) and freshness policies turning FAIL -> alerts, "
        "from the sensor's first tick on (past failures are not replayed); and exports whose verdicts "
        "are still by a replaced model verdicts_max_lag_hours after a promotion (once per promotion)."
    ),
)
def alert_on_checks_and_freshness(context: dg.SensorEvaluationContext, settings: PipelineSettings) -> dg.SensorResult:
    cfg = settings.get()
    first_tick = not context.cursor
    cursor = json.loads(context.cursor) if context.cursor else {"checks": {}, "fresh": {}}
    graph = context.repository_def.asset_graph if context.repository_def else None
    check_keys = sorted(graph.asset_check_keys, key=str) if graph else [DRIFT_CHECK_KEY]
    fresh_keys = [k for k in graph.get_all_asset_keys() if graph.get(k).freshness_policy is not None] if graph else []
    writer = writer_for(cfg)
    storage = context.instance.event_log_storage
    alerts: list[Alert] = []
    for check_key in check_keys:
        name = check_key.to_user_string()
        records = storage.get_asset_check_execution_history(
            check_key, limit=CHECK_HISTORY_PER_TICK, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        # After the first tick every check has an entry; one without (added to the code since) has no past here.
        seen = None if first_tick else cursor["checks"].get(name, [])
        new = set(new_check_failures(seen, [r.id for r in records], CHECK_HISTORY_PER_TICK))
        alerts += [_check_alert(cfg, context.instance, r) for r in sorted(records, key=lambda r: r.id) if r.id in new]
        cursor["checks"][name] = sorted(r.id for r in records)
    states = context.instance.get_freshness_state_records(fresh_keys) if fresh_keys else {}
    for asset_key, rec in states.items():
        name, state = asset_key.to_user_string(), rec.freshness_state.value
        if not first_tick and state == FreshnessState.FAIL.value and cursor["fresh"].get(name) != state:
            alerts.append(_freshness_alert(cfg, asset_key, state, rec.updated_at.isoformat()))
        cursor["fresh"][name] = state
    lag_alert, cursor["verdicts_settled"] = _verdicts_lag_alert(cfg, context.instance, cursor.get("verdicts_settled"))
    alerts += [lag_alert] if lag_alert is not None else []
    for alert in alerts:
        writer.write(alert)
        context.log.info(f"alert: {alert.what[:200]}")
    skip = (
        None
        if alerts
        else ("started: alerting on failures from now on" if first_tick else "nothing failed since the last tick")
    )
    return dg.SensorResult(cursor=json.dumps(cursor, sort_keys=True), skip_reason=skip)
