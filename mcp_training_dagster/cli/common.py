"""What every command shares: one-line errors, the settings, input checks, the data folder's lock, the data root."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from mcp_training_dagster.settings import ConfigError, Settings, config_dir, get_settings

if TYPE_CHECKING:
    from mcp_training_dagster.domain.object_registry import ObjectRegistry
    from mcp_training_dagster.domain.registry import ModelRegistry

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "sample_exports"
# Without config/ (a wheel install): no telemetry, and one model fit at a time across runs (the "training" pool,
# see config/dagster.yaml).
_DEFAULT_INSTANCE_YAML = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"

# $DAGSTER_HOME/dagster.yaml as `up` (and `train`) write it: the template under a first line that says so, with the
# hash of what follows. A file whose hash still matches was not edited: it is replaced when the template changes.
_STAMP = "# Written by `mcp-training up` from {source} (sha256 {digest} of what follows). `up` rewrites it when the "
_STAMP_TAIL = "template changes; once edited, it is left alone."
_STAMP_RE = re.compile(r"^# Written by `mcp-training up` from .* \(sha256 ([0-9a-f]{16}) of what follows\)")
# What `up` wrote before the stamp (exact copies; sha256 of the whole file): config/dagster.yaml as of e15543d,
# 456fb5a, bdb7e34, 88db75b and b0c55d8, and the fallback above before b0c55d8 and since.
_EARLIER_INSTANCE_YAMLS = frozenset(
    {
        "458798c01e289a7fc86c11cec913ccdc807cc58f4386bee5e5ee8826f639c28e",
        "275c37fd29ccea980dbcf4c84c119926beebc19a357c18695debef4a662af35a",
        "7788ac379f25c5bf2f0c0b5829501910937a923cc510e3f395491f94c71b263d",
        "1b0ed3831590d7201b7db578cb242a64a1a1d17855a6c15fb17094dfe0dc2d62",
        "dafdb3057493f79cb6251cab04413a0e565e766fe9258dfae1bc988a9d535869",
        "f8805dc9e6f614c7063da7dcf3562d13a17819c1c5a14d3156d9974de6353777",
        "cf4c1d948614c954f74cbdf8219c8cbe8f0ae8c7ebca1541915786511db9be40",
    }
)
# Settings `up` relies on, checked in an instance config a person edited: (path, value, what it is for).
REQUIRED_INSTANCE_SETTINGS = (
    ("concurrency.pools.default_limit", 1, "one model fit at a time across runs: the training pool"),
)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and a non-zero exit: 2 for usage and input errors, 1 when work failed."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load() -> Settings:
    """The settings, or one line naming the bad config value."""
    try:
        return get_settings()
    except ConfigError as exc:
        fail(str(exc))


def check_input_file(path: Path) -> None:
    """One clear line for a path that cannot be an export, before anything slow happens."""
    if path.is_dir():
        fail(f"{path}: is a folder; pass the export files in it (for example {path}/*.json)")
    if not path.exists():
        fail(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        fail(f"{path}: cannot be read (permission denied)")


# ``--history`` of score and incidents: one option, one meaning.
history_option = click.option(
    "--history",
    "history",
    multiple=True,
    type=click.Path(path_type=Path),
    help="The same routers' other exports (earlier or overlapping): the windows are computed on all their "
    "records, as training did, so gaps, history and a router's activity span files.",
)


def stamp() -> str:
    """A timestamp for log file names (to the microsecond: two commands in one second do not collide)."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def open_registry(settings: Settings) -> ModelRegistry | ObjectRegistry:
    """The registry the pipeline writes to: the local models folder, or ``<object_store>/models`` when
    the deployment is distributed (one rule, ``Settings.models_location``, for every command)."""
    from mcp_training_dagster.domain.object_registry import open_registry as open_location

    return open_location(settings.models_location)


LOCK_NAME = "up.lock"


class DataFolderBusy(RuntimeError):
    """Another ``mcp-training up`` (or ``train``) is using this data folder."""


@contextmanager
def data_folder_lock(dagster_home: Path, holder: str) -> Iterator[int]:
    """Hold ``$DAGSTER_HOME/up.lock`` (an advisory ``flock``) or raise :class:`DataFolderBusy` naming the holder.

    ``up`` keeps the descriptor across ``exec`` into ``dagster dev``, so the lock lives exactly as long as
    the Dagster processes it started: no stale pid files after a crash."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise DataFolderBusy(who) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{holder} (pid {os.getpid()}, since {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC)".encode(), 0)
    try:
        yield fd
    finally:
        os.close(fd)  # closing releases the flock (unless exec'd with it inherited)


class Lock:
    """The data folder's lock, held for the rest of the command (released by ``__exit__`` or at exit)."""

    def __init__(self, cm) -> None:  # noqa: ANN001 - a contextmanager object
        self._cm = cm
        self.fd = cm.__enter__()

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self._cm.__exit__(*exc)


