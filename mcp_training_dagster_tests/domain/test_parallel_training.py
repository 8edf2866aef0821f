"""Training on both cores is training on one: the threads (row blocks of a scoring, chunks of a scoring pass, the
model's fit beside the candidates', the refits at once) change how long a retrain takes, never its model."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mcp_training_dagster.domain import training, training_scores
from mcp_training_dagster.domain.evaluation import build_evaluation_set, time_split
from mcp_training_dagster.domain.stored_windows import StoredWindows, write_training_windows
from mcp_training_dagster.domain.threads import in_order
from mcp_training_dagster.domain.training_scores import feature_matrix
from mcp_training_dagster.serving import calibration, scoring
from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.features import MODEL_FEATURES, WindowSpec, build_windows
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster.settings import DetectorConfig
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, shifted_routers


@pytest.fixture(scope="module")
def records():
    return shifted_routers(validate_records(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name).records)


def _spied_blocks(monkeypatch, pipeline, rows: int) -> list[tuple[int, str]]:
    """Split scorings of ``rows`` windows into blocks of a fifth on up to four threads; each call of the pipeline's
    ``score_samples`` recorded as (rows, thread name)."""
    monkeypatch.setattr(scoring, "PARALLEL_SCORING_ROWS", rows // 5)
    monkeypatch.setattr(scoring, "SCORING_THREADS", 4)
    calls: list[tuple[int, str]] = []
    score_samples = pipeline.score_samples

    def spy(block: np.ndarray) -> np.ndarray:
        calls.append((len(block), threading.current_thread().name))
        return score_samples(block)

    monkeypatch.setattr(pipeline, "score_samples", spy)
    return calls


def test_a_scoring_in_row_blocks_on_threads_is_the_single_call_to_the_last_bit(records, monkeypatch) -> None:
    windows = build_windows(records)
    model = training.train_model(windows, DetectorConfig(isolation_forest={"n_estimators": 20}), window_minutes=5)
    X = np.tile(feature_matrix(windows, MODEL_FEATURES), (3, 1))
    whole = -model.pipeline.score_samples(X)
    calls = _spied_blocks(monkeypatch, model.pipeline, len(X))
    assert np.array_equal(scoring.anomaly_scores(model.pipeline, X), whole)
    # four blocks covering every row, all on the pool's threads (an idle worker may take a second block)
    assert len(calls) == 4 and sum(n for n, _ in calls) == len(X)
    assert threading.current_thread().name not in {name for _, name in calls}


def test_a_local_outlier_factor_scores_in_one_call(records, monkeypatch) -> None:
    """Its distances come from BLAS products whose last bits depend on the block's shape: never split."""
    windows = build_windows(records)
    model = training.train_model(windows, DetectorConfig(kind="local_outlier_factor"), window_minutes=5)
    X = feature_matrix(windows, MODEL_FEATURES)
    score_samples = model.pipeline.score_samples
    calls = _spied_blocks(monkeypatch, model.pipeline, len(X))
    assert np.array_equal(scoring.anomaly_scores(model.pipeline, X), -score_samples(X))
    assert calls == [(len(X), threading.current_thread().name)]


def test_in_order_keeps_the_order_reads_ahead_at_most_its_threads_and_raises_the_first_error() -> None:
    read: list[int] = []

    def items():
        for i in range(12):
            read.append(i)
            yield i

    def slow_first(i: int) -> int:
        time.sleep(0.02 if i % 3 == 0 else 0.0)  # later items finish first
        return i * i

    out = []
    for value in in_order(slow_first, items(), 2):
        out.append(value)
        assert len(read) - len(out) <= 2  # never more than two items taken and not yet handed back
    assert out == [i * i for i in range(12)]

    def fails(i: int) -> int:
        if i == 5:
            raise ValueError("item 5")
        return i

    got = []
    with pytest.raises(ValueError, match="item 5"):
        for value in in_order(fails, range(10), 2):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]
    assert list(in_order(lambda i: -i, range(4), 1)) == [0, -1, -2, -3]


def test_membership_by_binary_search_is_isin() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(-50, 50, 5_000)
    for members in (np.unique(rng.integers(-60, 60, 30)), np.zeros(0, dtype=np.int64), np.array([49])):
        assert np.array_equal(calibration._member(values, members), np.isin(values, members))  # noqa: SLF001


def _facts(scored: training.ScoredModel) -> tuple:
    m = scored.model
    return (
        m.threshold,
        m.calibration,
        m.score_quantiles,
        m.training_flag_rate,
        m.evaluation,
        m.selection,
        m.diagnostics,
        m.fit_sample,
        m.heldout_scores.tobytes() if m.heldout_scores is not None else None,
        scored.scores.tobytes(),
        scored.raw_scores.tobytes(),
        scored.top.to_json(),
    )


@pytest.mark.parametrize("cap", [None, 3], ids=["every window", "above the fit cap"])
def test_a_retrain_on_threads_is_the_retrain_on_one_thread(records, tmp_path, monkeypatch, cap) -> None:
    """The stored table in three row groups of whole routers, with and without the fit cap (a third of the
    windows: sampled fits, the refits from the model's sample, the statistics of whole routers): the model, its
    evaluation, diagnostics, scores and model card are the same to the last bit with every thread on or off."""
    from upath import UPath

    from mcp_training_dagster.io_managers import ParquetReader

    spec = WindowSpec()
    path = tmp_path / "training_windows.parquet"
    report = write_training_windows(records, spec, str(path), max_records=len(records) // 3)
    stored = StoredWindows(ParquetReader(UPath(path)))
    data = build_evaluation_set(records, spec, split=time_split(records["timestamp"], 0.8).floor("5min"))
    det = DetectorConfig(isolation_forest={"n_estimators": 20})  # both candidates: the configured kind fits ahead
    fit_cap = None if cap is None else report.windows // cap

    def retrain() -> training.ScoredModel:
        return training.train_and_select_scored(stored, det, data, window_minutes=5, stability_seeds=3, fit_cap=fit_cap)

    monkeypatch.setattr(scoring, "PARALLEL_SCORING_ROWS", 200)  # row blocks even on these few windows
    threaded = retrain()
    monkeypatch.setattr(scoring, "SCORING_THREADS", 1)
    monkeypatch.setattr(training_scores, "CHUNK_THREADS", 1)
    monkeypatch.setattr(training, "CHUNK_THREADS", 1)
    alone = retrain()
    assert _facts(threaded) == _facts(alone)
    assert (
        threaded.model.pipeline.named_steps["detector"].offset_ == alone.model.pipeline.named_steps["detector"].offset_
    )
