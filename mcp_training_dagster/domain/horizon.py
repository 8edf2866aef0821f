"""The training fan-in: validated records of every export, each event once, inside the training horizon.

Read column-wise so that millions of records never exist as one wide table more than once: the
union and the horizon are decided on the key columns alone (``id``, ``timestamp``, ``source_file``),
the text columns that tell two copies of an event apart are read only for the rows that share
(timestamp, id) with another row, and the full rows are read last, per export, for the records that
survive. Each export is given as a *reader*: ``reader(columns)`` returns that export's validated
records with those columns (``None``: all of them), so the same code serves in-memory tables (tests,
the CLI's independent evaluation) and Parquet partitions read lazily (the ``horizon_records`` asset).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from mcp_training_dagster.serving.feature_catalog import RECORD_COLUMNS, WindowSpec
from mcp_training_dagster.serving.scoring import SAME_EVENT_COLUMNS, context_span
from mcp_training_dagster.serving.validation import VALID_COLUMNS

# reader(columns) -> the export's validated records with those columns (None: all); a reader with a
# ``columns`` attribute (its schema) is read one column at a time.
Reader = Callable[[Sequence[str] | None], pd.DataFrame]

HORIZON_MIN_SUPPORT = 10  # records a horizon must hold to be anchored at its newest one

KEYS = ("id", "timestamp", "source_file")
BY_FILE_COLUMNS = ["source_file", "records", "kept", "identical_copies_dropped", "id_conflicts_kept"]


@dataclass(frozen=True)
class UnionReport:
    """What the cross-file union did, per export: nothing a user gave us disappears without a count.

    ``identical`` copies of an event already taken from another export were dropped; ``id_conflicts``
    records share an id with a *different* event in another export and were all kept."""

    identical: int
    id_conflicts: int
    by_file: pd.DataFrame  # source_file, records, kept, identical_copies_dropped, id_conflicts_kept

    def lines(self) -> list[str]:
        """One line per export that lost or kept something unusual (for logs and the CLI)."""
        out = []
        for r in self.by_file.itertuples(index=False):
            if r.identical_copies_dropped or r.id_conflicts_kept:
                out.append(
                    f"{r.source_file}: {r.records} records, {r.identical_copies_dropped} identical to records "
                    f"of another export (counted once), {r.id_conflicts_kept} reuse an id of a different "
                    "event elsewhere (kept)"
                )
        return out


@dataclass(frozen=True)
class HorizonRecords:
    """The records inside the training horizon (each event once, ordered by (timestamp, id)) and how they were chosen."""

    records: pd.DataFrame
    union: UnionReport
    distinct: int  # records after the union, before the horizon cut
    cutoff: pd.Timestamp | None
    exports: list[str]  # the exports with at least one record inside the horizon

    @property
    def loaded(self) -> int:
        return len(self.union.by_file)


@dataclass(frozen=True)
class WrittenHorizon:
    """What :func:`write_horizon_records` wrote: :class:`HorizonRecords` with the records in a Parquet file."""

    path: str
    rows: int
    union: UnionReport
    distinct: int
    cutoff: pd.Timestamp | None
    exports: list[str]


@dataclass(frozen=True)
class _Selection:
    """Which rows of the exports (positions in their concatenation in ``names`` order) the horizon keeps, in
    (timestamp, id) order, and the report of the union."""

    names: list[str]
    offsets: np.ndarray
    chosen: np.ndarray
    union: UnionReport
    distinct: int
    cutoff: pd.Timestamp | None
    exports: list[str]


def horizon_bounds(timestamps: np.ndarray, horizon_days: float) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(cutoff, anchor) of the horizon over non-empty ``timestamps``: records with cutoff < t <= anchor are inside.

    The horizon ends at the newest record that has at least ``HORIZON_MIN_SUPPORT`` (10) records, itself
    included, in the ``horizon_days`` up to it (or, when no record has that many, as many as the densest
    such span): a lone record dated years after the rest (a device clock gone wrong) neither moves the
    horizon nor enters training; a real newer export of 10 records or more does move it. Normal data:
    the anchor is simply the newest record. Vectorised: one sort (none for timestamps already in order, as
    the fan-in's are) and one binary search."""
    sorted_ts = timestamps if np.all(timestamps[1:] >= timestamps[:-1]) else np.sort(timestamps)
    span = np.timedelta64(int(round(horizon_days * 86_400_000_000)), "us")
    first_inside = np.searchsorted(sorted_ts, sorted_ts - span, side="right")
    support = np.arange(len(sorted_ts)) - first_inside + 1
    needed = min(HORIZON_MIN_SUPPORT, int(support.max()))
    anchor = pd.Timestamp(sorted_ts[np.flatnonzero(support >= needed)[-1]])
    return anchor - pd.Timedelta(days=horizon_days), anchor


