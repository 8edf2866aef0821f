"""Training and evaluation results as values: window metrics, the evaluation they belong to, the detector
selection, and the error training raises when it cannot produce a trustworthy model.

Small frozen dataclasses, built once where the figures are computed and read by attribute everywhere
else. ``as_dict()`` gives exactly the JSON shape ``metadata.json`` and the ``model_evaluation`` document
have always had (docs/inference-contract.md); ``from_dict()`` reads that shape back (models pickled
before these types existed carry it, see ``training.TrainedModel.__setstate__``).

Its own module so that both the window model (``evaluation``, ``training``) and the agent variant
(``agent_variant``) use these without importing each other (``evaluation`` builds the agent's vectors).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np


class TrainingError(ValueError):
    """Training cannot produce a trustworthy model from this data."""


# The figures compared between candidates, plotted in the UI and shown per candidate in the model card.
HEADLINE_METRICS = ("pr_auc", "roc_auc", "f1_score", "precision", "recall")
# The figures metadata.json carries as ``evaluation_info.basic_metrics`` (those that exist).
BASIC_METRICS = ("f1_score", "precision", "recall", "roc_auc", "pr_auc", "accuracy", "threshold_value", "anomaly_ratio")


@dataclass(frozen=True)
class Metrics:
    """Binary window metrics at one threshold (``score > threshold`` = anomalous), with their counts.

    AUCs are ``None`` when only one class is present."""

    n_windows: int
    n_anomalous: int
    n_flagged: int
    true_positives: int
    false_positives: int
    precision: float
    recall: float
    f1_score: float
    accuracy: float
    roc_auc: float | None
    pr_auc: float | None
    threshold_value: float
    anomaly_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Metrics:
        return cls(**{f.name: doc[f.name] for f in fields(cls)})

    def figures(self, names: tuple[str, ...] = HEADLINE_METRICS) -> dict[str, float]:
        """The named figures that exist (an AUC of one class is left out), as floats, in ``names`` order."""
        return {k: float(v) for k in names if (v := getattr(self, k)) is not None}


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> Metrics:
    """Precision, recall, F1 at the stored threshold (``score > threshold`` = anomalous), ROC-AUC and
    PR-AUC over the scores, with the counts they come from. AUCs are ``None`` when only one class is present."""
    # Imported here: this module is part of every code-location load, which needs no scikit-learn (see training.py).
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    pred = s > threshold
    p, r, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    both = 0 < y.sum() < len(y)
    return Metrics(
        n_windows=int(len(y)),
        n_anomalous=int(y.sum()),
        n_flagged=int(pred.sum()),
        true_positives=int((pred & y).sum()),
        false_positives=int((pred & ~y).sum()),
        precision=float(p),
        recall=float(r),
        f1_score=float(f1),
        accuracy=float((pred == y).mean()) if len(y) else 0.0,
        roc_auc=float(roc_auc_score(y, s)) if both else None,
        pr_auc=float(average_precision_score(y, s)) if both else None,
        threshold_value=float(threshold),
        anomaly_ratio=float(pred.mean()) if len(y) else 0.0,
    )


@dataclass(frozen=True)
class EvaluationData:
    """Which data the figures come from: nothing in an evaluation is meaningful without source and size."""

    source: str  # "labelled" | "injected" | "generated" | "none"
    description: str
    split_time: str | None  # models evaluated here were fitted on data before this time
    windows: int
    anomalous_windows: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EvaluationData:
        return cls(**{f.name: doc[f.name] for f in fields(cls)})


# The window model's figures per scenario; the agent variant's single vector has neither kinds nor scenarios.
_SCENARIO_FIELDS = ("by_kind", "recall_by_scenario", "windows_by_scenario", "benign_flag_rate", "normal_flag_rate")


@dataclass(frozen=True)
class Evaluation:
    """Held-out figures of one model on one evaluation set.

    ``by_kind`` and the scenario figures are those of the window model (device, station and interface
    windows; device-window recall per scenario, flag rate per benign lookalike); they are ``None`` for the
    agent variant, whose evaluation is its data and overall figures only."""

    data: EvaluationData
    overall: Metrics
    by_kind: dict[str, Metrics] | None = None
    recall_by_scenario: dict[str, float] | None = None
    windows_by_scenario: dict[str, int] | None = None
    benign_flag_rate: dict[str, float] | None = None
    normal_flag_rate: float | None = None

    @property
    def per_kind(self) -> bool:
        return self.by_kind is not None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"data": self.data.as_dict(), "overall": self.overall.as_dict()}
        if self.by_kind is not None:
            doc |= {
                "by_kind": {k: m.as_dict() for k, m in self.by_kind.items()},
                "recall_by_scenario": self.recall_by_scenario,
                "windows_by_scenario": self.windows_by_scenario,
                "benign_flag_rate": self.benign_flag_rate,
                "normal_flag_rate": self.normal_flag_rate,
            }
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Evaluation:
        rest: dict[str, Any] = {}
        if "by_kind" in doc:
            rest = {k: doc.get(k) for k in _SCENARIO_FIELDS}
            rest["by_kind"] = {k: Metrics.from_dict(m) for k, m in (doc["by_kind"] or {}).items()}
        return cls(EvaluationData.from_dict(doc["data"]), Metrics.from_dict(doc["overall"]), **rest)


@dataclass(frozen=True)
class Selection:
    """Which detector was kept, by which rule, and every candidate's held-out figures."""

    chosen: str
    criterion: str
    candidates: dict[str, dict[str, float | None]]  # kind -> HEADLINE_METRICS (an AUC may be None)
    fitted_before: str  # the candidates were fitted on the windows before this time

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Selection:
        return cls(**{f.name: doc[f.name] for f in fields(cls)})


def meets_quality_gates(overall: Metrics | None, min_f1: float, min_roc_auc: float) -> bool:
    """Held-out figures exist and reach the configured F1 and ROC-AUC (the inference side's own limits)."""
    if overall is None:
        return False
    return overall.f1_score >= min_f1 and (overall.roc_auc or 0.0) >= min_roc_auc


def not_worse_than(new_pr_auc: float | None, production_pr_auc: float | None, max_regression: float) -> bool:
    """PR-AUC on the same data at most ``max_regression`` below production's (no production: passes)."""
    return production_pr_auc is None or (new_pr_auc or 0.0) >= production_pr_auc - max_regression
