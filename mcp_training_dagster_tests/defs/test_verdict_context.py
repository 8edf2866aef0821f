"""An export's verdict as training saw it: scored with its routers' records from the other exports.

The shipped samples are one router's hostapd export and two sparse system logs (crond, WATCHDOG) that overlap
it. Scored alone, a system log's windows look silent; in training they hold the router's hostapd records too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.domain.promotion import load_production
from mcp_training_dagster.serving.features import build_windows
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import failure_text, materializations, md, run_ingest

pytestmark = pytest.mark.slow  # ingests three exports and trains

KEY = ["device_id", "entity_kind", "entity", "window_start"]


def _stored(assets_dir, asset: str, partition: str | None = None) -> pd.DataFrame:
    folder = assets_dir / asset
    return pd.read_parquet(folder / f"{partition}.parquet" if partition else folder.with_suffix(".parquet"))


def test_a_sparse_exports_verdict_is_the_one_training_saw(defs, instance, landing, settings, assets_dir):
    for sample in (HOSTAPD_1824, SYSTEM_19, SYSTEM_35):
        copy_sample(sample.name, landing)
        assert run_ingest(defs, instance, sample.name).success
    trained = defs.resolve_job_def("train_job").execute_in_process(instance=instance)
    assert trained.success, failure_text(trained)
    verdicts = defs.resolve_job_def("verdicts_job")
    for name in (SYSTEM_35.name, SYSTEM_19.name):
        out = verdicts.execute_in_process(instance=instance, partition_key=name)
        assert out.success, failure_text(out)
        meta = md(materializations(out, "export_anomalies")[0])
        verdict = _stored(assets_dir, "export_anomalies", name)
        assert meta["dagster/row_count"] == len(verdict) > 0

        # every window of the verdict scores as the same window of training (the union of the exports)
        prod = load_production(settings.models_location)
        training = _stored(assets_dir, "training_windows")
        seen = prod.score_table(training)
        both = verdict.merge(seen, on=KEY, suffixes=("", "_training"), validate="one_to_one")
        assert len(both) == len(verdict), f"{name}: {len(verdict) - len(both)} verdict windows training never saw"
        np.testing.assert_allclose(both["score"], both["score_training"], rtol=0, atol=1e-9)
        assert (both["is_anomaly"] == both["is_anomaly_training"]).all()

        # and it is not the export alone: alone, the router looks silent where its hostapd log was busy
        own = _stored(assets_dir, "validated_records", name)
        alone = prod.score_table(build_windows(own, settings.model.windows.spec()))
        assert alone["is_anomaly"].mean() > verdict["is_anomaly"].mean(), name
