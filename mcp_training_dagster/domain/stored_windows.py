"""The training windows as one stored table: written chunk by chunk of whole routers, read back in build_windows' order.

``training_windows`` never holds every window: :func:`write_training_windows` windows the horizon's records a chunk
of whole routers at a time (:func:`~mcp_training_dagster.domain.horizon.windows_by_chunk`) and appends each chunk's
windows to one Parquet file as a row group, with each row's rank (:data:`ORDER_COLUMN`) and the fingerprint of
every window in ``build_windows``' order in the footer. Its readers take it as a :class:`WindowTable`:
:class:`StoredWindows` decodes the columns and rows a caller asks for, row group by row group;
:class:`FrameWindows` is the same interface over a table in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from mcp_training_dagster.domain.horizon import (
    READ_THREADS,
    arrow_table,
    parquet_statistics,
    single_chunk,
    windows_by_chunk,
)
from mcp_training_dagster.domain.report import row_hashes
from mcp_training_dagster.domain.threads import in_order
from mcp_training_dagster.serving.feature_catalog import RECORD_COLUMNS, WindowSpec

ORDER_COLUMN = "entity_order"  # (kind, device, entity) rank: with window_start, the row's place in build_windows' order
FINGERPRINT_KEY = b"mcp.windows_fingerprint"  # the Parquet footer's frame_fingerprint of the windows in that order
CHUNK_RECORDS = 500_000  # records per device chunk of the training windows (~0.7M windows, ~0.2 GB, one row group)
DICTIONARY_COLUMNS = ("device", "entity_kind", "entity")  # Parquet dictionary pages for the keys only: for the
# float features they were most of the write's CPU (see windows_by_chunk's spill) and zstd compresses them anyway


@dataclass(frozen=True)
class WindowRanks:
    """Every device's and entity's rank in the row order ``build_windows`` gives the *whole* records: windows are
    sorted by (kind, device, entity, window), devices and entities numbered by first appearance. A chunk of whole
    devices numbers its own entities, and a station MAC seen by devices of several chunks would be out of place."""

    devices: pd.Index
    entities: pd.Index

    @classmethod
    def of(cls, records: pd.DataFrame, spec: WindowSpec) -> WindowRanks:
        """The ranks as ``serving.features._aggregate`` numbers them (mirrored here; checked against
        ``build_windows`` in the tests)."""
        from mcp_training_dagster.serving.features import DEVICE_ENTITY, ENTITY_KINDS, _merge_uniques

        kinds = [k for k in ENTITY_KINDS if k in spec.entities]
        devices = np.asarray(pd.factorize(records["device"].astype("str"))[1], dtype=object)
        if kinds and kinds[0] != "device":  # devices by first appearance over the kinds' rows, the rest last
            dev = records["device"].astype("str")
            parts = [dev[records["station_mac" if k == "station" else "interface"].notna()] for k in kinds]
            seen = pd.unique(pd.concat(parts).to_numpy(dtype=object)) if parts else np.array([], dtype=object)
            devices = np.concatenate([seen, devices[~pd.Index(devices).isin(seen)]])
        parts_uniques = [
            np.asarray([DEVICE_ENTITY], dtype=object)
            if k == "device"
            else np.asarray(pd.factorize(records["station_mac" if k == "station" else "interface"].astype("str"))[1])
            for k in kinds
        ]
        _, entities = _merge_uniques(parts_uniques)
        return cls(pd.Index(devices, dtype=object), pd.Index(entities, dtype=object))

    def order(self, windows: pd.DataFrame) -> np.ndarray:
        """Per window of any chunk: its (kind, device, entity) rank as one int64 (see :data:`ORDER_COLUMN`)."""
        from mcp_training_dagster.serving.features import ENTITY_KINDS

        def rank(column: pd.Series, index: pd.Index) -> np.ndarray:
            codes, uniques = pd.factorize(column.astype("str"))  # a chunk's few distinct values looked up once
            return np.asarray(index.get_indexer(np.asarray(uniques, dtype=object)), dtype=np.int64)[codes]

        kind = rank(windows["entity_kind"], pd.Index(ENTITY_KINDS, dtype=object))
        dev, ent = rank(windows["device"], self.devices), rank(windows["entity"], self.entities)
        return (kind * len(self.devices) + dev) * max(len(self.entities), 1) + ent


def global_order(entity_order: np.ndarray, window_start: np.ndarray) -> np.ndarray:
    """The permutation putting stored rows (chunk by chunk) in ``build_windows``' order: by (entity_order, window
    start), one int64 key when it fits, ``lexsort`` otherwise. The pair is unique per window."""
    t = np.asarray(window_start).astype("datetime64[s]").astype(np.int64)
    if not len(t):
        return np.zeros(0, dtype=np.int64)
    span = int(t.max() - t.min()) + 1
    if float(entity_order.max() + 1) * span < 2.0**62:
        return np.argsort(entity_order * span + (t - t.min()), kind="stable")
    return np.lexsort((t, entity_order))


def _rows_fingerprint(dtypes: pd.Series, hashes: np.ndarray) -> str:
    """``report.frame_fingerprint`` of a table from its dtypes and its rows' hashes in order."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in dtypes.items()]).encode())
    if len(hashes):
        h.update(np.ascontiguousarray(hashes).tobytes())
    return h.hexdigest()[:32]