def hold_lock(home: Path, holder: str) -> Lock:
    """Take the data folder's lock for the whole command, or one line saying who holds it."""
    try:
        return Lock(data_folder_lock(home, holder))
    except DataFolderBusy as exc:
        fail(
            f"this data folder ({home.parent}) is in use by {exc}; stop it first, or drop export files into "
            "its landing folder, which it watches"
        )


def prepare_data_root(settings: Settings, with_samples: bool = True) -> dict[str, object]:
    """Create the folders, seed the landing folder with the shipped samples (never overwriting
    a file that is already there) and put the instance config into the Dagster home."""
    t = settings.training
    for folder in (t.data_dir, settings.landing_dir, settings.models_dir, t.dagster_home):
        assert folder is not None  # filled from data_dir when the settings load
        Path(folder).mkdir(parents=True, exist_ok=True)
    if "://" not in settings.asset_storage:
        Path(settings.asset_storage).mkdir(parents=True, exist_ok=True)
    copied: list[str] = []
    if with_samples:
        for sample in sorted(SAMPLES_DIR.glob("*.json")):
            target = settings.landing_dir / sample.name
            if not target.exists():
                tmp = target.with_name(target.name + ".part")  # the sensor ignores *.part
                shutil.copyfile(sample, tmp)
                os.replace(tmp, target)
                copied.append(sample.name)
    instance_yaml, missing = install_instance_yaml(Path(t.dagster_home))  # type: ignore[arg-type]
    # The UI's "Join the Dagster community" prompt would cover the first view; mark it as seen
    # (Dagster keeps that in $DAGSTER_HOME/.nux/nux.yaml; config/dagster.yaml also sets nux.enabled: false).
    nux = Path(t.dagster_home) / ".nux" / "nux.yaml"  # type: ignore[arg-type]
    if not nux.exists():
        nux.parent.mkdir(parents=True, exist_ok=True)
        nux.write_text("seen: 1\n")
    return {
        "dagster_home": str(t.dagster_home),
        "landing_dir": str(settings.landing_dir),
        "copied_samples": copied,
        "instance_yaml": instance_yaml,
        "instance_yaml_missing": missing,
    }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stamped_instance_yaml(template: str, source: str) -> str:
    """The instance config as written into $DAGSTER_HOME: the template under the stamp line."""
    return _STAMP.format(source=source, digest=_sha256(template)[:16]) + _STAMP_TAIL + "\n" + template


def written_by_up(text: str) -> bool:
    """Whether an existing $DAGSTER_HOME/dagster.yaml is as `up` wrote it: stamped and unedited since (its hash
    matches), or an exact copy of a template `up` wrote before the stamp existed."""
    first, _, rest = text.partition("\n")
    match = _STAMP_RE.match(first)
    if match:
        return _sha256(rest)[:16] == match.group(1)
    return _sha256(text) in _EARLIER_INSTANCE_YAMLS


def missing_instance_settings(text: str) -> list[str]:
    """The :data:`REQUIRED_INSTANCE_SETTINGS` an instance config lacks, as ``path: value (what for)``."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return []  # Dagster names the error itself when it loads the file
    missing = []
    for path, value, why in REQUIRED_INSTANCE_SETTINGS:
        node = doc
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            missing.append(f"{path}: {value} ({why})")
    return missing


def install_instance_yaml(home: Path) -> tuple[str, list[str]]:
    """Put the instance config template into ``home/dagster.yaml``: written when absent, rewritten when an earlier
    `up` wrote it and the template changed since (an install made before a setting existed gets it), left alone
    when a person edited it. Returns (``written`` | ``upgraded`` | ``current`` | ``edited``, the required
    settings an edited file lacks)."""
    cdir = config_dir()
    template_path = cdir / "dagster.yaml" if cdir else None
    if template_path is not None and template_path.exists():
        template, source = template_path.read_text(), str(template_path)
    else:
        template, source = _DEFAULT_INSTANCE_YAML, "its built-in default"
    target = home / "dagster.yaml"
    try:
        existing: str | None = target.read_text()
    except FileNotFoundError:
        existing = None
    state = "written" if existing is None else "upgraded"
    if existing == template:
        state = "current"  # an exact copy of the template without the stamp: stamped below, nothing else changes
    elif existing is not None and not written_by_up(existing):
        return "edited", missing_instance_settings(existing)
    elif existing is not None and existing.partition("\n")[2] == template:
        return "current", []
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(stamped_instance_yaml(template, source))
    os.replace(tmp, target)
    return state, []
