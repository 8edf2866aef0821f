"""The labelled scenario generator: reproducible, in the real export format, classified as intended,
labelled completely, with episodes that are what they claim to be."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mcp_training_dagster.domain import scenarios as sc
from mcp_training_dagster.serving.events import classify_events
from mcp_training_dagster.serving.exports import RECORD_KEYS, read_export, records_to_frame
from mcp_training_dagster.serving.validation import LEVELS, ValidationResult, validate_records
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_35

SMALL = dict(seed=11, days=3, n_devices=2, episodes_per_scenario=1, benign_per_scenario=1)
MAC = re.compile(r"(?i)[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


@pytest.fixture(scope="module")
def data() -> sc.GeneratedData:
    """The default dataset (3 devices x 7 days, 3 episodes of every scenario)."""
    return sc.generate()


@pytest.fixture(scope="module")
def validated(data: sc.GeneratedData) -> ValidationResult:
    return validate_records(records_to_frame(data.records), "generated.json")


@pytest.fixture(scope="module")
def frame(data: sc.GeneratedData, validated: ValidationResult) -> pd.DataFrame:
    """Validated records with their labels."""
    return validated.records.merge(data.labels, on="id", how="left", validate="one_to_one")


# ---------------------------------------------------------------------------------------------- seeds
def test_same_seed_gives_byte_identical_output() -> None:
    a, b = sc.generate(**SMALL), sc.generate(sc.ScenarioConfig(**SMALL))
    assert json.dumps(a.records) == json.dumps(b.records)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    pd.testing.assert_frame_equal(a.episodes, b.episodes)


# Pinned before generate() was refactored to share its episode builders with inject_episodes(): the
# records, labels and episodes of seed 0 must stay byte-identical (change these only on purpose).
GENERATE_SEED0_SHA256 = {
    "records": "4d4255595a1702f1795ef2c9956bcda5cd8b39b035b4c1d948287e4f3a061c42",
    "labels": "d2f80bf8826fcdf3ffe298c9427960e83cc073ec20298cec478c279cb10439cc",
    "episodes": "eb32105af4609f90dcb56a071c2c919772377542b619b84363c8ac2801777598",
}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_generate_seed0_is_pinned() -> None:
    d = sc.generate(seed=0)
    got = {
        "records": _sha(json.dumps(d.records)),
        "labels": _sha(
            json.dumps([d.labels["id"].tolist(), d.labels["is_anomaly"].tolist(), d.labels["scenario"].tolist()])
        ),
        "episodes": _sha(json.dumps([[str(v) for v in r] for r in d.episodes.itertuples(index=False)])),
    }
    assert got == GENERATE_SEED0_SHA256


def test_different_seeds_differ_in_macs_devices_times_and_wording() -> None:
    a, b = sc.generate(**SMALL), sc.generate(**{**SMALL, "seed": 12})

    def macs(d: sc.GeneratedData) -> set[str]:
        return {m.lower() for r in d.records for m in MAC.findall(r["message"])}

    assert not macs(a) & macs(b)
    assert {r["device_id"] for r in a.records} != {r["device_id"] for r in b.records}
    assert {r["device_ip"] for r in a.records}.isdisjoint({r["device_ip"] for r in b.records})
    assert set(a.episodes["start"]) != set(b.episodes["start"])
    shapes_a = Counter(MAC.sub("M", r["message"]) for r in a.records)
    shapes_b = Counter(MAC.sub("M", r["message"]) for r in b.records)
    assert shapes_a != shapes_b


def test_overrides_and_validation() -> None:
    cfg = sc.ScenarioConfig(**SMALL)
    assert sc.generate(cfg, seed=5).config.seed == 5
    with pytest.raises(ValidationError, match="unknown scenarios"):
        sc.ScenarioConfig(scenarios=("deauth_flood", "wormhole"))
    with pytest.raises(ValidationError, match="stations_per_device"):
        sc.ScenarioConfig(stations_per_device=(5, 2))
    with pytest.raises(ValidationError):
        sc.ScenarioConfig(days=0)
    with pytest.raises(ValidationError):
        sc.ScenarioConfig(no_such_field=1)
    with pytest.raises(ValueError, match="cannot place"):
        sc.generate(days=0.2, n_devices=1, episodes_per_scenario=5)


def test_default_size() -> None:
    """The default generation is a realistic size (its speed is not asserted here: figures go in benchmarks)."""
    d = sc.generate(seed=3)
    assert len(d.records) > 10_000


# ---------------------------------------------------------------------------------------------- format
def test_records_have_the_real_export_shape(data: sc.GeneratedData) -> None:
    real = json.loads(HOSTAPD_1824.read_text(encoding="utf-8"))["data"][0]
    stamp = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
    for rec in data.records:
        assert list(rec) == list(RECORD_KEYS) == list(real)
        for key, value in real.items():
            assert type(rec[key]) is type(value), key
        assert stamp.match(rec["timestamp"])
        sd = json.loads(rec["structured_data"])
        assert sd["priority"] == sd["facility"] * 8 + sd["severity_code"]
        assert rec["log_level"] == LEVELS[sd["severity_code"]]
        tag = f"{rec['process_name']}[{sd['pid']}]" if "pid" in sd else rec["process_name"]
        assert rec["raw_message"].startswith(f"<{sd['priority']}>")
        assert rec["raw_message"].endswith(f" {rec['device_ip']} {tag}: {rec['message']}\n")
    stamps = [r["timestamp"] for r in data.records]
    assert stamps == sorted(stamps, reverse=True)  # newest first, like the service
    ids = [r["id"] for r in data.records]
    assert len(set(ids)) == len(ids) and min(ids) == data.config.first_id
    hosts = {r["device_ip"] for r in data.records}
    assert any(re.match(r"^[A-Z]{2}-[A-Z0-9]+-[0-9A-F]{4}-[0-9A-F]{7}-C$", h) for h in hosts)  # like the real one
    assert set(data.devices["vendor"]) == {"asus", "openwrt"}


def test_export_document_and_the_project_reader(tmp_path: Path) -> None:
    d = sc.generate(**SMALL)
    doc = sc.export_document(d)
    assert list(doc) == ["export_metadata", "data"]
    assert doc["export_metadata"]["total_records"] == len(d.records)
    assert doc["export_metadata"]["format"] == "json"
    created = datetime.fromisoformat(doc["export_metadata"]["created_at"])
    assert created > datetime.fromisoformat(d.records[0]["timestamp"])
    paths = sc.write_export(d, tmp_path / "export_gen.json")
    raw = read_export(paths["export"])
    assert raw.facts.actual_records == raw.facts.claimed_records == len(d.records)
    assert not raw.facts.count_mismatch
    assert paths["export"].read_text(encoding="utf-8").startswith('{\n  "export_metadata": {\n    "created_at"')


# ---------------------------------------------------------------------------------------------- classification
def _template_cases() -> list[tuple[str, int | None]]:
    return [(key, code) for key in sc.TEMPLATES for code in (sc.TEMPLATE_CODES.get(key) or (None,))]


def test_every_template_classifies_to_its_intended_event_type() -> None:
    cases = _template_cases()
    mac = "9a:eb:8a:3f:c4:c0"
    msgs = [
        sc.render(
            key, **sc.template_fields(key, mac=mac, iface="wl1-ap0" if key.startswith("c_") else "eth6", code=code)
        )
        for key, code in cases
    ]
    procs = [sc.TEMPLATES[key].process for key, _ in cases]
    got = classify_events(pd.Series(msgs), pd.Series(procs))
    for (key, code), msg, event, station, iface in zip(
        cases, msgs, got["event_type"], got["station_mac"], got["interface"]
    ):
        assert event == sc.TEMPLATES[key].event_type, (key, code, msg, event)
        if "{mac}" in sc.TEMPLATES[key].text or "{MAC}" in sc.TEMPLATES[key].text:
            assert station == mac, (key, msg)  # the station MAC is the first MAC of the line
        if sc.TEMPLATES[key].text.startswith(("{iface}", "wlceventd_proc_event")):
            assert iface == ("wl1-ap0" if key.startswith("c_") else "eth6"), (key, msg)


def test_generated_records_validate_cleanly_and_classify_as_intended(
    data: sc.GeneratedData, validated: ValidationResult
) -> None:
    assert validated.quarantine.empty
    assert validated.report.valid == len(data.records)
    assert validated.report.unknown_levels == 0 and validated.report.unparsed_structured_data == 0
    assert sorted(validated.report.devices) == sorted(data.devices["device"])
    got = validated.records.merge(data.intended_events, on="id", suffixes=("", "_intended"), validate="one_to_one")
    assert len(got) == len(data.records)
    wrong = got[got["event_type"].astype("str") != got["event_type_intended"]]
    assert wrong.empty, wrong[["message", "event_type", "event_type_intended"]].head()
    mac_wrong = got[got["station_mac"].fillna("") != got["station_mac_intended"].fillna("")]
    assert mac_wrong.empty, mac_wrong[["message", "station_mac", "station_mac_intended"]].head()


# ---------------------------------------------------------------------------------------------- labels / episodes
def test_labels_cover_every_record_exactly_once(data: sc.GeneratedData) -> None:
    labels = data.labels
    assert list(labels.columns) == list(sc.LABEL_COLUMNS)
    assert labels["id"].is_unique
    assert set(labels["id"]) == {r["id"] for r in data.records}
    assert labels["is_anomaly"].dtype == bool
    assert set(labels["scenario"]) <= set(sc.SCENARIO_NAMES)
    expected = labels["scenario"].isin(sc.ANOMALY_SCENARIOS)
    assert (labels["is_anomaly"] == expected).all()
    assert (labels["scenario"] == sc.NORMAL).mean() > 0.5


@pytest.mark.parametrize("cfg", [dict(), dict(SMALL), dict(SMALL, scenarios=("silence", "mac_flood"), benign=())])
def test_each_configured_scenario_has_its_episodes(cfg: dict) -> None:
    d = sc.generate(**cfg)
    c = sc.ScenarioConfig(**cfg)
    counts = d.episodes["scenario"].value_counts().to_dict()
    expected = {**{s: c.episodes_per_scenario for s in c.scenarios}, **{s: c.benign_per_scenario for s in c.benign}}
    assert counts == {s: n for s, n in expected.items() if n}
    ep = d.episodes
    assert list(ep.columns) == list(sc.EPISODE_COLUMNS)
    assert (ep["is_anomaly"] == ep["scenario"].isin(sc.ANOMALY_SCENARIOS)).all()
    assert set(ep["device"]) <= set(d.devices["device"])
    assert ep["entity_kind"].isin(["device", "station"]).all()
    assert ((ep["entity_kind"] == "device") == (ep["entity"] == "*")).all()
    start = pd.Timestamp(c.start)
    end = start + pd.Timedelta(days=c.days)
    assert (ep["start"] >= start + pd.Timedelta(days=1 if c.days >= 2 else c.days / 4)).all()  # history first
    assert (ep["end"] <= end).all() and (ep["end"] > ep["start"]).all()
    for _, g in ep.sort_values("start").groupby("device"):
        assert (g["start"].to_numpy()[1:] >= g["end"].to_numpy()[:-1]).all(), "episodes overlap on a device"


def test_episodes_spread_over_the_period(data: sc.GeneratedData) -> None:
    start = pd.Timestamp(data.config.start)
    days = ((data.episodes["start"] - start) / pd.Timedelta(days=1)).astype(int)
    assert set(days) >= set(range(1, int(data.config.days)))  # every day after the first has episodes
    assert data.episodes["device"].nunique() == data.config.n_devices


def test_episode_records_lie_inside_their_episodes(data: sc.GeneratedData, frame: pd.DataFrame) -> None:
    for ep in data.episodes.itertuples(index=False):
        inside = (frame["device"] == ep.device) & (frame["timestamp"] >= ep.start) & (frame["timestamp"] < ep.end)
        mine = frame[inside & (frame["scenario"] == ep.scenario)]
        if ep.scenario == "silence":
            assert not inside.any(), "a silent device sent records"
            continue
        assert len(mine) > 0, ep
        if ep.entity_kind == "station":
            assert (mine["station_mac"] == ep.entity).any()
    labelled = frame[frame["scenario"] != sc.NORMAL]
    for scen, g in labelled.groupby("scenario"):
        eps = data.episodes[data.episodes["scenario"] == scen]
        covered = np.zeros(len(g), dtype=bool)
        for ep in eps.itertuples(index=False):
            inside = (g["device"] == ep.device) & (g["timestamp"] >= ep.start) & (g["timestamp"] < ep.end)
            covered |= inside.to_numpy()
        assert covered.all(), f"{scen} records outside its episodes"


def test_silence_is_a_busy_device_going_quiet(data: sc.GeneratedData, frame: pd.DataFrame) -> None:
    silences = data.episodes[data.episodes["scenario"] == "silence"]
    assert len(silences) == data.config.episodes_per_scenario
    for ep in silences.itertuples(index=False):
        dev = frame[frame["device"] == ep.device]
        assert not ((dev["timestamp"] >= ep.start) & (dev["timestamp"] < ep.end)).any()
        assert pd.Timedelta(hours=1) <= ep.end - ep.start <= pd.Timedelta(hours=6)
        # the same hours a day earlier the device logged (at least its hourly group rekeys)
        day_before = (ep.start - pd.Timedelta(days=1), ep.end - pd.Timedelta(days=1))
        if (
            (silences["device"] == ep.device) & (silences["start"] < day_before[1]) & (silences["end"] > day_before[0])
        ).any():
            continue  # that was a silence too
        before = dev[(dev["timestamp"] >= day_before[0]) & (dev["timestamp"] < day_before[1])]
        assert before["timestamp"].dt.floor("h").nunique() >= (ep.end - ep.start) // pd.Timedelta(hours=1)


# ---------------------------------------------------------------------------------------------- realism
def test_normal_traffic_looks_like_the_real_router(frame: pd.DataFrame, data: sc.GeneratedData) -> None:
    normal = frame[frame["scenario"] == sc.NORMAL]
    events = normal["event_type"].astype("str")
    # group rekey: an hourly burst at one fixed minute:second per device (until a reboot restarts the timer)
    for device, g in normal[events == "group_key_success"].groupby("device"):
        per_hour = g.groupby(g["timestamp"].dt.floor("h"))["timestamp"]
        assert ((per_hour.max() - per_hour.min()) <= pd.Timedelta(seconds=3)).mean() > 0.95, device
        offsets = (per_hour.min() - per_hour.min().dt.floor("h")).dt.total_seconds() // 60
        reboots = ((data.episodes["device"] == device) & (data.episodes["scenario"] == "reboot_wave")).sum()
        assert offsets.nunique() <= 2 * (1 + reboots), device
        assert len(per_hour) > 0.9 * data.config.days * 24 - 6 * 3  # every hour but silences
    # connects come with a pairwise handshake and RADIUS accounting, as on the real ASUS
    assert events.value_counts()["pairwise_handshake_success"] >= events.value_counts()["radius_accounting"] > 0
    # both randomised (locally administered) and vendor MACs
    macs = normal["station_mac"].dropna().unique()
    la = np.array([int(m[:2], 16) & 2 for m in macs]) > 0
    assert la.sum() >= 3 and (~la).sum() >= 3
    # diurnal: more joins in the evening than in the small hours
    joins = normal[events == "association"]["timestamp"].dt.hour
    assert joins.between(18, 22).sum() > 2 * joins.between(2, 6).sum()
    # background processes with their real levels
    assert {"crond", "WATCHDOG"} <= set(normal["process_name"])
    assert set(normal.loc[normal["process_name"] == "WATCHDOG", "log_level"].astype("str")) == {"emergency"}
    # roaming between the two interfaces, occasional single deauths
    stations = normal.dropna(subset=["station_mac"])
    per_station_ifaces = stations.groupby(["device", "station_mac"])["interface"].nunique()
    assert (per_station_ifaces > 1).any()
    assert (events == "deauthentication").sum() > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_a_busy_router_logs_in_most_daytime_windows(seed: int) -> None:
    d = sc.generate(
        seed=seed, days=3, n_devices=2, stations_per_device=(28, 30), episodes_per_scenario=0, benign_per_scenario=0
    )
    stamps = pd.to_datetime(pd.Series([r["timestamp"] for r in d.records]))
    devices = pd.Series([r["device_id"] for r in d.records])
    for _, ts in stamps.groupby(devices):
        day = ts[ts.dt.hour.between(8, 23)]
        assert day.dt.floor("5min").nunique() / (3 * 16 * 12) > 0.5
        night = ts[ts.dt.hour.between(2, 5)]
        assert len(night) / 4 < len(day) / 16  # quieter at night


def _shape(message: str) -> str:
    """A line without its variable parts (MAC, numbers, reason/status text)."""
    m = MAC.sub("M", message)
    m = re.sub(r"(status|reason): [^,]*", r"\1: X", m)
    m = re.sub(r"session [0-9A-F]{16}", "session S", m)
    m = re.sub(r"\d+", "N", m)
    return re.sub(r"\b(?:eth|wlan|wl|phy)N(?:-apN)?\b", "IF", m)  # same wording on another vendor's radio


def test_attacks_use_no_wording_of_their_own(frame: pd.DataFrame) -> None:
    """The signal must be in rates and combinations: every line shape an attack on stations uses also
    occurs in normal or benign traffic."""
    shapes = frame["message"].map(_shape)
    benign = set(shapes[~frame["is_anomaly"]])
    for scen in ("deauth_flood", "auth_bruteforce", "reconnect_loop", "mac_flood"):
        own = set(shapes[frame["scenario"] == scen]) - benign
        assert not own, (scen, own)
    # and the reason codes of attack phrasings all occur in the normal disconnect pools
    normal_pool = {seq for _, seq in sc._ASUS_LEAVE + sc._ASUS_LEAVE_PLAIN + sc._OPENWRT_LEAVE}
    normal_pool |= set(sc._LOCAL_DEAUTH.values()) | {seq[1:] for seq in sc._LOCAL_DEAUTH.values()}
    assert set(sc._ASUS_ATTACK_DISC + sc._OPENWRT_ATTACK_DISC) <= normal_pool


def test_scenarios_differ_from_normal_in_counts(frame: pd.DataFrame, data: sc.GeneratedData) -> None:
    """Each anomaly shows as a count far above what the device's normal 5-minute windows reach."""
    frame = frame.assign(window=frame["timestamp"].dt.floor("5min"), ev=frame["event_type"].astype("str"))
    groups = {
        "deauth_flood": {"deauthentication", "disassociation", "ap_sta_disconnected"},
        "auth_bruteforce": {"auth_failure", "pairwise_handshake_failure", "eapol_timeout", "psk_mismatch"},
        "reconnect_loop": {"association"},
        "mac_flood": {"authentication"},
        "radio_fault": {"radio_error"},
    }
    normal = frame[frame["scenario"] == sc.NORMAL]
    for scen, kinds in groups.items():
        base = normal[normal["ev"].isin(kinds)].groupby(["device", "window"]).size()
        top_normal = base.max() if len(base) else 0
        hits = frame[(frame["scenario"] == scen) & frame["ev"].isin(kinds)].groupby(["device", "window"]).size()
        assert hits.max() > top_normal, (scen, hits.max(), top_normal)
    # a MAC flood brings dozens of MACs never seen before on that device
    for ep in data.episodes[data.episodes["scenario"] == "mac_flood"].itertuples(index=False):
        dev = frame[frame["device"] == ep.device]
        seen = set(dev.loc[dev["timestamp"] < ep.start, "station_mac"].dropna())
        new = set(dev.loc[(dev["scenario"] == "mac_flood"), "station_mac"].dropna()) - seen
        assert len(new) >= 30
    # a reconnect loop is one station joining again and again
    for ep in data.episodes[data.episodes["scenario"] == "reconnect_loop"].itertuples(index=False):
        mine = frame[
            (frame["scenario"] == "reconnect_loop")
            & (frame["device"] == ep.device)
            & (frame["timestamp"] >= ep.start)
            & (frame["timestamp"] < ep.end)
        ]
        assert set(mine["station_mac"]) == {ep.entity}
        assert (mine["ev"] == "association").sum() >= 20


