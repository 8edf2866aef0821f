"""Evaluation: window-level metrics against labels we did not produce with the model.

Three sources, always reported under their own names and never mixed:
  labelled   labels that came with the data (inside an export, a ``<export>.labels.csv`` side file,
             or the scenario generator), turned into window labels;
  injected   known attack patterns injected into held-out, time-split windows;
  diagnostics unsupervised facts (score distribution, stability across seeds and time splits),
             which are NOT accuracy and are never called that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mcp_training_dagster.domain.agent_variant import agent_vectors
from mcp_training_dagster.domain.stored_windows import windows_in_chunks
from mcp_training_dagster.serving.exports import records_to_frame
from mcp_training_dagster.serving.features import DEVICE_ENTITY, KEY_COLUMNS, WindowSpec
from mcp_training_dagster.domain.results import Evaluation, EvaluationData, binary_metrics
from mcp_training_dagster.domain.scenarios import inject_episodes
from mcp_training_dagster.domain.threads import in_order
from mcp_training_dagster.domain.scenarios.injection import INJECT_COLUMNS, INJECT_LOOKBACK
from mcp_training_dagster.serving.feature_catalog import RECORD_COLUMNS
from mcp_training_dagster.serving.validation import validate_records


def window_labels(
    windows: pd.DataFrame,
    records: pd.DataFrame,
    labels: pd.DataFrame,
    window_minutes: int,
    episodes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Window labels from record labels (and silence episodes, which have no records).

    A window is anomalous when it holds an anomalous record of its entity (its device for ``*``,
    its station MAC, its interface), or, for a device window, overlaps an anomalous episode without
    records (silence). Windows holding records of a benign lookalike are marked with that scenario
    (still ``is_anomaly=False``) so its false positives can be reported. Returns ``windows``'
    keys plus ``is_anomaly`` and ``scenario`` ("normal" when neither)."""
    lab = labels.loc[:, [c for c in ("id", "is_anomaly", "scenario") if c in labels.columns]].copy()
    if "scenario" not in lab.columns:
        lab["scenario"] = np.where(lab["is_anomaly"].astype(bool), "labelled", "normal")
    rec = records.loc[:, ["id", "device", "timestamp", "station_mac", "interface"]].merge(lab, on="id", how="inner")
    rec = rec[rec["scenario"] != "normal"]
    start = rec["timestamp"].dt.floor(f"{window_minutes}min")
    parts = [
        pd.DataFrame(
            {
                "device": rec["device"],
                "entity_kind": "device",
                "entity": DEVICE_ENTITY,
                "window_start": start,
                "is_anomaly": rec["is_anomaly"].astype(bool),
                "scenario": rec["scenario"],
            }
        ),
    ]
    for kind, column in (("station", "station_mac"), ("interface", "interface")):
        has = rec[column].notna()
        parts.append(
            pd.DataFrame(
                {
                    "device": rec.loc[has, "device"],
                    "entity_kind": kind,
                    "entity": rec.loc[has, column],
                    "window_start": start[has],
                    "is_anomaly": rec.loc[has, "is_anomaly"].astype(bool),
                    "scenario": rec.loc[has, "scenario"],
                }
            )
        )
    if episodes is not None and len(episodes):
        quiet = episodes[episodes["is_anomaly"].astype(bool) & (episodes["entity_kind"] == "device")]
        quiet = quiet[~quiet["scenario"].isin(rec["scenario"].unique())]  # episodes with records are labelled above
        dev = windows[windows["entity_kind"] == "device"]
        end = dev["window_start"] + pd.Timedelta(minutes=window_minutes)
        for ep in quiet.itertuples(index=False):  # a handful of episodes, each a vectorised mask
            # A silence is anomalous once it is longer than the device's own longest gap of the day
            # before; until then it is indistinguishable from a normal pause, by any detector.
            usual = usual_gap(records, str(ep.device), pd.Timestamp(ep.start))
            # the device stays silent until its next record, which may come after the episode's end
            after = records.loc[
                (records["device"].astype("str") == str(ep.device)) & (records["timestamp"] >= ep.start), "timestamp"
            ]
            quiet_until = max(pd.Timestamp(ep.end), after.min()) if len(after) else pd.Timestamp(ep.end)
            inside = (dev["device"] == str(ep.device)) & (dev["window_start"] < quiet_until) & (end > ep.start)
            late = inside & (end > pd.Timestamp(ep.start) + usual)
            parts.append(dev.loc[late, list(KEY_COLUMNS)].assign(is_anomaly=True, scenario=ep.scenario))
            parts.append(
                dev.loc[inside & ~late, list(KEY_COLUMNS)].assign(
                    is_anomaly=False, scenario=f"{ep.scenario}_within_usual_gap"
                )
            )
    marks = pd.concat(parts, ignore_index=True)
    marks["device"] = marks["device"].astype("str")
    marks["entity"] = marks["entity"].astype("str")
    marks["window_start"] = marks["window_start"].astype("datetime64[us]")
    # an anomalous mark wins over a benign one; among anomalies the first scenario named wins
    marks = marks.sort_values("is_anomaly", ascending=False, kind="stable").drop_duplicates(list(KEY_COLUMNS))
    keys = windows.loc[:, list(KEY_COLUMNS)].copy()
    keys["device"] = keys["device"].astype("str")
    keys["entity"] = keys["entity"].astype("str")
    out = keys.merge(marks, on=list(KEY_COLUMNS), how="left")
    out["is_anomaly"] = out["is_anomaly"].fillna(False).astype(bool)
    out["scenario"] = out["scenario"].fillna("normal").astype("str")
    return out


