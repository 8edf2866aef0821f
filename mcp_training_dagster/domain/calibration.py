"""Calibration: raw detector scores -> one calibrated score per window with a threshold that means
something (a false-alarm budget per router-day), per entity kind, plus the silence rule.

Shipped with the package (serving code): imports numpy and pandas only.

Convention: the CALIBRATED score is higher = more anomalous and a window is anomalous when it is
``> 0``. It is built in four steps, all fitted on the training windows alone (no labels):

1. **Per-kind scale.** The detector's raw score (``-score_samples``) is put on a robust scale per
   entity kind, fitted on that kind's windows *with records*: ``z = (raw - median) / (q90 - median)``.
   Quiet device windows (no records, most of a quiet router's day) do not dilute it.
2. **Device context at score level.** A station or interface window takes its device's window into
   account: ``z_key = max(z_own, z_device_same_window)`` (``fusion: "max"``) - a station during a
   flood of unknown MACs is judged with its router's state.
3. **A tail model instead of a contamination guess.** Per kind, on active windows, the threshold is
   the score a normal window exceeds with probability ``p = budget x router-days / active windows``
   (the false-alarm budget per router-day in the config; at most ``max_alarm_fraction``): the lower of
   the empirical ``1 - p`` quantile (pushed up by in-sample anomalies) and an exponential tail matched to
   the 80 % and 95 % quantiles (robust to the top 5 % where anomalies sit; exponential is the heaviest
   tail a bounded score can have). ``calibrated = z - threshold``.
4. **Silence rule.** A device window (quiet or the first one after a gap) is anomalous by rule when
   the device's silence exceeds ``silence_factor`` times its longest gap of the 24 h before (the
   hourly-rekey jitter beats "longer than the longest gap" by seconds; twice it does not):
   ``calibrated = max(calibrated, log2(gap_vs_usual / silence_factor))``. Quiet device windows get
   their verdict from this rule alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

KINDS: tuple[str, ...] = ("device", "station", "interface")
METHOD = "min(empirical quantile, exponential tail q80-q95)"
TAIL_FIT_TOP = 0.95
TAIL_QUANTILE = 0.80  # the exponential tail is matched between this quantile and TAIL_FIT_TOP
XI_BOUNDS = (-0.5, 0.0)  # the detector's score is bounded above (IsolationForest: score <= 1): no heavy tail


def gpd_tail_threshold(x: np.ndarray, p: float, u_quantile: float = 0.95) -> dict[str, float]:
    """Score exceeded with probability ``p`` under a GPD fitted to the excesses over the
    ``u_quantile`` quantile of ``x`` (peaks over threshold; PWM estimators, Hosking & Wallis 1987)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = len(x)
    if n < 20:
        t = float(x[-1]) if n else 0.0
        return {"threshold": t, "u": t, "sigma": 0.0, "xi": 0.0, "n_excess": 0, "n": n, "p": p}
    u = float(np.quantile(x, u_quantile))
    y = x[x > u] - u
    k = len(y)
    if k < 5 or p * n >= k:  # target not beyond the fitted tail: the empirical quantile is enough
        t = float(np.quantile(x, max(0.0, 1.0 - p)))
        return {"threshold": t, "u": u, "sigma": 0.0, "xi": 0.0, "n_excess": k, "n": n, "p": p}
    a0 = float(y.mean())
    i = np.arange(1, k + 1)
    a1 = float(np.sum(y * (k - i) / (k - 1)) / k)
    denom = a0 - 2.0 * a1
    if denom <= 0:
        xi, sigma = 0.0, a0
    else:
        xi = 2.0 - a0 / denom
        sigma = 2.0 * a0 * a1 / denom
    xi = float(np.clip(xi, *XI_BOUNDS))
    if sigma <= 0:
        sigma = max(a0, 1e-9)
    r = p * n / k
    t = u - sigma * math.log(r) if abs(xi) < 1e-6 else u + sigma / xi * (r ** (-xi) - 1.0)
    return {"threshold": float(t), "u": u, "sigma": float(sigma), "xi": xi, "n_excess": k, "n": n, "p": p}


