"""The model registry: the package folders in ``models_dir`` plus a production pointer.

A version is a folder ``model_<version>`` written by :func:`packaging.build_package` (its name is
the only index: nothing else to get out of sync). ``production.json`` names the production
version and the versions that were production before it (newest first), so a rollback needs no
other state. Deployment status lives ONLY in that pointer: ``metadata.json`` and the manifest are
hash-covered and are never edited after packaging.

Safety:
  * every version string from outside goes through :func:`validate_version` (the project's
    version format only), so no operation can be pointed outside ``models_dir``;
  * mutations (promote, rollback, delete, retention, import) hold an exclusive ``fcntl`` lock on
    ``models_dir/.registry.lock``, so two processes cannot interleave them (the lock is not
    re-entrant: methods never call each other's locked parts);
  * the pointer is written to a hidden temporary file and ``os.replace``d, so a reader sees the old
    or the new pointer, never half of one; deletion renames a folder to ``.trash-*`` before removing
    it, so a crash never leaves a half-deleted ``model_*`` folder that looks like a version.

Agent variants (``<version>_agent5``) are ordinary entries: promoting a rich model does NOT
promote its agent variant (nor the other way round), and retention counts them like any version.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mcp_training_dagster.domain.atomic_files import remove_stale_temp, write_atomic
from mcp_training_dagster.domain.package_check import safe_extract, verify_package, verify_zip
from mcp_training_dagster.domain.packaging import (
    AGENT_SUFFIX,
    DEFAULT_MAX_EXTRACT_BYTES,
    DIR_PREFIX,
    MANIFEST_FILE,
    METADATA_FILE,
    ZIP_SUFFIX,
    VERSION_RE,
    PackageError,
    check_version,
)

POINTER_FILE = "production.json"
LOCK_FILE = ".registry.lock"
HISTORY_LIMIT = 50


class RegistryError(ValueError):
    """A registry operation was refused or failed; one line saying why."""


@dataclass(frozen=True)
class ModelEntry:
    version: str  # bare version; the folder is ``model_<version>``
    path: Path | str  # the local folder, or the object-store URL of the package's folder
    created_at: str | None
    model_type: str | None
    input_kind: str | None
    f1: float | None
    roc_auc: float | None
    pr_auc: float | None
    deployment_ready: bool
    is_production: bool
    error: str | None = None  # metadata/manifest unreadable: listed, but not usable

    @property
    def name(self) -> str:
        return f"{DIR_PREFIX}{self.version}"


def validate_version(version: Any) -> str:
    """``<version>`` or ``model_<version>`` -> ``<version>`` (the project's format only), else :class:`RegistryError`."""
    try:
        return check_version(version)
    except PackageError as exc:
        raise RegistryError(str(exc)) from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _section(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """``doc[key]`` when it is an object; {} otherwise (a package of any age or shape still lists)."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def model_entry(
    bare: str,
    path: Path | str,
    meta: dict[str, Any],
    manifest: dict[str, Any],
    production: str | None,
    error: str | None = None,
) -> ModelEntry:
    """One line of ``models list`` from a package's metadata.json and manifest (either registry)."""
    mi, ic = _section(meta, "model_info"), _section(meta, "inference_config")
    bm = _section(_section(meta, "evaluation_info"), "basic_metrics")
    return ModelEntry(
        version=bare,
        path=path,
        created_at=mi.get("created_at"),
        model_type=mi.get("model_type"),
        input_kind=ic.get("input"),
        f1=_metric(bm, "f1_score"),
        roc_auc=_metric(bm, "roc_auc"),
        pr_auc=_metric(bm, "pr_auc"),
        deployment_ready=manifest.get("deployment_ready") is True,
        is_production=bare == production,
        error=error,
    )


def deletion_plan(bare: str, exists: Callable[[str], bool], protected: dict[str, str]) -> list[str]:
    """What deleting ``bare`` removes: the version and its agent variant (useless without it), or
    :class:`RegistryError` when either is protected (then nothing is deleted). Shared by both registries."""
    variant = f"{bare}{AGENT_SUFFIX}" if not bare.endswith(AGENT_SUFFIX) else None
    doomed = [bare] + ([variant] if variant and exists(variant) else [])
    for v in doomed:
        if v in protected:
            raise RegistryError(f"refusing to delete {v}: {protected[v]}")
    return doomed


class ModelRegistry:
    """Versioned packages in ``models_dir`` with a production pointer (see the module docstring)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)

    # ------------------------------------------------------------------ paths and reading
    def _dir(self, bare: str) -> Path:
        return self.models_dir / f"{DIR_PREFIX}{bare}"

    def _zip(self, bare: str) -> Path:
        return self.models_dir / f"{DIR_PREFIX}{bare}{ZIP_SUFFIX}"

    def path(self, version: str) -> Path:
        """The folder of an existing version."""
        bare = validate_version(version)
        d = self._dir(bare)
        if not d.is_dir():
            raise RegistryError(f"no model {bare} in {self.models_dir}")
        return d

    def versions(self) -> list[str]:
        """Versions present (folders named ``model_<valid version>``), newest first.

        Versions begin with their UTC build time to the microsecond, so name order is time order."""
        if not self.models_dir.is_dir():
            return []
        out = []
        for p in self.models_dir.iterdir():
            if not p.name.startswith(DIR_PREFIX) or p.is_symlink() or not p.is_dir():
                continue
            bare = p.name[len(DIR_PREFIX) :]
            if VERSION_RE.fullmatch(bare):
                out.append(bare)
        return sorted(out, reverse=True)

    def _pointer(self) -> dict[str, Any] | None:
        path = self.models_dir / POINTER_FILE
        try:
            doc = _read_json(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path} is unreadable ({exc}); restore it or delete it to clear production") from None
        version = doc.get("version")
        history = doc.get("history", [])
        if not isinstance(history, list):
            raise RegistryError(f"{path}: 'history' is not a list")
        try:
            doc["version"] = validate_version(version)
            doc["history"] = [validate_version(h) for h in history]
        except RegistryError as exc:
            raise RegistryError(f"{path}: {exc}") from None
        return doc

    def production(self) -> str | None:
        """The production version, or None before the first promotion."""
        pointer = self._pointer()
        return pointer["version"] if pointer else None

    def pointer(self) -> dict[str, Any] | None:
        """The production pointer as stored (version, promoted_at, promoted_by, history, ...)."""
        return self._pointer()

    def predecessor(self) -> str | None:
        """The version a rollback would return to: the newest earlier production version still present."""
        pointer = self._pointer()
        if not pointer:
            return None
        return next((h for h in pointer["history"] if h != pointer["version"] and self._dir(h).is_dir()), None)

    def list(self) -> list[ModelEntry]:
        """Every version, newest first, with the figures a person chooses by. ``.tmp-*`` and
        ``.trash-*`` folders, ZIPs, the pointer and anything not named like a version are ignored."""
        prod = self.production()
        entries = []
        for bare in self.versions():
            d = self._dir(bare)
            try:
                entries.append(model_entry(bare, d, _read_json(d / METADATA_FILE), _read_json(d / MANIFEST_FILE), prod))
            except (OSError, ValueError) as exc:
                entries.append(model_entry(bare, d, {}, {}, prod, error=f"unreadable package: {exc}"))
        return entries

    def deployment_zip(self, version: str) -> Path:
        """The version's deployment ZIP as a local file."""
        d = self.path(version)
        z = self._zip(validate_version(version))
        if not z.is_file():
            raise RegistryError(f"{z.name} is missing from {d.parent}")
        return z

    def find_by_fingerprint(self, fingerprint: str) -> str | None:
        """The newest version trained on exactly these inputs (``training_info.input_fingerprint``), if any."""
        for bare in self.versions():
            try:
                info = _read_json(self._dir(bare) / METADATA_FILE).get("training_info")
            except (OSError, ValueError):
                continue
            if isinstance(info, dict) and info.get("input_fingerprint") == fingerprint:
                return bare
        return None

    def show(self, version: str) -> dict[str, Any]:
        """Everything about one version: metadata, manifest, and its place in the production history."""
        d = self.path(version)
        bare = validate_version(version)
        try:
            metadata, manifest = _read_json(d / METADATA_FILE), _read_json(d / MANIFEST_FILE)
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{d.name}: unreadable package ({exc})") from None
        pointer = self._pointer()
        return {
            "version": bare,
            "name": d.name,
            "path": str(d),
            "zip_path": str(self._zip(bare)) if self._zip(bare).is_file() else None,
            "is_production": bool(pointer and pointer["version"] == bare),
            "is_rollback_target": self.predecessor() == bare,
            "production_pointer": pointer if pointer and pointer["version"] == bare else None,
            "metadata": metadata,
            "manifest": manifest,
        }

    # ------------------------------------------------------------------ mutations
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with open(self.models_dir / LOCK_FILE, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _write_pointer(self, pointer: dict[str, Any]) -> None:
        data = (json.dumps(pointer, indent=2) + "\n").encode("utf-8")
        write_atomic(self.models_dir / POINTER_FILE, data)

    def _verified(self, bare: str, action: str) -> dict[str, Any]:
        d = self._dir(bare)
        if not d.is_dir():
            raise RegistryError(f"cannot {action} {bare}: no such model in {self.models_dir}")
        try:
            return verify_package(d)
        except PackageError as exc:
            raise RegistryError(f"cannot {action} {bare}: {exc}") from None

    def promote(self, version: str, by: str = "cli", *, force: bool = False) -> dict[str, Any]:
        """Make ``version`` production (after verifying its files); returns the new pointer.

        A package whose manifest says ``deployment_ready: false`` (it failed its quality gates) is
        refused unless ``force``. Promoting the current production version changes nothing."""
        bare = validate_version(version)
        with self._locked():
            manifest = self._verified(bare, "promote")
            if manifest.get("deployment_ready") is not True and not force:
                raise RegistryError(
                    f"cannot promote {bare}: its manifest says it is not deployment-ready (failed its quality gates); force to override"
                )
            current = self._pointer()
            if current and current["version"] == bare:
                return current
            history = [current["version"], *current["history"]] if current else []
            history = list(dict.fromkeys(h for h in history if h != bare))[:HISTORY_LIMIT]
            pointer = {
                "version": bare,
                "promoted_at": _now(),
                "promoted_by": str(by),
                "history": history,
                "action": "promote",
            }
            self._write_pointer(pointer)
            return pointer

    def rollback(self, by: str = "cli") -> str:
        """Return production to the previous production version still present; returns it.

        The version rolled back from leaves the history (rolling back twice goes further back,
        not forth again)."""
        with self._locked():
            current = self._pointer()
            if not current:
                raise RegistryError("cannot roll back: no production model yet")
            history = current["history"]
            for i, h in enumerate(history):
                if h != current["version"] and self._dir(h).is_dir():
                    self._verified(h, "roll back to")
                    pointer = {
                        "version": h,
                        "promoted_at": _now(),
                        "promoted_by": str(by),
                        "history": history[i + 1 :],
                        "action": "rollback",
                        "rolled_back_from": current["version"],
                    }
                    self._write_pointer(pointer)
                    return h
            raise RegistryError(
                f"cannot roll back from {current['version']}: no earlier production version is still in {self.models_dir}"
            )

    def _remove(self, bare: str) -> None:
        d = self._dir(bare)
        trash = self.models_dir / f".trash-{d.name}-{uuid.uuid4().hex[:8]}"
        os.rename(d, trash)  # the version disappears atomically; the slow part happens out of sight
        self._zip(bare).unlink(missing_ok=True)
        shutil.rmtree(trash, ignore_errors=True)

    def _protected(self) -> dict[str, str]:
        prod, pred = self.production(), self.predecessor()
        out = {}
        if pred:
            out[pred] = "it is the version a rollback would return to"
        if prod:
            out[prod] = "it is the production model"
        return out

    def delete(self, version: str) -> builtins.list[str]:
        """Remove a version (folder and ZIP) and its agent variant, which is useless without it.

        Refuses production and the rollback target (for the variant too: then nothing is deleted).
        Returns the versions deleted."""
        bare = validate_version(version)
        with self._locked():
            if not self._dir(bare).is_dir():
                raise RegistryError(f"cannot delete {bare}: no such model in {self.models_dir}")
            doomed = deletion_plan(bare, lambda v: self._dir(v).is_dir(), self._protected())
            for v in doomed:
                self._remove(v)
            return doomed

    def apply_retention(self, keep: int) -> builtins.list[str]:
        """Keep the newest ``keep`` versions plus production and its rollback target; delete the
        rest (and leftovers of interrupted deletions). Returns the deleted versions, newest first."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise RegistryError(f"keep must be a whole number >= 0, got {keep!r}")
        with self._locked():
            versions = self.versions()
            kept = set(versions[:keep]) | set(self._protected())
            deleted = [v for v in versions if v not in kept]
            for v in deleted:
                self._remove(v)
            for p in self.models_dir.glob(".trash-*"):
                shutil.rmtree(p, ignore_errors=True)
            self.remove_stale_temp()
            return deleted

    def remove_stale_temp(self) -> builtins.list[Path]:
        """Remove what killed builds and imports left (``.tmp-model_*`` folders and ZIPs,
        ``.tmp-import-*``, half-written pointers) once older than an hour and not locked by a writer;
        never a package another run is still building. Returns what was removed."""
        return remove_stale_temp(self.models_dir)

    def import_zip(self, zip_path: Path, *, max_bytes: int | None = None) -> str:
        """Add an uploaded ``model_<version>_deployment.zip``: unpacked safely into a hidden folder,
        hash-verified (nothing is unpickled), its metadata version checked, then renamed into place.
        Returns the version; the ZIP is copied beside the folder."""
        zip_path = Path(zip_path)
        m = re.fullmatch(rf"{DIR_PREFIX}(.+){re.escape(ZIP_SUFFIX)}", zip_path.name)
        if not m:
            raise RegistryError(f"{zip_path.name}: a package ZIP is named model_<version>{ZIP_SUFFIX}")
        bare = validate_version(m[1])
        with self._locked():
            final = self._dir(bare)
            if final.exists():
                raise RegistryError(f"cannot import {bare}: it is already in {self.models_dir}")
            tmp = self.models_dir / f".tmp-import-{bare}-{uuid.uuid4().hex[:8]}"
            try:
                limit = DEFAULT_MAX_EXTRACT_BYTES if max_bytes is None else max_bytes
                verify_zip(zip_path, max_bytes=limit)  # exactly the listed files, each matching its hash
                safe_extract(zip_path, tmp, max_bytes=limit)
                verify_package(tmp, allow_pycache=False)
                info = _read_json(tmp / METADATA_FILE).get("model_info")
                in_meta = info.get("version") if isinstance(info, dict) else None
                if in_meta != final.name:
                    raise PackageError(f"metadata model_info.version is {in_meta!r}, expected {final.name!r}")
                os.rename(tmp, final)
                write_atomic(self._zip(bare), zip_path.read_bytes())
            except (ValueError, OSError) as exc:  # PackageError is a ValueError
                raise RegistryError(f"cannot import {zip_path.name}: {exc}") from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return bare
