"""Drift on the real sample exports: a small export from the same router is judged, not flagged for being
small; an export unlike the training data still is; the noise floor behaves as domain/drift.py says."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.domain.drift import (
    DriftReport,
    build_baseline,
    compare,
    independent_slots,
    psi_noise_floor,
    with_records,
)
from mcp_training_dagster.serving.exports import read_export
from mcp_training_dagster.serving.features import MODEL_FEATURES, WindowSpec, build_windows
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_35

THRESHOLD = 0.1  # the shipped drift.threshold


def _windows(path: Path) -> pd.DataFrame:
    return build_windows(validate_records(read_export(path).records, path.name).records, WindowSpec())


@pytest.fixture(scope="module")
def trained() -> tuple[pd.DataFrame, dict]:
    """The hostapd export's windows and the baseline of a model trained on them."""
    windows = _windows(HOSTAPD_1824)
    return windows, build_baseline(windows, MODEL_FEATURES, flag_rate=0.05, version="v1")


def _compare(windows: pd.DataFrame, baseline: dict, min_windows: int = 10) -> DriftReport:
    return compare(
        windows, baseline, flag_rate=None, threshold=THRESHOLD, flag_share_threshold=0.1, min_windows=min_windows
    )


def _cut(source: Path, target: Path, start: int, size: int) -> Path:
    """A real, smaller export of the same router: ``size`` consecutive records of ``source``."""
    doc = json.loads(source.read_text())
    doc["data"] = doc["data"][start : start + size]
    doc["export_metadata"]["total_records"] = size
    target.write_text(json.dumps(doc))
    return target


@pytest.mark.parametrize("start", [0, 800, 1600])
def test_a_small_export_of_the_same_router_is_not_flagged_for_being_small(tmp_path, trained, start):
    _, baseline = trained
    small = _windows(_cut(HOSTAPD_1824, tmp_path / "small.json", start, 100))
    report = _compare(small, baseline)
    assert report.enough, "enough windows to be judged (drift.min_windows)"
    assert (report.table["psi"] > THRESHOLD).any(), "the raw PSI alone would call it drift"
    assert report.passed and report.drifted == [], report.summary()
    over = report.table[report.table["psi"] > THRESHOLD]
    assert (over["psi"] <= over["noise_floor"]).all(), "every PSI above the threshold is within sampling noise"


def test_an_export_unlike_the_training_data_is_still_flagged(trained):
    _, baseline = trained
    report = _compare(_windows(SYSTEM_35), baseline)
    assert report.windows == 10 and not report.passed
    # Its windows sit in bins the hostapd training windows almost never reached: far beyond noise.
    assert "dev_max_station_records" in report.drifted
    row = report.table.set_index("feature").loc["dev_max_station_records"]
    assert row["psi"] > 2 * row["noise_floor"] > 0


def test_the_training_data_does_not_drift_from_itself_and_large_samples_are_judged_by_the_threshold(trained):
    windows, baseline = trained
    report = _compare(windows, baseline)
    assert report.passed and report.max_psi < 0.01
    assert independent_slots(with_records(windows)) == 256, "1865 windows in 256 (device, window_start) slots"
    assert (report.table["noise_floor"] < THRESHOLD).all(), "hundreds of slots: only the threshold counts"


def test_samples_drawn_from_the_baseline_are_flagged_at_most_at_the_false_alarm_rate(trained):
    windows, baseline = trained
    w = with_records(windows)
    flagged = [
        not _compare(w.sample(n, random_state=seed), baseline, min_windows=1).passed
        for n in (5, 20, 60)
        for seed in range(40)
    ]
    assert np.mean(flagged) <= 0.03  # designed for 1 % (Bonferroni over the features)


def test_the_noise_floor_is_the_chi_square_approximation_for_large_samples_and_shrinks_with_n():
    uniform = tuple([0.1] * 10)
    # n * PSI ~ chi-square(9): its median is 8.34, so the median PSI of 1000 draws is about 0.0083.
    assert psi_noise_floor(uniform, 1000, 0.5) == pytest.approx(8.34 / 1000, rel=0.1)
    floors = [psi_noise_floor(uniform, n, 0.01) for n in (10, 100, 1000)]
    assert floors[0] > floors[1] > floors[2] and floors[2] < THRESHOLD < floors[0]
    assert psi_noise_floor(uniform, 100, 0.01) == psi_noise_floor(uniform, 100, 0.01), "seeded: reproducible"


def test_the_flagged_share_leaves_a_long_silence_out() -> None:
    """Trained on the three samples, whose router logs only crond/WATCHDOG for four days after its hostapd
    export ends: as a share of every window, the training verdicts hold that silence, window after
    window, and the busy hostapd export (scored as export_anomalies scores it) would read as drifted from it.
    Over the windows with records (the drift check's population, as for the features) the two agree."""
    from mcp_training_dagster.domain.drift import flagged_share
    from mcp_training_dagster.domain.horizon import union_records
    from mcp_training_dagster.domain.training import train_model
    from mcp_training_dagster.serving.scoring import windows_with_history
    from mcp_training_dagster.settings import DetectorConfig
    from mcp_training_dagster_tests.conftest import SYSTEM_19

    records = {
        p.name: validate_records(read_export(p).records, p.name).records for p in (HOSTAPD_1824, SYSTEM_35, SYSTEM_19)
    }
    training = build_windows(union_records(records)[0], WindowSpec())
    model = train_model(training, DetectorConfig(), window_minutes=5)
    baseline_table = model.score_table(training)
    others = pd.concat([r for name, r in records.items() if name != HOSTAPD_1824.name])
    export = model.score_table(windows_with_history(records[HOSTAPD_1824.name], others, WindowSpec()))
    own = _windows(HOSTAPD_1824)

    every_change = abs(float(export["is_anomaly"].mean()) - float(baseline_table["is_anomaly"].mean()))
    # the four days of crond/WATCHDOG are fewer alarms since the usual gap counts the router's daily rhythm
    # (round 5), but as a share of every window they still set the two apart
    assert every_change > 0.03
    active_export, active_baseline = flagged_share(export, own), flagged_share(baseline_table, training)
    assert active_export is not None and active_baseline is not None
    assert abs(active_export - active_baseline) < 0.01 < every_change
    assert flagged_share(export, own[own["n_records"] == 0]) is None
