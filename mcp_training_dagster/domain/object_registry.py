"""The model registry on an object store (``s3://bucket/prefix/models``): packages and the production pointer.

The layout is the local registry's, as objects: ``model_<version>/<file>`` for every package file,
``model_<version>_deployment.zip`` and ``production.json``. What differs is how atomicity is had:

* **A version exists when its ZIP exists.** :meth:`ObjectRegistry.publish` uploads the folder's
  files first and the ZIP last (each PUT is atomic), so a listing never shows a half package as a
  version. Reading a version downloads the ZIP into a local cache, unpacks it safely and verifies
  every SHA-256 of its manifest (the same :func:`package_check.verify_package` as locally).
* **Promotion is a compare-and-swap on one small pointer object.** ``production.json`` is
  replaced by a single PUT conditioned on the ETag read just before (``If-Match``; ``If-None-Match:
  *`` for the first promotion). Readers see the old or the new pointer, never half of one, and of
  two concurrent promoters exactly one wins; the loser re-reads and retries, so none of them
  silently overwrites a promotion it did not see. This replaces the local ``fcntl`` lock, which
  cannot span machines. S3 has honoured conditional writes since 2024 (MinIO, Ceph and moto do
  too); a store without them still gets the atomic single-object replace, last writer winning.
* Versions are immutable, so the local cache of fetched packages never needs invalidating.

Credentials and endpoint come from the standard environment (``AWS_ENDPOINT_URL``, ...).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mcp_training_dagster.domain.object_landing import filesystem, is_remote
from mcp_training_dagster.domain.package_check import safe_extract, verify_package
from mcp_training_dagster.domain.packaging import (
    DIR_PREFIX,
    MANIFEST_FILE,
    METADATA_FILE,
    VERSION_RE,
    ZIP_SUFFIX,
    PackageError,
)
from mcp_training_dagster.domain.registry import (
    HISTORY_LIMIT,
    POINTER_FILE,
    ModelEntry,
    ModelRegistry,
    RegistryError,
    deletion_plan,
    model_entry,
    validate_version,
)

CAS_ATTEMPTS = 8
_ZIP_RE = re.compile(rf"{DIR_PREFIX}(.+){re.escape(ZIP_SUFFIX)}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class PointerConflict(RuntimeError):
    """The pointer changed between our read and our conditional write."""


def default_cache_dir() -> Path:
    """Where fetched packages are cached, per user: ``$XDG_CACHE_HOME/mcp-training/models`` (by default
    ``~/.cache/mcp-training/models``). Not a fixed folder in the shared temp directory: another user's
    processes could neither write there nor plant a package in it."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory: a per-user folder in the temp directory
            base = str(Path(tempfile.gettempdir()) / f"mcp-training-{os.getuid()}")
    return Path(base) / "mcp-training" / "models"


