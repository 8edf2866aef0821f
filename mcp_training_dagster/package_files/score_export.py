#!/usr/bin/env python3
"""Score a router export with this package's model: raw records -> feature windows -> scores.

Runs without the training project installed: ``mcp_exports.py`` .. ``mcp_scoring.py`` beside this
file are exact copies of the code that built the training windows (only their imports rewritten),
so serving cannot drift from training. Needs numpy, pandas, pyarrow, pydantic, scikit-learn and
joblib (``pip install -r requirements.txt``).

    python score_export.py EXPORT.json [--history OTHER.json ...] [--format csv|json] [--all]

prints one row per window (device_id, entity, window_start, score, is_anomaly, reasons), most
anomalous first; only the anomalous windows unless ``--all``. ``--history``: the same routers' other
exports (earlier or overlapping); EXPORT's windows are computed on the union of their records, exactly
as training computed them (silence, the usual gap, stations seen before, a router's activity logged in
another file): without it, the first windows of each router in EXPORT have no past, and a sparse log
(a router's system log beside its hostapd export) looks silent. Exit status 1 (with the reason) when
the package fails its integrity check or the export cannot be read.

Score convention: ``score = -model.score_samples(X)``; HIGHER = MORE anomalous; a window is
anomalous when ``score > threshold`` (metadata.json ``inference_config.threshold``), which is
exactly when ``model.predict(X) == -1``.

As a module (this folder on ``sys.path``)::

    from score_export import score_records, load_history
    table = score_records(records)   # records: list of export records (dicts, as in the file)
    table = score_records(records, history=load_history(["earlier.json"]))  # with the routers' past

Immune to shadowing: nothing is imported from this folder before every file in it is verified
(hashes, and no file the manifest does not list): its standard-library imports run with the folder
off ``sys.path`` (``os``/``sys`` are built into the interpreter); the folder is put back only for
the verified ``mcp_*.py`` modules.
"""

import os
import sys

_HERE = os.path.dirname(os.path.realpath(__file__))
_SAVED_PATH = list(sys.path)
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]

import argparse  # noqa: E402  (after the sys.path guard above, on purpose)
import hashlib  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

if __name__ != "__main__":  # imported by a program: leave its sys.path as it was
    sys.path[:] = _SAVED_PATH
del _SAVED_PATH

HERE = Path(_HERE)
PYCACHE = "__pycache__"
MANIFEST = "deployment_manifest.json"
OUTPUT_COLUMNS = ("device_id", "entity", "window_start", "score", "is_anomaly", "reasons")
EXPECTED_INPUT = "export_records"


class PackageIntegrityError(RuntimeError):
    """A package file does not match its manifest hash: nothing from it is loaded or run."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_hashes(directory: Path = HERE) -> list[str]:
    """Problems with the package's files against ``file_hashes`` (checked before any import or load)."""
    try:
        hashes = json.loads((directory / MANIFEST).read_text(encoding="utf-8")).get("file_hashes")
    except (OSError, ValueError, AttributeError) as exc:
        return [f"{MANIFEST}: unreadable ({exc})"]
    if not isinstance(hashes, dict) or not hashes:
        return [f"{MANIFEST}: no 'file_hashes'"]
    problems = []
    for name, expected in sorted(hashes.items()):
        path = directory / str(name)
        if Path(str(name)).name != name or str(name).startswith("."):
            problems.append(f"{name!r}: not a plain file name in the package folder")
        elif not path.is_file():
            problems.append(f"{name}: missing")
        elif _sha256(path) != str(expected).lower():
            problems.append(f"{name}: SHA-256 mismatch with {MANIFEST}: modified or corrupted")
    for name in ("model.joblib", "metadata.json", "score_export.py", "mcp_scoring.py"):
        if name not in hashes:
            problems.append(f"{name}: not covered by {MANIFEST} file_hashes")
    listed = set(hashes) | {MANIFEST}
    for name in sorted(os.listdir(directory)):
        if name not in listed and not (
            name == PYCACHE and (directory / name).is_dir() and not (directory / name).is_symlink()
        ):
            problems.append(f"{name}: not listed in {MANIFEST}; a package holds only the files its manifest lists")
    return problems


_PACKAGE: dict[str, Any] = {}


