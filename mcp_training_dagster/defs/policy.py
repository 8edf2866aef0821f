"""THE retraining policy, in one place (and, at the end, the rule that keeps every export's verdicts on the
production model). Every fan-in asset (horizon_records, training_windows, evaluation_dataset,
anomaly_model, agent_model) carries ``RETRAIN_CONDITION``; ``retrain_automation_sensor`` evaluates it.

Retrain when ANY trigger fired since the asset was last requested or materialised ...

    new_data      a validated export was added or changed (or the asset is newly missing)
    drift         an export's drift check (export_drift/drift_within_threshold) failed after the last training
    code_changed  the asset's code_version changed: training code, or the model config (its hash is part of it)
    too_old       production_model's FreshnessPolicy (training.model_max_age_hours) went to FAIL

... and ONLY when every guard holds:

    no ingest or upstream run in progress   debounce: a burst of files is one training once the burst is ingested
    not already in progress                 never two trainings at once
    every blocking check on its inputs passed   never train on data a blocking check refused

All built from Dagster's own ``AutomationCondition`` operands except two small custom ones, ``drift`` and
``too_old``: Dagster has no operand for "a check / the freshness of an asset outside my dependencies".
"""

import hashlib
from collections.abc import Sequence
import time
from datetime import timedelta

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from mcp_training_dagster.settings import Settings

MODEL_CONFIG = "model_config"


def with_model_config(code_version: str) -> str:
    """The code_version of an asset whose output depends on the model config: ``<code_version>+model_config``,
    the marker replaced by the config's hash when the definitions are built (``defs/location.py``)."""
    return f"{code_version}+{MODEL_CONFIG}"


def config_version(settings: Settings) -> str:
    """Short hash of the model config (config/model_config.yaml + MCP_MODEL_*): part of the fan-in assets'
    code_version, so editing the config is a code change to Dagster (``code_changed`` retrains, the UI
    shows the assets as unsynced)."""
    return hashlib.sha256(settings.model.model_dump_json().encode()).hexdigest()[:8]


def freshness_policies(settings: Settings) -> dict[dg.AssetKey, dg.FreshnessPolicy]:
    """No export ingested within ``freshness.ingest_quiet_hours`` (the exporter or the log service stopped), and
    the production model older than ``model_max_age_hours`` (what ``too_old`` retrains on); alerted in alerts.py."""
    t = settings.training
    return {
        dg.AssetKey("raw_export"): dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=t.freshness.ingest_quiet_hours)
        ),
        PRODUCTION: dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=t.model_max_age_hours)),
    }


DRIFT_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey("export_drift"), "drift_within_threshold")
PRODUCTION = dg.AssetKey("production_model")


class DriftDetected(dg.AutomationCondition):
    """True when a drift check failed after this asset's last planned or recorded materialisation and after
    production last changed.

    "Planned" counts: once a training run has been created for the asset the drift is handled, whether
    or not that run produces a new model (identical inputs produce none), so drift never loops. A failure
    from before the last promotion was measured against a model that is no longer served: the exports
    are re-scored (and their drift re-measured) against the new one, so it does not count."""

    @property
    def name(self) -> str:
        return "drift_detected"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        instance = context.asset_graph_view.instance
        drifted = latest_drift_failure(instance) > max(
            handled_at(instance, context.key), changed_at(instance, PRODUCTION)
        )
        true_subset = context.candidate_subset if drifted else context.get_empty_subset()
        return dg.AutomationResult(context=context, true_subset=true_subset)


def handled_at(instance: dg.DagsterInstance, key: dg.AssetKey) -> float:
    """When a run was last created for ``key`` or it last materialised (0 if never); "now" while that run is
    still queued or running: its new model will be measured for drift again, so drift seen meanwhile waits."""
    handled = 0.0
    planned = instance.get_latest_planned_materialization_info(key)
    if planned is not None:
        run = instance.get_run_record_by_id(planned.run_id)
        if run is not None:
            if not run.dagster_run.is_finished:
                return time.time()
            handled = run.create_timestamp.timestamp()
    return max(handled, changed_at(instance, key))


def changed_at(instance: dg.DagsterInstance, key: dg.AssetKey) -> float:
    """When ``key`` last materialised (0 if never)."""
    latest = instance.get_latest_materialization_event(key)
    return latest.timestamp if latest is not None else 0.0


