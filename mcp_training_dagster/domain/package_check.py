"""Reading packages back: verify a folder or ZIP against its manifest, load it, unpack a ZIP safely.

The other half of :mod:`packaging` (which builds them): ``joblib.load`` executes pickled code, so every
load verifies the manifest's SHA-256 of each file first, and an uploaded ZIP is checked member by member
before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import Any

import joblib

from mcp_training_dagster.serving.exports import sha256_file
from mcp_training_dagster.domain.packaging import (
    DEFAULT_MAX_EXTRACT_BYTES,
    DEFAULT_MAX_EXTRACT_MEMBERS,
    MANIFEST_FILE,
    METADATA_FILE,
    MODEL_FILE,
    LoadedPackage,
    PackageError,
)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise PackageError(f"{path}: unreadable ({exc})") from None
    if not isinstance(doc, dict):
        raise PackageError(f"{path}: not a JSON object")
    return doc


def _plain_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\x00")
        and not name.startswith(".")
    )


PYCACHE = "__pycache__"  # Python's byte-code cache: a .pyc there is never imported without its listed source


def verify_package(path: Path, *, allow_pycache: bool = True) -> dict[str, Any]:
    """Check every file against the manifest's ``file_hashes`` (nothing is unpickled); returns the manifest.

    The folder must also hold nothing the manifest does not list: a planted ``joblib.py`` beside the
    model would be imported by any script run from the folder. ``allow_pycache`` tolerates Python's
    ``__pycache__`` folder (created when the scripts are imported; never imported without a listed
    source); an imported package must not even have that. Raises :class:`PackageError` naming each
    file that is missing, differs or is not listed."""
    d = Path(path)
    manifest = _read_json(d / MANIFEST_FILE)
    hashes = manifest.get("file_hashes")
    if not isinstance(hashes, dict) or not hashes:
        raise PackageError(f"{d.name}/{MANIFEST_FILE}: no file_hashes, so nothing can be verified")
    problems = [f"{d.name}/{f}: not covered by file_hashes" for f in (MODEL_FILE, METADATA_FILE) if f not in hashes]
    for fname, expected in sorted(hashes.items()):
        if not _plain_name(fname):
            problems.append(f"{d.name}/{fname!r}: not a plain file name")
        elif not (d / fname).is_file() or (d / fname).is_symlink():
            problems.append(f"{d.name}/{fname}: missing (or not a regular file)")
        else:
            actual = sha256_file(d / fname)
            if actual != str(expected).lower():
                problems.append(
                    f"{d.name}/{fname}: SHA-256 mismatch (manifest {str(expected)[:16]}..., file {actual[:16]}...)"
                )
    listed = set(hashes) | {MANIFEST_FILE}
    for entry in sorted(os.listdir(d)):
        pycache = allow_pycache and entry == PYCACHE and (d / entry).is_dir() and not (d / entry).is_symlink()
        if entry not in listed and not pycache:
            problems.append(f"{d.name}/{entry}: not listed in the manifest (a package holds only the files it lists)")
    if problems:
        raise PackageError("package failed verification, not loading it: " + "; ".join(problems))
    return manifest


def verify_zip(
    zip_path: Path, *, expected_manifest: bytes | None = None, max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES
) -> dict[str, Any]:
    """Verify a deployment ZIP itself, the thing handed out: every member a plain, unique, unencrypted
    file name; exactly the files its manifest lists; each member's SHA-256 (streamed, at most
    ``max_bytes`` in all) equal to ``file_hashes``. With ``expected_manifest`` (the verified
    folder's manifest bytes) the ZIP's manifest must be that very manifest. Returns the manifest;
    raises :class:`PackageError` naming the ZIP, the member and the problem."""
    name = Path(zip_path).name
    try:
        zf = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PackageError(f"{name}: not a readable ZIP ({exc})") from None
    with zf:
        infos = zf.infolist()
        problems: list[str] = []
        names = [i.filename for i in infos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise PackageError(f"{name}: duplicate members {dupes[:10]}; refusing an ambiguous package")
        for info in infos:
            why = _member_problem(info)
            if why is None and (info.is_dir() or not _plain_name(info.filename)):
                why = "not a plain file at the ZIP's root"
            if why:
                raise PackageError(f"{name}: refusing member {info.filename!r}: {why}")
        if sum(i.file_size for i in infos) > max_bytes:
            raise PackageError(f"{name}: unpacks to more than {max_bytes:,} bytes")
        if MANIFEST_FILE not in names:
            raise PackageError(f"{name}: no {MANIFEST_FILE}, so nothing can be verified")
        try:
            manifest_bytes = zf.read(MANIFEST_FILE)
            manifest = json.loads(manifest_bytes)
        except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise PackageError(f"{name}/{MANIFEST_FILE}: unreadable ({exc})") from None
        hashes = manifest.get("file_hashes") if isinstance(manifest, dict) else None
        if not isinstance(hashes, dict) or not hashes:
            raise PackageError(f"{name}/{MANIFEST_FILE}: no file_hashes, so nothing can be verified")
        if expected_manifest is not None and manifest_bytes != expected_manifest:
            problems.append(f"{name}/{MANIFEST_FILE}: differs from the verified package folder's manifest")
        problems += [f"{name}/{f}: not covered by file_hashes" for f in (MODEL_FILE, METADATA_FILE) if f not in hashes]
        listed = set(hashes) | {MANIFEST_FILE}
        problems += [
            f"{name}/{n}: not listed in the manifest (a package holds only the files it lists)"
            for n in sorted(set(names) - listed)
        ]
        total = 0
        for fname, expected in sorted(hashes.items()):
            if fname not in names:
                problems.append(f"{name}/{fname}: missing")
                continue
            digest = hashlib.sha256()
            try:
                with zf.open(fname) as src:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > max_bytes:
                            raise PackageError(f"{name}: unpacks to more than {max_bytes:,} bytes")
                        digest.update(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError) as exc:
                problems.append(f"{name}/{fname}: cannot be read ({type(exc).__name__}: {exc})")
                continue
            if digest.hexdigest() != str(expected).lower():
                problems.append(
                    f"{name}/{fname}: SHA-256 mismatch (manifest {str(expected)[:16]}..., ZIP member {digest.hexdigest()[:16]}...)"
                )
    if problems:
        raise PackageError("deployment ZIP failed verification: " + "; ".join(problems))
    return manifest


def load_package(path: Path, *, verify: bool = True) -> LoadedPackage:
    """Verify the hashes (unless ``verify=False``), then load metadata, manifest and model.

    ``verify=False`` is for folders known to be intact (it also accepts a folder without a manifest,
    which the contract allows outside a ZIP; ``manifest`` is then ``{}``)."""
    d = Path(path)
    if verify:
        manifest = verify_package(d)
    else:
        manifest = _read_json(d / MANIFEST_FILE) if (d / MANIFEST_FILE).exists() else {}
    metadata = _read_json(d / METADATA_FILE)
    pipeline = joblib.load(d / MODEL_FILE)
    return LoadedPackage(pipeline=pipeline, metadata=metadata, manifest=manifest, path=d)


# ------------------------------------------------------------------------------- unpack
def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if not name or "\x00" in name:
        return "empty or NUL in its name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        return "absolute or backslash path"
    if any(part in ("", ".", "..") for part in name.rstrip("/").split("/")):
        return "'..', '.' or an empty part in its path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.flag_bits & 0x1:
        return "encrypted"
    return None


def safe_extract(
    zip_path: Path,
    target_dir: Path,
    max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES,
    max_members: int = DEFAULT_MAX_EXTRACT_MEMBERS,
) -> list[Path]:
    """Unpack a ZIP without ever writing outside ``target_dir`` and without unbounded output.

    Every member is checked BEFORE anything is written: absolute names, ``..``/``.`` parts,
    backslashes, symlinks and encrypted members are refused, as are more than ``max_members``
    members or a declared total over ``max_bytes``; while writing, the bytes actually produced are
    counted too (sizes in a ZIP header can lie). Existing files are never overwritten. On any
    problem the files written so far are removed and :class:`PackageError` is raised."""
    target = Path(target_dir)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PackageError(f"{Path(zip_path).name}: not a readable ZIP ({exc})") from None
    written: list[Path] = []
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise PackageError(f"{Path(zip_path).name}: {len(infos)} members, more than the {max_members} allowed")
        declared = 0
        for info in infos:
            why = _member_problem(info)
            if why:
                raise PackageError(f"{Path(zip_path).name}: refusing member {info.filename!r}: {why}")
            declared += info.file_size
            if declared > max_bytes:
                raise PackageError(
                    f"{Path(zip_path).name}: unpacks to more than {max_bytes:,} bytes (member {info.filename!r})"
                )
        target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        total = 0
        try:
            for info in infos:
                dest = target / info.filename
                if not dest.resolve().is_relative_to(root):
                    raise PackageError(f"{Path(zip_path).name}: member {info.filename!r} would land outside {target}")
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    out = open(dest, "xb")
                except FileExistsError:
                    raise PackageError(
                        f"{Path(zip_path).name}: member {info.filename!r} exists already (duplicate name?)"
                    ) from None
                written.append(dest)
                with out, zf.open(info) as src:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > max_bytes:
                            raise PackageError(f"{Path(zip_path).name}: unpacks to more than {max_bytes:,} bytes")
                        out.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            for p in written:
                p.unlink(missing_ok=True)
            raise PackageError(f"{Path(zip_path).name}: cannot be unpacked ({type(exc).__name__}: {exc})") from None
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
    return written
