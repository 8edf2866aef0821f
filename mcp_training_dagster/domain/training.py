"""Training: feature windows in, a fitted detector with a calibrated threshold out.

Score convention, everywhere in this project: ``score = -pipeline.score_samples(X)``, so a
HIGHER score means MORE anomalous, and a window is flagged when ``score > threshold``. The
threshold is the ``1 - contamination`` quantile of the training scores, stored next to the model
in that same convention (the previous trainer stored a raw ``score_samples`` percentile and then
compared with the opposite sign, which flagged everything).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mcp_training_dagster.domain.calibration import calibrated_scores, fit_calibration, raw_threshold
from mcp_training_dagster.domain.evaluation import EvaluationSet, evaluate_on, score_diagnostics, time_split
from mcp_training_dagster.domain.features import FEATURE_DOCS, MODEL_FEATURES, WindowSpec
from mcp_training_dagster.domain.scoring import SCORE_CONVENTION, SCORE_DEFINITION, anomaly_scores
from mcp_training_dagster.domain.scoring import feature_matrix as _matrix
from mcp_training_dagster.settings import AlarmConfig, DetectorConfig


class TrainingError(ValueError):
    """Training cannot produce a trustworthy model from this data."""


def build_pipeline(detector: DetectorConfig) -> Pipeline:
    """Counts are heavy-tailed, so log1p first; scaling matters for LOF's distances."""
    if detector.kind == "isolation_forest":
        p = detector.isolation_forest
        est: Any = IsolationForest(
            n_estimators=p.n_estimators,
            max_samples=p.max_samples,
            max_features=p.max_features,
            contamination="auto",
            random_state=detector.random_state,
            n_jobs=1,
        )
    else:
        q = detector.local_outlier_factor
        est = LocalOutlierFactor(n_neighbors=q.n_neighbors, metric=q.metric, novelty=True, contamination="auto")
    return Pipeline(
        [
            ("log1p", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
            ("detector", est),
        ]
    )


@dataclass
class TrainedModel:
    """A fitted pipeline plus everything needed to use it correctly."""

    pipeline: Pipeline
    feature_names: tuple[str, ...]
    threshold: float
    detector: DetectorConfig
    window_minutes: int
    trained_at: str
    training_seconds: float
    n_windows: int
    windows_by_kind: dict[str, int]
    training_flag_rate: float
    score_quantiles: dict[str, float]
    data_start: str | None
    data_end: str | None
    version: str
    score_convention: str = SCORE_CONVENTION
    score_definition: str = SCORE_DEFINITION
    library_versions: dict[str, str] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None  # honest figures with their data source (see train_and_select)
    selection: dict[str, Any] | None = None  # every candidate's figures and why this one was kept
    diagnostics: dict[str, Any] | None = None  # unsupervised, never called accuracy
    calibration: dict[str, Any] | None = None  # per-kind tail thresholds, fusion, silence rule (see calibration)
    input_fingerprint: str | None = None  # data + evaluation set + config + code: same inputs, same model
    devices: tuple[str, ...] = ()  # device keys it was fitted on (which held-out windows it has not seen)
    heldout_scores: np.ndarray | None = None  # the pre-split fit's calibrated scores on the evaluation windows
    fit_sample: dict[str, Any] | None = None  # how many windows it was fitted on, of how many, chosen how (None: all)

    def raw_score(self, windows: pd.DataFrame) -> np.ndarray:
        """The detector's own score per window (higher = more anomalous), before calibration."""
        return anomaly_scores(self.pipeline, feature_matrix(windows, self.feature_names))

    def score(self, windows: pd.DataFrame) -> np.ndarray:
        """Calibrated anomaly score per window (higher = more anomalous; anomalous when > ``decision_threshold``)."""
        raw = self.raw_score(windows)
        if self.calibration is None:
            return raw
        from mcp_training_dagster.domain.calibration import calibrated_scores

        return calibrated_scores(windows, raw, self.calibration)

    @property
    def decision_threshold(self) -> float:
        """Threshold on :meth:`score`: 0 for a calibrated model, the raw threshold otherwise."""
        return 0.0 if self.calibration is not None else self.threshold

    def predict(self, windows: pd.DataFrame) -> np.ndarray:
        return self.score(windows) > self.decision_threshold

    def score_table(self, windows: pd.DataFrame, top_reasons: int = 3) -> pd.DataFrame:
        from mcp_training_dagster.domain.scoring import score_table

        return score_table(windows, self.pipeline, self.threshold, self.feature_names, top_reasons=top_reasons,
                           calibration=self.calibration)

    def calibration_summary(self) -> dict[str, Any]:
        if self.calibration is None:
            return {"method": "quantile", "threshold": self.threshold}
        c = self.calibration
        return {"method": c["method"], "fusion": c["fusion"], "silence_factor": c["silence_factor"],
                "by_kind": {k: {"budget_per_router_day": v["budget_per_router_day"],
                                "expected_alarms_per_router_day": v["expected_alarms_per_router_day"],
                                "threshold_z": v["threshold"], "xi": v["xi"]} for k, v in c["thresholds"].items()}}


def feature_matrix(windows: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    try:
        return _matrix(windows, names)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None


def new_version(now: datetime | None = None) -> str:
    """Sortable and unique even for two trainings in the same second."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d_%H%M%S_%f}_{secrets.token_hex(3)}"


_DEFAULT_ALARMS = AlarmConfig()


def fit_subsample(windows: pd.DataFrame, cap: int | None, seed: int) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """At most ``cap`` windows to fit and calibrate on, and how they were chosen (None: all of them).

    Isolation forests fit each tree on a small sample anyway (``max_samples``) and the calibration
    reads tail quantiles, so a uniform random subsample of a very long horizon gives the same model
    at a fraction of the time and memory; the choice is recorded in the model's metadata."""
    if cap is None or len(windows) <= cap:
        return windows, None
    rows = np.sort(np.random.default_rng(seed).choice(len(windows), size=cap, replace=False))
    how = {"windows": int(cap), "of": len(windows), "seed": int(seed),
           "chosen": "uniform random without replacement (numpy default_rng(seed).choice), kept in time order"}
    return windows.iloc[rows], how


def train_model(windows: pd.DataFrame, detector: DetectorConfig, *, window_minutes: int, min_windows: int = 20,
                alarm_budget: AlarmConfig | None = _DEFAULT_ALARMS, fit_cap: int | None = None) -> TrainedModel:
    """Fit the configured detector and calibrate its threshold on the training scores.

    With ``alarm_budget`` (the default configuration's ``model.alarms``) verdicts come from the per-kind
    tail calibration (``domain/calibration.py``) and ``threshold`` is its raw-score equivalent for
    device windows; with ``alarm_budget=None`` the legacy ``1 - contamination`` quantile of all scores."""
    # Quiet device windows are many and alike; what the detector learns from are windows with records.
    active = int((windows["n_records"] > 0).sum()) if "n_records" in windows.columns else len(windows)
    if active < min_windows:
        raise TrainingError(
            f"only {active} feature windows with records in the training horizon; at least {min_windows} are needed "
            "(model.training.min_training_windows)"
        )
    windows, fit_sample = fit_subsample(windows, fit_cap, detector.random_state)
    X = feature_matrix(windows, MODEL_FEATURES)
    started = time.perf_counter()
    pipeline = build_pipeline(detector)
    # LOF on many identical rows (quiet windows repeat exactly) divides by ~zero reachability
    # distances and produces scores of 1e9; it learns the same density from the distinct rows.
    pipeline.fit(np.unique(X, axis=0) if detector.kind == "local_outlier_factor" else X)
    scores = anomaly_scores(pipeline, X)
    seconds = time.perf_counter() - started
    calibration = None
    if alarm_budget is not None:
        calibration = fit_calibration(windows, scores, budget=dict(alarm_budget.budget_per_router_day),
                                      fusion=alarm_budget.fusion, silence_factor=alarm_budget.silence_factor,
                                      u_quantile=alarm_budget.tail_quantile,
                                      max_alarm_fraction=alarm_budget.max_alarm_fraction,
                                      ensemble=alarm_budget.ensemble,
                                      magnitude_kinds=() if alarm_budget.magnitude == "none" else ("device",))
    if calibration is not None and "device" in calibration["thresholds"]:
        threshold = raw_threshold(calibration, "device")
    else:
        calibration = None
        threshold = float(np.quantile(scores, 1.0 - detector.contamination))
    # The estimator's own predict() (-1 = anomaly) must agree with `score > threshold`: the inference
    # side calls predict. decision_function = score_samples - offset_, so offset_ = -threshold.
    pipeline.named_steps["detector"].offset_ = -threshold
    # The calibration travels with the estimator (a plain dict: the pickle stays pure scikit-learn), so
    # every scorer of this pipeline - the package's score_export.py, `mcp-training score`, the assets -
    # draws the same per-kind verdicts (scoring.score_table reads it).
    pipeline.calibration_ = calibration
    ts = windows["window_start"]
    return TrainedModel(
        pipeline=pipeline,
        feature_names=MODEL_FEATURES,
        threshold=threshold,
        detector=detector,
        window_minutes=window_minutes,
        trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        training_seconds=round(seconds, 4),
        n_windows=len(windows),
        windows_by_kind={str(k): int(v) for k, v in windows["entity_kind"].value_counts().items()},
        training_flag_rate=float(np.mean(calibrated_scores(windows, scores, calibration) > 0)) if calibration
        else float(np.mean(scores > threshold)),
        calibration=calibration,
        score_quantiles={f"p{q}": float(np.quantile(scores, q / 100)) for q in (1, 25, 50, 75, 99)},
        data_start=ts.min().isoformat() if len(ts) else None,
        data_end=ts.max().isoformat() if len(ts) else None,
        version=new_version(),
        library_versions={"scikit-learn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        fit_sample=fit_sample,
    )


# Above this many windows every fit uses a seeded uniform subsample (fit_subsample); far above today's data.
FIT_WINDOWS_CAP = 1_000_000


def _rank(result: dict[str, Any]) -> float:
    pr = result["overall"]["pr_auc"]
    return -1.0 if pr is None else float(pr)


def train_and_select(
    windows: pd.DataFrame,
    detector: DetectorConfig,
    evaluation: EvaluationSet | None,
    *,
    window_minutes: int,
    min_windows: int = 20,
    split_fraction: float = 0.8,
    stability_seeds: int = 3,
    alarm_budget: AlarmConfig | None = _DEFAULT_ALARMS,
    fit_cap: int | None = FIT_WINDOWS_CAP,
) -> TrainedModel:
    """Fit every candidate on the windows before the time split, evaluate each on the held-out
    evaluation set, keep the best by PR-AUC (the configured kind wins ties), then refit it on all
    windows. The figures attached are those of the fit before the split on data it never saw: an
    honest estimate for the refit model, and said so in its metadata."""
    split = pd.Timestamp(evaluation.split_time) if evaluation and evaluation.split_time else time_split(windows["window_start"], split_fraction)
    early = windows[windows["window_start"] < split]
    later = windows[windows["window_start"] >= split]
    candidates = list(dict.fromkeys([detector.kind, *detector.candidates]))
    results: dict[str, dict[str, Any]] = {}
    twins: dict[str, TrainedModel] = {}
    if evaluation is not None and len(evaluation.windows):
        for kind in candidates:
            twins[kind] = train_model(early, detector.model_copy(update={"kind": kind}), window_minutes=window_minutes,
                                      min_windows=min_windows, alarm_budget=alarm_budget, fit_cap=fit_cap)
            results[kind] = evaluate_on(twins[kind].score(evaluation.windows), twins[kind].decision_threshold, evaluation)
    best = detector.kind
    if results:
        challenger = max(candidates, key=lambda k: (_rank(results[k]), k == detector.kind))
        if _rank(results[challenger]) > _rank(results[detector.kind]) + detector.selection_margin:
            best = challenger  # a challenger must win clearly: evaluation sets are small and noisy
    chosen = detector.model_copy(update={"kind": best})
    model = train_model(windows, chosen, window_minutes=window_minutes, min_windows=min_windows, alarm_budget=alarm_budget, fit_cap=fit_cap)
    model.evaluation = results.get(best)
    model.heldout_scores = twins[best].score(evaluation.windows) if best in twins and evaluation is not None else None
    model.selection = {
        "chosen": best,
        "criterion": f"overall window PR-AUC on the evaluation set; another candidate replaces {detector.kind} "
                     f"only when higher by more than {detector.selection_margin}",
        "candidates": {k: {m: r["overall"][m] for m in ("pr_auc", "roc_auc", "f1_score", "precision", "recall")}
                       for k, r in results.items()},
        "fitted_before": str(split),
    }
    train_scores = model.score(windows)
    seed_scores = [train_scores]
    if best == "isolation_forest":  # LOF is deterministic: nothing to compare across seeds
        for i in range(1, stability_seeds):
            other = train_model(windows, chosen.model_copy(update={"random_state": chosen.random_state + i}),
                                window_minutes=window_minutes, min_windows=min_windows, alarm_budget=alarm_budget, fit_cap=fit_cap)
            seed_scores.append(other.score(windows))
    later_scores = None
    if len(early) >= min_windows and len(later):
        twin = twins.get(best) or train_model(early, chosen, window_minutes=window_minutes, min_windows=min_windows,
                                              alarm_budget=alarm_budget, fit_cap=fit_cap)
        later_scores = twin.score(later)
    model.diagnostics = score_diagnostics(train_scores, model.decision_threshold, later_scores, seed_scores)
    return model


def calibration_card(model: TrainedModel) -> str:
    """The model card's paragraph on how verdicts are drawn: method, budget and expected alarm rate per kind."""
    c = model.calibration
    if not c:
        return ""
    rows = "\n".join(
        f"| {k} | {v['active_windows']} | {v['budget_per_router_day']} | {v['p']:.4%} | {v['expected_alarms_per_router_day']} |"
        for k, v in c["thresholds"].items())
    return ("**Verdicts** (`metadata.json` `inference_config.calibration`): " + c["description"] + ". The window "
            "verdicts are `calibrated score > 0`; `predict()` is the detector's own verdict at the threshold above "
            f"(device windows). Over {c['router_days']} router-days of training data:\n\n"
            "| kind | active windows | budget (alarms / router-day) | exceedance p | expected alarms / router-day |\n"
            f"|---|---|---|---|---|\n{rows}\n\n")


BASIC_METRICS = ("f1_score", "precision", "recall", "roc_auc", "pr_auc", "accuracy", "threshold_value", "anomaly_ratio")


def metadata_document(model: TrainedModel, *, export_files: list[str], spec: WindowSpec, service_timezone: str,
                      extra_wifi_processes: tuple[str, ...] = ()) -> dict[str, Any]:
    """metadata.json in the inference contract's shape. ``basic_metrics`` come from the evaluation
    (held-out data with known labels, source named beside them), never from the training scores."""
    ev = model.evaluation or {}
    overall = ev.get("overall", {})
    basic = {k: overall.get(k) for k in BASIC_METRICS if overall.get(k) is not None}
    basic["threshold_value"] = model.threshold  # the deployed model's threshold, in its stated convention
    return {
        "model_info": {
            "version": f"model_{model.version}",
            "training_id": model.version,
            "created_at": model.trained_at,
            "model_type": type(model.pipeline.named_steps["detector"]).__name__,
            "model_name": "WiFiAnomalyWindows",
            "name": f"WiFi window anomaly detector {model.version}",
            "description": "Window-level WiFi anomaly detector (device, station and interface windows) trained on router log exports",
            "training_source": "export_data",
            "export_files": export_files,
        },
        "training_info": {
            "training_samples": model.n_windows,
            "n_samples": model.n_windows,
            "windows_by_kind": model.windows_by_kind,
            "feature_names": list(model.feature_names),
            "feature_descriptions": {k: FEATURE_DOCS[k] for k in model.feature_names},
            "feature_count": len(model.feature_names),
            "window_minutes": model.window_minutes,
            "model_parameters": model.detector.model_dump(mode="json"),
            "training_duration": model.training_seconds,
            "data_start": model.data_start,
            "data_end": model.data_end,
            "library_versions": model.library_versions,
            **({"fit_sample": model.fit_sample} if model.fit_sample else {}),
        },
        "evaluation_info": {
            "basic_metrics": basic,
            "source": ev.get("data", {}).get("source", "none"),
            "evaluation_data": ev.get("data"),
            "by_kind": ev.get("by_kind"),
            "recall_by_scenario": ev.get("recall_by_scenario"),
            "benign_flag_rate": ev.get("benign_flag_rate"),
            "note": "figures of the same configuration fitted before the time split, on held-out data it never saw",
            "selection": model.selection,
            "diagnostics": model.diagnostics,
            "feature_importance": {},
        },
        "inference_config": {
            "input": "export_records",
            "threshold": model.threshold,
            "score_convention": model.score_convention,
            "score_definition": model.score_definition,
            "predict": "pipeline.predict(X) == -1 exactly when score > threshold (the detector's own score, "
                       "the device-window threshold); the window verdicts are the calibrated ones below"
            if model.calibration else "pipeline.predict(X) == -1 exactly when score > threshold",
            "calibration": model.calibration,
            "verdict": "calibrated score > 0 (scoring.score_table: per-kind tail thresholds, device context fused "
                       "into station/interface windows, silence rule)" if model.calibration else "score > threshold",
            "feature_names": list(model.feature_names),
            "window_spec": asdict(spec),
            "service_timezone": service_timezone,
            "extra_wifi_processes": list(extra_wifi_processes),
        },
        "deployment_info": {"status": "available", "deployed_at": None, "deployed_by": None},
    }


@dataclass
class AgentModel:
    """The 5-value variant for today's inference agent, with its honest evaluation."""

    estimator: Any
    threshold: float
    vectors: pd.DataFrame
    evaluation: dict[str, Any] | None
    training_seconds: float


def train_agent_variant(records: pd.DataFrame, evaluation: EvaluationSet | None, *, window_minutes: int,
                        contamination: float, random_state: int) -> AgentModel:
    """Fit on the vectors before the split, evaluate on the held-out vectors, refit on all (as for the
    window model: the figures are those of the earlier fit on data it never saw)."""
    from mcp_training_dagster.domain.agent_variant import agent_vectors, train_agent_model, vector_matrix
    from mcp_training_dagster.domain.evaluation import binary_metrics

    vectors = agent_vectors(records, window_minutes)
    if len(vectors) < 2:
        raise TrainingError(f"only {len(vectors)} agent windows (hostapd/wpa_supplicant records): cannot train the agent variant")
    result = None
    if evaluation is not None and evaluation.agent_vectors is not None and len(evaluation.agent_vectors) and evaluation.split_time:
        early = vectors[vectors["window_start"] < pd.Timestamp(evaluation.split_time)]
        if len(early) >= 2:
            twin, twin_threshold = train_agent_model(early, contamination, random_state)
            scores = anomaly_scores(twin, vector_matrix(evaluation.agent_vectors))
            result = {"data": {**evaluation.summary(), "windows": len(scores),
                               "anomalous_windows": int(evaluation.agent_labels.sum())},
                      "overall": binary_metrics(evaluation.agent_labels, scores, twin_threshold)}
    started = time.perf_counter()
    est, threshold = train_agent_model(vectors, contamination, random_state)
    return AgentModel(est, threshold, vectors, result, round(time.perf_counter() - started, 4))
