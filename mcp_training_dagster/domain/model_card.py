"""The model card: one Markdown page a person reads in the Dagster UI and in the package (MODEL_CARD.md).

Rendered once, by :func:`render`, from typed inputs; every figure goes through :mod:`report`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mcp_training_dagster.domain.promotion import PromotionDecision
from mcp_training_dagster.domain.report import fmt, markdown_table
from mcp_training_dagster.domain.results import Evaluation, Metrics, Selection
from mcp_training_dagster.domain.model_metadata import calibration_card
from mcp_training_dagster.domain.training import TrainedModel

METRIC_COLUMNS = ("n_windows", "n_anomalous", "precision", "recall", "f1_score", "roc_auc", "pr_auc")


def top_windows(model: TrainedModel, windows: pd.DataFrame, n: int = 8) -> pd.DataFrame:
    """The most anomalous training windows with the features that drove them."""
    return model.score_table(windows).head(n)


def _metrics_section(ev: Evaluation | None) -> str:
    if ev is None:
        return "_No evaluation data: no labelled records and nothing to inject into._\n"
    rows = [{"windows": "all", **_metric_row(ev.overall)}]
    rows += [{"windows": kind, **_metric_row(m)} for kind, m in (ev.by_kind or {}).items()]
    d = ev.data
    return (
        f"Source **{d.source}**: {d.description} ({d.windows} windows, {d.anomalous_windows} anomalous).\n\n"
        + markdown_table(rows)
        + f"\n\nDevice-window recall per scenario: {fmt(ev.recall_by_scenario or None)}.  \n"
        f"Flag rate on benign lookalikes: {fmt(ev.benign_flag_rate or None)}.\n"
    )


def _metric_row(m: Metrics) -> dict[str, Any]:
    return {c: getattr(m, c) for c in METRIC_COLUMNS}


def _decision_section(decision: PromotionDecision | None) -> str:
    if decision is None:
        return ""
    rows = [{"gate": g.name, "passed": g.passed, "margin": g.margin, "compared": g.compared} for g in decision.gates]
    warn = "".join(
        f"\n> **Warning:** {w}. Treat its verdicts with care and watch the next retrain.\n" for w in decision.warnings
    )
    return f"\n### Promotion gates\n\n{markdown_table(rows)}\n{warn}"


def _selection_section(sel: Selection | None) -> str:
    if sel is None:
        return "Chosen **n/a**: n/a.\n\n_no candidates evaluated_\n"
    cands = [{"candidate": k, **v} for k, v in sel.candidates.items()]
    table = markdown_table(cands) if cands else "_no candidates evaluated_"
    return f"Chosen **{sel.chosen}**: {sel.criterion}.\n\n{table}\n"


def _of_sample(model: TrainedModel) -> str:
    """Above the fit cap the training statistics are of a sample of whole routers: said where they are shown."""
    how = (model.diagnostics or {}).get("sample") or {}
    if "top_windows" not in how.get("figures", ()):
        return ""
    return f"the {how['windows']} windows of {how['routers']} of {how['of_routers']} routers sampled (diagnostics `sample`)"


def _diagnostics_section(model: TrainedModel) -> str:
    diagnostics = model.diagnostics or {}  # a document with optional keys (evaluation.score_diagnostics)
    rows = [{"diagnostic": k, "value": v} for k, v in diagnostics.items() if k != "score_quantiles"]
    quantiles = diagnostics.get("score_quantiles") or {}
    return (
        f"Fraction of training windows above the threshold: {model.training_flag_rate:.2%}"
        + (f", of {_of_sample(model)}" if _of_sample(model) else "")
        + ".\n\n"
        + (markdown_table(rows) + "\n\n" if rows else "")
        + (f"Training score quantiles: {fmt(quantiles, 4)}.\n" if quantiles else "")
    )


def render(model: TrainedModel, top: pd.DataFrame | None = None, decision: PromotionDecision | None = None) -> str:
    """The whole card: what the model is, how it was judged, what it flags, and its parameters."""
    params = model.detector.model_dump(mode="json")
    kind = model.detector.kind
    param_rows = [
        {"parameter": k, "value": v}
        for k, v in {**params.get(kind, {}), "contamination": params["contamination"]}.items()
    ]
    by_kind = ", ".join(f"{n} {k}" for k, n in model.windows_by_kind.items())
    top_md = ""
    if top is not None and len(top):
        rows = [
            {
                "window": r.window_start,
                "device": r.device_id,
                "entity": f"{r.entity_kind} `{r.entity}`",
                "score": r.score,
                "what stands out (value, +standard units)": r.reasons or "-",
            }
            for r in top.itertuples(index=False)
        ]
        of = f"Of {_of_sample(model)}.\n\n" if _of_sample(model) else ""
        top_md = f"\n### Most anomalous training windows, and what drove them\n\n{of}{markdown_table(rows, digits=4)}\n"
    return (
        f"## {kind} `{model.version}`\n\n"
        f"Trained {model.trained_at} on {model.n_windows} windows ({by_kind}) spanning {model.data_start} .. "
        f"{model.data_end}, in {model.training_seconds:.1f} s. {len(model.feature_names)} features per window "
        "(see metadata.json `feature_descriptions`).\n\n"
        f"**Threshold** {model.threshold:.4f}, convention `{model.score_convention}`: {model.score_definition}. "
        "`predict()` returns -1 exactly for those windows.\n\n"
        f"{calibration_card(model)}"
        "### Evaluation (held-out data with known labels; fitted before the split, never on it)\n\n"
        f"{_metrics_section(model.evaluation)}"
        f"{_decision_section(decision)}\n"
        f"### Detector selection\n\n{_selection_section(model.selection)}\n"
        f"### Diagnostics (unsupervised, not accuracy)\n\n{_diagnostics_section(model)}"
        f"{top_md}\n"
        f"### Parameters\n\n{markdown_table(param_rows)}\n"
    )
