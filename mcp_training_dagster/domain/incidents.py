"""Incidents: flagged windows of one router merged into what a network engineer investigates.

Flagged windows of one device - its device window, its stations' and its interfaces' - that overlap or
follow each other (the next one starts at most one window after the previous one ends) form one
incident: start, end, severity (the highest calibrated score), the entities involved, the event
families and the top reasons in words ("14 deauthentications of 9 stations in 5 min; usual: 0-1").

"usual" is the device's own range per window (5th to 95th percentile, empty windows counted) over
the 24 h before the incident: a busy router's normal churn is not an alarm.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mcp_training_dagster.serving.features import (
    DEAUTH_EVENTS,
    FAILURE_EVENTS,
    JOIN_EVENTS,
    RADIO_CONTROL_EVENTS,
    RADIO_FAULT_EVENTS,
    WindowSpec,
)
from mcp_training_dagster.serving.scoring import score_table, windows_with_history

INCIDENT_COLUMNS: tuple[str, ...] = (
    "incident_id",
    "device_id",
    "start",
    "end",
    "severity",
    "n_windows",
    "entities",
    "event_families",
    "summary",
)
# family -> (event types, how a count of them reads)
FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "disconnections": (DEAUTH_EVENTS, "deauthentications/disconnections"),
    "failures": (FAILURE_EVENTS, "authentication/handshake failures"),
    "joins": (JOIN_EVENTS, "(re)associations"),
    "radio_faults": (RADIO_FAULT_EVENTS, "radio/driver errors or lost links"),
    "radio_control": (RADIO_CONTROL_EVENTS, "DFS/channel changes"),
}
HISTORY = pd.Timedelta(hours=24)


def empty_incidents() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in INCIDENT_COLUMNS})


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    h, m = divmod(minutes, 60)
    return f"{h} h {m:02d} min" if m else f"{h} h"


def _merge(flagged: pd.DataFrame, length: pd.Timedelta) -> pd.DataFrame:
    """Incident number per flagged window (device by device, in time order)."""
    f = flagged.sort_values(["device_id", "ws"], kind="stable").reset_index(drop=True)
    end = f["ws"] + length
    prev_end = end.groupby(f["device_id"]).cummax().groupby(f["device_id"]).shift()
    new = f["device_id"].ne(f["device_id"].shift()) | (f["ws"] > prev_end)
    f["incident"] = new.cumsum() - 1
    return f


def _reasons(
    dev_records: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    spec: WindowSpec,
    silence_s: float,
    usual_gap_s: float,
) -> tuple[list[str], list[str]]:
    """Phrases for the incident's families (strongest first) and the families that stood out."""
    L = pd.Timedelta(minutes=spec.length_minutes)
    ts = dev_records["timestamp"]
    inside = dev_records[(ts >= start) & (ts < end)]
    before = dev_records[(ts >= start - HISTORY) & (ts < start)]
    n_hist = int(HISTORY / L)
    phrases: list[tuple[float, str, str]] = []
    etype = inside["event_type"].astype("str")
    btype = before["event_type"].astype("str")
    for fam, (events, words) in FAMILIES.items():
        sel = inside[etype.isin(events).to_numpy()]
        if sel.empty:
            continue
        per_win = sel.groupby(sel["timestamp"].dt.floor(L)).agg(n=("event_type", "size"), st=("station_mac", "nunique"))
        peak = per_win.sort_values("n", ascending=False).iloc[0]
        hist = before[btype.isin(events).to_numpy()]
        counts = hist.groupby(hist["timestamp"].dt.floor(L)).size().to_numpy()
        counts = np.r_[counts, np.zeros(max(n_hist - len(counts), 0))]
        lo, hi = (int(v) for v in np.floor(np.quantile(counts, [0.05, 0.95]) + 0.5))
        stations = f" of {int(peak['st'])} station{'s' if int(peak['st']) != 1 else ''}" if peak["st"] else ""
        text = f"{int(peak['n'])} {words}{stations} in {spec.length_minutes} min; usual: {lo}-{hi}"
        phrases.append((float(peak["n"]) / (1.0 + hi), text, fam))
    macs = inside["station_mac"].dropna().astype("str")
    if len(macs):
        seen = set(before["station_mac"].dropna().astype("str"))
        new = sorted(set(macs) - seen)
        if len(new) >= 3:
            rnd = sum(1 for m in new if len(m) > 1 and int(m[1], 16) & 0x2)
            phrases.append(
                (
                    len(new) / 3.0,
                    f"{len(new)} station MACs not seen in the 24 h before ({rnd} randomised)",
                    "new_stations",
                )
            )
    if silence_s > 0 and usual_gap_s > 0 and silence_s > usual_gap_s:
        phrases.append(
            (
                silence_s / usual_gap_s,
                f"silent for {_duration(silence_s)}; usual longest gap {_duration(usual_gap_s)}",
                "silence",
            )
        )
    phrases.sort(key=lambda p: -p[0])
    stood_out = [fam for score, _, fam in phrases if score > 1.0] or [fam for _, _, fam in phrases[:1]]
    return [text for _, text, _ in phrases], stood_out