def horizon_filter(records: pd.DataFrame, horizon_days: float) -> tuple[pd.DataFrame, pd.Timestamp | None]:
    """Keep the records within ``horizon_days`` of the newest *supported* record (not of today: exports
    can be old, see :func:`horizon_bounds`); returns them and the cutoff."""
    if records.empty:
        return records, None
    ts = records["timestamp"].to_numpy()
    cutoff, anchor = horizon_bounds(ts, horizon_days)
    keep = (ts > cutoff.to_datetime64()) & (ts <= anchor.to_datetime64())
    return (records if keep.all() else records[keep]), cutoff  # no copy of millions of rows to keep them all


class FrameReader:
    """A reader over a table already in memory (``columns``: what it holds, as a Parquet reader's schema)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def __call__(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.frame if columns is None else self.frame.loc[:, list(columns)]


def router_context(horizon: Callable[..., pd.DataFrame], records: pd.DataFrame, spec: WindowSpec) -> pd.DataFrame:
    """The records of ``records``' routers in a horizon table (``horizon(columns, filters=...)``, e.g. the
    ``horizon_records`` asset read lazily) that can change its windows: the time slice of
    :func:`~mcp_training_dagster.serving.scoring.context_span`, only the columns the windows and the
    same-event test need. Scoring an export with them gives its windows as training saw them, not as the
    export alone would show them (:func:`~mcp_training_dagster.serving.scoring.windows_with_history`)."""
    if records.empty:
        return records.iloc[:0]
    lo, hi = context_span(records, spec)
    columns = list(dict.fromkeys([*RECORD_COLUMNS, *SAME_EVENT_COLUMNS]))
    devices = [str(d) for d in records["device"].unique()]
    # pyarrow applies the filters row by row (and skips the row groups outside them): no second mask here
    return horizon(columns, filters=[("timestamp", ">=", lo), ("timestamp", "<", hi), ("device", "in", devices)])


def frame_readers(frames: Mapping[str, pd.DataFrame | None]) -> dict[str, Reader]:
    """Readers over tables already in memory."""
    return {name: FrameReader(f) for name, f in frames.items() if f is not None and len(f)}


def union_records(frames: Mapping[str, pd.DataFrame | None]) -> tuple[pd.DataFrame, UnionReport]:
    """Records of several exports, each event once, ordered by (timestamp, id) (see :func:`select_records`)."""
    result = select_records(frame_readers(frames), horizon_days=None)
    return result.records, result.union


def select_records(
    readers: Mapping[str, Reader], horizon_days: float | None, columns: Sequence[str] | None = None
) -> HorizonRecords:
    """The union of the exports (each event once) cut to the training horizon (``None``: no cut).

    Exports overlap in time, so one event routinely arrives in several files; counting it twice would
    teach the model double traffic. Only copies of the *same event* (every column of
    :data:`SAME_EVENT_COLUMNS` equal) are merged, the first in (export name, row) order kept; records
    that merely reuse an id are different events and are all kept, counted per file in the report.
    One stable sort by (timestamp, id) serves both the de-duplication and the output order.
    ``columns`` limits the columns of the returned records (default: every column)."""
    sel = _select(readers, horizon_days)
    if sel is None:  # no records at all: an empty table that still has the columns (readers project on them)
        empty = pd.DataFrame(columns=list(columns) if columns is not None else list(VALID_COLUMNS))
        return HorizonRecords(empty, UnionReport(0, 0, pd.DataFrame(columns=BY_FILE_COLUMNS)), 0, None, [])
    records = _read_rows(readers, sel.names, sel.offsets, sel.chosen, columns)
    return HorizonRecords(records, sel.union, sel.distinct, sel.cutoff, sel.exports)


def write_horizon_records(readers: Mapping[str, Reader], horizon_days: float | None, path: str) -> WrittenHorizon:
    """:func:`select_records`' records (every column) written to one Parquet file at ``path``, a row group at a
    time: each is gathered while the writer's thread encodes the one before (10M records: the write, 3 s after
    the gathering, overlaps it). Read back, the file is exactly ``select_records(readers, horizon_days).records``."""
    sel = _select(readers, horizon_days)
    with RowGroupWriter(path) as write:
        if sel is None:  # the empty table of select_records, its columns kept
            write(pd.DataFrame(columns=list(VALID_COLUMNS)))
            return WrittenHorizon(path, 0, UnionReport(0, 0, pd.DataFrame(columns=BY_FILE_COLUMNS)), 0, None, [])
        for block in _row_blocks(readers, sel.names, sel.offsets, sel.chosen):
            write(block)
    return WrittenHorizon(path, len(sel.chosen), sel.union, sel.distinct, sel.cutoff, sel.exports)


def _select(readers: Mapping[str, Reader], horizon_days: float | None) -> _Selection | None:
    """The rows :func:`select_records` keeps (read from the keys alone), None when there are no records."""
    names = sorted(readers)
    ids_parts, ts_parts, file_parts, sizes = [], [], [], []
    file_names = pd.Index([], dtype=object)
    for keys in _map_readers(lambda name: readers[name](list(KEYS)), names):
        codes, uniques = pd.factorize(keys["source_file"].astype("str"))
        file_names = file_names.append(pd.Index(np.asarray(uniques, dtype=object)).difference(file_names))
        file_parts.append(np.asarray(file_names.get_indexer(np.asarray(uniques, dtype=object)))[codes])
        ids_parts.append(keys["id"].to_numpy(dtype=np.int64))
        ts_parts.append(keys["timestamp"].to_numpy(dtype="datetime64[us]").view(np.int64))
        sizes.append(len(keys))
        del keys
    n = int(sum(sizes))
    if n == 0:
        return None
    offsets = np.r_[0, np.cumsum(sizes)]
    ids, ts = np.concatenate(ids_parts), np.concatenate(ts_parts)
    del ids_parts, ts_parts

    order = np.lexsort((ids, ts))
    same = (ts[order][1:] == ts[order][:-1]) & (ids[order][1:] == ids[order][:-1])
    shared = np.r_[same, False] | np.r_[False, same]
    candidates = np.zeros(n, dtype=bool)
    candidates[order[shared]] = True
    dup = np.zeros(n, dtype=bool)
    if candidates.any():  # only rows sharing (timestamp, id) can be copies: compare their text columns
        rows = _read_rows(readers, names, offsets, np.flatnonzero(candidates), SAME_EVENT_COLUMNS)
        dup[candidates] = rows.duplicated(subset=list(SAME_EVENT_COLUMNS), keep="first").to_numpy()
        del rows
    kept = ~dup
    conflict = np.zeros(n, dtype=bool)
    conflict[kept] = _shared_ids(ids[kept])
    file_code = np.concatenate(file_parts)
    del file_parts
    by_file = _by_file(
        file_code,
        np.asarray(file_names, dtype=object),
        {
            "records": np.ones(n, dtype=bool),
            "kept": kept,
            "identical_copies_dropped": dup,
            "id_conflicts_kept": conflict,
        },
    )
    union = UnionReport(int(dup.sum()), int(conflict.sum()), by_file)

    chosen = order[kept[order]]
    distinct = int(kept.sum())
    del order, same, shared, candidates, dup, kept, conflict, ids  # the rows are read next: free the keys first
    cutoff = None
    if horizon_days is not None:
        t = ts[chosen].astype("datetime64[us]")
        cutoff, anchor = horizon_bounds(t, horizon_days)
        chosen = chosen[(t > cutoff.to_datetime64()) & (t <= anchor.to_datetime64())]
        del t
    del ts
    exports = sorted({str(file_names[c]) for c in np.unique(file_code[chosen])})
    del file_code
    return _Selection(names, offsets, chosen, union, distinct, cutoff, exports)


def _shared_ids(ids: np.ndarray) -> np.ndarray:
    """Per element: does another element have the same id (``Series.duplicated(keep=False)``)? Counted with one
    ``bincount`` when the ids span a range not much wider than their number (exports number their records),
    hashed otherwise."""
    if len(ids) == 0:
        return np.zeros(0, dtype=bool)
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo < 4 * len(ids) + 1024:
        shifted = ids - lo
        return np.bincount(shifted)[shifted] > 1
    return pd.Series(ids).duplicated(keep=False).to_numpy()


def single_chunk(column: pd.Series) -> pd.Series:
    """``column`` with its Arrow data in one chunk (a concatenation or a Parquet read leaves many): Arrow's
    take over many chunks resolves the chunk of every row and costs about twice a take over one; the
    concatenation is one sequential copy. Other columns are returned as they are."""
    if not isinstance(column.array, pd.arrays.ArrowExtensionArray):
        return column
    chunked = column.array.__arrow_array__()
    if not isinstance(chunked, pa.ChunkedArray) or chunked.num_chunks < 2:
        return column
    return pd.Series(column.dtype.__from_arrow__(chunked.combine_chunks()), index=column.index, name=column.name)


T = TypeVar("T")
READ_THREADS = 2  # exports read at once (Parquet decoding and Arrow's take release the GIL)


def _map_readers(fn: Callable[[str], T], names: Sequence[str]) -> list[T]:
    """``fn(name)`` for every name, in order; on two threads when there are several (reading is I/O and
    Arrow work outside the GIL: the second core decodes the next export)."""
    if len(names) < 2 or READ_THREADS < 2:
        return [fn(name) for name in names]
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        return list(pool.map(fn, names))


def _by_file(file_code: np.ndarray, files: np.ndarray, masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """Counts per ``source_file`` (sorted by name) of each mask."""
    by_name = np.argsort(files, kind="stable")
    rank = np.empty(len(files), dtype=np.int64)
    rank[by_name] = np.arange(len(files))
    code = rank[file_code]
    out = pd.DataFrame({"source_file": pd.array(files[by_name], dtype="str")})
    for column, mask in masks.items():
        out[column] = np.bincount(code[mask], minlength=len(files)).astype("int64")
    return out


class _Gather:
    """How to read given global rows (positions in the concatenation of the exports in ``names`` order), in that
    order, reading each export once and keeping only its wanted rows: column by column (:meth:`column`, the rows
    in ascending position, then ``perm``) when the exports share one schema, whole tables otherwise."""

    def __init__(self, readers: Mapping[str, Reader], names: list[str], offsets: np.ndarray, rows: np.ndarray):
        self.readers = readers
        # ``rows`` are distinct positions below offsets[-1]: their ascending order and each one's rank in it come
        # from a mask and its running count (linear), not from a sort and a binary search of every row.
        wanted = np.zeros(int(offsets[-1]), dtype=bool)
        wanted[rows] = True
        ascending = np.flatnonzero(wanted)
        bounds = np.searchsorted(ascending, offsets)
        self.local = {name: ascending[bounds[k] : bounds[k + 1]] - offsets[k] for k, name in enumerate(names)}
        self.used = [name for name in names if len(self.local[name])]
        # an export whose every row is wanted is used as read (its positions are 0..n-1 in order): no copy
        self.whole = {name for k, name in enumerate(names) if len(self.local[name]) == offsets[k + 1] - offsets[k]}
        self.perm: np.ndarray | None = None  # the rows' places among the ascending ones (None: they ascend)
        if len(rows) >= 2 and not (rows[1:] > rows[:-1]).all():
            self.perm = (np.cumsum(wanted, dtype=np.int64) - 1)[rows]
        schemas = {tuple(getattr(readers[name], "columns", None) or ()) for name in self.used}
        self.known = list(schemas.pop()) if len(schemas) == 1 else []  # the shared schema's columns, if any

    def wanted_rows(self, name: str, frame: Any) -> Any:
        return frame if name in self.whole else frame.take(self.local[name])

    def column(self, c: str) -> pd.Series:
        """Column ``c`` of the wanted rows in ascending position, its Arrow data in one chunk when ``perm`` follows
        (the one copy before a take; the parts go as it is made)."""
        parts = _map_readers(lambda name: self.wanted_rows(name, self.readers[name]([c])[c]), self.used)
        col = pd.concat(parts, ignore_index=True)  # Arrow columns: chunks over the parts, no copy
        del parts
        return col if self.perm is None else single_chunk(col)

    def table(self, cols: list[str] | None) -> pd.DataFrame:
        """Every wanted row (of ``cols``, None: all) in ascending position, read export by export."""
        parts = _map_readers(lambda name: self.wanted_rows(name, self.readers[name](cols)), self.used)
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)


def _take(column: pd.Series, at: np.ndarray | slice) -> pd.Series:
    """``column``'s values at ``at`` under a new RangeIndex (``Series.take`` also takes its index: 0.9 s at 10M)."""
    values = column.array[at] if isinstance(at, slice) else column.array.take(at)
    return pd.Series(values, name=column.name, copy=False)


