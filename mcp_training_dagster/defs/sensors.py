"""Sensors: new export files start ingestion; new validated data retrains through automation.

Made by factories from the settings the code location is built with (their intervals are configuration);
``defs/location.py`` calls them.
"""

import hashlib
import warnings

import dagster as dg
from mcp_training_dagster.defs.jobs import file_to_model_job, ingest_job
from mcp_training_dagster.defs.partitions import EXPORT_FILES, export_files, files_in_range
from mcp_training_dagster.defs.policy import changed_at, handled_at
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain.landing import ReadyFile, ScanResult, batches, scan_landing
from mcp_training_dagster.domain.object_landing import (
    ObjectScanResult,
    ReadyObject,
    is_remote,
    scan_object_landing,
)
from mcp_training_dagster.settings import Settings

# Dagster's tags for a run over a partition key range (what a single-run backfill sets).
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
# The run queue (config/dagster.yaml): every per-export run, ingest or verdicts, one file or a range of them, is in
# one lane the instance runs one at a time, so the other run slot stays free for a training; among queued runs an
# ingest goes first (a new file starts the file-to-model path), then a training, then verdicts. A lane tag of our own
# because a range run carries no dagster/partition tag: with that limit, a fleet's ~118 verdict ranges by an older
# model took both slots and its new model's training waited behind them.
PER_EXPORT_LANE = {"mcp/lane": "per_export"}
INGEST_TAGS = {**PER_EXPORT_LANE, "dagster/priority": "10"}
TRAINING_TAGS = {"dagster/priority": "5"}
VERDICT_TAGS = {**PER_EXPORT_LANE, "dagster/priority": "0"}
# The partitioned assets automation keeps on the production model, one export (or range) per run.
VERDICT_ASSETS = dg.AssetSelection.assets("export_anomalies", "export_drift")
# SQLite refuses very large IN-lists; add partitions in batches well below its variable limit.
PARTITION_BATCH = 500

UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# Runs that neither ingest nor train: an export's verdicts, drift and incidents. Any other unfinished run (an
# ingest, a training, a production change, anything unknown) sends a new file the slow way.
NOT_IN_THE_WAY = {dg.AssetKey(k) for k in ("export_anomalies", "export_drift", "export_incidents")}
RUNS_LOOKED_AT = 200  # more unfinished runs than this: busy, whatever they are


def why_not_train_with(instance: dg.DagsterInstance, scan: ScanResult | ObjectScanResult) -> str | None:
    """Why this tick's file must NOT take the file-to-model run (ingest + the retraining it makes due, one run),
    or None when it may. The retraining policy's guards (defs/policy.py), judged here for the one case where
    waiting for the automation sensor is only latency: one file, on a system with nothing ingesting or training.

    * debounce: exactly one file ready and none still arriving or deferred; a burst is ingested by ingest_job
      runs and trained on once, by automation;
    * never two trainings at once: no unfinished run other than verdicts / drift / incidents;
    * no training already due: validated data has not changed since the last training run was created
      (automation has it in hand, or its guards are holding it back: it stays automation's call).
    A new file's blocking checks still stop the training inside the run (Dagster skips what follows a failed
    blocking check), as in automation's runs."""
    if len(scan.ready) != 1 or scan.waiting or scan.deferred:
        return f"{len(scan.ready)} ready, {len(scan.waiting)} still changing, {scan.deferred} deferred"
    unfinished = instance.get_runs(dg.RunsFilter(statuses=UNFINISHED), limit=RUNS_LOOKED_AT)
    if len(unfinished) >= RUNS_LOOKED_AT:
        return f"{len(unfinished)} or more runs not finished"
    for run in unfinished:
        selection = run.asset_selection
        if selection is None or not selection <= NOT_IN_THE_WAY:
            return f"run {run.run_id[:8]} ({run.job_name}) is not finished"
    validated = changed_at(instance, dg.AssetKey("validated_records"))
    if validated > handled_at(instance, dg.AssetKey("training_windows")):
        return "validated data changed since the last training run: automation trains on it"
    return None


def _fingerprint(f: ReadyFile | ReadyObject) -> tuple[str, str]:
    return ("sha256", f.sha256) if isinstance(f, ReadyFile) else ("etag", f.etag)


def _file_run(f: ReadyFile | ReadyObject, job: str, selection: list[dg.AssetKey] | None) -> dg.RunRequest:
    kind, fingerprint = _fingerprint(f)
    return dg.RunRequest(
        job_name=job,
        asset_selection=selection,
        partition_key=f.name,
        run_key=f"{f.name}:{fingerprint}",
        tags={f"export/{kind}": fingerprint, "export/size_bytes": str(f.size), **INGEST_TAGS},
    )


