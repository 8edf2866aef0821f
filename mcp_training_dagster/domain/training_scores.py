"""Scoring training windows after a fit: passes over a (stored) table, the samples they are computed on, and the
statistics read from them (the model card's top windows, the flagged share).

A calibrated score relates a router's windows to each other (device context, alarm runs, silence), so every pass
goes chunk by chunk of whole routers and every sample that is scored is one of whole routers
(:func:`diagnostic_positions`); a fit's own sample is of single windows (:func:`subsample_positions`), and only it
is fitted and calibrated on. Above the fit cap the training statistics are of the sample of whole routers
(:func:`statistics_positions`): scoring every one of millions of windows costs more than the fits themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mcp_training_dagster.domain.stored_windows import FrameWindows, StoredWindows, WindowTable, add_kind_counts
from mcp_training_dagster.domain.results import TrainingError
from mcp_training_dagster.domain.threads import in_order
from mcp_training_dagster.serving.calibration import RARITY_FEATURES, calibrated_scores
from mcp_training_dagster.serving.features import MODEL_FEATURES
from mcp_training_dagster.serving.scoring import anomaly_scores
from mcp_training_dagster.serving.scoring import feature_matrix as _matrix

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from mcp_training_dagster.domain.training import TrainedModel


def with_calibration(windows: pd.DataFrame, raw: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    return raw if calibration is None else calibrated_scores(windows, raw, calibration)


def feature_matrix(windows: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    try:
        return _matrix(windows, names)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None


def scoring_columns(features: Sequence[str] = MODEL_FEATURES) -> tuple[str, ...]:
    """The columns a scoring of windows reads (a pipeline's ``features``, the calibration's keys, rarity and
    magnitude families, the silence rule's gap) and the model card's rows show (entity, unkeyed records, the
    silence): a stored table's scoring pass decodes only these, about half of its columns (the other ~30 are
    context no score or card line reads)."""
    keys = ("device", "entity_kind", "entity", "window_start", "n_records")
    return tuple(dict.fromkeys([*features, *RARITY_FEATURES, *keys, "gap_vs_usual", "silence_before_s", "n_unkeyed"]))


# What a scoring pass of the training windows reads with the model's features (see scoring_columns).
SCORE_COLUMNS = scoring_columns()
CHUNK_THREADS = 2  # chunks of whole routers scored at once by score_passes (and refits fitted at once)


@dataclass(frozen=True)
class Scoring:
    """One scoring of a table's windows for :func:`score_passes`: ``positions`` (ascending; None: all) by a fitted
    pipeline and calibration; ``visit(frame, raw, calibrated)`` sees each chunk's scored windows."""

    positions: np.ndarray | None
    pipeline: Pipeline
    calibration: dict[str, Any] | None
    visit: Callable[[pd.DataFrame, np.ndarray, np.ndarray], None] | None = None
    features: tuple[str, ...] = MODEL_FEATURES  # the pipeline's (a model's feature_names)


