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

# Bits of an event code's families (event_bits): one table lookup per record answers every "is it a ...".
LEAVE, JOIN, FAIL, RESTART, RADIO_FAULT = 1, 2, 4, 8, 16
_FAMILIES = ((LEAVE, DEAUTH_EVENTS), (JOIN, JOIN_EVENTS), (FAIL, FAILURE_EVENTS), (RESTART, RESTART_EVENTS))


def event_bits(codes: np.ndarray) -> np.ndarray:
    """Per code, its families as bits (LEAVE, JOIN, FAIL, RESTART, RADIO_FAULT): one lookup for all of them."""
    table = np.zeros(len(EVENT_TYPES), dtype=np.uint8)
    for bit, names in (*_FAMILIES, (RADIO_FAULT, RADIO_FAULT_EVENTS)):
        table[[EVENT_TYPES.index(t) for t in names]] |= bit
    return table[codes.astype(np.intp)]


def station_sequence_flags(
    rows: np.ndarray, seq_dev: np.ndarray, seq_mac: np.ndarray, ts: np.ndarray, bits: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per record (record order), from each station's previous record on the same device: a disconnect
    after a disconnect at least REPEAT_LEAVE_SECONDS earlier (no rejoin in between: a kicked station is
    kicked again), and the first join line of a join after a record that was neither a join, a
    disconnect nor a failure (the station rejoined without having left: its radio dropped it).

    ``rows``: the records with a station in (device, station, time) order, ``seq_dev`` and ``seq_mac``
    their device and station codes; ``ts`` and ``bits`` (:func:`event_bits`) per record."""
    n = len(ts)
    repeat_leave = np.zeros(n, dtype=bool)
    unannounced = np.zeros(n, dtype=bool)
    if len(rows) < 2:
        return repeat_leave, unannounced
    b = bits[rows]
    is_leave = (b & LEAVE) != 0
    is_join = (b & JOIN) != 0
    same = np.r_[False, (seq_dev[1:] == seq_dev[:-1]) & (seq_mac[1:] == seq_mac[:-1])]
    t = ts[rows]
    dt = np.r_[0, t[1:] - t[:-1]]
    prev = np.r_[np.uint8(0), b[:-1]]
    prev_leave = (prev & LEAVE) != 0
    repeat_leave[rows] = same & is_leave & prev_leave & (dt >= REPEAT_LEAVE_SECONDS * 1_000_000_000)
    unannounced[rows] = same & is_join & ((prev & (JOIN | LEAVE | FAIL)) == 0)
    return repeat_leave, unannounced


def after_restart(rows: np.ndarray, seq_dev: np.ndarray, dev: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Per record (records in (device, time) order): True when the device logged an interface lifecycle line
    (RESTART_EVENTS) after the same station's previous record on it: after a reboot or a WiFi reload every
    station rejoins without having left, and that is announced by the restart, not a radio dropping it.

    ``rows`` and ``seq_dev`` as for :func:`station_sequence_flags`; ``dev`` and ``bits`` per record."""
    n = len(dev)
    out = np.zeros(n, dtype=bool)
    life = np.flatnonzero(bits & RESTART)
    if len(rows) < 2 or not len(life):
        return out
    # Within a device a record's index orders it in time: key = device x n + index.
    keys = np.sort(dev[life].astype(np.int64) * n + life)
    same = np.r_[False, seq_dev[1:] == seq_dev[:-1]]
    cur = seq_dev.astype(np.int64) * n + rows
    prev = np.r_[cur[:1], cur[:-1]]
    restarted = np.searchsorted(keys, cur, side="right") > np.searchsorted(keys, prev, side="right")
    out[rows] = same & restarted
    return out


def repeat_radio_errors(dev: np.ndarray, ts: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Per record (time order within a device): a radio fault at most REPEAT_RADIO_SECONDS after the
    device's previous radio fault (``bits``: :func:`event_bits` per record)."""
    radio = np.flatnonzero(bits & RADIO_FAULT)
    radio = radio[np.argsort(dev[radio], kind="stable")]  # (device, time) order
    out = np.zeros(len(dev), dtype=bool)
    out[radio[1:]] = (dev[radio[1:]] == dev[radio[:-1]]) & (
        ts[radio[1:]] - ts[radio[:-1]] <= REPEAT_RADIO_SECONDS * 1_000_000_000
    )
    return out
