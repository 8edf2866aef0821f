#!/usr/bin/env python3
"""Check this model package before anything in it is loaded or run.

Standalone: the Python standard library plus numpy and joblib (pinned in requirements.txt); it
does not need the training project. In this order, because ``joblib.load`` executes pickled code:

1. every file named in ``deployment_manifest.json`` ``file_hashes`` must exist and match its SHA-256,
   and the folder must hold no file the manifest does not list; nothing is loaded otherwise;
2. ``model.joblib`` is loaded and must take exactly ``training_info.feature_count`` features;
3. ``predict`` on a zero vector must answer only +1 / -1, and agree with the stored threshold
   (``score = -score_samples(X)``, anomalous when ``score > threshold``, ``predict == -1``).

Usage:  python validate_model.py [PACKAGE_DIR]        (default: the folder holding this file)
Exit status 0 when the package is sound; 1 with one line per problem otherwise.

The hashes prove the files are the ones the manifest describes (no corruption, no partial copy,
no edit after packaging); they do not prove who built the package. Load only packages you trust.

Immune to shadowing: Python puts a script's own folder first on ``sys.path``, so a ``joblib.py`` or
``json.py`` planted beside this file would run instead of the real module. This script takes its
folder off ``sys.path`` before importing anything (``os`` and ``sys`` are built into the
interpreter), so nothing is ever imported from the package folder it checks.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != HERE]

import hashlib  # noqa: E402  (after the sys.path guard above, on purpose)
import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

MANIFEST = "deployment_manifest.json"
MODEL = "model.joblib"
METADATA = "metadata.json"
SCORE_CONVENTION = "higher_is_more_anomalous"
# Python's byte-code cache: harmless (a .pyc there is never imported without its listed source).
PYCACHE = "__pycache__"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _plain_name(name: Any) -> bool:
    """A file directly in the package folder: no folders, no parent references, no hidden files."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and not name.startswith(".")
    )


def verify_hashes(directory: str | Path) -> list[str]:
    """Problems with the package's files against its manifest (empty list = every file intact)."""
    d = Path(directory)
    try:
        manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{MANIFEST}: missing, so no file can be verified"]
    except (OSError, ValueError) as exc:
        return [f"{MANIFEST}: unreadable ({exc})"]
    hashes = manifest.get("file_hashes") if isinstance(manifest, dict) else None
    if not isinstance(hashes, dict) or not hashes:
        return [f"{MANIFEST}: no 'file_hashes', so no file can be verified"]
    problems = []
    for name in (MODEL, METADATA):
        if name not in hashes:
            problems.append(f"{name}: not covered by {MANIFEST} file_hashes")
    for name, expected in sorted(hashes.items()):
        if not _plain_name(name):
            problems.append(f"{name!r}: not a plain file name in the package folder")
            continue
        path = d / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        actual = sha256_file(path)
        if actual != str(expected).lower():
            problems.append(
                f"{name}: SHA-256 mismatch (manifest {str(expected)[:16]}..., file {actual[:16]}...): modified or corrupted"
            )
    for name in manifest.get("files") or []:
        if name != MANIFEST and name not in hashes:
            problems.append(f"{name}: listed in {MANIFEST} files but has no hash")
    problems += unlisted_files(d, set(hashes) | {MANIFEST})
    return problems


def unlisted_files(directory: str | Path, listed: set) -> list:
    """Files in the folder the manifest does not list (a planted ``joblib.py`` would be imported)."""
    d = Path(directory)
    out = []
    for name in sorted(os.listdir(d)):
        if name in listed or (name == PYCACHE and (d / name).is_dir() and not (d / name).is_symlink()):
            continue
        out.append(f"{name}: not listed in {MANIFEST}; a package holds only the files its manifest lists")
    return out


def check_model(directory: str | Path) -> tuple[list[str], str]:
    """Load the (already verified) model and check its input width and predict(); returns (problems, summary)."""
    import joblib
    import numpy as np

    d = Path(directory)
    try:
        meta = json.loads((d / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{METADATA}: unreadable ({exc})"], ""
    cfg = meta.get("inference_config") or {}
    info = meta.get("training_info") or {}
    problems: list[str] = []
    expected = info.get("feature_count")
    names = cfg.get("feature_names") or info.get("feature_names")
    if not isinstance(expected, int):
        problems.append(f"{METADATA}: training_info.feature_count missing")
    elif names is not None and len(names) != expected:
        problems.append(f"{METADATA}: {len(names)} feature_names but feature_count {expected}")
    threshold = cfg.get("threshold")
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        problems.append(f"{METADATA}: inference_config.threshold missing or not a finite number")
    if cfg.get("score_convention") != SCORE_CONVENTION:
        problems.append(
            f"{METADATA}: inference_config.score_convention is {cfg.get('score_convention')!r}, expected {SCORE_CONVENTION!r}"
        )
    try:
        model = joblib.load(d / MODEL)
    except Exception as exc:  # any unpickling failure is a problem to report, not a crash
        return [*problems, f"{MODEL}: cannot be loaded ({type(exc).__name__}: {exc})"], ""
    n = getattr(model, "n_features_in_", None)
    if not hasattr(model, "predict"):
        problems.append(f"{MODEL}: {type(model).__name__} has no predict()")
    if n is None:
        problems.append(f"{MODEL}: {type(model).__name__} has no n_features_in_ (not fitted?)")
    elif isinstance(expected, int) and n != expected:
        problems.append(f"{MODEL}: expects {n} features but {METADATA} feature_count is {expected}")
    if problems:
        return problems, ""
    X = np.zeros((1, int(n)), dtype=np.float64)
    try:
        pred = np.asarray(model.predict(X))
    except Exception as exc:
        return [f"{MODEL}: predict() on a zero vector failed ({type(exc).__name__}: {exc})"], ""
    if pred.shape != (1,) or not set(pred.tolist()) <= {-1, 1}:
        return [f"{MODEL}: predict() returned {pred.tolist()!r}, expected one value in {{-1, +1}}"], ""
    summary = f"{int(n)} features, threshold {threshold:.6g} ({SCORE_CONVENTION})"
    if hasattr(model, "score_samples"):
        score = -float(np.asarray(model.score_samples(X))[0])
        if (score > threshold) != (int(pred[0]) == -1):
            problems.append(
                f"{MODEL}: predict() says {int(pred[0])} on a zero vector but score {score:.6g} vs threshold "
                f"{threshold:.6g} says {'anomalous' if score > threshold else 'normal'}"
            )
    return problems, summary


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else Path(HERE)
    problems = verify_hashes(directory)
    summary = ""
    if not problems:  # never unpickle a file that failed its hash
        problems, summary = check_model(directory)
    if problems:
        for line in problems:
            print(f"INVALID {line}")
        return 1
    n_files = len(json.loads((directory / MANIFEST).read_text(encoding="utf-8"))["file_hashes"])
    print(f"OK {directory.resolve().name}: {n_files} files verified, {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
