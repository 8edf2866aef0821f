"""Issue 12, hardening: hostile files, registry and crash cases, driven from the user's side.

The corpus is generated into tmp folders by ``hostile_corpus.build_corpus`` (nothing large is
shipped); every class of file is read by the domain functions, ingested by Dagster and seen by the
sensor. Each test here fails on the code before the fix.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import dagster as dg
from mcp_training_dagster.domain import landing as landing_mod
from mcp_training_dagster.serving.exports import ExportFileError, read_export
from mcp_training_dagster.domain.atomic_files import remove_stale_temp, write_atomic
from mcp_training_dagster.domain.registry import ModelRegistry, RegistryError
from mcp_training_dagster.domain.horizon import horizon_filter
from mcp_training_dagster.serving.validation import check_schema, validate_records
from mcp_training_dagster.io_managers import ParquetIOManager
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import (  # noqa: F401  (fixtures: the real definitions on a tmp root)
    assets_dir,
    defs,
    failure_text,
    instance,
    materializations,
    md,
    resources,
    run_ingest,
    settings,
)
from mcp_training_dagster_tests.domain.test_registry import make, tiny_model  # noqa: F401  (fixture)
from mcp_training_dagster_tests.hostile_corpus import (
    CORPUS_LIMIT,
    Expect,
    build_corpus,
    export_bytes,
    good_records,
    plant_landing_links,
    record,
)

pytestmark = pytest.mark.slow  # Dagster job runs / CLI training: not in `make test-fast`


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Expect]]:
    folder = tmp_path_factory.mktemp("hostile")
    return folder, build_corpus(folder)


@pytest.fixture
def limited(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data root with the archive limit the corpus is sized for."""
    monkeypatch.setenv("MCP_TRAINING_INPUT_LIMITS__MAX_EXPORT_BYTES", str(CORPUS_LIMIT))
    return data_dir


def _one_line(text: str, name: str, fragment: str) -> None:
    line = next((ln for ln in text.splitlines() if ln.startswith(f"{name}: ")), None)
    assert line is not None, f"no line naming {name}:\n{text}"
    assert fragment in line, (fragment, line)


# ------------------------------------------------------------------- the corpus, domain level
def test_every_corpus_file_fails_alone_or_is_quarantined(corpus) -> None:
    folder, expect = corpus
    for name, exp in expect.items():
        if exp.fails:
            with pytest.raises(ExportFileError) as info:
                read_export(folder / name, max_bytes=CORPUS_LIMIT)
            assert info.value.file == name
            assert "\n" not in str(info.value)
            _one_line(str(info.value), name, exp.fails)
            continue
        raw = read_export(folder / name, max_bytes=CORPUS_LIMIT)
        result = validate_records(raw.records, name)
        assert result.report.quarantine_by_reason == exp.quarantined, name
        assert result.report.valid == exp.valid, name
        assert result.report.valid + result.report.quarantined == result.report.records_in
        assert check_schema(result.records) == [], name


def test_ids_beyond_64_bits_are_quarantined_with_their_text(corpus) -> None:
    folder, _ = corpus
    result = validate_records(read_export(folder / "huge_ids.json").records, "huge_ids.json")
    q = result.quarantine
    assert set(q["reason"]) == {"invalid_id"} and set(q["field"]) == {"id"}
    assert str(2**70) in set(q["id"]) and str(10**30) in set(q["id"]) and str(-(2**64)) in set(q["id"])
    assert all(json.loads(r)["message"] for r in q["record"])  # the original record, kept verbatim
    assert result.records["id"].tolist() == list(range(1, 21))


