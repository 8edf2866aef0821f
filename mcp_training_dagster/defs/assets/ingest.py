"""Ingest stage, one partition per export file: raw_export -> validated_records + quarantined_records.

A run covers one file, or several new files of one sensor tick (a partition key range: an ingest batch, one
process start for many small files). In a batch each file is read and validated exactly as alone and written to
its own partition; Dagster keeps one metadata set per output, so the per-file figures are a table in it."""

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.defs.resources import PipelineSettings
from mcp_training_dagster.domain.export_split import split_decoder
from mcp_training_dagster.domain.report import markdown_table
from mcp_training_dagster.serving.exports import ExportFileError, RawExport, read_export
from mcp_training_dagster.domain.landing import LandingError, partition_key_problem, resolve_landing_file
from mcp_training_dagster.domain.object_landing import is_remote, read_landed_export
from mcp_training_dagster.serving.validation import ValidationReport, ValidationResult, check_schema, validate_records
from mcp_training_dagster.settings import Settings


def _md_counts(title: str, counts: dict[str, int]) -> dg.MetadataValue:
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items()) or "| (none) | 0 |"
    return dg.MetadataValue.md(f"| {title} | records |\n|---|---|\n{rows}")


def _read_landed(cfg: Settings, key: str) -> tuple[str, RawExport]:
    """One landed export (its path as shown, its records and facts), or ``dg.Failure`` naming file and problem."""
    location = cfg.landing_location
    try:
        # A key added by hand (UI, API) is checked like a scanned one; a symbolic link or "../" that
        # leads outside the landing folder is refused before anything is read.
        if is_remote(location):
            if problem := partition_key_problem(key):
                raise LandingError(f"{key!r}: {problem}")
            path: str | Path = f"{location.rstrip('/')}/{key}"
        else:
            path = resolve_landing_file(cfg.landing_dir, key)
    except LandingError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    try:
        # Objects are read through fsspec straight into memory (no local copy).
        limit, processes = cfg.training.input_limits.max_export_bytes, cfg.training.read_processes
        raw = (
            read_landed_export(location, key, max_bytes=limit, processes=processes)
            if is_remote(location)
            else read_export(path, max_bytes=limit, decode=split_decoder(processes))
        )
    except ExportFileError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={"file": dg.MetadataValue.path(str(path)), "problem": exc.problem},
            allow_retries=False,
        ) from None
    return str(path), raw


def _batch_failure(what: str, problems: dict[str, str], files: int) -> dg.Failure:
    lines = "\n".join(f"- {problem}" for problem in problems.values())
    return dg.Failure(
        description=(
            f"{len(problems)} of the {files} files of this batch {what}; each file of the batch is ingested again "
            f"in a run of its own (ingest_batch_split_sensor):\n{lines}"
        ),
        metadata={"files": dg.MetadataValue.json(sorted(problems))},
        allow_retries=False,
    )


@dg.asset(
    partitions_def=export_files,
    group_name="ingest",
    kinds={"json", "parquet"},
    code_version="2",
    # Its freshness policy (no export ingested for freshness.ingest_quiet_hours) comes from settings: policy.py.
    check_specs=[
        dg.AssetCheckSpec(
            "claimed_count_matches",
            asset="raw_export",
            description="export_metadata.total_records equals the records in the file (reported, not fatal)",
        )
    ],
    description=(
        "Every record of one export file exactly as read (no normalisation), plus the file's facts: "
        "SHA-256, size, container, claimed vs actual record count. A file that is not an export at all "
        "fails this partition only, with the file and the problem in the error."
    ),
)
def raw_export(context: dg.AssetExecutionContext, settings: PipelineSettings):
    cfg = settings.get()
    keys = context.partition_keys
    if len(keys) > 1:  # an ingest batch: every file read, every bad one named, one output per partition
        yield from _raw_batch(context, cfg, keys)
        return
    path, raw = _read_landed(cfg, keys[0])
    f = raw.facts
    for warning in f.warnings:
        context.log.warning(f"{f.file_name}: {warning}")
    yield dg.Output(
        raw.records,
        data_version=dg.DataVersion(f.sha256),
        metadata={
            "dagster/row_count": f.actual_records,
            "file": dg.MetadataValue.path(path),
            "sha256": f.sha256,
            "size_bytes": f.size_bytes,
            "container": f.container,
            "export_created_at": f.created_at or "",
            "file_mtime": f.file_mtime if f.file_mtime is not None else -1.0,
            "claimed_records": f.claimed_records if f.claimed_records is not None else -1,
            "file_warnings": dg.MetadataValue.json(list(f.warnings)),
            "read_processes": f.read_processes,
        },
    )
    yield dg.AssetCheckResult(
        check_name="claimed_count_matches",
        passed=not f.count_mismatch,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"claimed": f.claimed_records if f.claimed_records is not None else -1, "actual": f.actual_records},
    )


