"""Golden feature tables: the windowing kernel may change *how* it computes, never *what*.

The fingerprints in ``golden/feature_tables.json`` were taken from the kernel as it was before its
speed-up (commit "golden feature tables"), per column (name, dtype, content hash), on the real
sample exports and on generated data, for the default spec and two others that take the kernel's
other branches (no device windows first; longer windows). A failure names the column that moved.
A deliberate change of a feature's *definition* regenerates the file:

    python -m mcp_training_dagster_tests.serving.test_features_golden
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.features import WindowSpec, build_windows
from mcp_training_dagster.domain.scenarios import generate
from mcp_training_dagster.domain.scenarios.generation import export_document
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster_tests.conftest import SAMPLES

GOLDEN = Path(__file__).parent / "golden" / "feature_tables.json"
SPECS: dict[str, WindowSpec] = {
    "default": WindowSpec(),
    "no_device_first": WindowSpec(entities=("station", "interface")),
    "ten_minutes": WindowSpec(length_minutes=10, burst_seconds=30, entities=("interface", "device")),
}


def _validated(path: Path) -> pd.DataFrame:
    raw = read_export(path)
    return validate_records(raw.records, raw.facts.file_name, service_timezone="UTC").records


@cache
def samples() -> pd.DataFrame:
    """The three real exports together (one table, as the fan-in windows them)."""
    parts = [_validated(p) for p in sorted(SAMPLES.glob("*.json"))]
    return pd.concat(parts, ignore_index=True).sort_values(["timestamp", "id"], kind="stable", ignore_index=True)


@cache
def scenarios(tmp: str = "") -> pd.DataFrame:
    """Labelled generator: several devices, every scenario, two days."""
    import tempfile

    data = generate(seed=11, days=2.0, n_devices=3, episodes_per_scenario=1, benign_per_scenario=1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scenarios.json"
        path.write_text(json.dumps(export_document(data), default=str))
        return _validated(path)


@cache
def fleet() -> pd.DataFrame:
    """The benchmark's generator (ASUS and OpenWrt devices, many records per second), unsorted input."""
    import tempfile

    from benchmarks.generator import write_export

    with tempfile.TemporaryDirectory() as folder:
        return _validated(write_export(Path(folder), 30_000, 7))


DATASETS: dict[str, Callable[[], pd.DataFrame]] = {"samples": samples, "scenarios": scenarios, "fleet": fleet}


def fingerprint(windows: pd.DataFrame) -> dict:
    cols = []
    for name in windows.columns:
        digest = hashlib.sha256(pd.util.hash_pandas_object(windows[name], index=False).to_numpy().tobytes())
        cols.append([str(name), str(windows[name].dtype), digest.hexdigest()[:16]])
    return {"rows": len(windows), "columns": cols}


def current() -> dict[str, dict]:
    return {f"{d}/{s}": fingerprint(build_windows(DATASETS[d](), spec)) for d in DATASETS for s, spec in SPECS.items()}


@pytest.mark.parametrize("case", [f"{d}/{s}" for d in DATASETS for s in SPECS])
def test_feature_table_is_the_golden_one(case: str) -> None:
    golden = json.loads(GOLDEN.read_text())[case]
    data, spec = case.split("/")
    got = fingerprint(build_windows(DATASETS[data](), SPECS[spec]))
    assert got["rows"] == golden["rows"]
    assert [c[:2] for c in got["columns"]] == [c[:2] for c in golden["columns"]], "columns or dtypes changed"
    moved = [g[0] for g, w in zip(got["columns"], golden["columns"]) if g[2] != w[2]]
    assert not moved, f"values changed in {moved}"


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(current(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
