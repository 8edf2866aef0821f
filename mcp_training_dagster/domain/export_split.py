"""Decoding one large export on several cores, with exactly the table of the one-core path.

Why processes: decoding JSON into Python objects and turning them into columns both hold the GIL, so
threads cannot share that work (it is ~75% of reading a 250 MB export). A forked child sees the file's
bytes without a copy, decodes its share of the records into columns and hands them back as Arrow
buffers in shared memory (a memfd), which the parent maps without copying.

How the records are split: only where the bytes read ``}`` ``,`` newline ``{``. JSON text cannot hold a
raw newline, so that brace is outside any string; the service writes one record per indented block,
so such places exist every few hundred bytes. If the brace closes something other than a record of
``data`` (a nested object, an odd layout), the parts do not decode as records and the caller decodes
the file the usual way.

Why the table is the same: each part becomes columns exactly as :func:`exports.struct_columns` makes
them; a key's parts are joined only when they have one type (text, int64 or bool; a part that is all
null fits any), which is the type the whole column would get. Anything else (a key typed differently
in two parts, a number Arrow does not take, a record the fast decoder refuses, a child that fails or
hangs) returns None, and the caller reads the whole file on one core.

The child is a fork of a host process with threads (a Dagster run, a Celery worker): signals are blocked
across the fork and the child resets SIGINT/SIGTERM before unblocking, so no host handler ever runs in it;
it uses Arrow's system allocator and ends with ``os._exit`` on every path. Linux only (fork + memfd). The
serving copy in a model package does not ship this module: it reads on one core (``exports.read_export``
without a ``decode``).
"""

from __future__ import annotations

import mmap
import os
import re
import select
import signal
import time
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mcp_training_dagster.serving.exports import (
    RAW_COLUMNS,
    RECORD_KEYS,
    Decoder,
    _decode_typed,
    _null_text,
    arrow_column,
    msgspec,
    struct_columns,
)

# Below this many bytes a fork costs more than it saves (~10-20 ms for the fork and the hand-back).
SPLIT_MIN_BYTES = 16 << 20
# Where one record ends and the next begins: "}" "," <newline> "{" (whitespace allowed between).
_BOUNDARY = re.compile(rb"\}[ \t\r]*,[ \t\r]*\n[ \t\r\n]*\{")
# A child is given this long, plus ten times what the parent's own part took, before it is killed and
# the file is decoded on one core instead (a child cannot legitimately take much longer than a parent).
_CHILD_GRACE_S = 60.0
_TYPES = {pa.large_string(): "text", pa.string(): "text", pa.int64(): "int", pa.bool_(): "bool"}

if msgspec is not None:  # (optional in a model package, which then reads exports on one core)
    from mcp_training_dagster.serving.exports import _Record

    _PART_DECODER = msgspec.json.Decoder(list[_Record])  # type: ignore[valid-type]


@dataclass(frozen=True)
class _Cuts:
    """Byte positions: ``ends[i]`` is just past the ``}`` ending part i, ``starts[i]`` the ``{`` opening
    part i + 1; ``data_end`` is just past the ``]`` that closes ``data``."""

    ends: tuple[int, ...]
    starts: tuple[int, ...]
    data_end: int


