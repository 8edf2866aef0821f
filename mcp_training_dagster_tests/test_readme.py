"""The README's feature table is the code's: every feature, its meaning, and whether the model uses it."""

import re
from pathlib import Path

from mcp_training_dagster.serving.features import FEATURE_DOCS, MODEL_FEATURES

README = Path(__file__).resolve().parents[1] / "README.md"


def test_feature_table_matches_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `") and line.count("|") == 4]
    table = {
        line.split("|")[1].strip().strip("`"): (line.split("|")[2].strip(), line.split("|")[3].strip()) for line in rows
    }
    for name, doc in FEATURE_DOCS.items():
        assert name in table, f"README lacks feature {name}"
        marker, meaning = table[name]
        assert meaning == doc, name
        assert (marker == "●") == (name in MODEL_FEATURES), name


def test_layout_names_every_module() -> None:
    """The README's layout block is how a newcomer finds their way: every module and folder of the package
    is named there (package_files' examples and dunder modules aside)."""
    text = README.read_text(encoding="utf-8")
    anchor = text.index("mcp_training_dagster_tests/   mirrors")
    block = text[text.rindex("```", 0, anchor) : text.index("```", anchor)]
    package = README.parent / "mcp_training_dagster"
    unnamed = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if not path.name.startswith("__")
        and "package_files" not in path.parts
        and not re.search(rf"\b{re.escape(path.stem)}\b", block)
    ]
    unnamed += [
        str(d.relative_to(package))
        for d in sorted(package.rglob("*"))
        if d.is_dir() and d.name != "__pycache__" and f"{d.name}/" not in block
    ]
    assert not unnamed, f"README's layout does not name: {unnamed}"
