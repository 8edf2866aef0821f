"""Serving: raw export records -> feature windows -> scores, verdicts and reasons.

This module (with ``exports``, ``validation``, ``events`` and ``features``) is copied verbatim into
every deployment package, so the inference side runs exactly the code that built the training
windows: no second implementation of the features to drift apart. Keep its imports to those
modules, numpy and pandas.

Score convention: ``score = -pipeline.score_samples(X)``; HIGHER means MORE anomalous and a window
is anomalous when ``score > threshold``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mcp_training_dagster.serving.calibration import calibrated_scores
from mcp_training_dagster.serving.exports import parse_export_bytes, records_to_frame
from mcp_training_dagster.serving.features import WindowSpec, build_windows
from mcp_training_dagster.serving.validation import validate_records

SCORE_CONVENTION = "higher_is_more_anomalous"
SCORE_DEFINITION = "score = -pipeline.score_samples(X); anomalous when score > threshold"
UNKEYED_ENTITY = "-"
# One event in two exports: all of these agree. Ids alone are only unique within one log database: two
# services (or a generator numbering from 1) reuse them for different events. The training fan-in
# (domain/horizon.py) uses this definition too.
SAME_EVENT_COLUMNS: tuple[str, ...] = ("id", "timestamp", "device", "process_name", "message")
SCORE_COLUMNS: tuple[str, ...] = (
    "device_id",
    "entity",
    "entity_kind",
    "window_start",
    "score",
    "is_anomaly",
    "reasons",
)


def validated_records(
    records: Sequence[Any] | pd.DataFrame,
    *,
    source: str = "records",
    service_timezone: str = "UTC",
    extra_wifi_processes: Iterable[str] = (),
) -> pd.DataFrame:
    """Export records (dicts as in the file, or the raw table) -> validated records, as in training."""
    raw = records if isinstance(records, pd.DataFrame) else records_to_frame(list(records))
    return validate_records(
        raw, source, service_timezone=service_timezone, extra_wifi_processes=tuple(extra_wifi_processes)
    ).records


def records_to_windows(
    records: Sequence[Any] | pd.DataFrame,
    spec: WindowSpec,
    *,
    source: str = "records",
    service_timezone: str = "UTC",
    extra_wifi_processes: Iterable[str] = (),
    history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Export records (dicts as in the file, or the raw table) -> feature windows, as in training. ``history``:
    validated records of the same routers' other exports (:func:`export_file_records`), earlier or overlapping:
    the windows are computed on the union, as training did (:func:`windows_with_history`)."""
    valid = validated_records(
        records, source=source, service_timezone=service_timezone, extra_wifi_processes=extra_wifi_processes
    )
    return windows_with_history(valid, history, spec)


