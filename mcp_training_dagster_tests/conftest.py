"""Shared fixtures: the real sample exports (shipped in the package) and an isolated data root."""

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

import mcp_training_dagster

SAMPLES = Path(mcp_training_dagster.__file__).parent / "sample_exports"
HOSTAPD_1824 = SAMPLES / "export_asus_hostapd_1824.json"
SYSTEM_35 = SAMPLES / "export_asus_system_35.json"
SYSTEM_19 = SAMPLES / "export_asus_system_19.json"


def shifted_routers(records: pd.DataFrame) -> pd.DataFrame:
    """Three copies of one router's validated records as routers sharing station MACs, each seeing them at other
    times (router-2 first) and router-1 in another order, in (timestamp, id) order: a chunk of whole routers sees
    first appearances the whole table does not."""
    parts = [
        records.assign(
            device=f"router-{k}",
            id=records["id"] + 10_000 * k,
            timestamp=records["timestamp"] + pd.Timedelta(minutes=7 * (2 - k)),
        )
        for k in range(3)
    ]
    parts[1] = parts[1].iloc[::-1]
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["timestamp", "id"], kind="stable", ignore_index=True)


def pytest_configure(config: pytest.Config) -> None:
    """Temporary folders (tmp_path, Dagster's test instances, DAGSTER_HOME of the CLI and `up`) on tmpfs when the
    machine has one with 2 GiB free and TMPDIR does not say otherwise. Dagster's SQLite storage opens, commits and
    closes a connection per event: on a disk that is an fsync each. Measured one after the other (load 2.5-4):
    test_policy's two-training test 136 -> 73 s, test_cli's registry test 172 -> 118 s, with less CPU (kernel time
    halved). Nothing asserts durability across a power cut; the product's own folders are never redirected.
    Set before xdist starts its workers, which inherit it (and so do the processes the tests start)."""
    shm = Path("/dev/shm")
    if "TMPDIR" in os.environ or not shm.is_dir() or not os.access(shm, os.W_OK | os.X_OK):
        return
    free = os.statvfs(shm)
    if free.f_bavail * free.f_frsize >= 2 << 30:  # not a container's 64 MB /dev/shm
        os.environ["TMPDIR"] = str(shm)
        tempfile.tempdir = None  # recomputed from TMPDIR on next use


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLES


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MCP_TRAINING_DATA_DIR with the landing folder created; env overrides cleared."""
    import os

    for key in list(os.environ):
        if key.startswith(("MCP_TRAINING_", "MCP_MODEL_")):
            monkeypatch.delenv(key)
    root = tmp_path / "data"
    (root / "exports").mkdir(parents=True)
    monkeypatch.setenv("MCP_TRAINING_DATA_DIR", str(root))
    return root


@pytest.fixture
def landing(data_dir: Path) -> Path:
    return data_dir / "exports"


def copy_sample(name: str, folder: Path, as_name: str | None = None) -> Path:
    target = folder / (as_name or name)
    shutil.copyfile(SAMPLES / name, target)
    return target


def dagster_cli() -> str:
    """The ``dagster`` executable of the interpreter running the tests (skip when absent)."""
    import shutil
    import sys

    exe = Path(sys.executable).parent / "dagster"
    if exe.exists():
        return str(exe)
    found = shutil.which("dagster")
    if not found:
        pytest.skip("dagster CLI not installed")
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (the end-to-end ones, then those on real servers, then those marked slow: Dagster
    runs, CLI trainings, mypy), the rest in collection order. With two workers (pyproject's addopts) a long test
    started last would leave the other worker idle at the end; started first, the short ones fill in around it.
    Every worker sorts the same way (xdist checks)."""

    def rank(item: pytest.Item) -> int:
        for i, mark in enumerate(("e2e", "distributed", "slow")):
            if item.get_closest_marker(mark):
                return i
        return 3

    items.sort(key=rank)  # stable
