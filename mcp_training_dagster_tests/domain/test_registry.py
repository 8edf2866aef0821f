"""The registry: real (tiny) packages on disk, a production pointer, and hostile version strings."""

from __future__ import annotations

import json
import shutil
import threading
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.domain import evaluation
from mcp_training_dagster.domain.agent_variant import (
    AGENT_FEATURES,
    agent_metadata,
    agent_model_card,
    agent_version,
    train_agent_model,
)
from mcp_training_dagster.domain.packaging import build_package
from mcp_training_dagster.domain.registry import ModelEntry, ModelRegistry, RegistryError, validate_version
from mcp_training_dagster.domain.training import new_version

T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def tiny_model():
    """A real 5-feature IsolationForest with measured metrics (normal traffic vs injected floods)."""
    rng = np.random.default_rng(3)
    normal = np.c_[rng.poisson(20, (200, 1)), rng.poisson(1, (200, 2)), np.zeros((200, 2))].astype(np.float64)
    vectors = pd.DataFrame(normal, columns=list(AGENT_FEATURES))
    vectors.insert(0, "window_start", pd.date_range("2025-06-01", periods=200, freq="5min"))
    est, threshold = train_agent_model(vectors, contamination=0.05, random_state=0, n_estimators=10)
    floods = np.array([[400.0, 80.0, 30.0, 0.0, 0.0]] * 4)
    y = np.r_[np.zeros(200, bool), np.ones(4, bool)]
    metrics = evaluation.binary_metrics(y, -est.score_samples(np.r_[normal, floods]), threshold).as_dict()
    return est, threshold, vectors, metrics


def make(
    models_dir: Path, tiny_model, minutes: int, *, agent: bool = False, ready: bool = True, base: str | None = None
) -> str:
    """Build a real package whose version is T0 + ``minutes`` (or ``base``, plus ``_agent5`` for an
    agent variant); returns its bare version."""
    est, threshold, vectors, metrics = tiny_model
    base = base or new_version(T0 + timedelta(minutes=minutes))
    meta = agent_metadata(
        version=agent_version(base),
        estimator=est,
        threshold=threshold,
        vectors=vectors,
        basic_metrics=metrics,
        contamination=0.05,
    )
    version = agent_version(base) if agent else base
    meta["model_info"]["version"] = f"model_{version}"
    build_package(models_dir, version, est, meta, model_card_md=agent_model_card(meta), deployment_ready=ready)
    return version


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def test_list_show_and_junk_is_ignored(reg: ModelRegistry, tiny_model) -> None:
    a = make(reg.models_dir, tiny_model, 0)
    b = make(reg.models_dir, tiny_model, 5, ready=False)
    c = make(reg.models_dir, tiny_model, 5, agent=True)  # same minute: its own entry
    d = reg.models_dir
    (d / f".tmp-model_{new_version()}-abcd1234").mkdir()
    (d / "model_junk").mkdir()
    (d / "model_..").mkdir(exist_ok=True)
    (d / "notes.txt").write_text("x")
    (d / f"model_{new_version()}_deployment.zip").write_bytes(b"PK")
    (d / ".production.json.tmp-deadbeef").write_text('{"version": "half')
    (d / f"model_{new_version(T0 - timedelta(days=1))}").symlink_to(d / f"model_{a}")

    entries = reg.list()
    assert [e.version for e in entries] == sorted([a, b, c], reverse=True)  # newest first; junk ignored
    assert entries[-1].version == a
    e = {x.version: x for x in entries}
    assert all(isinstance(x, ModelEntry) and x.error is None for x in entries)
    assert e[a].deployment_ready and not e[b].deployment_ready
    assert e[a].model_type == "IsolationForest" and e[a].input_kind == "agent_5_value_window_vector"
    assert e[a].f1 is not None and e[a].roc_auc is not None and e[a].pr_auc is not None
    assert not any(x.is_production for x in entries)
    assert reg.production() is None and reg.predecessor() is None

    shown = reg.show(f"model_{a}")
    assert shown["version"] == a and shown["is_production"] is False
    assert shown["metadata"]["model_info"]["version"] == f"model_{a}"
    assert set(shown["manifest"]["file_hashes"]) >= {"model.joblib", "metadata.json"}
    assert shown["zip_path"].endswith(f"model_{a}_deployment.zip")
    assert reg.path(a) == d / f"model_{a}"


