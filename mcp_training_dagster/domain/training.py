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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mcp_training_dagster.domain.agent_variant import AgentModel  # noqa: F401  (agent_model values pickled before it moved name it here)
from mcp_training_dagster.serving.calibration import calibrated_scores, fit_calibration, raw_threshold
from mcp_training_dagster.domain.evaluation import EvaluationSet, evaluate_on, score_diagnostics, time_split
from mcp_training_dagster.domain.horizon import FrameWindows, StoredWindows, WindowTable  # noqa: F401  (StoredWindows: the stored table's reader)
from mcp_training_dagster.serving.features import FEATURE_DOCS, MODEL_FEATURES, WindowSpec
from mcp_training_dagster.domain.results import (
    BASIC_METRICS,
    HEADLINE_METRICS,
    Evaluation,
    Selection,
    TrainingError,
)
from mcp_training_dagster.serving.scoring import (
    SCORE_CONVENTION,
    SCORE_DEFINITION,
    anomaly_scores,
    score_table,
)
from mcp_training_dagster.serving.scoring import feature_matrix as _matrix
from mcp_training_dagster.settings import AlarmConfig, DetectorConfig

if TYPE_CHECKING:  # scikit-learn is imported where a model is fitted (build_pipeline, _complete), not at load:
    # the code location imports this module, and every run process loads the code location first (an ingest run
    # never fits); scikit-learn with the SciPy it pulls in is about a second of each such start on 2 cores.
    from sklearn.pipeline import Pipeline


def build_pipeline(detector: DetectorConfig) -> Pipeline:
    """Counts are heavy-tailed, so log1p first; scaling matters for LOF's distances."""
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

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


@dataclass(frozen=True)
class TrainedModel:
    """A fitted pipeline plus everything needed to use it correctly, complete when built (:func:`_complete`)."""

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
    evaluation: Evaluation | None = None  # honest figures with their data source (see train_and_select)
    selection: Selection | None = None  # every candidate's figures and why this one was kept
    diagnostics: dict[str, Any] | None = None  # unsupervised, never called accuracy (optional keys: a document)
    calibration: dict[str, Any] | None = None  # per-kind tail thresholds, fusion, silence rule (see calibration)
    input_fingerprint: str | None = None  # data + evaluation set + config + code: same inputs, same model
    devices: tuple[str, ...] = ()  # device keys it was fitted on (which held-out windows it has not seen)
    heldout_scores: np.ndarray | None = None  # the pre-split fit's calibrated scores on the evaluation windows
    fit_sample: dict[str, Any] | None = None  # how many windows it was fitted on, of how many, chosen how (None: all)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Models pickled before the typed results (the ``anomaly_model`` asset's stored values) carry
        ``evaluation`` and ``selection`` as dicts: read them into their types, so they load and package as before."""
        state = dict(state)
        if isinstance(state.get("evaluation"), dict):
            state["evaluation"] = Evaluation.from_dict(state["evaluation"])
        if isinstance(state.get("selection"), dict):
            state["selection"] = Selection.from_dict(state["selection"])
        self.__dict__.update(state)

    def raw_score(self, windows: pd.DataFrame) -> np.ndarray:
        """The detector's own score per window (higher = more anomalous), before calibration."""
        return anomaly_scores(self.pipeline, feature_matrix(windows, self.feature_names))

    def score(self, windows: pd.DataFrame) -> np.ndarray:
        """Calibrated anomaly score per window (higher = more anomalous; anomalous when > ``decision_threshold``)."""
        return _calibrated(windows, self.raw_score(windows), self.calibration)

    @property
    def decision_threshold(self) -> float:
        """Threshold on :meth:`score`: 0 for a calibrated model, the raw threshold otherwise."""
        return 0.0 if self.calibration is not None else self.threshold

    def predict(self, windows: pd.DataFrame) -> np.ndarray:
        return self.score(windows) > self.decision_threshold

    def score_table(self, windows: pd.DataFrame, top_reasons: int = 3) -> pd.DataFrame:
        return score_table(
            windows,
            self.pipeline,
            self.threshold,
            self.feature_names,
            top_reasons=top_reasons,
            calibration=self.calibration,
        )

    def calibration_summary(self) -> dict[str, Any]:
        if self.calibration is None:
            return {"method": "quantile", "threshold": self.threshold}
        c = self.calibration
        return {
            "method": c["method"],
            "fusion": c["fusion"],
            "silence_factor": c["silence_factor"],
            "by_kind": {
                k: {
                    "budget_per_router_day": v["budget_per_router_day"],
                    "expected_alarms_per_router_day": v["expected_alarms_per_router_day"],
                    "threshold_z": v["threshold"],
                    "xi": v["xi"],
                    **(
                        {
                            "continue_budget_per_router_day": v["continue_budget_per_router_day"],
                            "continue_threshold_z": v["continue_threshold"],
                        }
                        if "continue_threshold" in v
                        else {}
                    ),
                }
                for k, v in c["thresholds"].items()
            },
        }