def export_file_records(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """An export file (JSON or ZIP) -> validated records (e.g. the ``history`` of a later export)."""
    p = Path(path)
    raw = parse_export_bytes(p.name, p.read_bytes())
    return validated_records(raw.records, source=p.name, **kwargs)


def export_file_windows(
    path: str | Path, spec: WindowSpec, *, history: pd.DataFrame | None = None, **kwargs: Any
) -> pd.DataFrame:
    """An export file (JSON or ZIP) -> feature windows (with the routers' records in ``history``, if given)."""
    p = Path(path)
    raw = parse_export_bytes(p.name, p.read_bytes())
    return records_to_windows(raw.records, spec, source=p.name, history=history, **kwargs)


def feature_matrix(windows: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    missing = [c for c in names if c not in windows.columns]
    if missing:
        raise ValueError(f"feature windows lack columns {missing}")
    return windows.loc[:, list(names)].to_numpy(dtype=np.float64)


# From this many windows on, a scoring is split into row blocks scored on threads (at most SCORING_THREADS).
PARALLEL_SCORING_ROWS = 100_000
SCORING_THREADS = min(4, os.cpu_count() or 1)


def _scores_rows_alone(pipeline: Any) -> bool:
    """Whether a row's score is bit for bit the same in any block of rows: an isolation forest's is (its trees'
    paths; the log1p and scaling before it are elementwise). A local outlier factor's is not: its distances come
    from BLAS matrix products whose rounding depends on the block's shape."""
    steps = getattr(pipeline, "steps", None)
    detector = steps[-1][1] if steps else pipeline
    return type(detector).__name__ == "IsolationForest"


def anomaly_scores(pipeline: Any, X: np.ndarray) -> np.ndarray:
    """Higher = more anomalous, for any estimator with ``score_samples`` (sklearn's is higher = more normal).

    An isolation forest scores many windows in row blocks on threads: a tree's ``apply`` releases the GIL, and
    every row's score is its own, so the scores are exactly those of one call. (scikit-learn's own ``n_jobs``
    splits the trees instead, and adds their depths in whichever order the threads finish: not reproducible to the
    last bit.)"""
    if len(X) == 0:
        return np.empty(0)
    blocks = min(SCORING_THREADS, len(X) // PARALLEL_SCORING_ROWS) if _scores_rows_alone(pipeline) else 1
    if blocks < 2:
        return -np.asarray(pipeline.score_samples(X), dtype=np.float64)
    bounds = np.linspace(0, len(X), blocks + 1).astype(int)
    with ThreadPoolExecutor(max_workers=blocks) as pool:
        parts = list(pool.map(lambda k: pipeline.score_samples(X[bounds[k] : bounds[k + 1]]), range(blocks)))
    return -np.asarray(np.concatenate(parts), dtype=np.float64)


def deviations(pipeline: Any, X: np.ndarray) -> np.ndarray:
    """Each feature's deviation from the training data in standard units, as the detector sees it.

    Uses the pipeline's preprocessing steps (everything before the final detector); a bare estimator
    without preprocessing gives the raw values."""
    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) < 2:
        return np.asarray(X, dtype=np.float64)
    return np.asarray(pipeline[:-1].transform(X), dtype=np.float64)


def reasons(pipeline: Any, X: np.ndarray, names: Sequence[str], top: int = 3) -> list[str]:
    """The features furthest ABOVE their training mean (a window is odd because of what it has).

    An explanation of what stands out, not an exact attribution of the detector's score: listed as
    ``feature=value (+z)``; windows with nothing above +1 standard unit get ``""``."""
    if len(X) == 0:
        return []
    z = deviations(pipeline, X)
    order = np.argsort(-z, axis=1, kind="stable")[:, :top]
    out = []
    for i in range(len(X)):
        parts = [f"{names[j]}={X[i, j]:g} (+{z[i, j]:.1f})" for j in order[i] if z[i, j] > 1.0]
        out.append("; ".join(parts))
    return out


def score_table(
    windows: pd.DataFrame,
    pipeline: Any,
    threshold: float,
    names: Sequence[str],
    *,
    top_reasons: int = 3,
    calibration: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per window: ``device_id, entity, entity_kind, window_start (ISO-8601), score, is_anomaly, reasons``,
    most anomalous first.

    With a ``calibration`` (metadata ``inference_config.calibration``) the score is the calibrated one
    (per-kind tail threshold, device context fused in, silence rule; see ``calibration``): anomalous when
    ``score > 0``. Without one, the raw detector score against ``threshold``."""
    X = feature_matrix(windows, names)
    scores = anomaly_scores(pipeline, X)
    if calibration is None:
        calibration = getattr(pipeline, "calibration_", None)
    unkeyed_scores = None
    if calibration is not None:
        raw = scores
        scores = calibrated_scores(windows, raw, calibration)
        if calibration.get("magnitude"):
            unkeyed_scores = calibrated_scores(windows, raw, calibration, with_magnitude=False)
        threshold = 0.0
    out = window_verdicts(
        windows, X, scores, threshold, pipeline, names, top_reasons=top_reasons, calibration=calibration
    )
    if "n_unkeyed" in windows.columns and len(out):
        # records that name neither a station nor an interface are judged with their device window, as key "-"
        unkeyed = ((windows["entity_kind"].astype("str") == "device") & (windows["n_unkeyed"] > 0)).to_numpy()
        if unkeyed.any():
            extra = out.loc[unkeyed].copy()
            extra["entity"] = UNKEYED_ENTITY
            if unkeyed_scores is not None:  # the router's state without the magnitude of its stations' counts
                extra["score"] = unkeyed_scores[unkeyed]
                extra["is_anomaly"] = extra["score"].to_numpy() > threshold
            out = pd.concat([out, extra], ignore_index=True)
    return out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def window_verdicts(
    windows: pd.DataFrame,
    X: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    pipeline: Any,
    names: Sequence[str],
    *,
    top_reasons: int = 3,
    calibration: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """``score_table``'s row for each window (its features ``X``, its ``scores``), in the windows' order, before
    the unkeyed "-" rows: the model card's top windows are built by the same code from scores kept earlier."""
    out = pd.DataFrame(
        {
            "device_id": windows["device"].astype("str").to_numpy(),
            "entity": windows["entity"].astype("str").to_numpy(),
            "entity_kind": windows["entity_kind"].astype("str").to_numpy(),
            "window_start": pd.to_datetime(windows["window_start"]).dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy()
            if len(windows)
            else np.empty(0, dtype=object),
            "score": scores,
            "is_anomaly": scores > threshold,
            "reasons": reasons(pipeline, X, names, top=top_reasons),
        },
        columns=list(SCORE_COLUMNS),
    )
    if calibration is not None and len(out):
        _explain_calibrated(out, windows, calibration)
    return out


def _explain_calibrated(out: pd.DataFrame, windows: pd.DataFrame, calibration: dict[str, Any]) -> None:
    """Flagged windows whose features stand out nowhere still say why: the silence rule, or their router's
    window (station/interface scores take their device window's into account)."""
    from mcp_training_dagster.serving.calibration import silence_score

    flagged = out["is_anomaly"].to_numpy() & (out["reasons"].astype("str").to_numpy() == "")
    if not flagged.any():
        return
    silent = silence_score(windows, float(calibration.get("silence_factor", 2.0))) > 0
    kinds = windows["entity_kind"].astype("str").to_numpy()
    text = np.where(
        kinds == "device",
        "rare combination of the features above (no single one > +1)",
        "its router's window at the same time is anomalous",
    )
    if silent.any():
        gap = windows["silence_before_s"].to_numpy(dtype=np.float64)
        ratio = windows["gap_vs_usual"].to_numpy(dtype=np.float64)
        for i in np.flatnonzero(silent):
            text[i] = f"silent {gap[i] / 60:.0f} min = {ratio[i]:.1f} x its longest gap of the 24 h before"
    out.loc[flagged, "reasons"] = text[flagged]


def context_span(records: pd.DataFrame, spec: WindowSpec) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The times of other records that change the windows of ``records``: from the look-back of its first
    window (a window's history features look back history_hours, the windows in that history need their own
    silence before them, up to the cap) to the end of its last window. Half-open: [start, end)."""
    length = pd.Timedelta(minutes=int(spec.length_minutes))
    first = pd.Timestamp(records["timestamp"].min()).floor(length)
    last = pd.Timestamp(records["timestamp"].max()).floor(length)
    lookback = pd.Timedelta(hours=float(spec.silence_cap_hours) + float(spec.history_hours)) + length
    return first - lookback, last + length


def windows_with_history(records: pd.DataFrame, history: pd.DataFrame | None, spec: WindowSpec) -> pd.DataFrame:
    """Feature windows of validated ``records`` computed with the same routers' records in ``history`` (other
    exports, validated; earlier or overlapping), exactly as training on their union did: gaps, trailing
    activity and "seen before" look back across files, and a router's device window counts its records from
    every export (a sparse system log scored beside the router's hostapd export is not "silent").

    A copy of the same event in both counts once. Returned: the windows of the entities ``records`` names
    (its routers' device windows included), from the window of its first record to the window of its last."""
    if history is None or not len(history) or not len(records):
        return build_windows(records, spec)
    lo, hi = context_span(records, spec)
    ts = history["timestamp"]
    near = history[(ts >= lo) & (ts < hi) & history["device"].isin(records["device"].unique())]
    if not len(near):
        return build_windows(records, spec)
    both = pd.concat([near, records.loc[:, [c for c in records.columns if c in near.columns]]], ignore_index=True)
    same_event = [c for c in SAME_EVENT_COLUMNS if c in both.columns]  # a copy of the same event counts once
    both = (
        both[~both.duplicated(same_event, keep="last")]
        .sort_values(["timestamp", "id"], kind="stable")
        .reset_index(drop=True)
    )
    windows = build_windows(both, spec)
    own = build_windows(records, spec)
    entity = ["device", "entity_kind", "entity"]
    mine = pd.MultiIndex.from_frame(windows.loc[:, entity].astype("str")).isin(
        pd.MultiIndex.from_frame(own.loc[:, entity].drop_duplicates().astype("str"))
    )
    start, end = own["window_start"].min(), own["window_start"].max()
    span = (windows["window_start"] >= start).to_numpy() & (windows["window_start"] <= end).to_numpy()
    return windows[mine & span].reset_index(drop=True)
