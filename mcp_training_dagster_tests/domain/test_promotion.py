"""Promotion: the gates compare like with like, and the model card says when a gate is barely passed."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.domain import model_card
from mcp_training_dagster.domain.evaluation import EvaluationSet
from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.features import WindowSpec, build_windows
from mcp_training_dagster.domain.packaging import build_package
from mcp_training_dagster.domain.promotion import PromotionDecision, decide, load_production
from mcp_training_dagster.domain.registry import ModelRegistry
from mcp_training_dagster.domain.results import Evaluation, EvaluationData, Selection, binary_metrics
from mcp_training_dagster.domain.model_metadata import metadata_document
from mcp_training_dagster.domain.training import TrainedModel, train_model
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster.settings import DetectorConfig
from mcp_training_dagster_tests.conftest import HOSTAPD_1824


@pytest.fixture(scope="module")
def windows() -> pd.DataFrame:
    return build_windows(validate_records(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name).records)


def _register(models_dir: Path, model: TrainedModel, devices: list[str] | None) -> None:
    doc = metadata_document(model, export_files=[HOSTAPD_1824.name], spec=WindowSpec(), service_timezone="UTC")
    if devices is not None:
        doc["training_info"]["devices"] = devices
    build_package(models_dir, model.version, model.pipeline, doc, model_card_md="", deployment_ready=True)
    ModelRegistry(models_dir).promote(model.version, "test")


def _evaluated(f1: float, roc_auc: float, pr_auc: float | None = None) -> Evaluation:
    """A candidate's held-out evaluation with these headline figures (the rest do not enter the gates)."""
    m = binary_metrics(np.array([True, False]), np.array([1.0, 0.0]), 0.5)
    return Evaluation(
        EvaluationData("labelled", "test", None, 2, 1), replace(m, f1_score=f1, roc_auc=roc_auc, pr_auc=pr_auc)
    )


def _held_out(windows: pd.DataFrame, split: pd.Timestamp) -> EvaluationSet:
    """The later windows, the most extreme tenth of them marked anomalous by their record count (not by a model)."""
    later = windows[windows["window_start"] >= split].reset_index(drop=True)
    y = later["n_records"] >= later["n_records"].quantile(0.9)
    labels = later.loc[:, ["device", "entity_kind", "entity", "window_start"]].assign(is_anomaly=y, scenario="normal")
    return EvaluationSet("labelled", "test", later, labels, split_time=str(split))


def test_production_is_judged_only_on_windows_it_was_not_fitted_on(tmp_path: Path, windows: pd.DataFrame) -> None:
    split = windows["window_start"].quantile(0.8)
    data = _held_out(windows, split)
    early = train_model(windows[windows["window_start"] < split], DetectorConfig(), window_minutes=5)
    _register(tmp_path, early, devices=sorted(windows["device"].astype(str).unique()))
    prod = load_production(tmp_path)
    assert prod is not None and not prod.unseen(windows[windows["window_start"] < split]).any()
    assert prod.unseen(data.windows).all()

    scores = prod.scores(data.windows)  # a candidate that ranks exactly like production: not worse
    same = decide(_evaluated(0.9, 0.9), scores, data, prod, min_f1=0.5, min_roc_auc=0.6, max_regression=0.02)
    gate = same.gate("not_worse_than_production")
    assert gate.passed and gate.figures["candidate_pr_auc"] == pytest.approx(gate.figures["production_pr_auc"])
    assert gate.figures["windows_compared"] == len(data.windows) and "neither was fitted on" in gate.compared

    worse = decide(_evaluated(0.9, 0.9), -scores, data, prod, min_f1=0.5, min_roc_auc=0.6, max_regression=0.02)
    blocked = worse.gate("not_worse_than_production")
    assert not blocked.passed and not worse.deployment_ready
    # The one line a person reads (terminal, alert): the deciding figures, not only what was compared.
    f = blocked.figures
    assert blocked.summary == (
        f"candidate PR-AUC {f['candidate_pr_auc']:.3f} vs production {prod.version} {f['production_pr_auc']:.3f} "
        f"on {len(data.windows):,} held-out windows neither was fitted on ({int(data.labels['is_anomaly'].sum()):,} "
        "anomalous); allowed regression 0.020"
    )