def test_benign_lookalikes_are_what_real_networks_do(frame: pd.DataFrame, data: sc.GeneratedData) -> None:
    ev = frame["event_type"].astype("str")
    for ep in data.episodes[~data.episodes["is_anomaly"]].itertuples(index=False):
        mine = frame[
            (frame["scenario"] == ep.scenario)
            & (frame["device"] == ep.device)
            & (frame["timestamp"] >= ep.start)
            & (frame["timestamp"] < ep.end)
        ]
        kinds = Counter(ev[mine.index])
        if ep.scenario == "reboot_wave":
            assert kinds["other_process"] + kinds["other_wifi"] >= 2  # boot lines
            joined = set(mine.loc[ev[mine.index] == "association", "station_mac"])
            dev = frame[(frame["device"] == ep.device) & (frame["timestamp"] < ep.start)]
            assert joined <= set(dev["station_mac"].dropna())  # only known stations come back
        elif ep.scenario == "mistyped_passphrase":
            assert kinds["pairwise_handshake_success"] >= 1
            failures = kinds["psk_mismatch"] + kinds["pairwise_handshake_failure"] + kinds["eapol_timeout"]
            assert 1 <= failures <= 9
        elif ep.scenario == "iot_gtk_deauth":
            assert kinds["group_key_failure"] == 1
            assert kinds["deauthentication"] >= 1 and kinds["association"] >= 1
        elif ep.scenario == "boot_dfs":
            assert 2 <= kinds["dfs"] <= 6 and len(mine) <= 8