def add_kind_counts(counts: dict[str, int], windows: pd.DataFrame) -> None:
    """Add a chunk's windows per entity kind to ``counts`` (tables too long to count in one piece)."""
    for kind, n in windows["entity_kind"].value_counts(sort=False).items():
        counts[str(kind)] = counts.get(str(kind), 0) + int(n)


@dataclass(frozen=True)
class StoredWindowsReport:
    """What :func:`write_training_windows` wrote, counted chunk by chunk (no table of every window exists)."""

    path: str
    records: int
    windows: int
    chunks: int
    by_kind: dict[str, int]
    first_window: pd.Timestamp | None
    last_window: pd.Timestamp | None
    bad_rows: int  # windows with a feature that is not a finite, non-negative number
    fingerprint: str  # report.frame_fingerprint of build_windows(records): the same data version as before


class TrainingWindowsWriter:
    """A sink for :func:`windows_by_chunk`: each chunk's windows appended to one Parquet file as its own row group
    (zstd, written on a thread while the next chunk is windowed), with the per-chunk facts kept for the
    asset's metadata and check. The rows are stored chunk by chunk, each with its :data:`ORDER_COLUMN`.

    The rows' hashes (for the fingerprint) and their order ranks are computed on a third thread: numpy's and
    Arrow's work there releases the GIL, so it overlaps the windowing of the next chunk (10M records: about 17 s
    instead of 20 s on 2 cores); the writer takes the ranks from it. Each thread has at most one chunk in hand, so at most
    three chunks' windows exist at once."""

    def __init__(self, path: str, ranks: WindowRanks, feature_columns: Sequence[str]) -> None:
        self.path, self.ranks, self.features = path, ranks, list(feature_columns)
        self._writer: Any = None
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: Future[None] | None = None
        self._hasher = ThreadPoolExecutor(max_workers=1)
        self._keying: Future[tuple[np.ndarray, np.ndarray]] | None = None
        self.by_kind: dict[str, int] = {}
        self.windows = self.bad_rows = self.chunks = 0
        self.first: pd.Timestamp | None = None
        self.last: pd.Timestamp | None = None
        self.dtypes: pd.Series | None = None
        self._hashes: list[np.ndarray] = []
        self._orders: list[np.ndarray] = []
        self._starts: list[np.ndarray] = []

    def __call__(self, chunk: int, windows: pd.DataFrame) -> None:
        self.chunks += 1
        if self.dtypes is None:
            self.dtypes = windows.dtypes
        self.windows += len(windows)
        add_kind_counts(self.by_kind, windows)
        if len(windows):
            lo, hi = windows["window_start"].min(), windows["window_start"].max()
            self.first = lo if self.first is None else min(self.first, lo)
            self.last = hi if self.last is None else max(self.last, hi)
        bad = np.zeros(len(windows), dtype=bool)
        for name in self.features:  # column by column: no float64 copy of the chunk
            values = windows[name].to_numpy()
            bad |= ~np.isfinite(values) | (values < 0)
        self.bad_rows += int(bad.sum())
        self._starts.append(windows["window_start"].to_numpy())
        # hashed and ranked on a thread of its own, not the writer's: the writer is already as busy as the
        # windowing (tried: the step took longer)
        self._wait_keys()
        keys = self._keying = self._hasher.submit(self._keys, windows)
        self._wait()
        self._pending = self._pool.submit(self._write_chunk, windows, keys)

    def _keys(self, windows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The rows' hashes and order ranks (:meth:`WindowRanks.order`)."""
        return row_hashes(windows), self.ranks.order(windows)

    def _write_chunk(self, windows: pd.DataFrame, keys: Future[tuple[np.ndarray, np.ndarray]]) -> None:
        self._write(arrow_table(windows).append_column(ORDER_COLUMN, pa.array(keys.result()[1])))

    def _write(self, table: Any) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self.path,
                table.schema,
                compression="zstd",
                use_dictionary=[c for c in DICTIONARY_COLUMNS if c in table.column_names],
                write_statistics=parquet_statistics(table.column_names),
            )
        self._writer.write_table(table.cast(self._writer.schema), row_group_size=max(table.num_rows, 1))

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _wait_keys(self) -> None:
        if self._keying is not None:
            keying, self._keying = self._keying, None
            hashes, order = keying.result()
            self._hashes.append(hashes)
            self._orders.append(order)

    def _shutdown(self) -> None:
        """Both threads' last chunks done (an error of either raised), the threads ended in any case."""
        try:
            self._wait()
            self._wait_keys()
        finally:
            self._pool.shutdown(wait=True)
            self._hasher.shutdown(wait=True)

    def close(self, empty: pd.DataFrame, records: int) -> StoredWindowsReport:
        """Finish the file (``empty``: the windows table's shape, written when no chunk came) and report it."""
        self._shutdown()
        if self._writer is None:
            self.dtypes = empty.dtypes
            self._write(arrow_table(empty).append_column(ORDER_COLUMN, pa.array(np.zeros(0, dtype=np.int64))))
        orders = np.concatenate(self._orders) if self._orders else np.zeros(0, dtype=np.int64)
        starts = np.concatenate(self._starts) if self._starts else np.zeros(0, dtype="datetime64[us]")
        hashes = np.concatenate(self._hashes) if self._hashes else np.zeros(0, dtype=np.uint64)
        self._orders, self._starts, self._hashes = [], [], []
        assert self.dtypes is not None
        fingerprint = _rows_fingerprint(self.dtypes, hashes[global_order(orders, starts)])
        self._writer.add_key_value_metadata({FINGERPRINT_KEY: fingerprint.encode()})
        self._writer.close()
        return StoredWindowsReport(
            self.path,
            records,
            self.windows,
            self.chunks,
            self.by_kind,
            self.first,
            self.last,
            self.bad_rows,
            fingerprint,
        )

    def abort(self) -> None:
        try:
            self._shutdown()
        finally:
            if self._writer is not None:
                self._writer.close()


