"""Sensors: new export files start ingestion; new validated data retrains through automation.

Made by factories from the settings the code location is built with (their intervals are configuration);
``defs/location.py`` calls them.
"""

import warnings

import dagster as dg
from mcp_training_dagster.defs.jobs import ingest_job
from mcp_training_dagster.defs.partitions import EXPORT_FILES, export_files
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain.landing import ReadyFile, ScanResult, scan_landing
from mcp_training_dagster.domain.object_landing import ObjectScanResult, is_remote, scan_object_landing
from mcp_training_dagster.settings import Settings

# SQLite refuses very large IN-lists; add partitions in batches well below its variable limit.
PARTITION_BATCH = 500


def build_export_file_sensor(settings: Settings) -> dg.SensorDefinition:
    """``export_file_sensor``, ticking every ``sensor.interval_seconds``."""

    @dg.sensor(
        target=ingest_job,
        minimum_interval_seconds=settings.training.sensor.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches the landing folder. A new or changed export file (by content hash) that has stopped changing "
            "since the previous tick gets a partition and an ingest run; unchanged files never re-run."
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
            scan = scan_object_landing(where, context.cursor, patterns=patterns, ignore=ignore,
                                       max_files=s.max_files_per_tick, max_bytes=s.max_bytes_hashed_per_tick)
        else:  # a local file unmodified for settled_after_seconds (e.g. renamed in) is ready on its first tick
            scan = scan_landing(cfg.landing_dir, context.cursor, settled_after_seconds=s.settled_after_seconds,
                                patterns=patterns, ignore=ignore,
                                max_files=s.max_files_per_tick, max_bytes=s.max_bytes_hashed_per_tick)
        for name, why in scan.skipped.items():
            context.log.warning(f"{name}: {why}")
        known = set(context.instance.get_dynamic_partitions(EXPORT_FILES))  # one query per tick
        new_keys = [f.name for f in scan.ready if f.name not in known]
        requests = [
            export_files.build_add_request(new_keys[i : i + PARTITION_BATCH])
            for i in range(0, len(new_keys), PARTITION_BATCH)
        ]
        runs = []
        for f in scan.ready:
            kind, fingerprint = ("sha256", f.sha256) if isinstance(f, ReadyFile) else ("etag", f.etag)
            runs.append(
                dg.RunRequest(
                    partition_key=f.name,
                    run_key=f"{f.name}:{fingerprint}",
                    # Queue ahead of verdict re-scoring runs: a new file is the start of the file-to-model path.
                    tags={f"export/{kind}": fingerprint, "export/size_bytes": str(f.size), "dagster/priority": "10"},
                )
            )
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


def build_retrain_automation_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    """``retrain_automation_sensor``: evaluates the retraining policy every 5-30 s (``sensor.interval_seconds``)."""
    with warnings.catch_warnings():  # use_user_code_server is beta in 1.13; the warning would reach every CLI's stderr
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.AutomationConditionSensorDefinition(
            "retrain_automation_sensor",
            # The fan-in side of the graph, the verdicts and drift; export_windows runs in ingest_job with its file,
            # export_incidents (which reads every export as history) on demand and in the CLI's verdicts job.
            target=dg.AssetSelection.groups("features", "training", "evaluation", "deployment", "monitoring")
            - dg.AssetSelection.assets("export_windows", "export_incidents"),
            default_status=dg.DefaultSensorStatus.RUNNING,
            # Evaluated in the code server: the retraining policy has a custom condition (drift, defs/policy.py),
            # which the AssetDaemon cannot deserialise.
            use_user_code_server=True,
            minimum_interval_seconds=max(5, min(30, settings.training.sensor.interval_seconds)),
            description=(
                "Retrains when validated data changes: training windows and evaluation data -> model selection and "
                "training -> evaluation gates -> registered (and promoted) package -> production model -> every export's "
                "verdicts re-scored."
            ),
        )
