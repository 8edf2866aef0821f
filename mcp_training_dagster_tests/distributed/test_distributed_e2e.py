"""The distributed deployment, run for real on one machine.

Debian's PostgreSQL and Redis and moto's S3 server on 127.0.0.1 (fixtures), then exactly the
commands of docker-compose.yml's Dagster services: the code location's gRPC server, two
``dagster-celery`` workers and the daemon, all configured by ``config/distributed.env`` (only host
names and ports point at the local servers) and ``config/dagster.distributed.yaml``. One export is
put into the bucket's landing prefix and nothing else is done: the sensor must register it and
launch its ingest run, automation must retrain, and the package must appear in the models prefix.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from mcp_training_dagster_tests.conftest import HOSTAPD_1824
from mcp_training_dagster_tests.distributed.conftest import REPO_ROOT, free_port, start, stop_all, tail, wait_port

pytestmark = pytest.mark.distributed

MODEL_TIMEOUT_S = 420
DAGSTER_SERVICES = ("code-location", "worker-1", "worker-2", "daemon")


def compose_commands(code_port: int) -> dict[str, list[str]]:
    """The services' commands from docker-compose.yml, bound to 127.0.0.1 and free ports, with the
    executables taken from this interpreter's environment."""
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    bindir = Path(sys.executable).parent
    out = {}
    for name in DAGSTER_SERVICES:
        cmd = [{"0.0.0.0": "127.0.0.1", "4000": str(code_port)}.get(a, a) for a in services[name]["command"]]
        exe = bindir / cmd[0]
        out[name] = [str(exe) if exe.exists() else cmd[0], *cmd[1:]]
    return out


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_export_in_bucket_to_model_in_bucket(tmp_path, postgres_server, redis_server, s3_server, monkeypatch):
    bucket = s3_server.new_bucket()
    fs = s3_server.filesystem()
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "config" / "dagster.distributed.yaml", home / "dagster.yaml")
    code_port = free_port()

    deployment = env_file(REPO_ROOT / "config" / "distributed.env")
    assert deployment["MCP_TRAINING_DEPLOYMENT"] == "distributed"
    store = f"s3://{bucket}/fleet"
    local = {  # the same deployment, its services found on 127.0.0.1
        **s3_server.env(),
        "MCP_TRAINING_OBJECT_STORE": store,
        "MCP_TRAINING_CELERY_BROKER": f"{redis_server}/0",
        "MCP_TRAINING_CELERY_BACKEND": f"{redis_server}/1",
        "DAGSTER_PG_HOST": postgres_server.host,
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_CODE_LOCATION_HOST": "127.0.0.1",
        "DAGSTER_CODE_LOCATION_PORT": str(code_port),
        "DAGSTER_HOME": str(home),
        "MCP_TRAINING_DATA_DIR": str(data),  # must stay empty: everything goes to the bucket
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # fetched packages: this test's, not the user's cache
        "MCP_TRAINING_SENSOR__INTERVAL_SECONDS": "2",
        # The deployment is under test here, not model selection (tests/domain cover that): one candidate.
        "MCP_MODEL_DETECTOR__CANDIDATES": "[isolation_forest]",
        "MCP_MODEL_EVALUATION__STABILITY_SEEDS": "1",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TRAINING_", "MCP_MODEL_", "DAGSTER_", "AWS_"))}
    env.update(deployment)
    env.update(local)
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")

    commands = compose_commands(code_port)
    procs: dict[str, object] = {}
    logs = {name: tmp_path / f"{name}.log" for name in DAGSTER_SERVICES}
    t0 = time.monotonic()
    try:
        procs["code-location"] = start(commands["code-location"], logs["code-location"], env=env, cwd=REPO_ROOT)
        wait_port(code_port, procs["code-location"], logs["code-location"], timeout=120)
        code_location_s = time.monotonic() - t0
        for name in ("worker-1", "worker-2", "daemon"):
            procs[name] = start(commands[name], logs[name], env=env, cwd=REPO_ROOT)

        # Drop one real export into the landing prefix, the way an uploader would.
        landing = f"{bucket}/fleet/exports"
        fs.pipe_file(f"{landing}/{HOSTAPD_1824.name}", HOSTAPD_1824.read_bytes())
        dropped = time.monotonic()

        # Wait for the rich model's package (the ZIP is published last) in the models prefix.
        models = f"{bucket}/fleet/models"
        package = None
        while package is None:
            for name, p in procs.items():
                assert p.poll() is None, f"{name} exited with {p.returncode}\n{tail(logs[name])}"
            try:
                names = [p.rsplit("/", 1)[-1] for p in fs.ls(models, refresh=True)]
            except FileNotFoundError:
                names = []
            package = next((n for n in names if n.endswith("_deployment.zip") and "_agent5" not in n), None)
            if time.monotonic() - dropped > MODEL_TIMEOUT_S:
                pytest.fail(
                    f"no model package in s3://{models} after {MODEL_TIMEOUT_S}s\n"
                    + "\n".join(f"--- {n}\n{tail(logs[n], 25)}" for n in DAGSTER_SERVICES)
                )
            time.sleep(2)
        to_model_s = time.monotonic() - dropped

        # The instance lives in Postgres: read it as any machine of the deployment would.
        for k, v in {**deployment, **local}.items():
            monkeypatch.setenv(k, v)
        import dagster as dg
        from dagster._core.storage.dagster_run import DagsterRunStatus

        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            deadline = time.monotonic() + 180
            while True:  # model_package's run may still be finishing, and the verdicts follow production
                runs = instance.get_runs()
                # both verdict assets: export_drift reads export_anomalies and may come in a run of its own
                verdicts = all(
                    instance.fetch_materializations(dg.AssetKey(k), limit=1).records
                    for k in ("export_anomalies", "export_drift")
                )
                if runs and verdicts and all(r.is_finished for r in runs):
                    break
                assert time.monotonic() < deadline, [(r.job_name, r.status) for r in runs]
                time.sleep(1)
            assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), [(r.job_name, r.status) for r in runs]
            assert instance.get_dynamic_partitions("export_files") == [HOSTAPD_1824.name]

            run_seconds = {}
            for r in sorted(runs, key=lambda r: instance.get_run_stats(r.run_id).start_time or 0):
                st = instance.get_run_stats(r.run_id)
                run_seconds[f"{r.job_name}:{r.run_id[:8]}"] = round((st.end_time or 0) - (st.start_time or 0), 1)
            step_pids: dict[str, int] = {}
            materialized: set[str] = set()
            for run in runs:
                for rec in instance.all_logs(run.run_id):
                    ev = rec.dagster_event
                    if ev is None:
                        continue
                    if ev.event_type == dg.DagsterEventType.STEP_START:
                        step_pids[f"{run.job_name}:{ev.step_key}"] = ev.pid
                    if ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                        materialized.add(ev.asset_key.to_user_string())

        # Runs and events are rows in Postgres.
        import psycopg2

        with psycopg2.connect(
            host=postgres_server.host, port=postgres_server.port, user="dagster", dbname="dagster"
        ) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT run_id FROM runs")
                assert {r[0] for r in cur.fetchall()} == {r.run_id for r in runs}
                cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'STEP_START'")
                assert cur.fetchone()[0] == len(step_pids)

        # Every step ran in a Celery worker process: its session is one of the two workers' (each
        # worker was started in a session of its own), never the test's.
        workers = {procs["worker-1"].pid: "worker-1", procs["worker-2"].pid: "worker-2"}
        ran_on: dict[str, str] = {}
        for step, pid in step_pids.items():
            assert pid != os.getpid()
            sid = os.getsid(pid)
            assert sid in workers, f"step {step} ran in pid {pid} (session {sid}), not in a Celery worker"
            ran_on[step] = workers[sid]
        # One file on an idle system: ingest and training in one run (file_to_model_job), else ingest_job + automation.
        ingest = {
            s for s in step_pids if s.startswith(("ingest_job:", "file_to_model_job:")) and s.endswith(":raw_export")
        }
        assert ingest and len(step_pids) >= 10, sorted(step_pids)

        # Every asset's objects are in the bucket.
        from mcp_training_dagster.definitions import defs

        # export_incidents reads every export as history: materialised on demand, not by automation.
        all_assets = {k.to_user_string() for k in defs().resolve_asset_graph().get_all_asset_keys()} - {
            "export_incidents"
        }
        assert materialized == all_assets
        for key in sorted(all_assets):
            assert fs.glob(f"{bucket}/fleet/assets/{key}*"), f"no object for {key} in s3://{bucket}/fleet/assets/"
        assert fs.exists(f"{models}/{package.removesuffix('_deployment.zip')}/deployment_manifest.json")

        # Nothing was written to the local data folder.
        assert not data.exists() or not any(data.rglob("*")), sorted(map(str, data.rglob("*")))[:20]

        print(
            f"\ncode location up in {code_location_s:.1f}s; export -> package in {to_model_s:.1f}s; {len(runs)} runs, {len(step_pids)} steps; "
            f"steps per worker: { {w: list(ran_on.values()).count(w) for w in workers.values()} }; "
            f"run durations (s): {run_seconds}"
        )
    finally:
        stop_all(list(procs.values()))