def windows_in_chunks(
    records: pd.DataFrame, spec: WindowSpec, *, max_records: int = CHUNK_RECORDS, since: pd.Timestamp | None = None
) -> pd.DataFrame:
    """``build_windows(records, spec)``, the same table in the same order, windowed chunk by chunk of whole devices
    (:func:`windows_by_chunk`): ``build_windows``' working memory is about a gigabyte per million records at once,
    here that of one chunk; the rows are put back in its order by :class:`WindowRanks` (:func:`global_order`).
    ``since``: only the windows starting then or later, each chunk's dropped as it comes (the order is a sort
    on a unique key, so the kept rows keep their order): the evaluation set's history windows are never held."""
    from mcp_training_dagster.serving.features import build_windows

    def kept(windows: pd.DataFrame) -> pd.DataFrame:
        return windows if since is None else windows[(windows["window_start"] >= since).to_numpy()]

    if len(records) <= max_records:
        return kept(build_windows(records, spec)).reset_index(drop=True)
    # only the columns the windows read go into the chunks' takes (not, e.g., every record's message)
    records = records.loc[:, [c for c in records.columns if c in RECORD_COLUMNS]]
    ranks = WindowRanks.of(records, spec)
    parts: list[pd.DataFrame] = []
    windows_by_chunk(records, spec, max_records=max_records, share=0.0, sink=lambda _, w: parts.append(kept(w)))
    table = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    parts.clear()
    order = global_order(ranks.order(table), table["window_start"].to_numpy())
    return table.take(order).reset_index(drop=True)