def _raw_batch(context: dg.AssetExecutionContext, cfg: Settings, keys: Sequence[str]):
    """Several new files in one run. Dagster keeps one metadata set per output, so the per-file facts go in a
    table (and ``sha256_by_file``, which ``mcp-training train`` reads to skip unchanged files)."""
    read: dict[str, RawExport] = {}
    problems: dict[str, str] = {}
    for key in keys:
        try:
            read[key] = _read_landed(cfg, key)[1]
        except dg.Failure as exc:
            problems[key] = exc.description or key
    if problems:
        raise _batch_failure("cannot be read as an export", problems, len(keys))
    facts = [raw.facts for raw in read.values()]
    for f in facts:
        for warning in f.warnings:
            context.log.warning(f"{f.file_name}: {warning}")
    rows = [
        {
            "file": k,
            "records": f.actual_records,
            "claimed": f.claimed_records,
            "bytes": f.size_bytes,
            "sha256": f.sha256,
        }
        for k, f in zip(read, facts)
    ]
    yield dg.Output(
        {key: raw.records for key, raw in read.items()},
        metadata={
            # Not dagster/row_count: every file's materialization carries this one set, and the UI would show the
            # batch's total as each file's row count. Per file: by_file.
            "batch_records": sum(f.actual_records for f in facts),
            "files": len(keys),
            "by_file": dg.MetadataValue.md(markdown_table(rows)),
            "sha256_by_file": dg.MetadataValue.json({k: f.sha256 for k, f in zip(read, facts)}),
        },
    )
    mismatched = [f.file_name for f in facts if f.count_mismatch]
    yield dg.AssetCheckResult(
        check_name="claimed_count_matches",
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"files": len(keys), "mismatched": dg.MetadataValue.json(mismatched)},
    )


@dg.multi_asset(
    partitions_def=export_files,
    group_name="ingest",
    outs={
        "validated_records": dg.AssetOut(
            kinds={"pandas", "parquet"},
            code_version="2",
            description=(
                "Typed, normalised records of one export: canonical levels, parsed structured_data, naive "
                "service wall-clock timestamps, event type, station MAC and interface; sorted by (timestamp, id) "
                "with duplicate ids removed."
            ),
        ),
        "quarantined_records": dg.AssetOut(
            kinds={"pandas", "parquet"},
            code_version="2",
            description="Every record validation refused, with the reason, the field and the original JSON.",
        ),
    },
    check_specs=[
        dg.AssetCheckSpec(
            "schema_invariants",
            asset="validated_records",
            blocking=True,
            description="unique ids, sorted by (timestamp, id), typed non-null timestamps and messages",
        )
    ],
)
def validate_export(context: dg.AssetExecutionContext, settings: PipelineSettings, raw_export: dict[str, pd.DataFrame]):
    """Validate one export (or each of a batch). A file whose bad-record fraction exceeds the quarantine limit is
    rejected: its quarantine table is written (so the refused records can be inspected), its validated table is
    stored empty with ``rejected=True``, and the step fails with the file, the fraction and the limit."""
    cfg = settings.get()
    limits = cfg.training.input_limits
    # The plausible-timestamp range is measured from the export's created_at / file time, which the
    # raw table carries in its attrs (kept by the Parquet IO manager).
    results = {
        key: validate_records(
            raw,
            key,
            service_timezone=cfg.training.service_timezone,
            extra_wifi_processes=cfg.model.events.extra_wifi_processes,
            earliest_timestamp=limits.earliest_timestamp,
            future_tolerance_hours=limits.future_tolerance_hours,
        )
        for key, raw in raw_export.items()
    }
    limit = cfg.training.quarantine.max_fraction
    if len(results) > 1:
        yield from _validated_batch(results, limit)
        return
    ((key, result),) = results.items()
    rep = result.report
    yield dg.Output(
        result.quarantine,
        output_name="quarantined_records",
        metadata={
            "dagster/row_count": rep.quarantined,
            "by_reason": _md_counts("reason", rep.quarantine_by_reason),
            "duplicates": rep.duplicates,
            "bad_fraction": float(round(rep.bad_fraction, 6)),
        },
    )
    if rep.bad_fraction > limit:
        # An empty table replaces whatever an earlier, accepted version of this file stored, so a
        # rejected file never keeps feeding training with stale records.
        yield dg.Output(
            result.records.iloc[0:0],
            output_name="validated_records",
            metadata={"dagster/row_count": 0, "rejected": True, "records_in": rep.records_in},
        )
        yield _invariants([], rows=0, rejected=[key])
        raise dg.Failure(
            description=_rejection(key, rep, limit),
            metadata={"by_reason": dg.MetadataValue.json(rep.quarantine_by_reason)},
            allow_retries=False,
        )
    yield dg.Output(
        result.records,
        output_name="validated_records",
        metadata={
            "dagster/row_count": rep.valid,
            "records_in": rep.records_in,
            "quarantined": rep.quarantined,
            "duplicates_removed": rep.duplicates,
            "time_start": rep.time_start or "",
            "time_end": rep.time_end or "",
            "devices": dg.MetadataValue.json(rep.devices),
            "event_types": _md_counts("event type", rep.event_counts),
            "levels": dg.MetadataValue.json(rep.level_counts),
            "processes": dg.MetadataValue.json(rep.process_counts),
            "unparsed_structured_data": rep.unparsed_structured_data,
            "rejected": False,
        },
    )
    yield _invariants(check_schema(result.records), rows=rep.valid)


