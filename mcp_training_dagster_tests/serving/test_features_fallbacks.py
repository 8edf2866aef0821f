"""The kernel's fallbacks for data its fast paths do not fit give the golden tables too.

The fast paths (one packed sort key for the window order, a dense (device, window) table for the
device context) fall back to ``lexsort`` and ``np.unique`` when the keys would overflow or the table
would be sparse; real data rarely gets there, so these tests force the fallbacks on the golden datasets.
"""

from __future__ import annotations

import json

import pytest

from mcp_training_dagster.serving import features
from mcp_training_dagster_tests.serving.test_features_golden import DATASETS, GOLDEN, SPECS, fingerprint

FALLBACKS = {
    "lexsort_order": ("PACKED_KEY_LIMIT", 0.0),
    "sparse_device_windows": ("DENSE_SLOTS_PER_ROW", -(10**12)),
    "integer_counts": ("EXACT_FLOAT_COUNT", 0),
}


@pytest.mark.parametrize("fallback", sorted(FALLBACKS))
@pytest.mark.parametrize("case", [f"{d}/{s}" for d in DATASETS for s in SPECS])
def test_fallback_gives_the_golden_table(case: str, fallback: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name, value = FALLBACKS[fallback]
    monkeypatch.setattr(features, name, value)
    data, spec = case.split("/")
    golden = json.loads(GOLDEN.read_text())[case]
    assert fingerprint(features.build_windows(DATASETS[data](), SPECS[spec])) == golden
