"""Retraining over a long horizon: the fan-in path on N million validated records, step by step.

    python -m benchmarks.retrain --validated validated.parquet --copies 10   # 1M records x 10 = 10M

The input is one validated-records Parquet file (e.g. the ``validated`` file the stage benchmark writes,
or an asset's stored partition). It is written ``--copies`` times as the validated partitions of separate
exports of distinct routers (device names suffixed, ids offset, untimed), so the union keeps every record.
Then the steps of ``horizon_records`` (as the asset runs it), ``training_windows`` and ``anomaly_model`` on the
chunked path of the fan-in, as functions (``--assets`` below runs the assets themselves):

  horizon   ``select_records`` over lazy Parquet readers: keys column-wise, full rows only for what is kept
            (the asset's whole work; its table is written to Parquet, untimed, as the IO manager does)
  windows   that table read back with only ``RECORD_COLUMNS`` (as ``training_windows`` loads it), then
            ``windows_by_chunk`` (domain/horizon.py): ``build_windows`` per device chunk of at most
            ``--chunk-records`` records, each chunk's windows written to an Arrow IPC file (lz4; ``--no-spill``:
            not written) and a uniform sample of them kept for the fit (share: ``--train-cap`` / estimated
            windows; seeded per chunk); ``--workers 2`` windows the chunks in two worker processes
  train     ``train_model`` on that sample (``fit_cap=--train-cap``: at most that many windows)

Prints one JSON line: records, windows, seconds, CPU seconds (worker processes included) and peak RSS (the
kernel's high-water mark, reset per step; with workers, the most this process and its children held at once,
sampled every 50 ms) of each step, and the machine's 1-minute load. Targets from issue 11: <= 60 s, <= 4 GB peak.

``--assets horizon_records,training_windows,evaluation_dataset,anomaly_model`` runs the real assets instead:
the copies are written as stored ``validated_records`` partitions of a temporary data root (untimed), then each
named asset is materialised by ``dg.materialize`` on the real definitions and resources against a temporary
instance, one step per asset, each in a fresh process as Dagster's multiprocess executor runs a step (so a
step's peak RSS is its process's: the interpreter, Dagster, the IO managers' reads and writes, the asset code;
the RSS it starts from, definitions loaded, is reported). ``--in-process`` runs every step in this one process
instead, as the local default ``in_process`` executor runs a run's steps (freed heap returned before each step,
``malloc_trim`` and Arrow's pool; ``execute_in_process``' captured outputs emptied after each step: a real run
captures none). Settings are the shipped defaults (horizon 30 days, fit cap 1M) unless
overridden by ``MCP_MODEL_*`` variables (e.g. ``MCP_MODEL_DETECTOR__ISOLATION_FOREST__N_ESTIMATORS=30``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.probe import _peak_rss_mb, _reset_peak_rss, _rss_now_mb

TARGET_SECONDS = 60.0
TARGET_PEAK_MB = 4096.0


def _write_copies(path: Path, copies: int, folder: Path) -> dict[str, Path]:
    """``copies`` validated partitions of distinct routers from one validated table (untimed input)."""
    import pandas as pd

    base = pd.read_parquet(path)
    span = int(base["id"].max()) - int(base["id"].min()) + 1
    out = {}
    for k in range(copies):
        part = base.copy()
        part["device"] = (part["device"] + f"-r{k}").astype("str")
        part["id"] = part["id"] + k * span
        part["source_file"] = f"copy_{k:02d}.json"
        out[f"copy_{k:02d}.json"] = folder / f"copy_{k:02d}.parquet"
        part.to_parquet(out[f"copy_{k:02d}.json"], index=False, compression="zstd")
    return out


class _Reader:
    """A validated partition read on demand, as the IO manager's ``ParquetReader`` (without importing Dagster)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def columns(self) -> list[str]:
        import pyarrow.parquet as pq

        return list(pq.read_schema(self.path).names)

    def __call__(self, columns: Any = None) -> Any:
        import pandas as pd

        return pd.read_parquet(self.path, columns=None if columns is None else list(columns))