def test_production_that_saw_the_whole_held_out_period_is_not_held_against_a_candidate(
    tmp_path: Path, windows: pd.DataFrame
) -> None:
    split = windows["window_start"].quantile(0.8)
    data = _held_out(windows, split)
    everything = train_model(windows, DetectorConfig(), window_minutes=5)  # fitted on the held-out period too
    _register(tmp_path, everything, devices=sorted(windows["device"].astype(str).unique()))
    decision = decide(
        _evaluated(0.9, 0.9),
        np.zeros(len(data.windows)),
        data,
        load_production(tmp_path),
        min_f1=0.5,
        min_roc_auc=0.6,
        max_regression=0.02,
    )
    gate = decision.gate("not_worse_than_production")
    assert gate.passed and gate.figures["windows_compared"] == 0
    assert "nothing fair to compare on" in gate.compared

    # A device production never saw is fair game even inside its time range.
    other = data.windows.assign(device="77")
    moved = EvaluationSet("labelled", "test", other, data.labels.assign(device="77"), split_time=data.split_time)
    assert load_production(tmp_path).unseen(moved.windows).all()


def test_quality_gate_and_round_trip() -> None:
    empty = EvaluationSet("none", "", pd.DataFrame(), pd.DataFrame({"is_anomaly": []}))
    d = decide(_evaluated(0.52, 0.95, 0.8), None, empty, None, min_f1=0.5, min_roc_auc=0.6, max_regression=0.02)
    assert d.deployment_ready and d.gate("meets_quality_gates").margin == pytest.approx(0.02)
    assert d.warnings and "meets_quality_gates passes by only 0.020" in d.warnings[0]
    assert PromotionDecision.from_dict(d.as_dict()) == d
    failing = decide(_evaluated(0.3, 0.95), None, empty, None, min_f1=0.5, min_roc_auc=0.6, max_regression=0.02)
    assert not failing.deployment_ready and [g.name for g in failing.failed] == ["meets_quality_gates"]
    assert failing.gate("meets_quality_gates").summary == (
        "candidate fitted before the split: F1 0.300 (min 0.500), ROC-AUC 0.950 (min 0.600) "
        "on 2 held-out windows (1 anomalous)"
    )
    assert failing.gate("not_worse_than_production").summary == "no production model yet: nothing to compare with"
    unevaluated = decide(None, None, empty, None, min_f1=0.5, min_roc_auc=0.6, max_regression=0.02)
    assert unevaluated.gate("meets_quality_gates").summary.startswith("no held-out figures for the candidate")


def test_model_card_reads_as_a_person_reads_it(windows: pd.DataFrame) -> None:
    overall = binary_metrics(np.r_[np.ones(2, bool), np.zeros(8, bool)], np.zeros(10), 0.5)
    overall = replace(overall, precision=0.123456789, recall=0.5, f1_score=0.52, roc_auc=0.9, pr_auc=None)
    evaluation = Evaluation(
        EvaluationData("injected", "d", None, 10, 2),
        overall,
        by_kind={},
        recall_by_scenario={"deauth_flood": 1.0},
        windows_by_scenario={},
        benign_flag_rate={},
    )
    selection = Selection("isolation_forest", "c", {"isolation_forest": {"pr_auc": 0.7777777777, "roc_auc": 0.9}}, "t")
    model = replace(
        train_model(windows, DetectorConfig(), window_minutes=5),
        evaluation=evaluation,
        selection=selection,
        diagnostics={"score_quantiles": {"p50": 0.4444444444}, "seed_spearman": [0.99999999, 0.98888888]},
    )
    empty = EvaluationSet("none", "", pd.DataFrame(), pd.DataFrame({"is_anomaly": []}))
    decision = decide(model.evaluation, None, empty, None, min_f1=0.5, min_roc_auc=0.6, max_regression=0.02)
    card = model_card.render(model, model_card.top_windows(model, windows), decision)
    assert not re.search(r"\d\.\d{6,}", card), "floats are rounded"
    assert "{'" not in card and "[0." not in card, "no Python reprs"
    assert "| all | 10 | 2 | 0.123 | 0.500 | 0.520 | 0.900 | n/a |" in card
    assert "**Warning:** meets_quality_gates passes by only 0.020" in card