def _read_rows(
    readers: Mapping[str, Reader],
    names: list[str],
    offsets: np.ndarray,
    rows: np.ndarray,
    columns: Sequence[str] | None,
) -> pd.DataFrame:
    """The given global rows (positions in the concatenation of the exports in ``names`` order), in
    that order, reading each export once and keeping only its wanted rows."""
    cols = None if columns is None else list(columns)
    gather = _Gather(readers, names, offsets, rows)
    if not gather.used:
        return readers[names[0]](cols).iloc[:0].reset_index(drop=True)
    if gather.known:
        # One column at a time: the peak is the result plus one column, not every export's whole table twice.
        # (Two at once on two threads: 0.7 s less of 11 at 10M records, 0.2-0.4 GB more at the step's peak.)
        def gathered(c: str) -> pd.Series:
            col = gather.column(c)
            return col if gather.perm is None else _take(col, gather.perm)

        return pd.DataFrame({c: gathered(c) for c in (cols if cols is not None else gather.known)}, copy=False)
    table = gather.table(cols)
    return table if gather.perm is None else table.take(gather.perm).reset_index(drop=True)


BLOCK_ROWS = 1 << 20  # rows of a row group written by write_horizon_records (pyarrow's default row group)


def _row_blocks(
    readers: Mapping[str, Reader], names: list[str], offsets: np.ndarray, rows: np.ndarray
) -> Iterator[pd.DataFrame]:
    """``_read_rows(..., rows, None)`` as consecutive blocks of :data:`BLOCK_ROWS` rows: every column is gathered
    first (in ascending position, as :func:`_read_rows` does before its take), then each block is taken from them.
    Same peak as the whole table: the columns, plus a block or two."""
    gather = _Gather(readers, names, offsets, rows)
    if not gather.used:
        yield readers[names[0]](None).iloc[:0].reset_index(drop=True)
        return
    if not gather.known:
        whole = _read_rows(readers, names, offsets, rows, None)
        for lo in range(0, len(whole), BLOCK_ROWS):
            yield whole.iloc[lo : lo + BLOCK_ROWS].reset_index(drop=True)
        return
    columns = {c: gather.column(c) for c in gather.known}
    for lo in range(0, len(rows), BLOCK_ROWS):
        at = slice(lo, lo + BLOCK_ROWS) if gather.perm is None else gather.perm[lo : lo + BLOCK_ROWS]
        yield pd.DataFrame({c: _take(col, at) for c, col in columns.items()}, copy=False)


