"""Calibration: per-kind tail thresholds for an alarm budget, device context fused at score level, silence rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.serving.calibration import (
    calibrated_scores,
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
