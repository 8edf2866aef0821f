"""The project's IO managers, exercised through Dagster (dg.materialize) on tiny assets in tmp."""

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler
from upath import UPath

import dagster as dg
from mcp_training_dagster.io_managers import (
    JoblibIOManager,
    JsonIOManager,
    ParquetIOManager,
    StagedParquet,
    atomic_write_bytes,
)
from mcp_training_dagster_tests.defs.conftest import materializations


def _resources(base: Path) -> dict:
    return {
        "io_manager": ParquetIOManager(base_path=str(base)),
        "model_io_manager": JoblibIOManager(base_path=str(base)),
        "json_io_manager": JsonIOManager(base_path=str(base)),
    }


def _no_temp_leftovers(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if ".tmp-" in p.name]
    assert not leftovers, leftovers


# ------------------------------------------------------------------------------- round trips
TABLE = pd.DataFrame(
    {
        "id": pd.array([3, 1, 2], dtype="int64"),
        "message": ["a", "b", None],
        "timestamp": pd.to_datetime(["2025-06-01 10:00", "2025-06-01 10:05", "2025-06-02 00:00"]).astype(
            "datetime64[us]"
        ),
        "level": pd.Categorical(["info", "error", "info"], categories=["error", "info", "debug"]),
        "severity": pd.array([6, 3, 6], dtype="int8"),
    }
)


@dg.asset
def table() -> pd.DataFrame:
    return TABLE


@dg.asset(io_manager_key="model_io_manager")
def fitted() -> StandardScaler:
    return StandardScaler().fit([[1.0, 10.0], [3.0, 30.0]])


@dg.asset(io_manager_key="json_io_manager")
def document() -> dict:
    return {"version": "v1", "threshold": 0.25, "files": ["a.json", "b.json"], "nested": {"ok": True}}


@dg.asset(io_manager_key="json_io_manager")
def reader(table: pd.DataFrame, fitted: StandardScaler, document: dict) -> dict:
    """Loads all three through their IO managers and reports what it got."""
    pd.testing.assert_frame_equal(table, TABLE)
    return {
        "rows": len(table),
        "dtypes": {c: str(t) for c, t in table.dtypes.items()},
        "mean": [float(x) for x in fitted.mean_],
        "document": document,
    }


def test_round_trip_parquet_joblib_json(tmp_path):
    base = tmp_path / "assets"
    result = dg.materialize([table, fitted, document, reader], resources=_resources(base))
    assert result.success

    # Where each object lives, by asset key and IO manager extension.
    assert (base / "table.parquet").is_file()
    assert (base / "fitted.joblib").is_file()
    assert (base / "document.json").is_file()
    assert (base / "reader.json").is_file()
    _no_temp_leftovers(base)

    got = json.loads((base / "reader.json").read_text())
    assert got["rows"] == 3
    assert got["dtypes"]["level"] == "category"
    assert got["dtypes"]["severity"] == "int8"
    assert got["dtypes"]["timestamp"].startswith("datetime64")
    assert got["mean"] == [2.0, 20.0]
    assert got["document"] == json.loads((base / "document.json").read_text())
    assert got["document"]["nested"] == {"ok": True}

    # The Parquet file is plain Parquet any tool can read; metadata describes it.
    pd.testing.assert_frame_equal(pd.read_parquet(base / "table.parquet"), TABLE)
    mat = materializations(result, "table")[0]
    assert mat.metadata["dagster/row_count"].value == 3
    assert {c.name for c in mat.metadata["dagster/column_schema"].value.columns} == set(TABLE.columns)


def test_rematerialising_replaces_the_file(tmp_path):
    base = tmp_path / "assets"
    calls = []

    @dg.asset(io_manager_key="json_io_manager")
    def counter() -> dict:
        calls.append(1)
        return {"n": len(calls)}

    for expected in (1, 2):
        assert dg.materialize([counter], resources=_resources(base)).success
        assert json.loads((base / "counter.json").read_text()) == {"n": expected}
    assert sorted(p.name for p in base.iterdir()) == ["counter.json"]


