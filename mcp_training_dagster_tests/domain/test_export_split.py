"""One export decoded on several cores (domain/export_split.py): always the one-core table, or the one-core path.

The split is normally kept for exports of 16 MiB and more; these tests lower that bar so small real and
quirky files are split too, in real forked processes.
"""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mcp_training_dagster.domain import export_split
from mcp_training_dagster.serving.exports import RECORD_KEYS, read_export
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19
from mcp_training_dagster_tests.serving.test_exports import QUIRKY, _dict_path, record, write_export

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="the split needs fork and memfd (Linux)")


def _parts(processes: int) -> Any:
    """The split into ``processes`` parts whatever the machine's cores (``split_decoder`` caps at them)."""
    return partial(export_split.decode_split, processes=processes) if processes > 1 else None


@pytest.fixture(autouse=True)
def split_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_split, "SPLIT_MIN_BYTES", 0)


def _same_as_one_core(path: Path, processes: int) -> pd.DataFrame:
    got = read_export(path, decode=_parts(processes))
    one = read_export(path)
    pd.testing.assert_frame_equal(got.records, one.records)
    pd.testing.assert_frame_equal(got.records, _dict_path(path))
    assert got.records.attrs == one.records.attrs
    for name, value in vars(one.facts).items():
        if name != "read_processes":
            assert getattr(got.facts, name) == value, name
    return got.records


@pytest.mark.parametrize("processes", [2, 3])
@pytest.mark.parametrize("sample", [HOSTAPD_1824, SYSTEM_19])
def test_real_exports_split_into_parts_give_the_one_core_table(sample: Path, processes: int) -> None:
    got = read_export(sample, decode=_parts(processes))
    assert got.facts.read_processes == processes, "the real export was not split"
    _same_as_one_core(sample, processes)


def _around(quirky: list[Any], where: str) -> list[Any]:
    """The quirky records among 60 plain ones: first, in the middle, last or everywhere."""
    plain = [record(1000 + i) for i in range(60)]
    if where == "first":
        return quirky + plain
    if where == "middle":
        return plain[:30] + quirky + plain[30:]
    if where == "last":
        return plain + quirky
    return [r for q in quirky for r in (q, *plain[:15])]


@pytest.mark.parametrize("where", ["first", "middle", "last", "everywhere"])
@pytest.mark.parametrize("case", sorted(QUIRKY))
def test_quirky_records_in_any_part_give_the_one_core_table(tmp_path: Path, case: str, where: str) -> None:
    path = write_export(tmp_path / f"{case}.json", _around(QUIRKY[case], where))
    _same_as_one_core(path, 3)


def test_a_key_typed_differently_in_two_parts_is_typed_as_one_column(tmp_path: Path) -> None:
    """Integers in one part, text in another: only the whole column can be typed (JSON text), so no split."""
    data = [record(i, device_id=7) for i in range(40)] + [record(i, device_id="GT-AX6000") for i in range(40)]
    path = write_export(tmp_path / "mixed.json", data)
    assert export_split.decode_split(path.read_bytes(), 2) is None
    got = _same_as_one_core(path, 2)
    assert got["device_id"].tolist() == ["7"] * 40 + ["GT-AX6000"] * 40


def test_integers_in_one_part_and_nulls_in_another_stay_integers(tmp_path: Path) -> None:
    data = [record(i, push_attempts=i) for i in range(40)] + [record(i, push_attempts=None) for i in range(40)]
    path = write_export(tmp_path / "ints.json", data)
    assert export_split.decode_split(path.read_bytes(), 2) is not None
    got = _same_as_one_core(path, 2)
    assert str(got["push_attempts"].dtype) == "Int64"


def test_an_unknown_key_in_a_later_part_is_kept(tmp_path: Path) -> None:
    """The child refuses the record (unknown key); the whole file goes the general way, extra kept."""
    data = [record(i) for i in range(60)] + [{**record(99), "vendor_field": 1}]
    path = write_export(tmp_path / "extra.json", data)
    assert export_split.decode_split(path.read_bytes(), 2) is None
    got = _same_as_one_core(path, 2)
    assert got["extra"].iloc[-1] == '{"vendor_field": 1}'


def test_compact_json_is_not_split(tmp_path: Path) -> None:
    """No newline between records: no boundary that is surely outside a string."""
    path = tmp_path / "compact.json"
    path.write_text(json.dumps({"export_metadata": {}, "data": [record(i) for i in range(50)]}))
    assert export_split.find_cuts(path.read_bytes(), 2) is None
    _same_as_one_core(path, 2)


def test_data_before_the_metadata_is_not_split(tmp_path: Path) -> None:
    path = tmp_path / "data_first.json"
    doc = {"data": [record(i) for i in range(50)], "export_metadata": {"total_records": 50}}
    path.write_text(json.dumps(doc, indent=2))
    assert export_split.find_cuts(path.read_bytes(), 2) is None
    _same_as_one_core(path, 2)


def test_boundaries_inside_nested_objects_never_become_records(tmp_path: Path) -> None:
    """Records holding lists of objects: "}, newline {" occurs inside them too. A cut there leaves the
    first part's document unbalanced, so it never decodes into wrong records."""
    nested = [{"k": j, "v": [{"x": 1}, {"y": 2}]} for j in range(3)]
    data = [record(i, structured_data=nested) for i in range(40)]
    path = write_export(tmp_path / "nested.json", data)
    payload = path.read_bytes()
    for parts in (2, 3, 5):
        got = export_split.decode_split(payload, parts)
        if got is not None:
            pd.testing.assert_frame_equal(got["data"], _dict_path(path))
    _same_as_one_core(path, 3)