# ---------------------------------------------------------------------------------------------- files
def test_write_export_refuses_to_overwrite_and_round_trips(tmp_path: Path) -> None:
    d = sc.generate(**SMALL)
    target = tmp_path / "export_generated_20250601_000000.json"
    paths = sc.write_export(d, target)
    assert paths["labels"].name == target.name + ".labels.csv"
    assert paths["episodes"].name == target.name + ".episodes.csv"
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert doc["data"] == d.records
    before = {k: p.read_bytes() for k, p in paths.items()}
    with pytest.raises(FileExistsError):
        sc.write_export(d, target)
    assert {k: p.read_bytes() for k, p in paths.items()} == before
    header = paths["labels"].read_text(encoding="utf-8").splitlines()[0]
    assert header == "id,is_anomaly,scenario"
    labels = sc.read_labels(target)
    pd.testing.assert_frame_equal(
        labels.sort_values("id").reset_index(drop=True),
        d.labels.sort_values("id").reset_index(drop=True),
        check_dtype=False,
    )
    assert labels["is_anomaly"].dtype == bool and labels["id"].dtype == np.int64
    episodes = sc.read_episodes(target)
    pd.testing.assert_frame_equal(episodes, d.episodes, check_dtype=False)
    assert sc.read_labels(tmp_path / "no_such_export.json") is None
    assert sc.read_episodes(tmp_path / "no_such_export.json") is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("id,is_anomaly\n1,0\nx,1\n", r"line 3: id must be an integer"),
        ("id,is_anomaly\n1,0\n2,maybe\n", r"line 3: is_anomaly must be 0/1"),
        ("id,is_anomaly\n1,0\n1,1\n", r"line 3: id 1 is labelled twice"),
        ("id,label\n1,0\n", r"missing column\(s\) \['is_anomaly'\]"),
        ("", r"file is empty"),
    ],
)
def test_read_labels_names_the_file_and_line_of_bad_content(tmp_path: Path, content: str, message: str) -> None:
    export = tmp_path / "export_x.json"
    (tmp_path / "export_x.json.labels.csv").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        sc.read_labels(export)
    assert "export_x.json.labels.csv" in str(err.value)