def usual_gap(
    records: pd.DataFrame, device: str, before: pd.Timestamp, history: pd.Timedelta = pd.Timedelta(hours=24)
) -> pd.Timedelta:
    """The device's longest gap between consecutive records in the ``history`` before ``before``."""
    mine = records.loc[
        (records["device"].astype("str") == device)
        & (records["timestamp"] < before)
        & (records["timestamp"] >= before - history),
        "timestamp",
    ]
    if len(mine) < 2:
        return pd.Timedelta(0)
    t = np.sort(mine.to_numpy(dtype="datetime64[ns]"))
    return pd.Timedelta(int(np.diff(t).max()))


def evaluate_scores(labelled: pd.DataFrame, scores: np.ndarray, threshold: float, data: EvaluationData) -> Evaluation:
    """Metrics overall and per entity kind, recall per anomaly scenario and flag rate per benign
    lookalike (device-level windows for scenarios: every scenario shows at the device), of ``data``. Kinds and
    scenarios are compared as codes (:func:`_codes`): on millions of windows, text comparisons were most of it."""
    y = labelled["is_anomaly"].to_numpy(dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    kind, kinds = _codes(labelled["entity_kind"])
    scen, scens = _codes(labelled["scenario"])
    dev = kind == kinds.get("device", -1)
    flagged = s > threshold

    def named(mask: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """(name, its windows) of each scenario among ``mask``'s, by name."""
        present = set(np.unique(scen[mask]).tolist())
        return [(name, scen == code) for name, code in sorted(scens.items()) if code in present]

    return Evaluation(
        data=data,
        overall=binary_metrics(y, s, threshold),
        by_kind={k: binary_metrics(y[kind == code], s[kind == code], threshold) for k, code in sorted(kinds.items())},
        recall_by_scenario={name: float(flagged[dev & at & y].mean()) for name, at in named(dev & y)},
        windows_by_scenario={name: int((dev & at).sum()) for name, at in named(dev)},
        benign_flag_rate={
            name: float(flagged[dev & at & ~y].mean()) for name, at in named(dev & ~y) if name != "normal"
        },
        normal_flag_rate=float(flagged[dev & (scen == scens["normal"])].mean())
        if "normal" in scens and (dev & (scen == scens["normal"])).any()
        else None,
    )


def _codes(column: pd.Series) -> tuple[np.ndarray, dict[str, int]]:
    """Each row's value as a code, and the code of each value as text (``astype("str")``'s: a missing one "nan")."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    return codes, {str(u): i for i, u in enumerate(uniques)}


class PackedFrame:
    """A table kept as zstd-compressed Arrow IPC (a tenth of its size in memory): pickled as such, and decoded
    whole (:meth:`frame`) or a few columns at a time (:meth:`columns`), each column as the table had it. For a
    frame with a default index (the only kind packed, :meth:`of`)."""

    def __init__(self, data: bytes, rows: int) -> None:
        self.data, self.rows = data, rows

    @classmethod
    def of(cls, frame: pd.DataFrame) -> PackedFrame | None:
        """``frame`` packed, or None when it has another index than 0..n-1 (kept as it is)."""
        import pyarrow as pa

        if not frame.index.equals(pd.RangeIndex(len(frame))):
            return None
        table = pa.Table.from_pandas(frame, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
            writer.write_table(table, max_chunksize=PACK_BATCH_ROWS)
        return cls(sink.getvalue().to_pybytes(), len(frame))

    def columns(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """The named columns it has (None: all), decoding only those."""
        import pyarrow as pa

        schema = pa.ipc.open_file(pa.BufferReader(self.data)).schema
        fields = None if names is None else [schema.get_field_index(n) for n in names if n in schema.names]
        options = pa.ipc.IpcReadOptions(included_fields=fields) if fields is not None else None
        table = pa.ipc.open_file(pa.BufferReader(self.data), options=options).read_all()
        return table.to_pandas()

    def frame(self) -> pd.DataFrame:
        return self.columns(None)


PACK_BATCH_ROWS = 256_000  # rows per Arrow record batch of a packed table (its compression unit)


@dataclass
class EvaluationSet:
    """Held-out windows with labels we know, and where they came from (travels with the figures).

    Stored (pickled) with its windows packed (:class:`PackedFrame`) and their and the labels' fingerprints: a
    reader decodes the windows whole on first use of ``windows``, or only the columns it scores
    (:meth:`window_columns`), and fingerprints the set without hashing millions of rows (:meth:`fingerprints`)."""

    source: str  # "labelled" | "injected" | "generated"
    description: str
    windows: pd.DataFrame  # feature windows
    labels: pd.DataFrame  # window_labels(...) aligned row by row with ``windows``
    split_time: str | None = None  # models evaluated here were fitted on data before this time
    agent_vectors: pd.DataFrame | None = None  # the agent's 5-value vectors of the same period
    agent_labels: np.ndarray | None = None
    held_out_router_days: float | None = None  # injected sets: what the injected prevalence was scaled to

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fingerprints"] = self.fingerprints()
        windows = state.pop("windows", None)
        packed = state.get("_packed") if windows is None else PackedFrame.of(windows)
        if packed is None:
            state["windows"] = windows
        else:
            state["_packed"] = packed
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)  # a set pickled before packing: its windows as a frame, as before

    def __getattr__(self, name: str) -> Any:
        """``windows`` of a set read back packed: decoded whole on first use, then kept."""
        packed = self.__dict__.get("_packed")
        if name != "windows" or packed is None:
            raise AttributeError(name)
        self.__dict__["windows"] = packed.frame()
        return self.__dict__["windows"]

    @property
    def n_windows(self) -> int:
        return len(self.labels)

    def window_columns(self, names: Sequence[str] | None) -> pd.DataFrame:
        """The windows with only the ``names`` columns they have, decoding only those when packed and not yet
        decoded (a scoring of the set reads about half its columns); otherwise the windows themselves."""
        packed = self.__dict__.get("_packed")
        if names is None or "windows" in self.__dict__ or packed is None:
            return self.windows
        return packed.columns(names)

    def fingerprints(self) -> tuple[str, str]:
        """``report.frame_fingerprint`` of the windows and of the labels (kept from when it was stored)."""
        from mcp_training_dagster.domain.report import frame_fingerprint

        kept = self.__dict__.get("_fingerprints")
        if kept is not None:
            return kept
        return frame_fingerprint(self.windows), frame_fingerprint(self.labels)

    @property
    def size(self) -> dict[str, int]:
        y = self.labels["is_anomaly"].to_numpy(dtype=bool)
        return {"windows": int(len(y)), "anomalous_windows": int(y.sum())}

    def about(self) -> EvaluationData:
        """What figures computed on this set are of (travels with them)."""
        return EvaluationData(self.source, self.description, self.split_time, **self.size)


def evaluate_on(scores: np.ndarray, threshold: float, data: EvaluationSet) -> Evaluation:
    """Figures with their data attached: nothing here is meaningful without source and size."""
    return evaluate_scores(data.labels, scores, threshold, data.about())


def time_split(times: pd.Series, fraction: float) -> pd.Timestamp:
    """The time before which ``fraction`` of the rows lie: a split in time (everything before it
    trains, everything after evaluates), placed by rows so that gappy exports (a day in May, a week
    in June) still leave data on both sides. A random split would leak: rows of one period are correlated."""
    return pd.Timestamp(times.quantile(fraction)).floor("min")


def score_diagnostics(
    train_scores: np.ndarray, threshold: float, later_scores: np.ndarray | None, seed_scores: list[np.ndarray]
) -> dict[str, Any]:
    """Unsupervised diagnostics: NOT accuracy. Score quantiles, flag rate on later (unseen) windows of
    the same stream, and agreement between fits with different seeds (Spearman rank correlation and
    overlap of the flagged sets)."""
    q = (
        {f"p{p}": float(np.quantile(train_scores, p / 100)) for p in (1, 5, 25, 50, 75, 95, 99)}
        if len(train_scores)
        else {}
    )
    out: dict[str, Any] = {
        "score_quantiles": q,
        "training_flag_rate": float(np.mean(train_scores > threshold)) if len(train_scores) else None,
    }
    if later_scores is not None and len(later_scores):
        out["later_windows_flag_rate"] = float(np.mean(later_scores > threshold))
    if len(seed_scores) > 1:
        ref = seed_scores[0]
        k = max(1, int(round(len(ref) * 0.02)))
        first = set(np.argsort(-ref)[:k])

        def agreement(other: np.ndarray) -> tuple[float, float]:
            """Spearman's rho with the model's scores, and the Jaccard overlap of the two top 2%."""
            top = set(np.argsort(-other)[:k])
            rho = float(pd.Series(ref).corr(pd.Series(other), method="spearman"))
            return rho, len(first & top) / len(first | top)

        # the refits two at a time: their sorts and ranks release the GIL (a million windows each above the cap)
        rho, jacc = (list(v) for v in zip(*in_order(agreement, seed_scores[1:], 2)))
        out["seed_stability"] = {"spearman_min": min(rho), "top2pct_jaccard_min": min(jacc), "seeds": len(seed_scores)}
    out["note"] = "unsupervised diagnostics, not accuracy"
    return out


def _windows_after(records: pd.DataFrame, spec: WindowSpec, split: pd.Timestamp) -> pd.DataFrame:
    """Windows starting at or after ``split``, built with the history before it (trailing features
    need the 24 h before, exactly as at serving time)."""
    history = pd.Timedelta(hours=spec.history_hours)
    recent = _since(records, split - history)
    # build_windows', a chunk of routers at a time on a long horizon, each chunk's history windows dropped as it comes
    return windows_in_chunks(recent, spec, since=split)


# The record columns build_evaluation_set reads: the windows', the labels' and injection's, the agent's vectors'.
EVALUATION_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys([*RECORD_COLUMNS, *INJECT_COLUMNS, "id", "timestamp", "process_name", "message"])
)


def evaluation_records_since(split: pd.Timestamp, spec: WindowSpec) -> pd.Timestamp:
    """The oldest record :func:`build_evaluation_set` reads for ``split``: the held-out windows' history, and
    injection's look-back at each device's habits. A long horizon's older records (and the columns outside
    :data:`EVALUATION_COLUMNS`) can stay on disk: given ``next_id``, the set built from the rest is the same."""
    return pd.Timestamp(split) - max(pd.Timedelta(hours=spec.history_hours), INJECT_LOOKBACK)


def build_evaluation_set(
    records: pd.DataFrame,
    spec: WindowSpec,
    *,
    split: pd.Timestamp,
    labels: pd.DataFrame | None = None,
    injection_seed: int = 7,
    episodes_per_scenario: int = 2,
    episodes_per_router_day: float = 0.1,
    max_router_days: float | None = None,
    routers: HeldOut | None = None,
    service_timezone: str = "UTC",
    next_id: int | None = None,
) -> EvaluationSet:
    """Held-out evaluation data for records after ``split``.

    ``labelled`` when labels came with the data and cover held-out records; otherwise ``injected``:
    known attack episodes from the scenario generator are added to the held-out period of the real
    stream (its own devices, stations and interfaces), silence episodes remove records, and every
    real record counts as normal (so real incidents there lower precision: conservative). Each anomaly scenario
    gets ``episodes_per_router_day`` episodes per held-out router-day (:class:`HeldOut`), never fewer
    than ``episodes_per_scenario``: a stated prevalence, so that F1 and PR-AUC mean the same for one router and
    for a fleet, where a fixed count would drown in the false alarms a per-router-day budget allows. Above
    ``max_router_days`` held out, a seeded sample of the routers evaluates (:func:`held_out`; ``routers``: that
    choice made already, from every record's times and routers, when ``records`` holds only the sample's). ``next_id``: the
    injected records' first id (default: ``records``' largest id + 1; give the whole table's when ``records`` is
    its slice from :func:`evaluation_records_since`). Only the records from the held-out windows' history on are
    combined with the injected ones (the windows read no older ones): no copy of a long horizon."""
    held = _since(records, split) if labels is not None and len(labels) else None
    if held is not None and labels is not None and held["id"].isin(labels["id"]).any():
        windows = _windows_after(records, spec, split)
        lab = window_labels(windows, held, labels, spec.length_minutes)
        data = EvaluationSet("labelled", f"records labelled in their exports, after {split}", windows, lab, str(split))
        return _with_agent_vectors(data, held, spec)
    if routers is None:
        routers = held_out(
            records["timestamp"], records["device"], split, max_router_days=max_router_days, seed=injection_seed
        )
    if routers.sampled:
        records = records[records["device"].isin(routers.devices).to_numpy()]
    end, router_days = routers.end, routers.router_days
    per_scenario = injected_per_scenario(router_days, episodes_per_scenario, episodes_per_router_day)
    inj = inject_episodes(
        records,
        start=split,
        end=end,
        seed=injection_seed,
        episodes_per_scenario=per_scenario,
        next_id=next_id,
    )
    added = validate_records(records_to_frame(inj.records), "injected", service_timezone=service_timezone).records
    recent = _since(records, split - pd.Timedelta(hours=spec.history_hours))
    del held  # each copy of the held-out records goes as the next is made
    kept = recent[~recent["id"].isin(inj.remove_ids)]
    del recent
    combined = pd.concat([kept, added.loc[:, kept.columns]], ignore_index=True)
    del kept
    combined = combined.sort_values(["timestamp", "id"], kind="stable")
    windows = _windows_after(combined, spec, split)
    lab = window_labels(windows, _since(combined, split), inj.labels, spec.length_minutes, inj.episodes)
    n_ep = len(inj.episodes)
    sample = ""
    if routers.sampled:
        bound = f" (at most {max_router_days:g} router-days)" if max_router_days is not None else ""
        sample = f"held out: a seeded sample of {len(routers.devices)} of {routers.all_devices} routers{bound}; "
    desc = (
        f"{n_ep} generated episodes (seed {injection_seed}: {', '.join(sorted(inj.episodes['scenario'].unique()))}) "
        f"injected into the real records after {split}; {per_scenario} per scenario for {router_days:.1f} held-out "
        f"router-days ({episodes_per_router_day:g} per router-day, at least {episodes_per_scenario}); "
        f"{sample}real records count as normal"
    )
    data = EvaluationSet("injected", desc, windows, lab, str(split), held_out_router_days=round(router_days, 3))
    return _with_agent_vectors(data, _since(combined, split), spec)


@dataclass(frozen=True)
class HeldOut:
    """The routers whose held-out period evaluates: every router logging after the split, or, above
    ``max_router_days``, a seeded sample of them (the figures are at the same stated prevalence either way;
    only their cost, which grows with router-days, is bounded)."""

    end: pd.Timestamp
    days: float  # the held-out period's length
    devices: tuple[str, ...]  # the evaluating routers
    all_devices: int  # routers logging after the split

    @property
    def router_days(self) -> float:
        """Router-days of the evaluating routers: routers x held-out days, as the alarm budget counts them."""
        return len(self.devices) * self.days

    @property
    def sampled(self) -> bool:
        return len(self.devices) < self.all_devices


def held_out(
    timestamps: pd.Series, devices: pd.Series, split: pd.Timestamp, *, max_router_days: float | None, seed: int
) -> HeldOut:
    """Which routers' held-out period evaluates (see :class:`HeldOut`), from the records' times and routers."""
    end = pd.Timestamp(timestamps.max()) if len(timestamps) else pd.Timestamp(split)
    days = max(0.0, (end - split) / pd.Timedelta(days=1))
    # the routers logging after the split: filtered, then made distinct, before any value becomes a Python string
    active = sorted(str(d) for d in devices[(timestamps >= split).to_numpy()].unique())
    keep = active
    if max_router_days is not None and days > 0 and len(active) * days > max_router_days:
        k = max(1, int(max_router_days // days))
        keep = sorted(np.random.default_rng([seed, 11]).choice(np.asarray(active, dtype=object), k, replace=False))
    return HeldOut(end, days, tuple(keep), len(active))


def injected_per_scenario(router_days: float, minimum: int, per_router_day: float) -> int:
    """Episodes of each anomaly scenario for ``router_days`` held out: the stated rate, at least ``minimum``."""
    return max(int(minimum), int(round(per_router_day * router_days)))


def _since(records: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """The records at or after ``start``: ``records`` itself when that is all of them (no copy of millions)."""
    keep = (records["timestamp"] >= start).to_numpy()
    return records if keep.all() else records[keep]


def _with_agent_vectors(data: EvaluationSet, records: pd.DataFrame, spec: WindowSpec) -> EvaluationSet:
    """The agent's 5-value vectors of the same period; a vector (one per window, all devices) is
    anomalous when any device window at that time is."""
    vectors = agent_vectors(records, spec.length_minutes)
    lab = data.labels
    bad = set(lab.loc[lab["is_anomaly"] & (lab["entity_kind"] == "device"), "window_start"])
    data.agent_vectors = vectors
    data.agent_labels = vectors["window_start"].isin(bad).to_numpy(dtype=bool)
    return data
