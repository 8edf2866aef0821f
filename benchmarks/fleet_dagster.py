"""A fleet landing at once under the real ``dagster dev``: every export file dropped into the landing
folder together, then nothing else until the retrained model is registered.

    python -m benchmarks.fleet_dagster --routers 50 --days 3     # 150 files
    python -m benchmarks.fleet_dagster --routers 50 --days 30    # the full 1,500 files (slow)
    python -m benchmarks.fleet_dagster --routers 5 --days 3 --until-verdicts   # and every export's verdicts

The fleet is ``benchmarks.generator.write_fleet``'s (the same as ``benchmarks.fleet_landing``'s): every router a
device of its own (device_id, name, stations, record ids, seeded traffic), one export per router and day of
``--records`` records (default 2,000: 1,500 files are 3M records) covering [day - 1 h, day + 24 h), so each
repeats the previous day's last hour record for record; the newest day ends at the last UTC midnight.

Local deployment, shipped configuration (at most ``sensor.max_files_per_tick`` files per tick, the new files of a
tick ingested together in runs of ``sensor.files_per_run``, two concurrent runs). Prints one JSON line with: seconds from the drop until
every file is ingested and until the model trained on all of them is registered; ingest
run time (mean and p95) and ingest throughput; the longest ``export_file_sensor`` tick and any
failed tick; training runs started meanwhile (eager automation retrains as data arrives); and the
peak RSS of the largest single Dagster process (the run that computes the fan-in) and of all of
them together, sampled every second from /proc, and the load average's range meanwhile; and what the registered
model was trained on (``training``: the fan-in's record counts from ``horizon_records``, windows, devices and
exports from the package's metadata.json). With ``--until-verdicts`` it goes on until every export's
``export_anomalies`` is by the production model (the automation sensor's backfill, ``verdicts_per_run``
exports per run) and adds the seconds until then and the verdict runs it took.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from benchmarks.generator import write_fleet

REPO = Path(__file__).resolve().parents[1]
# A file is ingested by an ingest_job run, or (one file on an idle system) by file_to_model_job with its training.
INGESTING = ("ingest_job", "file_to_model_job")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_rss_mb(sid: int) -> tuple[float, float]:
    """(largest single process, sum) RSS in MB over the processes of session ``sid``."""
    biggest = total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getsid(int(pid)) != sid:
                continue
            with open(f"/proc/{pid}/status") as fh:
                rss = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0) / 1024
        except (OSError, ProcessLookupError, StopIteration):
            continue
        biggest, total = max(biggest, rss), total + rss
    return biggest, total


def _sensor_ticks(instance, name: str) -> list[tuple[float, float, str]]:
    """(start, end, status) of every tick of sensor ``name``, read from the tick storage."""
    from dagster._core.scheduler.instigation import TickData
    from dagster._serdes import deserialize_value
    import sqlalchemy as db

    storage = instance.schedule_storage
    out = []
    with storage.connect() as conn:
        for (body,) in conn.execute(db.text("SELECT tick_body FROM job_ticks")).fetchall():
            tick = deserialize_value(body, TickData)  # the table stores the tick's data
            if tick.instigator_name == name and tick.end_timestamp:
                out.append((tick.timestamp, tick.end_timestamp, tick.status.value))
    return out


def _files_ingested(instance, runs) -> set[str]:
    """The export files the given ingest runs covered: a run's partition, or its batch's partition key range."""
    from mcp_training_dagster.defs.partitions import files_in_range
    from mcp_training_dagster.defs.sensors import RANGE_END, RANGE_START

    out: set[str] = set()
    for r in runs:
        if RANGE_START in r.tags:
            out.update(files_in_range(instance, r.tags[RANGE_START], r.tags[RANGE_END]))
        elif "dagster/partition" in r.tags:
            out.add(r.tags["dagster/partition"])
    return out


def _scored(instance, names: list[str]) -> int | None:
    """How many exports' latest verdict is by the production model (as production_model last recorded it); None
    before there is one."""
    import dagster as dg

    from mcp_training_dagster.defs.policy import latest_partition_metadata, production_version

    current = production_version(instance)
    if not current:
        return None
    scored = latest_partition_metadata(instance, dg.AssetKey("export_anomalies"), names, "production_version")
    return sum(1 for v in scored.values() if v == current)


def _all_scored(instance, names: list[str]) -> bool:
    """Every export's latest verdict is by the production model."""
    return _scored(instance, names) == len(names)


