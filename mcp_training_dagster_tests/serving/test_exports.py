"""Reading export files: the real sample, ZIP containers, broken files and odd records."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mcp_training_dagster.serving.exports import (
    RAW_COLUMNS,
    RECORD_KEYS,
    ExportFileError,
    parse_export_bytes,
    read_export,
    sha256_file,
)
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19

CREATED_AT = "2025-06-27T09:38:14.611774"


def record(i: int, **overrides: Any) -> dict[str, Any]:
    """One record in the service's real shape (13 keys, in its order)."""
    rec = {
        "id": i,
        "device_id": 3,
        "device_ip": "RT-AX3000-4040-62971F1-C",
        "timestamp": "2025-06-27T09:16:56",
        "log_level": "info",
        "process_name": "hostapd",
        "message": "eth6: STA 30:d8:75:a2:e2:6a WPA: group key handshake completed (RSN)",
        "raw_message": "<30>Jun 27 09:16:56 RT-AX3000-4040-62971F1-C hostapd: eth6: STA 30:d8:75:a2:e2:6a "
        "WPA: group key handshake completed (RSN)\n",
        "structured_data": '{"priority": 30, "facility": 3, "severity_code": 6}',
        "pushed_to_ai": False,
        "pushed_at": None,
        "push_attempts": 0,
        "last_push_error": None,
    }
    rec.update(overrides)
    return rec


def export_doc(data: list[Any], total_records: int | None = None, fmt: str = "json") -> dict[str, Any]:
    return {
        "export_metadata": {
            "created_at": CREATED_AT,
            "total_records": len(data) if total_records is None else total_records,
            "format": fmt,
        },
        "data": data,
    }


