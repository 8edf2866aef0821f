"""Content fingerprints: ``row_hashes`` must stay pandas' row hash bit for bit, or every stored windows table's
data version (and every model's input fingerprint) would change under an unchanged input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.domain.report import frame_fingerprint, row_hashes
from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.features import build_windows
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, shifted_routers


def _mixed(n: int = 10_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    floats = rng.random((n, 5)).astype(np.float32)
    floats[::7, 1] = np.nan
    floats[3, 3] = -np.float32("nan")  # another NaN bit pattern: hashed as the canonical one
    floats[::5, 2] = -0.0  # hashed as 0.0
    frame = pd.DataFrame(np.asfortranarray(floats), columns=list("abcde"))  # one column-major block, as windows
    frame["text"] = pd.array(rng.choice(["x", "y", None], n), dtype="str")
    frame["f64"] = rng.random(n)
    frame.loc[::3, "f64"] = -0.0
    frame["ints"] = rng.integers(0, 5, n)
    frame["time"] = pd.to_datetime(rng.integers(0, 10**9, n), unit="s")
    frame["cat"] = pd.Categorical(rng.choice(["p", "q"], n))
    frame["after"] = rng.random(n).astype(np.float32)
    frame["nullable"] = pd.array(rng.random(n), dtype="Float32")
    frame["flag"] = rng.random(n) > 0.5
    frame["objects"] = rng.choice(["u", "v"], n).astype(object)
    return frame


@pytest.mark.parametrize(
    "part",
    [
        lambda f: f,
        lambda f: f.iloc[:0],
        lambda f: f[[]],
        lambda f: f.iloc[:, :5],
        lambda f: f.iloc[5:4_200],  # rows across a slab boundary, a view
        lambda f: f[["f64", "a", "after", "b"]],  # float columns of two dtypes, not one block
    ],
    ids=["every-dtype", "no-rows", "no-columns", "float-block", "row-slice", "mixed-float-dtypes"],
)
def test_row_hashes_are_pandas_row_hashes_bit_for_bit(part) -> None:
    frame = part(_mixed())
    expected = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    got = row_hashes(frame)
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, expected)


def test_windows_fingerprint_unchanged_by_the_faster_hash() -> None:
    """On real windows (a real export's records as three routers): the same hashes, and a changed count shows."""
    records = validate_records(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name).records
    windows = build_windows(shifted_routers(records))
    assert len(windows) > 100
    h = pd.util.hash_pandas_object(windows, index=False).to_numpy()
    np.testing.assert_array_equal(row_hashes(windows), h)
    changed = windows.copy()
    changed.iloc[len(changed) // 2, changed.columns.get_loc("n_records")] += 1
    assert frame_fingerprint(changed) != frame_fingerprint(windows)