def _blocked_training(instance, runs, since: float) -> dict | None:
    """The training that ran after the last ingest and failed (e.g. blocked by a quality gate), with nothing else
    queued or running: no model will come without another file. None otherwise."""
    import dagster as dg
    from dagster._core.storage.dagster_run import DagsterRunStatus

    if any(not r.is_finished for r in runs):
        return None
    for r in runs:  # newest first
        if r.status != DagsterRunStatus.FAILURE or dg.AssetKey("anomaly_model") not in (r.asset_selection or ()):
            continue
        if (instance.get_run_stats(r.run_id).start_time or 0) < since:
            return None
        gate = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("model_evaluation"), "meets_quality_gates"), limit=1
        )
        data = gate[0].event.dagster_event.event_specific_data if gate and gate[0].event else None
        return {
            "run_id": r.run_id,
            "quality_gate": gate[0].status.value if gate else None,
            "gate_metadata": _plain(getattr(data, "metadata", None) or {}),
            "model": _metadata_values(instance.get_latest_materialization_event(dg.AssetKey("anomaly_model")))
            | {"model_card": None, "score_distribution": None, "trained_on": None},
        }
    return None


def _plain(metadata) -> dict:
    """Dagster metadata as plain values."""
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def _metadata_values(event) -> dict:
    """The plain values of a materialisation's metadata (``None``: no event)."""
    if event is None or event.asset_materialization is None:
        return {}
    return _plain(event.asset_materialization.metadata)


