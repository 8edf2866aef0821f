"""Measuring inside a stage process: RSS baseline, input, peak (kernel mark reset), wall and CPU time."""

from __future__ import annotations

import gc
import os
import resource
import time
from pathlib import Path
from typing import Any

MIB = 2**20


# ---------------------------------------------------------------------------------------------
# Measuring inside a stage process
# ---------------------------------------------------------------------------------------------


def _rss_now_mb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak_rss() -> bool:
    """Lower the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _cpu_seconds() -> float:
    """This process and its finished children (the forked export-decoding parts)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _children_peak_rss_mb() -> float:
    """The largest peak RSS of a finished child (0 without one); shared, copy-on-write pages count in full."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class _Probe:
    """Baseline after imports, input size after loading, then wall time, CPU time and peak RSS of the work."""

    def __init__(self) -> None:
        self.baseline_mb = _rss_now_mb()
        self.input_mb = self.baseline_mb
        self.peak_reset = False
        self._t0 = 0.0
        self._cpu0 = 0.0

    def start(self) -> None:
        gc.collect()
        self.input_mb = _rss_now_mb()
        self.peak_reset = _reset_peak_rss()
        self._cpu0 = _cpu_seconds()
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def stop(self) -> dict[str, Any]:
        seconds = self.elapsed()
        cpu = _cpu_seconds() - self._cpu0
        peak = _peak_rss_mb()
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "peak_rss_mb": peak,
            # An upper bound for this process and a child together (they need not peak at once, and the
            # export's bytes, shared copy-on-write, count in both).
            "peak_rss_with_children_mb": peak + _children_peak_rss_mb(),
            "baseline_rss_mb": self.baseline_mb,
            "input_rss_mb": self.input_mb,
            "stage_rss_mb": peak - self.input_mb,
            "peak_reset": self.peak_reset,
            "load_avg_1m": os.getloadavg()[0],
        }


def _write_parquet(df: Any, path: Path) -> None:
    """As the asset storage does (io_managers.atomic_write_bytes + to_parquet zstd), minus Dagster."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        df.to_parquet(fh, index=False, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
