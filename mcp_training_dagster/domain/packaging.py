"""Deployment packages: one self-contained folder, and the ZIP the inference side uploads, per model.

Layout, field names and limits follow ``docs/inference-contract.md`` (the inference service's
needs, read from its code). ``models_dir/model_<version>/`` holds:

  model.joblib              the fitted scikit-learn estimator/Pipeline only (unpickles with sklearn alone)
  metadata.json             the contract's metadata (built by the caller), with ``inference_config``
  README.md                 the caller's model card plus a generated "How to use"
  requirements.txt          exact versions installed at build time
  validate_model.py         stdlib + numpy + joblib: hashes first, then input width and predict()
  inference_example.py      a short loading + scoring example
  score_export.py, mcp_*.py (export-record models only) raw export -> windows -> scores, with
                            copies of the very modules that built the training windows
  deployment_manifest.json  files, SHA-256 per file, dependencies, inference_config, readiness

plus ``models_dir/model_<version>_deployment.zip`` with the same files at its root.

Both appear atomically: the folder is built under a ``.tmp-*`` name and renamed, the ZIP is written
under a ``.tmp-*`` name and renamed, so a crash never leaves a ``model_*`` entry that looks complete.
Versions are never overwritten.

Trust: ``joblib.load`` executes pickled code, so every load verifies the manifest's hashes first.
The hashes prove integrity against the manifest, not who built it: packages are trusted input.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import importlib.metadata
import importlib.resources
import io
import json
import math
import os
import platform
import re
import shutil
import stat
import uuid
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from mcp_training_dagster.domain.atomic_files import fsync_dir
from mcp_training_dagster.serving.features import WindowSpec
from mcp_training_dagster.serving.scoring import SCORE_CONVENTION, SCORE_DEFINITION

PACKAGE_FORMAT_VERSION = "2.0"
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
MANIFEST_FILE = "deployment_manifest.json"
README_FILE = "README.md"
REQUIREMENTS_FILE = "requirements.txt"
VALIDATE_FILE = "validate_model.py"
EXAMPLE_FILE = "inference_example.py"
SCORE_EXPORT_FILE = "score_export.py"

INPUT_EXPORT_RECORDS = "export_records"
INPUT_AGENT_VECTOR = "agent_5_value_window_vector"
INPUT_KINDS: tuple[str, ...] = (INPUT_EXPORT_RECORDS, INPUT_AGENT_VECTOR)

MAX_ZIP_BYTES = 100 * 1024 * 1024  # the inference side refuses larger uploads
DEFAULT_MAX_EXTRACT_BYTES = 1024**3
DEFAULT_MAX_EXTRACT_MEMBERS = 1_000
DEPENDENCIES: tuple[str, ...] = ("scikit-learn", "numpy", "pandas", "joblib", "pyarrow", "pydantic")
# Shipped as mcp_<name>.py: the serving core, the mcp_training_dagster/serving/ subpackage (every module in it;
# a test checks this list against the folder).
SCORING_MODULES: tuple[str, ...] = (
    "exports",
    "validation",
    "events",
    "feature_catalog",
    "window_arrays",
    "record_flags",
    "features",
    "calibration",
    "scoring",
)

# The project's version format (training.new_version(): UTC time to the microsecond + 6 random hex
# digits), optionally the agent-variant suffix. ASCII digits only: ``\d`` would accept other scripts'.
AGENT_SUFFIX = "_agent5"
VERSION_RE = re.compile(r"[0-9]{8}_[0-9]{6}_[0-9]{6}_[0-9a-f]{6}(?:_agent5)?")
DIR_PREFIX = "model_"
ZIP_SUFFIX = "_deployment.zip"


class PackageError(ValueError):
    """A package cannot be built, verified or unpacked; the message names the file and the problem."""


@dataclass(frozen=True)
class PackageInfo:
    version: str  # bare version (the folder is ``model_<version>``)
    path: Path
    zip_path: Path
    files: tuple[str, ...]  # every file in the folder and at the ZIP's root, manifest last
    file_hashes: dict[str, str]  # SHA-256 of every file but the manifest

    @property
    def zip_bytes(self) -> int:
        return self.zip_path.stat().st_size


@dataclass(frozen=True)
class LoadedPackage:
    pipeline: Any
    metadata: dict[str, Any]
    manifest: dict[str, Any]
    path: Path


# ----------------------------------------------------------------------------- small helpers
def check_version(version: Any) -> str:
    """``<version>`` or ``model_<version>`` -> ``<version>``; anything else (path parts, other
    scripts' digits, NUL, whitespace) is refused, so a version can be joined to a path safely."""
    if not isinstance(version, str):
        raise PackageError(f"model version must be a string, got {type(version).__name__}")
    bare = version[len(DIR_PREFIX) :] if version.startswith(DIR_PREFIX) else version
    if not VERSION_RE.fullmatch(bare):
        shown = repr(version) if len(version) <= 80 else repr(version[:77]) + "..."
        raise PackageError(
            f"invalid model version {shown}: expected YYYYMMDD_HHMMSS_ffffff_<6 hex>[{AGENT_SUFFIX}], optionally prefixed 'model_'"
        )
    return bare


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_ready(value: Any) -> Any:
    """Plain JSON types; non-finite floats become null (strict JSON readers reject NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_ready(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (datetime,)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    raise PackageError(f"metadata value of type {type(value).__name__} is not JSON-serialisable: {value!r:.80}")


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(_json_ready(doc), indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _template(name: str) -> bytes:
    return (importlib.resources.files("mcp_training_dagster") / "package_files" / name).read_bytes()


def installed_versions(names: Iterable[str] = DEPENDENCIES) -> dict[str, str]:
    """Exact installed versions (what the model was trained and pickled with)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise PackageError(f"{name} is not installed, so requirements.txt cannot pin it") from None
    return out


def _builder_version() -> str:
    try:
        return importlib.metadata.version("mcp-training-dagster")
    except importlib.metadata.PackageNotFoundError:
        return "source"


# ------------------------------------------------------------------- standalone scoring code
_PROJECT_IMPORT = re.compile(
    r"^(?P<indent>[ \t]*)from[ \t]+mcp_training_dagster\.(?P<path>[A-Za-z_][A-Za-z0-9_.]*)[ \t]+import\b",
    re.MULTILINE,
)


def rewrite_imports(source: str, module: str) -> str:
    """``from mcp_training_dagster.serving.X import ...`` -> ``from mcp_X import ...`` for shipped X.

    Anything else naming the package (another module, ``import mcp_training_dagster...``, a string)
    fails loudly: the copy would not run where the training project is not installed."""

    def sub(m: re.Match[str]) -> str:
        sub_package, _, name = m["path"].partition(".")
        if sub_package != "serving" or name not in SCORING_MODULES:
            raise PackageError(
                f"serving/{module}.py imports mcp_training_dagster.{m['path']}, which is not shipped "
                f"with the scoring code ({', '.join(SCORING_MODULES)})"
            )
        return f"{m['indent']}from mcp_{name} import"

    out = _PROJECT_IMPORT.sub(sub, source)
    left = [i + 1 for i, line in enumerate(out.splitlines()) if "mcp_training_dagster" in line]
    if left:
        raise PackageError(
            f"serving/{module}.py still references mcp_training_dagster on line(s) {left} after rewriting its imports; "
            "the shipped copy would need the training project"
        )
    compile(out, f"mcp_{module}.py", "exec")
    return out


def standalone_modules() -> dict[str, bytes]:
    """``mcp_<name>.py`` -> source: the serving chain, importable without this project."""
    serving = importlib.resources.files("mcp_training_dagster") / "serving"
    out = {}
    for name in SCORING_MODULES:
        src = (serving / f"{name}.py").read_text(encoding="utf-8")
        header = f"# Packaged copy of the training project's serving/{name}.py (imports rewritten). Hash-checked: do not edit.\n"
        out[f"mcp_{name}.py"] = (header + rewrite_imports(src, name)).encode("utf-8")
    return out


# ------------------------------------------------------------------------------- metadata
def records_inference_config(
    threshold: float,
    feature_names: Iterable[str],
    spec: WindowSpec,
    *,
    service_timezone: str = "UTC",
    extra_wifi_processes: Iterable[str] = (),
) -> dict[str, Any]:
    """``inference_config`` of an export-record model: everything score_export.py reads."""
    names = list(feature_names)
    return {
        "input": INPUT_EXPORT_RECORDS,
        "threshold": float(threshold),
        "score_convention": SCORE_CONVENTION,
        "score_definition": SCORE_DEFINITION,
        "predict": "pipeline.predict(X) == -1 exactly when score > threshold",
        "feature_names": names,
        "feature_count": len(names),
        "window_spec": asdict(spec),
        "service_timezone": service_timezone,
        "extra_wifi_processes": list(extra_wifi_processes),
    }


def _final_estimator(pipeline: Any) -> Any:
    steps = getattr(pipeline, "steps", None)
    return steps[-1][1] if steps else pipeline


def _checked_metadata(metadata: Mapping[str, Any], name: str, pipeline: Any) -> dict[str, Any]:
    """A copy with ``model_info.version`` filled in, after checking what the inference side needs:
    a model lacking a required field aborts the inference side's whole scan, a wrong feature count
    makes the agent swallow every call, a threshold its ``predict`` disagrees with flags wrongly."""
    meta = copy.deepcopy(dict(metadata))
    for section in ("model_info", "training_info", "evaluation_info", "inference_config"):
        if not isinstance(meta.get(section), dict):
            raise PackageError(f"metadata.json: '{section}' is missing (the inference contract requires it)")
    mi, ti, ev, ic = meta["model_info"], meta["training_info"], meta["evaluation_info"], meta["inference_config"]
    mi.setdefault("version", name)
    if mi["version"] != name:
        raise PackageError(
            f"metadata.json: model_info.version is {mi['version']!r} but the package is {name!r}; they must be equal"
        )
    missing = [f"model_info.{k}" for k in ("created_at", "model_type") if not mi.get(k)]
    missing += ["training_info.training_samples"] if ti.get("training_samples") is None else []
    missing += ["evaluation_info.basic_metrics"] if not isinstance(ev.get("basic_metrics"), dict) else []
    missing += [
        f"inference_config.{k}"
        for k in ("threshold", "score_convention", "feature_names", "input")
        if ic.get(k) is None
    ]
    if ic.get("input") == INPUT_EXPORT_RECORDS:
        missing += [
            f"inference_config.{k}" for k in ("window_spec", "service_timezone", "extra_wifi_processes") if k not in ic
        ]
    if missing:
        raise PackageError(
            f"metadata.json lacks {', '.join(missing)} (required by the inference contract / score_export.py)"
        )
    if ic["input"] not in INPUT_KINDS:
        raise PackageError(f"metadata.json: inference_config.input {ic['input']!r} is not one of {INPUT_KINDS}")
    if ic["score_convention"] != SCORE_CONVENTION:
        raise PackageError(
            f"metadata.json: score_convention {ic['score_convention']!r}; this project writes {SCORE_CONVENTION!r}"
        )
    threshold = ic["threshold"]
    if not isinstance(threshold, (int, float, np.floating)) or not math.isfinite(float(threshold)):
        raise PackageError(f"metadata.json: inference_config.threshold {threshold!r} is not a finite number")
    ic.setdefault("score_definition", SCORE_DEFINITION)
    names = list(ic["feature_names"])
    ic.setdefault("feature_count", len(names))
    ti.setdefault("feature_names", names)
    ti.setdefault("feature_count", len(names))
    if list(ti["feature_names"]) != names or ti["feature_count"] != len(names) or ic["feature_count"] != len(names):
        raise PackageError("metadata.json: training_info and inference_config disagree on the feature names/count")
    n_in = getattr(pipeline, "n_features_in_", None)
    if not hasattr(pipeline, "predict") or n_in is None:
        raise PackageError(f"model: {type(pipeline).__name__} is not a fitted estimator with predict()")
    if n_in != len(names):
        raise PackageError(f"model takes {n_in} features but metadata.json names {len(names)}")
    offset = getattr(_final_estimator(pipeline), "offset_", None)
    if offset is not None and not math.isclose(float(offset), -float(threshold), rel_tol=0.0, abs_tol=1e-12):
        raise PackageError(
            f"model: the detector's offset_ is {float(offset):.6g}, so its predict() would disagree with "
            f"score > threshold ({float(threshold):.6g}); set offset_ = -threshold after calibrating"
        )
    meta.setdefault("deployment_info", {"status": "available", "deployed_at": None, "deployed_by": None})
    return meta


# ------------------------------------------------------------------------------- README
def how_to_use(metadata: Mapping[str, Any], name: str) -> str:
    """The generated "How to use" section of README.md."""
    ic = metadata["inference_config"]
    threshold = float(ic["threshold"])
    names = list(ic["feature_names"])
    common = (
        "## How to use\n\n"
        "1. **Verify before loading.** `joblib.load` executes pickled code: load only packages you trust, and "
        "check this one first:\n\n"
        "   ```\n   pip install -r requirements.txt\n   python validate_model.py      # exit 0 = sound\n   ```\n\n"
        "   It checks every file's SHA-256 against `deployment_manifest.json` (`file_hashes`) and that the folder "
        "holds no file the manifest does not list, before loading or importing anything, then that `model.joblib` takes {len(names)} features and that `predict()` answers only +1/-1 "
        "in agreement with the threshold.\n\n"
    )
    convention = (
        "**Score convention.** `score = -model.score_samples(X)`: HIGHER means MORE anomalous, and an input is "
        f"anomalous when `score > threshold` (threshold **{threshold:.6g}**, `metadata.json` "
        "`inference_config.threshold`). The estimator's own `predict(X)` returns -1 for exactly those inputs "
        "(its `offset_` is `-threshold`), so callers of `predict` and of `score_samples` agree.\n"
    )
    if ic["input"] == INPUT_EXPORT_RECORDS:
        return (
            common + "2. **Score an export** (the raw JSON or ZIP the router service writes):\n\n"
            "   ```\n   python score_export.py export.json --all --format csv\n   ```\n\n"
            "   One row per window: `device_id, entity, window_start, score, is_anomaly, reasons`, most anomalous "
            "first (without `--all`, only anomalous windows). The feature code is in `mcp_*.py`: exact copies of "
            "the modules that built the training windows, so serving cannot drift from training.\n\n"
            "3. **From Python** (this folder on `sys.path`):\n\n"
            "   ```python\n   from score_export import score_records\n"
            "   table = score_records(records)   # list of export records (dicts)\n   ```\n\n"
            f"   `inference_example.py` is a complete example. Windows: {ic['window_spec'].get('length_minutes')} "
            f"minutes, clock-aligned, per device, station and interface; {len(names)} features.\n\n" + convention
        )
    return (
        common + "2. **Input.** One unscaled vector per 5-minute window over all devices' `hostapd`/`wpa_supplicant` "
        f"records: `[{', '.join(names)}]`, exactly as today's inference agent builds it in its generic branch "
        "(the last two are always 0 there). No scaler: pass the raw counts.\n\n"
        "3. **Call it** as the agent does:\n\n"
        '   ```python\n   model = joblib.load("model.joblib")\n   model.predict([[40, 3, 1, 0, 0]])   # -1 = anomaly\n'
        "   -model.score_samples([[40, 3, 1, 0, 0]])   # score\n   ```\n\n"
        "   `inference_example.py` is a complete example (verification included).\n\n" + convention
    )


# ------------------------------------------------------------------------------- build
def build_package(
    models_dir: Path,
    version: str,
    pipeline: Any,
    metadata: Mapping[str, Any],
    *,
    model_card_md: str,
    deployment_ready: bool,
    max_zip_bytes: int = MAX_ZIP_BYTES,
) -> PackageInfo:
    """Write ``models_dir/model_<version>/`` and ``model_<version>_deployment.zip`` atomically.

    ``metadata`` must be in the contract's shape (see ``model_metadata.metadata_document`` and
    ``agent_variant.agent_metadata``); ``inference_config.input`` decides whether the standalone
    scoring code is shipped (export-record models only). Raises :class:`PackageError` (and leaves
    nothing behind) for a version that exists already, metadata the inference side could not use,
    a model that would need this project to unpickle, or a ZIP of ``max_zip_bytes`` or more."""
    bare = check_version(version)
    name = f"{DIR_PREFIX}{bare}"
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    final, zip_final = models_dir / name, models_dir / f"{name}{ZIP_SUFFIX}"
    if final.exists() or zip_final.exists():
        raise PackageError(f"{final} already exists: a version is never overwritten")
    meta = _checked_metadata(metadata, name, pipeline)
    input_kind = meta["inference_config"]["input"]

    buf = io.BytesIO()
    joblib.dump(pipeline, buf)
    model_bytes = buf.getvalue()
    if b"mcp_training_dagster" in model_bytes:
        raise PackageError("model.joblib would reference mcp_training_dagster: ship scikit-learn objects only")
    deps = installed_versions()
    files: dict[str, bytes] = {
        MODEL_FILE: model_bytes,
        METADATA_FILE: _json_bytes(meta),
        README_FILE: (model_card_md.rstrip() + "\n\n" + how_to_use(meta, name)).encode("utf-8"),
        REQUIREMENTS_FILE: (
            "# Exact versions this model was trained and packaged with.\n"
            + "".join(f"{k}=={v}\n" for k, v in deps.items())
        ).encode("utf-8"),
        VALIDATE_FILE: _template("validate_model.py"),
    }
    if input_kind == INPUT_EXPORT_RECORDS:
        files[EXAMPLE_FILE] = _template("inference_example_records.py")
        files[SCORE_EXPORT_FILE] = _template("score_export.py")
        files.update(standalone_modules())
    else:
        files[EXAMPLE_FILE] = _template("inference_example_agent.py")
    hashes = {k: sha256_bytes(v) for k, v in sorted(files.items())}
    names = [*sorted(files), MANIFEST_FILE]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    metadata_doc = json.loads(files[METADATA_FILE])
    manifest = {
        "model_version": name,
        "deployment_timestamp": now,
        "package_format_version": PACKAGE_FORMAT_VERSION,
        "model_info": metadata_doc["model_info"],
        "training_info": metadata_doc["training_info"],
        "evaluation_info": metadata_doc["evaluation_info"],
        "files": names,
        "file_hashes": hashes,
        "file_integrity": dict(hashes),
        "hash_algorithm": "sha256",
        "dependencies": deps,
        "inference_config": metadata_doc["inference_config"],
        "deployment_ready": bool(deployment_ready),
        "deployment_info": {
            "status": "available" if deployment_ready else "not_ready",
            "deployment_ready": bool(deployment_ready),
            "built_at": now,
            "built_by": f"mcp_training_dagster {_builder_version()}",
            "python_version": platform.python_version(),
            "zip_file": zip_final.name,
        },
        "model_artifacts": {
            "model_file": MODEL_FILE,
            "metadata_file": METADATA_FILE,
            "scaler_file": None,
            "entry_point": SCORE_EXPORT_FILE if input_kind == INPUT_EXPORT_RECORDS else None,
        },
    }
    files[MANIFEST_FILE] = _json_bytes(manifest)

    token = uuid.uuid4().hex[:8]
    tmp_dir = models_dir / f".tmp-{name}-{token}"
    tmp_zip = models_dir / f".tmp-{name}{ZIP_SUFFIX}-{token}"
    dir_lock = None
    try:
        tmp_dir.mkdir()
        dir_lock = os.open(tmp_dir, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(dir_lock, fcntl.LOCK_EX)  # remove_stale_temp leaves a folder being built alone
        for fname in names:
            with open(tmp_dir / fname, "xb") as fh:
                fh.write(files[fname])
                fh.flush()
                os.fsync(fh.fileno())
        fsync_dir(tmp_dir)
        with open(tmp_zip, "xb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
                stamp = datetime.now(timezone.utc).timetuple()[:6]
                for fname in names:
                    info = zipfile.ZipInfo(fname, date_time=stamp)
                    info.create_system = 3  # Unix, so the mode below is honoured by unzip
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    zf.writestr(info, files[fname], compress_type=zipfile.ZIP_DEFLATED)
            fh.flush()
            os.fsync(fh.fileno())
        size = tmp_zip.stat().st_size
        if size >= max_zip_bytes:
            raise PackageError(
                f"{zip_final.name} would be {size:,} bytes; the inference side accepts less than {max_zip_bytes:,}"
            )
        if final.exists():
            raise PackageError(f"{final} appeared while building: a version is never overwritten")
        os.rename(tmp_dir, final)
        os.replace(tmp_zip, zip_final)
        fsync_dir(models_dir)
    finally:
        if dir_lock is not None:
            os.close(dir_lock)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_zip.unlink(missing_ok=True)
    return PackageInfo(version=bare, path=final, zip_path=zip_final, files=tuple(names), file_hashes=hashes)
