"""Per-record flags from each station's or device's previous record (repeat leaves, unannounced joins,
restarts in between, repeat radio errors), for :mod:`.features`: sequences over records in
(device, ..., time) order, linear passes and table lookups of event codes."""

from __future__ import annotations

import numpy as np

from mcp_training_dagster.serving.events import EVENT_TYPES
from mcp_training_dagster.serving.feature_catalog import (
    DEAUTH_EVENTS,
    FAILURE_EVENTS,
    JOIN_EVENTS,
    RADIO_FAULT_EVENTS,
    RESTART_EVENTS,
)

REPEAT_LEAVE_SECONDS = 5
REPEAT_RADIO_SECONDS = 600


def is_event(codes: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Per code: is it one of the event types ``names`` (a table lookup, not a sort as ``np.isin``)."""
    table = np.zeros(len(EVENT_TYPES), dtype=bool)
    table[[EVENT_TYPES.index(t) for t in names]] = True
    return table[codes]


def station_sequence_flags(
    rows: np.ndarray, dev: np.ndarray, mac: np.ndarray, ts: np.ndarray, event: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per record (record order), from each station's previous record on the same device: a disconnect
    after a disconnect at least REPEAT_LEAVE_SECONDS earlier (no rejoin in between: a kicked station is
    kicked again), and the first join line of a join after a record that was neither a join, a
    disconnect nor a failure (the station rejoined without having left: its radio dropped it)."""
    n = len(dev)
    repeat_leave = np.zeros(n, dtype=bool)
    unannounced = np.zeros(n, dtype=bool)
    if len(rows) < 2:
        return repeat_leave, unannounced
    ev = event[rows]
    is_leave = is_event(ev, DEAUTH_EVENTS)
    is_join = is_event(ev, JOIN_EVENTS)
    is_fail = is_event(ev, FAILURE_EVENTS)
    same = np.r_[False, (dev[rows[1:]] == dev[rows[:-1]]) & (mac[rows[1:]] == mac[rows[:-1]])]
    t = ts[rows]
    dt = np.r_[0, t[1:] - t[:-1]]
    prev_leave = np.r_[False, is_leave[:-1]]
    prev_join = np.r_[False, is_join[:-1]]
    prev_fail = np.r_[False, is_fail[:-1]]
    repeat_leave[rows] = same & is_leave & prev_leave & (dt >= REPEAT_LEAVE_SECONDS * 1_000_000_000)
    unannounced[rows] = same & is_join & ~prev_join & ~prev_leave & ~prev_fail
    return repeat_leave, unannounced


def after_restart(rows: np.ndarray, dev: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Per record (records in (device, time) order): True when the device logged an interface lifecycle line
    (RESTART_EVENTS) after the same station's previous record on it: after a reboot or a WiFi reload every
    station rejoins without having left, and that is announced by the restart, not a radio dropping it."""
    n = len(dev)
    out = np.zeros(n, dtype=bool)
    life = np.flatnonzero(is_event(event, RESTART_EVENTS))
    if len(rows) < 2 or not len(life):
        return out
    # Within a device a record's index orders it in time: key = device x n + index.
    keys = np.sort(dev[life].astype(np.int64) * n + life)
    same = np.r_[False, dev[rows[1:]] == dev[rows[:-1]]]
    cur = dev[rows].astype(np.int64) * n + rows
    prev = np.r_[cur[:1], cur[:-1]]
    restarted = np.searchsorted(keys, cur, side="right") > np.searchsorted(keys, prev, side="right")
    out[rows] = same & restarted
    return out


def repeat_radio_errors(dev: np.ndarray, ts: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Per record (time order within a device): a radio fault at most REPEAT_RADIO_SECONDS after the
    device's previous radio fault."""
    radio = np.flatnonzero(is_event(event, RADIO_FAULT_EVENTS))
    radio = radio[np.argsort(dev[radio], kind="stable")]  # (device, time) order
    out = np.zeros(len(dev), dtype=bool)
    out[radio[1:]] = (dev[radio[1:]] == dev[radio[:-1]]) & (
        ts[radio[1:]] - ts[radio[:-1]] <= REPEAT_RADIO_SECONDS * 1_000_000_000
    )
    return out
