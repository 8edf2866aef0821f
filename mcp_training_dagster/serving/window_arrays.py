"""Array primitives of the window kernel (:mod:`.features`): stable sorts of small integer codes,
numbering in order of first appearance, range maxima. Plain numpy, no feature semantics: each is
a linear pass or a radix sort of 16-bit keys where the data allow, with a general fallback."""

from __future__ import annotations

import numpy as np


def stable_order(primary: np.ndarray, n_primary: int, secondary: np.ndarray, n_secondary: int) -> np.ndarray:
    """Stable argsort by (primary, secondary), both non-negative integer codes."""
    small = np.iinfo(np.uint16).max
    if n_primary * n_secondary <= small:
        return np.argsort((primary * n_secondary + secondary).astype(np.uint16), kind="stable")
    if n_primary * n_secondary <= PAIR_TABLE_LIMIT:
        # Few of the possible pairs occur (a station is on one device or a few): numbered in key order,
        # they fit one 16-bit radix sort, half the work of the two passes below.
        key = primary.astype(np.int32) * np.int32(n_secondary) + secondary.astype(np.int32)
        present = np.zeros(n_primary * n_secondary, dtype=bool)
        present[key] = True
        rank = np.cumsum(present, dtype=np.int32)
        if rank[-1] <= small + 1:
            rank -= 1
            return np.argsort(rank.astype(np.uint16)[key], kind="stable")
    if n_primary <= small and n_secondary <= small:
        o = np.argsort(secondary.astype(np.uint16), kind="stable")
        return o[np.argsort(primary[o].astype(np.uint16), kind="stable")]
    return np.argsort(primary.astype(np.int64) * n_secondary + secondary, kind="stable")


PAIR_TABLE_LIMIT = 1 << 24  # stable_order numbers the occurring pairs through a table up to this size


def device_time_order(dev: np.ndarray, ts: np.ndarray, n_dev: int) -> np.ndarray | None:
    """The permutation putting records in (device, time) order, stably (None: they are already)."""
    n = len(ts)
    by_time = None
    if n > 1 and not (ts[1:] >= ts[:-1]).all():
        by_time = np.argsort(ts, kind="stable")
        dev = dev[by_time]
    if n < 2 or (dev[1:] >= dev[:-1]).all():
        return by_time
    by_dev = np.argsort(dev.astype(np.uint16) if n_dev <= 65535 else dev, kind="stable")
    return by_dev if by_time is None else by_time[by_dev]


def first_appearance(codes: np.ndarray) -> np.ndarray:
    """Integer codes renumbered in order of first appearance: what ``pd.factorize`` gives on the strings
    they stand for (one code per distinct string), without touching the strings. Linear: the first
    index of each code by ``np.minimum.at`` over a table as long as the codes' range (distinct strings),
    then a sort of the distinct codes only. Codes numbered that way already (each at most one more than
    every code before it, from 0) are returned as they are, after one running maximum."""
    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    if codes[0] == 0 and len(codes) > 1:
        seen_max = np.maximum.accumulate(codes[:-1])
        seen_max += 1
        if (codes[1:] <= seen_max).all():
            return codes.astype(np.int64)
        del seen_max
    n = len(codes)
    first = np.full(int(codes.max()) + 1, n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n, dtype=np.int64))
    present = np.flatnonzero(first < n)
    rank = np.zeros(len(first), dtype=np.int64)
    rank[present[np.argsort(first[present])]] = np.arange(len(present))
    return rank[codes]


def range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``max(values[lo:hi])`` per query (0 where the range is empty), from a sparse table: log2(n)
    vectorised levels, no per-query loop."""
    out = np.zeros(len(lo), dtype=np.float64)
    length = hi - lo
    ok = length > 0
    if not ok.any():
        return out
    level = np.zeros(len(lo), dtype=np.int64)
    level[ok] = np.floor(np.log2(length[ok])).astype(np.int64)
    table = values.astype(np.float64)
    for k in range(int(level.max()) + 1):
        if k:
            half = 1 << (k - 1)
            table = np.maximum(table[:-half], table[half:])
        m = ok & (level == k)
        if m.any():
            out[m] = np.maximum(table[lo[m]], table[hi[m] - (1 << k)])
    return out
