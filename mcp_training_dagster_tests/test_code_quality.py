"""What pyproject.toml promises, checked where CI looks (the README's test command): ruff's rules, mypy's
types, its formatting and ``dg check defs`` (the code location loads the way Dagster's ``dg`` tools load it).

Each tool runs as a subprocess from this interpreter's environment (the ``test`` extra installs them) and a
finding fails the test with the tool's own output.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_training_dagster_tests.source_imports import imported_modules

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # not resolved: the venv's bin/, where its console scripts are

pytestmark = pytest.mark.slow


def _run(args: list[str], *, env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"`{' '.join(args[1:] if args[0] == sys.executable else args)}` failed "
        f"(exit {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def test_ruff_finds_nothing() -> None:
    proc = _run([sys.executable, "-m", "ruff", "check", "--no-cache", "."])
    assert "All checks passed" in proc.stdout


def test_the_code_is_formatted() -> None:
    """``ruff format`` (configured in pyproject.toml) is enforced: the code was reformatted once, in one commit."""
    _run([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."])


def test_mypy_finds_nothing() -> None:
    # files, plugins and the baseline of not-yet-clean modules: [tool.mypy] in pyproject.toml
    proc = _run([sys.executable, "-m", "mypy"])
    assert proc.stdout.startswith("Success:"), proc.stdout[-3000:]


def test_dg_check_defs(data_dir: Path, tmp_path: Path) -> None:
    dg_cli = BIN / "dg"
    assert dg_cli.exists(), f"{dg_cli} is missing: install the test extra (dagster-dg-cli)"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = _run([str(dg_cli), "check", "defs"], env=env)
    assert "All definitions loaded successfully" in proc.stdout + proc.stderr


def test_the_domain_and_the_serving_core_never_import_dagster() -> None:
    """The layer rule (CONTRIBUTING.md): domain/ and serving/ are pure Python, reused by the CLI and packages."""
    package = REPO_ROOT / "mcp_training_dagster"
    offenders = []
    for path in sorted([*(package / "domain").rglob("*.py"), *(package / "serving").rglob("*.py")]):
        for n in (i.module for i in imported_modules(ast.parse(path.read_text(encoding="utf-8")))):
            if n.split(".")[0] == "dagster":
                offenders.append(f"{path.relative_to(REPO_ROOT)}: {n}")
            if path.parent.name == "serving" and n.startswith("mcp_training_dagster.domain"):
                offenders.append(f"{path.relative_to(REPO_ROOT)}: {n}")
    assert not offenders, offenders
