"""The training windows' stored table: written chunk by chunk of whole routers, it is build_windows' table row for
row once put back in order, and the footer holds that table's fingerprint."""

from __future__ import annotations

import pandas as pd

from mcp_training_dagster.domain.horizon import union_records
from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_35, shifted_routers


def validated(path) -> pd.DataFrame:
    return validate_records(read_export(path).records, path.name).records


def _three_routers() -> pd.DataFrame:
    recs = validated(HOSTAPD_1824)
    return pd.concat(
        [recs.assign(device=f"router-{k}", id=recs["id"] + 10_000 * k) for k in range(3)], ignore_index=True
    )


def _shifted_routers() -> pd.DataFrame:
    return shifted_routers(validated(HOSTAPD_1824))


def test_training_windows_file_is_build_windows_in_row_groups(tmp_path) -> None:
    """One row group per device chunk; the rows, put back in order by the stored order column, are exactly
    build_windows of the whole table (values, dtypes, order), and the footer's fingerprint is its fingerprint."""
    import pyarrow.parquet as pq

    from mcp_training_dagster.domain.stored_windows import (
        FINGERPRINT_KEY,
        ORDER_COLUMN,
        global_order,
        write_training_windows,
    )
    from mcp_training_dagster.domain.report import frame_fingerprint
    from mcp_training_dagster.serving.features import WindowSpec, build_windows

    for recs, spec in (
        (_shifted_routers(), WindowSpec()),
        (_three_routers(), WindowSpec()),
        (_shifted_routers(), WindowSpec(entities=("station", "interface"))),
    ):
        whole = build_windows(recs, spec)
        path = tmp_path / "windows.parquet"
        report = write_training_windows(recs, spec, str(path), max_records=len(recs) // 3)
        meta = pq.ParquetFile(path).metadata
        assert report.chunks == meta.num_row_groups == 3
        stored = pd.read_parquet(path)
        order = global_order(stored[ORDER_COLUMN].to_numpy(), stored["window_start"].to_numpy())
        back = stored.drop(columns=[ORDER_COLUMN]).iloc[order].reset_index(drop=True)
        pd.testing.assert_frame_equal(back, whole)
        assert report.fingerprint == frame_fingerprint(whole) == meta.metadata[FINGERPRINT_KEY].decode()
        assert report.windows == len(whole) and report.records == len(recs) and report.bad_rows == 0
        assert report.by_kind == {str(k): int(v) for k, v in whole["entity_kind"].value_counts().items()}
        assert (report.first_window, report.last_window) == (whole["window_start"].min(), whole["window_start"].max())
    empty = write_training_windows(recs.iloc[:0], WindowSpec(), str(tmp_path / "empty.parquet"))
    assert (empty.windows, empty.chunks) == (0, 0)
    assert list(pd.read_parquet(tmp_path / "empty.parquet").columns) == [
        *build_windows(recs.iloc[:0]).columns,
        ORDER_COLUMN,
    ]


def test_windows_in_chunks_is_build_windows() -> None:
    """The evaluation set's windows of a long held-out period, windowed chunk by chunk of whole routers (sharing
    station MACs, the system log's unkeyed records among them), are build_windows' table, row for row."""
    from mcp_training_dagster.domain.stored_windows import windows_in_chunks
    from mcp_training_dagster.serving.features import WindowSpec, build_windows

    records = shifted_routers(union_records({p.name: validated(p) for p in (HOSTAPD_1824, SYSTEM_35)})[0])
    spec = WindowSpec()
    whole = build_windows(records, spec)
    for max_records in (len(records) // 3, len(records)):
        pd.testing.assert_frame_equal(windows_in_chunks(records, spec, max_records=max_records), whole)
        # the later windows only, each chunk's others dropped as it comes: the same rows in the same order
        since = whole["window_start"].quantile(0.7)
        later = whole[whole["window_start"] >= since].reset_index(drop=True)
        pd.testing.assert_frame_equal(windows_in_chunks(records, spec, max_records=max_records, since=since), later)
