"""The agent variant: exactly the vector today's inference agent builds, and a model it can call."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest

from mcp_training_dagster.domain import evaluation
from mcp_training_dagster.domain.agent_variant import (
    AGENT_FEATURES,
    agent_metadata,
    agent_vectors,
    agent_version,
    train_agent_model,
)
from mcp_training_dagster.serving.exports import read_export, records_to_frame
from mcp_training_dagster.domain.training import new_version
from mcp_training_dagster.serving.validation import validate_records
from mcp_training_dagster_tests.conftest import HOSTAPD_1824


def validated(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """(timestamp, device, process, message) -> validated records, through the real validation."""
    raw = [
        {
            "id": i + 1,
            "device_id": dev,
            "device_ip": f"10.0.0.{dev}",
            "timestamp": ts,
            "log_level": "info",
            "process_name": proc,
            "message": msg,
        }
        for i, (ts, dev, proc, msg) in enumerate(rows)
    ]
    return validate_records(records_to_frame(raw), "handmade.json").records


HANDMADE = [
    ("2025-06-01T10:00:05", "3", "hostapd", "wl0.1: STA aa:bb:cc:dd:ee:01 IEEE 802.11: associated"),
    ("2025-06-01T10:01:00", "7", "hostapd", "wl0.1: STA aa:bb:cc:dd:ee:02 WPA: EAPOL-Key handshake FAILED"),
    ("2025-06-01T10:02:00", "3", "wpa_supplicant", "WARNING: scan Error on wlan0"),  # error AND warning
    ("2025-06-01T10:03:00", "3", "HOSTAPD", "Critical: radio reset, failed twice, errors follow"),  # counts once
    ("2025-06-01T10:04:59", "3", "dnsmasq", "error: DHCP failed, warning"),  # not a WiFi process
    ("2025-06-01T10:07:00", "3", "kernel", "warning: hostapd restarted"),  # not a WiFi process
    ("2025-06-01T10:12:00", "7", "dnsmasq", "DHCPACK"),
    ("2025-06-01T10:16:00", "7", "wpa_supplicant", "Warning: weak signal"),
    ("2025-06-01T10:19:59", "3", " wpa_supplicant ", "CTRL-EVENT-CONNECTED"),
]


def test_vectors_follow_the_agent_semantics() -> None:
    v = agent_vectors(validated(HANDMADE))
    assert list(v.columns) == ["window_start", *AGENT_FEATURES]
    assert all(v[c].dtype == np.float64 for c in AGENT_FEATURES)
    assert v["window_start"].astype(str).tolist() == [
        "2025-06-01 10:00:00",
        "2025-06-01 10:05:00",
        "2025-06-01 10:10:00",
        "2025-06-01 10:15:00",
    ]
    expected = [
        [4, 3, 1, 0, 0],  # both devices together; dnsmasq excluded; HOSTAPD matched case-insensitively
        [0, 0, 0, 0, 0],  # only a kernel line: a window the agent still scores, empty
        [0, 0, 0, 0, 0],  # only dnsmasq
        [2, 0, 1, 0, 0],  # wpa_supplicant included ("Warning" lower-cased), blanks around the name ignored
    ]
    np.testing.assert_array_equal(v[list(AGENT_FEATURES)].to_numpy(), np.asarray(expected, dtype=np.float64))


def test_window_length_and_empty_input() -> None:
    v = agent_vectors(validated(HANDMADE), window_minutes=10)
    assert v["window_start"].astype(str).tolist() == ["2025-06-01 10:00:00", "2025-06-01 10:10:00"]
    np.testing.assert_array_equal(v["log_count"].to_numpy(), [4.0, 2.0])
    empty = agent_vectors(validated(HANDMADE).iloc[:0])
    assert list(empty.columns) == ["window_start", *AGENT_FEATURES] and len(empty) == 0
    with pytest.raises(ValueError, match="lack columns"):
        agent_vectors(pd.DataFrame({"timestamp": []}))
    with pytest.raises(ValueError, match="at least 1"):
        agent_vectors(validated(HANDMADE), window_minutes=0)


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return validate_records(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name).records


@pytest.fixture(scope="module")
def vectors(records: pd.DataFrame) -> pd.DataFrame:
    return agent_vectors(records)


def test_vectors_on_the_real_export(records: pd.DataFrame, vectors: pd.DataFrame) -> None:
    wifi = records["process_name"].str.lower().isin(["hostapd", "wpa_supplicant"])
    assert vectors["log_count"].sum() == wifi.sum() > 1000
    msg = records.loc[wifi, "message"].str.lower()
    assert vectors["error_count"].sum() == msg.str.contains("error|critical|failed").sum()
    assert vectors["warning_count"].sum() == msg.str.contains("warning", regex=False).sum()
    steps = vectors["window_start"].diff().dropna()
    assert (steps == pd.Timedelta(minutes=5)).all()  # contiguous: empty windows are there
    assert (vectors["log_count"] == 0).any()
    assert (vectors[["unique_program_count", "unique_host_count"]] == 0).all().all()
    assert vectors["window_start"].iloc[0] == records["timestamp"].min().floor("5min")
    assert vectors["window_start"].iloc[-1] == records["timestamp"].max().floor("5min")


def test_model_takes_the_raw_5_value_vector(vectors: pd.DataFrame) -> None:
    est, threshold = train_agent_model(vectors, contamination=0.02, random_state=42)
    assert type(est) is IsolationForest and not hasattr(est, "steps")  # no scaler, no pipeline
    assert est.n_features_in_ == 5 and not hasattr(est, "feature_names_in_")
    X = vectors[list(AGENT_FEATURES)].to_numpy()
    scores = -est.score_samples(X)
    active = X[:, 0] > 0
    # calibrated on windows with WiFi records (the real export is 98% empty windows), never below the empty window
    zero = -est.score_samples(np.zeros((1, 5)))[0]
    assert threshold == pytest.approx(max(float(np.quantile(scores[active], 0.98)), zero), rel=1e-12)
    assert est.offset_ == -threshold
    assert 0 < np.mean(scores[active] > threshold) <= 0.03  # not every active window, as a whole-span quantile gave

    # as the agent calls it: one plain 5-value vector, no feature-name warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = est.predict(np.array([[0.0, 0.0, 0.0, 0.0, 0.0]]))
        flood = est.predict(np.array([[900.0, 300.0, 50.0, 0.0, 0.0]]))
    assert set(quiet.tolist()) <= {-1, 1}
    assert flood.tolist() == [-1]
    assert -est.score_samples([[900.0, 300.0, 50.0, 0.0, 0.0]])[0] > threshold

    # predict (-1) agrees exactly with score > threshold, on training vectors and far outside them
    rng = np.random.default_rng(0)
    probe = np.c_[rng.integers(0, 400, (500, 3)), np.zeros((500, 2))].astype(np.float64)
    for M in (X, probe):
        np.testing.assert_array_equal(est.predict(M) == -1, -est.score_samples(M) > threshold)
    assert np.mean(est.predict(X) == -1) <= 0.03


def test_training_input_checks(vectors: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="contamination"):
        train_agent_model(vectors, contamination=0.6, random_state=1)
    with pytest.raises(ValueError, match="5 columns"):
        train_agent_model(np.zeros((10, 4)), contamination=0.02, random_state=1)
    with pytest.raises(ValueError, match="at least 2"):
        train_agent_model(vectors.iloc[:1], contamination=0.02, random_state=1)


def test_metadata_in_the_contract_shape(vectors: pd.DataFrame) -> None:
    est, threshold = train_agent_model(vectors, contamination=0.02, random_state=7, n_estimators=50)
    floods = np.array([[500.0 + 10 * i, 100.0, 20.0, 0.0, 0.0] for i in range(5)])
    X = np.r_[vectors[list(AGENT_FEATURES)].to_numpy(), floods]
    y = np.r_[np.zeros(len(vectors), bool), np.ones(len(floods), bool)]
    metrics = evaluation.binary_metrics(y, -est.score_samples(X), threshold).as_dict()
    base = new_version()
    version = agent_version(base)
    assert version == f"{base}_agent5" and agent_version(version) == version
    meta = agent_metadata(
        version=version,
        estimator=est,
        threshold=threshold,
        vectors=vectors,
        basic_metrics=metrics,
        contamination=0.02,
        export_files=["a.json"],
    )
    mi, ti, ic = meta["model_info"], meta["training_info"], meta["inference_config"]
    assert mi["version"] == f"model_{version}" and mi["model_type"] == "IsolationForest" and mi["created_at"]
    assert "generic branch" in mi["description"] and f"model_{base}" in mi["description"]
    assert ti["feature_names"] == ic["feature_names"] == list(AGENT_FEATURES)
    assert ti["feature_count"] == ic["feature_count"] == 5
    assert ti["training_samples"] == ti["n_samples"] == len(vectors)
    assert ti["model_parameters"]["n_estimators"] == 50
    assert ic["input"] == "agent_5_value_window_vector" and ic["scaled"] is False
    assert ic["threshold"] == threshold and ic["score_convention"] == "higher_is_more_anomalous"
    assert meta["evaluation_info"]["basic_metrics"] == metrics  # as measured, untouched
    assert meta["evaluation_info"]["basic_metrics"]["recall"] == 1.0
    with pytest.raises(ValueError, match="basic_metrics are required"):
        agent_metadata(
            version=version, estimator=est, threshold=threshold, vectors=vectors, basic_metrics={}, contamination=0.02
        )
    with pytest.raises(ValueError, match="_agent5"):
        agent_metadata(
            version=base, estimator=est, threshold=threshold, vectors=vectors, basic_metrics=metrics, contamination=0.02
        )