class RowGroupWriter:
    """A Parquet file written a table at a time, each a row group, encoded on a thread while the caller makes the
    next (as the Parquet IO manager writes: zstd, statistics for :data:`STATISTICS_COLUMNS`). A context manager:
    its end waits for the last write and closes the file, also behind an error."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: Any = None
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: Future[None] | None = None

    def __enter__(self) -> RowGroupWriter:
        return self

    def __call__(self, frame: pd.DataFrame) -> None:
        table = arrow_table(frame)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
        self._pending = self._pool.submit(self._write, table)

    def _write(self, table: Any) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:
            statistics = parquet_statistics(table.column_names)
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd", write_statistics=statistics)
        self._writer.write_table(table.cast(self._writer.schema), row_group_size=max(table.num_rows, 1))

    def __exit__(self, *exc: object) -> None:
        try:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                pending.result()
        finally:
            self._pool.shutdown(wait=True)
            if self._writer is not None:
                self._writer.close()


def device_chunks(devices: pd.Series, max_records: int) -> list[np.ndarray]:
    """Row positions of ``devices`` grouped into chunks of whole devices (first-appearance order), each
    at most ``max_records`` rows unless one device alone has more. Every feature is a function of one
    device's records, so windowing chunk by chunk gives the same windows with a bounded working set."""
    codes, _ = pd.factorize(devices)
    counts = np.bincount(codes[codes >= 0])
    chunk_of = np.zeros(len(counts), dtype=np.int64)
    size, chunk = 0, 0
    for d, c in enumerate(counts):
        if size and size + c > max_records:
            chunk, size = chunk + 1, 0
        chunk_of[d] = chunk
        size += int(c)
    row_chunk = chunk_of[codes]
    order = np.argsort(row_chunk, kind="stable")
    bounds = np.searchsorted(row_chunk[order], np.arange(chunk + 2))
    return [order[bounds[k] : bounds[k + 1]] for k in range(chunk + 1)]


