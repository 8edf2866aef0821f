"""Training: feature windows in, a fitted detector with a calibrated threshold out.

Score convention, everywhere in this project: ``score = -pipeline.score_samples(X)``, so a
HIGHER score means MORE anomalous, and a window is flagged when ``score > threshold``. The
threshold is the ``1 - contamination`` quantile of the training scores, stored next to the model
in that same convention (the previous trainer stored a raw ``score_samples`` percentile and then
compared with the opposite sign, which flagged everything).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mcp_training_dagster.domain.agent_variant import AgentModel  # noqa: F401  (agent_model values pickled before it moved name it here)
from mcp_training_dagster.serving.calibration import RARITY_FEATURES, fit_calibration, raw_threshold
from mcp_training_dagster.domain.evaluation import EvaluationSet, evaluate_on, score_diagnostics, time_split
from mcp_training_dagster.domain.stored_windows import FrameWindows, StoredWindows, WindowTable
from mcp_training_dagster.serving.features import MODEL_FEATURES
from mcp_training_dagster.domain.threads import in_order
from mcp_training_dagster.domain.results import (
    HEADLINE_METRICS,
    Evaluation,
    Selection,
    TrainingError,
)
from mcp_training_dagster.domain.training_scores import (
    CHUNK_THREADS,
    SCORE_COLUMNS,
    Scoring,
    TopWindows,
    as_table,
    diagnostic_positions,
    feature_matrix,
    fit_rows,
    kind_counts,
    router_codes,
    score_passes,
    subsample_positions,
    table_scores,
    top_windows,
    with_calibration,
)
from mcp_training_dagster.serving.scoring import (
    SCORE_CONVENTION,
    SCORE_DEFINITION,
    anomaly_scores,
    score_table,
)
from mcp_training_dagster.settings import AlarmConfig, DetectorConfig

if TYPE_CHECKING:  # scikit-learn is imported where a model is fitted (build_pipeline, _complete), not at load:
    # the code location imports this module, and every run process loads the code location first (an ingest run
    # never fits); scikit-learn with the SciPy it pulls in is about a second of each such start on 2 cores.
    from sklearn.pipeline import Pipeline


FITTING_MODULES = (
    "sklearn.ensemble",
    "sklearn.neighbors",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.metrics",
)


_importing: threading.Thread | None = None


def _import_fitting_libraries_ahead() -> None:
    """Import scikit-learn on a thread while the training windows are read: its import is about a second of a
    retrain's start, the reading mostly Arrow and numpy work outside the GIL. :func:`build_pipeline` waits for
    that thread before its own imports (two threads importing one package's modules at once can meet a circular
    import half done), which then raise any error as usual."""
    global _importing

    def load() -> None:
        for name in FITTING_MODULES:
            with contextlib.suppress(Exception):  # the fit's own import reports a failure where it matters
                importlib.import_module(name)

    if _importing is None:
        _importing = threading.Thread(target=load, name="import-sklearn", daemon=True)
        _importing.start()


def build_pipeline(detector: DetectorConfig) -> Pipeline:
    """Counts are heavy-tailed, so log1p first; scaling matters for LOF's distances."""
    if _importing is not None:
        _importing.join()
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
    training_flag_rate: float  # these two: of every training window, or of diagnostics["sample"] when it has one
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
        return with_calibration(windows, self.raw_score(windows), self.calibration)

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