def quantile_tail_threshold(x: np.ndarray, p: float, levels: tuple[float, float, float] = (0.80, 0.90, 0.97)
                            ) -> dict[str, float]:
    """Score exceeded with probability ``p`` under a GPD matched to three upper quantiles of ``x``
    (Pickands-type: the shape from the ratio of quantile spacings, then the scale). The top
    ``1 - levels[2]`` of the scores, where in-sample anomalies sit, never enters the fit, so a few
    anomalies in the training data cannot inflate the tail they are judged against."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    a, b, c = levels
    if n < 20:
        t = float(x.max()) if n else 0.0
        return {"threshold": t, "u": t, "sigma": 0.0, "xi": 0.0, "n": n, "p": p}
    qa, qb, qc = (float(v) for v in np.quantile(x, [a, b, c]))
    if p >= 1 - a or qc <= qa:
        t = float(np.quantile(x, max(0.0, 1.0 - p)))
        return {"threshold": t, "u": qa, "sigma": 0.0, "xi": 0.0, "n": n, "p": p}
    rb, rc = (1 - b) / (1 - a), (1 - c) / (1 - a)
    target = (qc - qa) / max(qb - qa, 1e-12)

    def ratio(xi: float) -> float:
        if abs(xi) < 1e-9:
            return math.log(rc) / math.log(rb)
        return (rc ** (-xi) - 1) / (rb ** (-xi) - 1)

    lo, hi = XI_BOUNDS
    if target <= ratio(lo):
        xi = lo
    elif target >= ratio(hi):
        xi = hi
    else:
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ratio(mid) < target else (lo, mid)
        xi = (lo + hi) / 2
    def g(r: float) -> float:
        return -math.log(r) if abs(xi) < 1e-9 else (r ** (-xi) - 1) / xi
    sigma = (qc - qa) / g(rc)
    r = p / (1 - a)
    t = qa + sigma * g(r)
    return {"threshold": float(t), "u": qa, "sigma": float(sigma), "xi": float(xi), "n": n, "p": p}


def exponential_tail_threshold(x: np.ndarray, p: float, levels: tuple[float, float] = (0.80, 0.95)) -> dict[str, float]:
    """Robust tail rule: an exponential tail (GPD with shape 0, the heaviest a bounded score can justify)
    matched to the ``levels`` quantiles of ``x`` and extrapolated to exceedance probability ``p``. The
    top ``1 - levels[1]`` of the scores, where in-sample anomalies sit, never enters the fit."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    a, b = levels
    if not 0 < a < b < 1:
        raise ValueError(f"tail levels must satisfy 0 < a < b < 1, got {levels}")
    if n < 20:
        t = float(x.max()) if n else 0.0
        return {"threshold": t, "u": t, "sigma": 0.0, "xi": 0.0, "n": n, "p": p}
    qa, qb = (float(v) for v in np.quantile(x, [a, b]))
    sigma = max(qb - qa, 1e-9) / math.log((1 - a) / (1 - b))
    empirical = float(np.quantile(x, 1.0 - p))
    if p >= 1 - a:
        t = empirical
    else:
        # Both over-estimate the normal windows' (1 - p) point: the empirical quantile because in-sample
        # anomalies push it up, the exponential tail because a bounded score's tail is lighter. The lower
        # one is the tighter bound.
        t = min(empirical, qa + sigma * math.log((1 - a) / p))
    return {"threshold": float(t), "u": qa, "sigma": float(sigma), "xi": 0.0, "n": n, "p": p,
            "empirical": empirical}


def _kinds(windows: pd.DataFrame) -> np.ndarray:
    return windows["entity_kind"].astype("str").to_numpy()