def _children_cpu() -> float:
    """User + system seconds of this process's finished (waited-for) children, e.g. worker processes."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class _TreeRss:
    """Samples, every 50 ms on a thread, the summed RSS of this process and its child processes."""

    def __init__(self) -> None:
        import threading

        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss_mb(pid: str) -> float:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            return 0.0

    def _children(self) -> list[str]:
        out: list[str] = []
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/children") as fh:
                    out.extend(fh.read().split())
            except OSError:
                pass
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            total = self._rss_mb("self") + sum(self._rss_mb(pid) for pid in self._children())
            self.peak_mb = max(self.peak_mb, total)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--validated", type=Path, help="a validated-records Parquet file (required)")
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--horizon-days", type=float, default=3650.0, help="wide enough to keep every record")
    p.add_argument("--train-cap", type=int, default=100_000)
    p.add_argument("--chunk-records", type=int, default=1_000_000)
    p.add_argument("--no-spill", action="store_true", help="do not write the chunks' windows (only the sample is kept)")
    p.add_argument("--workers", type=int, default=1, help="processes windowing the chunks (1: all in this one)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--assets", default="", help="comma-separated assets to materialise in order (the real path)")
    p.add_argument("--in-process", action="store_true", help="with --assets: every step in this one process")
    p.add_argument("--_step", default="", help=argparse.SUPPRESS)  # internal: one asset in a fresh process
    p.add_argument("--_root", default="", help=argparse.SUPPRESS)
    p.add_argument("--keep", default="", help="with --assets: the data root to use and keep (default: a temporary one)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args._step:
        return _step_process(args._step, args._root)
    if args.validated is None:
        p.error("--validated is required")
    if args.assets:
        return _assets(args)

    import pandas as pd

    from mcp_training_dagster.serving.features import RECORD_COLUMNS, WindowSpec
    from mcp_training_dagster.domain.horizon import select_records, windows_by_chunk
    from mcp_training_dagster.domain.training import train_model
    from mcp_training_dagster.settings import DetectorConfig

    tmp = tempfile.TemporaryDirectory(prefix="retrain-")
    folder = Path(tmp.name)
    paths = _write_copies(args.validated, args.copies, folder)
    steps: dict[str, dict[str, float]] = {}
    input_mb = _rss_now_mb()

    def step(name: str, fn: Any, *fn_args: Any) -> Any:
        _reset_peak_rss()
        sampler = _TreeRss()
        t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
        out = fn(*fn_args)
        sampler.stop()
        workers_cpu = _children_cpu() - k0
        own_peak = _peak_rss_mb()
        steps[name] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0 + workers_cpu, 2),
            # this process's kernel high-water mark, or with worker processes the most the tree held at once
            # (sampled every 50 ms: this process and its children)
            "peak_rss_mb": round(max(own_peak, sampler.peak_mb), 1),
        }
        if workers_cpu > 0:
            steps[name]["worker_cpu_seconds"] = round(workers_cpu, 2)
            steps[name]["own_peak_rss_mb"] = round(own_peak, 1)
        return out

    result = step("horizon", select_records, {k: _Reader(v) for k, v in paths.items()}, args.horizon_days)
    n_in, n_records = result.distinct + result.union.identical, len(result.records)
    result.records.to_parquet(
        folder / "horizon_records.parquet", index=False, compression="zstd"
    )  # untimed (IO manager)
    del result

    def windows_step() -> tuple[pd.DataFrame, int, int]:
        records = pd.read_parquet(folder / "horizon_records.parquet", columns=list(RECORD_COLUMNS))
        share = min(1.0, args.train_cap / max(1.35 * len(records), 1))  # ~1.35 windows per record (measured)
        spill = folder / "windows"
        spill.mkdir()
        chunks = windows_by_chunk(
            records,
            WindowSpec(),
            max_records=args.chunk_records,
            share=share,
            seed=args.seed,
            folder=None if args.no_spill else str(spill),
            workers=args.workers,
        )
        del records
        total = sum(c.windows for c in chunks)
        sample = pd.concat([c.sample for c in chunks], ignore_index=True)
        return sample.sort_values("window_start", kind="stable", ignore_index=True), total, len(chunks)

    sample, total, n_chunks = step("windows", windows_step)
    model = step("train", lambda w: train_model(w, DetectorConfig(), window_minutes=5, fit_cap=args.train_cap), sample)
    tmp.cleanup()
    seconds = sum(s["seconds"] for s in steps.values())
    peak = max(s["peak_rss_mb"] for s in steps.values())
    print(
        json.dumps(
            {
                "stage": "retrain",
                "records_in": n_in,
                "records_in_horizon": n_records,
                "windows": total,
                "device_chunks": n_chunks,
                "trained_on_windows": model.n_windows,
                "fit_sample": model.fit_sample,
                "seconds": round(seconds, 2),
                "cpu_seconds": round(sum(s["cpu_seconds"] for s in steps.values()), 2),
                "peak_rss_mb": peak,
                "input_rss_mb": round(input_mb, 1),
                "steps": steps,
                "load_avg_1m": os.getloadavg()[0],
                "targets": {
                    "seconds": TARGET_SECONDS,
                    "peak_rss_mb": TARGET_PEAK_MB,
                    "met": seconds <= TARGET_SECONDS and peak <= TARGET_PEAK_MB,
                },
            }
        ),
        flush=True,
    )
    return 0


class _Step:
    """Seconds, CPU seconds (children included), peak RSS (the kernel's high-water mark, reset first) of one call."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, float]] = {}

    def __call__(self, name: str, fn: Any) -> Any:
        import ctypes
        import gc

        import pyarrow as pa

        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # the previous step's freed heap back to the system
        pa.default_memory_pool().release_unused()  # and Arrow's (its allocator keeps freed pages a while)
        start_mb = _rss_now_mb()
        _reset_peak_rss()
        t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
        out = fn()
        self.steps[name] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0 + _children_cpu() - k0, 2),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "rss_at_start_mb": round(start_mb, 1),
            "load_avg_1m": os.getloadavg()[0],
        }
        return out


