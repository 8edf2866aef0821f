"""Evaluation: window-level metrics against labels we did not produce with the model.

Three sources, always reported under their own names and never mixed:
  labelled   labels that came with the data (inside an export, a ``<export>.labels.csv`` side file,
             or the scenario generator), turned into window labels;
  injected   known attack patterns injected into held-out, time-split windows;
  diagnostics unsupervised facts (score distribution, stability across seeds and time splits),
             which are NOT accuracy and are never called that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

from mcp_training_dagster.domain.features import DEVICE_ENTITY, KEY_COLUMNS


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


def window_labels(
    windows: pd.DataFrame,
    records: pd.DataFrame,
    labels: pd.DataFrame,
    window_minutes: int,
    episodes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Window labels from record labels (and silence episodes, which have no records).

    A window is anomalous when it holds an anomalous record of its entity (its device for ``*``,
    its station MAC, its interface), or, for a device window, overlaps an anomalous episode without
    records (silence). Windows holding records of a benign lookalike are marked with that scenario
    (still ``is_anomaly=False``) so its false positives can be reported. Returns ``windows``'
    keys plus ``is_anomaly`` and ``scenario`` ("normal" when neither)."""
    lab = labels.loc[:, [c for c in ("id", "is_anomaly", "scenario") if c in labels.columns]].copy()
    if "scenario" not in lab.columns:
        lab["scenario"] = np.where(lab["is_anomaly"].astype(bool), "labelled", "normal")
    rec = records.loc[:, ["id", "device", "timestamp", "station_mac", "interface"]].merge(lab, on="id", how="inner")
    rec = rec[rec["scenario"] != "normal"]
    start = rec["timestamp"].dt.floor(f"{window_minutes}min")
    parts = [
        pd.DataFrame({"device": rec["device"], "entity_kind": "device", "entity": DEVICE_ENTITY, "window_start": start,
                      "is_anomaly": rec["is_anomaly"].astype(bool), "scenario": rec["scenario"]}),
    ]
    for kind, column in (("station", "station_mac"), ("interface", "interface")):
        has = rec[column].notna()
        parts.append(pd.DataFrame({"device": rec.loc[has, "device"], "entity_kind": kind, "entity": rec.loc[has, column],
                                   "window_start": start[has], "is_anomaly": rec.loc[has, "is_anomaly"].astype(bool),
                                   "scenario": rec.loc[has, "scenario"]}))
    if episodes is not None and len(episodes):
        quiet = episodes[episodes["is_anomaly"].astype(bool) & (episodes["entity_kind"] == "device")]
        quiet = quiet[~quiet["scenario"].isin(rec["scenario"].unique())]  # episodes with records are labelled above
        dev = windows[windows["entity_kind"] == "device"]
        end = dev["window_start"] + pd.Timedelta(minutes=window_minutes)
        for ep in quiet.itertuples(index=False):  # a handful of episodes, each a vectorised mask
            hit = (dev["device"] == str(ep.device)) & (dev["window_start"] < ep.end) & (end > ep.start)
            parts.append(dev.loc[hit, list(KEY_COLUMNS)].assign(is_anomaly=True, scenario=ep.scenario))
    marks = pd.concat(parts, ignore_index=True)
    marks["device"] = marks["device"].astype("str")
    marks["entity"] = marks["entity"].astype("str")
    marks["window_start"] = marks["window_start"].astype("datetime64[us]")
    # an anomalous mark wins over a benign one; among anomalies the first scenario named wins
    marks = marks.sort_values("is_anomaly", ascending=False, kind="stable").drop_duplicates(list(KEY_COLUMNS))
    keys = windows.loc[:, list(KEY_COLUMNS)].copy()
    keys["device"] = keys["device"].astype("str")
    keys["entity"] = keys["entity"].astype("str")
    out = keys.merge(marks, on=list(KEY_COLUMNS), how="left")
    out["is_anomaly"] = out["is_anomaly"].fillna(False).astype(bool)
    out["scenario"] = out["scenario"].fillna("normal").astype("str")
    return out