def _device_context(windows: pd.DataFrame, values: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Each window's device-window value in the same window (NaN where the device has none)."""
    dev = windows["device"].astype("str").to_numpy()
    ws = windows["window_start"].to_numpy()
    is_dev = kinds == "device"
    out = np.full(len(dev), np.nan)
    if not is_dev.any():
        return out
    ctx = pd.Series(values[is_dev]).groupby([dev[is_dev], ws[is_dev]]).max()  # one value per (device, window)
    at = ctx.index.get_indexer(pd.MultiIndex.from_arrays([dev, ws]))
    hit = at >= 0
    out[hit] = ctx.to_numpy()[at[hit]]
    return out


def robust_z(raw: np.ndarray, kinds: np.ndarray, scales: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    z = np.zeros(len(raw))
    for kind, sc in scales.items():
        m = kinds == kind
        z[m] = (raw[m] - sc["center"]) / sc["scale"]
    return z


def fused(windows: pd.DataFrame, z: np.ndarray, kinds: np.ndarray, fusion: str) -> np.ndarray:
    if fusion == "none":
        return z
    ctx = _device_context(windows, z, kinds)
    key = (kinds != "device") & np.isfinite(ctx)
    out = z.copy()
    if fusion == "max":
        out[key] = np.maximum(z[key], ctx[key])
    elif fusion == "mean":
        out[key] = (z[key] + ctx[key]) / 2.0
    else:
        raise ValueError(f"unknown fusion {fusion!r}")
    return out


def silence_score(windows: pd.DataFrame, factor: float) -> np.ndarray:
    """log2(gap_vs_usual / factor) for device windows with a history (> 0 = silent beyond the rule),
    -inf elsewhere."""
    out = np.full(len(windows), -np.inf)
    if "gap_vs_usual" not in windows.columns:
        return out
    ratio = windows["gap_vs_usual"].to_numpy(dtype=np.float64)
    m = (_kinds(windows) == "device") & (ratio > 0)
    out[m] = np.log2(ratio[m] / factor)
    return out


def fit_calibration(windows: pd.DataFrame, raw: np.ndarray, *, budget: Mapping[str, float], fusion: str = "max",
                    silence_factor: float = 2.0, u_quantile: float = TAIL_QUANTILE,
                    max_alarm_fraction: float = 0.02) -> dict[str, Any]:
    """Per-kind scales, fused tail thresholds for the budget (alarms per router-day) and the silence rule."""
    kinds = _kinds(windows)
    active = windows["n_records"].to_numpy() > 0
    t = pd.to_datetime(windows["window_start"])
    span_days = max((t.max() - t.min()) / pd.Timedelta(days=1), 1.0 / 288) if len(t) else 1.0
    router_days = float(windows["device"].nunique() * span_days)
    scales: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        m = (kinds == kind) & active
        if not m.any():
            continue
        center = float(np.median(raw[m]))
        spread = float(np.quantile(raw[m], 0.9)) - center
        scales[kind] = {"center": center, "scale": spread if spread > 1e-9 else 1e-3}
    z = fused(windows, robust_z(raw, kinds, scales), kinds, fusion)
    thresholds: dict[str, dict[str, Any]] = {}
    for kind in scales:
        m = (kinds == kind) & active
        n_active = int(m.sum())
        b = float(budget.get(kind, 0.0))
        p = min(max_alarm_fraction, b * router_days / n_active) if n_active else max_alarm_fraction
        fit = exponential_tail_threshold(z[m], p, (u_quantile, TAIL_FIT_TOP))
        thresholds[kind] = {**fit, "budget_per_router_day": b, "active_windows": n_active,
                            "expected_alarms_per_router_day": round(p * n_active / router_days, 4)}
    return {
        "method": METHOD,
        "description": "per entity kind, on windows with records: robust z of the detector score, station/interface "
                       f"windows fused with their device window ({fusion}), GPD tail (peaks over the "
                       f"{u_quantile:.0%} quantile) threshold for the false-alarm budget; calibrated = z - threshold, "
                       f"anomalous when > 0; device silence rule: gap > {silence_factor} x longest gap of the 24 h before",
        "fusion": fusion,
        "scales": scales,
        "thresholds": {k: {kk: (round(vv, 6) if isinstance(vv, float) else vv) for kk, vv in v.items()} for k, v in thresholds.items()},
        "silence_factor": float(silence_factor),
        "max_alarm_fraction": float(max_alarm_fraction),
        "router_days": round(router_days, 3),
        "tail_quantile": u_quantile,
    }


def calibrated_scores(windows: pd.DataFrame, raw: np.ndarray, calibration: Mapping[str, Any]) -> np.ndarray:
    """Calibrated score per window (> 0 = anomalous), from the raw detector scores and a fitted calibration."""
    kinds = _kinds(windows)
    z = fused(windows, robust_z(raw, kinds, calibration["scales"]), kinds, calibration.get("fusion", "max"))
    thr = np.zeros(len(z))
    for kind, fit in calibration["thresholds"].items():
        thr[kinds == kind] = fit["threshold"]
    c = z - thr
    active = windows["n_records"].to_numpy() > 0
    sil = silence_score(windows, float(calibration.get("silence_factor", 2.0)))
    silent = sil > 0
    # quiet device windows (no records) are outside the calibrated population: flagged only when the
    # silence rule holds (silent beyond silence_factor x the usual longest gap); a window the rule flags
    # is anomalous whatever the detector says, ranked by how far beyond the rule it is
    c = np.where(active | silent, c, np.minimum(c, -1e-3))
    return np.where(silent, np.maximum(c, sil), c)


def raw_threshold(calibration: Mapping[str, Any], kind: str = "device") -> float:
    """The raw-score threshold equivalent to the calibrated one for a window of ``kind`` judged on its own
    score (device windows: no fusion): ``raw > this`` <=> calibrated > 0, silence rule aside."""
    sc = calibration["scales"][kind]
    return float(sc["center"] + sc["scale"] * calibration["thresholds"][kind]["threshold"])