def _calibrated(windows: pd.DataFrame, raw: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    return raw if calibration is None else calibrated_scores(windows, raw, calibration)


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


@dataclass(frozen=True)
class _Fit:
    """A fitted, calibrated pipeline and its scores on the windows it was fitted on (not yet a model)."""

    pipeline: Pipeline
    threshold: float
    calibration: dict[str, Any] | None
    scores: np.ndarray  # raw scores of the training windows
    seconds: float
    sample: dict[str, Any] | None = None  # subsample_positions' record (None: fitted on every window)
    windows: pd.DataFrame | None = None  # the windows it was fitted on, when every window (own_scores)

    @property
    def decision_threshold(self) -> float:
        return 0.0 if self.calibration is not None else self.threshold

    def score(self, windows: pd.DataFrame) -> np.ndarray:
        return _calibrated(
            windows, anomaly_scores(self.pipeline, feature_matrix(windows, MODEL_FEATURES)), self.calibration
        )

    def own_scores(self, table: WindowTable, positions: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores and :meth:`score` of the very windows this was fitted on (``positions`` of ``table``), from
        the raw scores the fit already computed: an isolation forest's scoring pass costs about a third of its
        fit (per-tree Python overhead), and the same pipeline on the same rows gives the same numbers. Refitted
        on a subsample: scored afresh, chunk by chunk (:func:`table_scores`)."""
        if self.sample is None and self.windows is not None:
            return self.scores, _calibrated(self.windows, self.scores, self.calibration)
        return table_scores(table, positions, self.pipeline, self.calibration)


@dataclass(frozen=True)
class Scoring:
    """One scoring of a table's windows for :func:`score_passes`: ``positions`` (ascending; None: all) by a fitted
    pipeline and calibration; ``visit(frame, raw, calibrated)`` sees each chunk's scored windows."""

    positions: np.ndarray | None
    pipeline: Pipeline
    calibration: dict[str, Any] | None
    visit: Callable[[pd.DataFrame, np.ndarray, np.ndarray], None] | None = None


def table_scores(
    table: WindowTable, positions: np.ndarray | None, pipeline: Pipeline, calibration: dict[str, Any] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Raw and calibrated scores of ``table``'s windows at ``positions`` (ascending; None: all), in that order,
    scored chunk by chunk of whole routers: the calibration relates a router's windows to each other only, so
    the scores are those of the whole table at once, and only they are kept."""
    return score_passes(table, [Scoring(positions, pipeline, calibration)])[0]


def score_passes(table: WindowTable, scorings: Sequence[Scoring]) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`table_scores` of each of ``scorings``, reading the table once: a stored table's every read decodes
    each row group again, which at millions of windows costs about what a scoring of a sample does."""
    outs: list[tuple[np.ndarray, np.ndarray]] = []
    selections: list[tuple[np.ndarray, np.ndarray] | None] = []
    made: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # one mask and rank per positions array (refits share one)
    for job in scorings:
        n = len(table) if job.positions is None else len(job.positions)
        outs.append((np.empty(n), np.empty(n)))
        if job.positions is None:
            selections.append(None)
            continue
        if id(job.positions) not in made:
            wanted = np.zeros(len(table), dtype=bool)
            wanted[job.positions] = True
            made[id(job.positions)] = (wanted, np.cumsum(wanted) - 1)
        selections.append(made[id(job.positions)])
    if not scorings:
        return outs
    for at, chunk in table.chunks():
        for job, (raw_out, calibrated_out), selection in zip(scorings, outs, selections):
            frame, where = chunk, at
            if selection is not None:
                wanted, rank = selection
                keep = wanted[at]
                if not keep.any():
                    continue
                frame, where = (chunk, rank[at]) if keep.all() else (chunk[keep], rank[at[keep]])
            raw = anomaly_scores(job.pipeline, feature_matrix(frame, MODEL_FEATURES))
            calibrated = _calibrated(frame, raw, job.calibration)
            raw_out[where], calibrated_out[where] = raw, calibrated
            if job.visit is not None:
                job.visit(frame, raw, calibrated)
    return outs


def subsample_positions(n: int, cap: int | None, seed: int) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """At most ``cap`` of ``n`` windows to fit and calibrate on (their positions, ascending) and how they were
    chosen (None: all of them).

    Isolation forests fit each tree on a small sample anyway (``max_samples``) and the calibration
    reads tail quantiles, so a uniform random subsample of a very long horizon gives the same model
    at a fraction of the time and memory; the choice is recorded in the model's metadata."""
    if cap is None or n <= cap:
        return None, None
    rows = np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
    how = {
        "windows": int(cap),
        "of": int(n),
        "seed": int(seed),
        "chosen": "uniform random without replacement (numpy default_rng(seed).choice), kept in time order",
    }
    return rows, how


@dataclass(frozen=True)
class RouterCodes:
    """Every window's router as a code into ``names`` (the routers' names, sorted), in the table's order."""

    codes: np.ndarray
    names: tuple[str, ...]


def router_codes(table: WindowTable) -> RouterCodes:
    """:class:`RouterCodes` of ``table``, read chunk by chunk (one short column, never a column of strings of
    every window); the codes follow the sorted names, so they do not depend on how the table is chunked."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for at, frame in table.chunks(["device"]):
        codes, uniques = pd.factorize(frame["device"].astype("str"))
        parts.append((at, codes, np.asarray(uniques, dtype=object)))
    names = np.unique(np.concatenate([u for _, _, u in parts])) if parts else np.zeros(0, dtype=object)
    out = np.zeros(len(table), dtype=np.int64)
    for at, codes, uniques in parts:
        out[at] = np.searchsorted(names, uniques)[codes]
    return RouterCodes(out, tuple(str(n) for n in names))


def diagnostic_positions(
    routers: RouterCodes, cap: int | None, seed: int
) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """The windows the diagnostics (seed stability, later windows' flag rate) are computed on when there are more
    than ``cap`` (their positions, ascending), and how they were chosen (None, None: every window).

    Each of those figures scores all its windows with another fit: on millions of windows that is most of a
    retrain. Whole routers are sampled, not single windows: a calibrated score relates a router's windows (device
    context, alarm runs, silence), so a sampled window scores exactly as it does among all windows, and the
    figures are those of the routers drawn. Routers are drawn in a seeded random order until ``cap`` windows are
    reached (the last router drawn whole: at most one router's windows over the cap); when that takes every
    router, every window it is."""
    n = len(routers.codes)
    if cap is None or n <= cap:
        return None, None
    counts = np.bincount(routers.codes, minlength=len(routers.names))
    drawn = np.random.default_rng(seed).permutation(len(routers.names))
    k = min(int(np.searchsorted(np.cumsum(counts[drawn]), cap)) + 1, len(drawn))
    if k == len(drawn):  # one router holds most windows: the sample would be all of them
        return None, None
    chosen = np.zeros(len(routers.names), dtype=bool)
    chosen[drawn[:k]] = True
    rows = np.flatnonzero(chosen[routers.codes])
    how = {
        "windows": int(len(rows)),
        "of": int(n),
        "routers": k,
        "of_routers": len(routers.names),
        "cap": int(cap),
        "seed": int(seed),
        "chosen": "whole routers in a seeded random order (numpy default_rng(seed).permutation of the sorted "
        "router names) until the cap is reached; their every window",
        "figures": ["seed_stability", "later_windows_flag_rate"],
    }
    return rows, how


def _fit(
    table: WindowTable,
    positions: np.ndarray | None,
    detector: DetectorConfig,
    *,
    min_windows: int,
    alarm_budget: AlarmConfig | None,
    fit_cap: int | None = None,
) -> _Fit:
    """Fit the configured detector and calibrate its threshold on the training scores (see :func:`train_model`),
    on the windows of ``table`` at ``positions`` (None: all), at most ``fit_cap`` of them (:func:`subsample_positions`):
    only those are read."""
    n = len(table) if positions is None else len(positions)
    rows, sample = subsample_positions(n, fit_cap, detector.random_state)
    if rows is not None:
        positions = rows if positions is None else positions[rows]
    windows = table.rows(positions)
    # Quiet device windows are many and alike; what the detector learns from are windows with records.
    active = int((windows["n_records"] > 0).sum()) if "n_records" in windows.columns else len(windows)
    if active < min_windows:
        raise TrainingError(
            f"only {active} feature windows with records in the training horizon; at least {min_windows} are needed "
            "(model.training.min_training_windows)"
        )
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
        calibration = fit_calibration(
            windows,
            scores,
            budget={str(k): float(v) for k, v in alarm_budget.budget_per_router_day.items()},
            fusion=alarm_budget.fusion,
            silence_factor=alarm_budget.silence_factor,
            u_quantile=alarm_budget.tail_quantile,
            max_alarm_fraction=alarm_budget.max_alarm_fraction,
            ensemble=alarm_budget.ensemble,
            magnitude_kinds=() if alarm_budget.magnitude == "none" else ("device",),
            continue_budget={str(k): float(v) for k, v in alarm_budget.continue_budget_per_router_day.items()},
        )
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
    # the windows serve own_scores' shortcut only (fitted on every window); a subsample's go (a million rows)
    return _Fit(pipeline, threshold, calibration, scores, seconds, sample, windows if sample is None else None)


def _complete(
    table: WindowTable,
    detector: DetectorConfig,
    fit: _Fit,
    scores: tuple[np.ndarray, np.ndarray],
    *,
    window_minutes: int,
    evaluation: Evaluation | None = None,
    selection: Selection | None = None,
    diagnostics: dict[str, Any] | None = None,
    input_fingerprint: str | None = None,
    devices: tuple[str, ...] = (),
    heldout_scores: np.ndarray | None = None,
) -> TrainedModel:
    """The one place a :class:`TrainedModel` is built: the fit, the facts of its training data (``scores``: raw
    and calibrated of every training window, :meth:`_Fit.own_scores`), and its results."""
    import sklearn

    ts = table.column("window_start")
    calibration = fit.calibration
    raw, calibrated = scores
    return TrainedModel(
        pipeline=fit.pipeline,
        feature_names=MODEL_FEATURES,
        threshold=fit.threshold,
        detector=detector,
        window_minutes=window_minutes,
        trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        training_seconds=round(fit.seconds, 4),
        n_windows=len(table),
        windows_by_kind={str(k): int(v) for k, v in table.column("entity_kind").value_counts().items()},
        training_flag_rate=float(np.mean(calibrated > 0)) if calibration else float(np.mean(raw > fit.threshold)),
        calibration=calibration,
        score_quantiles={f"p{q}": float(np.quantile(raw, q / 100)) for q in (1, 25, 50, 75, 99)},
        data_start=ts.min().isoformat() if len(ts) else None,
        data_end=ts.max().isoformat() if len(ts) else None,
        version=new_version(),
        library_versions={"scikit-learn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        evaluation=evaluation,
        selection=selection,
        diagnostics=diagnostics,
        input_fingerprint=input_fingerprint,
        devices=devices,
        heldout_scores=heldout_scores,
        fit_sample=fit.sample,
    )


def as_table(windows: pd.DataFrame | WindowTable) -> WindowTable:
    """A table in memory as a :class:`~mcp_training_dagster.domain.horizon.WindowTable` (one chunk)."""
    return FrameWindows(windows) if isinstance(windows, pd.DataFrame) else windows


def train_model(
    windows: pd.DataFrame | WindowTable,
    detector: DetectorConfig,
    *,
    window_minutes: int,
    min_windows: int = 20,
    alarm_budget: AlarmConfig | None = _DEFAULT_ALARMS,
    fit_cap: int | None = None,
) -> TrainedModel:
    """Fit the configured detector and calibrate its threshold on the training scores (no evaluation: see
    :func:`train_and_select` for the model the pipeline ships).

    With ``alarm_budget`` (the default configuration's ``model.alarms``) verdicts come from the per-kind
    tail calibration (``serving/calibration.py``) and ``threshold`` is its raw-score equivalent for
    device windows; with ``alarm_budget=None`` the legacy ``1 - contamination`` quantile of all scores."""
    table = as_table(windows)
    fit = _fit(table, None, detector, min_windows=min_windows, alarm_budget=alarm_budget, fit_cap=fit_cap)
    return _complete(table, detector, fit, fit.own_scores(table, None), window_minutes=window_minutes)


# The evaluation set is scored in chunks of whole routers of at most this many windows (FrameWindows' max_rows).
SCORE_CHUNK_WINDOWS = 500_000
# Above this many windows every fit uses a seeded uniform subsample (subsample_positions); far above today's data.
FIT_WINDOWS_CAP = 1_000_000
# Trees of the stability diagnostic's refits with other seeds (at most the model's own). They are compared with the
# model, never shipped: a third of the default 300 trees cuts their cost by two thirds (scikit-learn's per-tree
# overhead: ~0.9 s a 300-tree refit on 2 cores), and fewer trees agree a little less, so the figure errs on the
# cautious side (shipped samples: Spearman 0.997 with 100-tree refits, 0.998 with 300; top-2 % overlap the same).
STABILITY_REFIT_TREES = 100


def _rank(result: Evaluation) -> float:
    pr = result.overall.pr_auc
    return -1.0 if pr is None else float(pr)


@dataclass(frozen=True)
class ScoredModel:
    """A trained model and :meth:`TrainedModel.score` of every training window, in order: training computes them
    anyway, and scoring millions of windows again (the score distribution) costs as much as it did."""

    model: TrainedModel
    scores: np.ndarray
    raw_scores: np.ndarray  # the detector's own scores of the same windows
    top: pd.DataFrame  # the model card's most anomalous windows (top_windows)


def train_and_select(windows: pd.DataFrame | WindowTable, *args: Any, **kwargs: Any) -> TrainedModel:
    """:func:`train_and_select_scored`'s model."""
    return train_and_select_scored(windows, *args, **kwargs).model


def train_and_select_scored(
    windows: pd.DataFrame | WindowTable,
    detector: DetectorConfig,
    evaluation: EvaluationSet | None,
    *,
    window_minutes: int,
    min_windows: int = 20,
    split_fraction: float = 0.8,
    stability_seeds: int = 3,
    alarm_budget: AlarmConfig | None = _DEFAULT_ALARMS,
    input_fingerprint: str | None = None,
    fit_cap: int | None = FIT_WINDOWS_CAP,
) -> ScoredModel:
    """Fit every candidate on the windows before the time split, evaluate each on the held-out
    evaluation set, keep the best by PR-AUC (the configured kind wins ties), then refit it on all
    windows. The figures attached are those of the fit before the split on data it never saw: an
    honest estimate for the refit model, and said so in its metadata. The model comes back complete:
    evaluation, selection, diagnostics, the devices it was fitted on and ``input_fingerprint`` (the
    caller's identity of these inputs, see the ``anomaly_model`` asset).

    ``windows``: a table in memory or a stored one read on demand (:class:`StoredWindows`): each fit reads
    only its windows (at most ``fit_cap``), every scoring of all windows goes chunk by chunk of whole routers
    and keeps only the scores; the model is the same either way."""
    table = as_table(windows)
    starts = table.column("window_start")
    split = (
        pd.Timestamp(evaluation.split_time)
        if evaluation and evaluation.split_time
        else time_split(starts, split_fraction)
    )
    before = (starts < split).to_numpy()
    early, later = np.flatnonzero(before), np.flatnonzero(~before)
    del starts, before
    candidates = list(dict.fromkeys([detector.kind, *detector.candidates]))
    results: dict[str, Evaluation] = {}
    twins: dict[str, _Fit] = {}
    heldout_by_kind: dict[str, np.ndarray] = {}  # each candidate's evaluation scores, kept for the chosen one
    if evaluation is not None and len(evaluation.windows):
        for kind in candidates:
            twins[kind] = _fit(
                table,
                early,
                detector.model_copy(update={"kind": kind}),
                min_windows=min_windows,
                alarm_budget=alarm_budget,
                fit_cap=fit_cap,
            )
            heldout_by_kind[kind] = table_scores(
                FrameWindows(evaluation.windows, max_rows=SCORE_CHUNK_WINDOWS),
                None,
                twins[kind].pipeline,
                twins[kind].calibration,
            )[1]
            results[kind] = evaluate_on(heldout_by_kind[kind], twins[kind].decision_threshold, evaluation)
    best = detector.kind
    if results:
        challenger = max(candidates, key=lambda k: (_rank(results[k]), k == detector.kind))
        if _rank(results[challenger]) > _rank(results[detector.kind]) + detector.selection_margin:
            best = challenger  # a challenger must win clearly: evaluation sets are small and noisy
    twins = {best: twins[best]} if best in twins else {}  # the others' fitted windows go
    chosen = detector.model_copy(update={"kind": best})
    fit = _fit(table, None, chosen, min_windows=min_windows, alarm_budget=alarm_budget, fit_cap=fit_cap)
    heldout = heldout_by_kind.get(best)
    selection = Selection(
        chosen=best,
        criterion=f"overall window PR-AUC on the evaluation set; another candidate replaces {detector.kind} "
        f"only when higher by more than {detector.selection_margin}",
        candidates={k: {m: getattr(r.overall, m) for m in HEADLINE_METRICS} for k, r in results.items()},
        fitted_before=str(split),
    )
    top = TopWindows(fit.pipeline, fit.calibration, fit.threshold)
    if fit.sample is None:  # fitted on every window: its scores are at hand
        all_scores = fit.own_scores(table, None)
    else:  # one pass: the model's scores of every window, and the model card's top windows while at it
        all_scores = score_passes(table, [Scoring(None, fit.pipeline, fit.calibration, top.add)])[0]
    train_scores = all_scores[1]
    routers = router_codes(table)
    sampled, diagnostics_sample = diagnostic_positions(routers, fit_cap, chosen.random_state)
    seed_scores = [train_scores if sampled is None else train_scores[sampled]]
    later_twin = None
    if len(early) >= min_windows and len(later):
        later_twin = twins.get(best) or _fit(
            table, early, chosen, min_windows=min_windows, alarm_budget=alarm_budget, fit_cap=fit_cap
        )
        if sampled is not None:
            later = later[np.isin(later, sampled, assume_unique=True)]
    # Above the cap every refit's sample and the later windows are scored in one more pass over the table.
    passes: list[Scoring] = []
    refit_trees = min(STABILITY_REFIT_TREES, chosen.isolation_forest.n_estimators)
    if best == "isolation_forest":  # LOF is deterministic: nothing to compare across seeds
        forest = chosen.isolation_forest.model_copy(update={"n_estimators": refit_trees})
        for i in range(1, stability_seeds):
            other = _fit(
                table,
                None,
                chosen.model_copy(update={"random_state": chosen.random_state + i, "isolation_forest": forest}),
                min_windows=min_windows,
                alarm_budget=alarm_budget,
                fit_cap=fit_cap,
            )
            if sampled is None:
                seed_scores.append(other.own_scores(table, None)[1])
            else:
                passes.append(Scoring(sampled, other.pipeline, other.calibration))
            del other
    scores_later = later_twin is not None and len(later) > 0
    if later_twin is not None and scores_later:
        passes.append(Scoring(later, later_twin.pipeline, later_twin.calibration))
    del later_twin
    scored = score_passes(table, passes)
    later_scores = scored.pop()[1] if scores_later else None
    seed_scores += [calibrated for _, calibrated in scored]
    del scored, passes
    twins.clear()
    diagnostics = score_diagnostics(train_scores, fit.decision_threshold, later_scores, seed_scores)
    del seed_scores, later_scores
    if diagnostics_sample is not None:
        diagnostics["sample"] = diagnostics_sample
    if "seed_stability" in diagnostics:  # what the refits were, in the metadata beside the figures
        diagnostics["seed_stability"] |= {
            "refit_trees": refit_trees,
            "model_trees": chosen.isolation_forest.n_estimators,
            "refits": f"seeds {chosen.random_state + 1}..{chosen.random_state + stability_seeds - 1} on the same "
            f"windows, {refit_trees} trees each (the model: {chosen.isolation_forest.n_estimators}); a diagnostic: "
            "fewer trees agree a little less, so it errs on the cautious side",
        }
    model = _complete(
        table,
        chosen,
        fit,
        all_scores,
        window_minutes=window_minutes,
        evaluation=results.get(best),
        selection=selection,
        diagnostics=diagnostics,
        input_fingerprint=input_fingerprint,
        devices=routers.names,
        heldout_scores=heldout,
    )
    card_top = top.table() if top.picks else top_windows(model, table, scores=all_scores)
    return ScoredModel(model, all_scores[1], all_scores[0], card_top)


def training_scores(model: TrainedModel, table: pd.DataFrame | WindowTable) -> np.ndarray:
    """:meth:`TrainedModel.score` of every window, scored chunk by chunk of whole routers, in the table's order."""
    t = as_table(table)
    return table_scores(t, None, model.pipeline, model.calibration)[1]


MODEL_CARD_TOP = 8  # windows in the model card's table of the most anomalous ones


class TopWindows:
    """The ``n`` most anomalous rows of the score table of every window (:meth:`TrainedModel.score_table`), kept
    while the windows are scored chunk by chunk (:meth:`add`, a :class:`Scoring`'s ``visit``): a score table of
    millions of windows (reasons and a formatted time per row) costs more than the scoring itself. Each chunk keeps
    its top ``n`` rows in the score table's order (its windows, then its unkeyed ``-`` rows), the top ``n`` of those
    are kept (equal scores of two chunks in chunk order), and only they get their reasons (:meth:`table`)."""

    def __init__(
        self, pipeline: Pipeline, calibration: dict[str, Any] | None, threshold: float, n: int = MODEL_CARD_TOP
    ) -> None:
        self.pipeline, self.calibration, self.n = pipeline, calibration, n
        self.threshold = 0.0 if calibration is not None else threshold
        self.picks: list[pd.DataFrame] = []

    def add(self, frame: pd.DataFrame, raw: np.ndarray, calibrated: np.ndarray) -> None:
        from mcp_training_dagster.serving.calibration import calibrated_scores

        cal = self.calibration
        own = calibrated if cal is not None else raw
        rows, score, base, unkeyed = np.arange(len(frame)), own, own, np.zeros(len(frame), dtype=bool)
        if "n_unkeyed" in frame.columns and len(frame):
            extra = np.flatnonzero(
                ((frame["entity_kind"].astype("str") == "device") & (frame["n_unkeyed"] > 0)).to_numpy()
            )
            if len(extra):
                extra_score = own[extra]
                if cal is not None and cal.get("magnitude"):  # the router's state without its stations' counts
                    extra_score = calibrated_scores(frame, raw, cal, with_magnitude=False)[extra]
                rows, score = np.r_[rows, extra], np.r_[own, extra_score]
                base, unkeyed = np.r_[own, own[extra]], np.r_[unkeyed, np.ones(len(extra), dtype=bool)]
        top = np.argsort(-score, kind="stable")[: self.n]
        self.picks.append(frame.iloc[rows[top]].assign(_score=score[top], _base=base[top], _unkeyed=unkeyed[top]))

    def table(self) -> pd.DataFrame:
        """The kept rows as :func:`~mcp_training_dagster.serving.scoring.score_table` gives them, most anomalous
        first."""
        from mcp_training_dagster.serving.scoring import UNKEYED_ENTITY, window_verdicts

        both = pd.concat(self.picks, ignore_index=True) if len(self.picks) > 1 else self.picks[0]
        w = both.take(np.argsort(-both["_score"].to_numpy(), kind="stable")[: self.n]).reset_index(drop=True)
        # explained as their window is, before the "-" rows' scores
        out = window_verdicts(
            w,
            feature_matrix(w, MODEL_FEATURES),
            w["_base"].to_numpy(),
            self.threshold,
            self.pipeline,
            MODEL_FEATURES,
            calibration=self.calibration,
        )
        out.loc[w["_unkeyed"].to_numpy(dtype=bool), "entity"] = UNKEYED_ENTITY
        out["score"] = w["_score"].to_numpy()
        out["is_anomaly"] = out["score"].to_numpy() > self.threshold
        return out


def top_windows(
    model: TrainedModel,
    table: pd.DataFrame | WindowTable,
    n: int = MODEL_CARD_TOP,
    scores: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The ``n`` most anomalous rows of :meth:`TrainedModel.score_table` over every window (the model card's
    table, see :class:`TopWindows`), from ``scores``: (raw, calibrated) of every window in the table's order (None:
    scored here, in the same pass)."""
    t = as_table(table)
    top = TopWindows(model.pipeline, model.calibration, model.threshold, n)
    if scores is None:
        score_passes(t, [Scoring(None, model.pipeline, model.calibration, top.add)])
    else:
        raw, calibrated = scores
        for at, frame in t.chunks():
            top.add(frame, raw[at], calibrated[at])
    return top.table() if top.picks else model.score_table(t.rows(None).iloc[:0])


def flagged_share_of(model: TrainedModel, table: pd.DataFrame | WindowTable) -> float | None:
    """``drift.flagged_share(model.score_table(windows), windows)`` over every window, chunk by chunk and without
    the score table's reasons: the share it takes is of the windows with records, each matched by its own row
    (the unkeyed ``-`` rows match none), whose verdict is ``model.score > decision_threshold``."""
    flagged = active = 0
    for _, frame in as_table(table).chunks():
        scores = model.score(frame)
        if "n_records" in frame.columns:
            scores = scores[frame["n_records"].to_numpy() > 0]
        flagged, active = flagged + int((scores > model.decision_threshold).sum()), active + len(scores)
    return flagged / active if active else None


def windows_with_records(table: pd.DataFrame | WindowTable, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` of the windows with records (``n_records > 0``), in the table's order: what the drift baseline
    reads, without the quiet windows or the other columns."""
    from mcp_training_dagster.domain.drift import RECORDS_COLUMN

    cols = list(dict.fromkeys([*columns, RECORDS_COLUMN]))
    parts, where = [], []
    for at, frame in as_table(table).chunks(cols):
        keep = frame[RECORDS_COLUMN].to_numpy() > 0
        parts.append(frame[keep].reset_index(drop=True))
        where.append(at[keep])
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    if len(parts) > 1:
        out = out.take(np.argsort(np.concatenate(where), kind="stable")).reset_index(drop=True)
    return out


def calibration_card(model: TrainedModel) -> str:
    """The model card's paragraph on how verdicts are drawn: method, budget and expected alarm rate per kind."""
    c = model.calibration
    if not c:
        return ""
    joining = any("continue_threshold" in v for v in c["thresholds"].values())
    rows = "\n".join(
        f"| {k} | {v['active_windows']} | {v['budget_per_router_day']} | {v['p']:.4%} | {v['expected_alarms_per_router_day']} |"
        + (f" {v.get('continue_budget_per_router_day', '-')} |" if joining else "")
        for k, v in c["thresholds"].items()
    )
    head = "| kind | active windows | budget (alarms / router-day) | exceedance p | expected alarms / router-day |"
    if joining:
        head = (
            head.replace("budget (alarms", "budget (alarms raised")
            + " continuation budget (windows joining a raised alarm) |"
        )
    return (
        "**Verdicts** (`metadata.json` `inference_config.calibration`): " + c["description"] + ". The window "
        "verdicts are `calibrated score > 0`; `predict()` is the detector's own verdict at the threshold above "
        f"(device windows). Over {c['router_days']} router-days of training data:\n\n"
        f"{head}\n|{'---|' * head.count(' |')}\n{rows}\n\n"
    )


def metadata_document(
    model: TrainedModel,
    *,
    export_files: list[str],
    spec: WindowSpec,
    service_timezone: str,
    extra_wifi_processes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """metadata.json in the inference contract's shape, whole (the one builder: nothing is added to it later).
    ``basic_metrics`` come from the evaluation (held-out data with known labels, source named beside them),
    never from the training scores."""
    ev = model.evaluation
    by_kind = ev.by_kind if ev is not None else None
    basic = ev.overall.figures(BASIC_METRICS) if ev is not None else {}
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
            "input_fingerprint": model.input_fingerprint,
            "devices": list(model.devices),
            **({"fit_sample": model.fit_sample} if model.fit_sample else {}),
        },
        "evaluation_info": {
            "basic_metrics": basic,
            "source": ev.data.source if ev is not None else "none",
            "evaluation_data": ev.data.as_dict() if ev is not None else None,
            "by_kind": {k: m.as_dict() for k, m in by_kind.items()} if by_kind is not None else None,
            "recall_by_scenario": ev.recall_by_scenario if ev is not None else None,
            "benign_flag_rate": ev.benign_flag_rate if ev is not None else None,
            "note": "figures of the same configuration fitted before the time split, on held-out data it never saw",
            "selection": model.selection.as_dict() if model.selection is not None else None,
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
            if model.calibration
            else "pipeline.predict(X) == -1 exactly when score > threshold",
            "calibration": model.calibration,
            "verdict": "calibrated score > 0 (scoring.score_table: per-kind tail thresholds, device context fused "
            "into station/interface windows, silence rule)"
            if model.calibration
            else "score > threshold",
            "feature_names": list(model.feature_names),
            "window_spec": asdict(spec),
            "service_timezone": service_timezone,
            "extra_wifi_processes": list(extra_wifi_processes),
        },
        "deployment_info": {"status": "available", "deployed_at": None, "deployed_by": None},
    }