@dataclass(frozen=True)
class ChunkWindows:
    """The windows of one device chunk: how many, where they were written, and the seeded sample kept for a fit."""

    chunk: int  # position in device_chunks' order
    records: int
    windows: int
    sample: pd.DataFrame  # rows of the windows, in their order, each kept with probability ``share``
    path: str | None  # the chunk's windows as an Arrow IPC (Feather, lz4) file; None: not written


PARALLEL_MIN_RECORDS = 2_000_000  # below this, chunks are windowed in this process (a worker costs ~1 s to start)


def write_windows(windows: pd.DataFrame, path: str) -> None:
    """A chunk's windows as an Arrow IPC (Feather) file with lz4: a spill is read back whole, so Parquet's
    dictionary pages (most of its write time for these float columns) buy nothing here; this costs less
    than half Parquet's CPU per window."""
    import pyarrow.feather as feather

    feather.write_feather(arrow_table(windows), path, compression="lz4")


def window_chunk(
    records: pd.DataFrame,
    spec: WindowSpec,
    chunk: int,
    share: float,
    seed: int,
    path: str | None,
    write: Callable[[pd.DataFrame, str], None] = write_windows,
    sink: Callable[[int, pd.DataFrame], None] | None = None,
) -> ChunkWindows:
    """Windows of one chunk of whole devices (see :func:`device_chunks`); the same in any process: its sample
    is drawn by a generator seeded with (``seed``, ``chunk``), not from a stream shared with other chunks.
    ``write(windows, path)`` writes them when ``path`` is given; ``sink(chunk, windows)`` is handed them
    (e.g. :class:`TrainingWindowsWriter`, one row group per chunk)."""
    from mcp_training_dagster.serving.features import build_windows

    windows = build_windows(records, spec)
    keep = np.random.default_rng([seed, chunk]).random(len(windows)) < share
    if path is not None:
        write(windows, path)
    if sink is not None:
        sink(chunk, windows)
    return ChunkWindows(chunk, len(records), len(windows), windows.iloc[np.flatnonzero(keep)], path)