def _invariants(problems: dict | list, rows: int, rejected: Sequence[str] = ()) -> dg.AssetCheckResult:
    """schema_invariants of what was stored. A rejected file's table is stored empty, which keeps every invariant:
    the check passes and says so. The rejection is the run's failure; were it a failed blocking check too,
    the retraining guard would hold back every training until some later good file passed the check."""
    said = f"{len(rejected)} rejected file(s) stored empty: {', '.join(rejected)}" if rejected else None
    return dg.AssetCheckResult(
        check_name="schema_invariants",
        asset_key="validated_records",
        passed=not problems,
        description=said,
        metadata={
            "problems": dg.MetadataValue.json(problems),
            "rows": rows,
            "rejected": dg.MetadataValue.json(list(rejected)),
        },
    )


def _rejection(key: str, rep: ValidationReport, limit: float) -> str:
    return (
        f"{key}: {rep.bad_fraction:.1%} of records quarantined, over the limit "
        f"of {limit:.1%} (training.quarantine.max_fraction); file rejected. "
        f"Reasons: {rep.quarantine_by_reason}. See quarantined_records[{key}]."
    )


def _validated_batch(results: dict[str, ValidationResult], limit: float):
    """Each file of a batch validated as if alone; rejected files are stored empty, then the step fails naming them
    (each file is then ingested again alone, which fails only the rejected ones)."""
    reports = {key: r.report for key, r in results.items()}
    rejected = {key: _rejection(key, rep, limit) for key, rep in reports.items() if rep.bad_fraction > limit}
    by_file = dg.MetadataValue.md(
        markdown_table(
            {
                "file": key,
                "records_in": rep.records_in,
                "valid": 0 if key in rejected else rep.valid,
                "quarantined": rep.quarantined,
                "duplicates": rep.duplicates,
                "time_start": rep.time_start or "",
                "time_end": rep.time_end or "",
            }
            for key, rep in reports.items()
        )
    )
    yield dg.Output(
        {key: r.quarantine for key, r in results.items()},
        output_name="quarantined_records",
        metadata={"batch_quarantined": sum(rep.quarantined for rep in reports.values()), "by_file": by_file},
    )
    yield dg.Output(
        {key: r.records.iloc[0:0] if key in rejected else r.records for key, r in results.items()},
        output_name="validated_records",
        metadata={
            "batch_valid": sum(rep.valid for key, rep in reports.items() if key not in rejected),
            "files": len(results),
            "records_in": sum(rep.records_in for rep in reports.values()),
            "rejected": dg.MetadataValue.json(sorted(rejected)),
            "by_file": by_file,
        },
    )
    problems = {key: p for key, r in results.items() if key not in rejected and (p := check_schema(r.records))}
    rows = sum(rep.valid for key, rep in reports.items() if key not in rejected)
    yield _invariants(problems, rows=rows, rejected=sorted(rejected))
    if rejected:
        raise _batch_failure("rejected by validation", rejected, len(results))