def test_promote_and_rollback(reg: ModelRegistry, tiny_model) -> None:
    a, b, c = (make(reg.models_dir, tiny_model, m) for m in (0, 5, 10))
    p = reg.promote(a, by="alice")
    assert p["version"] == a and p["history"] == [] and p["promoted_by"] == "alice"
    reg.promote(f"model_{b}")
    reg.promote(c)
    pointer = json.loads((reg.models_dir / "production.json").read_text())
    assert pointer["version"] == c and pointer["history"] == [b, a] and pointer["promoted_at"]
    assert reg.production() == c and reg.predecessor() == b
    assert [x.version for x in reg.list() if x.is_production] == [c]
    assert reg.promote(c)["history"] == [b, a]  # promoting production again changes nothing
    assert reg.show(c)["is_production"] and reg.show(b)["is_rollback_target"]

    assert reg.rollback(by="bob") == b
    assert reg.production() == b and reg.predecessor() == a
    assert reg.rollback() == a
    with pytest.raises(RegistryError, match="no earlier production version"):
        reg.rollback()
    assert reg.production() == a


def test_rollback_skips_deleted_versions_and_needs_a_production(reg: ModelRegistry, tiny_model) -> None:
    with pytest.raises(RegistryError, match="no production model yet"):
        reg.rollback()
    a, b, c = (make(reg.models_dir, tiny_model, m) for m in (0, 5, 10))
    for v in (a, b, c):
        reg.promote(v)
    reg.delete(a)  # neither production nor the rollback target
    assert reg.rollback() == b
    with pytest.raises(RegistryError, match="no earlier production version"):
        reg.rollback()


def test_promote_refuses_unready_missing_and_tampered(reg: ModelRegistry, tiny_model) -> None:
    unready = make(reg.models_dir, tiny_model, 0, ready=False)
    with pytest.raises(RegistryError, match="not deployment-ready"):
        reg.promote(unready)
    assert reg.production() is None
    assert reg.promote(unready, force=True)["version"] == unready

    with pytest.raises(RegistryError, match="no such model"):
        reg.promote(new_version())
    bad = make(reg.models_dir, tiny_model, 5)
    (reg.path(bad) / "metadata.json").write_text("{}")
    with pytest.raises(RegistryError, match=r"metadata\.json: SHA-256 mismatch"):
        reg.promote(bad)
    assert reg.production() == unready


def test_delete_protects_production_and_its_predecessor(reg: ModelRegistry, tiny_model) -> None:
    a, b, c = (make(reg.models_dir, tiny_model, m) for m in (0, 5, 10))
    reg.promote(a)
    reg.promote(b)
    with pytest.raises(RegistryError, match="production model"):
        reg.delete(b)
    with pytest.raises(RegistryError, match="rollback would return to"):
        reg.delete(f"model_{a}")
    reg.delete(c)
    assert not (reg.models_dir / f"model_{c}").exists()
    assert not (reg.models_dir / f"model_{c}_deployment.zip").exists()
    assert not list(reg.models_dir.glob(".trash-*"))
    assert {e.version for e in reg.list()} == {a, b}
    with pytest.raises(RegistryError, match="no such model"):
        reg.delete(c)


def test_retention_keeps_newest_plus_production_and_predecessor(reg: ModelRegistry, tiny_model) -> None:
    vs = [make(reg.models_dir, tiny_model, m) for m in range(0, 30, 5)]  # oldest first
    reg.promote(vs[0])
    reg.promote(vs[1])
    (reg.models_dir / ".trash-model_x-1234").mkdir()  # leftover of an interrupted deletion
    deleted = reg.apply_retention(2)
    assert deleted == [vs[3], vs[2]]
    assert {e.version for e in reg.list()} == {vs[5], vs[4], vs[1], vs[0]}
    assert not list(reg.models_dir.glob(".trash-*"))
    assert not list(reg.models_dir.glob(f"model_{vs[2]}*"))
    assert reg.apply_retention(2) == []
    assert reg.apply_retention(0) == [vs[5], vs[4]]
    with pytest.raises(RegistryError, match="keep must be"):
        reg.apply_retention(-1)


def test_agent_variant_is_an_ordinary_entry(reg: ModelRegistry, tiny_model) -> None:
    base = make(reg.models_dir, tiny_model, 0)
    agent = make(reg.models_dir, tiny_model, 0, agent=True, base=base)
    assert agent == f"{base}_agent5"
    reg.promote(base)
    flags = {e.version: e.is_production for e in reg.list()}
    assert flags == {base: True, agent: False}
    reg.promote(agent)
    assert reg.production() == agent and reg.predecessor() == base


