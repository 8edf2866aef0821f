"""Drift of a new export against the production model's training baseline.

The baseline is a small summary of the training windows a model was fitted on (per feature: quantile
bin edges and the share of windows in each bin, plus the share of windows the model itself flagged),
stored once per model version. A new export's windows are compared with it per feature by the
population stability index (PSI) and the two-sample Kolmogorov-Smirnov statistic against the binned
baseline, and by the change in the share of windows the production model flags. Only windows with
records count, for the features and for the flagged share: the silent device windows a quiet router
produces by design would otherwise dominate (a baseline written before that was a share of every window,
and is compared as such).

PSI = sum((a - e) * ln(a / e)) over bins, a/e the export's/baseline's shares (floored at 1e-4).
Conventional reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift; the threshold is
``drift.threshold`` in config/training_config.yaml (0.1, the previous system's ``drift_threshold``).

Small exports: PSI is a sample statistic. For n windows drawn from the baseline itself, n * PSI is about
chi-square with (bins - 1) degrees of freedom, so its expected value is about (bins - 1) / n (0.9 for 10
windows in 10 bins, nine times the threshold), and a bin the few windows miss costs its full floored
log-ratio, which makes small samples noisier still. So a feature has drifted only when its PSI is above the
threshold AND above its noise floor: the PSI that n windows drawn from the baseline's own bin shares reach
with probability 0.01 / (number of features) (Bonferroni: an export like the training data is flagged with
at most 1 % probability over all features), simulated with the same estimator (multinomial draws, seeded, so
the verdict is reproducible). The n of that simulation is the number of independent draws, not of windows:
the windows of one device in one time slot (device, station and interface windows) share the device-level
features and the same few minutes of log, so n counts the (device, window_start) slots with records (1865
windows of the hostapd sample are 256 slots). For hundreds of slots the floor is far below 0.1 and only the
threshold counts; for ten it is around 1-6 by feature, and only a shift far beyond sampling noise (the
export's windows in bins the training data almost never reached) is flagged. ``drift.min_windows`` still
skips exports too small to say anything (flagged share included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

EPS = 1e-4
RECORDS_COLUMN = "n_records"
FALSE_ALARM = 0.01  # probability that an export drawn from the baseline itself is flagged (all features together)
NOISE_DRAWS = 20_000
NOISE_SEED = 20_240_610


def drift_features(feature_names: tuple[str, ...] | list[str]) -> list[str]:
    """The model's features minus the window-kind indicators (the mix of kinds is not a behaviour)."""
    return [f for f in feature_names if not f.startswith("kind_")]


def with_records(windows: pd.DataFrame) -> pd.DataFrame:
    if RECORDS_COLUMN not in windows.columns:
        return windows
    return windows[windows[RECORDS_COLUMN] > 0]


FLAG_SHARE_OVER = "windows with records"  # what a baseline's flag_rate is a share of (absent: every window)


def flagged_share(table: pd.DataFrame, windows: pd.DataFrame) -> float | None:
    """The share of ``windows`` *with records* that the verdicts (``table``: a score table, one row per window
    and the unkeyed ``-`` rows) flag. Quiet device windows are left out as for the features: a router whose
    log stops for days would otherwise have its flagged share made of one silence, window after window (the
    silence is one incident, and its own rule). None when no window has records."""
    active = with_records(windows)
    if not len(active) or not len(table):
        return None
    key = pd.MultiIndex.from_arrays(
        [
            active["device"].astype("str").to_numpy(),
            active["entity"].astype("str").to_numpy(),
            pd.to_datetime(active["window_start"]).dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy(),
        ]
    )
    rows = pd.MultiIndex.from_arrays(
        [
            table["device_id"].astype("str").to_numpy(),
            table["entity"].astype("str").to_numpy(),
            table["window_start"].astype("str").to_numpy(),
        ]
    )
    hit = rows.isin(key)
    return float(table["is_anomaly"].to_numpy()[hit].mean()) if hit.any() else None


def _edges(values: np.ndarray, bins: int) -> list[float]:
    """Inner quantile edges; count features are zero-inflated, so duplicates collapse to fewer bins."""
    if values.size == 0:
        return []
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return sorted({float(q) for q in qs})