def arrow_table(frame: pd.DataFrame) -> Any:
    """``pa.Table.from_pandas(frame, preserve_index=False)`` without its copy of every numeric column: each column
    of a windows table is contiguous (one float32 block, column-major), so Arrow can use it as it is."""
    columns = {}
    for name in frame.columns:
        values = frame[name]
        array = values.to_numpy() if isinstance(values.dtype, np.dtype) else None
        columns[str(name)] = (
            pa.array(array) if array is not None and array.flags.c_contiguous else pa.Array.from_pandas(values)
        )
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    return pa.table(columns).replace_schema_metadata(schema.metadata)


def windows_by_chunk(
    records: pd.DataFrame,
    spec: WindowSpec,
    *,
    max_records: int,
    share: float = 1.0,
    seed: int = 0,
    folder: str | None = None,
    workers: int = 1,
    parallel_min_records: int = PARALLEL_MIN_RECORDS,
    sink: Callable[[int, pd.DataFrame], None] | None = None,
) -> list[ChunkWindows]:
    """Windows of ``records`` chunk by chunk of whole devices (at most ``max_records`` records each unless one
    device has more), in chunk order: each chunk's windows written to ``folder`` (None: not written) and a
    seeded uniform sample of share ``share`` kept. Every feature is a function of one device's records, so the
    chunks' windows together are exactly ``build_windows(records)``'s.

    From ``parallel_min_records`` records on and with ``workers`` >= 2, the chunks are windowed in that many
    worker processes (spawned, so no thread state is forked), at most ``workers`` chunks handed over at once
    so the parent holds only those copies; the result is identical to windowing them here, which smaller
    inputs do. One process is the default: on this shared 2-core machine (load 3-4) two workers cost 30%
    more CPU (interpreter start, a second heap's fresh pages, the chunks pickled over) and were slower.
    ``sink(chunk, windows)`` is handed each chunk's windows in chunk order, in this process (so no workers)."""
    chunks = device_chunks(records["device"], max_records) if len(records) else []

    def path(k: int) -> str | None:
        return None if folder is None else os.path.join(folder, f"windows_{k:04d}.arrow")

    if len(chunks) > 1:  # every chunk is a take of the records: over one Arrow chunk per column, not many
        records = records.assign(**{str(c): single_chunk(records[c]) for c in records.columns})
    if sink is not None or workers < 2 or len(chunks) < 2 or len(records) < parallel_min_records:
        return _windows_here(records, chunks, spec, share, seed, path, sink)
    out: dict[int, ChunkWindows] = {}
    todo = list(enumerate(chunks))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        running: set[Future[ChunkWindows]] = set()
        while todo or running:
            while todo and len(running) < workers:
                k, rows = todo.pop(0)
                running.add(pool.submit(window_chunk, records.take(rows), spec, k, share, seed, path(k)))
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                out[result.chunk] = result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [out[k] for k in range(len(chunks))]


