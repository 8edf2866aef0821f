"""Training: calibrated threshold, score convention, cross-file union, horizon."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.features import FEATURE_COLUMNS, MODEL_FEATURES, build_windows
from mcp_training_dagster.domain.training import (
    SCORE_CONVENTION,
    TrainedModel,
    TrainingError,
    new_version,
    train_model,
)
from mcp_training_dagster.domain.training_scores import feature_matrix
from mcp_training_dagster.serving.scoring import SCORE_COLUMNS, score_table
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster.settings import DetectorConfig
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, shifted_routers


def validated(path) -> pd.DataFrame:
    return validate_records(read_export(path).records, path.name).records


@pytest.fixture(scope="module")
def windows() -> pd.DataFrame:
    return build_windows(validated(HOSTAPD_1824))


@pytest.fixture(scope="module")
def model(windows: pd.DataFrame) -> TrainedModel:
    return train_model(windows, DetectorConfig(), window_minutes=5)


@pytest.fixture(scope="module")
def lof(windows: pd.DataFrame) -> TrainedModel:
    return train_model(windows, DetectorConfig(kind="local_outlier_factor"), window_minutes=5)


def extreme_window(windows: pd.DataFrame) -> pd.DataFrame:
    """A device window with 500 deauthentications inside one 5-minute window."""
    w = windows[windows["entity_kind"] == "device"].iloc[[0]].copy()
    for col in FEATURE_COLUMNS:
        if col.startswith(("ev_", "sev_", "n_")):
            w[col] = 0.0
    w["n_records"] = 500.0
    w["ev_deauthentication"] = 500.0
    w["sev_info_debug"] = 500.0
    w["peak_burst"] = 500.0
    w["active_buckets"] = 30.0
    w["n_stations"] = 1.0
    w["n_interfaces"] = 1.0
    w["silence_before_s"] = 1.0
    w["grp_leaves"] = 500.0
    w["dev_deauth"] = 500.0
    w["dev_max_station_records"] = 500.0
    return w.astype({c: "float32" for c in FEATURE_COLUMNS})


def test_legacy_threshold_is_quantile_of_training_scores(windows: pd.DataFrame) -> None:
    legacy = train_model(windows, DetectorConfig(), window_minutes=5, alarm_budget=None)
    scores = -legacy.pipeline.score_samples(feature_matrix(windows, MODEL_FEATURES))
    expected = float(np.quantile(scores, 1.0 - legacy.detector.contamination))
    assert legacy.threshold == pytest.approx(expected, rel=1e-12)
    assert legacy.calibration is None and legacy.decision_threshold == legacy.threshold
    np.testing.assert_allclose(legacy.score(windows), scores)


def test_calibrated_threshold(model: TrainedModel, windows: pd.DataFrame) -> None:
    """Per-kind tail thresholds on active windows; the stored raw threshold is the device one, and the
    estimator's predict() agrees with it on every window's own detector score."""
    cal = model.calibration
    assert cal is not None and model.decision_threshold == 0.0
    assert set(cal["thresholds"]) <= {"device", "station", "interface"} and "device" in cal["thresholds"]
    for fit in cal["thresholds"].values():
        assert fit["expected_alarms_per_router_day"] <= fit["budget_per_router_day"] + 1e-9
    raw = model.raw_score(windows)
    X = feature_matrix(windows, MODEL_FEATURES)
    np.testing.assert_array_equal(model.pipeline.predict(X) == -1, raw > model.threshold)
    from mcp_training_dagster.serving.calibration import silence_score

    from mcp_training_dagster.settings import AlarmConfig

    # without the rarity ensemble, the magnitude term and the hysteresis, a device window is anomalous exactly
    # when its own detector score is above the stored threshold (what predict() answers), or when the silence
    # rule holds
    plain = train_model(
        windows,
        DetectorConfig(),
        window_minutes=5,
        alarm_budget=AlarmConfig(ensemble="none", magnitude="none", continue_budget_per_router_day={}),
    )
    rule = silence_score(windows, cal["silence_factor"]) > 0
    dev = (windows["entity_kind"] == "device").to_numpy() & (windows["n_records"] > 0).to_numpy()
    raw_plain = plain.raw_score(windows)
    np.testing.assert_array_equal((plain.score(windows) > 0)[dev], (raw_plain > plain.threshold)[dev] | rule[dev])
    assert cal["ensemble"] == "mean" and cal["rarity"] and cal["detector_threshold"] == model.threshold


def test_training_flag_rate_is_the_verdicts(model: TrainedModel, windows: pd.DataFrame) -> None:
    assert model.training_flag_rate == pytest.approx(float(np.mean(model.predict(windows))))
    assert model.training_flag_rate < 0.05


def test_model_metadata(model: TrainedModel, windows: pd.DataFrame) -> None:
    assert model.n_windows == len(windows)
    assert model.windows_by_kind == windows["entity_kind"].value_counts().to_dict()
    assert sum(model.windows_by_kind.values()) == len(windows)
    assert model.feature_names == MODEL_FEATURES
    assert model.window_minutes == 5
    assert model.score_convention == SCORE_CONVENTION == "higher_is_more_anomalous"
    assert model.data_start == windows["window_start"].min().isoformat()
    assert model.data_end == windows["window_start"].max().isoformat()
    q = model.score_quantiles
    assert q["p1"] <= q["p25"] <= q["p50"] <= q["p75"] <= q["p99"]
    assert {"scikit-learn", "numpy", "pandas"} <= set(model.library_versions)


def test_higher_score_is_more_anomalous(model: TrainedModel, windows: pd.DataFrame) -> None:
    extreme = extreme_window(windows)
    s_extreme = float(model.score(extreme)[0])
    scores = model.score(windows)
    assert s_extreme > model.decision_threshold
    assert s_extreme > float(np.median(scores))
    assert bool(model.predict(extreme)[0]) is True


def test_predict_consistent_with_score(model: TrainedModel, lof: TrainedModel, windows: pd.DataFrame) -> None:
    both = pd.concat([windows, extreme_window(windows)], ignore_index=True)
    np.testing.assert_array_equal(model.predict(both), model.score(both) > model.decision_threshold)
    # the estimator's own predict() (what the inference side calls) says -1 exactly when the detector's
    # own score is above the stored threshold
    for m in (model, lof):
        X = feature_matrix(both, m.feature_names)
        np.testing.assert_array_equal(m.pipeline.predict(X) == -1, m.raw_score(both) > m.threshold)


def test_score_windows_sorted_most_anomalous_first(model: TrainedModel, windows: pd.DataFrame) -> None:
    both = pd.concat([windows, extreme_window(windows)], ignore_index=True)
    out = score_table(both, model.pipeline, model.threshold, model.feature_names)
    assert list(out.columns) == list(SCORE_COLUMNS)
    assert len(out) == len(both)
    assert out["score"].is_monotonic_decreasing
    assert (out["is_anomaly"] == (out["score"] > model.decision_threshold)).all()
    assert out["is_anomaly"].any()


def test_training_is_deterministic(windows: pd.DataFrame, model: TrainedModel) -> None:
    again = train_model(windows, DetectorConfig(), window_minutes=5)
    assert again.threshold == model.threshold
    np.testing.assert_array_equal(again.score(windows), model.score(windows))


def test_local_outlier_factor_trains(windows: pd.DataFrame, lof: TrainedModel) -> None:
    det = lof.detector
    assert det.kind == "local_outlier_factor"
    assert type(lof.pipeline.named_steps["detector"]).__name__ == "LocalOutlierFactor"
    scores = lof.score(windows)
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(lof.predict(windows), scores > lof.decision_threshold)
    assert 0 < lof.training_flag_rate <= 0.05


def test_local_outlier_factor_flags_extreme_window(windows: pd.DataFrame, lof: TrainedModel) -> None:
    """Real windows repeat a lot (identical count vectors); the LOF model must still flag a flood."""
    s_extreme = float(lof.score(extreme_window(windows))[0])
    assert s_extreme > float(np.median(lof.score(windows)))
    assert s_extreme > lof.decision_threshold


def test_too_few_windows(windows: pd.DataFrame) -> None:
    with pytest.raises(TrainingError) as info:
        train_model(windows[windows["n_records"] > 0].iloc[:5], DetectorConfig(), window_minutes=5, min_windows=20)
    msg = str(info.value)
    assert "only 5 feature windows" in msg
    assert "20" in msg
    assert "min_training_windows" in msg


def test_empty_windows_rejected() -> None:
    with pytest.raises(TrainingError, match="only 0 feature windows"):
        train_model(build_windows(pd.DataFrame()), DetectorConfig(), window_minutes=5)


def test_quiet_windows_do_not_count_towards_the_minimum(windows: pd.DataFrame) -> None:
    active = windows[windows["n_records"] > 0].head(5)
    quiet = windows[windows["n_records"] == 0].head(100)
    with pytest.raises(TrainingError, match="only 5 feature windows with records"):
        train_model(pd.concat([active, quiet]), DetectorConfig(), window_minutes=5, min_windows=20)


def test_missing_feature_columns_rejected(windows: pd.DataFrame) -> None:
    with pytest.raises(TrainingError, match="grp_leaves"):
        train_model(windows.drop(columns=["grp_leaves"]), DetectorConfig(), window_minutes=5)


# ----------------------------------------------------------------------------- versions
def test_new_version_unique_within_one_second() -> None:
    now = datetime(2025, 6, 27, 9, 38, 14, tzinfo=timezone.utc)
    versions = [new_version(now) for _ in range(100)]
    assert len(set(versions)) == 100
    assert all(v.startswith("20250627_093814_") for v in versions)


def test_new_version_sorts_by_time() -> None:
    base = datetime(2025, 6, 27, 9, 59, 58, tzinfo=timezone.utc)
    versions = [new_version(base + timedelta(seconds=s)) for s in range(0, 7200, 7)]
    assert sorted(versions) == versions
    assert new_version() > new_version(datetime(2025, 1, 1, tzinfo=timezone.utc))


def test_trained_models_get_distinct_versions(windows: pd.DataFrame) -> None:
    small = windows[windows["n_records"] > 0].iloc[:40]
    det = DetectorConfig(isolation_forest={"n_estimators": 10})
    a = train_model(small, det, window_minutes=5)
    b = train_model(small, det, window_minutes=5)
    assert a.version != b.version


# ------------------------------------------------------------------- selection + evaluation
@pytest.fixture(scope="module")
def generated_records() -> tuple[pd.DataFrame, pd.DataFrame]:
    from mcp_training_dagster.serving.exports import records_to_frame
    from mcp_training_dagster.domain.scenarios import generate

    data = generate(seed=5, days=4, n_devices=2, episodes_per_scenario=1, benign_per_scenario=1)
    return validate_records(records_to_frame(data.records), "gen.json").records, data.labels


def test_train_and_select_evaluates_before_the_split_and_refits_on_all(generated_records) -> None:
    from mcp_training_dagster.domain.evaluation import build_evaluation_set, time_split
    from mcp_training_dagster.serving.features import WindowSpec
    from mcp_training_dagster.domain.training import train_and_select

    records, labels = generated_records
    spec = WindowSpec()
    windows = build_windows(records, spec)
    split = time_split(records["timestamp"], 0.75).floor("5min")
    data = build_evaluation_set(records, spec, split=split, labels=labels)
    assert data.source == "labelled" and data.labels["is_anomaly"].any()
    assert (data.windows["window_start"] >= split).all()

    det = DetectorConfig(isolation_forest={"n_estimators": 50})
    model = train_and_select(windows, det, data, window_minutes=5, stability_seeds=2)
    assert model.n_windows == len(windows)  # the deployed model is refitted on everything
    sel = model.selection
    assert sel is not None and set(sel.candidates) == {"isolation_forest", "local_outlier_factor"}
    assert sel.fitted_before == str(split)
    # the kind is kept unless another candidate wins by more than the margin
    pr = {k: v["pr_auc"] or 0.0 for k, v in sel.candidates.items()}
    expected = (
        "local_outlier_factor"
        if pr["local_outlier_factor"] > pr["isolation_forest"] + det.selection_margin
        else "isolation_forest"
    )
    assert sel.chosen == expected == model.detector.kind
    ev = model.evaluation
    assert ev is not None and ev.data.source == "labelled" and ev.data.windows == len(data.windows)
    assert ev.overall.pr_auc == pytest.approx(pr[expected])
    assert model.devices == tuple(sorted(windows["device"].astype("str").unique()))
    d = model.diagnostics
    assert "accuracy" not in json_keys(d) and d["note"] == "unsupervised diagnostics, not accuracy"
    if expected == "isolation_forest":
        assert d["seed_stability"]["seeds"] == 2
        assert d["seed_stability"]["refit_trees"] == d["seed_stability"]["model_trees"] == 50  # at most the model's


def test_the_stability_refits_use_fewer_trees_and_leave_the_model_as_it_was(monkeypatch) -> None:
    """The seed refits are a diagnostic: STABILITY_REFIT_TREES trees each, said in the metadata; the model (its
    forest, threshold, calibration, scores and evaluation) is exactly the one fitted with refits of its own size."""
    from mcp_training_dagster.domain import training
    from mcp_training_dagster.domain.evaluation import build_evaluation_set, time_split
    from mcp_training_dagster.serving.features import WindowSpec

    records = validate_records(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name).records
    windows = build_windows(records)
    data = build_evaluation_set(records, WindowSpec(), split=time_split(records["timestamp"], 0.8).floor("5min"))
    det = DetectorConfig(candidates=["isolation_forest"], isolation_forest={"n_estimators": 60})
    monkeypatch.setattr(training, "STABILITY_REFIT_TREES", 20)
    cheap = training.train_and_select(windows, det, data, window_minutes=5, stability_seeds=3)
    monkeypatch.setattr(training, "STABILITY_REFIT_TREES", 60)
    full = training.train_and_select(windows, det, data, window_minutes=5, stability_seeds=3)
    stability = cheap.diagnostics["seed_stability"]
    assert (stability["refit_trees"], stability["model_trees"], stability["seeds"]) == (20, 60, 3)
    assert "a diagnostic" in stability["refits"] and full.diagnostics["seed_stability"]["refit_trees"] == 60
    assert len(cheap.pipeline.named_steps["detector"].estimators_) == 60
    assert cheap.threshold == full.threshold and cheap.calibration == full.calibration
    assert np.array_equal(cheap.score(windows), full.score(windows))
    assert np.array_equal(cheap.heldout_scores, full.heldout_scores) and cheap.evaluation == full.evaluation


def json_keys(obj) -> set[str]:
    return (
        set(obj) | {k for v in obj.values() if isinstance(v, dict) for k in json_keys(v)}
        if isinstance(obj, dict)
        else set()
    )


def test_fit_subsample_is_seeded_recorded_and_off_below_the_cap() -> None:
    from mcp_training_dagster.domain.training_scores import subsample_positions

    windows = build_windows(validate_records(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name).records)
    assert subsample_positions(len(windows), None, 7) == (None, None)
    assert subsample_positions(len(windows), len(windows), 7) == (None, None)
    a, how = subsample_positions(len(windows), 500, 7)
    b, _ = subsample_positions(len(windows), 500, 7)
    assert a is not None and len(a) == 500 and np.array_equal(a, b) and (np.diff(a) > 0).all()
    assert how == {"windows": 500, "of": len(windows), "seed": 7, "chosen": how["chosen"]}
    model = train_model(windows, DetectorConfig(), window_minutes=5, fit_cap=500)
    # Fitted on the 500; its facts (windows, flag rate, score quantiles) are of every training window.
    assert (
        model.n_windows == len(windows)
        and model.fit_sample == subsample_positions(len(windows), 500, DetectorConfig().random_state)[1]
    )


def test_a_local_outlier_factor_fits_at_most_its_own_cap() -> None:
    """LOF's neighbour search costs fitted x scored windows (a fleet's 1M-window fit took 22 min): it fits a seeded
    sample of max_fit_windows, recorded as fit_sample; an isolation forest under the same settings fits every window."""
    from mcp_training_dagster.domain.training_scores import subsample_positions
    from mcp_training_dagster.settings import LocalOutlierFactorParams

    windows = build_windows(validate_records(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name).records)
    cap = 1_000
    assert len(windows) > cap
    lof = DetectorConfig(
        kind="local_outlier_factor", local_outlier_factor=LocalOutlierFactorParams(max_fit_windows=cap)
    )
    model = train_model(windows, lof, window_minutes=5)
    assert model.fit_sample == subsample_positions(len(windows), cap, lof.random_state)[1]
    assert model.n_windows == len(windows), "its statistics are still of every training window"
    assert (
        train_model(windows, lof.model_copy(update={"kind": "isolation_forest"}), window_minutes=5).fit_sample is None
    )
    # the lower of the two caps wins
    small = train_model(windows, lof, window_minutes=5, fit_cap=500)
    assert small.fit_sample is not None and small.fit_sample["windows"] == 500


def _model_facts(m: TrainedModel, windows: pd.DataFrame) -> dict:
    """Everything a model is, but its version and time of training."""
    return {
        "threshold": m.threshold,
        "calibration": m.calibration,
        "scores": m.score(windows).tolist(),
        "n_windows": m.n_windows,
        "windows_by_kind": m.windows_by_kind,
        "training_flag_rate": m.training_flag_rate,
        "score_quantiles": m.score_quantiles,
        "data": (m.data_start, m.data_end),
        "evaluation": m.evaluation,
        "selection": m.selection,
        "diagnostics": m.diagnostics,
        "devices": m.devices,
        "heldout": None if m.heldout_scores is None else m.heldout_scores.tolist(),
        "fit_sample": m.fit_sample,
        "detector": m.detector,
    }


def test_training_on_the_stored_chunked_windows_is_training_on_the_whole_table(tmp_path) -> None:
    """train_and_select over the training_windows file (three row groups of whole routers sharing station MACs,
    read through the IO manager's reader) gives the model the whole table in memory gives: fitted on every
    window and on a subsample (fit_cap), with the evaluation, the diagnostics and every fact the same."""
    from upath import UPath

    from mcp_training_dagster.domain.evaluation import build_evaluation_set, time_split
    from mcp_training_dagster.domain.stored_windows import StoredWindows, write_training_windows
    from mcp_training_dagster.domain.training import train_and_select
    from mcp_training_dagster.io_managers import ParquetReader
    from mcp_training_dagster.serving.features import WindowSpec

    recs = shifted_routers(validated(HOSTAPD_1824))
    spec = WindowSpec()
    whole = build_windows(recs, spec)
    path = tmp_path / "training_windows.parquet"
    report = write_training_windows(recs, spec, str(path), max_records=len(recs) // 3)
    assert report.chunks == 3
    stored = StoredWindows(ParquetReader(UPath(path)))
    assert len(stored) == len(whole) and stored.fingerprint() == report.fingerprint
    data = build_evaluation_set(recs, spec, split=time_split(recs["timestamp"], 0.8).floor("5min"))
    det = DetectorConfig(candidates=["isolation_forest"], isolation_forest={"n_estimators": 20})
    for cap in (None, len(whole) // 3):
        kwargs = dict(window_minutes=5, stability_seeds=2, fit_cap=cap)
        a = train_and_select(whole, det, data, **kwargs)
        b = train_and_select(stored, det, data, **kwargs)
        assert (a.fit_sample is None) == (cap is None)
        assert _model_facts(a, whole) == _model_facts(b, whole)
    a = train_model(whole, DetectorConfig(), window_minutes=5, fit_cap=len(whole) // 2)
    b = train_model(stored, DetectorConfig(), window_minutes=5, fit_cap=len(whole) // 2)
    assert _model_facts(a, whole) == _model_facts(b, whole)

    # What the model's consumers read of the stored windows, chunk by chunk, is what they read of the table.
    from mcp_training_dagster.domain.drift import drift_features, flagged_share, with_records
    from mcp_training_dagster.domain.training import train_and_select_scored
    from mcp_training_dagster.domain.training_scores import (
        flagged_share_of,
        top_windows,
        training_scores,
        windows_with_records,
    )

    scored = train_and_select_scored(stored, det, None, window_minutes=5, stability_seeds=1)
    assert np.array_equal(scored.scores, scored.model.score(whole))
    assert scored.top.equals(top_windows(scored.model, stored))
    assert np.array_equal(training_scores(b, stored), b.score(whole))
    share = flagged_share(b.score_table(whole), whole)
    assert share is not None and 0 < share < 1 and flagged_share_of(b, stored) == flagged_share_of(b, whole) == share
    cols = drift_features(b.feature_names)
    pd.testing.assert_frame_equal(
        windows_with_records(stored, cols),
        with_records(whole)[list(dict.fromkeys([*cols, "n_records"]))].reset_index(drop=True),
    )
    top = b.score_table(whole).head(8)
    assert top_windows(b, whole).equals(top)
    assert np.array_equal(top_windows(b, stored)["score"].to_numpy(), top["score"].to_numpy())


def _score_table_top(model: TrainedModel, table, n: int = 8) -> pd.DataFrame:
    """The model card's top windows as they were computed before: a score table of every chunk."""
    from mcp_training_dagster.domain.training_scores import as_table

    tops = [model.score_table(frame).head(n) for _, frame in as_table(table).chunks()]
    both = pd.concat(tops, ignore_index=True)
    return both.sort_values("score", ascending=False, kind="stable").head(n).reset_index(drop=True)


def test_top_windows_from_the_scores_are_the_score_tables_top(tmp_path) -> None:
    """The model card's table from the scores training computed (reasons for its rows only) is the top of the
    score table of every window, unkeyed ``-`` rows and their magnitude-free scores included, chunked or not."""
    from upath import UPath

    from mcp_training_dagster.domain.stored_windows import StoredWindows, write_training_windows
    from mcp_training_dagster.domain.training_scores import table_scores, top_windows
    from mcp_training_dagster.io_managers import ParquetReader
    from mcp_training_dagster.serving.features import WindowSpec

    from mcp_training_dagster.domain.horizon import union_records
    from mcp_training_dagster_tests.conftest import SYSTEM_35

    # the system log's records name no station or interface: its device windows have unkeyed rows
    recs = shifted_routers(union_records({p.name: validated(p) for p in (HOSTAPD_1824, SYSTEM_35)})[0])
    whole = build_windows(recs, WindowSpec())
    path = tmp_path / "training_windows.parquet"
    write_training_windows(recs, WindowSpec(), str(path), max_records=len(recs) // 3)
    stored = StoredWindows(ParquetReader(UPath(path)))
    model = train_model(whole, DetectorConfig(isolation_forest={"n_estimators": 20}), window_minutes=5)
    assert model.calibration is not None and model.calibration.get("magnitude")
    for n in (8, 2 * len(whole)):  # the top, and every row (the unkeyed rows among them)
        expected = model.score_table(whole).head(n)
        assert (expected["entity"] == "-").any() or n == 8
        assert top_windows(model, whole, n).equals(expected)
        scores = table_scores(stored, None, model.pipeline, model.calibration)
        for got in (top_windows(model, stored, n), top_windows(model, stored, n, scores=scores)):
            assert got.equals(_score_table_top(model, stored, n))
    legacy = train_model(whole, DetectorConfig(), window_minutes=5, alarm_budget=None)
    assert top_windows(legacy, stored).equals(_score_table_top(legacy, stored))


def test_diagnostics_above_the_cap_are_those_of_whole_routers_drawn_by_seed() -> None:
    """Above the cap the model, the seed refits and the later windows are scored on a seeded sample of whole
    routers only, said in the diagnostics: every training statistic (flag rate, score quantiles, the scores shown,
    the model card's top windows, the drift baseline's flagged share) is that sample's, and each sampled window
    scores as it does among all windows. Below it: every window, no note."""
    from mcp_training_dagster.domain.evaluation import build_evaluation_set, time_split
    from mcp_training_dagster.domain.stored_windows import FrameWindows
    from mcp_training_dagster.domain.training import train_and_select, train_and_select_scored
    from mcp_training_dagster.domain.drift import flagged_share
    from mcp_training_dagster.domain.training_scores import (
        diagnostic_positions,
        flagged_share_of,
        router_codes,
        table_scores,
        top_windows,
    )
    from mcp_training_dagster.serving.features import WindowSpec

    recs = shifted_routers(validated(HOSTAPD_1824))
    whole = build_windows(recs, WindowSpec())
    data = build_evaluation_set(recs, WindowSpec(), split=time_split(recs["timestamp"], 0.8).floor("5min"))
    det = DetectorConfig(candidates=["isolation_forest"], isolation_forest={"n_estimators": 20})
    cap = len(whole) // 3
    routers = router_codes(FrameWindows(whole))
    assert routers.names == ("router-0", "router-1", "router-2")
    rows, how = diagnostic_positions(routers, cap, det.random_state)
    assert rows is not None and how is not None and diagnostic_positions(routers, len(whole), 7) == (None, None)
    drawn = set(whole["device"].iloc[rows])
    assert len(drawn) == how["routers"] < 3 and whole["device"].isin(drawn).sum() == len(rows) == how["windows"] >= cap

    scored = train_and_select_scored(whole, det, data, window_minutes=5, stability_seeds=3, fit_cap=cap)
    model = scored.model
    sample = whole.iloc[rows].reset_index(drop=True)
    # the statistics are the sample's: its windows score as among all windows (whole routers)
    assert np.array_equal(scored.positions, rows) and np.array_equal(scored.scores, model.score(whole)[rows])
    assert np.array_equal(scored.raw_scores, model.raw_score(sample))
    assert model.training_flag_rate == float(np.mean(scored.scores > 0))
    assert model.score_quantiles == {
        f"p{q}": float(np.quantile(scored.raw_scores, q / 100)) for q in (1, 25, 50, 75, 99)
    }
    assert scored.top.equals(model.score_table(sample).head(8))  # kept while scoring the sample, once
    # the package's card and the drift baseline draw the same sample again from what the metadata says
    assert top_windows(model, whole).equals(scored.top)
    assert flagged_share_of(model, whole) == flagged_share(model.score_table(sample), sample)
    assert model.n_windows == len(whole) and model.fit_sample is not None and model.fit_sample["of"] == len(whole)
    d = model.diagnostics
    assert d is not None and d["sample"] == how and d["sample"]["of"] == len(whole)
    assert set(d["sample"]["figures"]) >= {"training_flag_rate", "score_quantiles", "top_windows", "seed_stability"}
    assert d["training_flag_rate"] == model.training_flag_rate
    # the refits fit on a quarter of the cap drawn from the model's fit sample, said beside their figure
    refits = d["seed_stability"]
    assert (refits["refit_windows"], refits["model_windows"]) == (cap // 4, cap)
    assert f"sample of {cap // 4} of the model's {cap} windows" in refits["refits"]
    assert 0.0 <= d["later_windows_flag_rate"] <= 1.0
    assert d["seed_stability"]["seeds"] == 3 and 0.5 < d["seed_stability"]["spearman_min"] <= 1.0
    assert 0.0 <= d["seed_stability"]["top2pct_jaccard_min"] <= 1.0
    # the sample's calibrated scores are those of every window, taken at the sampled positions
    assert np.array_equal(
        table_scores(FrameWindows(whole), rows, model.pipeline, model.calibration)[1], model.score(whole)[rows]
    )
    full = train_and_select(whole, det, data, window_minutes=5, stability_seeds=3, fit_cap=None)
    assert full.diagnostics is not None and "sample" not in full.diagnostics


def test_scoring_a_table_in_memory_by_chunks_of_whole_routers_is_scoring_it_whole() -> None:
    """FrameWindows(max_rows) (how the evaluation set is scored): chunks of whole routers, every row once, and the
    calibrated scores those of the whole table at once."""
    from mcp_training_dagster.domain.stored_windows import FrameWindows
    from mcp_training_dagster.domain.training_scores import table_scores

    whole = build_windows(shifted_routers(validated(HOSTAPD_1824)))
    model = train_model(whole, DetectorConfig(isolation_forest={"n_estimators": 20}), window_minutes=5)
    for max_rows in (1, len(whole) - 1, len(whole)):
        parts = list(FrameWindows(whole, max_rows=max_rows).chunks())
        routers = [set(frame["device"].astype("str")) for _, frame in parts]
        assert len(parts) == {1: 3, len(whole): 1}.get(max_rows, 2)
        assert sum(len(r) for r in routers) == 3 and np.array_equal(
            np.sort(np.concatenate([a for a, _ in parts])), np.arange(len(whole))
        )
        scored = table_scores(FrameWindows(whole, max_rows=max_rows), None, model.pipeline, model.calibration)
        assert np.array_equal(scored[1], model.score(whole)) and np.array_equal(scored[0], model.raw_score(whole))


def test_a_fit_on_some_windows_reads_only_its_columns_and_is_the_fit_on_every_column(monkeypatch) -> None:
    """Fits on a subsample or before the split read FIT_COLUMNS only (half the stored table's decoding): the model,
    its calibration, evaluation and every diagnostic are those of fits that read every column."""
    from mcp_training_dagster.domain import training
    from mcp_training_dagster.domain.evaluation import build_evaluation_set, time_split
    from mcp_training_dagster.serving.features import WindowSpec

    recs = shifted_routers(validated(HOSTAPD_1824))
    whole = build_windows(recs, WindowSpec())
    assert set(training.FIT_COLUMNS) < set(whole.columns)
    data = build_evaluation_set(recs, WindowSpec(), split=time_split(recs["timestamp"], 0.8).floor("5min"))
    det = DetectorConfig(candidates=["isolation_forest", "local_outlier_factor"], isolation_forest={"n_estimators": 20})
    for cap in (None, len(whole) // 3):
        kwargs = dict(window_minutes=5, stability_seeds=2, fit_cap=cap)
        narrow = training.train_and_select(whole, det, data, **kwargs)
        with monkeypatch.context() as m:
            m.setattr(training, "FIT_COLUMNS", tuple(whole.columns))
            wide = training.train_and_select(whole, det, data, **kwargs)
        assert _model_facts(narrow, whole) == _model_facts(wide, whole)
