"""Calibration: raw detector scores -> one calibrated score per window with a threshold that means
something (a false-alarm budget per router-day), per entity kind, plus the silence rule.

Shipped with the package (serving code): imports numpy and pandas only.

Convention: the CALIBRATED score is higher = more anomalous and a window is anomalous when it is
``> 0``. It is built in these steps, all fitted on the training windows alone (no labels):

1. **Per-kind scale.** The detector's raw score (``-score_samples``) is put on a robust scale per
   entity kind, fitted on that kind's windows *with records*: ``z = (raw - median) / (q90 - median)``.
   Quiet device windows (no records, most of a quiet router's day) do not dilute it.
2. **Device context at score level.** A station or interface window takes its device's window into
   account: ``z_key = max(z_own, z_device_same_window)`` (``fusion: "max"``) - a station during a
   flood of unknown MACs is judged with its router's state.
2b. **Magnitude** (device windows): ``+ max(0, max_f log2((1 + x_f) / (1 + usual_f)))`` over the event
   families, where ``usual_f`` is the router's own 95th percentile of active device windows, shrunk towards
   the fleet's by ``n / (n + 288)``: doublings above the router's usual most. The detector and the
   rarity component saturate at "never seen" (6 passphrase failures look like a brute force of 40); this
   term keeps growing with the count and is relative to the router's own verbosity. Added after the
   fusion, so a station is judged with its router's state, not with the count of its neighbours' events;
   the unkeyed records' key ``-`` is judged without it, at the device's threshold fitted without it. The
   score is then no longer bounded, so for a kind with this term step 3's exponential extrapolation (which
   assumes a bounded score) would sit too low: its threshold is the lower of the empirical ``1 - p``
   quantile and a GPD matched to the 80/90/95 % quantile spacings with shape up to 0.5 (heavy tail allowed).
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
5. **Alarms, then their extent (hysteresis).** Steps 3-4 decide which windows *raise* an alarm (the
   budget counts alarms raised). A router's device windows that pass a looser threshold (the continuation
   budget's, same tail rule) and follow each other with at most one window between them (the incidents'
   merge rule) join an alarm raised among them, by the device or by one of its stations or interfaces;
   station and interface windows join their router's alarm above their own continuation threshold. An
   episode's rise and tail are weaker than its peak, but given the alarm they are not normal traffic; a
   window that joins gets ``calibrated = z - continuation threshold`` (> 0), so ``> 0`` still means
   anomalous. Two-sided (the rise before the peak joins too), as a verdict on an export is read after the
   fact; windows outside the scored span are not seen.
6. **Near misses beside an alarm (ranking only).** A router's windows with records within the same distance
   of one of its device windows in alarm (at most one window between) that did not join it score
   ``z - continuation threshold`` of their kind when that is higher than step 3's score, kept below 0: they
   stay unflagged, but a weak window beside an alarm ranks above an isolated window of the same score, by
   how close it came to joining. Verdicts do not change; models fitted before this step keep their scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

KINDS: tuple[str, ...] = ("device", "station", "interface")
METHOD = (
    "min(empirical quantile, exponential tail q80-q95); device windows: + magnitude over the router's own q95, "
    "min(empirical quantile, GPD q80/q90/q95 with shape <= 0.5)"
)
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


def quantile_tail_threshold(
    x: np.ndarray,
    p: float,
    levels: tuple[float, float, float] = (0.80, 0.90, 0.97),
    xi_bounds: tuple[float, float] = XI_BOUNDS,
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

    lo, hi = xi_bounds
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
    return {"threshold": float(t), "u": qa, "sigma": float(sigma), "xi": 0.0, "n": n, "p": p, "empirical": empirical}


def _kinds(windows: pd.DataFrame) -> np.ndarray:
    """Each window's entity kind as a fixed-width string array: built from the few distinct kinds (not a Python
    string per window), and compared with ``==`` about three times as fast as an array of objects."""
    codes, uniques = pd.factorize(windows["entity_kind"].astype("str"), use_na_sentinel=False)
    return np.asarray(uniques.astype(object), dtype=str)[codes]


def _device_context(
    windows: pd.DataFrame, values: np.ndarray, kinds: np.ndarray, keys: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Each window's device-window value in the same window (NaN where the device has none). ``keys``:
    :func:`_slot_keys` of ``windows``, if at hand."""
    is_dev = kinds == "device"
    out = np.full(len(windows), np.nan)
    if not is_dev.any():
        return out
    slot = _slots(keys if keys is not None else _slot_keys(windows))  # one int64 per (device, window)
    ctx = pd.Series(values[is_dev]).groupby(slot[is_dev]).max()  # one value per (device, window)
    at = ctx.index.get_indexer(slot)
    hit = at >= 0
    out[hit] = ctx.to_numpy()[at[hit]]
    return out