def new_version(now: datetime | None = None) -> str:
    """Sortable and unique even for two trainings in the same second."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d_%H%M%S_%f}_{secrets.token_hex(3)}"


_DEFAULT_ALARMS = AlarmConfig()
# The columns a fit on some of the windows reads: the detector's features and what the calibration reads (the keys,
# its rarity and magnitude families, the silence rule's gap). A stored table's subsample decodes every row group
# it touches (a uniform one: all of them), and the ~40 other columns are about half of that; the fit is the same.
FIT_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys([*MODEL_FEATURES, *RARITY_FEATURES, "device", "entity_kind", "window_start", "gap_vs_usual"])
)


def _decoded(table: WindowTable) -> tuple[str, ...] | None:
    """The columns a scoring pass reads of ``table``: of a stored one, :data:`SCORE_COLUMNS` (decoding the others
    was half of a pass); of one in memory, every column (a projection would copy them)."""
    return SCORE_COLUMNS if isinstance(table, StoredWindows) else None


@dataclass(frozen=True)
class _Fit:
    """A fitted, calibrated pipeline and its scores on the windows it was fitted on (not yet a model)."""

    pipeline: Pipeline
    threshold: float
    calibration: dict[str, Any] | None
    scores: np.ndarray  # raw scores of the training windows
    seconds: float
    sample: dict[str, Any] | None = None  # subsample_positions' record (None: fitted on every window)
    windows: pd.DataFrame | None = None  # the windows it was fitted on, when every window (own_scores) or kept

    @property
    def decision_threshold(self) -> float:
        return 0.0 if self.calibration is not None else self.threshold

    def score(self, windows: pd.DataFrame) -> np.ndarray:
        return with_calibration(
            windows, anomaly_scores(self.pipeline, feature_matrix(windows, MODEL_FEATURES)), self.calibration
        )

    def own_scores(self, table: WindowTable, positions: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores and :meth:`score` of the very windows this was fitted on (``positions`` of ``table``), from
        the raw scores the fit already computed: an isolation forest's scoring pass costs about a third of its
        fit (per-tree Python overhead), and the same pipeline on the same rows gives the same numbers. Refitted
        on a subsample: scored afresh, chunk by chunk (:func:`table_scores`)."""
        if self.sample is None and self.windows is not None:
            return self.scores, with_calibration(self.windows, self.scores, self.calibration)
        return table_scores(table, positions, self.pipeline, self.calibration, _decoded(table))


def _fit(
    table: WindowTable,
    positions: np.ndarray | None,
    detector: DetectorConfig,
    *,
    min_windows: int,
    alarm_budget: AlarmConfig | None,
    fit_cap: int | None = None,
    keep_windows: bool = False,
) -> _Fit:
    """Fit the configured detector and calibrate its threshold on the training scores (see :func:`train_model`),
    on the windows of ``table`` at ``positions`` (None: all), at most ``fit_cap`` of them (:func:`subsample_positions`;
    a local outlier factor at most ``max_fit_windows``, its own lower cap):
    only those are read (``keep_windows``: kept in the result even when a subsample, for the refits)."""
    n = len(table) if positions is None else len(positions)
    if detector.kind == "local_outlier_factor":  # its own, lower cap (LocalOutlierFactorParams.max_fit_windows)
        lof_cap = detector.local_outlier_factor.max_fit_windows
        fit_cap = lof_cap if fit_cap is None else min(fit_cap, lof_cap)
    rows, sample = subsample_positions(n, fit_cap, detector.random_state)
    if rows is not None:
        positions = rows if positions is None else positions[rows]
    windows = table.rows(positions) if positions is None else table.rows(positions, FIT_COLUMNS)
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
    if detector.kind == "local_outlier_factor":
        # LOF on many identical rows (quiet windows repeat exactly) divides by ~zero reachability
        # distances and produces scores of 1e9; it learns the same density from the distinct rows.
        pipeline.fit(np.unique(X, axis=0))
        scores = anomaly_scores(pipeline, X)
    else:
        # what pipeline.fit(X) does, keeping the transformed windows: they are what the fitted forest scores, so
        # the log1p and scaling of a million windows are not computed a second time (the same scores to the bit)
        Xt = pipeline[:-1].fit_transform(X)
        pipeline[-1].fit(Xt)
        scores = anomaly_scores(pipeline[-1], Xt)
        del Xt
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
    # the windows serve own_scores' shortcut (fitted on every window) and the refits; a subsample's go otherwise
    kept = windows if sample is None or keep_windows else None
    return _Fit(pipeline, threshold, calibration, scores, seconds, sample, kept)


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
    by_kind: dict[str, int] | None = None,
) -> TrainedModel:
    """The one place a :class:`TrainedModel` is built: the fit, the facts of its training data (``scores``: raw
    and calibrated of every training window, :meth:`_Fit.own_scores`, or above the fit cap of the sample of whole
    routers its diagnostics name), and its results. ``by_kind``: :func:`kind_counts` of ``table``, if at hand."""
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
        windows_by_kind=by_kind if by_kind is not None else kind_counts(table),
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
# Above the fit cap the refits fit on a seeded uniform sample of this share of the cap (the model: the cap). Each
# refit's calibration and own scoring cost in proportion to its windows; an isolation forest's trees see
# max_samples windows each either way, and a refit on fewer windows agrees a little less: the cautious side again.
STABILITY_REFIT_SHARE = 0.25


def _rank(result: Evaluation) -> float:
    pr = result.overall.pr_auc
    return -1.0 if pr is None else float(pr)