def test_parquet_manager_refuses_non_tables(tmp_path):
    @dg.asset
    def not_a_table() -> dict:
        return {"a": 1}

    result = dg.materialize([not_a_table], resources=_resources(tmp_path), raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    text = failure.step_failure_data.error.to_string()  # includes the cause chain
    assert "not_a_table: Parquet IO manager expects a DataFrame" in text, text
    assert not (tmp_path / "not_a_table.parquet").exists()
    _no_temp_leftovers(tmp_path)


# ------------------------------------------------------------------- fan-in from dynamic partitions
parts = dg.DynamicPartitionsDefinition(name="io_test_files")


@dg.asset(partitions_def=parts)
def per_file(context: dg.AssetExecutionContext) -> pd.DataFrame:
    n = {"a.json": 1, "b.json": 2}.get(context.partition_key, 3)
    return pd.DataFrame({"file": [context.partition_key] * n, "i": range(n)})


@dg.asset(partitions_def=parts)
def per_file_copy(per_file: pd.DataFrame) -> pd.DataFrame:
    """Same partitioning: gets its own partition as a bare DataFrame, not a mapping."""
    assert isinstance(per_file, pd.DataFrame)
    return per_file


@dg.asset(io_manager_key="json_io_manager")
def all_files(per_file) -> dict:
    return {
        "type": type(per_file).__name__,
        "rows": {k: len(v) for k, v in per_file.items()} if isinstance(per_file, dict) else None,
    }


def test_fan_in_returns_a_mapping_and_skips_unmaterialised(tmp_path):
    base = tmp_path / "assets"
    res = _resources(base)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(parts.name, ["a.json"])
        assert dg.materialize(
            [per_file, per_file_copy], partition_key="a.json", instance=instance, resources=res
        ).success
        assert (base / "per_file" / "a.json.parquet").is_file()
        assert (base / "per_file_copy" / "a.json.parquet").is_file()

        def fan_in() -> dict:
            result = dg.materialize([per_file, all_files], selection=[all_files], instance=instance, resources=res)
            assert result.success
            return result.output_for_node("all_files")

        # Exactly ONE partition: still a mapping (Dagster alone would hand over the bare DataFrame).
        assert fan_in() == {"type": "dict", "rows": {"a.json": 1}}

        # A registered partition that was never materialised (e.g. its file failed) is skipped.
        instance.add_dynamic_partitions(parts.name, ["never.json"])
        assert fan_in() == {"type": "dict", "rows": {"a.json": 1}}

        instance.add_dynamic_partitions(parts.name, ["b.json"])
        assert dg.materialize([per_file], partition_key="b.json", instance=instance, resources=res).success
        assert fan_in() == {"type": "dict", "rows": {"a.json": 1, "b.json": 2}}
        assert json.loads((base / "all_files.json").read_text())["rows"] == {"a.json": 1, "b.json": 2}
    _no_temp_leftovers(base)


def test_fan_in_with_no_partitions_yet_is_an_empty_mapping(tmp_path):
    """Before any file is registered the downstream gets {} (Dagster alone hands over None)."""
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [per_file, all_files], selection=[all_files], instance=instance, resources=_resources(tmp_path)
        )
        assert result.success
        assert result.output_for_node("all_files") == {"type": "dict", "rows": {}}


# ---------------------------------------------------------------------------------- atomic writes
class Boom(RuntimeError):
    pass


def _failing_writer(fh) -> None:
    fh.write(b"half of a file" * 1000)
    raise Boom("disk full, say")


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = UPath(tmp_path / "model.joblib")
    with pytest.raises(Boom):
        atomic_write_bytes(target, _failing_writer)
    assert not (tmp_path / "model.joblib").exists()
    assert list(tmp_path.iterdir()) == [], "no temporary file left behind"