def test_read_labels_accepts_a_minimal_hand_written_file(tmp_path: Path) -> None:
    (tmp_path / "e.json.labels.csv").write_text("id,is_anomaly\n7,1\n8,false\n", encoding="utf-8")
    got = sc.read_labels(tmp_path / "e.json")
    assert got["id"].tolist() == [7, 8]
    assert got["is_anomaly"].tolist() == [True, False]
    assert got["scenario"].tolist() == ["anomaly", "normal"]


def test_read_episodes_rejects_bad_times(tmp_path: Path) -> None:
    (tmp_path / "e.json.episodes.csv").write_text(
        "scenario,is_anomaly,device,entity_kind,entity,start,end\n"
        "silence,1,3,device,*,2025-06-02T10:00:00,2025-06-02T12:00:00\n"
        "silence,1,3,device,*,yesterday,2025-06-02T12:00:00\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"e\.json\.episodes\.csv: line 3: start"):
        sc.read_episodes(tmp_path / "e.json")


# ---------------------------------------------------------------------------------------------- injection
def _validated(raw: pd.DataFrame, name: str) -> pd.DataFrame:
    result = validate_records(raw, name)
    assert result.quarantine.empty
    return result.records


@pytest.fixture(scope="module")
def real_records() -> pd.DataFrame:
    """The shipped real ASUS export (one device, hostapd only), validated."""
    return _validated(read_export(HOSTAPD_1824).records, HOSTAPD_1824.name)


@pytest.fixture(scope="module")
def generated_records() -> tuple[pd.DataFrame, sc.GeneratedData]:
    """A generated stream of four devices (ASUS with wlceventd, OpenWrt) without episodes of its own."""
    d = sc.generate(seed=21, days=5, n_devices=4, episodes_per_scenario=0, benign_per_scenario=0)
    return _validated(records_to_frame(d.records), "generated.json"), d


def _held_out(records: pd.DataFrame, fraction: float = 0.8) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The evaluation's held-out period: after the row quantile, to the last record."""
    return pd.Timestamp(records["timestamp"].quantile(fraction)).floor("min"), records["timestamp"].max()


def _check_injection(
    records: pd.DataFrame,
    inj: sc.Injection,
    start: pd.Timestamp,
    end: pd.Timestamp,
    scenarios: tuple[str, ...] = sc.ANOMALY_SCENARIOS,
) -> pd.DataFrame:
    """Everything every injection must satisfy; returns the injected records, validated and labelled."""
    assert list(inj.labels.columns) == list(sc.LABEL_COLUMNS)
    assert list(inj.episodes.columns) == list(sc.EPISODE_COLUMNS)
    assert inj.remove_ids.dtype == np.int64
    ids = [r["id"] for r in inj.records]
    assert len(set(ids)) == len(ids)
    assert not ids or min(ids) > records["id"].max()
    assert sorted(inj.labels["id"]) == sorted(ids)
    assert inj.labels["is_anomaly"].dtype == bool and inj.labels["is_anomaly"].all()
    assert set(inj.labels["scenario"]) <= set(scenarios) - {"silence"}
    for rec in inj.records:
        assert list(rec) == list(RECORD_KEYS)
    stamps = [r["timestamp"] for r in inj.records]
    assert stamps == sorted(stamps, reverse=True)  # newest first, like the service

    result = validate_records(records_to_frame(inj.records), "injected")
    assert result.quarantine.empty, result.quarantine.head()
    assert result.report.unknown_levels == 0 and result.report.unparsed_structured_data == 0
    added = result.records.merge(inj.labels, on="id", how="left", validate="one_to_one")
    assert len(added) == len(inj.records)
    assert set(added["device"]) <= set(inj.episodes["device"]) <= set(records["device"])

    ep = inj.episodes
    assert (ep["is_anomaly"]).all() and ep["scenario"].isin(scenarios).all()
    assert (ep["start"] >= start).all() and (ep["end"] <= end).all() and (ep["end"] > ep["start"]).all()
    assert ep["entity_kind"].isin(["device", "station"]).all()
    assert ((ep["entity_kind"] == "device") == (ep["entity"] == "*")).all()
    for _, g in ep.sort_values("start").groupby("device"):
        assert (g["start"].to_numpy()[1:] >= g["end"].to_numpy()[:-1]).all(), "episodes overlap on a device"

    # every injected record lies in an episode of its scenario on its device
    covered = np.zeros(len(added), dtype=bool)
    for e in ep.itertuples(index=False):
        covered |= (
            (added["device"] == e.device)
            & (added["scenario"] == e.scenario)
            & (added["timestamp"] >= e.start)
            & (added["timestamp"] < e.end)
        ).to_numpy()
    assert covered.all()
    # removed records: existing ones, of the episode's device, inside a silence (or the loop they replace)
    removed = records[records["id"].isin(inj.remove_ids)]
    assert len(removed) == len(inj.remove_ids)
    inside = np.zeros(len(removed), dtype=bool)
    for e in ep[ep["scenario"].isin(["silence", "reconnect_loop"])].itertuples(index=False):
        hit = (removed["device"] == e.device) & (removed["timestamp"] >= e.start) & (removed["timestamp"] < e.end)
        if e.scenario == "reconnect_loop":
            hit &= removed["station_mac"] == e.entity
        inside |= hit.to_numpy()
    assert inside.all()
    for e in ep[ep["scenario"] == "silence"].itertuples(index=False):
        dev = records[records["device"] == e.device]
        in_silence = (dev["timestamp"] >= e.start) & (dev["timestamp"] < e.end)
        assert in_silence.any() and set(dev.loc[in_silence, "id"]) <= set(inj.remove_ids)
        assert ((dev["timestamp"] >= e.start - pd.Timedelta(hours=2)) & (dev["timestamp"] < e.start)).any()
        assert pd.Timedelta(hours=1) <= e.end - e.start <= pd.Timedelta(hours=6)
        mine = added[(added["device"] == e.device) & (added["timestamp"] >= e.start) & (added["timestamp"] < e.end)]
        assert mine.empty, "an injected record falls in a silence of its device"
    return added


def _own_stations_and_interfaces(records: pd.DataFrame, added: pd.DataFrame, inj: sc.Injection) -> None:
    """Injected lines use the device's own interfaces, and the targeted stations were seen on it before."""
    for device, g in added.groupby("device"):
        own = set(records.loc[records["device"] == device, "interface"].dropna())
        radio = g["event_type"].astype("str") == "radio_error"  # kernel lines name the radio (wl0, phy1)
        assert set(g.loc[~radio, "interface"].dropna()) <= own, device
    for e in inj.episodes[inj.episodes["scenario"].isin(["deauth_flood", "reconnect_loop"])].itertuples(index=False):
        before = records[(records["device"] == e.device) & (records["timestamp"] < e.start)]
        victims = added[
            (added["device"] == e.device)
            & (added["scenario"] == e.scenario)
            & (added["timestamp"] >= e.start)
            & (added["timestamp"] < e.end)
        ]["station_mac"]
        assert len(victims) and set(victims) <= set(before["station_mac"].dropna()), e
        if e.entity_kind == "station":
            assert set(victims) == {e.entity}


def test_inject_into_the_real_export(real_records: pd.DataFrame) -> None:
    start, end = _held_out(real_records)
    inj = sc.inject_episodes(real_records, start=start, end=end, seed=7)
    added = _check_injection(real_records, inj, start, end)
    assert inj.episodes["scenario"].value_counts().to_dict() == {s: 2 for s in sc.ANOMALY_SCENARIOS}
    assert set(added["device"]) == {"3"}
    assert {r["device_id"] for r in inj.records} == {3}
    assert {r["device_ip"] for r in inj.records} == set(real_records["device_name"])
    _own_stations_and_interfaces(real_records, added, inj)
    # the real router logs its station events through hostapd only: no wlceventd lines appear
    assert set(added["process_name"]) <= {"hostapd", "kernel", "acsd"}
    assert not added["message"].str.contains("AP-STA-|wlceventd", regex=True).any()  # ASUS wording
    assert inj.labels["scenario"].nunique() == 5 and len(inj.remove_ids) > 0


def test_inject_into_a_generated_stream(generated_records: tuple[pd.DataFrame, sc.GeneratedData]) -> None:
    records, d = generated_records
    start, end = _held_out(records, 0.5)
    inj = sc.inject_episodes(records, start=start, end=end, seed=3, episodes_per_scenario=3)
    added = _check_injection(records, inj, start, end)
    assert inj.episodes["scenario"].value_counts().to_dict() == {s: 3 for s in sc.ANOMALY_SCENARIOS}
    assert inj.episodes["device"].nunique() >= 3  # spread over the devices
    _own_stations_and_interfaces(records, added, inj)
    vendor = dict(zip(d.devices["device"], d.devices["vendor"]))
    ifaces = {k: set(v.split(",")) for k, v in zip(d.devices["device"], d.devices["interfaces"])}
    for device, g in added.groupby("device"):
        radio = g["event_type"].astype("str") == "radio_error"
        assert set(g.loc[~radio, "interface"].dropna()) <= ifaces[device]
        wlc = g["process_name"] == "wlceventd"
        ctrl = g["message"].str.contains("AP-STA-", regex=False)
        if vendor[device] == "asus":
            assert not ctrl.any()
        else:
            assert not wlc.any()
    asus = added[added["device"].map(vendor) == "asus"]
    assert (asus["process_name"] == "wlceventd").any()  # an ASUS that reports through wlceventd keeps doing so


def test_injection_is_deterministic_by_seed(real_records: pd.DataFrame) -> None:
    start, end = _held_out(real_records)
    a = sc.inject_episodes(real_records, start=start, end=end, seed=5)
    b = sc.inject_episodes(real_records.sample(frac=1.0, random_state=1), start=start, end=end, seed=5)
    c = sc.inject_episodes(real_records, start=start, end=end, seed=6)
    assert json.dumps(a.records) == json.dumps(b.records)
    np.testing.assert_array_equal(a.remove_ids, b.remove_ids)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    pd.testing.assert_frame_equal(a.episodes, b.episodes)
    assert json.dumps(a.records) != json.dumps(c.records)
    assert not a.episodes["start"].equals(c.episodes["start"])


@pytest.mark.parametrize("device_id, device_ip", [(None, "  OpenWrt-Lab "), ("007", "ap-7"), ("router-a", "10.0.0.1")])
def test_injected_records_keep_any_device_key(
    real_records: pd.DataFrame, device_id: str | None, device_ip: str
) -> None:
    raw = read_export(HOSTAPD_1824).records
    raw["device_id"] = pd.Series([device_id] * len(raw), dtype="str")
    raw["device_ip"] = pd.Series([device_ip] * len(raw), dtype="str")
    records = _validated(raw, "renamed.json")
    key = device_ip.strip() if device_id is None else device_id
    assert set(records["device"]) == {key}
    start, end = _held_out(records)
    inj = sc.inject_episodes(records, start=start, end=end, seed=7, scenarios=("deauth_flood", "silence"))
    added = _check_injection(records, inj, start, end, ("deauth_flood", "silence"))
    assert len(added) and set(added["device"]) == {key} and set(inj.episodes["device"]) == {key}
    assert {r["device_ip"] for r in inj.records} == {device_ip.strip()}


def test_injection_fits_what_it_can_and_rejects_bad_arguments(real_records: pd.DataFrame) -> None:
    start, end = _held_out(real_records)
    short = sc.inject_episodes(real_records, start=start, end=start + pd.Timedelta(minutes=40), seed=1)
    _check_injection(real_records, short, start, start + pd.Timedelta(minutes=40))
    assert "silence" not in set(short.episodes["scenario"])  # a silence lasts at least an hour
    for empty in (
        sc.inject_episodes(real_records, start="2030-01-01", end="2030-01-02", seed=1),  # no records there
        sc.inject_episodes(real_records, start=start, end=start + pd.Timedelta(seconds=30), seed=1),
        sc.inject_episodes(real_records, start=start, end=end, seed=1, episodes_per_scenario=0),
        sc.inject_episodes(real_records.iloc[:0], start=start, end=end, seed=1),
        sc.inject_episodes(
            _validated(read_export(SYSTEM_35).records, SYSTEM_35.name),  # no WiFi lines
            start="2025-06-20",
            end="2025-07-02",
            seed=1,
        ),
    ):
        assert empty.records == [] and len(empty.remove_ids) == 0
        assert empty.labels.empty and empty.episodes.empty
        assert list(empty.episodes.columns) == list(sc.EPISODE_COLUMNS)
    with pytest.raises(ValueError, match="end"):
        sc.inject_episodes(real_records, start=end, end=start, seed=1)
    with pytest.raises(ValueError, match="end"):
        sc.inject_episodes(real_records, start=start, end=start, seed=1)
    with pytest.raises(ValueError, match="episodes_per_scenario"):
        sc.inject_episodes(real_records, start=start, end=end, seed=1, episodes_per_scenario=-1)
    with pytest.raises(ValueError, match="unknown scenario"):
        sc.inject_episodes(real_records, start=start, end=end, seed=1, scenarios=("wormhole",))
    with pytest.raises(ValueError, match="unknown scenario"):
        sc.inject_episodes(real_records, start=start, end=end, seed=1, scenarios=("reboot_wave",))
    with pytest.raises(ValueError, match="seed"):
        sc.inject_episodes(real_records, start=start, end=end, seed=-1)
    with pytest.raises(ValueError, match="naive"):
        sc.inject_episodes(real_records, start=start.tz_localize("UTC"), end=end.tz_localize("UTC"), seed=1)
    with pytest.raises(ValueError, match="missing column"):
        sc.inject_episodes(real_records.drop(columns=["station_mac"]), start=start, end=end, seed=1)


def test_injection_into_a_million_records(generated_records: tuple[pd.DataFrame, sc.GeneratedData]) -> None:
    """Injection works at fleet size: every scenario placed, spread over routers, fresh ids (vectorised; its
    speed is not asserted here, as a timed test fails on a busy machine rather than on slow code)."""
    records, _ = generated_records
    copies = -(-1_000_000 // len(records))
    step = int(records["id"].max()) + 1
    big = pd.concat(
        [records.assign(device=records["device"] + f"-{k}", id=records["id"] + k * step) for k in range(copies)],
        ignore_index=True,
    )
    assert len(big) >= 1_000_000
    start, end = _held_out(big)
    inj = sc.inject_episodes(big, start=start, end=end, seed=2)
    assert inj.episodes["scenario"].value_counts().to_dict() == {s: 2 for s in sc.ANOMALY_SCENARIOS}
    assert inj.episodes["device"].nunique() >= 6
    assert min(r["id"] for r in inj.records) > big["id"].max()
