"""Evaluation: labels we did not produce with the model, metrics with their data, honest splits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mcp_training_dagster.domain.evaluation import (
    evaluate_scores,
    score_diagnostics,
    time_split,
    usual_gap,
    window_labels,
)
from mcp_training_dagster.serving.exports import records_to_frame
from mcp_training_dagster.serving.features import WindowSpec, build_windows
from mcp_training_dagster.domain.results import (
    EvaluationData,
    Metrics,
    binary_metrics,
    meets_quality_gates,
    not_worse_than,
)
from mcp_training_dagster.domain.scenarios import generate
from mcp_training_dagster.serving.validation import validate_records


def test_binary_metrics_against_hand_counts() -> None:
    y = np.array([1, 1, 0, 0, 0, 1], dtype=bool)
    s = np.array([0.9, 0.2, 0.8, 0.1, 0.3, 0.7])
    m = binary_metrics(y, s, threshold=0.5)  # flagged: 0.9, 0.8, 0.7
    assert (m.true_positives, m.false_positives, m.n_flagged) == (2, 1, 3)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3)
    assert m.f1_score == pytest.approx(2 / 3)
    # ROC-AUC: of the 9 (anomalous, normal) pairs, the anomaly scores higher in 6
    assert m.roc_auc == pytest.approx(6 / 9)
    assert 0 < m.pr_auc <= 1
    assert m.threshold_value == 0.5 and m.anomaly_ratio == pytest.approx(0.5)


def test_binary_metrics_one_class_has_no_auc() -> None:
    m = binary_metrics(np.zeros(4, dtype=bool), np.arange(4.0), 1.5)
    assert m.roc_auc is None and m.pr_auc is None
    assert m.false_positives == 2


def test_score_at_threshold_is_normal() -> None:
    m = binary_metrics(np.array([True, False]), np.array([1.0, 0.0]), threshold=1.0)
    assert m.n_flagged == 0  # anomalous means strictly above the threshold


@pytest.fixture(scope="module")
def generated():
    data = generate(seed=11, days=2.0, n_devices=2, episodes_per_scenario=1, benign_per_scenario=1)
    records = validate_records(records_to_frame(data.records), "gen.json").records
    windows = build_windows(records, WindowSpec())
    return data, records, windows


def test_window_labels_from_records_and_silence(generated) -> None:
    data, records, windows = generated
    lab = window_labels(windows, records, data.labels, 5, data.episodes)
    assert len(lab) == len(windows)
    assert (
        lab[["device", "entity_kind", "entity"]].to_numpy()
        == windows[["device", "entity_kind", "entity"]].astype(str).to_numpy()
    ).all()
    # every anomalous record makes its device window anomalous, under its scenario
    bad = records.merge(data.labels[data.labels["is_anomaly"]], on="id")
    dev = lab[lab["entity_kind"] == "device"].set_index(["device", "window_start"])
    for row in bad.sample(min(len(bad), 50), random_state=0).itertuples():
        key = (row.device, row.timestamp.floor("5min"))
        assert dev.loc[key, "is_anomaly"]
    # silence has no records: its device windows are labelled from the episode alone, anomalous once
    # the silence is longer than the device's own longest gap of the day before
    silence = data.episodes[data.episodes["scenario"] == "silence"].iloc[0]
    usual = usual_gap(records, str(silence.device), pd.Timestamp(silence.start))
    assert pd.Timedelta(0) < usual < pd.Timedelta(hours=6)
    inside = dev.loc[str(silence.device)]
    inside = inside[(inside.index + pd.Timedelta(minutes=5) > silence.start) & (inside.index < silence.end)]
    late = inside.index + pd.Timedelta(minutes=5) > silence.start + usual
    assert late.any() and (inside.loc[late, "scenario"] == "silence").all() and inside.loc[late, "is_anomaly"].all()
    early = inside[~late]
    assert (early["scenario"] == "silence_within_usual_gap").all() and not early["is_anomaly"].any()
    # benign lookalikes are marked, not anomalous
    benign = lab[lab["scenario"].isin(["reboot_wave", "mistyped_passphrase", "iot_gtk_deauth", "boot_dfs"])]
    assert len(benign) > 0 and not benign["is_anomaly"].any()
    assert set(lab.loc[~lab["is_anomaly"], "scenario"]) <= {
        "normal",
        "reboot_wave",
        "mistyped_passphrase",
        "iot_gtk_deauth",
        "boot_dfs",
        "silence_within_usual_gap",
    }


def test_evaluate_scores_reports_per_kind_and_scenario(generated) -> None:
    data, records, windows = generated
    lab = window_labels(windows, records, data.labels, 5, data.episodes)
    perfect = lab["is_anomaly"].to_numpy(dtype=float)
    about = EvaluationData("generated", "seed 3", None, len(lab), int(lab["is_anomaly"].sum()))
    out = evaluate_scores(lab, perfect, threshold=0.5, data=about)
    assert out.data is about and out.overall.f1_score == 1.0 and out.overall.pr_auc == 1.0
    assert out.by_kind is not None and set(out.by_kind) == {"device", "station", "interface"}
    assert out.recall_by_scenario is not None and out.benign_flag_rate is not None
    assert set(out.recall_by_scenario) == {
        "deauth_flood",
        "auth_bruteforce",
        "reconnect_loop",
        "mac_flood",
        "radio_fault",
        "silence",
    }
    assert all(v == 1.0 for v in out.recall_by_scenario.values())
    assert all(v == 0.0 for v in out.benign_flag_rate.values())
    # a constant score knows nothing: AUCs at chance, nothing flagged
    blind = evaluate_scores(lab, np.zeros(len(lab)), threshold=0.5, data=about)
    assert blind.overall.roc_auc == 0.5 and blind.overall.recall == 0.0


def test_time_split_places_fraction_of_rows_before() -> None:
    t = pd.Series(pd.to_datetime(["2025-05-04 10:00"] * 10 + [f"2025-06-2{d} 10:00" for d in range(3, 8)] * 18))
    split = time_split(t, 0.8)
    assert (t < split).mean() == pytest.approx(0.8, abs=0.2)
    assert split > pd.Timestamp("2025-06-01")  # a time-span split would have left June to evaluation alone


def test_diagnostics_are_not_called_accuracy() -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(size=500)
    d = score_diagnostics(s, float(np.quantile(s, 0.98)), s[:100] + 0.1, [s, s + rng.normal(scale=0.01, size=500)])
    assert "accuracy" not in str(d).lower().replace("not accuracy", "")
    assert d["training_flag_rate"] == pytest.approx(0.02, abs=0.005)
    assert d["seed_stability"]["spearman_min"] > 0.99


def _overall(f1: float, roc_auc: float | None) -> Metrics:
    m = binary_metrics(np.array([True, False]), np.array([1.0, 0.0]), 0.5)
    return replace(m, f1_score=f1, roc_auc=roc_auc)


def test_gates() -> None:
    assert meets_quality_gates(_overall(0.5, 0.6), 0.5, 0.6)
    assert not meets_quality_gates(_overall(0.49, 0.9), 0.5, 0.6)
    assert not meets_quality_gates(_overall(0.9, None), 0.5, 0.6)  # missing counts as 0
    assert not meets_quality_gates(None, 0.0, 0.0)  # no held-out figures: never ready
    assert not_worse_than(0.80, None, 0.02)  # no production model yet
    assert not_worse_than(0.78, 0.80, 0.02) and not not_worse_than(0.77, 0.80, 0.02)


def test_the_evaluation_set_of_the_records_it_reads_is_that_of_every_record() -> None:
    """build_evaluation_set over only EVALUATION_COLUMNS of the records since evaluation_records_since (what the
    asset reads of a long horizon), given the whole table's next id, is the set built from every record: windows,
    labels and the agent's vectors, injected and labelled."""
    from mcp_training_dagster.domain.evaluation import (
        EVALUATION_COLUMNS,
        build_evaluation_set,
        evaluation_records_since,
        time_split,
    )

    data = generate(seed=5, days=12, n_devices=2, episodes_per_scenario=1, benign_per_scenario=1)
    records = validate_records(records_to_frame(data.records), "gen.json").records
    spec = WindowSpec()
    split = time_split(records["timestamp"], 0.8).floor("5min")
    since = evaluation_records_since(split, spec)
    assert 0.5 < (records["timestamp"] >= since).mean() < 0.9  # older records are left out
    part = records.loc[records["timestamp"] >= since, list(EVALUATION_COLUMNS)].reset_index(drop=True)
    for labels in (None, data.labels):
        whole = build_evaluation_set(records, spec, split=split, labels=labels)
        read = build_evaluation_set(part, spec, split=split, labels=labels, next_id=int(records["id"].max()) + 1)
        assert (read.source, read.description, read.split_time) == (whole.source, whole.description, whole.split_time)
        pd.testing.assert_frame_equal(read.windows, whole.windows)
        pd.testing.assert_frame_equal(read.labels, whole.labels)
        assert whole.agent_vectors is not None and read.agent_vectors is not None
        pd.testing.assert_frame_equal(read.agent_vectors, whole.agent_vectors)
        assert np.array_equal(read.agent_labels, whole.agent_labels)


