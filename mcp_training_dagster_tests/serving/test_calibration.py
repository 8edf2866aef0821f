"""Calibration: per-kind tail thresholds for an alarm budget, device context fused at score level, silence rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.serving.calibration import (
    calibrated_scores,
    continued_alarms,
    exponential_tail_threshold,
    fit_calibration,
    fused,
    gpd_tail_threshold,
    raw_threshold,
    robust_z,
)


def test_exponential_tail_recovers_an_exponential_quantile() -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(1.0, 200_000)
    p = 1e-4
    fit = exponential_tail_threshold(x, p)
    assert fit["threshold"] == pytest.approx(-np.log(p), rel=0.05)
    assert fit["empirical"] >= fit["threshold"] - 1e-9 or fit["threshold"] == fit["empirical"]


def test_anomalies_in_the_top_do_not_move_the_tail_model() -> None:
    rng = np.random.default_rng(1)
    x = rng.exponential(1.0, 20_000)
    dirty = np.r_[x, np.full(300, 50.0)]  # 1.5 % in-sample anomalies far out
    p = 0.005
    clean_t = exponential_tail_threshold(x, p)["threshold"]
    dirty_fit = exponential_tail_threshold(dirty, p)
    assert dirty_fit["threshold"] == pytest.approx(clean_t, rel=0.2)
    assert dirty_fit["empirical"] > 10  # the plain quantile would sit among the anomalies


def test_gpd_pot_threshold_on_exponential() -> None:
    rng = np.random.default_rng(2)
    x = rng.exponential(1.0, 100_000)
    assert gpd_tail_threshold(x, 1e-4)["threshold"] == pytest.approx(-np.log(1e-4), rel=0.1)


def _windows() -> pd.DataFrame:
    ws = pd.Timestamp("2025-01-01")
    rows = []
    for i in range(400):
        t = ws + pd.Timedelta(minutes=5 * i)
        rows.append(("r1", "device", "*", t, 3.0, 1.0))
        rows.append(("r1", "station", "aa:bb:cc:dd:ee:01", t, 1.0, 0.0))
    rows.append(("r1", "device", "*", ws + pd.Timedelta(minutes=5 * 400), 0.0, 4.0))  # quiet, silent 4 x usual
    rows.append(("r1", "device", "*", ws + pd.Timedelta(minutes=5 * 401), 0.0, 1.2))  # quiet, within 1.5 x
    return pd.DataFrame(rows, columns=["device", "entity_kind", "entity", "window_start", "n_records", "gap_vs_usual"])


def test_fusion_gives_a_station_its_device_context() -> None:
    w = _windows()
    kinds = w["entity_kind"].to_numpy()
    z = np.where(kinds == "device", 5.0, 0.0)
    out = fused(w, z, kinds, "max")
    assert (out[kinds == "station"] == 5.0).all()
    assert (fused(w, z, kinds, "none") == z).all()


def test_fit_and_apply_calibration() -> None:
    w = _windows()
    rng = np.random.default_rng(3)
    raw = rng.normal(0.5, 0.05, len(w))
    cal = fit_calibration(w, raw, budget={"device": 1.0, "station": 1.0}, fusion="max", silence_factor=1.5)
    assert set(cal["thresholds"]) == {"device", "station"}
    for fit in cal["thresholds"].values():
        assert fit["p"] <= 0.02 + 1e-12  # max_alarm_fraction
    c = calibrated_scores(w, raw, cal)
    quiet = (w["n_records"] == 0).to_numpy()
    # a quiet device window is flagged only by the silence rule (gap 4 x usual), never by the model alone
    assert c[quiet][0] > 0 and c[quiet][1] < 0
    dev = ((w["entity_kind"] == "device") & (w["n_records"] > 0)).to_numpy()
    np.testing.assert_array_equal(c[dev] > 0, raw[dev] > raw_threshold(cal, "device"))
    z = robust_z(raw, w["entity_kind"].to_numpy(), cal["scales"])
    assert np.isfinite(z).all()


def test_magnitude_grows_with_the_count_relative_to_the_routers_own_usual() -> None:
    """A flood ranks above a handful that is as rare, and a chatty router's busy window is judged against its
    own usual most (shrunk to the fleet's), not a terse router's."""
    from mcp_training_dagster.serving.calibration import fit_magnitude, magnitude

    rng = np.random.default_rng(3)
    n = 2000
    w = pd.DataFrame(
        {
            "device": np.r_[np.full(n, "quiet"), np.full(n, "chatty")],
            "entity_kind": "device",
            "n_records": np.r_[rng.poisson(2, n), rng.poisson(20, n)].astype(float) + 1,
            "grp_failures": 0.0,
        }
    )
    kinds = w["entity_kind"].to_numpy()
    tab = fit_magnitude(w, kinds, np.ones(len(w), dtype=bool), features=("n_records", "grp_failures"))
    probe = pd.DataFrame(
        {
            "device": ["quiet", "quiet", "quiet", "chatty", "unknown"],
            "entity_kind": "device",
            "n_records": [30.0, 30.0, 30.0, 30.0, 30.0],
            "grp_failures": [0.0, 6.0, 40.0, 0.0, 0.0],
        }
    )
    mg = magnitude(probe, probe["entity_kind"].to_numpy(), tab)
    assert mg[2] > mg[1] > 0  # 40 failures above 6, both above a usual of 0
    assert mg[0] > mg[3]  # 30 records: far above the quiet router's usual, ordinary for the chatty one
    assert mg[3] < mg[4] < mg[0]  # a router never seen: the fleet's usual, between the two
    assert mg[1] == pytest.approx(np.log2(7.0))  # doublings: (1 + 6) / (1 + 0)


def _device_run(levels: list[float], start: str = "2025-01-01") -> pd.DataFrame:
    t0 = pd.Timestamp(start)
    return pd.DataFrame(
        {
            "device": "r1",
            "entity_kind": "device",
            "entity": "*",
            "window_start": [t0 + pd.Timedelta(minutes=5 * i) for i in range(len(levels))],
            "n_records": 1.0,
            "gap_vs_usual": 1.0,
        }
    )


def test_an_alarm_covers_its_rise_and_tail_but_not_the_next_quiet_stretch() -> None:
    """Hysteresis: windows above the continuation threshold join an alarm raised among them (before or after
    the peak, across one window below it), and nothing joins a run that raised no alarm."""
    level = [0, 2, 5, 2, 0, 2, 0, 0, 2, 2, 0, 0, 2]  # 5 = raises; 2 = passes the continuation threshold only
    w = _device_run([float(x) for x in level])
    lv = np.array(level)
    out = continued_alarms(w, lv >= 5, lv >= 2, 300.0)
    #       rise, peak, tail; across one window to the next 2; a separate run of 2s raised nothing
    assert out.tolist() == [False, True, True, True, False, True, False, False, False, False, False, False, False]


def test_station_raises_and_the_device_window_joins() -> None:
    """An alarm is the router's: a station window that raises one brings its device window in (above the device
    continuation threshold), and a station joins its router's alarm above its own continuation threshold."""
    t0 = pd.Timestamp("2025-01-01")
    w = pd.DataFrame(
        {
            "device": "r1",
            "entity_kind": ["device", "station", "device", "station"],
            "entity": ["*", "aa:bb:cc:dd:ee:01", "*", "aa:bb:cc:dd:ee:01"],
            "window_start": [t0, t0, t0 + pd.Timedelta(minutes=5), t0 + pd.Timedelta(minutes=5)],
        }
    )
    kinds = w["entity_kind"].to_numpy()
    from mcp_training_dagster.serving.calibration import _router_any

    seed = _router_any(w, np.array([False, True, False, False]), kinds)
    assert seed.tolist() == [True, False, False, False]
    out = continued_alarms(w, seed, np.array([True, False, True, False]), 300.0)
    assert out.tolist() == [True, False, True, False]


