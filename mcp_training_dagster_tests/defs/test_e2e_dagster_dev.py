"""End to end under the real ``dagster dev`` (webserver + daemon + code server) on 127.0.0.1.

Drop a real export into the landing folder and nothing else: the sensor must register the file and
launch its ingest run, the automation sensor must then retrain, and the model must land in asset
storage. Stopped with SIGINT to the process group (see dagster-notes §3), SIGKILL as a fallback.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mcp_training_dagster_tests.conftest import HOSTAPD_1824, dagster_cli
from mcp_training_dagster_tests.defs.conftest import REPO_ROOT

STARTUP_TIMEOUT_S = 90
MODEL_TIMEOUT_S = 180
STOP_TIMEOUT_S = 30

QUERY = """
{
  assetNodes {
    assetKey { path }
    assetMaterializations(limit: 1) { timestamp runId }
  }
}
"""




def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log: Path, n: int = 60) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-n:])


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = json.loads(resp.read())
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _asset_state(port: int) -> dict[str, float | None]:
    """asset name -> timestamp (s) of its latest materialisation, or None if never materialised."""
    out: dict[str, float | None] = {}
    for node in _graphql(port, QUERY)["assetNodes"]:
        mats = node["assetMaterializations"]
        out["/".join(node["assetKey"]["path"])] = float(mats[0]["timestamp"]) / 1000.0 if mats else None
    return out


def _materialized_at(port: int) -> dict[str, float]:
    return {k: v for k, v in _asset_state(port).items() if v is not None}


def _group_alive(pgid: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.2)


@pytest.mark.e2e
def test_file_drop_to_model_under_dagster_dev(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "config" / "dagster.yaml", home / "dagster.yaml")
    data = tmp_path / "data"
    landing = data / "exports"
    landing.mkdir(parents=True)
    log_path = tmp_path / "dagster_dev.log"
    port = _free_port()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TRAINING_", "MCP_MODEL_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home.resolve()),
        MCP_TRAINING_DATA_DIR=str(data.resolve()),
        MCP_TRAINING_SENSOR__INTERVAL_SECONDS="2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    cmd = [dagster_cli(), "dev", "-m", "mcp_training_dagster.definitions", "-h", "127.0.0.1", "-p", str(port)]

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        # 1. The webserver answers.
        started = time.monotonic()
        while True:
            assert proc.poll() is None, f"dagster dev exited with {proc.returncode}\n{_tail(log_path)}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() - started < STARTUP_TIMEOUT_S, f"no /server_info after {STARTUP_TIMEOUT_S}s\n{_tail(log_path)}"
            time.sleep(1)
        startup_s = time.monotonic() - started

        # The code location loaded, with our assets and nothing materialised yet.
        deadline = time.monotonic() + 60
        while True:
            try:
                before = _asset_state(port)
                if "anomaly_model" in before:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
                pass
            assert time.monotonic() < deadline, f"code location never served its assets\n{_tail(log_path)}"
            time.sleep(1)
        assert set(before) >= {"raw_export", "validated_records", "training_windows", "anomaly_model", "model_metadata"}
        assert before["anomaly_model"] is None, "fresh DAGSTER_HOME: nothing materialised yet"

        # 2. Drop a real export the way a person would: written elsewhere, then moved in.
        staging = tmp_path / "staging"
        staging.mkdir()
        shutil.copyfile(HOSTAPD_1824, staging / HOSTAPD_1824.name)
        dropped = time.monotonic()
        dropped_wall = time.time()
        os.replace(staging / HOSTAPD_1824.name, landing / HOSTAPD_1824.name)

        # 3. Wait for the sensor -> ingest run -> automation -> training run chain to produce a model.
        materialized: dict[str, float] = {}
        while True:
            assert proc.poll() is None, f"dagster dev died ({proc.returncode})\n{_tail(log_path)}"
            try:
                materialized = _materialized_at(port)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if materialized.get("anomaly_model", 0) >= dropped_wall and "model_metadata" in materialized:
                break
            assert time.monotonic() - dropped < MODEL_TIMEOUT_S, (
                f"no anomaly_model {MODEL_TIMEOUT_S}s after the drop; materialised so far: {sorted(materialized)}\n"
                f"{_tail(log_path)}"
            )
            time.sleep(2)
        drop_to_model_s = time.monotonic() - dropped
        print(f"\n[e2e] dagster dev ready in {startup_s:.1f}s; file drop -> anomaly_model in {drop_to_model_s:.1f}s")

        assert {"raw_export", "validated_records", "training_windows", "anomaly_model"} <= set(materialized)
        assets = data / "assets"
        assert (assets / "anomaly_model.joblib").is_file(), sorted(str(p) for p in assets.rglob("*"))
        assert (assets / "validated_records" / f"{HOSTAPD_1824.name}.parquet").is_file()
        meta = json.loads((assets / "model_metadata.json").read_text())
        assert meta["model_info"]["export_files"] == [HOSTAPD_1824.name]
        assert meta["inference_config"]["score_convention"] == "higher_is_more_anomalous"
        assert not [p for p in assets.rglob("*") if ".tmp-" in p.name]
        # Both runs came from the sensors, not from anyone clicking.
        runs = _graphql(
            port, "{ runsOrError { ... on Runs { results { jobName status tags { key value } } } } }"
        )["runsOrError"]["results"]
        sensors = {t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/sensor_name"}
        assert {"export_file_sensor", "retrain_automation_sensor"} <= sensors, runs
        assert not [r for r in runs if r["status"] in ("FAILURE", "CANCELED")], runs
    finally:
        # 4. Stop the whole process group: SIGINT first, SIGKILL if it does not go.
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        # Children (code server, daemon, run workers) share the group: none may be left running.
        leftover = _group_alive(proc.pid, wait_s=10)
        if leftover:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode is not None, "dagster dev did not exit"
    assert not leftover, f"processes of dagster dev's group survived SIGINT\n{_tail(log_path)}"
