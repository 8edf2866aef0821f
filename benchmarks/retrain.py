"""Retraining over a long horizon: the fan-in path on N million validated records, step by step.

    python -m benchmarks.retrain --validated validated.parquet --copies 10   # 1M records x 10 = 10M

The input is one validated-records Parquet file (e.g. the ``validated`` file the stage benchmark writes,
or an asset's stored partition). It is loaded ``--copies`` times as separate exports of distinct routers
(device names suffixed, ids offset), so the union keeps every record, then the steps ``training_windows``
and ``anomaly_model`` run: ``union_records`` -> ``horizon_filter`` -> ``build_windows`` -> ``train_model``
(on at most ``--train-cap`` windows, a seeded random subsample, as the stage benchmark does). Prints one
JSON line: records, windows, seconds and peak RSS (whole process, kernel's high-water mark reset per
step) of each step, and the machine's 1-minute load. Targets from issue 11: <= 60 s, <= 4 GB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.probe import _peak_rss_mb, _reset_peak_rss, _rss_now_mb

TARGET_SECONDS = 60.0
TARGET_PEAK_MB = 4096.0


def _copies(path: Path, copies: int) -> dict[str, Any]:
    """``copies`` exports of distinct routers from one validated table (untimed input)."""
    import pandas as pd

    base = pd.read_parquet(path)
    span = int(base["id"].max()) - int(base["id"].min()) + 1
    frames = {}
    for k in range(copies):
        part = base.copy()
        part["device"] = (part["device"] + f"-r{k}").astype("str")
        part["id"] = part["id"] + k * span
        part["source_file"] = f"copy_{k:02d}.json"
        frames[f"copy_{k:02d}.json"] = part
    return frames


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--validated", type=Path, required=True, help="a validated-records Parquet file")
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--horizon-days", type=float, default=3650.0, help="wide enough to keep every record")
    p.add_argument("--train-cap", type=int, default=100_000)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    from mcp_training_dagster.domain.features import WindowSpec, build_windows
    from mcp_training_dagster.domain.horizon import horizon_filter, union_records
    from mcp_training_dagster.domain.training import train_model
    from mcp_training_dagster.settings import DetectorConfig

    frames = _copies(args.validated, args.copies)
    n_in = sum(len(f) for f in frames.values())
    steps: dict[str, dict[str, float]] = {}
    input_mb = _rss_now_mb()

    def step(name: str, fn: Any, *fn_args: Any) -> Any:
        _reset_peak_rss()
        t0 = time.perf_counter()
        out = fn(*fn_args)
        steps[name] = {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(_peak_rss_mb(), 1)}
        return out

    records, _ = step("union", union_records, frames)
    del frames
    in_horizon, _ = step("horizon", horizon_filter, records, args.horizon_days)
    del records
    windows = step("windows", build_windows, in_horizon, WindowSpec())
    n_records = len(in_horizon)
    del in_horizon
    total = len(windows)
    if args.train_cap and total > args.train_cap:
        windows = windows.sample(n=args.train_cap, random_state=7).sort_values("window_start", kind="stable")
    step("train", lambda w: train_model(w, DetectorConfig(), window_minutes=5), windows)
    seconds = sum(s["seconds"] for s in steps.values())
    peak = max(s["peak_rss_mb"] for s in steps.values())
    print(json.dumps({
        "stage": "retrain", "records_in": n_in, "records_in_horizon": n_records, "windows": total,
        "trained_on_windows": len(windows), "seconds": round(seconds, 2), "peak_rss_mb": peak,
        "input_rss_mb": round(input_mb, 1), "steps": steps, "load_avg_1m": os.getloadavg()[0],
        "targets": {"seconds": TARGET_SECONDS, "peak_rss_mb": TARGET_PEAK_MB,
                    "met": seconds <= TARGET_SECONDS and peak <= TARGET_PEAK_MB},
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
