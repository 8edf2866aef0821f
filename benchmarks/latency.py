"""File-to-model latency as a user sees it: ``python -m benchmarks.latency [--runs N]``.

Starts ``mcp-training up`` (real ``dagster dev``, shipped defaults) on a fresh data folder, waits until the
sample exports have become the first registered package, then, per run, writes a real-sized export (the
1,824-record hostapd sample as another router would send it, so it is new data) beside the landing folder,
renames it in (atomic) and measures the seconds until a NEW package is registered in ``models/``.
Prints one JSON object, with the runs each file caused (created / started / ended, seconds after the rename)
to show where the time goes; nothing here is asserted (the end-to-end test asserts the model appears).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from mcp_training_dagster.domain.registry import ModelRegistry

SAMPLE = (
    Path(__file__).resolve().parents[1] / "mcp_training_dagster" / "sample_exports" / "export_asus_hostapd_1824.json"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def other_router_export(staging: Path, device: int, days: int) -> Path:
    """The real sample as another router's export, ``days`` later: new data of the real size."""
    doc = json.loads(SAMPLE.read_text())
    for r in doc["data"]:
        r["timestamp"] = (datetime.fromisoformat(r["timestamp"]) + timedelta(days=days)).isoformat()
        r["device_id"] = device
        r["device_ip"] = f"RT-OTHER-{device}"
    newest = max(datetime.fromisoformat(r["timestamp"]) for r in doc["data"])
    doc["export_metadata"]["created_at"] = (newest + timedelta(minutes=5)).isoformat()
    path = staging / f"export_router{device}_{days}d.json"
    path.write_text(json.dumps(doc))
    old = time.time() - 5  # written a moment before it is moved in, as an exporter would
    os.utime(path, (old, old))
    return path


def _wait(cond, timeout: float, proc: subprocess.Popen, poll: float = 0.2):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc.poll() is not None:
            raise RuntimeError(f"mcp-training up exited with {proc.returncode}")
        time.sleep(poll)
    raise TimeoutError(f"nothing after {timeout}s")


def _idle(home: Path, proc: subprocess.Popen, quiet: float = 15, timeout: float = 600) -> None:
    """Wait until no run has been queued or running, and no backfill in progress, for ``quiet`` seconds
    (verdicts, drift and retrains done)."""
    import dagster as dg
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    busy = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
    # Automation submits the re-scoring of every export as a backfill, whose runs the backfill daemon creates
    # up to 30 s later: a backfill still in progress is work not done yet.
    backfilling = BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])
    deadline, calm_since = time.monotonic() + timeout, None
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"mcp-training up exited with {proc.returncode}")
            if instance.get_runs_count(RunsFilter(statuses=busy)) or instance.get_backfills(
                filters=backfilling, limit=1
            ):
                calm_since = None
            elif calm_since is None:
                calm_since = time.monotonic()
            elif time.monotonic() - calm_since >= quiet:
                return
            time.sleep(1)


def _runs_since(home: Path, since: float) -> list[dict]:
    """Where the seconds went: every run created after ``since`` (wall clock), in seconds after it: created
    (the sensor's request), started (dequeued and launched, process up), ended; its job, partition and assets."""
    import dagster as dg
    from dagster._core.storage.dagster_run import RunsFilter

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(RunsFilter(created_after=datetime.fromtimestamp(since).astimezone()))
    rel = lambda t: round(t - since, 1) if t else None  # noqa: E731
    rows = [
        {
            "job": r.dagster_run.job_name,
            "partition": r.dagster_run.tags.get("dagster/partition"),
            "assets": sorted(k.to_user_string() for k in (r.dagster_run.asset_selection or []))[:4],
            "created": rel(r.create_timestamp.timestamp()),
            "started": rel(r.start_time),
            "ended": rel(r.end_time),
            "status": r.dagster_run.status.value,
        }
        for r in records
    ]
    return sorted(rows, key=lambda r: r["created"])


def _new_model(models: Path, before: set[str]) -> set[str]:
    """Newly registered main packages (the agent variant ``_agent5`` is registered beside each)."""
    return {v for v in set(ModelRegistry(models).versions()) - before if not v.endswith("_agent5")}


def measure(runs: int, root: Path) -> dict:
    data = root / "data"
    models, landing, staging = data / "models", data / "exports", root / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TRAINING_", "MCP_MODEL_", "DAGSTER_"))}
    env.update(MCP_TRAINING_DATA_DIR=str(data), PYTHONUNBUFFERED="1")
    exe = Path(sys.executable).parent / "mcp-training"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mcp_training_dagster.cli"]
    out = open(root / "up.out", "wb")
    proc = subprocess.Popen(
        [*cmd, "up", "--port", str(_free_port())], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    timings: list[float] = []
    loads: list[float] = []  # 1-min load average at each rename: on 2 shared cores the figure depends on it
    breakdown: list[list[dict]] = []
    try:
        t_start = time.monotonic()
        _wait(lambda: _new_model(models, set()) if models.exists() else None, 600, proc)
        first = time.monotonic() - t_start
        _idle(data / "dagster_home", proc)  # the first model's verdicts and drift runs done: the system is idle
        for i in range(runs):
            before = set(ModelRegistry(models).versions())
            path = other_router_export(staging, 70 + i, 60 + 30 * i)
            t0, wall0 = time.monotonic(), time.time()
            loads.append(round(os.getloadavg()[0], 2))
            os.rename(path, landing / path.name)
            _wait(lambda before=before: _new_model(models, before), 600, proc)  # called here, in the loop
            timings.append(round(time.monotonic() - t0, 1))
            _idle(data / "dagster_home", proc)
            breakdown.append(_runs_since(data / "dagster_home", wall0))
    except Exception:
        out.flush()
        sys.stderr.write((root / "up.out").read_text()[-4000:])
        dev_log = data / "dagster_home" / "dagster-dev.log"  # gone with the temp folder: show why here
        if dev_log.exists():
            sys.stderr.write(dev_log.read_text(errors="replace")[-6000:])
        raise
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        out.close()
    load = os.getloadavg()
    return {
        "first_model_after_start_s": round(first, 1),
        "file_to_new_package_s": timings,
        "median_s": sorted(timings)[len(timings) // 2] if timings else None,
        "load_1min_at_each_file": loads,
        "loadavg_1_5_15": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
        "runs_after_each_file": breakdown,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in this (new) folder and keep it: the instance, the logs")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True)
        print(json.dumps(measure(args.runs, args.keep.resolve()), indent=1))
        return
    with tempfile.TemporaryDirectory(prefix="mcp-latency-") as tmp:
        print(json.dumps(measure(args.runs, Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