def test_atomic_write_keeps_the_old_file_when_an_overwrite_fails(tmp_path):
    target = UPath(tmp_path / "table.parquet")
    atomic_write_bytes(target, lambda fh: fh.write(b"good content"))
    assert (tmp_path / "table.parquet").read_bytes() == b"good content"
    with pytest.raises(Boom):
        atomic_write_bytes(target, _failing_writer)
    assert (tmp_path / "table.parquet").read_bytes() == b"good content"
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_atomic_write_replaces_on_success(tmp_path):
    target = UPath(tmp_path / "doc.json")
    atomic_write_bytes(target, lambda fh: fh.write(b"v1"))
    atomic_write_bytes(target, lambda fh: fh.write(b"v2"))
    assert (tmp_path / "doc.json").read_bytes() == b"v2"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


# ------------------------------------------------------------------------------- staged tables, row groups
STAGED_FOLDERS: list[str] = []


@dg.asset
def chunked() -> StagedParquet:
    """A table written chunk by chunk (two row groups, a footer entry), handed to the IO manager as a file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    staged = StagedParquet()
    STAGED_FOLDERS.append(staged.folder)
    part = pa.Table.from_pandas(TABLE, preserve_index=False)
    with pq.ParquetWriter(staged.path, part.schema) as writer:
        writer.write_table(part)
        writer.write_table(part.slice(0, 2))
        writer.add_key_value_metadata({b"note": b"two chunks"})
    return staged


@dg.asset(ins={"chunked": dg.AssetIn(metadata={"lazy": True})}, io_manager_key="json_io_manager")
def chunk_reader(chunked) -> dict:
    return {
        "rows": chunked.row_group_rows,
        "note": chunked.key_value_metadata[b"note"].decode(),
        "second": chunked.row_group(1, ["id"])["id"].tolist(),
        "all": len(chunked(["id"])),
    }


def test_a_staged_table_is_published_as_written_and_read_by_row_group(tmp_path):
    base = tmp_path / "assets"
    result = dg.materialize([chunked, chunk_reader], resources=_resources(base))
    assert result.success
    got = json.loads((base / "chunk_reader.json").read_text())
    assert got == {"rows": [3, 2], "note": "two chunks", "second": [3, 1], "all": 5}
    pd.testing.assert_frame_equal(pd.read_parquet(base / "chunked.parquet").iloc[:3], TABLE)
    assert STAGED_FOLDERS and not Path(STAGED_FOLDERS[-1]).exists()  # the staged copy is gone
    _no_temp_leftovers(base)
    mat = materializations(result, "chunked")[0]
    assert mat.metadata["dagster/row_count"].value == 5
    assert {c.name for c in mat.metadata["dagster/column_schema"].value.columns} == set(TABLE.columns)


def test_staged_tables_are_removed_when_a_partition_before_them_fails_to_write(tmp_path):
    """A run over two partitions whose first value cannot be written: the run fails, and the second's staged
    table, which the manager never reached, does not stay behind in the temp folder."""
    staged_folders: list[str] = []

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b"]))
    def two_files(context: dg.AssetExecutionContext) -> dict:
        first, second = sorted(context.partition_keys)  # the order the manager writes them in
        staged = StagedParquet()
        TABLE.to_parquet(staged.path, index=False)
        staged_folders.append(staged.folder)
        return {first: "not a table", second: staged}

    result = dg.materialize(
        [two_files],
        resources=_resources(tmp_path / "assets"),
        tags={"dagster/asset_partition_range_start": "a", "dagster/asset_partition_range_end": "b"},
        raise_on_error=False,
    )
    assert not result.success
    assert "expects a DataFrame" in str(result.get_step_failure_events()[0].event_specific_data.error)
    assert staged_folders and not Path(staged_folders[0]).exists()
    assert not list((tmp_path / "assets").rglob("*.parquet"))
