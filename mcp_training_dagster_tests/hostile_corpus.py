"""A corpus of hostile export files, generated on demand into a folder (nothing large is shipped).

Each entry is a file the upstream service would never write but a landing folder can receive:
absurd timestamps, ids beyond 64 bits, ambiguous / encrypted / corrupt / unreadable ZIPs, nesting
and ZIP bombs. :func:`build_corpus` writes them and says what must happen to each one, so the
domain, the assets and the sensor are all tested against the same files. Add the next class of
file here, with its expectation, and every layer is tested against it.

Sizes are kept small: the archive limit is set to :data:`CORPUS_LIMIT` (1 MiB) wherever the corpus
is read, so a "bomb" of a few MiB stands for the 1.25 GiB one.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CORPUS_LIMIT = 1024 * 1024  # max_export_bytes used with the corpus
CREATED_AT = "2025-06-27T09:38:14.611774"
GOOD_RECORDS = 20


def record(i: Any, ts: str = "2025-06-27T09:16:56", **overrides: Any) -> dict[str, Any]:
    """One record in the service's real shape (13 keys, in its order)."""
    rec = {
        "id": i,
        "device_id": 3,
        "device_ip": "RT-AX3000-4040-62971F1-C",
        "timestamp": ts,
        "log_level": "info",
        "process_name": "hostapd",
        "message": "eth6: STA 30:d8:75:a2:e2:6a WPA: group key handshake completed (RSN)",
        "raw_message": None,
        "structured_data": '{"priority": 30, "facility": 3, "severity_code": 6}',
        "pushed_to_ai": False,
        "pushed_at": None,
        "push_attempts": 0,
        "last_push_error": None,
    }
    rec.update(overrides)
    return rec


def good_records(n: int = GOOD_RECORDS, start_id: int = 1) -> list[dict[str, Any]]:
    return [record(start_id + i, ts=f"2025-06-27T09:{i % 60:02d}:00") for i in range(n)]


def export_bytes(data: list[Any], *, created_at: str | None = CREATED_AT, fmt: str = "json") -> bytes:
    meta: dict[str, Any] = {"total_records": len(data), "format": fmt}
    if created_at is not None:
        meta["created_at"] = created_at
    return json.dumps({"export_metadata": meta, "data": data}, indent=2).encode("utf-8")


@dataclass(frozen=True)
class Expect:
    """What must happen to one corpus file: it fails with ``fails`` in its one-line error, or it is
    read and validated with exactly ``quarantined`` (reason -> count) and ``valid`` records."""

    fails: str | None = None
    quarantined: dict[str, int] = field(default_factory=dict)
    valid: int = 0


def _patch_zip_member(
    path: Path, *, flag_bits: int | None = None, method: int | None = None, declared_size: int | None = None
) -> None:
    """Rewrite fields of the (single) member in both its local header and the central directory:
    what a hostile tool writes, which Python's zipfile will not produce itself."""
    raw = bytearray(path.read_bytes())
    local, central = raw.index(b"PK\x03\x04"), raw.index(b"PK\x01\x02")
    if flag_bits is not None:
        struct.pack_into("<H", raw, local + 6, flag_bits)
        struct.pack_into("<H", raw, central + 8, flag_bits)
    if method is not None:
        struct.pack_into("<H", raw, local + 8, method)
        struct.pack_into("<H", raw, central + 10, method)
    if declared_size is not None:
        struct.pack_into("<I", raw, local + 22, declared_size)
        struct.pack_into("<I", raw, central + 24, declared_size)
    path.write_bytes(bytes(raw))