def evaluate_scores(labelled: pd.DataFrame, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Metrics overall and per entity kind, recall per anomaly scenario and flag rate per benign
    lookalike (device-level windows for scenarios: every scenario shows at the device)."""
    y = labelled["is_anomaly"].to_numpy(dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    kind = labelled["entity_kind"].astype("str").to_numpy()
    scen = labelled["scenario"].astype("str").to_numpy()
    out: dict[str, Any] = {"overall": binary_metrics(y, s, threshold)}
    out["by_kind"] = {k: binary_metrics(y[kind == k], s[kind == k], threshold) for k in np.unique(kind)}
    dev = kind == "device"
    flagged = s > threshold
    out["recall_by_scenario"] = {
        name: float(flagged[dev & (scen == name) & y].mean())
        for name in sorted(set(scen[dev & y]))
    }
    out["windows_by_scenario"] = {name: int((dev & (scen == name)).sum()) for name in sorted(set(scen[dev]))}
    out["benign_flag_rate"] = {
        name: float(flagged[dev & (scen == name) & ~y].mean())
        for name in sorted(set(scen[dev & ~y]) - {"normal"})
    }
    out["normal_flag_rate"] = float(flagged[dev & (scen == "normal")].mean()) if (dev & (scen == "normal")).any() else None
    return out


@dataclass
class EvaluationSet:
    """Held-out windows with labels we know, and where they came from (travels with the figures)."""

    source: str  # "labelled" | "injected" | "generated"
    description: str
    windows: pd.DataFrame  # feature windows
    labels: pd.DataFrame  # window_labels(...) aligned row by row with ``windows``
    split_time: str | None = None  # models evaluated here were fitted on data before this time
    agent_vectors: pd.DataFrame | None = None  # the agent's 5-value vectors of the same period
    agent_labels: np.ndarray | None = None

    @property
    def size(self) -> dict[str, int]:
        y = self.labels["is_anomaly"].to_numpy(dtype=bool)
        return {"windows": int(len(y)), "anomalous_windows": int(y.sum())}

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "description": self.description, "split_time": self.split_time, **self.size}


def evaluate_on(scores: np.ndarray, threshold: float, data: EvaluationSet) -> dict[str, Any]:
    """Figures with their data attached: nothing here is meaningful without source and size."""
    return {"data": data.summary(), **evaluate_scores(data.labels, scores, threshold)}


def time_split(windows: pd.DataFrame, fraction: float) -> pd.Timestamp:
    """The window start before which ``fraction`` of the time span lies (a split in time, not rows:
    rows of one period are correlated, so a random split would leak)."""
    t = windows["window_start"]
    lo, hi = t.min(), t.max()
    return (lo + (hi - lo) * fraction).floor("min")


def score_diagnostics(train_scores: np.ndarray, threshold: float, later_scores: np.ndarray | None,
                      seed_scores: list[np.ndarray]) -> dict[str, Any]:
    """Unsupervised diagnostics: NOT accuracy. Score quantiles, flag rate on later (unseen) windows of
    the same stream, and agreement between fits with different seeds (Spearman rank correlation and
    overlap of the flagged sets)."""
    q = {f"p{p}": float(np.quantile(train_scores, p / 100)) for p in (1, 5, 25, 50, 75, 95, 99)} if len(train_scores) else {}
    out: dict[str, Any] = {"score_quantiles": q, "training_flag_rate": float(np.mean(train_scores > threshold)) if len(train_scores) else None}
    if later_scores is not None and len(later_scores):
        out["later_windows_flag_rate"] = float(np.mean(later_scores > threshold))
    if len(seed_scores) > 1:
        ref = seed_scores[0]
        rho = [float(pd.Series(ref).corr(pd.Series(other), method="spearman")) for other in seed_scores[1:]]
        k = max(1, int(round(len(ref) * 0.02)))
        top = [set(np.argsort(-s)[:k]) for s in seed_scores]
        jacc = [len(top[0] & t) / len(top[0] | t) for t in top[1:]]
        out["seed_stability"] = {"spearman_min": min(rho), "top2pct_jaccard_min": min(jacc), "seeds": len(seed_scores)}
    out["note"] = "unsupervised diagnostics, not accuracy"
    return out
