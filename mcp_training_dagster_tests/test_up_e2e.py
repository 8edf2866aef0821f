"""`mcp-training up` as a user runs it: samples in, a first model promoted, another router's export dropped in,
a better-informed model replaces the first, and every export's verdicts follow the new production model.

Real ``dagster dev`` (webserver, daemon, code server) on 127.0.0.1 under the real command; stopped with SIGINT
the way Ctrl-C stops it, and nothing of its process group may survive.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mcp_training_dagster_tests.conftest import HOSTAPD_1824
from mcp_training_dagster_tests.defs.conftest import REPO_ROOT

FIRST_MODEL_TIMEOUT_S = 240
SECOND_MODEL_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pgrep(pattern: str) -> list[int]:
    done = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
    return [int(pid) for pid in done.stdout.split()]


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "mcp-training"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mcp_training_dagster.cli"]


# `up` started the way a script or nohup starts it: SIGINT inherited as ignored through exec. Python then installs
# no KeyboardInterrupt handler of its own; `up` must restore it, for itself and for the dagster dev it starts.
_SIGINT_IGNORED = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])",
]


def _ignores_sigint(pid: int) -> bool:
    """Whether the process ignores SIGINT (its SigIgn mask in /proc; False once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    for line in status.splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


def _leftovers(port: int, home: Path) -> list[int]:
    """This test's processes only (another worker may run a Dagster of its own): dagster dev by exactly its port
    (a bare "-p 4123" also matched another worker's "-p 41234"), what it started by this test's DAGSTER_HOME
    (in each child's --instance-ref); killed, so that nothing is left behind even when the assertion fails."""
    found = sorted({pid for pattern in (rf"(^| )-p {port}( |$)", re.escape(str(home))) for pid in _pgrep(pattern)})
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return found


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TRAINING_", "MCP_MODEL_", "DAGSTER_"))}
    env.update(
        MCP_TRAINING_DATA_DIR=str(data),
        MCP_TRAINING_SENSOR__INTERVAL_SECONDS="2",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


def _production(models: Path) -> str | None:
    try:
        return json.loads((models / "production.json").read_text())["version"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


def _other_router_export(target: Path) -> None:
    """The real hostapd export as another router's service would send it later: same record ids, other device,
    60 days on (the journey's step 3)."""
    doc = json.loads(HOSTAPD_1824.read_text())
    for r in doc["data"]:
        r["timestamp"] = (datetime.fromisoformat(r["timestamp"]) + timedelta(days=60)).isoformat()
        r["device_id"] = 77
        r["device_ip"] = "RT-OTHER-77"
    doc["export_metadata"]["created_at"] = "2025-09-01T00:00:00"
    staging = target.with_name(target.name + ".part")  # written aside, then renamed in: what a person does
    staging.write_text(json.dumps(doc))
    os.replace(staging, target)


def _verdict_versions(home: Path) -> dict[str, str]:
    """export partition -> production version of its latest export_anomalies materialisation."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        out = {}
        for part in instance.get_dynamic_partitions("export_files"):
            recs = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("export_anomalies"), asset_partitions=[part]), limit=1
            ).records
            if recs:
                out[part] = recs[0].asset_materialization.metadata["production_version"].value
        return out


def _runs_not_done(home: Path) -> list[str]:
    """What is still queued or running: the first thing to read when a wait times out."""
    import dagster as dg
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    with dg.DagsterInstance.from_config(str(home)) as instance:
        statuses = [
            DagsterRunStatus.QUEUED,
            DagsterRunStatus.NOT_STARTED,
            DagsterRunStatus.STARTING,
            DagsterRunStatus.STARTED,
        ]
        return [
            f"{r.dagster_run.status.value} {sorted(k.to_user_string() for k in r.dagster_run.asset_selection or [])} "
            f"{r.dagster_run.tags.get('dagster/partition', '')}"
            for r in instance.get_run_records(filters=RunsFilter(statuses=statuses), limit=20)
        ]


def _runs(home: Path) -> list[tuple[str, str, str]]:
    """(run id, status, sensor that launched it) of every run."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [
            (r.dagster_run.run_id, r.dagster_run.status.value, r.dagster_run.tags.get("dagster/sensor_name", ""))
            for r in instance.get_run_records(limit=500)
        ]


def _wait(what: str, cond, timeout: float, proc: subprocess.Popen, out: Path, detail=None):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert proc.poll() is None, (
            f"`mcp-training up` exited ({proc.returncode}) waiting for {what}\n{out.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, (
            f"no {what} after {timeout}s; seen: {detail() if detail else value}; "
            f"not done: {_runs_not_done(out.parent / 'data' / 'dagster_home')}\n"
            f"{out.read_text()[-3000:]}"
        )
        time.sleep(2)


@pytest.mark.e2e
def test_up_retrains_promotes_and_refreshes_verdicts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    models = data / "models"
    home = data / "dagster_home"
    port = _free_port()
    env = _env(data)
    out = tmp_path / "up.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [*_cli(), "up", "--port", str(port)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # 1. The shipped samples become the first production model, with no clicks.
        first = _wait("first production model", lambda: _production(models), FIRST_MODEL_TIMEOUT_S, proc, out)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=10) as resp:
            assert resp.status == 200
        assert (home / ".nux" / "nux.yaml").is_file(), "the community prompt would cover the first view"

        # 2. One `up` per data folder; `train` into the watched folder is refused with one line.
        for args in (["up", "--port", str(_free_port())], ["train", str(HOSTAPD_1824)]):
            second = subprocess.run([*_cli(), *args], env=env, capture_output=True, text=True, timeout=120)
            assert second.returncode != 0, args
            assert "in use by mcp-training up" in second.stderr and "Traceback" not in second.stderr, second.stderr
            assert second.stderr.count("\n") == 1, second.stderr

        # 3. Another router's export (reusing the same record ids) lands: a new model replaces the first.
        _other_router_export(data / "exports" / "export_other_router_20250901.json")
        second_version = _wait(
            "a new production model",
            lambda: (v := _production(models)) != first and v,
            SECOND_MODEL_TIMEOUT_S,
            proc,
            out,
        )
        meta = json.loads((models / f"model_{second_version}" / "metadata.json").read_text())
        assert "export_other_router_20250901.json" in meta["model_info"]["export_files"]

        # 4. All of it came from the sensors, nobody clicked, nothing failed, and no half-written file is left.
        runs = _runs(home)
        assert not [r for r in runs if r[1] in ("FAILURE", "CANCELED")], runs
        assert {"export_file_sensor", "retrain_automation_sensor"} <= {r[2] for r in runs}, runs
        written = [p for d in (data / "assets", models, data / "exports") for p in d.rglob("*")]
        assert not [p for p in written if ".tmp" in p.name or p.name.endswith(".part")], written

        # 5. Every export's verdicts follow the new production model, through lineage; one whose run raced the
        # promotion (it scored with the old model and finished just after) is re-scored too (defs/policy.py).
        verdicts = _wait(
            "verdicts by the new model",
            lambda: (v := _verdict_versions(home)) and set(v.values()) == {second_version} and len(v) == 4 and v,
            180,
            proc,
            out,
            detail=lambda: _verdict_versions(home),
        )
        assert HOSTAPD_1824.name in verdicts
        text = out.read_text()
        assert f"production is now {second_version}" in text, text
        assert "Traceback" not in text
    finally:
        stuck = False
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C does
            try:
                # `up` gives dagster dev 30 s (then SIGKILL and 10 s) and closes its instance: past a minute at load 8.
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                stuck = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        time.sleep(2)
        leftovers = _leftovers(port, home)  # in the finally: nothing left behind when an assertion above failed
    assert proc.returncode is not None
    assert not stuck, f"`mcp-training up` still running 120 s after Ctrl-C\n{out.read_text()[-3000:]}"
    log = home / "dagster-dev.log"
    assert not leftovers, (
        f"dagster dev outlived `mcp-training up`: {leftovers}\n{log.read_text()[-3000:] if log.exists() else ''}"
    )
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.e2e
def test_up_stops_on_sigint_even_when_started_with_sigint_ignored(tmp_path: Path) -> None:
    """`mcp-training up &` from a script: SIGINT arrives ignored, yet Ctrl-C (SIGINT) stops `up` and everything it
    started, as SIGTERM does, without the 30 s timeout and SIGKILL."""
    data, port = tmp_path / "data", _free_port()
    home, out = data / "dagster_home", tmp_path / "up.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [*_SIGINT_IGNORED, *_cli(), "up", "--no-samples", "--port", str(port)],
            env=_env(data),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stopped_in = None
    try:

        def serving() -> bool:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as resp:
                    return resp.status == 200
            return False

        _wait("the Dagster UI", serving, 180, proc, out)
        dev = _pgrep(rf"(^| )-p {port}( |$)")  # dagster dev, then its webserver, daemon and code server
        assert dev, "no dagster dev process"
        started = {proc.pid, *dev, *_pgrep(re.escape(str(home)))}
        assert not [pid for pid in started if _ignores_sigint(pid)], "SIGINT still ignored"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)  # to `up` alone: dagster dev runs in a session of its own
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=90)
            stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        time.sleep(1)
        # Here, not after: dagster dev has a session of its own, so killing `up` above leaves it running; a failed
        # assertion above must not leave it behind either.
        leftovers = _leftovers(port, home)
    text = out.read_text()
    assert stopped_in is not None, f"`mcp-training up` ignored SIGINT\n{text[-3000:]}"
    assert "stopping Dagster" in text and "did not stop" not in text, text[-3000:]
    assert not leftovers, f"dagster dev outlived `mcp-training up`: {leftovers}"
    assert "Traceback" not in text, text[-3000:]
    shutil.rmtree(tmp_path, ignore_errors=True)