def test_absurd_timestamps_are_quarantined_with_the_range(corpus) -> None:
    folder, _ = corpus
    result = validate_records(read_export(folder / "absurd_years.json").records, "absurd_years.json")
    q = result.quarantine.set_index("id")
    assert set(q.index) == {"101", "102", "103", "104", "105"}
    assert (q["field"] == "timestamp").all()
    assert "2000-01-01T00:00:00 .. 2025-06-28T09:38:14.611774 (export created_at + 24h)" in q.loc["101", "detail"]
    assert q.loc["102", "detail"].endswith("9999-12-31T23:59:59")
    assert result.records["timestamp"].max() == pd.Timestamp("2025-06-28T09:00:00")  # within the day: kept
    # configurable: a later earliest bound and no tolerance
    strict = validate_records(
        read_export(folder / "absurd_years.json").records,
        "x",
        earliest_timestamp="2025-06-27T09:10:00",
        future_tolerance_hours=0,
    )
    assert strict.report.quarantine_by_reason == {"implausible_timestamp": 16}


def test_created_at_in_the_future_does_not_widen_the_range(tmp_path: Path) -> None:
    path = tmp_path / "liar.json"
    path.write_bytes(
        export_bytes(good_records() + [record(500, ts="2999-01-01T00:00:00")], created_at="9999-01-01T00:00:00")
    )
    result = validate_records(read_export(path).records, path.name)
    assert result.report.quarantine_by_reason == {"implausible_timestamp": 1}
    assert "now (export created_at is in the future) + 24h" in result.quarantine["detail"].iloc[0]


def test_window_arithmetic_cannot_overflow_silently(corpus) -> None:
    """A 9999 record that slipped past validation (hand-built table) fails the blocking schema check."""
    folder, _ = corpus
    records = validate_records(read_export(folder / "huge_counter.json").records, "x").records
    stray = records.iloc[[-1]].assign(id=999, timestamp=pd.Timestamp("9999-12-31T23:59:59"))
    problems = check_schema(pd.concat([records, stray], ignore_index=True))
    assert any("timestamps outside" in p for p in problems)


def test_horizon_is_robust_to_a_stray_record() -> None:
    recs = validate_records(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name).records
    newest = recs["timestamp"].max()
    for when in ("2999-01-01T00:00:00", "9999-12-31T23:59:59", "2026-01-01T00:00:00"):
        stray = recs.iloc[[-1]].assign(id=10**9, timestamp=pd.Timestamp(when))
        kept, cutoff = horizon_filter(pd.concat([recs, stray], ignore_index=True), 30)
        assert cutoff == newest - pd.Timedelta(days=30), when
        assert len(kept) == int((recs["timestamp"] > cutoff).sum()) > 1000, when
        assert 10**9 not in set(kept["id"])
    # ten or more records are data, not a stray: a real newer export moves the horizon
    later = recs.iloc[-10:].assign(
        id=np.arange(10) + 10**9, timestamp=pd.date_range("2025-09-01", periods=10, freq="min")
    )
    kept, cutoff = horizon_filter(pd.concat([recs, later], ignore_index=True), 30)
    assert len(kept) == 10 and cutoff == pd.Timestamp("2025-09-01T00:09:00") - pd.Timedelta(days=30)


# ------------------------------------------------------------------------- ingest (Dagster)
def test_each_bad_archive_fails_its_own_partition_with_one_line(limited, defs, instance, landing, corpus, assets_dir):
    folder, expect = corpus
    good = copy_sample(SYSTEM_35.name, landing)
    for name, exp in expect.items():
        shutil.copyfile(folder / name, landing / name)
        if name == "no_created_at.json":
            shutil.copystat(folder / name, landing / name)
    for name, exp in expect.items():
        result = run_ingest(defs, instance, name, raise_on_error=False)
        if exp.fails:
            assert not result.success, name
            assert {e.step_key for e in result.get_step_failure_events()} == {"raw_export"}, name
            _one_line(failure_text(result), name, exp.fails)
        else:
            assert result.success, (name, failure_text(result))
            q = md(materializations(result, "quarantined_records")[0])
            assert q["dagster/row_count"] == sum(exp.quarantined.values()), name
            assert md(materializations(result, "validated_records")[0])["dagster/row_count"] == exp.valid, name
    assert run_ingest(defs, instance, good.name).success
    assert instance.get_materialized_partitions(dg.AssetKey("validated_records")) == {
        good.name,
        *(n for n, e in expect.items() if not e.fails),
    }


