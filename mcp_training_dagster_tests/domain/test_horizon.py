"""The training fan-in: union of exports (each event once) and the horizon cut, read column-wise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.domain.horizon import frame_readers, horizon_filter, select_records, union_records
from mcp_training_dagster.serving.validation import check_schema, validate_records
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35, shifted_routers


def validated(path) -> pd.DataFrame:
    return validate_records(read_export(path).records, path.name).records


# ----------------------------------------------------------------------- union/horizon
def test_union_counts_identical_events_once() -> None:
    big, small = validated(SYSTEM_35), validated(SYSTEM_19)
    assert set(small["id"]) <= set(big["id"])  # the 19 are copies of 19 of the 35
    union, report = union_records({SYSTEM_35.name: big, SYSTEM_19.name: small})
    assert len(union) == 35
    assert report.identical == 19 and report.id_conflicts == 0
    assert union["id"].is_unique
    assert set(union["id"]) == set(big["id"])
    assert check_schema(union) == []
    per_file = report.by_file.set_index("source_file")
    assert per_file["records"].to_dict() == {SYSTEM_19.name: 19, SYSTEM_35.name: 35}
    assert per_file["identical_copies_dropped"].sum() == 19 and per_file["kept"].sum() == 35
    again, report_again = union_records({SYSTEM_19.name: small, SYSTEM_35.name: big})
    pd.testing.assert_frame_equal(again, union)
    assert report_again.identical == report.identical


def test_union_keeps_records_that_only_reuse_an_id() -> None:
    """Ids are unique only within one log database: another router's export numbered from 1 is not a copy."""
    a = validated(HOSTAPD_1824)
    other = a.copy()
    other["device"] = "77"
    other["timestamp"] = other["timestamp"] + pd.Timedelta(days=60)
    other["source_file"] = "export_other_router.json"
    for names in (("a.json", "export_other_router.json"), ("z.json", "export_other_router.json")):
        union, report = union_records({names[0]: a.assign(source_file=names[0]), names[1]: other})
        assert len(union) == 2 * len(a)  # nothing dropped, whichever name sorts first
        assert report.identical == 0 and report.id_conflicts == 2 * len(a)
        assert (union["device"] == "77").sum() == len(a)
        assert any("reuse an id" in line and "export_other_router.json" in line for line in report.lines())


def test_union_of_disjoint_files_keeps_everything() -> None:
    a, b = validated(HOSTAPD_1824), validated(SYSTEM_35)
    union, report = union_records({"a.json": a, "b.json": b})
    assert report.identical == 0
    assert len(union) == len(a) + len(b)
    assert check_schema(union) == []


def test_union_of_nothing() -> None:
    union, report = union_records({})
    assert union.empty and report.identical == 0
    union, report = union_records({"a.json": validated(SYSTEM_19).iloc[:0]})
    assert union.empty and report.identical == 0


def test_horizon_measured_from_newest_record() -> None:
    recs = validated(HOSTAPD_1824)  # 2025-05-04 .. 2025-06-27: far in the past of "today"
    kept, cutoff = horizon_filter(recs, 7)
    newest = recs["timestamp"].max()
    assert cutoff == newest - pd.Timedelta(days=7)
    assert len(kept) > 0
    assert kept["timestamp"].max() == newest
    assert (kept["timestamp"] > cutoff).all()
    assert len(kept) == int((recs["timestamp"] > cutoff).sum())
    everything, _ = horizon_filter(recs, 365)
    assert len(everything) == len(recs)


def test_horizon_on_empty() -> None:
    empty = validated(SYSTEM_19).iloc[:0]
    kept, cutoff = horizon_filter(empty, 30)
    assert kept.empty and cutoff is None


