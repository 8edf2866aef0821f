"""The model today's inference agent can actually call: one 5-value vector per 5-minute window.

The upstream WiFi agent (see docs/inference-contract.md) runs every few minutes over the last 5
minutes of ``hostapd``/``wpa_supplicant`` records and, with real database rows, always takes its
generic branch: ONE unscaled vector for the whole window,

    [log_count, error_count, warning_count, unique_program_count, unique_host_count]

  log_count             WiFi records in the window (all devices together: the agent's window is not per device)
  error_count           of those, messages containing ``error``, ``critical`` or ``failed`` (lower-cased)
  warning_count         of those, messages containing ``warning`` (lower-cased)
  unique_program_count  always 0 (the agent reads a ``program`` key its rows lack)
  unique_host_count     always 0 (likewise a missing key)

and then calls ``model.predict(X)`` (-1 = anomaly) and ``score_samples``. Any other width raises
inside the agent and is swallowed, so no ML anomaly is ever reported: this variant exists so that a
package works there today, beside our richer per-device model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mcp_training_dagster.domain.packaging import (
    AGENT_SUFFIX,
    INPUT_AGENT_VECTOR,
    PackageInfo,
    build_package,
    check_version,
)
from mcp_training_dagster.domain.results import (
    BASIC_METRICS,
    Evaluation,
    EvaluationData,
    TrainingError,
    binary_metrics,
    meets_quality_gates,
)
from mcp_training_dagster.serving.scoring import SCORE_CONVENTION, SCORE_DEFINITION, anomaly_scores

if TYPE_CHECKING:  # evaluation builds the agent's vectors of its held-out period with agent_vectors below
    from sklearn.ensemble import IsolationForest  # imported where fitted: not part of a code-location load

    from mcp_training_dagster.domain.evaluation import EvaluationSet

# The record columns agent_vectors reads (the fan-in loads only these).
AGENT_COLUMNS: tuple[str, ...] = ("timestamp", "process_name", "message")
AGENT_FEATURES: tuple[str, ...] = (
    "log_count",
    "error_count",
    "warning_count",
    "unique_program_count",
    "unique_host_count",
)
AGENT_PROCESSES: tuple[str, ...] = ("hostapd", "wpa_supplicant")
ERROR_WORDS: tuple[str, ...] = ("error", "critical", "failed")
WARNING_WORDS: tuple[str, ...] = ("warning",)
VECTOR_DEFINITION = (
    "one unscaled vector per clock-aligned window over all devices' hostapd/wpa_supplicant records: "
    "[log_count, error_count, warning_count, unique_program_count, unique_host_count]; error_count = messages "
    "containing 'error', 'critical' or 'failed' (lower-cased), warning_count = containing 'warning', the last two always 0 "
    "(the agent's generic branch)"
)


def empty_vectors() -> pd.DataFrame:
    cols: dict[str, pd.Series] = {"window_start": pd.Series(dtype="datetime64[us]")}
    cols.update({f: pd.Series(dtype=np.float64) for f in AGENT_FEATURES})
    return pd.DataFrame(cols)


def _contains_any(messages: pd.Series, words: Sequence[str]) -> np.ndarray:
    """Per message: does its Python ``.lower()`` contain any of ``words``.

    Evaluated once per DISTINCT message (router logs repeat lines all day) with exactly the agent's
    Python semantics, then mapped back to the rows by code; missing messages count as no match."""
    codes, uniques = pd.factorize(messages)
    hit = np.fromiter((any(w in str(u).lower() for w in words) for u in uniques), dtype=bool, count=len(uniques))
    return np.r_[hit, False][codes]  # code -1 (missing) picks the trailing False


def agent_vectors(records: pd.DataFrame, window_minutes: int = 5) -> pd.DataFrame:
    """Validated records -> the agent's vector for every clock-aligned window, as float64.

    Semantics (each one the agent's):
      * only records whose ``process_name`` is ``hostapd`` or ``wpa_supplicant`` (case-insensitive,
        surrounding blanks ignored) are counted;
      * one vector per window for ALL devices together (the agent's query is not per device);
      * every window from the one holding the first record to the one holding the last record (of
        ANY process: the span the data covers) is present, including windows with no WiFi record at
        all, which give ``[0, 0, 0, 0, 0]``: the agent calls the model on an empty window too;
      * a message counts once towards ``error_count`` whichever error words it holds, and may count
        towards both ``error_count`` and ``warning_count``;
      * ``unique_program_count`` and ``unique_host_count`` are 0 everywhere.

    Windows are clock-aligned (``floor(timestamp, window_minutes)``, on the records' own clock);
    the agent's window is "the 5 minutes before its run", which has the same distribution of counts.
    Columns: ``window_start`` then :data:`AGENT_FEATURES`, ascending by ``window_start``."""
    if int(window_minutes) < 1:
        raise ValueError(f"window_minutes must be at least 1, got {window_minutes}")
    missing = [c for c in AGENT_COLUMNS if c not in records.columns]
    if missing:
        raise ValueError(f"records lack columns {missing} (pass validated records)")
    if records.empty:
        return empty_vectors()
    ts = records["timestamp"].to_numpy(dtype="datetime64[ns]")
    if np.isnat(ts).any():
        raise ValueError("records with a missing timestamp cannot be windowed (validation quarantines them)")
    length = np.int64(int(window_minutes) * 60 * 1_000_000_000)
    win = ts.astype(np.int64) // length
    first, n = int(win.min()), int(win.max() - win.min()) + 1
    process = records["process_name"].astype("str").str.strip().str.lower()
    wifi = process.isin(AGENT_PROCESSES).to_numpy(dtype=bool, na_value=False)
    slot = win[wifi] - first
    messages = records["message"][wifi]
    errors = _contains_any(messages, ERROR_WORDS)
    warnings = _contains_any(messages, WARNING_WORDS)
    out = pd.DataFrame(
        {
            "window_start": ((first + np.arange(n, dtype=np.int64)) * length)
            .astype("datetime64[ns]")
            .astype("datetime64[us]"),
            "log_count": np.bincount(slot, minlength=n).astype(np.float64),
            "error_count": np.bincount(slot[errors], minlength=n).astype(np.float64),
            "warning_count": np.bincount(slot[warnings], minlength=n).astype(np.float64),
            "unique_program_count": np.zeros(n, dtype=np.float64),
            "unique_host_count": np.zeros(n, dtype=np.float64),
        }
    )
    return out


def vector_matrix(vectors: pd.DataFrame | np.ndarray) -> np.ndarray:
    """The (n, 5) float64 matrix in :data:`AGENT_FEATURES` order (a frame's columns are picked by name)."""
    if isinstance(vectors, pd.DataFrame):
        missing = [c for c in AGENT_FEATURES if c not in vectors.columns]
        if missing:
            raise ValueError(f"agent vectors lack columns {missing}")
        X = vectors.loc[:, list(AGENT_FEATURES)].to_numpy(dtype=np.float64)
    else:
        X = np.asarray(vectors, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(AGENT_FEATURES):
        raise ValueError(f"agent vectors must have {len(AGENT_FEATURES)} columns, got shape {X.shape}")
    return X


def train_agent_model(
    vectors: pd.DataFrame | np.ndarray,
    contamination: float,
    random_state: int,
    n_estimators: int = 200,
) -> tuple[IsolationForest, float]:
    """A bare IsolationForest on the raw vectors and its calibrated threshold.

    No scaler and no Pipeline: the agent passes raw counts straight to ``model.predict``. Fitted on
    a plain array (no feature names), so the agent's arrays raise no feature-name warning.

    ``threshold`` is the ``1 - contamination`` quantile of ``score = -score_samples`` (higher = more
    anomalous) on the training vectors that hold WiFi records, and never below the zero vector's score. Then ``offset_ = -threshold``: sklearn's ``predict`` is -1
    when ``decision_function = score_samples - offset_ < 0``, i.e. exactly when ``score > threshold``,
    so the agent (which calls ``predict``) and anything comparing scores with the stored threshold
    agree on every input, ties included (both call a score equal to the threshold normal)."""
    if not 0.0 < float(contamination) < 0.5:
        raise ValueError(f"contamination must be in (0, 0.5), got {contamination}")
    X = vector_matrix(vectors)
    if len(X) < 2:
        raise ValueError(f"need at least 2 window vectors to train the agent model, got {len(X)}")
    from sklearn.ensemble import IsolationForest

    est = IsolationForest(n_estimators=int(n_estimators), contamination="auto", random_state=random_state, n_jobs=1)
    est.fit(X)
    scores = anomaly_scores(est, X)
    # Calibrate on windows with WiFi records: on a sparse router nearly every window is the zero
    # vector, and a quantile over all windows lands on the zero vector's own score, flagging every
    # window with any activity. An empty window is never anomalous for this model (the agent's
    # vector cannot tell a pause from an outage), so the threshold is at least the zero vector's score.
    active = X[:, 0] > 0
    base = scores[active] if active.sum() >= 2 else scores
    zero = float(anomaly_scores(est, np.zeros((1, X.shape[1])))[0])
    threshold = max(float(np.quantile(base, 1.0 - float(contamination))), zero)
    est.offset_ = -threshold
    return est, threshold


def agent_version(version: str) -> str:
    """The agent variant's version for a training run's version (``<version>_agent5``)."""
    bare = check_version(version)
    return bare if bare.endswith(AGENT_SUFFIX) else check_version(bare + AGENT_SUFFIX)


def agent_metadata(
    *,
    version: str,
    estimator: IsolationForest,
    threshold: float,
    vectors: pd.DataFrame,
    basic_metrics: Mapping[str, Any],
    contamination: float,
    window_minutes: int = 5,
    evaluation: Evaluation | None = None,
    created_at: str | None = None,
    export_files: Sequence[str] = (),
    training_duration: float = 0.0,
    service_timezone: str = "UTC",
) -> dict[str, Any]:
    """metadata.json of the agent variant, in the inference contract's shape.

    ``basic_metrics`` must come from a real evaluation of THIS estimator on labelled data (labelled
    exports or injected anomalies with known labels), e.g. ``evaluation.binary_metrics``; they are
    stored as given, never derived here. ``evaluation`` (optional) is stored beside them (source,
    per-scenario figures). ``version`` is the agent variant's (``..._agent5``, see :func:`agent_version`)."""
    bare = check_version(version)
    if not bare.endswith(AGENT_SUFFIX):
        raise ValueError(f"agent variant versions end with {AGENT_SUFFIX!r} (see agent_version()), got {version!r}")
    if not isinstance(basic_metrics, Mapping) or not basic_metrics:
        raise ValueError(
            "basic_metrics are required: evaluate the agent model on labelled data (evaluation.binary_metrics)"
        )
    X = vector_matrix(vectors)
    log_count = X[:, 0]
    windows = pd.to_datetime(vectors["window_start"]) if isinstance(vectors, pd.DataFrame) and len(vectors) else None
    base = bare[: -len(AGENT_SUFFIX)]
    params = estimator.get_params()
    return {
        "model_info": {
            "version": f"model_{bare}",
            "created_at": created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model_type": type(estimator).__name__,
            "model_name": "WiFiAgent",
            "name": f"WiFi agent 5-value window model {bare}",
            "description": (
                "For the inference agent's generic branch: IsolationForest on one unscaled vector per 5-minute window "
                "of all devices' hostapd/wpa_supplicant records [log_count, error_count, warning_count, "
                "unique_program_count, unique_host_count] (the last two always 0). predict() == -1 means anomalous. "
                f"The richer per-device/station/interface model of the same training run is model_{base}."
            ),
            "training_source": "export_data",
            "export_files": list(export_files),
            "training_id": base,
            "variant_of": f"model_{base}",
        },
        "training_info": {
            "training_samples": int(len(X)),
            "n_samples": int(len(X)),
            "feature_names": list(AGENT_FEATURES),
            "feature_count": len(AGENT_FEATURES),
            "model_parameters": {
                "n_estimators": int(params["n_estimators"]),
                "max_samples": params["max_samples"],
                "random_state": params["random_state"],
                "contamination": float(contamination),
                "threshold_calibration": "1 - contamination quantile of -score_samples on the training vectors",
            },
            "training_duration": float(training_duration),
            "window_minutes": int(window_minutes),
            "empty_windows": int((log_count == 0).sum()),
            "log_count_quantiles": {f"p{q}": float(np.quantile(log_count, q / 100)) for q in (50, 90, 99)}
            if len(X)
            else {},
            "data_start": windows.min().isoformat() if windows is not None else None,
            "data_end": windows.max().isoformat() if windows is not None else None,
        },
        "evaluation_info": {
            "basic_metrics": dict(basic_metrics),
            **({"evaluation": evaluation.as_dict()} if evaluation else {}),
            "feature_importance": {},
        },
        "inference_config": {
            "input": INPUT_AGENT_VECTOR,
            "threshold": float(threshold),
            "score_convention": SCORE_CONVENTION,
            "score_definition": SCORE_DEFINITION.replace("pipeline", "model"),
            "predict": "model.predict(X) == -1 exactly when score > threshold",
            "feature_names": list(AGENT_FEATURES),
            "feature_count": len(AGENT_FEATURES),
            "scaled": False,
            "vector_definition": VECTOR_DEFINITION,
            "wifi_processes": list(AGENT_PROCESSES),
            "window_spec": {"length_minutes": int(window_minutes), "aligned": "clock", "scope": "all devices together"},
            "service_timezone": service_timezone,
            "extra_wifi_processes": [],
        },
        "deployment_info": {"status": "available", "deployed_at": None, "deployed_by": None},
    }


def agent_model_card(metadata: Mapping[str, Any]) -> str:
    """A short model card (README.md head) from the agent variant's metadata; figures as stored there."""
    mi, ti, ic = metadata["model_info"], metadata["training_info"], metadata["inference_config"]
    bm = metadata["evaluation_info"]["basic_metrics"]

    def fmt(v: Any) -> str:
        return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    metrics = " | ".join(fmt(bm.get(k)) for k in ("precision", "recall", "f1_score", "roc_auc", "pr_auc"))
    return (
        f"## Agent variant `{mi['version']}`\n\n{mi['description']}\n\n"
        f"Trained {mi['created_at']} on {ti['training_samples']} windows ({ti['empty_windows']} without WiFi records), "
        f"{ti.get('data_start')} .. {ti.get('data_end')}.\n\n"
        f"**Threshold** {ic['threshold']:.6f}, convention `{ic['score_convention']}`: {ic['score_definition']}.\n\n"
        "### Evaluation (as measured by the caller on labelled windows)\n\n"
        "| precision | recall | F1 | ROC-AUC | PR-AUC |\n|---|---|---|---|---|\n"
        f"| {metrics} |\n"
    )


@dataclass(frozen=True)
class AgentModel:
    """The 5-value variant for today's inference agent, with its honest evaluation."""

    estimator: IsolationForest
    threshold: float
    vectors: pd.DataFrame
    evaluation: Evaluation | None  # the earlier fit's figures on the held-out vectors (None without any)
    training_seconds: float

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Values pickled before the typed results (``training.AgentModel``) carry the evaluation as a dict."""
        if isinstance(state.get("evaluation"), dict):
            state = {**state, "evaluation": Evaluation.from_dict(state["evaluation"])}
        self.__dict__.update(state)


def train_agent_variant(
    records: pd.DataFrame,
    evaluation: EvaluationSet | None,
    *,
    window_minutes: int,
    contamination: float,
    random_state: int,
) -> AgentModel:
    """Fit on the vectors before the split, evaluate on the held-out vectors, refit on all (as for the
    window model: the figures are those of the earlier fit on data it never saw)."""
    vectors = agent_vectors(records, window_minutes)
    if len(vectors) < 2:
        raise TrainingError(
            f"only {len(vectors)} agent windows (hostapd/wpa_supplicant records): cannot train the agent variant"
        )
    result = None
    if (
        evaluation is not None
        and evaluation.agent_vectors is not None
        and evaluation.agent_labels is not None
        and len(evaluation.agent_vectors)
        and evaluation.split_time
    ):
        early = vectors[vectors["window_start"] < pd.Timestamp(evaluation.split_time)]
        if len(early) >= 2:
            twin, twin_threshold = train_agent_model(early, contamination, random_state)
            scores = anomaly_scores(twin, vector_matrix(evaluation.agent_vectors))
            about = evaluation.about()
            data = EvaluationData(
                about.source,
                about.description,
                about.split_time,
                windows=len(scores),
                anomalous_windows=int(evaluation.agent_labels.sum()),
            )
            result = Evaluation(data, binary_metrics(evaluation.agent_labels, scores, twin_threshold))
    started = time.perf_counter()
    est, threshold = train_agent_model(vectors, contamination, random_state)
    return AgentModel(est, threshold, vectors, result, round(time.perf_counter() - started, 4))


def build_agent_package(
    agent: AgentModel,
    models_dir: Path,
    *,
    model_version: str,
    export_files: Sequence[str],
    contamination: float,
    window_minutes: int,
    service_timezone: str,
    min_f1: float,
    min_roc_auc: float,
) -> tuple[PackageInfo, bool]:
    """The agent variant's own package (``model_<version>_agent5`` beside the window model's) and whether it
    is deployment-ready: only when its own held-out figures pass the quality gates."""
    overall = agent.evaluation.overall if agent.evaluation is not None else None
    ready = meets_quality_gates(overall, min_f1, min_roc_auc)
    version = agent_version(model_version)
    metadata = agent_metadata(
        version=version,
        estimator=agent.estimator,
        threshold=agent.threshold,
        vectors=agent.vectors,
        basic_metrics=(overall.figures(BASIC_METRICS) if overall is not None else {})
        or {"f1_score": 0.0, "roc_auc": 0.0},
        contamination=contamination,
        window_minutes=window_minutes,
        evaluation=agent.evaluation,
        export_files=export_files,
        training_duration=agent.training_seconds,
        service_timezone=service_timezone,
    )
    info = build_package(
        models_dir, version, agent.estimator, metadata, model_card_md=agent_model_card(metadata), deployment_ready=ready
    )
    return info, ready