def table_scores(
    table: WindowTable,
    positions: np.ndarray | None,
    pipeline: Pipeline,
    calibration: dict[str, Any] | None,
    columns: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw and calibrated scores of ``table``'s windows at ``positions`` (ascending; None: all), in that order,
    scored chunk by chunk of whole routers: the calibration relates a router's windows to each other only, so
    the scores are those of the whole table at once, and only they are kept (``columns``: see :func:`score_passes`)."""
    return score_passes(table, [Scoring(positions, pipeline, calibration)], columns)[0]


def score_passes(
    table: WindowTable, scorings: Sequence[Scoring], columns: Sequence[str] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`table_scores` of each of ``scorings``, reading the table once: a stored table's every read decodes
    each row group again, which at millions of windows costs about what a scoring of a sample does. ``columns``
    (e.g. :data:`SCORE_COLUMNS`): only those of them the table has are read (None: every column)."""
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
    # the windows any scoring wants (None: every one): a stored table's row groups with none are not decoded
    masks = [sel[0] for sel in selections if sel is not None]
    any_wanted = np.logical_or.reduce(masks) if len(masks) == len(selections) else None

    def score(
        item: tuple[np.ndarray, pd.DataFrame],
    ) -> list[tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray] | None]:
        """Each scoring's (windows, their positions in its output, raw, calibrated) of one chunk (None: none
        of its windows is in the chunk)."""
        at, chunk = item
        done: list[tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray] | None] = []
        for job, selection in zip(scorings, selections):
            frame, where = chunk, at
            if selection is not None:
                wanted, rank = selection
                keep = wanted[at]
                if not keep.any():
                    done.append(None)
                    continue
                frame, where = (chunk, rank[at]) if keep.all() else (chunk[keep], rank[at[keep]])
            raw = anomaly_scores(job.pipeline, feature_matrix(frame, job.features))
            done.append((frame, where, raw, with_calibration(frame, raw, job.calibration)))
        return done

    # chunks are scored two at a time (a tree's apply and numpy's array work release the GIL), each chunk's
    # scores stored and visited in chunk order, as one at a time would
    for scored in in_order(score, table.chunks(columns, any_wanted), CHUNK_THREADS):
        for job, (raw_out, calibrated_out), result in zip(scorings, outs, scored):
            if result is None:
                continue
            frame, where, raw, calibrated = result
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