def test_evaluate_scores_by_codes_is_by_text() -> None:
    """Kinds and scenarios compared as codes give the figures text comparisons gave, whatever their dtype."""
    rng = np.random.default_rng(3)
    n = 5_000
    kinds = rng.choice(["device", "station", "interface"], n)
    scens = rng.choice(["normal", "flood", "deauth", "lookalike"], n, p=[0.85, 0.05, 0.05, 0.05])
    y = (scens == "flood") | (scens == "deauth")
    s = rng.normal(size=n) + y
    data = EvaluationData("injected", "test", None, n, int(y.sum()))

    def by_text(labelled: pd.DataFrame) -> dict:
        kind = labelled["entity_kind"].astype("str").to_numpy()
        scen = labelled["scenario"].astype("str").to_numpy()
        dev, flagged = kind == "device", s > 0.5
        return {
            "by_kind": {k: binary_metrics(y[kind == k], s[kind == k], 0.5) for k in np.unique(kind)},
            "recall": {m: float(flagged[dev & (scen == m) & y].mean()) for m in sorted(set(scen[dev & y]))},
            "benign": {
                m: float(flagged[dev & (scen == m) & ~y].mean()) for m in sorted(set(scen[dev & ~y]) - {"normal"})
            },
            "windows": {m: int((dev & (scen == m)).sum()) for m in sorted(set(scen[dev]))},
            "normal": float(flagged[dev & (scen == "normal")].mean()),
        }

    for dtype in ("object", "category", "str"):
        labelled = pd.DataFrame({"entity_kind": kinds, "scenario": scens, "is_anomaly": y}).astype(
            {"entity_kind": dtype, "scenario": dtype}
        )
        got, want = evaluate_scores(labelled, s, 0.5, data), by_text(labelled)
        assert list(got.by_kind) == list(want["by_kind"]) and got.by_kind == want["by_kind"]
        assert got.recall_by_scenario == want["recall"] and got.benign_flag_rate == want["benign"]
        assert got.windows_by_scenario == want["windows"] and got.normal_flag_rate == want["normal"]


