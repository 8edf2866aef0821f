"""The kernel's fallbacks for data its fast paths do not fit give the golden tables too.

The fast paths (one packed sort key for the window order, a dense (device, window) table for the
device context, the occurring (device, entity) pairs numbered for one radix sort, a byte table of the
interfaces present per row, key strings decoded from runs) fall back to ``lexsort``, ``np.unique``, two
radix passes and a take per row when the keys would overflow, a table would be sparse or runs are
short; real data rarely gets there, so these tests force the fallbacks (and each path of the key
strings) on the golden datasets.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.serving import features, record_flags, window_arrays
from mcp_training_dagster.serving.events import EVENT_TYPES
from mcp_training_dagster.serving.feature_catalog import (
    DEAUTH_EVENTS,
    FAILURE_EVENTS,
    JOIN_EVENTS,
    RADIO_FAULT_EVENTS,
    RESTART_EVENTS,
)
from mcp_training_dagster_tests.serving.test_features_golden import DATASETS, GOLDEN, SPECS, fingerprint

FALLBACKS = {
    "lexsort_order": (features, "PACKED_KEY_LIMIT", 0.0),
    "sparse_device_windows": (features, "DENSE_SLOTS_PER_ROW", -(10**12)),
    "integer_counts": (features, "EXACT_FLOAT_COUNT", 0),
    "distinct_interfaces_by_unique": (features, "PRESENCE_BYTES_PER_ROW", -1),
    "key_strings_by_take": (features, "RUNS_PER_ROW_LIMIT", 0.0),
    "key_strings_by_runs": (features, "RUNS_PER_ROW_LIMIT", 2.0),
    "two_pass_pair_sort": (window_arrays, "PAIR_TABLE_LIMIT", 0),
}


@pytest.mark.parametrize("fallback", sorted(FALLBACKS))
@pytest.mark.parametrize("case", [f"{d}/{s}" for d in DATASETS for s in SPECS])
def test_fallback_gives_the_golden_table(case: str, fallback: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module, name, value = FALLBACKS[fallback]
    monkeypatch.setattr(module, name, value)
    data, spec = case.split("/")
    golden = json.loads(GOLDEN.read_text())[case]
    assert fingerprint(features.build_windows(DATASETS[data](), SPECS[spec])) == golden


@pytest.mark.parametrize(
    ("n_primary", "n_secondary", "n"),
    [
        (3, 7, 50),
        (20, 4_000, 20_000),
        (300, 1_000, 200_000),
        (5, 70_000, 1_000),
        (5_000, 5_000, 1_000),
        (70_000, 70_000, 1_000),
    ],
)
def test_stable_order_is_a_stable_sort_by_both_keys(n_primary: int, n_secondary: int, n: int) -> None:
    """Every path of ``stable_order`` (one packed 16-bit key, numbered pairs, two radix passes, int64 key:
    from few possible pairs to more occurring pairs than 16 bits hold) sorts as ``lexsort`` does."""
    rng = np.random.default_rng(n)
    primary = rng.integers(0, n_primary, n).astype(np.int32)
    secondary = rng.integers(0, n_secondary, n).astype(np.int32)
    order = window_arrays.stable_order(primary, n_primary, secondary, n_secondary)
    np.testing.assert_array_equal(order, np.lexsort((secondary, primary)))


@pytest.mark.parametrize(
    "codes",
    [
        [0],
        [3],
        [0, 0, 1, 0, 2, 1, 3],  # numbered in first-appearance order already: returned as they are
        [0, 2, 1],  # a code more than one past every code before it
        [1, 0, 0, 2],
        [0, 1, 5, 5, 1, 0, 7],  # gaps: codes of strings absent here
        list(np.random.default_rng(3).integers(0, 50, 1_000)),
    ],
)
def test_first_appearance_numbers_codes_as_factorize_does(codes: list[int]) -> None:
    """Both paths of ``first_appearance`` (the renumbering, and codes already in that order) give the
    codes ``pd.factorize`` gives."""
    values = np.asarray(codes, dtype=np.int32)
    expected, _ = pd.factorize(values)
    np.testing.assert_array_equal(window_arrays.first_appearance(values), expected)


def test_locally_administered_reads_heads_as_int_does() -> None:
    """MAC heads of two ASCII hex digits are read by table lookup, anything else by ``int(mac[:2], 16)``;
    both give what ``int`` gives (a value it cannot read counts as not randomised)."""

    def by_int(mac: str) -> bool:
        try:
            return bool(int(mac[:2], 16) & 0x02)
        except ValueError:
            return False

    macs = ["da:a1", "30:d8", "02", "0f", "AE:00", "a", "", " 2", "+2", "-2", "1_", "zz", "x2", "0x", "١٢", "ｆｆ"]
    values = np.asarray(macs, dtype=object)
    assert features._locally_administered(values).tolist() == [by_int(m) for m in macs]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamp_unit_does_not_change_the_table(unit: str) -> None:
    """Microsecond timestamps (validation's) are scaled to nanoseconds by the kernel, other units cast by
    pandas: the same table either way."""
    records = DATASETS["samples"]()
    floored = records.assign(timestamp=records["timestamp"].dt.floor("s"))  # every unit holds these exactly
    assert floored["timestamp"].dtype == "datetime64[us]"
    other = floored.assign(timestamp=floored["timestamp"].astype(f"datetime64[{unit}]"))
    expected = features.build_windows(floored, SPECS["default"])
    assert len(expected)
    pd.testing.assert_frame_equal(features.build_windows(other, SPECS["default"]), expected, check_exact=True)


def test_event_bits_are_the_catalog_families() -> None:
    """One lookup per record gives every family the record flags ask about."""
    codes = np.arange(len(EVENT_TYPES), dtype=np.int16)
    bits = record_flags.event_bits(codes)
    for bit, names in (
        (record_flags.LEAVE, DEAUTH_EVENTS),
        (record_flags.JOIN, JOIN_EVENTS),
        (record_flags.FAIL, FAILURE_EVENTS),
        (record_flags.RESTART, RESTART_EVENTS),
        (record_flags.RADIO_FAULT, RADIO_FAULT_EVENTS),
    ):
        assert [EVENT_TYPES[c] for c in codes if bits[c] & bit] == [t for t in EVENT_TYPES if t in names]