def _shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def psi(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """PSI of shares ``actual`` (one row per sample, or one vector) against ``expected``, both floored at EPS."""
    a, e = np.maximum(actual, EPS), np.maximum(expected, EPS)
    return np.sum((a - e) * np.log(a / e), axis=-1)


@lru_cache(maxsize=4096)
def psi_noise_floor(shares: tuple[float, ...], n: int, tail: float) -> float:
    """The PSI that ``n`` windows drawn from the baseline's own bin ``shares`` exceed with probability ``tail``."""
    p = np.asarray(shares, dtype=np.float64)
    if n <= 0 or p.size < 2 or p.sum() <= 0:
        return 0.0
    counts = np.random.default_rng(NOISE_SEED).multinomial(n, p / p.sum(), size=NOISE_DRAWS)
    return float(np.quantile(psi(counts / n, p), 1.0 - tail))


def independent_slots(windows: pd.DataFrame) -> int:
    """How many independent draws ``windows`` are for the noise floor: its (device, window_start) slots."""
    keys = [c for c in ("device", "window_start") if c in windows.columns]
    return int(len(windows.drop_duplicates(subset=keys))) if len(keys) == 2 else int(len(windows))


def build_baseline(
    windows: pd.DataFrame, feature_names: list[str] | tuple[str, ...], *, flag_rate: float, version: str, bins: int = 10
) -> dict[str, Any]:
    """The training baseline of one model: a few hundred numbers, JSON-ready."""
    w = with_records(windows)
    features = {}
    for name in drift_features(feature_names):
        values = w[name].to_numpy(dtype=np.float64)
        edges = _edges(values, bins)
        features[name] = {
            "edges": edges,
            "shares": [round(float(s), 6) for s in _shares(values, edges)],
            "mean": float(values.mean()) if values.size else 0.0,
        }
    return {"version": version, "windows": int(len(w)), "flag_rate": float(flag_rate), "features": features}


@dataclass
class DriftReport:
    """Figures for one export; ``table`` has one row per feature, worst first."""

    windows: int
    table: pd.DataFrame
    flag_rate: float | None
    baseline_flag_rate: float
    threshold: float
    flag_share_threshold: float
    enough: bool
    drifted: list[str] = field(default_factory=list)

    @property
    def flag_share_change(self) -> float | None:
        return None if self.flag_rate is None else abs(self.flag_rate - self.baseline_flag_rate)

    @property
    def flag_share_drifted(self) -> bool:
        change = self.flag_share_change
        return change is not None and change > self.flag_share_threshold

    @property
    def max_psi(self) -> float:
        return float(self.table["psi"].max()) if len(self.table) else 0.0

    @property
    def passed(self) -> bool:
        """No feature above the threshold and the flagged share within its band (or too few windows to judge)."""
        return not self.enough or (not self.drifted and not self.flag_share_drifted)

    def summary(self) -> str:
        if not self.enough:
            return f"{self.windows} windows with records: too few to judge drift"
        moved = ", ".join(
            f"{f} (PSI {p:.2f})" for f, p in zip(self.table["feature"], self.table["psi"]) if f in self.drifted
        )
        parts = [
            f"features drifted: {moved}"
            if moved
            else f"no feature above PSI {self.threshold:g} (max {self.max_psi:.3f})"
        ]
        if self.flag_share_change is not None:
            parts.append(
                f"flagged share {self.flag_rate:.3f} vs {self.baseline_flag_rate:.3f} at training"
                + (" (drifted)" if self.flag_share_drifted else "")
            )
        return "; ".join(parts)


def compare(
    windows: pd.DataFrame,
    baseline: dict[str, Any],
    *,
    flag_rate: float | None,
    threshold: float,
    flag_share_threshold: float,
    min_windows: int,
) -> DriftReport:
    """PSI and KS per baseline feature for the export's windows with records."""
    w = with_records(windows)
    tail = FALSE_ALARM / max(1, len(baseline["features"]))
    slots = independent_slots(w)
    rows = []
    for name, base in baseline["features"].items():
        edges = base["edges"]
        expected = np.maximum(np.asarray(base["shares"], dtype=np.float64), EPS)
        values = w[name].to_numpy(dtype=np.float64) if name in w.columns else np.zeros(0)
        actual = np.maximum(_shares(values, edges), EPS) if values.size else expected
        ks = float(np.max(np.abs(np.cumsum(actual / actual.sum()) - np.cumsum(expected / expected.sum()))))
        noise = psi_noise_floor(tuple(base["shares"]), min(slots, int(values.size)), tail)
        rows.append(
            {
                "feature": name,
                "psi": round(float(psi(actual, expected)), 4),
                "noise_floor": round(noise, 4),
                "ks": round(ks, 4),
                "baseline_mean": round(base["mean"], 4),
                "export_mean": round(float(values.mean()), 4) if values.size else 0.0,
            }
        )
    table = pd.DataFrame(rows, columns=["feature", "psi", "noise_floor", "ks", "baseline_mean", "export_mean"])
    table = table.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)
    enough = len(w) >= min_windows
    beyond = (table["psi"] > threshold) & (table["psi"] > table["noise_floor"])
    drifted = table.loc[beyond, "feature"].tolist() if enough else []
    table["drifted"] = table["feature"].isin(drifted)
    return DriftReport(
        windows=int(len(w)),
        table=table,
        flag_rate=flag_rate,
        baseline_flag_rate=float(baseline["flag_rate"]),
        threshold=threshold,
        flag_share_threshold=flag_share_threshold,
        enough=enough,
        drifted=drifted,
    )


def not_new_data(export: str, windows: pd.DataFrame, baseline: dict[str, Any]) -> str:
    """Why this export is not new data for the baseline's model ("" when it is): drift is about new data, so an
    export the model was trained on, or one ending before its training data does, is shown but not judged."""
    if export in baseline.get("exports", []):
        return f"{baseline['version']} was trained on this export"
    end = baseline.get("data_end")
    if (
        end
        and len(windows)
        and "window_start" in windows.columns
        and windows["window_start"].max() <= pd.Timestamp(end)
    ):
        return f"this export ends before {baseline['version']}'s training data does ({end})"
    return ""