def test_calibrated_scores_apply_the_continuation_threshold() -> None:
    """Fitted on a router whose windows hold a few multi-window episodes: every window the calibrated score
    flags is above the start threshold or joined a raised alarm above the continuation one; a lone window
    between the two thresholds stays unflagged; ``> 0`` still means anomalous."""
    rng = np.random.default_rng(5)
    n = 3000
    raw = rng.normal(0.5, 0.05, n)
    for at in (500, 1500, 2500):  # episodes: a ramp up, a peak, a ramp down
        raw[at : at + 5] = [0.64, 0.645, 1.5, 0.645, 0.64]  # thresholds come out at ~0.69 (start), ~0.62 (joining)
    raw[1000] = 0.645  # alone: between the thresholds
    w = _device_run([0.0] * n)
    budget = {"device": 0.5}
    plain = fit_calibration(w, raw, budget=budget, ensemble="none", magnitude_kinds=())
    cal = fit_calibration(w, raw, budget=budget, ensemble="none", magnitude_kinds=(), continue_budget={"device": 4.0})
    fit = cal["thresholds"]["device"]
    assert fit["continue_threshold"] < fit["threshold"] and cal["window_seconds"] == 300.0
    c0, c = calibrated_scores(w, raw, plain), calibrated_scores(w, raw, cal)
    assert (c0 > 0).sum() < (c > 0).sum()
    for at in (500, 1500, 2500):
        assert (c[at : at + 5] > 0).all() and (c0[at : at + 5] > 0).tolist() == [False, False, True, False, False]
    assert c[1000] <= 0
    assert ((c > 0) >= (c0 > 0)).all()  # hysteresis only adds windows to alarms already raised


def test_a_near_miss_beside_an_alarm_ranks_above_the_same_score_alone() -> None:
    """Step 6: a weak window beside a raised alarm (at most one window between) ranks by its distance to the
    continuation threshold, above an isolated window with the same detector score, and stays unflagged;
    further away it is scored as any other window, and no verdict changes."""
    rng = np.random.default_rng(7)
    n = 3000
    raw = rng.normal(0.5, 0.05, n)
    raw[500] = 1.5  # raises an alarm
    raw[[502, 504, 1000]] = 0.56  # below the continuation threshold: beside the alarm, farther, alone
    w = _device_run([0.0] * n)
    cal = fit_calibration(
        w, raw, budget={"device": 0.5}, ensemble="none", magnitude_kinds=(), continue_budget={"device": 4.0}
    )
    assert cal["near_miss_ranking"] is True
    before = {k: v for k, v in cal.items() if k != "near_miss_ranking"}  # a model fitted before step 6
    c, c0 = calibrated_scores(w, raw, cal), calibrated_scores(w, raw, before)
    assert c[500] > 0 and c[502] <= 0
    assert c[502] > c[1000] == c0[1000] == c0[502]  # beside the alarm: ranked up, not flagged
    assert c[504] == c[1000]  # two windows between: not beside it
    assert ((c > 0) == (c0 > 0)).all()
    assert (c >= c0).all()