def latest_drift_failure(instance: dg.DagsterInstance, lookback: int = 50) -> float:
    """Time of the newest failed drift evaluation among the last ``lookback`` (0 if none)."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        DRIFT_CHECK_KEY, limit=lookback, status={AssetCheckExecutionRecordStatus.FAILED}
    )
    return max((r.event.timestamp for r in records if r.event is not None), default=0.0)


class ProductionTooOld(dg.AutomationCondition):
    """True while production_model's FreshnessPolicy (training.model_max_age_hours) is FAIL, as the
    FreshnessDaemon last recorded it. The policy stays on production_model (the health a user watches);
    Dagster's ``freshness_failed()`` only reads the target's own policy, hence this small operand."""

    @property
    def name(self) -> str:
        return "production_too_old"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        records = context.asset_graph_view.instance.get_freshness_state_records([PRODUCTION])
        record = records.get(PRODUCTION)
        failed = record is not None and record.freshness_state == FreshnessState.FAIL
        true_subset = context.candidate_subset if failed else context.get_empty_subset()
        return dg.AutomationResult(context=context, true_subset=true_subset)


AC = dg.AutomationCondition

NEW_DATA = (AC.newly_missing() | AC.any_deps_updated()).with_label("new_data")
DRIFT = DriftDetected()
CODE_CHANGED = AC.code_version_changed().with_label("code_changed")
TOO_OLD = ProductionTooOld().newly_true().with_label("too_old")

ANY_TRIGGER: dg.AutomationCondition = NEW_DATA | DRIFT | CODE_CHANGED | TOO_OLD
TRIGGERS = ANY_TRIGGER.since_last_handled().with_label("retraining_due")
GUARDS = (~AC.any_deps_in_progress() & ~AC.in_progress() & AC.all_deps_blocking_checks_passed()).with_label(
    "safe_to_train"
)

RETRAIN_CONDITION = (AC.in_latest_time_window() & TRIGGERS & GUARDS).with_label("retrain_policy")


# --- Verdicts follow production ---------------------------------------------------------------------------
# export_anomalies and export_drift re-score when production_model changes (Dagster's eager()). eager() alone
# misses one case: a verdict run that started before a promotion and finished just after production_model
# materialised counts as "handled" (its materialisation is newer than the promotion), yet it scored with the
# replaced model. The state is in its metadata, so the policy also reads it: a verdict whose
# ``production_version`` is not production's is re-scored.


class ScoredByReplacedModel(dg.AutomationCondition):
    """True for an export whose latest verdict names a ``production_version`` other than the production
    model's (as production_model last recorded it). Partitions never materialised are not "behind": eager's
    newly-missing rule covers them. Evaluated on the few partitions that materialised since the last tick."""

    @property
    def name(self) -> str:
        return "scored_by_replaced_model"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        instance = context.asset_graph_view.instance
        current = production_version(instance)
        if current is None or context.candidate_subset.is_empty:
            return dg.AutomationResult(context=context, true_subset=context.get_empty_subset())
        keys = list(context.candidate_subset.expensively_compute_partition_keys())
        scored_with = latest_partition_metadata(instance, context.key, keys, "production_version")
        behind = {key for key, version in scored_with.items() if version != current}
        return dg.AutomationResult(
            context=context, true_subset=context.candidate_subset.compute_intersection_with_partition_keys(behind)
        )


def production_version(instance: dg.DagsterInstance) -> str | None:
    """The model version production_model last recorded (None before the first)."""
    latest = instance.get_latest_materialization_event(PRODUCTION)
    if latest is None or latest.asset_materialization is None:
        return None
    value = latest.asset_materialization.metadata.get("version")
    return None if value is None else str(value.value)


def latest_partition_metadata(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str], field: str
) -> dict[str, str]:
    """``field`` of each partition's latest materialisation (one query; partitions without one are absent)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(partitions)), limit=max(50, 4 * len(partitions))
    ).records
    found: dict[str, str] = {}
    for record in records:  # newest first
        m = record.asset_materialization
        if m is None or m.partition is None or m.partition in found:
            continue
        value = m.metadata.get(field)
        found[m.partition] = "none" if value is None else str(value.value)
    return found


_BEHIND = ScoredByReplacedModel()
RESCORE_DUE = (
    (AC.newly_updated() & _BEHIND)
    .since(AC.newly_requested() | (AC.newly_updated() & ~_BEHIND))
    .with_label("scored_by_replaced_model")
)
# horizon_records is ignored: every training attempt rewrites it (identical inputs, a failed gate, a rejected file's
# empty table), and were that a trigger, each attempt would re-score every export (150 runs for a 1,500-file fleet)
# although only a promotion changes the model that scores. A new or changed export is still scored (its own
# validated_records), and a promotion re-scores every export with the horizon as it is then.
VERDICT_CONDITION = (
    AC.eager().ignore(dg.AssetSelection.assets("horizon_records"))
    | (RESCORE_DUE & ~AC.any_deps_missing() & ~AC.any_deps_in_progress() & ~AC.in_progress())
).with_label("verdicts_follow_production")


# model_metadata follows the model: the export list it reads from horizon_records changes only with a new model
# (a horizon_records update without one, e.g. identical inputs, must not rewrite metadata.json or re-package).
FOLLOWS_MODEL = AC.eager().ignore(dg.AssetSelection.assets("horizon_records")).with_label("follows_model")
