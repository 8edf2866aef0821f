"""horizon_records from the user's side: the real sample exports ingested into a temp data root, then the
fan-in materialised with Dagster's ``materialize`` on the real definitions and resources."""

from pathlib import Path

import joblib

import pandas as pd
import pytest

import dagster as dg
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.serving.features import build_windows
from mcp_training_dagster.domain.horizon import horizon_filter, union_records
from mcp_training_dagster.domain.stored_windows import ORDER_COLUMN, StoredWindows
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


def test_the_chain_above_the_fit_cap_fits_and_diagnoses_on_samples_and_says_so(
    defs, instance, resources, assets_dir: Path, monkeypatch
):
    """Three routers' validated exports through horizon_records, training_windows, evaluation_dataset and
    anomaly_model with the fit cap lowered below their windows: the model is fitted on a seeded subsample and its
    training statistics are of a seeded sample of whole routers, both said in its metadata (the asset's and
    metadata.json) and beside each figure shown; the figures stay figures."""
    from mcp_training_dagster.domain import training
    from mcp_training_dagster.domain.model_metadata import metadata_document
    from mcp_training_dagster.serving.exports import read_export
    from mcp_training_dagster.serving.features import WindowSpec
    from mcp_training_dagster.serving.validation import validate_records

    base = validate_records(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name).records
    store = assets_dir / "validated_records"
    store.mkdir(parents=True, exist_ok=True)
    names = [f"router_{k}.json" for k in range(3)]
    for k, name in enumerate(names):  # as ingest stores them: one partition per export
        part = base.assign(device=f"router-{k}", id=base["id"] + 10_000 * k, source_file=name)
        part.to_parquet(store / f"{name}.parquet", index=False)
    instance.add_dynamic_partitions(str(export_files.name), names)
    monkeypatch.setattr(training, "FIT_WINDOWS_CAP", 2_000)
    result = _materialize(
        defs, instance, resources, "horizon_records", "training_windows", "evaluation_dataset", "anomaly_model"
    )
    assert result.success
    meta = md(materializations(result, "anomaly_model")[0])
    n = meta["n_windows"]
    assert n > 3 * 2_000
    assert meta["fit_sample"]["windows"] == 2_000 and meta["fit_sample"]["of"] == n
    sample = meta["diagnostics_sample"]
    assert sample["of"] == n and 2_000 <= sample["windows"] < n and sample["routers"] < sample["of_routers"] == 3
    assert "whole routers" in sample["chosen"] and "fit_sample" in sample["not_sampled"]
    # no statistic scored every training window: each is named as the sample's, where it is shown
    assert set(sample["figures"]) == {
        "seed_stability",
        "later_windows_flag_rate",
        "training_flag_rate",
        "score_quantiles",
        "score_distribution",
        "top_windows",
        "drift_baseline.flag_rate",
    }
    assert f"Scores of {sample['windows']} training windows (of {n}: every window of " in meta["score_distribution"]
    assert f"Of the {sample['windows']} windows of {sample['routers']} of 3 routers sampled" in meta["model_card"]
    model = joblib.load(assets_dir / "anomaly_model.joblib")
    d = model.diagnostics
    assert d["sample"] == sample and 0.0 <= d["later_windows_flag_rate"] <= 1.0
    assert meta["training_flag_rate"] == model.training_flag_rate == d["training_flag_rate"]
    from mcp_training_dagster.defs.assets.training import threshold_calibrated

    check = threshold_calibrated(resources["settings"], model)
    assert f"(of {sample['windows']} sampled: diagnostics_sample)" in (check.description or "")
    doc = metadata_document(model, export_files=names, spec=WindowSpec(), service_timezone="UTC")
    assert doc["evaluation_info"]["diagnostics"]["sample"] == sample and doc["training_info"]["fit_sample"]["of"] == n
    assert (
        -1.0 <= d["seed_stability"]["spearman_min"] <= 1.0 and 0.0 <= d["seed_stability"]["top2pct_jaccard_min"] <= 1.0
    )
    assert "Most anomalous training windows" in meta["model_card"] and meta["eval_pr_auc"] is not None