def test_an_evaluation_set_is_stored_packed_and_reads_as_before(tmp_path) -> None:
    """Pickled (as the model IO manager stores it), the set keeps its windows packed and their fingerprints:
    read back, its windows, a column subset and the fingerprints are those of the set built; a set pickled with
    its windows as a frame (before packing) still reads."""
    import pickle

    from mcp_training_dagster.domain.evaluation import EvaluationSet, build_evaluation_set
    from mcp_training_dagster.domain.report import frame_fingerprint

    gen = generate(seed=11, days=2.0, n_devices=2, episodes_per_scenario=1, benign_per_scenario=1)
    records = validate_records(records_to_frame(gen.records), "gen.json").records
    spec = WindowSpec()
    data = build_evaluation_set(records, spec, split=time_split(records["timestamp"], 0.8).floor("5min"))
    back = pickle.loads(pickle.dumps(data))
    assert "windows" not in back.__dict__ and back.n_windows == len(data.windows)
    assert back.fingerprints() == (frame_fingerprint(data.windows), frame_fingerprint(data.labels))
    columns = ["device", "entity_kind", "n_records", "no_such_column"]
    pd.testing.assert_frame_equal(back.window_columns(columns), data.windows[columns[:3]])
    pd.testing.assert_frame_equal(back.windows, data.windows)
    pd.testing.assert_frame_equal(back.labels, data.labels)
    assert pickle.loads(pickle.dumps(back)).fingerprints() == back.fingerprints()
    old = EvaluationSet.__new__(EvaluationSet)
    old.__setstate__({k: v for k, v in data.__dict__.items()})  # as a set pickled before packing
    pd.testing.assert_frame_equal(old.windows, data.windows)
    assert old.fingerprints() == back.fingerprints()


