"""The model registry on a real S3-compatible server (moto on 127.0.0.1): ZIP-last publishing,
hash-verified fetching, and promotion as a compare-and-swap on one small pointer object."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import fsspec
import pytest

from mcp_training_dagster.domain.object_registry import (
    ObjectRegistry,
    PointerConflict,
    default_cache_dir,
    open_registry,
    package_staging,
)
from mcp_training_dagster.domain.registry import ModelRegistry, RegistryError
from mcp_training_dagster_tests.domain.test_registry import make, tiny_model  # noqa: F401  (fixture)

pytestmark = pytest.mark.distributed


@pytest.fixture
def models_url(s3_env) -> str:
    return f"s3://{s3_env.new_bucket()}/fleet/models"


def publish(url: str, tiny_model, *minutes: int, ready: bool = True) -> list[str]:
    out = []
    with package_staging(url) as staging:
        for m in minutes:
            out.append(make(staging, tiny_model, m, ready=ready))
    return out


def test_open_registry_by_location(tmp_path: Path, models_url: str) -> None:
    assert isinstance(open_registry(str(tmp_path)), ModelRegistry)
    assert isinstance(open_registry(models_url), ObjectRegistry)


def test_the_default_cache_is_per_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fetched packages are cached under the user's cache folder, never in one fixed folder of the shared /tmp."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mcp-training" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "mcp-training" / "models"


def test_publish_fetch_promote_rollback_retention(models_url: str, tiny_model, tmp_path: Path) -> None:
    v0, v1, v2 = publish(models_url, tiny_model, 0, 1, 2)
    fs = fsspec.filesystem("s3")
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(models_url, refresh=True)}
    assert {f"model_{v}_deployment.zip" for v in (v0, v1, v2)} <= names and f"model_{v0}" in names
    reg = ObjectRegistry(models_url, cache_dir=tmp_path / "cache")
    assert reg.versions() == [v2, v1, v0] and reg.production() is None
    local = reg.path(v1)
    assert (local / "model.joblib").is_file() and (local / "deployment_manifest.json").is_file()

    reg.promote(v0)
    reg.promote(v1, by="test")
    assert reg.production() == v1 and reg.pointer()["history"] == [v0]
    assert json.loads(fs.cat_file(f"{models_url}/production.json"))["version"] == v1
    assert reg.rollback() == v0 and reg.production() == v0

    with pytest.raises(RegistryError, match="refusing"):
        reg.delete(v0)
    reg.promote(v2)  # production v2, rollback target v0
    assert reg.apply_retention(0) == [v1]
    assert reg.versions() == [v2, v0]
    assert not fs.exists(f"{models_url}/model_{v1}_deployment.zip")


def test_promote_refuses_unready_and_tampered(models_url: str, tiny_model, tmp_path: Path) -> None:
    (bad,) = publish(models_url, tiny_model, 5, ready=False)
    reg = ObjectRegistry(models_url, cache_dir=tmp_path / "cache")
    with pytest.raises(RegistryError, match="not deployment-ready"):
        reg.promote(bad)
    assert reg.promote(bad, force=True)["version"] == bad

    (v,) = publish(models_url, tiny_model, 6)
    import io
    import zipfile

    fs = fsspec.filesystem("s3")
    key = f"{models_url}/model_{v}_deployment.zip"
    buf = io.BytesIO(fs.cat_file(key))
    out = io.BytesIO()
    with zipfile.ZipFile(buf) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data + b" " if info.filename == "README.md" else data)
    fs.pipe_file(key, out.getvalue())
    with pytest.raises(RegistryError, match="cannot promote"):
        ObjectRegistry(models_url, cache_dir=tmp_path / "other-cache").promote(v)


def test_pointer_write_is_conditional(models_url: str, tiny_model, tmp_path: Path) -> None:
    v0, v1 = publish(models_url, tiny_model, 0, 1)
    reg = ObjectRegistry(models_url, cache_dir=tmp_path / "cache")
    reg.promote(v0)
    _, etag = reg._read_pointer()
    reg.promote(v1)  # someone else moved the pointer after we read it
    with pytest.raises(PointerConflict):
        reg._write_pointer({"version": v0, "history": []}, etag)
    assert reg.production() == v1


def test_concurrent_promotions_lose_no_update(models_url: str, tiny_model, tmp_path: Path) -> None:
    vs = publish(models_url, tiny_model, 0, 1, 2)
    errors: list[BaseException] = []

    def promote_many(v: str) -> None:
        try:
            reg = ObjectRegistry(models_url, cache_dir=tmp_path / "cache")
            for _ in range(3):
                reg.promote(v, by=v)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=promote_many, args=(v,)) for v in vs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pointer = ObjectRegistry(models_url).pointer()
    assert pointer["version"] in vs and pointer["version"] not in pointer["history"]
    assert set(pointer["history"]) | {pointer["version"]} == set(vs)  # every promotion was seen by the next
