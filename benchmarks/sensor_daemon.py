"""The landing sensor's tick as the daemon runs it: scan, then one run created per file.

    python -m benchmarks.sensor_daemon --files 100 --submit-workers 0 4

Loads the real code location in a gRPC code server (as ``dagster dev`` does) on a temporary instance whose
run coordinator only queues runs (nothing is launched), ticks once on the empty landing folder (the code
server's warm-up), writes ``--files`` generated exports, and runs one more iteration of Dagster's own
daemon loop (``execute_sensor_iteration``). Prints one JSON line per ``--submit-workers`` value: the tick's wall time as the tick storage
records it, and the runs created. 0 = runs created one after the other (Dagster's default); N = the
``sensors.num_submit_workers: N`` of ``config/dagster.yaml``. The daemon's own timeout is 60 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _tick(files: int, workers: int, records: int, postgres_url: str | None = None) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory(prefix="mcp-sensor-") as tmp:
        root = Path(tmp) / "data"
        (root / "exports").mkdir(parents=True)
        os.environ["MCP_TRAINING_DATA_DIR"] = str(root)  # read by the code server it starts
        # Every file in this one tick (the shipped budget is sensor.max_files_per_tick).
        os.environ["MCP_TRAINING_SENSOR__MAX_FILES_PER_TICK"] = str(files)
        from benchmarks.fleet_dagster import _sensor_ticks
        from benchmarks.fleet_landing import make_fleet

        import dagster as dg
        from dagster._core.test_utils import create_test_daemon_workspace_context
        from dagster._core.workspace.load_target import ModuleTarget
        from dagster._daemon.sensor import execute_sensor_iteration

        overrides: dict = {
            "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
        }
        if postgres_url:  # the distributed deployment's instance storage (an empty database)
            overrides["storage"] = {"postgres": {"postgres_url": postgres_url}}
        target = ModuleTarget(
            module_name="mcp_training_dagster.definitions",
            attribute="defs",
            working_directory=str(Path(__file__).resolve().parents[1]),
            location_name="bench",
        )
        with dg.instance_for_test(overrides=overrides) as instance:
            with create_test_daemon_workspace_context(target, instance) as context:
                log = logging.getLogger("bench")
                # A first tick on the empty folder: the code server loads the definitions (not measured).
                list(execute_sensor_iteration(context, log, None, None))
                make_fleet(root / "exports", files, 1, records)
                time.sleep(6)  # settled (unmodified >= 2 s) and past the sensor's minimum interval (5 s)
                pool = ThreadPoolExecutor(workers) if workers else None
                t0 = time.perf_counter()
                list(execute_sensor_iteration(context, log, None, pool))
                wall = time.perf_counter() - t0
                if pool:
                    pool.shutdown()
                ticks = _sensor_ticks(instance, "export_file_sensor")
                runs = len(instance.get_run_records())
    tick = max(ticks)[1] - max(ticks)[0] if ticks else float("nan")  # the newest tick: the one with the files
    return {
        "files": files,
        "submit_workers": workers,
        "tick_seconds": round(tick, 2),
        "iteration_seconds": round(wall, 2),
        "runs_created": runs,
        "storage": "postgres" if postgres_url else "sqlite",
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--records", type=int, default=200, help="records per export file")
    p.add_argument("--submit-workers", type=int, nargs="+", default=[0, 4])
    p.add_argument(
        "--postgres-url",
        help="instance storage in this (empty, throwaway) PostgreSQL database instead of a temporary SQLite one",
    )
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    for workers in args.submit_workers:
        print(json.dumps(_tick(args.files, workers, args.records, args.postgres_url)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