def test_select_records_is_union_then_horizon_read_column_wise() -> None:
    """Same table as union + horizon cut on whole tables; full rows are read only for the chosen records."""
    a, b, c = validated(HOSTAPD_1824), validated(SYSTEM_35), validated(SYSTEM_19)
    frames = {"a.json": a, "b.json": b, "c.json": c}
    expected, cutoff = horizon_filter(union_records(frames)[0], 20)
    asked: list[tuple[str, Sequence[str] | None, int]] = []

    def spy(name: str, inner):
        def read(columns):
            out = inner(columns)
            asked.append((name, None if columns is None else tuple(columns), len(out)))
            return out

        return read

    readers = {k: spy(k, r) for k, r in frame_readers(frames).items()}
    got = select_records(readers, 20)
    pd.testing.assert_frame_equal(got.records, expected.reset_index(drop=True))
    assert got.cutoff == cutoff and got.distinct == 35 + len(a)
    assert got.exports == sorted(expected["source_file"].unique())
    assert {cols for _, cols, _ in asked} <= {
        ("id", "timestamp", "source_file"),
        None,
        ("id", "timestamp", "device", "process_name", "message"),
    }
    whole = [name for name, cols, _ in asked if cols is None]
    assert len(whole) == len(set(whole)) == len(got.exports)  # whole rows once per export that keeps something
    narrow = select_records(frame_readers(frames), 20, columns=["timestamp", "device"])
    pd.testing.assert_frame_equal(narrow.records, expected.loc[:, ["timestamp", "device"]].reset_index(drop=True))


def test_select_records_keeps_first_copy_in_export_order() -> None:
    big = validated(SYSTEM_35)
    copy = big.assign(source_file="z.json")
    got = select_records(frame_readers({"a.json": big.assign(source_file="a.json"), "z.json": copy}), None)
    assert len(got.records) == 35 and set(got.records["source_file"]) == {"a.json"}
    assert got.union.by_file.set_index("source_file")["identical_copies_dropped"].to_dict() == {
        "a.json": 0,
        "z.json": 35,
    }
    assert np.all(np.diff(got.records["timestamp"].to_numpy().astype(np.int64)) >= 0)


