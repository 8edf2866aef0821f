"""Evaluation on independent labelled traffic, as a new user would run it.

``evaluate_exports(paths, labels_csv)`` trains on the exports alone (unsupervised, in-sample: the
labels are never seen by training, calibration or any choice), scores the same exports with the
serving code, and only then reads the labels to measure:

* window level, exactly as ``../shared/eval/eval_windows.py`` scores (5-minute clock grid; a label
  window is positive when any of its records is anomalous; only windows holding a labelled record are
  scored; label windows without a prediction count as predicted-normal with the lowest score),
  at ``device`` level (key ``*``) and ``key`` level (station MAC, else interface, else ``-``);
* recall per scenario;
* incident level: incident precision (share of our incidents overlapping a labelled episode) and
  episode recall (share of labelled episodes overlapped by an incident), and false incidents per
  router-week;
* alarms per router-day at the shipped thresholds.

Labels format (one row per record): ``id,device_id,timestamp,station_mac,scenario,is_anomaly,interface``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.features import build_windows
from mcp_training_dagster.domain.incidents import build_incidents
from mcp_training_dagster.domain.horizon import union_records
from mcp_training_dagster.domain.training import train_model
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster.settings import get_settings

_MAC = r"^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$"


def _norm_key(values: pd.Series) -> pd.Series:
    k = values.fillna("").astype(str).str.strip().str.lower()
    mac = k.str.extract(_MAC)
    is_mac = mac.notna().all(axis=1)
    k = k.where(~is_mac, mac.fillna("").agg(":".join, axis=1))
    return k.where(k != "", "-")


def _norm_dev(values: pd.Series) -> pd.Series:
    s = values.astype(str).str.strip()
    num = pd.to_numeric(s, errors="coerce")
    whole = num.notna() & (num == np.floor(num))
    return s.where(~whole, num.fillna(0).astype("int64").astype(str))


def _floor(ts: pd.Series, minutes: int) -> pd.Series:
    t = pd.to_datetime(ts.astype(str).str.slice(0, 16).str.replace(" ", "T"), format="%Y-%m-%dT%H:%M")
    return t.dt.floor(f"{int(minutes)}min")


def read_labels(path: str | Path) -> pd.DataFrame:
    labels = pd.read_csv(path, dtype=str, keep_default_na=False)
    need = {"device_id", "timestamp", "station_mac", "scenario", "is_anomaly"}
    missing = need - set(labels.columns)
    if missing:
        raise ValueError(f"{path}: labels lack columns {sorted(missing)}")
    if "interface" not in labels.columns:
        labels["interface"] = ""
    return labels


def rank_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """ROC-AUC with average ranks for ties (as eval_windows.py)."""
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(s).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: np.ndarray, s: np.ndarray) -> float | None:
    """Average precision with tie groups as one threshold (as eval_windows.py)."""
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    tp, fp = np.cumsum(ys), np.cumsum(1 - ys)
    last = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]
    tp, fp = tp[last], fp[last]
    prec = tp / np.maximum(tp + fp, 1)
    rec = tp / n_pos
    return float(np.sum((rec - np.r_[0.0, rec[:-1]]) * prec))


def window_figures(labels: pd.DataFrame, preds: pd.DataFrame, level: str, window_minutes: int = 5) -> dict[str, Any]:
    """``preds``: device_id, key, window_start, score, is_anomaly (the project's score table with
    ``entity`` named ``key``). Same figures as eval_windows.py at ``level`` (device | key)."""
    p = pd.DataFrame(
        {
            "dev": _norm_dev(preds["device_id"]),
            "key": preds["key"].astype(str).str.strip(),
            "win": _floor(preds["window_start"], window_minutes),
            "score": pd.to_numeric(preds["score"], errors="coerce"),
            "dec": preds["is_anomaly"].astype(str).str.strip().str.lower().isin(["1", "true", "yes", "1.0", "t"]),
        }
    )
    is_dev = p["key"] == "*"
    p = p[is_dev] if level == "device" else p[~is_dev]
    if level != "device":
        p = p.assign(key=_norm_key(p["key"]))
    p = p.groupby(["dev", "key", "win"], sort=False).agg(score=("score", "max"), dec=("dec", "max"))

    lab = pd.DataFrame(
        {
            "dev": _norm_dev(labels["device_id"]),
            "win": _floor(labels["timestamp"], window_minutes),
            "y": labels["is_anomaly"].astype(str).str.strip().isin(["1", "True", "true"]),
            "scenario": labels["scenario"].astype(str),
        }
    )
    if level == "device":
        lab["key"] = "*"
    else:
        k = labels["station_mac"].where(labels["station_mac"].astype(str).str.strip() != "", labels["interface"])
        lab["key"] = _norm_key(k)
    w = lab.groupby(["dev", "key", "win"], sort=False)["y"].max().to_frame()
    pos = lab[lab["y"]]
    scen = (
        pos.groupby(["dev", "key", "win", "scenario"], sort=False)
        .size()
        .reset_index()[["dev", "key", "win", "scenario"]]
    )
    w = w.join(p, how="left")
    matched = int(w["score"].notna().sum())
    finite = w["score"].dropna()
    floor = (finite.min() - 1.0) if len(finite) else 0.0
    s = w["score"].fillna(floor).to_numpy(dtype=np.float64)
    dec = w["dec"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    y = w["y"].to_numpy(dtype=np.int64)
    tp, fp, fn = int((dec & (y == 1)).sum()), int((dec & (y == 0)).sum()), int((~dec & (y == 1)).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    auc, ap = rank_auc(y, s), average_precision(y, s)
    per_rec, per_n = {}, {}
    w_dec = pd.Series(dec, index=w.index)
    for name, grp in scen.groupby("scenario"):
        idx = pd.MultiIndex.from_frame(grp[["dev", "key", "win"]])
        per_n[name] = len(grp)
        per_rec[name] = round(float(w_dec.loc[idx].mean()), 4)
    return {
        "level": level,
        "windows": len(w),
        "positive_windows": int(y.sum()),
        "pred_windows_matched": matched,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(prec, 4),
        "recall": round(rec, 4),
        "f1": round(f1, 4),
        "roc_auc": None if auc is None else round(auc, 4),
        "pr_auc": None if ap is None else round(ap, 4),
        "per_scenario_windows": per_n,
        "per_scenario_recall": per_rec,
    }


def labelled_episodes(labels: pd.DataFrame, gap_minutes: float = 10.0) -> pd.DataFrame:
    """Labelled episodes: anomalous records of one device and scenario, split where more than
    ``gap_minutes`` pass between two of them. Columns device, scenario, start, end."""
    a = labels[labels["is_anomaly"].astype(str).str.strip().isin(["1", "True", "true"])]
    if a.empty:
        return pd.DataFrame(columns=["device", "scenario", "start", "end"])
    a = pd.DataFrame(
        {
            "device": _norm_dev(a["device_id"]),
            "scenario": a["scenario"].astype(str),
            "t": pd.to_datetime(a["timestamp"].astype(str).str.slice(0, 19)),
        }
    )
    a = a.sort_values(["device", "scenario", "t"])
    new = (
        (a["device"] != a["device"].shift())
        | (a["scenario"] != a["scenario"].shift())
        | (a["t"] - a["t"].shift() > pd.Timedelta(minutes=gap_minutes))
    )
    a["ep"] = new.cumsum()
    return (
        a.groupby("ep")
        .agg(device=("device", "first"), scenario=("scenario", "first"), start=("t", "min"), end=("t", "max"))
        .reset_index(drop=True)
    )


def incident_figures(
    incidents: pd.DataFrame, episodes: pd.DataFrame, *, router_days: float, window_minutes: int = 5
) -> dict[str, Any]:
    """Incident precision (share of incidents overlapping a labelled episode of their router), episode
    recall (share of episodes overlapped by an incident), per scenario, and false incidents per router-week.
    An episode's span is widened to its windows (the grid the detector sees)."""
    w = pd.Timedelta(minutes=window_minutes)
    n_inc = len(incidents)
    ep_hit = np.zeros(len(episodes), dtype=bool)
    inc_hit = np.zeros(n_inc, dtype=bool)
    if n_inc and len(episodes):
        inc = incidents.assign(
            device=_norm_dev(incidents["device_id"]),
            s=pd.to_datetime(incidents["start"]),
            e=pd.to_datetime(incidents["end"]),
        )
        for dev, eps in episodes.groupby("device"):
            mine = inc[inc["device"] == dev]
            if mine.empty:
                continue
            es = eps["start"].dt.floor(f"{window_minutes}min").to_numpy()
            ee = (eps["end"].dt.floor(f"{window_minutes}min") + w).to_numpy()
            ov = (mine["s"].to_numpy()[:, None] < ee[None, :]) & (mine["e"].to_numpy()[:, None] > es[None, :])
            inc_hit[np.flatnonzero(inc["device"].to_numpy() == dev)[ov.any(axis=1)]] = True
            ep_hit[eps.index.to_numpy()[ov.any(axis=0)]] = True
    by_scen = {}
    for name, grp in episodes.groupby("scenario"):
        by_scen[name] = round(float(ep_hit[grp.index.to_numpy()].mean()), 4)
    false = int((~inc_hit).sum())
    return {
        "incidents": n_inc,
        "incidents_on_episodes": int(inc_hit.sum()),
        "incident_precision": round(float(inc_hit.mean()), 4) if n_inc else None,
        "episodes": len(episodes),
        "episodes_detected": int(ep_hit.sum()),
        "episode_recall": round(float(ep_hit.mean()), 4) if len(episodes) else None,
        "episode_recall_by_scenario": by_scen,
        "false_incidents": false,
        "false_incidents_per_router_week": round(false / router_days * 7, 3) if router_days > 0 else None,
    }