def write_training_windows(
    records: pd.DataFrame, spec: WindowSpec, path: str, *, max_records: int = CHUNK_RECORDS
) -> StoredWindowsReport:
    """The windows of ``records`` as one Parquet file at ``path`` with one row group per chunk of whole devices
    (:func:`windows_by_chunk`): at most two chunks' windows in memory, never all of them. The rows are exactly
    ``build_windows(records)``'s, stored chunk by chunk; their order there is restored from :data:`ORDER_COLUMN`
    and ``window_start`` (:func:`global_order`), and the footer holds their fingerprint in that order.

    A caller that hands over its only reference to ``records`` (``write_training_windows(reader(columns), ...)``)
    lets each column be gathered into one Arrow chunk in place (the chunks' takes are about twice as fast over
    one), instead of a copy of every column next to the original."""
    from mcp_training_dagster.serving.features import FEATURE_COLUMNS, empty_windows

    records = records.copy(deep=False)
    for c in records.columns:  # one column at a time: the caller's multi-chunk column goes as its copy comes
        records[c] = single_chunk(records[c])
    writer = TrainingWindowsWriter(path, WindowRanks.of(records, spec), FEATURE_COLUMNS)
    try:
        windows_by_chunk(records, spec, max_records=max_records, share=0.0, sink=writer)
    except BaseException:
        writer.abort()
        raise
    return writer.close(empty_windows(), len(records))


# --- Reading it back: the windows in build_windows' order, chunk by chunk ---------------------------------------