def test_the_injected_prevalence_is_per_held_out_router_day_so_a_fleet_is_judged_as_one_router() -> None:
    """A fixed count of injected episodes drowns in a fleet's false alarms (the alarm budget is per router-day):
    a 50-router, 30-day fleet's model was refused at F1 0.26 with ROC-AUC 0.998. Episodes per held-out
    router-day keep the share of anomalous windows of 16 routers that of 2, and the set says what it injected."""
    from mcp_training_dagster.domain.evaluation import EvaluationSet, build_evaluation_set

    data = generate(seed=3, days=5, n_devices=16, episodes_per_scenario=0, benign_per_scenario=0)
    records = validate_records(records_to_frame(data.records), "gen.json").records
    spec = WindowSpec()
    split = time_split(records["timestamp"], 0.8).floor("5min")
    two = records[records["device"].isin(sorted(records["device"].unique())[:2])]

    def share(recs: pd.DataFrame, rate: float) -> tuple[float, EvaluationSet]:
        s = build_evaluation_set(recs, spec, split=split, episodes_per_scenario=2, episodes_per_router_day=rate)
        return s.size["anomalous_windows"] / s.size["windows"], s

    small, small_set = share(two, 1.0)
    fleet, fleet_set = share(records, 1.0)
    fixed, _ = share(records, 0.0)
    assert small_set.held_out_router_days == pytest.approx(2 * 1.0, rel=0.05)
    assert fleet_set.held_out_router_days == pytest.approx(16 * 1.0, rel=0.05)
    assert "2 per scenario for 2.0 held-out router-days" in small_set.description
    assert "16 per scenario for 16.1 held-out router-days (1 per router-day, at least 2)" in fleet_set.description
    assert fleet == pytest.approx(small, rel=0.25)  # the same prevalence at 8x the routers
    assert fixed < small / 4  # what a fixed count gave


def test_above_max_router_days_a_seeded_sample_of_routers_evaluates_at_the_same_prevalence() -> None:
    """A fleet's evaluation cost grows with its held-out router-days (the injected episodes are simulated one by
    one): above ``max_router_days`` a seeded sample of the routers evaluates, at the same stated prevalence, and
    the asset's read of only the sample's records (``routers`` chosen from every record's keys) gives the same set."""
    from mcp_training_dagster.domain.evaluation import EvaluationSet, build_evaluation_set, held_out

    data = generate(seed=3, days=5, n_devices=16, episodes_per_scenario=0, benign_per_scenario=0)
    records = validate_records(records_to_frame(data.records), "gen.json").records
    spec = WindowSpec()
    split = time_split(records["timestamp"], 0.8).floor("5min")
    whole = build_evaluation_set(records, spec, split=split, episodes_per_router_day=1.0)
    sampled = build_evaluation_set(records, spec, split=split, episodes_per_router_day=1.0, max_router_days=6.0)
    routers = held_out(records["timestamp"], records["device"], split, max_router_days=6.0, seed=7)
    assert routers.sampled and len(routers.devices) == 5 and routers.all_devices == 16
    assert sampled.held_out_router_days == pytest.approx(routers.router_days, abs=1e-3)
    assert routers.router_days <= 6.0
    assert "a seeded sample of 5 of 16 routers (at most 6 router-days)" in sampled.description
    assert set(sampled.windows["device"]) == set(routers.devices)

    def share(s: EvaluationSet) -> float:
        return s.size["anomalous_windows"] / s.size["windows"]

    assert share(sampled) == pytest.approx(share(whole), rel=0.35)
    assert sampled.size["windows"] < whole.size["windows"] / 2

    mine = records[records["device"].isin(routers.devices)]
    read = build_evaluation_set(
        mine,
        spec,
        split=split,
        episodes_per_router_day=1.0,
        max_router_days=6.0,
        routers=routers,
        next_id=int(records["id"].max()) + 1,
    )
    assert read.description == sampled.description
    pd.testing.assert_frame_equal(read.windows, sampled.windows)
    pd.testing.assert_frame_equal(read.labels, sampled.labels)