class ObjectRegistry:
    """Packages and a production pointer under an object-store prefix (see the module docstring).

    What :class:`registry.ModelRegistry` offers the pipeline and ``mcp-training models``, with the same
    meaning: ``versions``, ``list``, ``show``, ``path`` (a verified local copy), ``deployment_zip``,
    ``production``, ``pointer``, ``predecessor``, ``promote``, ``rollback``, ``delete``,
    ``apply_retention``; plus ``publish``. (``import_zip`` is local only: publish through a run.)"""

    def __init__(self, location: str, cache_dir: Path | None = None) -> None:
        self.location = location.rstrip("/")
        self.fs, self.root = filesystem(self.location)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()

    # ------------------------------------------------------------------ objects
    def _key(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _zip_name(self, bare: str) -> str:
        return f"{DIR_PREFIX}{bare}{ZIP_SUFFIX}"

    def versions(self) -> list[str]:
        """Versions whose ZIP is published, newest first (the version string starts with its UTC time)."""
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False, refresh=True)]
        except FileNotFoundError:
            return []
        out = [m[1] for n in names if (m := _ZIP_RE.fullmatch(n)) and VERSION_RE.fullmatch(m[1])]
        return sorted(out, reverse=True)

    def find_by_fingerprint(self, fingerprint: str) -> str | None:
        """The newest version trained on exactly these inputs (as :meth:`ModelRegistry.find_by_fingerprint`)."""
        for bare in self.versions():
            try:
                doc = json.loads(self.fs.cat_file(self._key(f"{DIR_PREFIX}{bare}/{METADATA_FILE}")))
            except (FileNotFoundError, ValueError):
                continue
            info = doc.get("training_info") if isinstance(doc, dict) else None
            if isinstance(info, dict) and info.get("input_fingerprint") == fingerprint:
                return bare
        return None

    def _json(self, key: str) -> dict[str, Any]:
        doc = json.loads(self.fs.cat_file(self._key(key)))
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        return doc

    def list(self) -> list[ModelEntry]:
        """Every version, newest first (as :meth:`ModelRegistry.list`), read from the folder objects."""
        prod = self.production()
        entries = []
        for bare in self.versions():
            folder = f"{DIR_PREFIX}{bare}"
            url = f"{self.location}/{folder}"
            try:
                meta, manifest = self._json(f"{folder}/{METADATA_FILE}"), self._json(f"{folder}/{MANIFEST_FILE}")
                entries.append(model_entry(bare, url, meta, manifest, prod))
            except (OSError, ValueError) as exc:
                entries.append(model_entry(bare, url, {}, {}, prod, error=f"unreadable package: {exc}"))
        return entries

    def show(self, version: str) -> dict[str, Any]:
        """Everything about one version (as :meth:`ModelRegistry.show`), from its verified local copy."""
        bare = validate_version(version)
        local = self.path(bare)
        pointer = self.pointer()
        with open(local / METADATA_FILE, encoding="utf-8") as fh:
            metadata = json.load(fh)
        with open(local / MANIFEST_FILE, encoding="utf-8") as fh:
            manifest = json.load(fh)
        return {
            "version": bare,
            "name": local.name,
            "path": f"{self.location}/{local.name}",
            "zip_path": f"{self.location}/{self._zip_name(bare)}",
            "local_copy": str(local),
            "is_production": bool(pointer and pointer["version"] == bare),
            "is_rollback_target": self.predecessor() == bare,
            "production_pointer": pointer if pointer and pointer["version"] == bare else None,
            "metadata": metadata,
            "manifest": manifest,
        }

    def deployment_zip(self, version: str) -> Path:
        """The version's deployment ZIP, downloaded once into the local cache."""
        bare = validate_version(version)
        local = self.cache_dir / self._zip_name(bare)
        if not local.is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".tmp-{local.name}-{uuid.uuid4().hex[:8]}")
            try:
                tmp.write_bytes(self.fs.cat_file(self._key(self._zip_name(bare))))
                tmp.replace(local)
            except FileNotFoundError:
                raise RegistryError(f"no model {bare} in {self.location}") from None
            finally:
                tmp.unlink(missing_ok=True)
        return local

    def _exists(self, bare: str) -> bool:
        self.fs.invalidate_cache(self.root)
        return bool(self.fs.exists(self._key(self._zip_name(bare))))

    def publish(self, staging: Path) -> builtins.list[str]:
        """Upload every package built in ``staging`` (folders and ZIPs by ``build_package``):
        folder files first, manifest after them, the ZIP last. Returns the versions published."""
        published = []
        for zip_path in sorted(Path(staging).glob(f"{DIR_PREFIX}*{ZIP_SUFFIX}")):
            m = _ZIP_RE.fullmatch(zip_path.name)
            if not m:
                continue
            bare = validate_version(m[1])
            if self._exists(bare):
                raise RegistryError(f"{self.location}/{zip_path.name} already exists: a version is never overwritten")
            folder = Path(staging) / f"{DIR_PREFIX}{bare}"
            files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.name == MANIFEST_FILE)
            for f in files:
                self.fs.pipe_file(self._key(f"{folder.name}/{f.name}"), f.read_bytes())
            self.fs.pipe_file(self._key(zip_path.name), zip_path.read_bytes())
            published.append(bare)
        self.fs.invalidate_cache(self.root)
        return published

    def path(self, version: str) -> Path:
        """A local, hash-verified copy of the version's package folder (downloaded once, cached)."""
        bare = validate_version(version)
        name = f"{DIR_PREFIX}{bare}"
        local = self.cache_dir / name
        if local.is_dir():
            return local
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        tmp_zip, tmp_dir = self.cache_dir / f".tmp-{name}-{token}.zip", self.cache_dir / f".tmp-{name}-{token}"
        try:
            try:
                tmp_zip.write_bytes(self.fs.cat_file(self._key(self._zip_name(bare))))
            except FileNotFoundError:
                raise RegistryError(f"no model {bare} in {self.location}") from None
            safe_extract(tmp_zip, tmp_dir)
            verify_package(tmp_dir)
            try:
                tmp_dir.rename(local)
            except OSError:  # another process cached it meanwhile
                pass
        except PackageError as exc:
            raise RegistryError(f"{self.location}/{self._zip_name(bare)}: {exc}") from None
        finally:
            tmp_zip.unlink(missing_ok=True)
            shutil.rmtree(tmp_dir, ignore_errors=True)
        return local

    # ------------------------------------------------------------------ pointer
    def _read_pointer(self) -> tuple[dict[str, Any] | None, str | None]:
        key = self._key(POINTER_FILE)
        try:
            self.fs.invalidate_cache(key)
            info = self.fs.info(key)
            raw = self.fs.cat_file(key)
        except FileNotFoundError:
            return None, None
        etag = info.get("ETag")
        try:
            doc = json.loads(raw)
            doc["version"] = validate_version(doc.get("version"))
            doc["history"] = [validate_version(h) for h in doc.get("history", [])]
        except (ValueError, TypeError, AttributeError) as exc:
            raise RegistryError(f"{self.location}/{POINTER_FILE} is unreadable ({exc}); restore or delete it") from None
        return doc, etag

    def _write_pointer(self, doc: dict[str, Any], etag: str | None) -> None:
        """One conditional PUT: If-Match the ETag we read (If-None-Match when there was none)."""
        body = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
        key = self._key(POINTER_FILE)
        if not hasattr(self.fs, "call_s3"):
            self.fs.pipe_file(key, body)  # no conditional writes here: atomic replace, last writer wins
            return
        bucket, obj, _ = self.fs.split_path(key)
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=obj, Body=body, ContentType="application/json", **cond)
        except OSError as exc:  # s3fs maps 412 PreconditionFailed to FileExistsError / EINVAL
            if (
                "pre-condition" in str(exc).lower()
                or "precondition" in str(exc).lower()
                or isinstance(exc, FileExistsError)
            ):
                raise PointerConflict(str(exc)) from None
            raise
        finally:
            self.fs.invalidate_cache(key)

    def _swap(self, change: Any) -> Any:
        """Read the pointer, compute the new one with ``change(current) -> (new_doc, result)``, write it
        conditionally; retried when another writer got there first."""
        for _ in range(CAS_ATTEMPTS):
            current, etag = self._read_pointer()
            new, result = change(current)
            if new is None:
                return result
            try:
                self._write_pointer(new, etag)
                return result
            except PointerConflict:
                continue
        raise RegistryError(f"{self.location}/{POINTER_FILE}: gave up after {CAS_ATTEMPTS} concurrent updates")

    def pointer(self) -> dict[str, Any] | None:
        return self._read_pointer()[0]

    def production(self) -> str | None:
        doc = self.pointer()
        return doc["version"] if doc else None

    def predecessor(self) -> str | None:
        doc = self.pointer()
        if not doc:
            return None
        present = set(self.versions())
        return next((h for h in doc["history"] if h != doc["version"] and h in present), None)

    def _verified_manifest(self, bare: str, action: str) -> dict[str, Any]:
        try:
            return verify_package(self.path(bare))
        except (PackageError, RegistryError) as exc:
            raise RegistryError(f"cannot {action} {bare}: {exc}") from None

    def promote(self, version: str, by: str = "cli", *, force: bool = False) -> dict[str, Any]:
        """Make ``version`` production after verifying its files (refuses a not-ready package unless ``force``)."""
        bare = validate_version(version)
        manifest = self._verified_manifest(bare, "promote")
        if manifest.get("deployment_ready") is not True and not force:
            raise RegistryError(
                f"cannot promote {bare}: its manifest says it is not deployment-ready; force to override"
            )

        def change(current: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
            if current and current["version"] == bare:
                return None, current
            history = [current["version"], *current["history"]] if current else []
            history = list(dict.fromkeys(h for h in history if h != bare))[:HISTORY_LIMIT]
            doc = {
                "version": bare,
                "promoted_at": _now(),
                "promoted_by": str(by),
                "history": history,
                "action": "promote",
            }
            return doc, doc

        return self._swap(change)

    def rollback(self, by: str = "cli") -> str:
        """Production back to the previous production version still present."""
        present = set(self.versions())

        def change(current: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
            if not current:
                raise RegistryError("cannot roll back: no production model yet")
            history = current["history"]
            for i, h in enumerate(history):
                if h != current["version"] and h in present:
                    self._verified_manifest(h, "roll back to")
                    return {
                        "version": h,
                        "promoted_at": _now(),
                        "promoted_by": str(by),
                        "history": history[i + 1 :],
                        "action": "rollback",
                        "rolled_back_from": current["version"],
                    }, h
            raise RegistryError(
                f"cannot roll back from {current['version']}: no earlier production version in {self.location}"
            )

        return self._swap(change)

    # ------------------------------------------------------------------ removal
    def _remove(self, bare: str) -> None:
        self.fs.rm_file(self._key(self._zip_name(bare)))  # the version disappears with its ZIP
        folder = self._key(f"{DIR_PREFIX}{bare}")
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(folder, recursive=True)
        self.fs.invalidate_cache(self.root)

    def _protected(self) -> dict[str, str]:
        prod, pred = self.production(), self.predecessor()
        return {
            **({pred: "it is the version a rollback would return to"} if pred else {}),
            **({prod: "it is the production model"} if prod else {}),
        }

    def delete(self, version: str) -> builtins.list[str]:
        """Remove a version and its agent variant (as :meth:`ModelRegistry.delete`); returns what was deleted."""
        bare = validate_version(version)
        present = self.versions()
        if bare not in present:
            raise RegistryError(f"cannot delete {bare}: no such model in {self.location}")
        doomed = deletion_plan(bare, present.__contains__, self._protected())
        for v in doomed:
            self._remove(v)
        return doomed

    def apply_retention(self, keep: int) -> builtins.list[str]:
        """Keep the newest ``keep`` versions plus production and its rollback target."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise RegistryError(f"keep must be a whole number >= 0, got {keep!r}")
        versions = self.versions()
        kept = set(versions[:keep]) | set(self._protected())
        deleted = [v for v in versions if v not in kept]
        for v in deleted:
            self._remove(v)
        return deleted


def open_registry(location: str) -> ModelRegistry | ObjectRegistry:
    """The registry at ``location``: a local folder (:class:`ModelRegistry`) or an object-store prefix."""
    return ObjectRegistry(location) if is_remote(location) else ModelRegistry(Path(location.removeprefix("file://")))


@contextlib.contextmanager
def package_staging(location: str) -> Iterator[Path]:
    """Where ``build_package`` writes: the models folder itself, or (object store) a temporary folder
    published to the store when the block completes, then removed."""
    if not is_remote(location):
        yield Path(location.removeprefix("file://"))
        return
    tmp = Path(tempfile.mkdtemp(prefix="mcp-package-"))
    try:
        yield tmp
        ObjectRegistry(location).publish(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