def test_device_chunks_keep_devices_whole_and_windows_equal() -> None:
    from mcp_training_dagster.serving.features import build_windows
    from mcp_training_dagster.domain.horizon import device_chunks

    recs = validated(HOSTAPD_1824)
    recs = pd.concat([recs, recs.assign(device="other", id=recs["id"] + 10_000)], ignore_index=True)
    chunks = device_chunks(recs["device"], max_records=len(recs) // 2)
    assert len(chunks) == 2 and sorted(np.concatenate(chunks).tolist()) == list(range(len(recs)))
    assert all(recs["device"].iloc[c].nunique() == 1 for c in chunks)
    whole = build_windows(recs)
    parts = pd.concat([build_windows(recs.iloc[c]) for c in chunks], ignore_index=True)
    key = ["entity_kind", "device", "entity", "window_start"]
    pd.testing.assert_frame_equal(parts.sort_values(key, ignore_index=True), whole.sort_values(key, ignore_index=True))
    assert len(device_chunks(recs["device"], max_records=10)) == 2  # a device larger than the cap is one chunk


def _three_routers() -> pd.DataFrame:
    recs = validated(HOSTAPD_1824)
    return pd.concat(
        [recs.assign(device=f"router-{k}", id=recs["id"] + 10_000 * k) for k in range(3)], ignore_index=True
    )


def test_windows_by_chunk_same_in_workers_as_in_process(tmp_path) -> None:
    """Chunks windowed in two spawned worker processes give the same counts, samples and spilled windows as in
    this process, and together exactly build_windows of the whole table."""
    import pyarrow.feather as feather

    from mcp_training_dagster.serving.features import WindowSpec, build_windows
    from mcp_training_dagster.domain.horizon import windows_by_chunk

    recs = _three_routers()
    spec = WindowSpec()
    runs = {}
    for mode, workers in (("here", 1), ("workers", 2)):
        folder = tmp_path / mode
        folder.mkdir()
        runs[mode] = windows_by_chunk(
            recs,
            spec,
            max_records=len(recs) // 3,
            share=0.3,
            seed=7,
            folder=str(folder),
            workers=workers,
            parallel_min_records=0,
        )
    here, there = runs["here"], runs["workers"]
    assert [c.chunk for c in here] == [c.chunk for c in there] == [0, 1, 2]
    assert [c.records for c in here] == [c.records for c in there] and sum(c.records for c in here) == len(recs)
    for a, b in zip(here, there, strict=True):
        assert a.windows == b.windows and 0 < len(a.sample) < a.windows
        pd.testing.assert_frame_equal(a.sample, b.sample)
        assert a.path is not None and b.path is not None and a.path != b.path
        pd.testing.assert_frame_equal(feather.read_feather(a.path), feather.read_feather(b.path))
        pd.testing.assert_frame_equal(a.sample, feather.read_feather(a.path).iloc[a.sample.index])
    whole = build_windows(recs, spec)
    parts = pd.concat([feather.read_feather(c.path) for c in here], ignore_index=True)
    key = ["entity_kind", "device", "entity", "window_start"]
    pd.testing.assert_frame_equal(parts.sort_values(key, ignore_index=True), whole.sort_values(key, ignore_index=True))


def test_windows_by_chunk_small_input_stays_in_process_and_unwritten() -> None:
    from mcp_training_dagster.serving.features import WindowSpec, build_windows
    from mcp_training_dagster.domain.horizon import windows_by_chunk

    recs = _three_routers()
    chunks = windows_by_chunk(recs, WindowSpec(), max_records=10**9, workers=2)  # far below the threshold
    assert len(chunks) == 1 and chunks[0].path is None
    pd.testing.assert_frame_equal(chunks[0].sample, build_windows(recs, WindowSpec()))  # share 1: every window
    assert windows_by_chunk(recs.iloc[:0], WindowSpec(), max_records=10) == []


def test_shared_ids_as_duplicated_for_dense_and_sparse_ids() -> None:
    from mcp_training_dagster.domain.horizon import _shared_ids

    rng = np.random.default_rng(3)
    for ids in (
        rng.integers(-50, 500, 2_000),  # dense, negative included: counted by bincount
        rng.integers(0, 2**62, 500).repeat(2)[rng.permutation(1_000)],  # sparse: hashed
        np.array([2**62, -(2**62), 2**62]),
        np.array([], dtype=np.int64),
    ):
        ids = ids.astype(np.int64)
        np.testing.assert_array_equal(_shared_ids(ids), pd.Series(ids).duplicated(keep=False).to_numpy())


def test_write_horizon_records_reads_back_as_select_records(tmp_path, monkeypatch) -> None:
    """The asset's file, written a row group at a time from Parquet partitions (the IO manager's lazy readers), is
    exactly select_records' table: several exports (rows gathered then permuted), one export (rows as stored),
    readers without a shared schema (whole tables), no records."""
    import pyarrow.parquet as pq
    from upath import UPath

    from mcp_training_dagster.domain import horizon
    from mcp_training_dagster.io_managers import ParquetReader

    monkeypatch.setattr(horizon, "BLOCK_ROWS", 700)  # several row groups, the last one short
    frames = {"a.json": validated(HOSTAPD_1824), "b.json": validated(SYSTEM_35), "c.json": validated(SYSTEM_19)}
    frames["d.json"] = shifted_routers(frames["a.json"]).assign(source_file="d.json")
    parquet = {}
    for name, frame in frames.items():
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
        parquet[name] = ParquetReader(UPath(tmp_path / f"{name}.parquet"))
    cases = {
        "several": (parquet, 20),
        "one": ({"a.json": parquet["a.json"]}, None),
        "no-schema": ({k: (lambda cols, r=r: r(cols)) for k, r in parquet.items()}, 20),
        "empty": ({"a.json": FrameReaderOf(frames["a.json"].iloc[:0])}, 20),
    }
    for case, (readers, days) in cases.items():
        path = tmp_path / f"{case}.parquet"
        written = horizon.write_horizon_records(readers, days, str(path))
        expected = select_records(readers, days)
        back = pd.read_parquet(path)
        pd.testing.assert_frame_equal(back, expected.records, obj=case)
        assert written.rows == len(expected.records)
        assert (written.distinct, written.cutoff, written.exports) == (
            expected.distinct,
            expected.cutoff,
            expected.exports,
        )
        pd.testing.assert_frame_equal(written.union.by_file, expected.union.by_file)
        groups = pq.ParquetFile(path).metadata.num_row_groups
        assert groups == max(1, -(-len(back) // 700)), case
    assert len(pd.read_parquet(tmp_path / "several.parquet")) > 3 * 700


class FrameReaderOf:
    """A reader of an empty table that has its columns (what an export without records gives)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def __call__(self, columns):
        return self.frame if columns is None else self.frame.loc[:, list(columns)]
