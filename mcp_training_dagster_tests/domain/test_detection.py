"""The default detector against labelled generated data it never saw: the issue's targets, measured.

Training: a week of generated traffic for three routers (seed 1) that includes attacks and benign
lookalikes, unlabelled to the detector as real data would be. Evaluation: another week on OTHER
routers (seed 2), with every anomaly scenario, labelled per window. Fixed seeds, a few seconds."""

from __future__ import annotations

import pytest

from mcp_training_dagster.domain.evaluation import evaluate_scores, window_labels
from mcp_training_dagster.serving.exports import records_to_frame
from mcp_training_dagster.serving.features import WindowSpec, build_windows
from mcp_training_dagster.domain.results import Evaluation, EvaluationData
from mcp_training_dagster.domain.scenarios import ANOMALY_SCENARIOS, generate
from mcp_training_dagster.domain.training import train_model
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster.settings import get_settings

TRAIN_SEED, EVAL_SEED = 1, 2


def windows_and_labels(seed: int, **kwargs):
    data = generate(seed=seed, days=7, **kwargs)
    records = validate_records(records_to_frame(data.records), f"generated_{seed}.json").records
    windows = build_windows(records, WindowSpec())
    return windows, window_labels(windows, records, data.labels, 5, data.episodes)


@pytest.fixture(scope="module")
def result() -> Evaluation:
    train, _ = windows_and_labels(TRAIN_SEED)
    model = train_model(train, get_settings().model.detector, window_minutes=5)
    windows, labels = windows_and_labels(EVAL_SEED)
    about = EvaluationData("generated", f"seed {EVAL_SEED}", None, len(labels), int(labels["is_anomaly"].sum()))
    return evaluate_scores(labels, model.score(windows), model.decision_threshold, about)


def test_device_windows(result: Evaluation) -> None:
    assert result.by_kind is not None
    dev = result.by_kind["device"]
    assert dev.n_anomalous > 50
    assert dev.pr_auc is not None and dev.pr_auc >= 0.9, dev
    assert dev.f1_score >= 0.8, dev


def test_station_windows(result: Evaluation) -> None:
    assert result.by_kind is not None
    station = result.by_kind["station"]
    assert station.pr_auc is not None and station.pr_auc >= 0.75, station


def test_every_scenario_is_caught(result: Evaluation) -> None:
    recall = result.recall_by_scenario or {}
    assert set(recall) == set(ANOMALY_SCENARIOS)
    missed = {k: v for k, v in recall.items() if v < 0.8}
    assert not missed, recall


def test_normal_windows_rarely_flagged(result: Evaluation) -> None:
    assert result.normal_flag_rate is not None and result.normal_flag_rate <= 0.02