def _training_figures(instance) -> dict:
    """What the registered model was trained on: the fan-in's counts (``horizon_records``' metadata) and the
    package's metadata.json (windows, devices, exports, data span), read from the registry folder it names."""
    import dagster as dg

    package = instance.get_latest_materialization_event(dg.AssetKey("model_package"))
    horizon = instance.get_latest_materialization_event(dg.AssetKey("horizon_records"))
    meta, hz = _metadata_values(package), _metadata_values(horizon)
    out: dict = {
        "model_version": meta.get("version"),
        "same_run_as_fan_in": package is not None and horizon is not None and package.run_id == horizon.run_id,
        **{k: hz.get(k) for k in ("exports_loaded", "records_distinct", "cross_file_duplicates", "id_conflicts_kept")},
        "records_in_horizon": hz.get("records_in_horizon"),
        "horizon_cutoff": hz.get("horizon_cutoff"),
    }
    path = meta.get("package_path")
    try:
        doc = json.loads((Path(str(path)) / "metadata.json").read_text())
    except (OSError, ValueError, TypeError):
        return out
    info, model_info = doc.get("training_info", {}), doc.get("model_info", {})
    out.update(
        training_windows=info.get("training_samples"),
        windows_by_kind=info.get("windows_by_kind"),
        fit_sample=info.get("fit_sample"),
        devices=len(info.get("devices") or []),
        export_files=len(model_info.get("export_files") or []),
        data_start=info.get("data_start"),
        data_end=info.get("data_end"),
    )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--routers", type=int, default=50)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--records", type=int, default=2000, help="records per export file (1,500 files: 3M)")
    p.add_argument("--timeout", type=float, default=3 * 3600)
    p.add_argument("--keep-log", type=Path, help="copy dagster dev's log (webserver, daemon) here before cleaning up")
    p.add_argument("--until-verdicts", action="store_true", help="also wait for every export's verdicts")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mcp-fleet-dagster-"))
    home, data = work / "home", work / "data"
    home.mkdir()
    (data / "exports").mkdir(parents=True)
    shutil.copyfile(REPO / "config" / "dagster.yaml", home / "dagster.yaml")
    t_gen = time.perf_counter()
    exports = write_fleet(work / "staging", args.routers, args.days, args.records)
    files = [e.path for e in exports]
    names = [f.name for f in files]
    generated_s = time.perf_counter() - t_gen
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TRAINING_", "MCP_MODEL_", "DAGSTER_"))}
    # dagster dev and every process it starts import this tree's code (the one the benchmark is run from)
    paths = [str(REPO), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO))]
    pythonpath = os.pathsep.join(paths)
    env.update(DAGSTER_HOME=str(home), MCP_TRAINING_DATA_DIR=str(data), PYTHONUNBUFFERED="1", PYTHONPATH=pythonpath)
    log = open(work / "dagster.log", "wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-m",
            "mcp_training_dagster.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    peak_one = peak_all = 0.0
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, (work / "dagster.log").read_text()[-3000:]
                time.sleep(1)
        time.sleep(5)  # code location loaded
        load_before = os.getloadavg()[0]
        load_lo = load_hi = load_before
        t_drop = time.time()
        for f in files:
            os.replace(f, data / "exports" / f.name)

        os.environ["DAGSTER_HOME"] = str(home)
        import dagster as dg
        from dagster._core.storage.dagster_run import DagsterRunStatus

        with dg.DagsterInstance.get() as instance:
            all_ingested_at = model_at = verdicts_at = None
            blocked: dict | None = None
            next_progress = t_drop + 60
            while time.time() - t_drop < args.timeout:
                assert proc.poll() is None, "dagster dev died"
                one, total = _session_rss_mb(proc.pid)
                load = os.getloadavg()[0]
                load_lo, load_hi = min(load_lo, load), max(load_hi, load)
                peak_one, peak_all = max(peak_one, one), max(peak_all, total)
                runs = instance.get_runs()
                ingest = [r for r in runs if r.job_name in INGESTING]
                ok = [r for r in ingest if r.status == DagsterRunStatus.SUCCESS]
                if time.time() >= next_progress:  # a progress line a minute on stderr (stdout: the result only)
                    next_progress += 60
                    progress = {
                        "s": round(time.time() - t_drop),
                        "ingested": len(_files_ingested(instance, ok)),
                        "runs": dict(Counter(r.status.value for r in runs)),
                        "model_s": round(model_at - t_drop) if model_at else None,
                        "verdicts": _scored(instance, names) if model_at else None,
                        "load": load,
                        "rss_mb": [round(one), round(total)],
                    }
                    print(json.dumps(progress), file=sys.stderr, flush=True)
                if all_ingested_at is None and len(_files_ingested(instance, ok)) >= len(files):
                    ends = [instance.get_run_stats(r.run_id).end_time for r in ok]
                    all_ingested_at = max(e for e in ends if e is not None)
                if all_ingested_at is not None:
                    latest = instance.get_latest_materialization_event(dg.AssetKey("model_package"))
                    if (
                        latest is not None
                        and (instance.get_run_stats(latest.run_id).start_time or 0) >= all_ingested_at
                    ):
                        model_at = latest.timestamp  # trained on every file of the fleet
                if model_at is not None and (not args.until_verdicts or _all_scored(instance, names)):
                    verdicts_at = time.time()
                    break
                if all_ingested_at is not None and model_at is None:
                    blocked = _blocked_training(instance, runs, all_ingested_at)
                    if blocked is not None:  # the training on the whole fleet failed: no model is coming
                        break
                time.sleep(1)
            runs = instance.get_runs()
            stats = [
                instance.get_run_stats(r.run_id)
                for r in runs
                if r.job_name == "ingest_job" and r.status == DagsterRunStatus.SUCCESS
            ]
            durations = sorted(
                s.end_time - s.start_time for s in stats if s.end_time is not None and s.start_time is not None
            )
            ticks = _sensor_ticks(instance, "export_file_sensor")
            result = {
                "files": len(files),
                "records_per_file": args.records,
                "records": sum(e.records for e in exports),
                "generated_s": round(generated_s, 1),
                "mb": round(sum((data / "exports" / f.name).stat().st_size for f in files) / 1e6, 1),
                "drop_to_all_ingested_s": round(all_ingested_at - t_drop, 1) if all_ingested_at else None,
                "drop_to_model_registered_s": round(model_at - t_drop, 1) if model_at else None,
                "ingest_run_s_mean": round(sum(durations) / len(durations), 2) if durations else None,
                "ingest_run_s_p95": round(durations[round(0.95 * (len(durations) - 1))], 2) if durations else None,
                "ingest_runs": len(durations),
                "ingest_run_s_per_file": round(sum(durations) / len(files), 2) if durations else None,
                "ingest_files_per_min": round(60 * len(files) / (all_ingested_at - t_drop), 1)
                if all_ingested_at
                else None,
                "sensor_ticks": len(ticks),
                "longest_sensor_tick_s": round(max((e - s for s, e, _ in ticks), default=0.0), 2),
                "failed_sensor_ticks": sum(1 for *_, st in ticks if st == "FAILURE"),
                "training_runs": sum(
                    1
                    for r in runs
                    if r.job_name == "file_to_model_job" or dg.AssetKey("anomaly_model") in (r.asset_selection or ())
                ),
                **(
                    {
                        "drop_to_all_verdicts_s": round(verdicts_at - t_drop, 1) if verdicts_at else None,
                        "verdict_runs": sum(
                            1 for r in runs if dg.AssetKey("export_anomalies") in (r.asset_selection or ())
                        ),
                        "backfills": len(instance.get_backfills()),
                        "verdicts_by_production_at_end": _scored(instance, names),
                    }
                    if args.until_verdicts
                    else {}
                ),
                "runs_by_job": dict(Counter(r.job_name for r in runs)),
                "failed_runs": sum(1 for r in runs if r.status == DagsterRunStatus.FAILURE),
                "peak_rss_one_process_mb": round(peak_one),
                "peak_rss_all_processes_mb": round(peak_all),
                "load_avg_before": round(load_before, 2),
                "load_avg_after": round(os.getloadavg()[0], 2),
                "load_avg_range": [round(load_lo, 2), round(load_hi, 2)],
                "training": _training_figures(instance) if model_at else None,
                "training_failed": blocked,
            }
        print(json.dumps(result), flush=True)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
        if args.keep_log is not None:
            shutil.copyfile(work / "dagster.log", args.keep_log)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
