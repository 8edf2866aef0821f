"""horizon_records from the user's side: the real sample exports ingested into a temp data root, then the
fan-in materialised with Dagster's ``materialize`` on the real definitions and resources."""

from pathlib import Path

import pandas as pd
import pytest

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.serving.features import build_windows
from mcp_training_dagster.domain.horizon import ORDER_COLUMN, StoredWindows, horizon_filter, union_records
from mcp_training_dagster.io_managers import ParquetReader
from upath import UPath
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import materializations, md, run_ingest

pytestmark = pytest.mark.slow  # Dagster job runs

SAMPLES = (HOSTAPD_1824, SYSTEM_19, SYSTEM_35)


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, resources: dict, *names: str):
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    return dg.materialize(assets, selection=list(names), instance=instance, resources=resources)


@pytest.fixture
def ingested(defs, instance, landing) -> list[str]:
    for path in SAMPLES:
        copy_sample(path.name, landing)
        assert run_ingest(defs, instance, path.name).success
    return sorted(p.name for p in SAMPLES)


def test_horizon_records_is_the_union_in_the_horizon(defs, instance, resources, settings, assets_dir: Path, ingested):
    result = _materialize(defs, instance, resources, "horizon_records", "training_windows")
    assert result.success
    validated = {name: pd.read_parquet(assets_dir / "validated_records" / f"{name}.parquet") for name in ingested}
    union, report = union_records(validated)
    expected, cutoff = horizon_filter(union, settings.training.training_horizon_days)

    stored = pd.read_parquet(assets_dir / "horizon_records.parquet")
    pd.testing.assert_frame_equal(stored, expected.reset_index(drop=True))
    meta = md(materializations(result, "horizon_records")[0])
    assert meta["dagster/row_count"] == len(expected)
    assert meta["exports_loaded"] == 3
    assert meta["exports_in_horizon"] == sorted(expected["source_file"].unique())
    assert meta["cross_file_duplicates"] == report.identical == 19  # the 19 are copies of 19 of the 35
    assert meta["records_distinct"] == len(union)
    assert meta["horizon_cutoff"] == str(cutoff)

    # Stored chunk by chunk of whole routers (one row group each), with the column that gives back the order.
    reader = ParquetReader(UPath(assets_dir / "training_windows.parquet"))
    whole = build_windows(expected, settings.model.windows.spec())
    assert reader.columns == [*whole.columns, ORDER_COLUMN] and sum(reader.row_group_rows) == len(whole)
    pd.testing.assert_frame_equal(StoredWindows(reader).rows(None), whole)
    meta = md(materializations(result, "training_windows")[0])
    assert meta["records_in_horizon"] == len(expected) and meta["device_chunks"] == len(reader.row_group_rows) == 1
    assert meta["dagster/row_count"] == len(whole) and meta["first_window"] == str(whole["window_start"].min())


def test_a_failed_export_is_skipped_and_nothing_is_empty(defs, instance, resources, assets_dir: Path, ingested):
    instance.add_dynamic_partitions(export_files.name, ["never_materialised.json"])  # e.g. a file that failed
    result = _materialize(defs, instance, resources, "horizon_records")
    assert result.success
    assert md(materializations(result, "horizon_records")[0])["exports_loaded"] == 3


def test_no_exports_gives_an_empty_table_with_columns(defs, instance, resources, assets_dir: Path):
    result = _materialize(defs, instance, resources, "horizon_records", "training_windows")
    assert result.success
    assert md(materializations(result, "horizon_records")[0])["records_in_horizon"] == 0
    assert "source_file" in pd.read_parquet(assets_dir / "horizon_records.parquet").columns
    assert pd.read_parquet(assets_dir / "training_windows.parquet").empty