def _batch_run(files: list[ReadyFile] | list[ReadyObject]) -> dg.RunRequest:
    """One ingest run over consecutive new partitions (a partition key range). Its run key is the batch's
    files and fingerprints, so a re-evaluated tick never requests it twice."""
    digest = hashlib.sha256("\n".join(f"{f.name}:{_fingerprint(f)[1]}" for f in files).encode()).hexdigest()
    return dg.RunRequest(
        job_name=ingest_job.name,
        run_key=f"batch:{files[0].name}..{files[-1].name}:{digest[:16]}",
        tags={
            RANGE_START: files[0].name,
            RANGE_END: files[-1].name,
            "export/batch_files": str(len(files)),
            "export/size_bytes": str(sum(f.size for f in files)),
            **INGEST_TAGS,
        },
    )


def build_export_file_sensor(settings: Settings) -> dg.SensorDefinition:
    """``export_file_sensor``, ticking every ``sensor.interval_seconds``."""

    @dg.sensor(
        jobs=[ingest_job, file_to_model_job],
        minimum_interval_seconds=settings.training.sensor.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches the landing folder. A new or changed export file (by content hash) that has stopped changing "
            "since the previous tick gets a partition and is ingested; unchanged files never re-run. New files of one "
            "tick share ingest runs (sensor.files_per_run, a partition range each); a changed file runs alone. One file "
            "on a system with nothing ingesting or training is ingested and trained on in one run (file_to_model_job)."
        ),
    )
    def export_file_sensor(context: dg.SensorEvaluationContext, settings: PipelineSettings) -> dg.SensorResult:
        cfg = settings.get()
        s = cfg.training.sensor
        where = cfg.landing_location
        # A local folder or an object-store prefix (by configuration); same rules, same cursor shape.
        patterns, ignore = tuple(s.file_patterns), tuple(s.ignore_patterns)
        scan: ScanResult | ObjectScanResult
        if is_remote(where):  # objects are stable after two unchanged listings (size and ETag)
            scan = scan_object_landing(
                where,
                context.cursor,
                patterns=patterns,
                ignore=ignore,
                max_files=s.max_files_per_tick,
                max_bytes=s.max_bytes_hashed_per_tick,
            )
        else:  # a local file unmodified for settled_after_seconds (e.g. renamed in) is ready on its first tick
            scan = scan_landing(
                cfg.landing_dir,
                context.cursor,
                settled_after_seconds=s.settled_after_seconds,
                patterns=patterns,
                ignore=ignore,
                max_files=s.max_files_per_tick,
                max_bytes=s.max_bytes_hashed_per_tick,
            )
        for name, why in scan.skipped.items():
            context.log.warning(f"{name}: {why}")
        known = set(context.instance.get_dynamic_partitions(EXPORT_FILES))  # one query per tick
        new_keys = [f.name for f in scan.ready if f.name not in known]
        requests = [
            export_files.build_add_request(new_keys[i : i + PARTITION_BATCH])
            for i in range(0, len(new_keys), PARTITION_BATCH)
        ]
        job, selection = ingest_job.name, None
        if scan.ready:
            why_not = why_not_train_with(context.instance, scan)
            if why_not is None and context.repository_def is not None:
                job = file_to_model_job.name
                # Named explicitly: automation reads a run's asset selection to know that the updates it made
                # (model_package before production_model, ...) were already followed in that run, not to redo.
                selection = sorted(context.repository_def.get_job(job).asset_layer.executable_asset_keys)
                context.log.info(f"{scan.ready[0].name}: ingest and train in one run")
            elif why_not is not None:
                context.log.info(f"ingest only ({why_not}); automation trains when its policy allows")
        if job == file_to_model_job.name:  # the one ready file: ingested and trained on in one run
            runs = [_file_run(scan.ready[0], job, selection)]
        else:
            fresh = set(new_keys)
            # A changed file (its partition exists) runs alone; new files share runs, each over a contiguous range
            # of the partitions added above (added in this order, so a range holds exactly its batch).
            runs = [_file_run(f, job, None) for f in scan.ready if f.name not in fresh]
            ready = [f for f in scan.ready if f.name in fresh]
            for batch in batches([f.size for f in ready], s.files_per_run, s.max_bytes_per_run):
                files = [ready[i] for i in batch]
                runs.append(_file_run(files[0], job, None) if len(files) == 1 else _batch_run(files))
        skip = None
        if not runs:
            skip = (
                f"no new or changed exports in {where}"
                + (f"; {len(scan.waiting)} still changing" if scan.waiting else "")
                + (f"; {scan.deferred} deferred to the next tick" if scan.deferred else "")
            )
        return dg.SensorResult(
            run_requests=runs, dynamic_partitions_requests=requests, cursor=scan.cursor(), skip_reason=skip
        )

    return export_file_sensor


