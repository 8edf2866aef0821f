"""The serving core's import rule, which packaging relies on: every module in ``mcp_training_dagster/serving/``
is copied into every model package, so it may import only the standard library, its siblings, and the
package's declared dependencies; optional accelerators only under ``try/except ImportError``."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_training_dagster.domain.packaging import DEPENDENCIES, SCORING_MODULES, standalone_modules
from mcp_training_dagster_tests.source_imports import imported_modules

SERVING = Path(__file__).resolve().parents[2] / "mcp_training_dagster" / "serving"
MODULES = sorted(p.stem for p in SERVING.glob("*.py") if p.stem != "__init__")
# Distribution name -> import name, for the declared dependencies.
DECLARED = {{"scikit-learn": "sklearn"}.get(d, d) for d in DEPENDENCIES}


def test_the_shipped_modules_are_the_serving_folder():
    assert sorted(SCORING_MODULES) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_a_serving_module_imports_only_what_a_package_has(module: str):
    tree = ast.parse((SERVING / f"{module}.py").read_text(encoding="utf-8"))
    wrong = []
    for name, guarded in [(i.module, i.guarded) for i in imported_modules(tree) if not i.relative]:
        top = name.split(".")[0]
        if name.startswith("mcp_training_dagster."):
            if not name.startswith("mcp_training_dagster.serving."):
                wrong.append(f"{name} (outside the serving core)")
        elif top in sys.stdlib_module_names or top == "__future__" or top in DECLARED or guarded:
            continue
        else:
            wrong.append(f"{name} (not in the package's requirements; import it under try/except ImportError)")
    assert not wrong, f"serving/{module}.py imports {wrong}"


def test_the_packaged_copies_score_without_the_project_or_its_accelerators(tmp_path: Path):
    """What the inference side has: the package's mcp_*.py and its requirements, nothing else."""
    for name, source in standalone_modules().items():
        (tmp_path / name).write_bytes(source)
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('mcp_training_dagster', 'orjson', 'msgspec', 'dagster'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        f"for m in {[f'mcp_{m}' for m in SCORING_MODULES]!r}:\n"
        "    __import__(m)\n"
        "import mcp_exports\n"
        "doc = mcp_exports._json_from_bytes('x.json', b'{\"export_metadata\": {}, \"data\": []}')\n"
        "assert doc == {'export_metadata': {}, 'data': []}, doc\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", blocker], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
