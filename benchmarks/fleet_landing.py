"""A fleet landing at once: the landing sensor's tick over 15, 150 and 1,500 export files, in a local
folder and in an S3-compatible bucket (moto's server on 127.0.0.1, started here).

    python -m benchmarks.fleet_landing [--routers 50 --days 30 --records 2000 --max-files-per-tick 100]

Files are generated exports in the real format (``benchmarks.generator.write_fleet``), one
per router and day: each router a device of its own, each day's export overlapping the previous by an hour. For each fleet size and landing kind it ticks the scan exactly as
``export_file_sensor`` does (cursor carried between ticks, the configured per-tick budget) until every
file has been handed over, and prints one JSON line: ticks, the longest tick, total scan seconds and
seconds per file. Each tick must stay far below Dagster's 60 s sensor timeout (target < 10 s).
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
from pathlib import Path
from typing import Any, Callable

from benchmarks.generator import write_fleet
from mcp_training_dagster.domain.landing import scan_landing
from mcp_training_dagster.domain.object_landing import scan_object_landing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_fleet(folder: Path, routers: int, days: int, records: int) -> list[Path]:
    """One export per router and day (``benchmarks.generator.write_fleet``): every router a device of its own with
    its own records, each day's export repeating the previous one's last hour; the newest day ends at the last
    UTC midnight."""
    return [e.path for e in write_fleet(folder, routers, days, records)]


def drain(tick: Callable[[str | None], Any], expected: int) -> dict[str, Any]:
    cursor, ticks, handed, longest, total = None, 0, 0, 0.0, 0.0
    while handed < expected and ticks < 10_000:
        t0 = time.perf_counter()
        result = tick(cursor)
        dt = time.perf_counter() - t0
        cursor, ticks, handed = result.cursor(), ticks + 1, handed + len(result.ready)
        longest, total = max(longest, dt), total + dt
    return {
        "ticks": ticks,
        "handed_over": handed,
        "longest_tick_s": round(longest, 3),
        "scan_seconds": round(total, 2),
        "ms_per_file": round(1000 * total / max(expected, 1), 2),
        "cursor_kb": round(len(cursor or "") / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--routers", type=int, default=50)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--records", type=int, default=2000, help="records per export file (1,500 files: 3M)")
    p.add_argument("--max-files-per-tick", type=int, default=100)
    p.add_argument("--sizes", default="15,150,1500", help="fleet sizes (files) to measure")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mcp-fleet-"))
    moto = None
    try:
        files = make_fleet(work / "all", args.routers, args.days, args.records)
        mb = sum(f.stat().st_size for f in files) / 1e6
        print(
            json.dumps(
                {
                    "fleet_files": len(files),
                    "fleet_mb": round(mb, 1),
                    "records_per_file": args.records,
                    "load_avg": os.getloadavg()[0],
                }
            ),
            flush=True,
        )
        port = _free_port()
        moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
        )
        import fsspec

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        fs = fsspec.filesystem("s3")
        budget = {"max_files": args.max_files_per_tick}
        for n in sizes:
            chosen = files[:n]
            local = work / f"local{n}"
            local.mkdir()
            for f in chosen:
                os.link(f, local / f.name)
            line = {
                "files": n,
                "landing": "local folder",
                **budget,
                **drain(lambda c: scan_landing(local, c, **budget), n),
            }
            print(json.dumps(line), flush=True)
            bucket = f"fleet{n}"
            fs.mkdir(bucket)
            fs.put([str(f) for f in chosen], f"{bucket}/exports/")
            line = {
                "files": n,
                "landing": "s3 (moto, 127.0.0.1)",
                **budget,
                **drain(lambda c: scan_object_landing(f"s3://{bucket}/exports", c, **budget), n),
            }
            print(json.dumps(line), flush=True)
    finally:
        if moto is not None:
            os.killpg(moto.pid, signal.SIGKILL)
            moto.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