@dataclass(frozen=True)
class ScoredModel:
    """A trained model and :meth:`TrainedModel.score` of its training windows, in order (above the fit cap those
    of the sample of whole routers its statistics are of: ``positions``): training computes them anyway, and
    scoring millions of windows again (the score distribution) costs as much as it did."""

    model: TrainedModel
    scores: np.ndarray
    raw_scores: np.ndarray  # the detector's own scores of the same windows
    top: pd.DataFrame  # the model card's most anomalous windows (top_windows)
    positions: np.ndarray | None = None  # the windows scored (ascending positions in the table; None: every one)


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
    only its windows (at most ``fit_cap``), every scoring goes chunk by chunk of whole routers and keeps only the
    scores; the model is the same either way. Above ``fit_cap`` windows the training statistics (flag rate, score
    quantiles, the returned scores, the top windows, the diagnostics) are of a seeded sample of whole routers of
    about ``fit_cap`` windows (``diagnostics["sample"]``, :func:`diagnostic_positions`), the refits fit on a share
    of the model's fit sample (:data:`STABILITY_REFIT_SHARE`), and no fit scores every window."""
    _import_fitting_libraries_ahead()
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
    fit_table = fit_rows(table, early, fit_cap, detector.random_state, FIT_COLUMNS)  # decoded once
    results: dict[str, Evaluation] = {}
    twins: dict[str, _Fit] = {}
    heldout_by_kind: dict[str, np.ndarray] = {}  # each candidate's evaluation scores, kept for the chosen one
    # The configured kind's fit on every window runs on a second thread beside the candidates' fits and
    # evaluations (it is the model unless a challenger wins clearly; then it is fitted again for that one), and the
    # routers' codes and kinds after it. The block's end waits for them, also behind an error: no fit is left running.
    evaluating = evaluation is not None and evaluation.n_windows > 0
    with ThreadPoolExecutor(max_workers=1) as spare:
        ahead: Future[_Fit] | None = None
        if evaluating:
            ahead = spare.submit(
                _fit,
                fit_table,
                None,
                detector,
                min_windows=min_windows,
                alarm_budget=alarm_budget,
                fit_cap=fit_cap,
                keep_windows=True,
            )
        routers_ahead = spare.submit(router_codes, table)
        kinds_ahead = spare.submit(kind_counts, table)
        for kind in candidates if evaluating else []:
            assert evaluation is not None
            twins[kind] = _fit(
                fit_table,
                early,
                detector.model_copy(update={"kind": kind}),
                min_windows=min_windows,
                alarm_budget=alarm_budget,
                fit_cap=fit_cap,
            )
            heldout_by_kind[kind] = table_scores(
                FrameWindows(evaluation.window_columns(SCORE_COLUMNS), max_rows=SCORE_CHUNK_WINDOWS),
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
        fit = (
            ahead.result()
            if ahead is not None and best == detector.kind
            else _fit(
                fit_table,
                None,
                chosen,
                min_windows=min_windows,
                alarm_budget=alarm_budget,
                fit_cap=fit_cap,
                keep_windows=True,
            )
        )
        del ahead
        routers, by_kind = routers_ahead.result(), kinds_ahead.result()
    heldout = heldout_by_kind.get(best)
    selection = Selection(
        chosen=best,
        criterion=f"overall window PR-AUC on the evaluation set; another candidate replaces {detector.kind} "
        f"only when higher by more than {detector.selection_margin}",
        candidates={k: {m: getattr(r.overall, m) for m in HEADLINE_METRICS} for k, r in results.items()},
        fitted_before=str(split),
    )
    # Above the cap every statistic of the training windows (SAMPLED_FIGURES) is of a seeded sample of whole
    # routers, scored in one read of the table with the refits and the later windows: never every window.
    sampled, statistics_sample = diagnostic_positions(routers, fit_cap, chosen.random_state)
    top = TopWindows(fit.pipeline, fit.calibration, fit.threshold)
    passes: list[Scoring] = []
    own = None
    if fit.sample is None:  # fitted on every window: its scores are at hand
        own = fit.own_scores(table, None)
    else:  # the model's scores of the sample (of every window when none), the model card's top windows with them
        passes.append(Scoring(sampled, fit.pipeline, fit.calibration, top.add))
    later_twin = None
    if len(early) >= min_windows and len(later):
        later_twin = twins.get(best) or _fit(
            fit_table, early, chosen, min_windows=min_windows, alarm_budget=alarm_budget, fit_cap=fit_cap
        )
        if sampled is not None:
            later = later[np.isin(later, sampled, assume_unique=True)]
    del fit_table
    refit_scores: list[np.ndarray] = []  # the refits fitted on every window: their own scores
    refit_trees = min(STABILITY_REFIT_TREES, chosen.isolation_forest.n_estimators)
    refit_cap = (
        fit_cap if fit.sample is None or fit_cap is None else max(int(fit_cap * STABILITY_REFIT_SHARE), min_windows)
    )
    refit_sample = None
    # Above the cap the refits sample the model's own fit sample (a uniform sample of a uniform sample is one),
    # held in memory: a stored table's uniform sample decodes every row group again.
    refit_source = table if fit.sample is None or fit.windows is None else FrameWindows(fit.windows)
    if fit.sample is not None:
        fit = dataclasses.replace(fit, windows=None)  # held by refit_source only, gone with it
    if best == "isolation_forest":  # LOF is deterministic: nothing to compare across seeds
        forest = chosen.isolation_forest.model_copy(update={"n_estimators": refit_trees})

        def refit(i: int, source: WindowTable = refit_source) -> _Fit:
            return _fit(
                source,
                None,
                chosen.model_copy(update={"random_state": chosen.random_state + i, "isolation_forest": forest}),
                min_windows=min_windows,
                alarm_budget=alarm_budget,
                fit_cap=refit_cap,
            )

        for other in in_order(refit, range(1, stability_seeds), CHUNK_THREADS):  # two refits at once
            refit_sample = other.sample
            if refit_source is table and other.sample is None:  # fitted on every window: its own scores
                refit_scores.append(other.own_scores(table, None)[1])
            else:
                passes.append(Scoring(sampled, other.pipeline, other.calibration))
            del other
    del refit_source
    scores_later = later_twin is not None and len(later) > 0
    if later_twin is not None and scores_later:
        passes.append(Scoring(later, later_twin.pipeline, later_twin.calibration))
    del later_twin
    scored = score_passes(table, passes, _decoded(table))
    later_scores = scored.pop()[1] if scores_later else None
    stats = own if own is not None else scored.pop(0)  # the model's (raw, calibrated) of the sample or all
    seed_scores = [stats[1], *refit_scores, *(calibrated for _, calibrated in scored)]
    del scored, passes, refit_scores
    twins.clear()
    diagnostics = score_diagnostics(stats[1], fit.decision_threshold, later_scores, seed_scores)
    del seed_scores, later_scores
    if statistics_sample is not None:
        diagnostics["sample"] = statistics_sample
    if "seed_stability" in diagnostics:  # what the refits were, in the metadata beside the figures
        diagnostics["seed_stability"] |= {
            "refit_trees": refit_trees,
            "model_trees": chosen.isolation_forest.n_estimators,
            "refits": f"seeds {chosen.random_state + 1}..{chosen.random_state + stability_seeds - 1} on the same "
            f"windows, {refit_trees} trees each (the model: {chosen.isolation_forest.n_estimators}); a diagnostic: "
            "fewer trees agree a little less, so it errs on the cautious side",
        }
        if refit_sample is not None:  # above the fit cap: fewer windows than the model's, said beside the figures
            diagnostics["seed_stability"] |= {
                "refit_windows": refit_sample["windows"],
                "model_windows": fit.sample["windows"] if fit.sample else len(table),
                "refits": f"seeds {chosen.random_state + 1}..{chosen.random_state + stability_seeds - 1}, each on "
                f"a seeded uniform sample of {refit_sample['windows']} of the model's {refit_sample['of']} windows "
                f"(its own seed; the model's: training_info.fit_sample), {refit_trees} trees each (the model: "
                f"{chosen.isolation_forest.n_estimators}); a diagnostic: fewer trees and windows agree a little "
                "less, so it errs on the cautious side",
            }
    model = _complete(
        table,
        chosen,
        fit,
        stats,
        window_minutes=window_minutes,
        evaluation=results.get(best),
        selection=selection,
        diagnostics=diagnostics,
        input_fingerprint=input_fingerprint,
        devices=routers.names,
        heldout_scores=heldout,
        by_kind=by_kind,
    )
    card_top = top.table() if top.picks else top_windows(model, table, scores=own)
    return ScoredModel(model, stats[1], stats[0], card_top, sampled)