class FitRows:
    """A stored table whose fits' rows (``columns`` at ``positions``, ascending) are decoded in one pass: above the
    cap the fit before the split and the fit on every window each read a uniform subsample, i.e. every row group;
    decoding them once for both saves a decoding of the table. Any other read goes to the table."""

    def __init__(self, table: WindowTable, positions: np.ndarray, columns: tuple[str, ...]) -> None:
        self.table, self.positions, self.columns = table, positions, columns
        self.frame = table.rows(positions, columns)

    def __len__(self) -> int:
        return len(self.table)

    def rows(self, positions: np.ndarray | None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        if positions is not None and len(positions) and columns is not None and tuple(columns) == self.columns:
            at = np.searchsorted(self.positions, positions)
            if at[-1] < len(self.positions) and np.array_equal(self.positions[at], positions):
                return self.frame.take(at).reset_index(drop=True)  # what the table's rows() gives
        return self.table.rows(positions, columns)

    def column(self, name: str) -> pd.Series:
        return self.table.column(name)

    def chunks(
        self, columns: Sequence[str] | None = None, wanted: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        return self.table.chunks(columns, wanted)

    def fingerprint(self) -> str:
        return self.table.fingerprint()


def fit_rows(
    table: WindowTable, early: np.ndarray, cap: int | None, seed: int, columns: tuple[str, ...]
) -> WindowTable:
    """``table``, or above the cap a stored one's :class:`FitRows` of the two fits' subsamples (the windows
    before the split, ``early``, and every window: :func:`subsample_positions` with the detector's seed), ``columns``
    of them (the fits' ``FIT_COLUMNS``)."""
    if not isinstance(table, StoredWindows) or cap is None or len(early) <= cap:
        return table
    whole, _ = subsample_positions(len(table), cap, seed)
    before, _ = subsample_positions(len(early), cap, seed)
    if whole is None or before is None:
        return table
    both = np.zeros(len(table), dtype=bool)  # their union, ascending: a mask, not a sort of both
    both[whole] = True
    both[early[before]] = True
    return FitRows(table, np.flatnonzero(both), columns)


@dataclass(frozen=True)
class RouterCodes:
    """Every window's router as a code into ``names`` (the routers' names, sorted), in the table's order."""

    codes: np.ndarray
    names: tuple[str, ...]


def kind_counts(table: WindowTable) -> dict[str, int]:
    """Windows per entity kind, most first (``value_counts``' order; a tie by name), counted chunk by chunk: no
    column of every window put in order (at 13M windows that take alone was 0.6 s)."""
    counts: dict[str, int] = {}
    for _, frame in table.chunks(["entity_kind"]):
        add_kind_counts(counts, frame)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


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


# What is computed on the sample of whole routers above the cap (diagnostics.sample.figures in metadata.json):
# the diagnostics' and the model's training flag rate and score quantiles, the asset's score histogram, the model
# card's most anomalous windows and the drift baseline's flagged share; below the cap all are of every window.
SAMPLED_FIGURES = (
    "seed_stability",
    "later_windows_flag_rate",
    "training_flag_rate",
    "score_quantiles",
    "score_distribution",
    "top_windows",
    "drift_baseline.flag_rate",
)


def diagnostic_positions(
    routers: RouterCodes, cap: int | None, seed: int
) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """The windows the training statistics (:data:`SAMPLED_FIGURES`: the diagnostics, the training flag rate and
    score quantiles, the score distribution, the model card's top windows) are computed on when there are more than
    ``cap`` (their positions, ascending), and how they were chosen (None, None: every window).

    Each of those figures scores all its windows with the model or another fit: on millions of windows that is
    most of a retrain. Whole routers are sampled, not single windows: a calibrated score relates a router's windows (device
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
        "figures": list(SAMPLED_FIGURES),
        "not_sampled": "the model, its threshold and calibration are fitted on training_info.fit_sample (single "
        "windows); the evaluation is of every held-out window",
    }
    return rows, how


def statistics_positions(model: TrainedModel, table: WindowTable) -> np.ndarray | None:
    """The positions in ``table`` (the model's training windows) of the sample its training statistics were
    computed on, drawn again from what its metadata records (None: every window, or a model whose sample did
    not cover them): the package's model card and the drift baseline then show the figures training showed."""
    how = (model.diagnostics or {}).get("sample") or {}
    if "top_windows" not in how.get("figures", ()) or how.get("of") != len(table):
        return None
    rows, again = diagnostic_positions(router_codes(table), how["cap"], how["seed"])
    return rows if again is not None and again["windows"] == how["windows"] else None


def as_table(windows: pd.DataFrame | WindowTable) -> WindowTable:
    """A table in memory as a :class:`~mcp_training_dagster.domain.stored_windows.WindowTable` (one chunk)."""
    return FrameWindows(windows) if isinstance(windows, pd.DataFrame) else windows


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
    scored here, in the same pass, and of the model's sample of whole routers when its statistics were,
    :func:`statistics_positions`)."""
    t = as_table(table)
    top = TopWindows(model.pipeline, model.calibration, model.threshold, n)
    columns = scoring_columns(model.feature_names)
    if scores is None:
        score_passes(t, [Scoring(statistics_positions(model, t), model.pipeline, model.calibration, top.add)], columns)
    else:
        raw, calibrated = scores
        for at, frame in t.chunks(columns):
            top.add(frame, raw[at], calibrated[at])
    return top.table() if top.picks else model.score_table(t.rows(None).iloc[:0])


def flagged_share_of(model: TrainedModel, table: pd.DataFrame | WindowTable) -> float | None:
    """``drift.flagged_share(model.score_table(windows), windows)`` over every window (of the model's sample of
    whole routers when its statistics were, :func:`statistics_positions`), chunk by chunk and without the score
    table's reasons: the share it takes is of the windows with records, each matched by its own row (the unkeyed
    ``-`` rows match none), whose verdict is ``model.score > decision_threshold``."""
    counts = [0, 0]  # flagged, active

    def count(frame: pd.DataFrame, raw: np.ndarray, calibrated: np.ndarray) -> None:
        if "n_records" in frame.columns:
            calibrated = calibrated[frame["n_records"].to_numpy() > 0]
        counts[0] += int((calibrated > model.decision_threshold).sum())
        counts[1] += len(calibrated)

    t = as_table(table)
    positions = statistics_positions(model, t)
    score_passes(
        t,
        [Scoring(positions, model.pipeline, model.calibration, count, model.feature_names)],
        scoring_columns(model.feature_names),
    )
    return counts[0] / counts[1] if counts[1] else None


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