def robust_z(raw: np.ndarray, kinds: np.ndarray, scales: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    z = np.zeros(len(raw))
    for kind, sc in scales.items():
        m = kinds == kind
        z[m] = (raw[m] - sc["center"]) / sc["scale"]
    return z


def fused(
    windows: pd.DataFrame,
    z: np.ndarray,
    kinds: np.ndarray,
    fusion: str,
    keys: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    if fusion == "none":
        return z
    ctx = _device_context(windows, z, kinds, keys)
    key = (kinds != "device") & np.isfinite(ctx)
    out = z.copy()
    if fusion == "max":
        out[key] = np.maximum(z[key], ctx[key])
    elif fusion == "mean":
        out[key] = (z[key] + ctx[key]) / 2.0
    else:
        raise ValueError(f"unknown fusion {fusion!r}")
    return out


def silence_score(windows: pd.DataFrame, factor: float, kinds: np.ndarray | None = None) -> np.ndarray:
    """log2(gap_vs_usual / factor) for device windows with a history (> 0 = silent beyond the rule),
    -inf elsewhere. ``kinds``: :func:`_kinds` of ``windows``, if at hand."""
    out = np.full(len(windows), -np.inf)
    if "gap_vs_usual" not in windows.columns:
        return out
    ratio = windows["gap_vs_usual"].to_numpy(dtype=np.float64)
    m = ((kinds if kinds is not None else _kinds(windows)) == "device") & (ratio > 0)
    out[m] = np.log2(ratio[m] / factor)
    return out


# The rarity component: per behaviour family, how rarely a window of the same kind had at least this much
# in training (-log10 of the smoothed empirical tail probability), the rarest family counting.
RARITY_FEATURES: tuple[str, ...] = (
    "grp_leaves",
    "grp_failures",
    "grp_joins",
    "grp_radio_faults",
    "grp_radio_control",
    "n_random_macs",
    "dev_unseen_stations",
    "repeat_leaves",
    "unannounced_joins",
    "n_records",
    "dev_deauth",
    "dev_max_station_records",
)


def _robust_scales(values: np.ndarray, kinds: np.ndarray, active: np.ndarray) -> dict[str, dict[str, float]]:
    """Per kind, on active windows: centre = median, scale = 90th percentile - median."""
    scales: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        m = (kinds == kind) & active
        if not m.any():
            continue
        center = float(np.median(values[m]))
        spread = float(np.quantile(values[m], 0.9)) - center
        scales[kind] = {"center": center, "scale": spread if spread > 1e-9 else 1e-3}
    return scales


def fit_rarity(
    windows: pd.DataFrame, kinds: np.ndarray, active: np.ndarray, features: tuple[str, ...] = RARITY_FEATURES
) -> dict[str, Any]:
    """Per kind and feature: the distinct training values (active windows) and how many were >= each."""
    tables: dict[str, Any] = {}
    for kind in KINDS:
        m = (kinds == kind) & active
        if not m.any():
            continue
        tab = {}
        for f in features:
            if f not in windows.columns:
                continue
            v = np.sort(windows.loc[m, f].to_numpy(dtype=np.float64))
            uniq, first = np.unique(v, return_index=True)
            tab[f] = {"values": uniq.tolist(), "at_least": (len(v) - first).tolist()}
        tables[kind] = {"n": int(m.sum()), "features": tab}
    return tables


def rarity(windows: pd.DataFrame, kinds: np.ndarray, tables: Mapping[str, Any]) -> np.ndarray:
    """-log10 of the smoothed probability that a training window of the same kind had at least this much,
    for the rarest of the families (0 = common)."""
    out = np.zeros(len(windows))
    columns: dict[str, np.ndarray] = {}  # each feature read once, whatever the number of kinds
    for kind, tab in tables.items():
        m = kinds == kind
        if not m.any():
            continue
        n = int(tab["n"])
        fewest = None  # the rarest family is the one fewest training windows reached: one log for all of them
        for f, t in tab["features"].items():
            if f not in windows.columns:
                continue
            values = np.asarray(t["values"], dtype=np.float64)
            at_least = np.r_[np.asarray(t["at_least"], dtype=np.float64), 0.0]
            if f not in columns:
                columns[f] = windows[f].to_numpy(dtype=np.float64)
            x = columns[f][m]
            count = at_least[np.searchsorted(values, x, side="left")]
            fewest = count if fewest is None else np.minimum(fewest, count)
        best = np.zeros(int(m.sum()))
        out[m] = best if fewest is None else np.maximum(best, -np.log10((fewest + 1.0) / (n + 1.0)))
    return out


MAGNITUDE_QUANTILE = 0.95  # a router's "usual most" per family: this quantile of its own active windows of the kind
# (the top 5 %, where in-sample anomalies sit, stays out of it, as in the tail fit)
MAGNITUDE_TAIL_LEVELS = (0.80, 0.90, TAIL_FIT_TOP)  # a kind with the magnitude term: GPD matched to these quantiles
MAGNITUDE_XI_BOUNDS = (-0.5, 0.5)  # the magnitude grows with log(count): unbounded, a heavy tail is allowed
MAGNITUDE_PRIOR_WINDOWS = 288.0  # shrinkage: a router with this many active windows weighs its own quantile half


def _magnitude_features(windows: pd.DataFrame, features: tuple[str, ...]) -> list[str]:
    return [f for f in features if f in windows.columns]


def fit_magnitude(
    windows: pd.DataFrame,
    kinds: np.ndarray,
    active: np.ndarray,
    features: tuple[str, ...] = RARITY_FEATURES,
    q: float = MAGNITUDE_QUANTILE,
    prior: float = MAGNITUDE_PRIOR_WINDOWS,
    kinds_fitted: tuple[str, ...] = ("device",),
) -> dict[str, Any]:
    """Per kind and family: the fleet's and each router's usual most (the ``q`` quantile of active windows), the
    router's shrunk towards the fleet's by its number of windows (``n / (n + prior)``)."""
    feats = _magnitude_features(windows, features)
    dev = windows["device"].astype("str").to_numpy()
    out: dict[str, Any] = {"quantile": q, "prior_windows": prior, "features": feats, "kinds": {}}
    for kind in kinds_fitted:
        m = (kinds == kind) & active
        if not m.any():
            continue
        X = windows.loc[m, feats].to_numpy(dtype=np.float64)
        fleet = np.quantile(X, q, axis=0)
        routers = {}
        codes, names = pd.factorize(dev[m], sort=True)  # sorted: the routers in np.unique's order
        by_router = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[by_router], np.arange(len(names) + 1))
        for k, r in enumerate(names):
            rows = by_router[bounds[k] : bounds[k + 1]]  # the router's windows in table order
            n = float(len(rows))
            own = np.quantile(X[rows], q, axis=0)
            w = n / (n + prior)
            routers[str(r)] = [round(float(v), 4) for v in w * own + (1 - w) * fleet]
        out["kinds"][kind] = {"fleet": [round(float(v), 4) for v in fleet], "routers": routers}
    return out


def magnitude(windows: pd.DataFrame, kinds: np.ndarray, tables: Mapping[str, Any]) -> np.ndarray:
    """How far the window's largest family count is above its router's usual most, in doublings:
    ``max_f log2((1 + x_f) / (1 + usual_f))`` (a router never seen in training: the fleet's usual). Grows with
    the count, so a flood of 40 ranks above a handful of 6 that is rare too."""
    out = np.zeros(len(windows))
    feats = [f for f in tables["features"] if f in windows.columns]
    if not feats:
        return out
    idx = [tables["features"].index(f) for f in feats]
    codes, seen = _router_codes(windows)
    X = windows[feats].to_numpy(dtype=np.float64)
    for kind, tab in tables["kinds"].items():
        m = kinds == kind
        if not m.any():
            continue
        fleet = np.asarray(tab["fleet"], dtype=np.float64)[idx]
        # each window's router's usual most (the fleet's for a router not in the table): one lookup per router seen
        rows = np.vstack(
            [np.asarray(tab["routers"][r], dtype=np.float64)[idx] if r in tab["routers"] else fleet for r in seen]
        )
        usual = rows[codes[m]]
        out[m] = np.max(np.log2((1.0 + X[m]) / (1.0 + usual)), axis=1)
    return out


def _router_codes(windows: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Each window's router as a code into the routers' names (first appearance): factorised from the string
    column itself, not from a Python string per window."""
    codes, names = pd.factorize(windows["device"].astype("str"))
    return codes, [str(n) for n in names]


def _combined_z(
    windows: pd.DataFrame, raw: np.ndarray, kinds: np.ndarray, calibration: Mapping[str, Any]
) -> np.ndarray:
    z = robust_z(raw, kinds, calibration["scales"])
    if calibration.get("ensemble") == "mean" and calibration.get("rarity"):
        zr = robust_z(rarity(windows, kinds, calibration["rarity"]), kinds, calibration["rarity_scales"])
        z = (z + zr) / 2.0
    return z


def _scored_z(
    windows: pd.DataFrame,
    raw: np.ndarray,
    kinds: np.ndarray,
    calibration: Mapping[str, Any],
    with_magnitude: bool = True,
    fused_z: np.ndarray | None = None,
    keys: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The score the thresholds apply to: the combined z, fused with the device context, plus (device windows)
    the magnitude in doublings above the router's usual most. The magnitude is added after the fusion:
    a station is judged with its router's state, not with the router's count of someone else's events.
    ``fused_z``: this without the magnitude, if at hand; ``keys``: :func:`_slot_keys` of ``windows``, if at hand."""
    z = (
        fused(windows, _combined_z(windows, raw, kinds, calibration), kinds, calibration.get("fusion", "max"), keys)
        if fused_z is None
        else fused_z
    )
    mt = calibration.get("magnitude")
    if mt and with_magnitude:
        mg = np.maximum(magnitude(windows, kinds, mt), 0.0)
        on = np.isin(kinds, list(mt["kinds"]))
        z = z + np.where(on, mg, 0.0)
    return z


ROUTER_PRIOR_WINDOWS = 288.0  # a router's own tail threshold weighs half when it has this many active windows


def _router_thresholds(
    z: np.ndarray,
    devices: np.ndarray,
    span_days: float,
    budget: float,
    fleet: float,
    u_quantile: float,
    max_alarm_fraction: float,
    prior: float,
) -> dict[str, float]:
    """Per router: the same tail rule on its own active windows (its budget: ``budget x its days``), shrunk
    towards the fleet's threshold by ``n / (n + prior)``. Vendors differ in verbosity: a chatty router's
    ordinary busy window is judged against its own tail, a terse one's against its own."""
    out: dict[str, float] = {}
    codes, names = pd.factorize(devices, sort=True)  # sorted: the routers in np.unique's order
    by_router = np.argsort(codes, kind="stable")  # each router's windows in table order, one sort for all
    bounds = np.searchsorted(codes[by_router], np.arange(len(names) + 1))
    for k, r in enumerate(names):
        zr = z[by_router[bounds[k] : bounds[k + 1]]]
        n = len(zr)
        p = min(max_alarm_fraction, budget * span_days / n) if n else max_alarm_fraction
        own = exponential_tail_threshold(zr, p, (u_quantile, TAIL_FIT_TOP))["threshold"]
        w = n / (n + prior)
        out[str(r)] = round(float(w * own + (1 - w) * fleet), 6)
    return out


def _tail_fit(z: np.ndarray, p: float, u_quantile: float, heavy_tail: bool) -> dict[str, Any]:
    """The threshold a normal window of this population exceeds with probability ``p`` (step 3)."""
    fit: dict[str, Any] = exponential_tail_threshold(z, p, (u_quantile, TAIL_FIT_TOP))
    if heavy_tail:
        # the exponential tail's premise is a bounded score; the magnitude term is not bounded (it grows
        # with the log of a count), so the tail beyond the fitted quantiles is heavier than the
        # extrapolation (when the term is 0 on every training window, the score is the bounded one)
        heavy = quantile_tail_threshold(z, p, MAGNITUDE_TAIL_LEVELS, MAGNITUDE_XI_BOUNDS)
        fit = {
            **fit,
            "threshold": float(min(fit.get("empirical", heavy["threshold"]), heavy["threshold"])),
            "xi": heavy["xi"],
            "sigma": heavy["sigma"],
            "u": heavy["u"],
            "rule": "min(empirical quantile, GPD matched to the q80/q90/q95 spacings, shape up to 0.5)",
        }
    return fit


def _window_seconds(windows: pd.DataFrame, kinds: np.ndarray) -> float | None:
    """The window length: the most common step between a device's consecutive windows (None: no two)."""
    dev = np.flatnonzero(kinds == "device")
    if len(dev) < 2:
        return None
    codes, t = _slot_keys(windows)
    d, t = codes[dev], t[dev]
    order = np.lexsort((t, d))
    d, t = d[order], t[order]
    step = (t[1:] - t[:-1])[(d[1:] == d[:-1]) & (t[1:] > t[:-1])]
    if not len(step):
        return None
    values, counts = np.unique(step, return_counts=True)
    return float(values[np.argmax(counts)])


def _slot_keys(windows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per window: its router's code and its start in seconds (int64), for cheap (router, window) matching."""
    codes = _router_codes(windows)[0].astype(np.int64)
    t = pd.to_datetime(windows["window_start"]).to_numpy().astype("datetime64[s]").astype(np.int64)
    return codes, t


def _slots(keys: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """One int64 per (router, window start), from :func:`_slot_keys`."""
    codes, t = keys
    return codes * (1 << 34) + (t - t.min()) if len(t) else codes  # seconds since the first window: 34 bits


def _member(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """``np.isin(values, members)`` for sorted distinct ``members`` (e.g. :func:`np.unique`'s): one binary search
    per value in the (few) members, where ``isin`` sorts every value with them."""
    if not len(members):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(members, values), len(members) - 1)
    return members[at] == values


def _router_any(
    windows: pd.DataFrame, flags: np.ndarray, kinds: np.ndarray, keys: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """On each device window: whether any window of its router at the same time (its own, its stations',
    its interfaces') is in ``flags``. False elsewhere. ``keys``: :func:`_slot_keys` of ``windows``, if at hand."""
    out = np.zeros(len(windows), dtype=bool)
    is_dev = kinds == "device"
    if not flags.any() or not is_dev.any():
        return out
    slot = _slots(keys if keys is not None else _slot_keys(windows))
    out[is_dev] = _member(slot[is_dev], np.unique(slot[flags]))
    return out


def continued_alarms(
    windows: pd.DataFrame,
    seed: np.ndarray,
    cont: np.ndarray,
    window_seconds: float,
    keys: tuple[np.ndarray, np.ndarray] | None = None,
    kinds: np.ndarray | None = None,
) -> np.ndarray:
    """Device windows an alarm covers (hysteresis). A run is a device's windows that pass the continuation
    threshold (``cont``) or raise an alarm (``seed``: the router's device, station or interface window passed
    its start threshold), following each other with at most one window between them (the incidents' merge
    rule); in a run holding a seed, every window passing ``cont`` is flagged. Two-sided, as an incident is
    read after the fact: the rise into an episode and its tail belong to it. One sort, one grouped max.
    ``keys``, ``kinds``: :func:`_slot_keys` and :func:`_kinds` of ``windows``, if at hand."""
    out = np.zeros(len(windows), dtype=bool)
    dev = ((kinds if kinds is not None else _kinds(windows)) == "device") & (cont | seed)
    if not dev.any():
        return out
    idx = np.flatnonzero(dev)
    codes, times = keys if keys is not None else _slot_keys(windows)
    d, t = codes[idx], times[idx]
    order = np.lexsort((t, d))
    idx, d, t = idx[order], d[order], t[order]
    new_run = np.ones(len(idx), dtype=bool)
    new_run[1:] = (d[1:] != d[:-1]) | (t[1:] - t[:-1] > 2 * int(window_seconds))
    run = np.cumsum(new_run)
    seeded = pd.Series(seed[idx].astype(np.int8)).groupby(run).transform("max").to_numpy().astype(bool)
    out[idx[seeded & cont[idx]]] = True
    return out


def fit_calibration(
    windows: pd.DataFrame,
    raw: np.ndarray,
    *,
    budget: Mapping[str, float],
    fusion: str = "max",
    silence_factor: float = 2.0,
    u_quantile: float = TAIL_QUANTILE,
    max_alarm_fraction: float = 0.02,
    ensemble: str = "mean",
    magnitude_kinds: tuple[str, ...] = ("device",),
    magnitude_quantile: float = MAGNITUDE_QUANTILE,
    per_router_prior: float | None = None,
    continue_budget: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Per-kind scales, the rarity component, fused tail thresholds for the budget (alarms per router-day)
    and the silence rule. ``continue_budget`` (per kind): the looser budget whose threshold a window must pass
    to join an alarm its router raised (hysteresis; see the module docstring, step 5)."""
    kinds = _kinds(windows)
    active = windows["n_records"].to_numpy() > 0
    t = pd.to_datetime(windows["window_start"])
    span_days = max((t.max() - t.min()) / pd.Timedelta(days=1), 1.0 / 288) if len(t) else 1.0
    router_days = float(windows["device"].nunique() * span_days)
    scales = _robust_scales(raw, kinds, active)
    cal: dict[str, Any] = {"scales": scales, "ensemble": ensemble}
    if ensemble == "mean":
        tables = fit_rarity(windows, kinds, active)
        cal["rarity"] = tables
        cal["rarity_scales"] = _robust_scales(rarity(windows, kinds, tables), kinds, active)
    elif ensemble != "none":
        raise ValueError(f"unknown ensemble {ensemble!r}")
    cal["fusion"] = fusion
    if magnitude_kinds:
        cal["magnitude"] = fit_magnitude(
            windows, kinds, active, kinds_fitted=tuple(magnitude_kinds), q=magnitude_quantile
        )
    zi = robust_z(raw, kinds, scales)
    devices = windows["device"].astype("str").to_numpy()
    z0 = _scored_z(windows, raw, kinds, cal, with_magnitude=False, keys=_slot_keys(windows))
    z = _scored_z(windows, raw, kinds, cal, fused_z=z0)
    thresholds: dict[str, dict[str, Any]] = {}
    detector_threshold = None
    for kind in scales:
        m = (kinds == kind) & active
        n_active = int(m.sum())
        b = float(budget.get(kind, 0.0))
        p = min(max_alarm_fraction, b * router_days / n_active) if n_active else max_alarm_fraction
        heavy_tail = bool(cal.get("magnitude") and kind in cal["magnitude"]["kinds"] and (z[m] > z0[m]).any())
        fit = _tail_fit(z[m], p, u_quantile, heavy_tail)
        thresholds[kind] = {
            **fit,
            "budget_per_router_day": b,
            "active_windows": n_active,
            "expected_alarms_per_router_day": round(p * n_active / router_days, 4),
        }
        bc = float((continue_budget or {}).get(kind, 0.0))
        if bc > b and n_active:
            # an alarm already raised continues while the window stays above the looser budget's threshold
            pc = min(max_alarm_fraction, bc * router_days / n_active)
            thresholds[kind]["continue_threshold"] = min(
                fit["threshold"], _tail_fit(z[m], pc, u_quantile, heavy_tail)["threshold"]
            )
            thresholds[kind]["continue_budget_per_router_day"] = bc
        if per_router_prior is not None and n_active:
            thresholds[kind]["routers"] = _router_thresholds(
                z[m], devices[m], span_days, b, fit["threshold"], u_quantile, max_alarm_fraction, per_router_prior
            )
        if cal.get("magnitude") and kind in cal["magnitude"]["kinds"]:  # the same kind judged without it (key "-")
            thresholds[kind]["threshold_without_magnitude"] = exponential_tail_threshold(
                z0[m], p, (u_quantile, TAIL_FIT_TOP)
            )["threshold"]
        if kind == "device":  # the detector alone, same rule: what the stored estimator's predict() answers
            own = exponential_tail_threshold(zi[m], p, (u_quantile, TAIL_FIT_TOP))["threshold"]
            detector_threshold = scales[kind]["center"] + scales[kind]["scale"] * own
    cal.update(
        {
            "method": METHOD,
            "description": "per entity kind, on windows with records: robust z of the detector score"
            + (" averaged with the rarity component's" if ensemble == "mean" else "")
            + f", station/interface windows fused with their device window ({fusion})"
            + (
                f", {'/'.join(magnitude_kinds)} windows + doublings above the router's own "
                f"{magnitude_quantile:.0%} quantile per event family (shrunk to the fleet's; threshold: the lower of the "
                "empirical (1 - p) quantile and a GPD matched to the 80/90/95 % quantiles with shape up to 0.5, "
                "as the score is no longer bounded)"
                if magnitude_kinds
                else ""
            )
            + (", thresholds per router shrunk to the fleet's" if per_router_prior is not None else "")
            + ", threshold = the "
            "lower of the empirical (1 - p) quantile and an exponential tail matched to the "
            f"{u_quantile:.0%} and {TAIL_FIT_TOP:.0%} quantiles, p from the false-alarm budget; "
            "calibrated = z - threshold, anomalous when > 0; device silence rule: gap > "
            f"{silence_factor} x longest gap of the 24 h before"
            + (
                "; a router's windows above the continuation budget's threshold join an alarm it raised "
                "(device runs with at most one window between, stations/interfaces with their router's alarm); "
                "unflagged windows beside an alarm rank by their distance to that threshold, below 0"
                if any("continue_threshold" in v for v in thresholds.values())
                else ""
            ),
            "fusion": fusion,
            "thresholds": {
                k: {kk: (round(vv, 6) if isinstance(vv, float) else vv) for kk, vv in v.items()}
                for k, v in thresholds.items()
            },
            "detector_threshold": detector_threshold,
            "silence_factor": float(silence_factor),
            "max_alarm_fraction": float(max_alarm_fraction),
            "router_days": round(router_days, 3),
            "tail_quantile": u_quantile,
        }
    )
    if any("continue_threshold" in v for v in thresholds.values()):
        cal["window_seconds"] = _window_seconds(windows, kinds)
        cal["near_miss_ranking"] = True
    return cal


def calibrated_scores(
    windows: pd.DataFrame, raw: np.ndarray, calibration: Mapping[str, Any], with_magnitude: bool = True
) -> np.ndarray:
    """Calibrated score per window (> 0 = anomalous), from the raw detector scores and a fitted calibration.
    ``with_magnitude=False``: device windows without the magnitude term (the unkeyed records' key ``-``, judged
    like a station with its router's state rather than with the router's count of its stations' events)."""
    kinds = _kinds(windows)
    keys = _slot_keys(windows)  # for the device context and the continuation: made once
    z = _scored_z(windows, raw, kinds, calibration, with_magnitude, keys=keys)
    thr = np.zeros(len(z))
    routers: tuple[np.ndarray, list[str]] | None = None  # each window's router, factorised once if needed
    for kind, fit in calibration["thresholds"].items():
        m = kinds == kind
        thr[m] = fit["threshold"] if with_magnitude else fit.get("threshold_without_magnitude", fit["threshold"])
        if with_magnitude and fit.get("routers") and m.any():
            routers = routers or _router_codes(windows)
            codes, names = routers  # each router's own threshold (NaN: none), one lookup each
            own = pd.Series(fit["routers"], dtype="float64").reindex(names).to_numpy()
            at = own[codes[m]]
            thr[m] = np.where(np.isfinite(at), at, thr[m])
    c = z - thr
    active = windows["n_records"].to_numpy() > 0
    sil = silence_score(windows, float(calibration.get("silence_factor", 2.0)), kinds)
    silent = sil > 0

    # quiet device windows (no records) are outside the calibrated population: flagged only when the
    # silence rule holds (silent beyond silence_factor x the usual longest gap); a window the rule flags
    # is anomalous whatever the detector says, ranked by how far beyond the rule it is
    def with_silence(score: np.ndarray) -> np.ndarray:
        score = np.where(active | silent, score, np.minimum(score, -1e-3))
        return np.where(silent, np.maximum(score, sil), score)

    c = with_silence(c)
    dev_fit = calibration["thresholds"].get("device", {})
    window_seconds = calibration.get("window_seconds")
    if with_magnitude and "continue_threshold" in dev_fit and window_seconds and len(c):
        # step 5: an alarm raised continues while the router's windows stay above the continuation threshold
        cc = with_silence(z - float(dev_fit["continue_threshold"]))
        seed = _router_any(windows, c > 0, kinds, keys)
        c = np.where(continued_alarms(windows, seed, cc > 0, float(window_seconds), keys, kinds) & (c <= 0), cc, c)
        # station/interface windows join their router's alarm above their own continuation threshold
        slot = _slots(keys)
        in_alarm = _member(slot, np.unique(slot[(kinds == "device") & (c > 0)]))
        for kind, fit in calibration["thresholds"].items():
            if kind == "device" or "continue_threshold" not in fit:
                continue
            m = (kinds == kind) & in_alarm & (c <= 0)
            ck = z[m] - float(fit["continue_threshold"])
            c[m] = np.where(ck > 0, ck, c[m])
        if calibration.get("near_miss_ranking"):
            c = near_misses(windows, z, c, calibration, float(window_seconds), kinds, slot)
    return c


def near_misses(
    windows: pd.DataFrame,
    z: np.ndarray,
    c: np.ndarray,
    calibration: Mapping[str, Any],
    window_seconds: float,
    kinds: np.ndarray,
    slot: np.ndarray,
) -> np.ndarray:
    """Step 6: unflagged windows with records beside a device window in alarm (the same router, at most one
    window between) rank by their distance to their kind's continuation threshold, kept below 0.
    ``slot``: :func:`_slots` of ``windows``."""
    alarm = np.unique(slot[(kinds == "device") & (c > 0)])
    if not len(alarm):
        return c
    step = int(window_seconds)
    near = np.zeros(len(c), dtype=bool)
    for k in range(-2, 3):  # the merge distance of continued_alarms: at most one window between
        near |= _member(slot + k * step, alarm)
    near &= (c <= 0) & (windows["n_records"].to_numpy() > 0)
    out = c.copy()
    for kind, fit in calibration["thresholds"].items():
        m = near & (kinds == kind)
        if "continue_threshold" not in fit or not m.any():
            continue
        s = z[m] - float(fit["continue_threshold"])
        # above the continuation threshold but not joined (a station beside, not in, its router's alarm):
        # just below 0, in the same order
        s = np.where(s > 0, -1e-6 / (1.0 + s), s)
        out[m] = np.maximum(c[m], s)
    return out


def raw_threshold(calibration: Mapping[str, Any], kind: str = "device") -> float:
    """The raw-score threshold equivalent to the calibrated one for a window of ``kind`` judged on its own
    score (device windows: no fusion): ``raw > this`` <=> calibrated > 0, silence rule aside."""
    if kind == "device" and calibration.get("detector_threshold") is not None:
        return float(calibration["detector_threshold"])
    sc = calibration["scales"][kind]
    return float(sc["center"] + sc["scale"] * calibration["thresholds"][kind]["threshold"])
