"""Evaluation: window-level metrics against labels we did not produce with the model.

Three sources, always reported under their own names and never mixed:
  labelled   labels that came with the data (inside an export, a ``<export>.labels.csv`` side file,
             or the scenario generator), turned into window labels;
  injected   known attack patterns injected into held-out, time-split windows;
  diagnostics unsupervised facts (score distribution, stability across seeds and time splits),
             which are NOT accuracy and are never called that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1 at the stored threshold (``score > threshold`` = anomalous), ROC-AUC and
    PR-AUC over the scores, with the counts they come from. AUCs are ``None`` when only one class is present."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    pred = s > threshold
    p, r, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    both = 0 < y.sum() < len(y)
    return {
        "n_windows": int(len(y)),
        "n_anomalous": int(y.sum()),
        "n_flagged": int(pred.sum()),
        "true_positives": int((pred & y).sum()),
        "false_positives": int((pred & ~y).sum()),
        "precision": float(p),
        "recall": float(r),
        "f1_score": float(f1),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "roc_auc": float(roc_auc_score(y, s)) if both else None,
        "pr_auc": float(average_precision_score(y, s)) if both else None,
        "threshold_value": float(threshold),
        "anomaly_ratio": float(pred.mean()) if len(y) else 0.0,
    }