def _automation_sensor(
    settings: Settings, name: str, target: dg.AssetSelection, run_tags: dict[str, str], description: str
) -> dg.AutomationConditionSensorDefinition:
    with warnings.catch_warnings():  # use_user_code_server is beta in 1.13; the warning would reach every CLI's stderr
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.AutomationConditionSensorDefinition(
            name,
            target=target,
            run_tags=run_tags,
            default_status=dg.DefaultSensorStatus.RUNNING,
            # Evaluated in the code server: the policies have custom conditions (drift, scored_by_replaced_model in
            # defs/policy.py), which the AssetDaemon cannot deserialise.
            use_user_code_server=True,
            # Not below 5: a tick evaluates the policy in the code server (1-2 CPU-s on 2 cores), and one file on
            # an idle system does not wait for it (export_file_sensor's file_to_model_job trains in the ingest run).
            minimum_interval_seconds=max(5, min(30, settings.training.sensor.interval_seconds)),
            description=description,
        )


def build_retrain_automation_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    """``retrain_automation_sensor``: evaluates the retraining policy every 5-30 s (``sensor.interval_seconds``)."""
    return _automation_sensor(
        settings,
        "retrain_automation_sensor",
        # The fan-in side of the graph; export_windows runs in ingest_job with its file, export_incidents (which reads
        # every export as history) on demand and in the CLI's verdicts job, the verdicts in their own sensor.
        dg.AssetSelection.groups("features", "training", "evaluation", "deployment", "monitoring")
        - dg.AssetSelection.assets("export_windows", "export_incidents")
        - VERDICT_ASSETS,
        TRAINING_TAGS,
        "Retrains when validated data changes: training windows and evaluation data -> model selection and "
        "training -> evaluation gates -> registered (and promoted) package -> production model.",
    )


def build_verdict_automation_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    """``verdict_automation_sensor``: keeps every export's verdicts and drift on the production model. Its own
    sensor so its runs carry the per-export lane (a training's do not), and a tick over thousands of export
    partitions does not hold back the retraining policy's."""
    return _automation_sensor(
        settings,
        "verdict_automation_sensor",
        VERDICT_ASSETS,
        VERDICT_TAGS,
        "Scores every new or changed export, and re-scores every export when production_model changes "
        "(verdicts_per_run exports per run), with its drift against production's training baseline.",
    )


@dg.run_failure_sensor(
    name="ingest_batch_split_sensor",
    monitored_jobs=[ingest_job],
    request_job=ingest_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "A failed ingest run over several new files (a partition range) is run again one file per run: the good files "
        "are ingested, the bad one fails alone with its own message, exactly as if each had landed by itself."
    ),
)
def ingest_batch_split_sensor(context: dg.RunFailureSensorContext):
    tags = context.dagster_run.tags
    if RANGE_START not in tags or RANGE_END not in tags:
        return dg.SkipReason(f"run {context.dagster_run.run_id[:8]} was one file: nothing to split")
    keys = files_in_range(context.instance, tags[RANGE_START], tags[RANGE_END])
    # The files the batch's failure named go first. validated_records' blocking check is judged on its latest
    # evaluation, planned when a run is created; a run that fails before the check leaves it failed, so the good
    # files' runs are created after the bad ones' and a burst with a bad file still retrains.
    bad = {
        name
        for event in context.get_step_failure_events()
        if event.step_failure_data.user_failure_data is not None
        and (named := event.step_failure_data.user_failure_data.metadata.get("files")) is not None
        and isinstance(named.value, list)
        for name in named.value
    }
    keys = sorted(keys, key=lambda key: key not in bad)  # stable: otherwise in the batch's order
    context.log.info(f"run {context.dagster_run.run_id[:8]} failed over {len(keys)} files: one run per file")
    return [
        dg.RunRequest(
            partition_key=key,
            run_key=f"{context.dagster_run.run_id}:{key}",
            tags={"export/split_from": context.dagster_run.run_id, **INGEST_TAGS},
        )
        for key in keys
    ]