def test_symlinks_out_of_the_landing_folder_are_refused_by_the_asset(defs, instance, landing, tmp_path):
    refused = plant_landing_links(landing, tmp_path / "outside")
    inside = copy_sample(SYSTEM_19.name, landing)
    (landing / "alias.json").symlink_to(inside.name)  # a link that stays inside is an ordinary file
    for name, why in refused.items():
        result = run_ingest(defs, instance, name, raise_on_error=False)
        assert not result.success
        _one_line(failure_text(result), name, why)
        assert not result.get_asset_materialization_events()
    assert run_ingest(defs, instance, "alias.json").success


def test_partition_key_traversal_reads_and_writes_nothing_outside(defs, instance, landing, data_dir, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_bytes(SYSTEM_19.read_bytes())
    key = "../../outside.json"  # what a hand-added key through the UI or the API can hold
    before = {p for p in tmp_path.rglob("*")}
    result = run_ingest(defs, instance, key, raise_on_error=False)
    assert not result.success
    _one_line(failure_text(result), key, "cannot be a partition key")
    assert not result.get_asset_materialization_events()
    written = {p for p in tmp_path.rglob("*")} - before
    assert all(p.is_relative_to(data_dir) for p in written), sorted(written)
    assert not list(tmp_path.glob("*.parquet"))


PARTS = dg.DynamicPartitionsDefinition(name="hostile_parts")


@dg.asset(partitions_def=PARTS)
def per_key() -> pd.DataFrame:
    return pd.DataFrame({"x": [1]})


@pytest.mark.parametrize("key", ["../../escape", "../escape.json", "a/../../../escape", "..", "/abs/escape"])
def test_io_manager_never_writes_outside_its_base_path(tmp_path: Path, key: str) -> None:
    base = tmp_path / "deep" / "assets"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTS.name, [key])
        result = dg.materialize(
            [per_key],
            partition_key=key,
            instance=instance,
            raise_on_error=False,
            resources={"io_manager": ParquetIOManager(base_path=str(base))},
        )
    assert not result.success
    assert "outside" in failure_text(result) or "partition key" in failure_text(result)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------------------------- sensor
def test_sensor_skips_what_it_cannot_handle_and_never_fails_the_tick(
    defs, instance, resources, landing, tmp_path, monkeypatch, corpus
):
    from mcp_training_dagster.defs.partitions import export_files
    from mcp_training_dagster_tests.defs.test_sensors import Ticker, added_keys, requested_files

    hashed: list[Path] = []
    real_hash = landing_mod.sha256_file
    monkeypatch.setattr(landing_mod, "sha256_file", lambda p, *a: hashed.append(Path(p)) or real_hash(p, *a))
    good = [copy_sample(n.name, landing) for n in (HOSTAPD_1824, SYSTEM_35, SYSTEM_19)]
    refused = plant_landing_links(landing, tmp_path / "outside")
    bad_name = os.fsencode(landing) + b"/caf\xe9_latin1.json"  # not UTF-8
    with open(bad_name, "wb") as fh:
        fh.write(SYSTEM_19.read_bytes())
    (landing / "dangling.json").symlink_to(tmp_path / "nowhere.json")
    (landing / "loop.json").symlink_to("loop.json")  # resolving it raises RuntimeError on Python 3.11
    folder, expect = corpus
    for name in expect:
        shutil.copyfile(folder / name, landing / name)

    ticker = Ticker(defs, instance, resources)
    # One tick sees the whole hostile folder (the shipped budget of 10 files a tick spreads it over ticks).
    ticker.configure(monkeypatch, MCP_TRAINING_SENSOR__MAX_FILES_PER_TICK="100")
    logged: list[str] = []
    ticker.tick()
    sensor = ticker.sensor
    context = dg.build_sensor_context(instance=instance, cursor=ticker.cursor, resources=ticker.resources)
    monkeypatch.setattr(type(context), "log", property(lambda self: _Log(logged)), raising=False)
    result = sensor(context)
    ticker.cursor = result.cursor
    wanted = {p.name for p in good} | set(expect)
    assert set(added_keys(result)) == wanted
    instance.add_dynamic_partitions(export_files.name, added_keys(result))  # as the daemon does
    requested = requested_files(result, instance)  # new files in batches: their partition ranges
    assert sorted(requested) == sorted(wanted)
    for name, why in {**refused, "caf\\xe9_latin1.json": "not valid UTF-8", "loop.json": "cannot be examined"}.items():
        assert any(line.startswith(f"{name}: ") and why in line for line in logged), (name, logged)
    outside_targets = {(tmp_path / "outside").resolve(), Path("/etc").resolve()}
    assert not any(p.resolve().parent in outside_targets for p in hashed), hashed
    json.loads(result.cursor)  # the cursor stays valid JSON