def load_package() -> dict[str, Any]:
    """Verify, then import the shipped feature code and load the model (once per process)."""
    if _PACKAGE:
        return _PACKAGE
    problems = verify_hashes(HERE)
    if problems:
        raise PackageIntegrityError("; ".join(problems))
    meta = json.loads((HERE / "metadata.json").read_text(encoding="utf-8"))
    cfg = meta["inference_config"]
    if cfg.get("input") != EXPECTED_INPUT:
        raise PackageIntegrityError(f"this model takes {cfg.get('input')!r}, not export records")
    if str(HERE) not in sys.path:  # verified: only listed files are here now
        sys.path.insert(0, str(HERE))
    before = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # keep the verified folder exactly as packaged (no __pycache__)
    try:
        import joblib
        import mcp_features
        import mcp_scoring
    finally:
        sys.dont_write_bytecode = before
    _PACKAGE.update(
        scoring=mcp_scoring,
        model=joblib.load(HERE / "model.joblib"),
        metadata=meta,
        threshold=float(cfg["threshold"]),
        feature_names=list(cfg["feature_names"]),
        spec=mcp_features.WindowSpec.from_dict(cfg["window_spec"]),
        options={
            "service_timezone": cfg.get("service_timezone", "UTC"),
            "extra_wifi_processes": tuple(cfg.get("extra_wifi_processes") or ()),
        },
    )
    return _PACKAGE


def load_history(paths: "list[str | Path] | tuple[str | Path, ...]") -> "Any":
    """Earlier export files of the same routers -> their validated records (one table, or None for none),
    for the ``history`` of :func:`score_records` / :func:`score_file`."""
    if not paths:
        return None
    pkg = load_package()
    import pandas as pd

    frames = [pkg["scoring"].export_file_records(p, **pkg["options"]) for p in paths]
    return pd.concat(frames, ignore_index=True).sort_values(["timestamp", "id"], kind="stable").reset_index(drop=True)


def score_records(records: list[dict[str, Any]], *, source: str = "records", history: "Any" = None) -> "Any":
    """Export records (dicts as in an export's ``data``) -> one row per window, most anomalous first:
    ``device_id, entity, entity_kind, window_start, score, is_anomaly, reasons`` (a pandas DataFrame).
    ``history``: :func:`load_history` of the same routers' other exports (windows computed on the union)."""
    pkg = load_package()
    windows = pkg["scoring"].records_to_windows(records, pkg["spec"], source=source, history=history, **pkg["options"])
    return pkg["scoring"].score_table(windows, pkg["model"], pkg["threshold"], pkg["feature_names"])


def score_file(path: str | Path, history: "Any" = None) -> "Any":
    """An export file (JSON, or ZIP holding data.json) -> the same table as :func:`score_records`."""
    pkg = load_package()
    windows = pkg["scoring"].export_file_windows(path, pkg["spec"], history=history, **pkg["options"])
    return pkg["scoring"].score_table(windows, pkg["model"], pkg["threshold"], pkg["feature_names"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a router export with this model package.")
    parser.add_argument("export", help="export file (.json, or .zip holding data.json)")
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.add_argument("--all", action="store_true", help="print every window, not only the anomalous ones")
    parser.add_argument(
        "--history",
        action="append",
        default=[],
        metavar="OTHER",
        help="another export of the same routers, earlier or overlapping (repeatable): windows are computed on "
        "the union, as in training",
    )
    args = parser.parse_args(argv)
    try:
        table = score_file(args.export, history=load_history(args.history))
    except PackageIntegrityError as exc:
        for line in str(exc).split("; "):
            print(f"INVALID {line}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"ERROR {args.export}: {exc}", file=sys.stderr)
        return 1
    if not args.all:
        table = table[table["is_anomaly"]]
    table = table.loc[:, list(OUTPUT_COLUMNS)]
    try:
        if args.format == "csv":
            table.to_csv(sys.stdout, index=False)
        else:
            rows = [
                {
                    "device_id": str(r[0]),
                    "entity": str(r[1]),
                    "window_start": str(r[2]),
                    "score": float(r[3]),
                    "is_anomaly": bool(r[4]),
                    "reasons": str(r[5]),
                }
                for r in table.itertuples(index=False, name=None)
            ]
            json.dump(rows, sys.stdout, indent=1)
            sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