def load_records(
    paths: Sequence[str | Path], *, service_timezone: str = "UTC", extra_wifi_processes: Sequence[str] = ()
) -> pd.DataFrame:
    """Validated records of every export, cross-file duplicates removed, in time order."""
    frames = {}
    for p in paths:
        p = Path(p)
        raw = read_export(p)
        frames[p.name] = validate_records(
            raw.records, p.name, service_timezone=service_timezone, extra_wifi_processes=tuple(extra_wifi_processes)
        ).records
    records, _ = union_records(frames)
    return records


def evaluate_exports(
    paths: Sequence[str | Path], labels_path: str | Path, settings: Any = None, *, keep_predictions: bool = False
) -> dict[str, Any]:
    """Train on the exports as a user would, score them, then measure against the labels."""
    if not len(paths):
        raise ValueError("no export files given")
    settings = settings or get_settings()
    m = settings.model
    spec = m.windows.spec()
    started = time.perf_counter()
    records = load_records(
        paths, service_timezone=settings.training.service_timezone, extra_wifi_processes=m.events.extra_wifi_processes
    )
    windows = build_windows(records, spec)
    model = train_model(
        windows,
        m.detector,
        window_minutes=spec.length_minutes,
        min_windows=m.training.min_training_windows,
        alarm_budget=m.alarms,
    )
    table = model.score_table(windows)
    seconds = time.perf_counter() - started
    labels = read_labels(labels_path)
    preds = table.rename(columns={"entity": "key"})
    dev_fig = window_figures(labels, preds, "device", spec.length_minutes)
    key_fig = window_figures(labels, preds, "key", spec.length_minutes)
    incidents = build_incidents(table, records, spec, windows=windows)
    t0, t1 = records["timestamp"].min(), records["timestamp"].max()
    n_dev = records["device"].nunique()
    router_days = n_dev * max((t1 - t0) / pd.Timedelta(days=1), 1e-9)
    inc_fig = incident_figures(
        incidents, labelled_episodes(labels), router_days=router_days, window_minutes=spec.length_minutes
    )
    dev_rows = table[table["entity_kind"] == "device"]
    return {
        "exports": [Path(p).name for p in paths],
        "records": len(records),
        "routers": int(n_dev),
        "router_days": round(router_days, 2),
        "device": dev_fig,
        "key": key_fig,
        "incidents": inc_fig,
        "alarms_per_router_day": {
            "device_windows": round(float(dev_rows["is_anomaly"].sum()) / router_days, 3),
            "incidents": round(len(incidents) / router_days, 3),
        },
        "threshold": model.calibration_summary(),
        "incident_table": incidents,
        **({"predictions": table} if keep_predictions else {}),
        "seconds": round(seconds, 2),
    }