def _windows_here(
    records: pd.DataFrame,
    chunks: list[np.ndarray],
    spec: WindowSpec,
    share: float,
    seed: int,
    path: Callable[[int], str | None],
    sink: Callable[[int, pd.DataFrame], None] | None = None,
) -> list[ChunkWindows]:
    """The chunks windowed in this process, each chunk's file written on a thread while the next chunk is
    windowed (Arrow's conversion and lz4 release the GIL); at most one write pending, so at most one chunk's
    windows wait for it."""
    out = []
    pending: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=1) as writer:

        def write(windows: pd.DataFrame, file: str) -> None:
            while pending:
                pending.pop().result()
            pending.append(writer.submit(write_windows, windows, file))

        for k, rows in enumerate(chunks):
            out.append(window_chunk(records.take(rows), spec, k, share, seed, path(k), write, sink))
        while pending:
            pending.pop().result()
    return out


# Min/max statistics are written for the columns a read filters row groups on (time, router, id, export) only:
# those of every column (long message strings, 60 features) were a fifth of a stored table's write.
STATISTICS_COLUMNS = ("timestamp", "window_start", "device", "id", "source_file")


def parquet_statistics(columns: Sequence[str]) -> list[str] | bool:
    """``write_statistics`` for a Parquet table of ``columns``: the :data:`STATISTICS_COLUMNS` among them."""
    return [c for c in STATISTICS_COLUMNS if c in columns] or False