def write_export(path: Path, data: list[Any], **kw: Any) -> Path:
    """Write an export exactly like the service: pretty-printed, UTF-8, non-ASCII kept."""
    path.write_text(json.dumps(export_doc(data, **kw), indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def expect_error(path: Path, *fragments: str) -> ExportFileError:
    with pytest.raises(ExportFileError) as info:
        read_export(path)
    err = info.value
    assert err.file == path.name
    assert str(err).startswith(f"{path.name}: ")
    for fragment in fragments:
        assert fragment.lower() in err.problem.lower(), (fragment, err.problem)
    return err


# --------------------------------------------------------------------------- the real file
@pytest.fixture(scope="module")
def real() -> Any:
    return read_export(HOSTAPD_1824)


def test_real_fixture_reads_all_records(real) -> None:
    assert len(real.records) == 1824
    assert list(real.records.columns) == list(RAW_COLUMNS)
    assert real.records["non_object"].isna().all()
    assert real.records["extra"].isna().all()


def test_real_fixture_facts(real) -> None:
    f = real.facts
    assert f.file_name == HOSTAPD_1824.name
    assert f.sha256 == hashlib.sha256(HOSTAPD_1824.read_bytes()).hexdigest()
    assert f.sha256 == sha256_file(HOSTAPD_1824)
    assert f.size_bytes == HOSTAPD_1824.stat().st_size
    assert f.container == "json"
    assert f.declared_format == "json"
    assert f.created_at == "2025-06-27T09:38:14.611774"
    assert f.claimed_records == f.actual_records == 1824
    assert not f.count_mismatch
    assert f.warnings == ()


def test_real_fixture_kept_in_file_order(real) -> None:
    doc = json.loads(HOSTAPD_1824.read_text(encoding="utf-8"))
    recs = real.records
    assert recs["record_index"].tolist() == list(range(1824))
    assert recs["id"].tolist() == [r["id"] for r in doc["data"]]
    assert recs["timestamp"].tolist() == [r["timestamp"] for r in doc["data"]]
    # newest first, as the service writes it: nothing re-sorted at read time
    assert recs["timestamp"].iloc[0] == "2025-06-27T09:16:56"
    assert recs["timestamp"].iloc[-1] == "2025-05-04T22:05:15"
    assert recs["timestamp"].is_monotonic_decreasing


def test_real_fixture_values_as_read(real) -> None:
    first = real.records.iloc[0]
    assert int(first["id"]) == 402462
    assert int(first["device_id"]) == 3
    assert first["device_ip"] == "RT-AX3000-4040-62971F1-C"
    assert first["log_level"] == "info"
    assert first["structured_data"] == '{"priority": 30, "facility": 3, "severity_code": 6}'
    assert bool(first["pushed_to_ai"]) is False
    assert pd.isna(first["pushed_at"])
    # homogeneous integer columns stay integers
    assert pd.api.types.is_integer_dtype(real.records["id"])


def test_read_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(SYSTEM_19.read_bytes())
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    read_export(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


# ------------------------------------------------------------------------------------ ZIP
def test_zip_with_data_json_reads_same_records(tmp_path: Path, real) -> None:
    path = tmp_path / "export_x.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.json", HOSTAPD_1824.read_bytes())
        zf.writestr("data.csv", "id,message\n1,broken, with comma\n")
    got = read_export(path)
    assert got.facts.container == "zip"
    assert got.facts.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert got.facts.size_bytes == path.stat().st_size
    assert got.facts.actual_records == 1824
    assert got.facts.created_at == real.facts.created_at
    pd.testing.assert_frame_equal(got.records, real.records)


def test_zip_data_json_in_a_folder_is_found(tmp_path: Path) -> None:
    path = tmp_path / "nested.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("export/data.json", json.dumps(export_doc([record(1), record(2)], fmt="zip")))
    got = read_export(path)
    assert got.facts.container == "zip"
    assert got.facts.declared_format == "zip"
    assert got.records["id"].tolist() == [1, 2]


def test_zip_without_data_json(tmp_path: Path) -> None:
    path = tmp_path / "only_csv.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data.csv", "id\n1\n")
    err = expect_error(path, "data.json")
    assert "data.csv" in err.problem  # lists what is there


def test_bad_zip(tmp_path: Path) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04" + b"\x00garbage" * 20)
    expect_error(path, "zip")


# ------------------------------------------------------------------------- broken files
@pytest.mark.parametrize(
    "content",
    [
        "this is not an export\n",
        "id,device_id,message\n1,3,eth6: STA 30:d8:75:a2:e2:6a associated\n",  # a CSV export named .json
        "<html><body>502 Bad Gateway</body></html>\n",
        '{"export_metadata": {}, "data": [1, 2,, 3]}\n',  # complete but broken
    ],
    ids=["text", "csv", "html", "broken-object"],
)
def test_not_json(tmp_path: Path, content: str) -> None:
    path = tmp_path / "notes.json"
    path.write_text(content, encoding="utf-8")
    err = expect_error(path, "not valid JSON")
    assert "truncated" not in err.problem  # not cut off: simply not JSON
    assert "line " in err.problem and "column " in err.problem


def test_truncated_real_file_cut_in_half(tmp_path: Path) -> None:
    payload = HOSTAPD_1824.read_bytes()
    path = tmp_path / "half.json"
    path.write_bytes(payload[: len(payload) // 2])
    expect_error(path, "truncated")


def test_cut_inside_a_string_says_where_the_string_starts(tmp_path: Path) -> None:
    payload = HOSTAPD_1824.read_bytes()
    cut = payload.index(b'"message": "', len(payload) // 2) + len(b'"message": "eth')
    path = tmp_path / "cut_in_message.json"
    path.write_bytes(payload[:cut])
    line = payload[:cut].count(b"\n") + 1
    err = expect_error(path, "truncated", f"Unterminated string starting at line {line} column")
    assert " at at " not in str(err)


def test_truncated_after_a_complete_record(tmp_path: Path) -> None:
    payload = HOSTAPD_1824.read_bytes()
    cut = payload.index(b"},", len(payload) // 2) + 2
    path = tmp_path / "cut.json"
    path.write_bytes(payload[:cut])
    expect_error(path, "truncated")


def test_top_level_list(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps([record(1)]), encoding="utf-8")
    expect_error(path, "top level", "object", "list")


def test_no_data_key(tmp_path: Path) -> None:
    path = tmp_path / "nodata.json"
    path.write_text(json.dumps({"export_metadata": {"total_records": 0}, "records": []}), encoding="utf-8")
    expect_error(path, "no 'data'")


def test_data_not_a_list(tmp_path: Path) -> None:
    path = tmp_path / "dict.json"
    path.write_text(json.dumps({"export_metadata": {}, "data": {"id": 1}}), encoding="utf-8")
    expect_error(path, "'data' must be a list", "dict")


def test_empty_data(tmp_path: Path) -> None:
    path = write_export(tmp_path / "empty_data.json", [])
    expect_error(path, "'data' is empty")


@pytest.mark.parametrize("content", [b"", b"   \n\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(content)
    expect_error(path, "empty")


def test_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    text = json.dumps(export_doc([record(1, message="Café ßtation")]), ensure_ascii=False)
    path.write_bytes(text.encode("latin-1"))
    expect_error(path, "UTF-8")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    expect_error(tmp_path / "gone.json", "not found")
    folder = tmp_path / "folder.json"
    folder.mkdir()
    expect_error(folder, "directory")


# ------------------------------------------------------------------------ odd but usable
def test_total_records_mismatch_is_a_warning(tmp_path: Path) -> None:
    path = write_export(tmp_path / "claims.json", [record(1), record(2)], total_records=5)
    got = read_export(path)
    assert got.facts.claimed_records == 5
    assert got.facts.actual_records == 2
    assert got.facts.count_mismatch is True
    assert any("5" in w and "2" in w for w in got.facts.warnings)
    assert len(got.records) == 2


def test_missing_metadata_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "bare.json"
    path.write_text(json.dumps({"data": [record(1)]}), encoding="utf-8")
    got = read_export(path)
    assert got.facts.claimed_records is None
    assert got.facts.created_at is None
    assert got.facts.count_mismatch is False
    assert any("export_metadata" in w for w in got.facts.warnings)


def test_unknown_record_keys_kept_in_extra(tmp_path: Path) -> None:
    path = write_export(tmp_path / "extra.json", [record(1, vendor="asus", rssi=-61), record(2)])
    got = read_export(path).records
    assert json.loads(got["extra"].iloc[0]) == {"vendor": "asus", "rssi": -61}
    assert pd.isna(got["extra"].iloc[1])
    assert "vendor" not in got.columns


def test_non_object_entries_kept_verbatim(tmp_path: Path) -> None:
    path = write_export(tmp_path / "junk.json", [record(1), "just a string", 42, None, [1, 2]])
    got = read_export(path).records
    assert len(got) == 5
    assert pd.isna(got["non_object"].iloc[0])
    assert [json.loads(v) for v in got["non_object"].iloc[1:]] == ["just a string", 42, None, [1, 2]]
    assert got["record_index"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "structured",
    [{"priority": 30, "facility": 3, "severity_code": 6}, {}, None],
    ids=["object", "empty-object", "null"],
)
def test_structured_data_variants_tolerated(tmp_path: Path, structured: Any) -> None:
    data = [record(1), record(2, structured_data=structured)]
    got = read_export(write_export(tmp_path / "sd.json", data)).records
    assert len(got) == 2
    value = got["structured_data"].iloc[1]
    if structured is None:
        assert pd.isna(value)
    else:
        assert json.loads(value) == structured
    assert json.loads(got["structured_data"].iloc[0]) == {"priority": 30, "facility": 3, "severity_code": 6}


def test_structured_data_all_objects(tmp_path: Path) -> None:
    data = [record(i, structured_data={"priority": 30, "facility": 3, "severity_code": 6}) for i in range(3)]
    got = read_export(write_export(tmp_path / "sd_obj.json", data)).records
    assert [json.loads(v)["facility"] for v in got["structured_data"]] == [3, 3, 3]


def test_device_id_int_or_string(tmp_path: Path) -> None:
    ints = read_export(write_export(tmp_path / "ints.json", [record(1, device_id=3), record(2, device_id=4)]))
    assert [int(v) for v in ints.records["device_id"]] == [3, 4]
    mixed = read_export(
        write_export(tmp_path / "mixed.json", [record(1, device_id=3), record(2, device_id="router-b")])
    )
    assert mixed.records["device_id"].tolist() == ["3", "router-b"]
    strings = read_export(write_export(tmp_path / "strs.json", [record(1, device_id="a"), record(2, device_id="b")]))
    assert strings.records["device_id"].tolist() == ["a", "b"]


def test_non_ascii_kept(tmp_path: Path) -> None:
    got = read_export(write_export(tmp_path / "utf8.json", [record(1, message="Gerät Küche: STA ✓")])).records
    assert got["message"].iloc[0] == "Gerät Küche: STA ✓"


def test_parse_bytes_matches_read(tmp_path: Path) -> None:
    path = write_export(tmp_path / "same.json", [record(1), record(2)])
    # the file's time is a fact of the file, not of its bytes: given, the two agree exactly
    a, b = read_export(path), parse_export_bytes(path.name, path.read_bytes(), file_mtime=path.stat().st_mtime)
    assert a.facts == b.facts
    pd.testing.assert_frame_equal(a.records, b.records)


def test_all_record_keys_present_as_columns(tmp_path: Path) -> None:
    partial = {"id": 1, "timestamp": "2025-06-27T09:16:56", "message": "x"}
    got = read_export(write_export(tmp_path / "partial.json", [partial])).records
    for key in RECORD_KEYS:
        assert key in got.columns
    assert pd.isna(got["device_id"].iloc[0])


# --------------------------------------------------------------------------- fast decoder == general path
def _dict_path(path: Path) -> pd.DataFrame:
    """The general path: the standard library's JSON, records as dicts (what any quirk falls back to)."""
    from mcp_training_dagster.serving.exports import records_to_frame

    return records_to_frame(json.loads(path.read_bytes())["data"])


QUIRKY = {
    "ints_and_text_device_ids": [record(1, device_id=7), record(2, device_id="GT-AX6000"), record(3, device_id=None)],
    "ids_beyond_64_bits": [record(2**70), record(10**30), record(-(2**64)), record(2**64), record(5)],
    "counters_beyond_64_bits": [record(1, push_attempts=2**70), record(2)],
    "structured_data_objects": [record(1, structured_data={"priority": 30}), record(2, structured_data=None)],
    "float_and_bool_ids": [record(1.5), record(True), record(3)],
    "keys_missing": [{"id": 1, "timestamp": "2025-06-27T09:16:56", "message": "x"}, record(2)],
    "all_null_column": [record(1, last_push_error=None), record(2, last_push_error=None)],
    "non_ascii_and_escapes": [record(1, message='Wi\u2011Fi \u00e9t\u00e9 "q" \\ \u0000'), record(2)],
    # columns typed by their values: all null -> text, some null -> nullable, a bool among ints -> JSON text
    "all_null_typed_columns": [record(i, device_id=None, pushed_to_ai=None, push_attempts=None) for i in (1, 2)],
    "some_null_typed_columns": [record(1, id=None, device_id=None), record(2, pushed_to_ai=None, push_attempts=None)],
    "bool_counter_and_int_flag": [record(1, push_attempts=True), record(2, pushed_to_ai=1), record(3)],
    "ids_at_the_64_bit_edges": [record(2**63 - 1), record(-(2**63)), record(2**63), record(2**64 - 1)],
    "text_fields_holding_numbers": [record(1, log_level=6, timestamp=1751015816, device_ip=None), record(2)],
    "astral_plane_text": [record(1, message="pair \U0001f600"), record(2)],
}


@pytest.mark.parametrize("case", sorted(QUIRKY))
def test_fast_decoder_gives_the_general_paths_table(tmp_path: Path, case: str) -> None:
    path = write_export(tmp_path / f"{case}.json", QUIRKY[case])
    pd.testing.assert_frame_equal(read_export(path).records, _dict_path(path), check_like=False)


@pytest.mark.parametrize("sample", [HOSTAPD_1824, SYSTEM_19])
def test_fast_decoder_gives_the_general_paths_table_on_real_exports(sample: Path) -> None:
    pd.testing.assert_frame_equal(read_export(sample).records, _dict_path(sample))


def test_without_msgspec_the_same_table(tmp_path: Path) -> None:
    """The serving copy may run without msgspec (it is optional there): same table through orjson/json."""
    import subprocess
    import sys

    out = tmp_path / "no_msgspec.parquet"
    code = (
        "import sys; sys.modules['msgspec'] = None\n"  # import msgspec now raises ImportError
        "from mcp_training_dagster.serving import exports\n"
        "assert exports.msgspec is None\n"
        f"exports.read_export({str(HOSTAPD_1824)!r}).records.to_parquet({str(out)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_parquet(out), read_export(HOSTAPD_1824).records)


def test_lone_surrogate_escapes_are_kept_as_their_text_with_a_warning(tmp_path: Path) -> None:
    """JSON may escape a lone UTF-16 surrogate ("\\ud800"); Unicode, Arrow and Parquet have no such character.
    The file is read (not a traceback), each such value kept as the escape's six characters, and the file's
    warnings say how many; a real pair (an emoji) is untouched."""
    from mcp_training_dagster.serving.validation import validate_records

    data = [
        record(1, message="bad \ud800 x", device_ip="\udfff"),
        record(2, vendor="\ud83d"),
        "not a record \udc00",
        record(3, message="ok \U0001f600"),
    ]
    path = tmp_path / "surrogates.json"
    path.write_text(json.dumps(export_doc(data), indent=2))  # ASCII JSON with \\uXXXX escapes, as a service may write
    got = read_export(path)
    rec = got.records
    assert rec["message"].tolist()[0] == "bad \\ud800 x"
    assert rec["device_ip"].iloc[0] == "\\udfff"
    assert rec["extra"].iloc[1] == '{"vendor": "\\ud83d"}'
    assert rec["non_object"].iloc[2] == '"not a record \\udc00"'
    assert rec["message"].iloc[3] == "ok \U0001f600"
    assert any("4 text value(s) held a lone UTF-16 surrogate" in w for w in got.facts.warnings)
    rec.to_parquet(tmp_path / "raw.parquet")  # storable
    result = validate_records(rec, path.name)
    assert result.report.quarantine_by_reason == {"not_an_object": 1}
    assert result.records["message"].tolist() == ["bad \\ud800 x", record(2)["message"], "ok \U0001f600"]
