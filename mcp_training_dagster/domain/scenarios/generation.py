"""Assembly of a generated dataset and writing it as an export with its side files."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mcp_training_dagster.domain.scenarios.config import (
    _DAY,
    _HOUR,
    _LEVELS,
    _MONTHS,
    _SCEN,
    ANOMALY_SCENARIOS,
    EPISODE_COLUMNS,
    LABEL_COLUMNS,
    NORMAL,
    SCENARIO_NAMES,
    GeneratedData,
    ScenarioConfig,
)
from mcp_training_dagster.domain.scenarios.episodes import _Injector, _schedule
from mcp_training_dagster.domain.scenarios.labels import _side_path
from mcp_training_dagster.domain.scenarios.templates import TEMPLATES
from mcp_training_dagster.domain.scenarios.world import _Clock, _Device, _Log, _make_device, _normal_traffic


# --------------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------------
def generate(config: ScenarioConfig | None = None, **overrides: Any) -> GeneratedData:
    """Generate labelled export records for ``config`` (or ``ScenarioConfig(**overrides)``)."""
    if config is None:
        cfg = ScenarioConfig(**overrides)
    elif overrides:
        cfg = ScenarioConfig(**{**config.model_dump(), **overrides})
    else:
        cfg = config
    T = int(round(cfg.days * _DAY))
    start = cfg.start
    clock = _Clock(T, start.hour * _HOUR + start.minute * 60 + start.second, start.weekday())
    setup = np.random.default_rng([cfg.seed, 0])
    id_pool = max(1000, 10 * cfg.n_devices)
    ids = setup.choice(np.arange(1, id_pool), size=cfg.n_devices, replace=False)
    vendor_off = int(setup.integers(2))
    used: set[str] = set()
    names: set[str] = set()
    devices = [
        _make_device(i, cfg.seed, ("asus", "openwrt")[(i + vendor_off) % 2], cfg, used, names, ids)
        for i in range(cfg.n_devices)
    ]

    episodes = _schedule(cfg, clock)
    for ep in episodes:  # reboots restart the group-rekey timer: known before any rekey is written
        if ep.scenario == "reboot_wave":
            up = ep.start + ep.params["gap"]
            devices[ep.device].reboots.append(
                (up, up + int(np.random.default_rng([cfg.seed, 5, up]).integers(600, _HOUR)))
            )
    for dev in devices:
        dev.reboots.sort()

    log = _Log()
    for dev in devices:
        _normal_traffic(dev, clock, log, cfg.seed)
    injector = _Injector(log, clock, used, cfg.seed)
    for k, ep in enumerate(episodes):
        injector.run(ep, devices[ep.device], k)

    t = np.asarray(log.t, np.int64)
    dev_idx = np.asarray(log.dev, np.int64)
    scen = np.asarray(log.scen, np.int64)
    mac = np.asarray(log.mac, dtype=object)
    keep = (t >= 0) & (t < T)
    normal = scen == _SCEN[NORMAL]
    for d, m, a, b, everything in injector.removals:
        hit = (dev_idx == d) & (t >= a) & (t < b)
        if not everything:
            hit &= normal
        if m:
            hit &= mac == m
        keep &= ~hit
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((rows, t[rows]))]  # by time, then by writing order (line groups stay in order)
    ids_out = cfg.first_id + np.arange(len(rows), dtype=np.int64)

    records = _build_records(log, rows, ids_out, t, devices, start)
    scen_names = np.asarray(SCENARIO_NAMES, dtype=object)[scen[rows]]
    anomalous = np.isin(scen[rows], [_SCEN[s] for s in ANOMALY_SCENARIOS])
    labels = pd.DataFrame({"id": ids_out, "is_anomaly": anomalous, "scenario": pd.Series(scen_names, dtype="str")})
    intended = pd.DataFrame(
        {
            "id": ids_out,
            "event_type": pd.Series([TEMPLATES[log.key[i]].event_type for i in rows], dtype="str"),
            "station_mac": pd.Series([log.mac[i] or None for i in rows], dtype="str"),
        }
    )
    base = pd.Timestamp(start)
    ep_df = pd.DataFrame(
        {
            "scenario": pd.Series([e.scenario for e in episodes], dtype="str"),
            "is_anomaly": np.array([e.scenario in ANOMALY_SCENARIOS for e in episodes], dtype=bool),
            "device": pd.Series([str(devices[e.device].device_id) for e in episodes], dtype="str"),
            "entity_kind": pd.Series([e.entity_kind for e in episodes], dtype="str"),
            "entity": pd.Series([e.entity for e in episodes], dtype="str"),
            "start": pd.Series([base + pd.Timedelta(seconds=e.start) for e in episodes], dtype="datetime64[us]"),
            "end": pd.Series(
                [base + pd.Timedelta(seconds=max(e.end, e.start + 1)) for e in episodes], dtype="datetime64[us]"
            ),
        },
        columns=list(EPISODE_COLUMNS),
    )
    dev_df = pd.DataFrame(
        {
            "device": pd.Series([str(d.device_id) for d in devices], dtype="str"),
            "device_id": np.array([d.device_id for d in devices], dtype=np.int64),
            "hostname": pd.Series([d.hostname for d in devices], dtype="str"),
            "vendor": pd.Series([d.vendor for d in devices], dtype="str"),
            "interfaces": pd.Series([",".join(d.ifaces) for d in devices], dtype="str"),
            "n_stations": np.array([len(d.stations) for d in devices], dtype=np.int64),
        }
    )
    return GeneratedData(
        records=records, labels=labels, episodes=ep_df, config=cfg, devices=dev_df, intended_events=intended
    )


def _build_records(
    log: _Log, rows: np.ndarray, ids: np.ndarray, t: np.ndarray, devices: list[_Device], start: datetime
) -> list[dict]:
    """Export records, newest first (the service orders by timestamp descending)."""
    base = np.datetime64(start.replace(microsecond=0), "s")
    stamps = np.datetime_as_string(base + t[rows].astype("timedelta64[s]"), unit="s").tolist()
    headers: dict[str, str] = {}
    sd_cache: dict[tuple[int, int, int], str] = {}
    out: list[dict] = []
    for k in range(len(rows) - 1, -1, -1):
        i = int(rows[k])
        tpl = TEMPLATES[log.key[i]]
        dev = devices[log.dev[i]]
        ts = stamps[k]
        head = headers.get(ts)
        if head is None:
            head = headers[ts] = f"{_MONTHS[int(ts[5:7]) - 1]} {int(ts[8:10]):>2} {ts[11:19]}"
        pid = log.pid[i]
        pri = tpl.facility * 8 + tpl.severity
        sd_key = (tpl.facility, tpl.severity, pid)
        sd = sd_cache.get(sd_key)
        if sd is None:
            obj = {"pid": pid} if pid else {}
            obj.update({"priority": pri, "facility": tpl.facility, "severity_code": tpl.severity})
            sd = sd_cache[sd_key] = json.dumps(obj)
        tag = f"{tpl.process}[{pid}]" if pid else tpl.process
        msg = log.msg[i]
        out.append(
            {
                "id": int(ids[k]),
                "device_id": dev.device_id,
                "device_ip": dev.hostname,
                "timestamp": ts,
                "log_level": _LEVELS[tpl.severity],
                "process_name": tpl.process,
                "message": msg,
                "raw_message": f"<{pri}>{head} {dev.hostname} {tag}: {msg}\n",
                "structured_data": sd,
                "pushed_to_ai": False,
                "pushed_at": None,
                "push_attempts": 0,
                "last_push_error": None,
            }
        )
    return out


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------
def export_document(data: GeneratedData, created_at: datetime | None = None) -> dict:
    """The export object as the service writes it. ``created_at`` defaults to shortly after the last
    record (deterministic, unlike the wall clock)."""
    if created_at is None:
        last = max((r["timestamp"] for r in data.records), default=None)
        if last is None:
            last_dt = data.config.start + timedelta(days=data.config.days)
        else:
            last_dt = datetime.fromisoformat(last)
        created_at = last_dt + timedelta(seconds=97, microseconds=611774)
    return {
        "export_metadata": {
            "created_at": created_at.isoformat(timespec="microseconds"),
            "total_records": len(data.records),
            "format": "json",
        },
        "data": data.records,
    }


def write_export(data: GeneratedData, path: Path) -> dict[str, Path]:
    """Write the export JSON (``indent=2`` like the service), ``<path>.labels.csv`` and
    ``<path>.episodes.csv``. Refuses to overwrite any of them (a landing folder must never see a file
    change under the same name)."""
    path = Path(path)
    paths = {"export": path, "labels": _side_path(path, ".labels.csv"), "episodes": _side_path(path, ".episodes.csv")}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise FileExistsError(f"refusing to overwrite {existing}")
    labels = data.labels.loc[:, list(LABEL_COLUMNS)].copy()
    labels["is_anomaly"] = labels["is_anomaly"].astype(bool).astype(int)
    eps = data.episodes.loc[:, list(EPISODE_COLUMNS)].copy()
    eps["is_anomaly"] = eps["is_anomaly"].astype(bool).astype(int)
    for col in ("start", "end"):
        eps[col] = pd.to_datetime(eps[col]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    # side files first, the export last: a watcher picking up the export finds its labels beside it
    with open(paths["labels"], "x", encoding="utf-8", newline="") as fh:
        labels.to_csv(fh, index=False)
    with open(paths["episodes"], "x", encoding="utf-8", newline="") as fh:
        eps.to_csv(fh, index=False)
    with open(paths["export"], "x", encoding="utf-8") as fh:
        json.dump(export_document(data), fh, indent=2, ensure_ascii=False)
    return paths