class WindowTable(Protocol):
    """Training windows as training and the scorers read them: positions are rows of ``build_windows``' order;
    ``chunks`` yields whole routers at a time (the calibration relates a router's windows, never two routers')."""

    def __len__(self) -> int: ...

    def column(self, name: str) -> pd.Series:
        """One column of every window, in order."""
        ...

    def rows(self, positions: np.ndarray | None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The windows at ``positions`` (ascending; None: all), in order: every column, or those of ``columns`` the
        table has (a stored table then decodes only them)."""
        ...

    def chunks(
        self, columns: Sequence[str] | None = None, wanted: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        """(positions, windows) of each chunk of whole routers: every column, or those of ``columns`` the table has.
        ``wanted`` (a mask over positions): a chunk with none of them may be left out (a stored one: not decoded),
        and one with some may come as only those (a stored one converts only them to pandas)."""
        ...

    def fingerprint(self) -> str:
        """``report.frame_fingerprint`` of every window in order."""
        ...


class FrameWindows:
    """Windows already in memory: one table, one chunk; with ``max_rows``, chunks of whole routers of at most that
    many windows each (a router with more is a chunk of its own), rows in table order within each: a scoring holds
    one chunk's float64 features and the detector's work arrays, not those of millions of windows."""

    def __init__(self, frame: pd.DataFrame, max_rows: int | None = None) -> None:
        self.frame = frame
        self.max_rows = max_rows

    def __len__(self) -> int:
        return len(self.frame)

    def column(self, name: str) -> pd.Series:
        return self.frame[name]

    def rows(self, positions: np.ndarray | None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        frame = self.frame if columns is None else self.frame.loc[:, [c for c in columns if c in self.frame.columns]]
        return frame if positions is None else frame.iloc[positions]

    def chunks(
        self, columns: Sequence[str] | None = None, wanted: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        frame = self.frame if columns is None else self.frame.loc[:, [c for c in columns if c in self.frame.columns]]
        if self.max_rows is None or len(frame) <= self.max_rows:
            yield np.arange(len(frame)), frame
            return
        codes = pd.factorize(self.frame["device"].astype("str"))[0]
        counts = np.bincount(codes)
        group, g, filled = np.empty(len(counts), dtype=np.int64), 0, 0
        for router, n in enumerate(counts.tolist()):  # routers in order of first appearance, packed up to max_rows
            if filled and filled + n > self.max_rows:
                g, filled = g + 1, 0
            group[router], filled = g, filled + n
        row_group = group[codes]
        for k in range(g + 1):
            at = np.flatnonzero(row_group == k)
            yield at, frame.take(at)

    def fingerprint(self) -> str:
        from mcp_training_dagster.domain.report import frame_fingerprint

        return frame_fingerprint(self.frame)


class StoredWindows:
    """The ``training_windows`` asset's file (:func:`write_training_windows`) read on demand through a Parquet
    reader with row groups (``io_managers.ParquetReader``): the order from two columns, rows and columns as asked,
    chunks as stored. Nothing holds every window's features at once."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.offsets = np.r_[0, np.cumsum(reader.row_group_rows)].astype(np.int64)
        self.names = [c for c in reader.columns if c != ORDER_COLUMN]
        keys = reader([ORDER_COLUMN, "window_start"])
        self.order = global_order(keys[ORDER_COLUMN].to_numpy(), keys["window_start"].to_numpy())  # position -> row
        self.position = np.empty_like(self.order)  # stored row -> position
        self.position[self.order] = np.arange(len(self.order))
        self._starts = keys["window_start"].take(self.order).reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.order)

    def column(self, name: str) -> pd.Series:
        if name == "window_start":
            return self._starts
        return self.reader([name])[name].take(self.order).reset_index(drop=True)

    def rows(self, positions: np.ndarray | None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        names = self.names if columns is None else [c for c in columns if c in self.names]
        stored = self.order if positions is None else self.order[positions]
        by_row = np.argsort(stored, kind="stable")
        ascending = stored[by_row]
        bounds = np.searchsorted(ascending, self.offsets)
        groups = [g for g in range(len(self.offsets) - 1) if bounds[g + 1] > bounds[g]]

        def read(g: int) -> pd.DataFrame:
            return self.reader.row_group(g, names, rows=ascending[bounds[g] : bounds[g + 1]] - self.offsets[g])

        parts = list(in_order(read, groups, READ_THREADS))  # decoding and Arrow's take release the GIL
        if not parts:
            return self.reader.row_group(0, names).iloc[:0] if len(self.offsets) > 1 else self.reader(names)
        table = pd.concat(parts, ignore_index=True)
        del parts
        back = np.empty_like(by_row)
        back[by_row] = np.arange(len(by_row))
        return table.take(back).reset_index(drop=True)

    def chunks(
        self, columns: Sequence[str] | None = None, wanted: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        cols = self.names if columns is None else [c for c in columns if c in self.names]
        for g in range(len(self.offsets) - 1):
            at = self.position[self.offsets[g] : self.offsets[g + 1]]
            if wanted is None:
                yield at, self.reader.row_group(g, cols)
                continue
            keep = wanted[at]  # a sample of whole routers touches some row groups, a few routers of each
            if keep.all():
                yield at, self.reader.row_group(g, cols)
            elif keep.any():
                rows = np.flatnonzero(keep)
                yield at[rows], self.reader.row_group(g, cols, rows=rows)

    def fingerprint(self) -> str:
        stored = self.reader.key_value_metadata.get(FINGERPRINT_KEY)
        if stored:
            return stored.decode()
        hashes = np.zeros(len(self), dtype=np.uint64)
        dtypes = None
        for positions, frame in self.chunks():
            dtypes = frame.dtypes
            hashes[positions] = row_hashes(frame)
        return _rows_fingerprint(dtypes if dtypes is not None else pd.Series(dtype=object), hashes)
