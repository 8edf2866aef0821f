"""The README's feature table is the code's: every feature, its meaning, and whether the model uses it."""

from pathlib import Path

from mcp_training_dagster.domain.features import FEATURE_DOCS, MODEL_FEATURES

README = Path(__file__).resolve().parents[1] / "README.md"


def test_feature_table_matches_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `") and line.count("|") == 4]
    table = {line.split("|")[1].strip().strip("`"): (line.split("|")[2].strip(), line.split("|")[3].strip()) for line in rows}
    for name, doc in FEATURE_DOCS.items():
        assert name in table, f"README lacks feature {name}"
        marker, meaning = table[name]
        assert meaning == doc, name
        assert (marker == "●") == (name in MODEL_FEATURES), name