def test_pointer_is_never_half_written(reg: ModelRegistry, tiny_model) -> None:
    vs = [make(reg.models_dir, tiny_model, m) for m in range(4)]
    reg.promote(vs[0])
    errors: list[BaseException] = []

    def promote_many(v: str) -> None:
        try:
            for _ in range(15):
                reg.promote(v, by=v)
                doc = json.loads((reg.models_dir / "production.json").read_text())  # always whole JSON
                assert doc["version"] in vs
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=promote_many, args=(v,)) for v in vs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pointer = reg.pointer()
    assert pointer["version"] in vs and len(pointer["history"]) == len(set(pointer["history"]))
    assert pointer["version"] not in pointer["history"]
    assert [p.name for p in reg.models_dir.iterdir() if ".tmp-" in p.name] == []

    (reg.models_dir / "production.json").write_text('{"version": "../../etc", "history": []}')
    with pytest.raises(RegistryError, match="production.json"):
        reg.production()
    (reg.models_dir / "production.json").write_text('{"vers')
    with pytest.raises(RegistryError, match="unreadable"):
        reg.production()


def test_import_zip(tmp_path: Path, reg: ModelRegistry, tiny_model) -> None:
    source = ModelRegistry(tmp_path / "elsewhere")
    v = make(source.models_dir, tiny_model, 0)
    z = source.models_dir / f"model_{v}_deployment.zip"
    assert reg.import_zip(z) == v
    assert [e.version for e in reg.list()] == [v]
    assert (reg.models_dir / z.name).read_bytes() == z.read_bytes()
    reg.promote(v)
    with pytest.raises(RegistryError, match="already"):
        reg.import_zip(z)

    # a member that does not match its hash: refused, nothing left behind
    w = make(source.models_dir, tiny_model, 5)
    src = source.models_dir / f"model_{w}_deployment.zip"
    bad = tmp_path / src.name
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, data + b"\n" if name == "metadata.json" else data)
    with pytest.raises(RegistryError, match=r"metadata\.json: SHA-256 mismatch"):
        reg.import_zip(bad)
    escape = tmp_path / "x" / src.name
    escape.parent.mkdir()
    with zipfile.ZipFile(escape, "w") as zout:
        zout.writestr("../evil.py", b"print('pwned')")
    with pytest.raises(RegistryError, match="refusing member"):
        reg.import_zip(escape)
    assert not (reg.models_dir / "evil.py").exists() and not (tmp_path / "evil.py").exists()
    renamed = tmp_path / "upload.zip"
    shutil.copyfile(src, renamed)
    with pytest.raises(RegistryError, match="is named model_<version>_deployment.zip"):
        reg.import_zip(renamed)
    assert sorted(p.name for p in reg.models_dir.iterdir() if p.name.startswith("model_")) == [f"model_{v}", z.name]
    assert not list(reg.models_dir.glob(".tmp-*"))


GOOD = "20250601_120000_000000_abcdef"
BAD_VERSIONS = [
    "../etc",
    "model_../x",
    "/tmp/x",
    "20250101",
    "",
    "model_",
    GOOD + "\x00",
    "2025\x0001_120000_000000_abcdef",
    GOOD + "\n",
    GOOD + "/../../x",
    "../" + GOOD,
    "model_model_" + GOOD,
    "20250601_120000_000000_ABCDEF",
    "２０２５0601_120000_000000_abcdef",  # fullwidth digits
    "٢٠٢٥0601_120000_000000_abcdef",  # Arabic-Indic digits (a bare \d would accept them)
    GOOD + "_agent6",
    " " + GOOD,
    None,
    20250601,
]


@pytest.mark.parametrize("bad", BAD_VERSIONS, ids=[repr(b)[:30] for b in BAD_VERSIONS])
def test_bad_versions_are_refused_everywhere(reg: ModelRegistry, bad) -> None:
    reg.models_dir.mkdir(parents=True)
    ops = [
        validate_version,
        reg.path,
        reg.show,
        reg.promote,
        reg.delete,
        lambda v: reg.promote(v, force=True),
    ]
    for op in ops:
        with pytest.raises(RegistryError) as info:
            op(bad)
        msg = str(info.value)
        assert "\n" not in msg and ("invalid model version" in msg or "must be a string" in msg)
    assert list(reg.models_dir.iterdir()) == []  # not even a lock file or a pointer


def test_good_versions() -> None:
    assert validate_version(GOOD) == GOOD
    assert validate_version(f"model_{GOOD}") == GOOD
    assert validate_version(f"{GOOD}_agent5") == f"{GOOD}_agent5"
    assert validate_version(new_version())
