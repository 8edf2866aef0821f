"""The landing area on a real S3-compatible server (moto on 127.0.0.1): the sensor's scan by ETag,
stability, temporary names, budgets, and the run's read straight from the object store."""

from __future__ import annotations

import hashlib

import fsspec
import pytest

from mcp_training_dagster.serving.exports import ExportFileError
from mcp_training_dagster.domain.object_landing import (
    ObjectScanResult,
    is_remote,
    read_landed_export,
    scan_object_landing,
)
from mcp_training_dagster_tests.conftest import SYSTEM_19, SYSTEM_35

pytestmark = pytest.mark.distributed


class Ticker:
    def __init__(self, url: str, **kw) -> None:
        self.url, self.kw, self.cursor = url, kw, None

    def tick(self) -> ObjectScanResult:
        result = scan_object_landing(self.url, self.cursor, **self.kw)
        self.cursor = result.cursor()
        return result


@pytest.fixture
def landing_url(s3_env) -> str:
    return f"s3://{s3_env.new_bucket()}/fleet/exports"


def put(url: str, name: str, data: bytes) -> None:
    fsspec.filesystem("s3").pipe_file(f"{url}/{name}", data)


def test_is_remote() -> None:
    assert is_remote("s3://b/p") and is_remote("gs://b")
    assert not is_remote("/srv/exports") and not is_remote("file:///srv/exports") and not is_remote("data/exports")


def test_new_object_waits_one_tick_then_is_ready_once_by_etag(landing_url: str) -> None:
    data = SYSTEM_19.read_bytes()
    put(landing_url, SYSTEM_19.name, data)
    t = Ticker(landing_url)
    first = t.tick()
    assert first.waiting == [SYSTEM_19.name] and first.ready == []
    second = t.tick()
    assert [(r.name, r.size) for r in second.ready] == [(SYSTEM_19.name, len(data))]
    assert second.ready[0].etag == hashlib.md5(data).hexdigest()  # single-part PUT: the content's MD5
    third = t.tick()
    assert third.ready == [] and third.waiting == []


def test_changed_object_is_ready_again_identical_rewrite_is_not(landing_url: str) -> None:
    put(landing_url, "a.json", SYSTEM_19.read_bytes())
    t = Ticker(landing_url)
    t.tick(), t.tick()
    put(landing_url, "a.json", SYSTEM_19.read_bytes())  # same bytes: same ETag, nothing to do
    assert t.tick().ready == [] and t.tick().ready == []
    put(landing_url, "a.json", SYSTEM_35.read_bytes())
    assert t.tick().waiting == ["a.json"]
    again = t.tick().ready
    assert [r.name for r in again] == ["a.json"] and again[0].etag == hashlib.md5(SYSTEM_35.read_bytes()).hexdigest()


def test_temporary_names_subfolders_and_bad_keys_are_ignored(landing_url: str) -> None:
    for name in ("x.json.part", "y.tmp", ".hidden.json", "notes.txt", "sub/deep.json", "bad...name.json"):
        put(landing_url, name, b"{}")
    t = Ticker(landing_url)
    first, second = t.tick(), t.tick()
    assert first.waiting == [] and second.ready == []
    assert set(second.skipped) == {"bad...name.json"}


def test_work_per_tick_is_bounded(landing_url: str) -> None:
    for i in range(7):
        put(landing_url, f"r{i}.json", b"{}")
    t = Ticker(landing_url, max_files=3)
    t.tick()
    got = [len(t.tick().ready), len(t.tick().ready), len(t.tick().ready), len(t.tick().ready)]
    assert got == [3, 3, 1, 0]


def test_missing_prefix_is_empty_not_an_error(landing_url: str) -> None:
    assert Ticker(landing_url).tick().ready == []


def test_store_without_etags_falls_back_to_content_hash() -> None:
    url = "memory://mcp-landing-test"
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{url}/a.json", b"one")
    t = Ticker(url)
    t.tick()
    ready = t.tick().ready
    assert ready[0].etag == "sha256:" + hashlib.sha256(b"one").hexdigest()
    assert t.tick().ready == []
    fs.rm(f"{url}/a.json")


def test_run_reads_the_object_through_fsspec(landing_url: str) -> None:
    put(landing_url, SYSTEM_35.name, SYSTEM_35.read_bytes())
    raw = read_landed_export(landing_url, SYSTEM_35.name)
    assert raw.facts.actual_records == 35
    assert raw.facts.sha256 == hashlib.sha256(SYSTEM_35.read_bytes()).hexdigest()
    with pytest.raises(ExportFileError, match="not found"):
        read_landed_export(landing_url, "missing.json")
