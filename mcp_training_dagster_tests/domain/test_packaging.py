"""Deployment packages: built from a real model, then used where the training project is NOT installed."""

from __future__ import annotations

import io
import json
import shutil
import site
import stat
import subprocess
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest

from mcp_training_dagster.domain import evaluation, training
from mcp_training_dagster.serving import scoring
from mcp_training_dagster.domain.agent_variant import (
    agent_metadata,
    agent_model_card,
    agent_vectors,
    agent_version,
    train_agent_model,
)
from mcp_training_dagster.serving.features import FEATURE_COLUMNS, MODEL_FEATURES, WindowSpec
from mcp_training_dagster.domain.package_check import load_package, safe_extract, verify_package
from mcp_training_dagster.domain.packaging import (
    MAX_ZIP_BYTES,
    PackageError,
    build_package,
    records_inference_config,
    rewrite_imports,
)
from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster.settings import get_settings
from mcp_training_dagster_tests.conftest import HOSTAPD_1824

ROOT_FILES = {
    "model.joblib",
    "metadata.json",
    "README.md",
    "requirements.txt",
    "validate_model.py",
    "inference_example.py",
    "deployment_manifest.json",
}
SCORING_FILES = {
    "score_export.py",
    "mcp_exports.py",
    "mcp_validation.py",
    "mcp_events.py",
    "mcp_feature_catalog.py",
    "mcp_window_arrays.py",
    "mcp_record_flags.py",
    "mcp_features.py",
    "mcp_calibration.py",
    "mcp_scoring.py",
}

# Runs a package script as __main__ in an interpreter that cannot import mcp_training_dagster:
# -I (no PYTHONPATH, no user site, no script/cwd dir on sys.path) and -S (no .pth files, so no
# editable install of this project), with only the third-party site-packages added back.
BOOT = r"""
import json, runpy, sys
sys.path.extend(json.loads(sys.argv[1]))
try:
    import mcp_training_dagster
except ModuleNotFoundError:
    pass
else:
    print("mcp_training_dagster IS importable at " + mcp_training_dagster.__file__, file=sys.stderr)
    sys.exit(99)
script, *args = sys.argv[2:]
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    leaked = sorted(m for m in sys.modules if m.split(".")[0] == "mcp_training_dagster")
    if leaked:
        print("imported " + ", ".join(leaked), file=sys.stderr)
        sys.exit(98)
"""


def run_isolated(pkgdir: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    paths = [p for p in site.getsitepackages() if Path(p).is_dir()]
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", BOOT, json.dumps(paths), script, *args],
        cwd=pkgdir,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )


def window_spec() -> WindowSpec:
    w = get_settings().model.windows
    return WindowSpec(
        length_minutes=w.length_minutes,
        entities=tuple(w.entities),
        burst_seconds=w.burst_seconds,
        silence_cap_hours=w.silence_cap_hours,
    )