def split_decoder(processes: int) -> Decoder | None:
    """What to hand ``read_export(decode=...)`` for ``processes`` cores, at most the cores this process may
    run on (None: one core, nothing to try)."""
    processes = min(processes, usable_cores())
    return partial(decode_split, processes=processes) if processes > 1 else None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset), else all."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def find_cuts(payload: bytes, parts: int) -> _Cuts | None:
    """Record boundaries near every 1/parts of the payload, or None when there are not enough (compact
    JSON, a small file) or ``data`` is not the document's last key (then the parts would not be records)."""
    start = max(0, len(payload) - 256)
    tail = payload[start:].rstrip()
    if not tail.endswith(b"}"):
        return None
    data_end = start + len(tail[:-1].rstrip())
    if payload[data_end - 1 : data_end] != b"]":
        return None
    ends: list[int] = []
    starts: list[int] = []
    for k in range(1, parts):
        found = _BOUNDARY.search(payload, max(k * len(payload) // parts, starts[-1] if starts else 0), data_end)
        if found is None:
            break
        ends.append(found.start() + 1)
        starts.append(found.end() - 1)
    return _Cuts(tuple(ends), tuple(starts), data_end) if ends else None


def decode_split(payload: bytes, processes: int) -> dict[str, Any] | None:
    """``{"export_metadata": ..., "data": <raw table>}`` decoded on up to ``processes`` cores, or None
    (then decode on one core): see the module docstring."""
    if msgspec is None or processes < 2 or len(payload) < SPLIT_MIN_BYTES:
        return None
    if not (hasattr(os, "fork") and hasattr(os, "memfd_create")):
        return None
    cuts = find_cuts(payload, processes)
    if cuts is None:
        return None
    children = []
    try:
        bounds = list(zip(cuts.starts, (*cuts.ends[1:], cuts.data_end), strict=True))
        try:
            for k, (lo, hi) in enumerate(bounds):
                children.append(_fork_part(payload, lo, hi, last=k == len(bounds) - 1))
        except OSError:  # no process or memfd to be had (a limit): decode on one core
            return None
        started = time.monotonic()
        first = _decode_first(payload, cuts)
        if first is None:
            return None
        meta, arrays = first
        deadline = time.monotonic() + _CHILD_GRACE_S + 10 * (time.monotonic() - started)  # one for all children
        parts = [arrays]
        for child in children:
            got = child.collect(max(0.0, deadline - time.monotonic()))
            if got is None:
                return None
            parts.append(got)
        records = _merge(parts)
        if records is None:
            return None
        records.attrs["read_processes"] = len(parts)  # (exports moves it into the file's facts)
        return {"export_metadata": meta, "data": records}
    finally:
        _reap_all(children)


def _decode_first(payload: bytes, cuts: _Cuts) -> tuple[Any, dict[str, pa.Array]] | None:
    """The document with only the first part's records (the rest cut out), decoded here."""
    doc = _decode_typed(payload[: cuts.ends[0]] + b"]" + payload[cuts.data_end :])
    if doc is None or not doc["data"] or not isinstance(doc["export_metadata"], dict | None):
        return None
    arrays = part_arrays(doc["data"])
    return None if arrays is None else (doc["export_metadata"], arrays)


def part_arrays(records: list[Any]) -> dict[str, pa.Array] | None:
    """One part's columns: the text keys as :func:`struct_columns` builds them, every other key as Arrow
    types it (None when that is not int64, bool or text: then only the whole column can be typed)."""
    text, general = struct_columns(records, release=True)
    for key, values in general.items():
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return None
        if arr.type not in _TYPES and not pa.types.is_null(arr.type):
            return None
        text[key] = arr
    return text


def _merge(parts: list[dict[str, pa.Array]]) -> pd.DataFrame | None:
    """The raw table from the parts' columns, in order; None when a key's parts differ in type."""
    n = sum(len(next(iter(p.values()))) for p in parts)
    cols: dict[str, Any] = {"record_index": np.arange(n, dtype=np.int64)}
    for key in RECORD_KEYS:
        arrays = [p[key] for p in parts]
        kinds = {_TYPES.get(a.type, "other") for a in arrays if a.null_count < len(a)}
        if len(kinds) > 1 or "other" in kinds:
            return None
        kind = kinds.pop() if kinds else "text"
        typ = {"text": pa.large_string(), "int": pa.int64(), "bool": pa.bool_()}[kind]
        # One contiguous array, as on one core (kept in parts, validation would join the text it scans;
        # measured the same); the copy also frees the child's shared memory. Then the column one core makes.
        cols[key] = arrow_column(pa.concat_arrays([a.cast(typ) for a in arrays]))
    cols["extra"] = _null_text(n)
    cols["non_object"] = _null_text(n)
    return pd.DataFrame(cols, columns=list(RAW_COLUMNS))


class _Child:
    """A forked process decoding one part; its columns come back through a memfd, "done" through a pipe."""

    def __init__(self, pid: int, memfd: int, ready: int):
        self.pid, self.memfd, self.ready = pid, memfd, ready
        self.reaped = False

    def collect(self, timeout: float) -> dict[str, pa.Array] | None:
        """The child's columns, or None when it failed, died or did not answer within ``timeout`` seconds
        (then the caller decodes on one core)."""
        poller = select.poll()  # (not select.select: it refuses descriptors numbered 1024 and above)
        poller.register(self.ready, select.POLLIN)
        if not poller.poll(int(timeout * 1000)) or os.read(self.ready, 1) != b"1":
            return None
        size = os.fstat(self.memfd).st_size
        if not size:
            return None
        view = mmap.mmap(self.memfd, size, prot=mmap.PROT_READ)  # the arrays keep the mapping alive
        batch = pa.ipc.open_stream(pa.py_buffer(view)).read_next_batch()
        return {name: batch.column(name) for name in batch.schema.names}

    def reap(self) -> None:
        """Kill the child if it still runs, wait for it, close its descriptors."""
        if self.reaped:
            return
        self.reaped = True
        try:
            if os.waitpid(self.pid, os.WNOHANG) == (0, 0):  # still running (we gave up on it)
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        except ChildProcessError:  # already reaped (a SIGCHLD handler of the host process)
            pass
        finally:
            _close(self.memfd, self.ready)


def _reap_all(children: list[_Child]) -> None:
    """Every child reaped, even when reaping one raises (an interrupt): then the first error is raised."""
    error: BaseException | None = None
    for child in children:
        try:
            child.reap()
        except BaseException as exc:  # noqa: B036 - re-raised below, once every child is reaped
            error = error or exc
    if error is not None:
        raise error


def _close(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


_ALL_SIGNALS = set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP}


def _fork_part(payload: bytes, lo: int, hi: int, *, last: bool) -> _Child:
    """Fork a child decoding ``payload[lo:hi]`` (records); raises OSError (nothing left open) if it cannot."""
    memfd = os.memfd_create("mcp_export_part", os.MFD_CLOEXEC)
    try:
        ready, done = os.pipe()
    except OSError:
        _close(memfd)
        raise
    # Signals are blocked across the fork, so no handler of the host process (a Ctrl-C, a run's termination)
    # can run in the child before it is inside _child_main, which never returns.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork in a threaded process; the child only decodes, writes to its
            # memfd and _exits (Arrow on the system allocator), touching no lock another thread may hold.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
            if pid == 0:
                _child_main(payload, lo, hi, last=last, memfd=memfd, ready=ready, done=done)
    except OSError:
        _close(memfd, ready, done)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    os.close(done)
    return _Child(pid, memfd, ready)


def _child_main(payload: bytes, lo: int, hi: int, *, last: bool, memfd: int, ready: int, done: int) -> None:
    """The child: decode the part, write its columns to the memfd, say "1" (or "0") on the pipe, _exit."""
    status = b"0"
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):  # the default action (end this process), not the host's handler
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.close(ready)
        pa.set_memory_pool(pa.system_memory_pool())
        # The part as a JSON list: the last one already ends with the "]" that closed data.
        body = b"[" + payload[lo:hi] + (b"" if last else b"]")
        arrays = part_arrays(_PART_DECODER.decode(body))
        if arrays is not None:
            batch = pa.RecordBatch.from_pydict(arrays)
            with os.fdopen(os.dup(memfd), "wb") as fh, pa.ipc.new_stream(fh, batch.schema) as writer:
                writer.write_batch(batch)
            status = b"1"
    except BaseException:  # noqa: B036 - any failure means "decode on one core"; never unwind the parent's stack
        status = b"0"
    finally:
        try:
            os.write(done, status)
        finally:
            os._exit(0)
