"""Real servers on 127.0.0.1 for the distributed deployment: Debian's PostgreSQL and Redis, moto's
S3 server. Each is started by a fixture in a throwaway directory, in its own session (process
group), and stopped in the fixture's teardown. A missing binary FAILS the test (CI must never skip
it); `.ci/run` installs them (`apt-get install -y postgresql redis-server`). Deselect locally with
``-m "not distributed"``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
S3_KEY, S3_SECRET, S3_REGION = "mcp-training", "mcp-training-secret", "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def start(cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    """Start ``cmd`` in a new session, so teardown can signal it and all its children at once."""
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, **kw)


def _group_gone(proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the leader: a zombie would still count as a member of the group
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 20.0) -> None:
    """Signal the process group, wait until it is gone, then SIGKILL whatever is left of it."""
    for s, w in ((sig, wait_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, s)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + w
        while time.monotonic() < deadline:
            if _group_gone(proc):
                return
            time.sleep(0.1)


def stop_all(procs: list[subprocess.Popen], wait_s: float = 20.0) -> None:
    """SIGTERM every process group at once (they shut down in parallel), then SIGKILL the rest."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not all(_group_gone(p) for p in procs):
        time.sleep(0.1)
    for p in procs:
        stop(p, signal.SIGKILL, wait_s=5)


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s\n{tail(log)}")
        time.sleep(0.2)


def binary(name: str) -> str:
    """A server binary from the system (Debian puts PostgreSQL's in /usr/lib/postgresql/<v>/bin)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        pytest.fail(
            f"{name} not found: install Debian's postgresql and redis-server (.ci/run does: "
            f"apt-get install -y postgresql redis-server), or deselect with -m 'not distributed'"
        )
    return found


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    db: str


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": S3_REGION,
        }

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(key=S3_KEY, secret=S3_SECRET, endpoint_url=self.endpoint, skip_instance_cache=True)

    def new_bucket(self) -> str:
        name = f"mcp-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        return name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster (trust auth, TCP on 127.0.0.1 only, no fsync: it is thrown away)."""
    initdb, postgres = binary("initdb"), binary("postgres")
    root = Path(tempfile.mkdtemp(prefix="mcp-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as Debian's postgres user
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log, port = root / "data", root / "postgres.log", free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "dagster", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    proc = start(
        [
            *as_user,
            postgres,
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(root),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ],
        log,
    )
    try:
        wait_port(port, proc, log)
        import psycopg2

        for _ in range(50):
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="dagster", dbname="postgres")
                break
            except psycopg2.OperationalError:  # listening, still starting up
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE dagster")
        conn.close()
        yield Postgres("127.0.0.1", port, "dagster", "dagster")
    finally:
        stop(proc, signal.SIGINT)  # "fast" shutdown
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A throwaway Redis (no persistence) on 127.0.0.1; yields its URL without a database number."""
    root = Path(tempfile.mkdtemp(prefix="mcp-redis-"))
    port, log = free_port(), root / "redis.log"
    proc = start(
        [
            binary("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
        ],
        log,
    )
    try:
        wait_port(port, proc, log)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3-compatible server on 127.0.0.1 (in memory)."""
    root = Path(tempfile.mkdtemp(prefix="mcp-s3-"))
    port, log = free_port(), root / "moto.log"
    proc = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log)
    try:
        wait_port(port, proc, log)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        stop(proc, wait_s=1)  # in memory, nothing to flush; werkzeug may ignore SIGTERM
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """This process talks to the moto server through the standard AWS variables, as the deployment does."""
    import s3fs

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    s3fs.S3FileSystem.clear_instance_cache()  # cached clients would keep an older endpoint
    yield s3_server
    s3fs.S3FileSystem.clear_instance_cache()