def extreme_windows(windows: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Device windows with a deauthentication flood injected (known-anomalous labels for evaluation)."""
    w = windows[windows["entity_kind"] == "device"].iloc[:n].copy()
    for col in FEATURE_COLUMNS:
        if col.startswith(("ev_", "sev_", "dev_")):
            w[col] = 0.0
    w["n_records"] = w["ev_deauthentication"] = w["sev_info_debug"] = w["dev_deauth"] = 400.0
    w["peak_burst"] = 300.0
    return w.astype({c: "float32" for c in FEATURE_COLUMNS})


def rich_metadata(model: training.TrainedModel, windows: pd.DataFrame, spec: WindowSpec) -> dict:
    """Contract-shaped metadata; basic_metrics measured on windows with injected, labelled floods."""
    data = pd.concat([windows, extreme_windows(windows)], ignore_index=True)
    y = np.r_[np.zeros(len(windows), bool), np.ones(len(data) - len(windows), bool)]
    metrics = evaluation.binary_metrics(y, model.score(data), model.threshold).as_dict()
    return {
        "model_info": {
            "created_at": model.trained_at,
            "model_type": "IsolationForest",
            "model_name": "WiFiAnomalyWindows",
            "description": "test model",
            "training_source": "export_data",
            "export_files": [HOSTAPD_1824.name],
        },
        "training_info": {
            "training_samples": model.n_windows,
            "n_samples": model.n_windows,
            "feature_names": list(model.feature_names),
            "feature_count": len(model.feature_names),
        },
        "evaluation_info": {"basic_metrics": metrics, "source": "injected", "feature_importance": {}},
        "inference_config": records_inference_config(model.threshold, model.feature_names, spec),
        "deployment_info": {"status": "available", "deployed_at": None, "deployed_by": None},
    }


@pytest.fixture(scope="module")
def spec() -> WindowSpec:
    return window_spec()


@pytest.fixture(scope="module")
def windows(spec: WindowSpec) -> pd.DataFrame:
    return scoring.export_file_windows(HOSTAPD_1824, spec)


@pytest.fixture(scope="module")
def model(windows: pd.DataFrame, spec: WindowSpec) -> training.TrainedModel:
    return training.train_model(windows, get_settings().model.detector, window_minutes=spec.length_minutes)


@pytest.fixture(scope="module")
def metadata(model, windows, spec) -> dict:
    return rich_metadata(model, windows, spec)


@pytest.fixture(scope="module")
def built(tmp_path_factory, model, metadata):
    models_dir = tmp_path_factory.mktemp("models")
    info = build_package(
        models_dir,
        model.version,
        model.pipeline,
        metadata,
        model_card_md="# Test model\n\nA card.",
        deployment_ready=True,
    )
    return info


def test_package_layout_and_manifest(built, model) -> None:
    assert built.path.name == f"model_{model.version}" and built.version == model.version
    assert set(built.files) == ROOT_FILES | SCORING_FILES
    assert {p.name for p in built.path.iterdir()} == set(built.files)
    manifest = json.loads((built.path / "deployment_manifest.json").read_text())
    meta = json.loads((built.path / "metadata.json").read_text())
    assert manifest["package_format_version"] == "2.0"
    assert manifest["model_version"] == meta["model_info"]["version"] == built.path.name
    assert manifest["file_hashes"] == manifest["file_integrity"] == built.file_hashes
    assert set(manifest["file_hashes"]) == set(built.files) - {"deployment_manifest.json"}
    assert manifest["deployment_ready"] is True
    ic = manifest["inference_config"]
    assert ic["threshold"] == model.threshold
    assert ic["score_convention"] == "higher_is_more_anomalous" and "score_samples" in ic["score_definition"]
    assert ic["input"] == "export_records" and ic["feature_names"] == list(MODEL_FEATURES)
    reqs = dict(line.split("==") for line in (built.path / "requirements.txt").read_text().splitlines() if "==" in line)
    assert reqs == manifest["dependencies"]
    assert {"scikit-learn", "numpy", "pandas", "joblib", "pyarrow", "pydantic"} == set(reqs)
    assert reqs["scikit-learn"] == model.library_versions["scikit-learn"]
    for key in ("model_info", "training_info", "evaluation_info"):
        assert manifest[key] == meta[key]
    # the figures are the measured ones, passed through untouched
    assert meta["evaluation_info"]["basic_metrics"]["n_anomalous"] == 10
    readme = (built.path / "README.md").read_text()
    assert readme.startswith("# Test model") and "## How to use" in readme and "score > threshold" in readme
    for name in SCORING_FILES - {"score_export.py"}:
        assert "mcp_training_dagster" not in (built.path / name).read_text()


def test_zip_holds_the_files_at_its_root(built) -> None:
    assert built.zip_path.name == f"model_{built.version}_deployment.zip"
    assert 0 < built.zip_bytes < MAX_ZIP_BYTES
    with zipfile.ZipFile(built.zip_path) as zf:
        names = zf.namelist()
        assert sorted(names) == sorted(built.files)
        assert all("/" not in n for n in names)
        for n in names:
            assert zf.read(n) == (built.path / n).read_bytes()
            assert stat.S_IMODE(zf.getinfo(n).external_attr >> 16) == 0o644


def test_scripts_run_without_the_training_project(built, windows, model, tmp_path) -> None:
    """validate_model.py passes and score_export.py gives the very scores of the in-process chain."""
    ok = run_isolated(built.path, "validate_model.py")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK ") and f"{len(MODEL_FEATURES)} features" in ok.stdout

    res = run_isolated(built.path, "score_export.py", str(HOSTAPD_1824), "--format", "json", "--all")
    assert res.returncode == 0, res.stderr
    got = pd.DataFrame(json.loads(res.stdout))
    assert list(got.columns) == ["device_id", "entity", "window_start", "score", "is_anomaly", "reasons"]
    pkg = load_package(built.path)
    ic = pkg.metadata["inference_config"]
    want = scoring.score_table(windows, pkg.pipeline, ic["threshold"], ic["feature_names"])
    assert len(got) == len(want) == len(windows) > 1000
    keys = ["device_id", "entity", "window_start"]
    assert not got.duplicated(keys).any()
    both = got.merge(want, on=keys, suffixes=("_pkg", "_here"), validate="one_to_one")
    assert len(both) == len(want)
    np.testing.assert_allclose(both["score_pkg"], both["score_here"], rtol=0, atol=1e-9)
    assert (both["is_anomaly_pkg"] == both["is_anomaly_here"]).all()
    assert (both["reasons_pkg"] == both["reasons_here"]).all()
    # the stored model IS the trained one
    np.testing.assert_array_equal(
        pkg.pipeline.score_samples(scoring.feature_matrix(windows, MODEL_FEATURES)),
        model.pipeline.score_samples(scoring.feature_matrix(windows, MODEL_FEATURES)),
    )

    # default output: only anomalous windows, CSV with full float precision
    res = run_isolated(built.path, "score_export.py", str(HOSTAPD_1824))
    assert res.returncode == 0, res.stderr
    csv = pd.read_csv(io.StringIO(res.stdout))
    assert len(csv) == int(want["is_anomaly"].sum()) > 0 and csv["is_anomaly"].all()
    np.testing.assert_allclose(csv["score"], want.loc[want["is_anomaly"], "score"], rtol=0, atol=1e-9)
    assert not (built.path / "__pycache__").exists()  # the verified folder stays as packaged


def test_score_export_with_history_scores_as_training_did(built, spec, tmp_path) -> None:
    """A later export scored with ``--history EARLIER`` gets the scores of the windows training built on the
    union of both (gaps and history look back across files); without it, its first windows lose their past."""
    doc = json.loads(HOSTAPD_1824.read_text(encoding="utf-8"))
    data = sorted(doc["data"], key=lambda r: str(r.get("timestamp")))
    cut = len(data) * 3 // 4
    earlier, later = tmp_path / "earlier.json", tmp_path / "later.json"
    earlier.write_text(json.dumps({**doc, "data": data[:cut]}), encoding="utf-8")
    later.write_text(json.dumps({**doc, "data": data[cut:]}), encoding="utf-8")
    pkg = load_package(built.path)
    ic = pkg.metadata["inference_config"]
    union = scoring.export_file_windows(HOSTAPD_1824, spec)
    first = scoring.export_file_windows(later, spec)["window_start"].min()
    want = scoring.score_table(
        union[union["window_start"] >= first].reset_index(drop=True), pkg.pipeline, ic["threshold"], ic["feature_names"]
    )
    keys = ["device_id", "entity", "window_start"]

    res = run_isolated(
        built.path, "score_export.py", str(later), "--history", str(earlier), "--format", "json", "--all"
    )
    assert res.returncode == 0, res.stderr
    got = pd.DataFrame(json.loads(res.stdout))
    both = got.merge(want, on=keys, suffixes=("_pkg", "_union"), validate="one_to_one")
    assert len(both) == len(got) == len(want) > 100
    np.testing.assert_allclose(both["score_pkg"], both["score_union"], rtol=0, atol=1e-9)
    assert (both["is_anomaly_pkg"] == both["is_anomaly_union"]).all()

    alone = run_isolated(built.path, "score_export.py", str(later), "--format", "json", "--all")
    assert alone.returncode == 0, alone.stderr
    solo = pd.DataFrame(json.loads(alone.stdout)).merge(want, on=keys, suffixes=("_pkg", "_union"))
    assert (np.abs(solo["score_pkg"] - solo["score_union"]) > 1e-9).any()  # history does change scores


def test_score_records_is_importable(built, windows, tmp_path) -> None:
    """``from score_export import score_records`` in a program elsewhere, without the training project."""
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import json, sys\n"
        f"sys.path.insert(0, {str(built.path)!r})\n"
        "from score_export import score_records\n"
        f"doc = json.load(open({str(HOSTAPD_1824)!r}))\n"
        "table = score_records(doc['data'])\n"
        "print(json.dumps({'columns': list(table.columns), 'n': len(table), 'scores': table['score'].tolist()}))\n"
    )
    res = run_isolated(built.path, str(driver))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["columns"] == list(scoring.SCORE_COLUMNS) and out["n"] == len(windows)
    pkg = load_package(built.path)
    ic = pkg.metadata["inference_config"]
    want = scoring.score_table(windows, pkg.pipeline, ic["threshold"], ic["feature_names"])
    np.testing.assert_allclose(sorted(out["scores"]), sorted(want["score"]), rtol=0, atol=1e-9)


def test_tampered_model_is_refused(built, tmp_path) -> None:
    copy = tmp_path / built.path.name
    shutil.copytree(built.path, copy)
    raw = bytearray((copy / "model.joblib").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (copy / "model.joblib").write_bytes(bytes(raw))

    res = run_isolated(copy, "validate_model.py")
    assert res.returncode == 1
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and "model.joblib" in lines[0] and "SHA-256 mismatch" in lines[0]

    res = run_isolated(copy, "score_export.py", str(HOSTAPD_1824))
    assert res.returncode == 1 and "model.joblib" in res.stderr and res.stdout == ""

    with pytest.raises(PackageError, match=r"model\.joblib: SHA-256 mismatch"):
        load_package(copy)
    (copy / "metadata.json").unlink()
    with pytest.raises(PackageError, match=r"metadata\.json: missing"):
        verify_package(copy)


def test_build_is_atomic_and_never_overwrites(tmp_path, model, metadata) -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
    v1, v2 = training.new_version(now), training.new_version(now)
    assert v1[:15] == v2[:15] and v1 != v2
    card = "# card"
    a = build_package(tmp_path, v1, model.pipeline, metadata, model_card_md=card, deployment_ready=False)
    b = build_package(tmp_path, v2, model.pipeline, metadata, model_card_md=card, deployment_ready=False)
    assert a.path != b.path and a.path.is_dir() and b.path.is_dir()
    assert json.loads((a.path / "deployment_manifest.json").read_text())["deployment_ready"] is False
    with pytest.raises(PackageError, match="never overwritten"):
        build_package(tmp_path, v1, model.pipeline, metadata, model_card_md=card, deployment_ready=True)

    # a ZIP over the limit: nothing published, nothing left behind
    v3 = training.new_version()
    with pytest.raises(PackageError, match="accepts less than"):
        build_package(
            tmp_path, v3, model.pipeline, metadata, model_card_md=card, deployment_ready=True, max_zip_bytes=10_000
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [a.path.name, b.path.name, a.zip_path.name, b.zip_path.name]
    )


def test_metadata_the_inference_side_cannot_use_is_refused(tmp_path, model, metadata) -> None:
    v = training.new_version()
    bad = json.loads(json.dumps(metadata))
    del bad["evaluation_info"]["basic_metrics"]
    with pytest.raises(PackageError, match="evaluation_info.basic_metrics"):
        build_package(tmp_path, v, model.pipeline, bad, model_card_md="", deployment_ready=True)
    bad = json.loads(json.dumps(metadata))
    bad["model_info"]["version"] = "model_other"
    with pytest.raises(PackageError, match="must be equal"):
        build_package(tmp_path, v, model.pipeline, bad, model_card_md="", deployment_ready=True)
    bad = json.loads(json.dumps(metadata))
    bad["inference_config"]["feature_names"] = bad["inference_config"]["feature_names"][:5]
    bad["inference_config"]["feature_count"] = 5
    del bad["training_info"]["feature_names"], bad["training_info"]["feature_count"]
    with pytest.raises(PackageError, match=f"model takes {len(MODEL_FEATURES)} features but metadata.json names 5"):
        build_package(tmp_path, v, model.pipeline, bad, model_card_md="", deployment_ready=True)
    # a threshold the estimator's own predict() would disagree with
    bad = json.loads(json.dumps(metadata))
    bad["inference_config"]["threshold"] = model.threshold + 0.1
    with pytest.raises(PackageError, match="offset_"):
        build_package(tmp_path, v, model.pipeline, bad, model_card_md="", deployment_ready=True)
    with pytest.raises(PackageError, match="invalid model version"):
        build_package(tmp_path, "../escape", model.pipeline, metadata, model_card_md="", deployment_ready=True)
    assert list(tmp_path.iterdir()) == []


def test_import_rewrite_fails_loudly() -> None:
    src = "from mcp_training_dagster.serving.events import EVENT_TYPES\nfrom mcp_training_dagster.serving.features import (\n    X,\n)\n"
    assert rewrite_imports(src, "demo") == "from mcp_events import EVENT_TYPES\nfrom mcp_features import (\n    X,\n)\n"
    with pytest.raises(PackageError, match="settings"):
        rewrite_imports("from mcp_training_dagster.domain.settings import X\n", "demo")
    with pytest.raises(PackageError, match=r"line\(s\) \[2\]"):
        rewrite_imports("import numpy\nimport mcp_training_dagster.settings\n", "demo")


def test_agent_variant_package(tmp_path) -> None:
    """The agent variant: a bare 5-feature estimator, validate_model.py but no scoring modules."""
    records = validate_records(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name).records
    vectors = agent_vectors(records)
    est, threshold = train_agent_model(vectors, contamination=0.02, random_state=42)
    floods = pd.DataFrame(
        {
            "log_count": [900.0] * 5,
            "error_count": [300.0] * 5,
            "warning_count": [50.0] * 5,
            "unique_program_count": 0.0,
            "unique_host_count": 0.0,
        }
    )
    X = np.r_[vectors.iloc[:, 1:].to_numpy(), floods.to_numpy()]
    y = np.r_[np.zeros(len(vectors), bool), np.ones(5, bool)]
    metrics = evaluation.binary_metrics(y, -est.score_samples(X), threshold).as_dict()
    version = agent_version(training.new_version())
    meta = agent_metadata(
        version=version,
        estimator=est,
        threshold=threshold,
        vectors=vectors,
        basic_metrics=metrics,
        contamination=0.02,
        export_files=[HOSTAPD_1824.name],
    )
    info = build_package(tmp_path, version, est, meta, model_card_md=agent_model_card(meta), deployment_ready=True)
    assert info.path.name.endswith("_agent5")
    assert set(info.files) == ROOT_FILES
    manifest = json.loads((info.path / "deployment_manifest.json").read_text())
    assert manifest["inference_config"]["input"] == "agent_5_value_window_vector"
    assert manifest["training_info"]["feature_count"] == 5
    res = run_isolated(info.path, "validate_model.py")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 features" in res.stdout
    res = run_isolated(info.path, "inference_example.py")
    assert res.returncode == 0 and res.stdout.startswith("predict="), res.stdout + res.stderr
    loaded = load_package(info.path)
    assert type(loaded.pipeline) is IsolationForest and loaded.pipeline.n_features_in_ == 5


# --------------------------------------------------------------------------- safe_extract
def _zip_with(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def test_safe_extract_unpacks_a_real_package(built, tmp_path) -> None:
    out = safe_extract(built.zip_path, tmp_path / "x")
    assert sorted(p.name for p in out) == sorted(built.files)
    verify_package(tmp_path / "x")


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/tmp/evil", "C:/evil", "..\\evil", "./a"])
def test_safe_extract_rejects_escaping_names(tmp_path, name) -> None:
    z = _zip_with(tmp_path / "bad.zip", [("ok.txt", b"fine"), (zipfile.ZipInfo(name), b"evil")])
    target = tmp_path / "t"
    with pytest.raises(PackageError, match="refusing member"):
        safe_extract(z, target)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()
    assert not target.exists() or list(target.iterdir()) == []


def test_safe_extract_rejects_symlinks_and_oversize(tmp_path) -> None:
    link = zipfile.ZipInfo("link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    z = _zip_with(tmp_path / "link.zip", [(link, b"/etc/passwd")])
    with pytest.raises(PackageError, match="symbolic link"):
        safe_extract(z, tmp_path / "t1")

    z = _zip_with(tmp_path / "big.zip", [("a.txt", b"x" * 600), ("b.txt", b"x" * 600)])
    with pytest.raises(PackageError, match="more than 1,000 bytes"):
        safe_extract(z, tmp_path / "t2", max_bytes=1000)
    assert not (tmp_path / "t2").exists()

    # a header that understates the size (zip bomb): never more than the declared bytes are written,
    # and the member then fails its CRC, so nothing of it is kept
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.bin", b"\0" * 5000)
    data = bytearray(raw.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("bomb.bin")
    # patch the declared uncompressed size (local header offset 22, central directory entry offset 24)
    local, central = info.header_offset, data.rindex(b"PK\x01\x02")
    data[local + 22 : local + 26] = (10).to_bytes(4, "little")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    (tmp_path / "bomb.zip").write_bytes(bytes(data))
    with pytest.raises(PackageError, match="cannot be unpacked"):
        safe_extract(tmp_path / "bomb.zip", tmp_path / "t3", max_bytes=1000)
    assert not (tmp_path / "t3" / "bomb.bin").exists()


def test_model_pickle_is_pure_sklearn(built) -> None:
    """model.joblib references scikit-learn/numpy only (the isolated runs above prove it loads)."""
    raw = (built.path / "model.joblib").read_bytes()
    assert b"mcp_training_dagster" not in raw
    assert type(joblib.load(built.path / "model.joblib")).__module__.startswith("sklearn.")