def build_incidents(
    table: pd.DataFrame,
    records: pd.DataFrame | None,
    spec: WindowSpec | None = None,
    *,
    windows: pd.DataFrame | None = None,
    top: int = 3,
    max_entities: int = 12,
) -> pd.DataFrame:
    """Incidents from a score table (``scoring.score_table``: device_id, entity, entity_kind, window_start,
    score, is_anomaly, reasons) and the records it was scored from (for the reasons in words); ``windows``
    (the feature windows) adds the silence facts. Most severe first."""
    spec = spec or WindowSpec()
    L = pd.Timedelta(minutes=spec.length_minutes)
    flagged = table[table["is_anomaly"].astype(bool)]
    if flagged.empty:
        return empty_incidents()
    flagged = flagged.assign(device_id=flagged["device_id"].astype("str"), ws=pd.to_datetime(flagged["window_start"]))
    f = _merge(flagged, L)
    silence: dict[tuple[str, pd.Timestamp], tuple[float, float]] = {}
    if windows is not None and len(windows):
        dv = windows[(windows["entity_kind"].astype("str") == "device") & (windows["gap_vs_usual"] > 0)]
        for dev, ws, sil, ratio in zip(
            dv["device"].astype("str"), pd.to_datetime(dv["window_start"]), dv["silence_before_s"], dv["gap_vs_usual"]
        ):
            silence[(dev, ws)] = (float(sil), float(sil) / float(ratio))
    by_device: dict[str, pd.DataFrame] = {}
    if records is not None and len(records):
        rec = records.assign(device=records["device"].astype("str")).sort_values("timestamp", kind="stable")
        by_device = {str(k): v for k, v in rec.groupby("device", sort=False)}
    rows: list[dict[str, Any]] = []
    for _, grp in f.groupby("incident", sort=False):
        dev = str(grp["device_id"].iloc[0])
        start, end = grp["ws"].min(), grp["ws"].max() + L
        ents = [e for e in pd.unique(grp.sort_values("score", ascending=False)["entity"].astype("str")) if e != "*"]
        entities = ", ".join(ents[:max_entities]) + (
            f" (+{len(ents) - max_entities} more)" if len(ents) > max_entities else ""
        )
        sil, usual = 0.0, 0.0
        for ws in grp.loc[grp["entity_kind"] == "device", "ws"]:
            s = silence.get((dev, ws))
            if s and s[0] > sil:
                sil, usual = s
        phrases, families = _reasons(by_device[dev], start, end, spec, sil, usual) if dev in by_device else ([], [])
        if not phrases:
            phrases = [r for r in grp.sort_values("score", ascending=False)["reasons"].astype("str") if r][:1]
        rows.append(
            {
                "device_id": dev,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "severity": round(float(grp["score"].max()), 4),
                "n_windows": len(grp),
                "entities": entities,
                "event_families": ", ".join(families),
                "summary": "; ".join(phrases[:top]) if phrases else "",
            }
        )
    out = pd.DataFrame(rows)
    out = out.sort_values(["severity", "start"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out.insert(
        0,
        "incident_id",
        [f"{r.device_id}-{r.start.replace(':', '').replace('-', '')[:13]}" for r in out.itertuples(index=False)],
    )
    return out.loc[:, list(INCIDENT_COLUMNS)]


def incidents_to_json(incidents: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in incidents.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return out


def export_incidents_with_model(
    records: pd.DataFrame, history: pd.DataFrame | None, pipeline: Any, inference_config: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score one export's validated records with a packaged model (its ``inference_config``), using the
    earlier records of ``history`` for gaps and history features; returns (score table, incidents)."""
    ic = inference_config
    spec = WindowSpec.from_dict(ic["window_spec"])
    windows = windows_with_history(records, history, spec)
    table = score_table(windows, pipeline, float(ic["threshold"]), ic["feature_names"])
    return table, build_incidents(table, records, spec, windows=windows)