def _zip(path: Path, members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, payload in members:
            zf.writestr(name, payload)
    return path


def build_corpus(folder: Path) -> dict[str, Expect]:
    """Write every hostile file into ``folder``; returns file name -> expectation."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Expect] = {}
    good = good_records()

    # -- data integrity: absurd timestamps (created_at 2025-06-27T09:38: tolerance until 06-28T09:38)
    absurd = [
        record(101, ts="2999-01-01T00:00:00"),
        record(102, ts="9999-12-31T23:59:59"),
        record(103, ts="1999-12-31T23:59:59"),
        record(104, ts="1970-01-01T00:00:00"),
        record(105, ts="2025-06-28T10:00:00"),
    ]
    ok_late = [record(106, ts="2025-06-28T09:00:00")]  # within a day of created_at: plausible
    (folder / "absurd_years.json").write_bytes(export_bytes(good + absurd + ok_late))
    out["absurd_years.json"] = Expect(quarantined={"implausible_timestamp": 5}, valid=GOOD_RECORDS + 1)

    # without created_at the file's own time is the reference (set to 2025-06-27 12:00 UTC)
    no_meta = folder / "no_created_at.json"
    no_meta.write_bytes(export_bytes(good + [record(201, ts="2025-07-10T00:00:00")], created_at=None))
    stamp = datetime(2025, 6, 27, 12, 0, tzinfo=timezone.utc).timestamp()
    os.utime(no_meta, (stamp, stamp))
    out["no_created_at.json"] = Expect(quarantined={"implausible_timestamp": 1}, valid=GOOD_RECORDS)

    # -- ids beyond 64 bits: those records quarantined, the file's good records kept
    # (all ids JSON integers: a homogeneous column is what used to overflow; text ids were always text)
    huge = [record(2**70), record(10**30), record(-(2**64)), record(2**64)]
    (folder / "huge_ids.json").write_bytes(export_bytes(good + huge))
    out["huge_ids.json"] = Expect(quarantined={"invalid_id": 4}, valid=GOOD_RECORDS)
    (folder / "huge_counter.json").write_bytes(export_bytes(good[:-1] + [record(99, push_attempts=2**70)]))
    out["huge_counter.json"] = Expect(valid=GOOD_RECORDS)

    # -- archives
    doc = export_bytes(good, fmt="zip")
    _zip(folder / "two_data_json.zip", [("data.json", doc), ("backup/data.json", export_bytes(good[:3], fmt="zip"))])
    out["two_data_json.zip"] = Expect(fails="ambiguous ZIP export: 2 members named data.json")

    enc = _zip(folder / "encrypted.zip", [("data.json", doc)], zipfile.ZIP_STORED)
    _patch_zip_member(enc, flag_bits=0x1)
    out["encrypted.zip"] = Expect(fails="is encrypted")

    method = _zip(folder / "deflate64.zip", [("data.json", doc)], zipfile.ZIP_STORED)
    _patch_zip_member(method, method=9)  # Deflate64: common in Windows tools, not readable by zipfile
    out["deflate64.zip"] = Expect(fails="compression method 9")

    crc = _zip(folder / "bad_crc.zip", [("data.json", doc)], zipfile.ZIP_STORED)
    raw = bytearray(crc.read_bytes())
    at = raw.index(b"RT-AX3000")
    raw[at] = ord("X")  # one byte of the stored member changed: CRC mismatch
    crc.write_bytes(bytes(raw))
    out["bad_crc.zip"] = Expect(fails="Bad CRC-32")

    z = _zip(folder / "corrupt_deflate.zip", [("data.json", doc)])
    raw = bytearray(z.read_bytes())
    start = raw.index(b"data.json") + len(b"data.json")
    for i in range(start + 20, start + 60):
        raw[i] ^= 0x5A  # scramble the deflate stream
    z.write_bytes(bytes(raw))
    out["corrupt_deflate.zip"] = Expect(fails="cannot be decompressed")

    lying = _zip(folder / "lying_size.zip", [("data.json", doc)])
    _patch_zip_member(lying, declared_size=100)  # header claims 100 bytes: the data says otherwise
    out["lying_size.zip"] = Expect(fails="cannot be decompressed")

    # a ZIP bomb in miniature: a few KB that expand past the limit (the 1.25 GiB one is the same class)
    bomb_payload = export_bytes(good, fmt="zip")[:-1] + b" " * (4 * CORPUS_LIMIT) + b"}"
    _zip(folder / "zip_bomb.zip", [("data.json", bomb_payload)])
    out["zip_bomb.zip"] = Expect(fails=f"over the limit of {CORPUS_LIMIT:,} bytes")

    (folder / "too_big_plain.json").write_bytes(export_bytes(good)[:-1] + b" " * (2 * CORPUS_LIMIT) + b"}")
    out["too_big_plain.json"] = Expect(fails=f"over the limit of {CORPUS_LIMIT:,} bytes")

    # -- JSON nesting bombs: at the top, and inside one record
    depth = 100_000
    (folder / "nesting_bomb.json").write_bytes(b'{"data": ' + b"[" * depth + b"]" * depth + b"}")
    out["nesting_bomb.json"] = Expect(fails="nested too deeply")
    inner = b"[" * depth + b"]" * depth
    body = export_bytes([record(1, extra=None)]).replace(b'"extra": null', b'"extra": ' + inner)
    (folder / "nesting_in_record.json").write_bytes(body)
    out["nesting_in_record.json"] = Expect(fails="nested too deeply")
    return out


def plant_landing_links(landing: Path, outside: Path) -> dict[str, str]:
    """Entries of a landing folder that must never be read: name -> why. ``outside`` is a folder
    outside the data root; an export is written there for one of the links to point at."""
    outside.mkdir(parents=True, exist_ok=True)
    foreign = outside / "export_elsewhere.json"
    foreign.write_bytes(export_bytes(good_records()))
    (landing / "passwd.json").symlink_to("/etc/passwd")
    (landing / "foreign_export.json").symlink_to(foreign)
    (landing / "climb.json").symlink_to(os.path.relpath(foreign, landing))  # relative: ../../outside/...
    return {
        "passwd.json": "outside the landing folder",
        "foreign_export.json": "outside the landing folder",
        "climb.json": "outside the landing folder",
    }