def _definitions(root: str) -> tuple[Any, Any, list[Any]]:
    """Settings, resources and assets of the real definitions, everything under the data root ``root``."""
    os.environ["MCP_TRAINING_DATA_DIR"] = root  # before the settings are read: everything in the temp root

    import dagster as dg

    from mcp_training_dagster.definitions import build_definitions
    from mcp_training_dagster.defs.resources import build_resources
    from mcp_training_dagster.settings import get_settings

    settings = get_settings()
    defs = build_definitions(settings)
    return settings, build_resources(settings), [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]


FACT_KEYS = ("dagster/row_count", "device_chunks", "n_windows", "fit_sample", "records_in_horizon")


def _materialise(step: _Step, name: str, instance: Any, assets: list[Any], resources: Any) -> dict[str, Any]:
    """``name`` materialised as one step; its facts (a few metadata entries)."""
    import dagster as dg

    result = step(name, lambda: dg.materialize(assets, selection=[name], instance=instance, resources=resources))
    if not result.success:
        raise SystemExit(f"{name} failed")
    facts: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        meta = event.step_materialization_data.materialization.metadata
        facts = {k: getattr(meta[k], "value", meta[k]) for k in FACT_KEYS if k in meta}
    # execute_in_process keeps every output for the result (a real run does not), and Dagster keeps the step's
    # context (which holds them) alive past the result: emptied here, or the next step starts with them
    result._output_capture.clear()  # noqa: SLF001
    return facts


def _step_process(name: str, root: str) -> int:
    """One asset materialised in this fresh process (``--_step``): one JSON line with its step and facts."""
    import dagster as dg

    _, resources, assets = _definitions(root)
    step = _Step()
    with dg.DagsterInstance.from_config(str(Path(root) / "instance")) as instance:
        facts = _materialise(step, name, instance, assets, resources)
    print(json.dumps({"step": step.steps[name], "facts": facts}, default=str), flush=True)
    return 0


def _assets(args: argparse.Namespace) -> int:
    """The real assets materialised one after the other (see the module docstring)."""
    tmp = tempfile.TemporaryDirectory(prefix="retrain-assets-") if not args.keep else None
    root = args.keep if tmp is None else tmp.name
    import dagster as dg

    from mcp_training_dagster.defs.partitions import export_files

    settings, resources, assets = _definitions(root)
    store = Path(settings.asset_storage) / "validated_records"
    store.mkdir(parents=True, exist_ok=True)
    staged = _write_copies(args.validated, args.copies, Path(root))
    for name, path in staged.items():  # the IO manager's path of each partition
        path.rename(store / f"{name}.parquet")
    step = _Step()
    facts: dict[str, Any] = {}
    load_before = os.getloadavg()[0]
    (Path(root) / "instance").mkdir()
    names = [a.strip() for a in args.assets.split(",") if a.strip()]
    with dg.instance_for_test(temp_dir=str(Path(root) / "instance")) as instance:
        instance.add_dynamic_partitions(str(export_files.name), sorted(staged))
        for name in names:
            if args.in_process:
                facts[name] = _materialise(step, name, instance, assets, resources)
                continue
            # a fresh process per step, as the multiprocess executor runs them: nothing of an earlier step's
            # (Dagster keeps an in-process run's outputs alive) counts in a later one's peak
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.retrain", "--_step", name, "--_root", root],
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            )
            line = json.loads(done.stdout.strip().splitlines()[-1])
            step.steps[name], facts[name] = line["step"], line["facts"]
    if tmp is not None:
        tmp.cleanup()
    seconds = sum(s["seconds"] for s in step.steps.values())
    peak = max(s["peak_rss_mb"] for s in step.steps.values())
    print(
        json.dumps(
            {
                "stage": "retrain_assets",
                "copies": args.copies,
                "process_per_step": not args.in_process,
                "seconds": round(seconds, 2),
                "cpu_seconds": round(sum(s["cpu_seconds"] for s in step.steps.values()), 2),
                "peak_rss_mb": peak,
                "steps": step.steps,
                "facts": facts,
                "load_avg_1m_before": load_before,
                "load_avg_1m": os.getloadavg()[0],
                "targets": {
                    "seconds": TARGET_SECONDS,
                    "peak_rss_mb": TARGET_PEAK_MB,
                    "met": seconds <= TARGET_SECONDS and peak <= TARGET_PEAK_MB,
                },
            },
            default=str,
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