class _Log:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def warning(self, msg: str) -> None:
        msg.encode("utf-8")  # what Dagster's event log will do with it
        self.lines.append(msg)

    info = debug = error = warning


# --------------------------------------------------------------------------- temp leftovers
def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)


def test_stale_temp_files_are_swept_but_never_one_being_written(defs, instance, landing, assets_dir):
    copy_sample(SYSTEM_19.name, landing)
    assert run_ingest(defs, instance, SYSTEM_19.name).success
    folder = assets_dir / "raw_export"
    stale = folder / ".killed.json.parquet.tmp-0badc0de"
    stale.write_bytes(b"half a parquet file")
    _age(stale, 7200)
    busy = folder / ".other.json.parquet.tmp-0000beef"
    busy.write_bytes(b"being written by another run")
    _age(busy, 7200)  # old mtime, but its writer still holds the lock
    fresh = folder / ".new.json.parquet.tmp-feedf00d"
    fresh.write_bytes(b"just started")
    user_file = folder / "notes.tmp"
    user_file.write_text("not ours")
    _age(user_file, 7200)
    with open(busy, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        copy_sample(SYSTEM_35.name, landing)
        assert run_ingest(defs, instance, SYSTEM_35.name).success
    assert not stale.exists()
    assert busy.exists() and fresh.exists() and user_file.exists()


def test_write_atomic_holds_a_lock_the_sweeper_respects(tmp_path: Path) -> None:
    seen: list[bool] = []

    def writer(fh) -> None:
        tmp = next(tmp_path.glob(".out.bin.tmp-*"))
        _age(tmp, 7200)
        seen.append(bool(remove_stale_temp(tmp_path)))  # a sweep while the write is in progress
        fh.write(b"complete")

    write_atomic(tmp_path / "out.bin", writer)
    assert seen == [False] and (tmp_path / "out.bin").read_bytes() == b"complete"


def test_registry_sweeps_killed_builds_on_start(run_cli, data_dir: Path) -> None:
    models = data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    killed = models / ".tmp-model_20250601_120000_000000_abcdef-1234abcd"
    killed.mkdir()
    (killed / "model.joblib").write_bytes(b"half")
    _age(killed / "model.joblib", 7200)
    _age(killed, 7200)
    killed_zip = models / ".tmp-model_20250601_120000_000000_abcdef_deployment.zip-1234abcd"
    killed_zip.write_bytes(b"PK")
    _age(killed_zip, 7200)
    building = models / ".tmp-model_20250602_120000_000000_abcdef-5678abcd"
    building.mkdir()
    _age(building, 7200)
    fd = os.open(building, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a build in progress in another process
        result = run_cli("up", "--dry-run", "--no-samples")
        assert result.exit_code == 0, result.output
    finally:
        os.close(fd)
    assert not killed.exists() and not killed_zip.exists()
    assert building.exists()


# -------------------------------------------------------------------------------- packages
@pytest.fixture
def run_cli(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster_home"))
    runner = CliRunner()
    from mcp_training_dagster.cli import main

    return lambda *args: runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def _rezip(
    src: Path, dest: Path, *, change: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None
) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            zout.writestr(name, (change or {}).get(name, zin.read(name)))
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dest


def test_import_refuses_files_the_manifest_does_not_list(tmp_path: Path, tiny_model) -> None:  # noqa: F811
    source = ModelRegistry(tmp_path / "source")
    v = make(source.models_dir, tiny_model, 0)
    name = f"model_{v}_deployment.zip"
    upload = tmp_path / "upload" / name
    upload.parent.mkdir()
    _rezip(source.models_dir / name, upload, add={"joblib.py": b"import os; os.system('echo pwned')\n"})
    reg = ModelRegistry(tmp_path / "models")
    with pytest.raises(RegistryError, match=r"joblib\.py: not listed in the manifest"):
        reg.import_zip(upload)
    assert reg.versions() == [] and not list(reg.models_dir.glob(".tmp-*"))


def test_shipped_scripts_are_immune_to_shadowing(tmp_path: Path, tiny_model) -> None:  # noqa: F811
    source = ModelRegistry(tmp_path / "source")
    v = make(source.models_dir, tiny_model, 0)
    pkg = tmp_path / "pkg"
    shutil.copytree(source.models_dir / f"model_{v}", pkg)
    for mod in ("joblib", "json", "numpy", "hashlib"):
        (pkg / f"{mod}.py").write_text(
            f"import pathlib\npathlib.Path(__file__).with_name('PLANTED_{mod}_RAN').touch()\n"
        )
    for cwd in (tmp_path, pkg):  # run from elsewhere and from inside the package, as users do
        for script in ("validate_model.py", "inference_example.py"):
            res = subprocess.run(
                [sys.executable, str(pkg / script)], cwd=cwd, capture_output=True, text=True, timeout=120
            )
            assert res.returncode != 0, (script, res.stdout, res.stderr)
            assert "joblib.py: not listed in deployment_manifest.json" in res.stdout + res.stderr, (
                script,
                res.stdout,
                res.stderr,
            )
            assert not list(pkg.glob("PLANTED_*")), (script, cwd, sorted(p.name for p in pkg.glob("PLANTED_*")))
    for mod in ("joblib", "json", "numpy", "hashlib"):
        (pkg / f"{mod}.py").unlink()
    ok = subprocess.run(
        [sys.executable, str(pkg / "validate_model.py")], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0 and ok.stdout.startswith("OK "), ok.stdout + ok.stderr


def test_models_package_verifies_the_zip_it_hands_out(run_cli, data_dir: Path, tmp_path: Path, tiny_model) -> None:  # noqa: F811
    models = data_dir / "models"
    v = make(models, tiny_model, 0)
    zpath = models / f"model_{v}_deployment.zip"
    original = zpath.read_bytes()
    orig = tmp_path / "orig.zip"
    orig.write_bytes(original)
    dest = tmp_path / "out"
    with zipfile.ZipFile(zpath) as zf:
        model_bytes = zf.read("model.joblib")
    tampered = bytearray(model_bytes)
    tampered[len(tampered) // 2] ^= 0xFF
    for label, kwargs, fragment in (
        ("tampered", {"change": {"model.joblib": bytes(tampered)}}, "model.joblib: SHA-256 mismatch"),
        ("extra", {"add": {"joblib.py": b"print('pwned')\n"}}, "joblib.py: not listed in the manifest"),
    ):
        _rezip(orig, zpath, **kwargs)
        res = run_cli("models", "package", v, "--dest", dest)
        assert res.exit_code == 2, (label, res.output)
        assert res.output.startswith("error: ") and fragment in res.output, (label, res.output)
        assert not dest.exists() or not list(dest.iterdir()), (label, list(dest.iterdir()))
    zpath.write_bytes(original)
    res = run_cli("models", "package", v, "--dest", dest)
    assert res.exit_code == 0, res.output
    assert (dest / zpath.name).read_bytes() == original


def test_models_package_to_a_file_is_one_line(run_cli, data_dir: Path, tmp_path: Path, tiny_model) -> None:  # noqa: F811
    v = make(data_dir / "models", tiny_model, 0)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    res = run_cli("models", "package", v, "--dest", a_file)
    assert res.exit_code == 2 and res.output.startswith("error: --dest ") and res.output.count("\n") == 1, res.output