def test_every_key_survives_a_split_record_by_record(tmp_path: Path) -> None:
    data = [record(i, message=f'm{i} ✓ "q"', device_id=i % 3, pushed_to_ai=bool(i % 2)) for i in range(101)]
    path = write_export(tmp_path / "keys.json", data)
    got = read_export(path, decode=_parts(4))
    assert got.facts.read_processes == 4
    for key in RECORD_KEYS:
        want = [r[key] for r in data]
        have = [None if pd.isna(v) else v for v in got.records[key].tolist()]
        assert have == want, key


def test_a_child_that_never_answers_is_killed_and_reaped() -> None:
    """A part whose child hangs is given up on (the caller then decodes on one core): killed, reaped."""
    memfd = os.memfd_create("test_part")
    ready, done = os.pipe()
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    os.close(done)
    child = export_split._Child(pid, memfd, ready)
    started = time.monotonic()
    assert child.collect(0.2) is None
    assert time.monotonic() - started < 5
    child.reap()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_child_that_fails_gives_none(tmp_path: Path) -> None:
    """A child whose part does not decode writes "failed" and exits: None, nothing left running."""
    payload = b'{"data": [\n  {"id": 1},\n  {"id": 2},\n  {"id": 3, "oops"}\n]\n}'
    cuts = export_split.find_cuts(payload, 2)
    assert cuts is not None
    child = export_split._fork_part(payload, cuts.starts[0], cuts.data_end, last=True)
    assert child.collect(30) is None
    child.reap()
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)


def test_one_core_when_asked_for_one(tmp_path: Path) -> None:
    path = write_export(tmp_path / "one.json", [record(i) for i in range(50)])
    assert read_export(path, decode=_parts(1)).facts.read_processes == 1
    assert export_split.decode_split(path.read_bytes(), 1) is None


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _children() -> set[str]:
    """This process's child processes (every thread's), from /proc."""
    found: set[str] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as fh:
            found.update(fh.read().split())
    return found


def test_nothing_is_left_open_or_running_after_splits_and_fallbacks(tmp_path: Path) -> None:
    plain = write_export(tmp_path / "plain.json", [record(i) for i in range(80)])
    mixed = write_export(
        tmp_path / "mixed.json",
        [record(i, device_id=7) for i in range(40)] + [record(i, device_id="x") for i in range(40)],
    )
    before, children = _open_descriptors(), _children()
    for _ in range(10):
        assert read_export(plain, decode=_parts(2)).facts.read_processes == 2
        assert read_export(mixed, decode=_parts(2)).facts.read_processes == 1
    assert _open_descriptors() == before
    assert _children() == children


def test_a_fork_the_system_refuses_falls_back_to_one_core_leaving_nothing_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a process limit fork raises (EAGAIN): the file is read on one core, no descriptor leaks."""
    path = write_export(tmp_path / "limit.json", [record(i) for i in range(80)])

    def refuse() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refuse)
    before = _open_descriptors()
    for _ in range(5):
        got = read_export(path, decode=_parts(2))
        assert got.facts.read_processes == 1
    assert _open_descriptors() == before
    pd.testing.assert_frame_equal(got.records, _dict_path(path))


def test_descriptors_numbered_above_1024_are_waited_on(tmp_path: Path) -> None:
    """A busy host process (a code server, a worker) may hold a thousand descriptors: select() would refuse."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1200
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the descriptor limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    path = write_export(tmp_path / "busy.json", [record(i) for i in range(80)])
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(max(0, 1100 - _open_descriptors()))]
    try:
        got = read_export(path, decode=_parts(2))
        assert got.facts.read_processes == 2
        pd.testing.assert_frame_equal(got.records, _dict_path(path))
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_signal_at_the_fork_never_runs_the_callers_code_in_the_child(tmp_path: Path) -> None:
    """A Ctrl-C or a run's termination reaching the child as it starts must not unwind into the caller (its
    handlers would run in a copy of the host process): the child ends, the parent reads on one core."""
    import subprocess
    import sys

    path = write_export(tmp_path / "signal.json", [record(i) for i in range(200)])
    code = f"""
import functools, os, signal
from mcp_training_dagster.domain import export_split
from mcp_training_dagster.serving.exports import read_export
export_split.SPLIT_MIN_BYTES = 0
class Boom(BaseException):
    pass
def boom(*_):
    raise Boom()
signal.signal(signal.SIGALRM, boom)
delay = [0.0]
os.register_at_fork(after_in_child=lambda: signal.setitimer(signal.ITIMER_REAL, delay[0]))
parent = os.getpid()
for i in range(300):  # the alarm 10-50 us after the fork: in the child's first steps
    delay[0] = (1 + i % 5) * 1e-5
    try:
        read_export({str(path)!r}, decode=functools.partial(export_split.decode_split, processes=2))
    except Boom:
        if os.getpid() != parent:  # a child unwound into the caller
            print("escaped", flush=True)
            os._exit(3)
        raise
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert "escaped" not in done.stdout
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])


def test_the_settings_decoder_uses_at_most_the_cores_this_process_may_run_on() -> None:
    cores = export_split.usable_cores()
    decoder = export_split.split_decoder(64)
    if cores < 2:
        assert decoder is None
    else:
        assert isinstance(decoder, partial) and decoder.keywords["processes"] == cores
    assert export_split.split_decoder(1) is None
