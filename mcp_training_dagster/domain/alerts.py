"""Structured alerts for a system nobody watches: one JSON object per event, appended to a file and,
when configured, POSTed to a webhook.

No Dagster import: the sensors in ``defs/alerts.py`` build an :class:`Alert` from what Dagster tells
them (a failed run, a failed check, a freshness state) and hand it to :class:`AlertWriter`. The file is
the record that always exists; the webhook is best effort (timeout, bounded retries) and never blocks
the file. Webhook URLs often carry a token in the path or the query (Slack, Teams, ntfy), so only the
redacted form (:func:`redact_url`) is ever logged or written.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

AlertKind = Literal["run_failure", "check_failure", "drift", "freshness"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Alert:
    """One event a person must hear about. ``what`` is the sentence they read first."""

    kind: AlertKind
    severity: Severity
    what: str
    asset: str | None = None
    partition: str | None = None
    run_id: str | None = None
    run_url: str | None = None
    job: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def run_url(base_url: str | None, run_id: str | None) -> str | None:
    """The run's page in the Dagster UI (``<base>/runs/<id>``), as Dagster's own failure sensors link it."""
    if not base_url or not run_id:
        return None
    return f"{base_url.rstrip('/')}/runs/{run_id}"


def redact_url(url: str) -> str:
    """``https://hooks.example/services/T0/B1/SECRET?token=x`` -> ``https://hooks.example/…``.

    Keeps scheme and host (enough to know where alerts go), drops user info, path and query: the
    places where webhook secrets live."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    hidden = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return urlunsplit((parts.scheme, host, hidden, "", ""))


@dataclass
class Delivery:
    """What happened to one alert: always written to the file; posted or not, after how many attempts."""

    written: bool
    posted: bool | None  # None: no webhook configured
    attempts: int = 0
    error: str | None = None


class AlertWriter:
    """Append alerts to a JSON-lines file and POST them to an optional webhook.

    ``retries`` bounds the extra attempts after the first; the wait doubles from ``backoff_seconds``.
    Only 5xx, 429 and network errors are retried: a 4xx means the request itself is wrong."""

    def __init__(
        self,
        path: Path,
        webhook_url: str | None = None,
        *,
        timeout_seconds: float = 5.0,
        retries: int = 2,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(path)
        self.webhook_url = webhook_url or None
        self.timeout_seconds = timeout_seconds
        self.retries = max(0, retries)
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep

    @property
    def destination(self) -> str:
        """Where alerts go, safe to print."""
        hook = f" and {redact_url(self.webhook_url)}" if self.webhook_url else ""
        return f"{self.path}{hook}"

    def write(self, alert: Alert) -> Delivery:
        line = alert.to_json()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write() of one line on an O_APPEND file: concurrent writers never interleave a line.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)
        if not self.webhook_url:
            return Delivery(written=True, posted=None)
        return self._post(line)

    def _post(self, body: str) -> Delivery:
        assert self.webhook_url
        where = redact_url(self.webhook_url)
        error = None
        for attempt in range(1, self.retries + 2):
            request = urllib.request.Request(
                self.webhook_url,
                data=body.encode("utf-8"),
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "mcp-training-alerts"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                    response.read()
                return Delivery(written=True, posted=True, attempts=attempt)
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    break
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                error = type(reason).__name__ if not isinstance(reason, str) else reason
            if attempt <= self.retries:
                self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
        # The exception text may quote the URL; log only the redacted destination and the error kind.
        log.warning("alert webhook %s failed after %d attempt(s): %s", where, attempt, error)
        return Delivery(written=True, posted=False, attempts=attempt, error=error)


def new_check_failures(seen: list[int] | int | None, failed_ids: list[int], limit: int) -> list[int]:
    """Ids of ``failed_ids`` (the latest ``limit`` failed executions of one check, as fetched now) not
    alerted yet, given ``seen``: the ids of the previous fetch (or, from the older cursor format, a
    high-water id). ``None`` (the first tick) means none: the past is not replayed.

    Not a high-water id alone: Dagster numbers a check execution when it is *planned*, so among parallel
    runs an earlier-planned check can fail after a later-planned one; comparing windows still sees it."""
    if seen is None:
        return []
    if isinstance(seen, int):
        return [i for i in failed_ids if i > seen]
    before = set(seen)
    # A full previous window: anything below its lowest id was fetched (and alerted) long ago or is older.
    floor = min(seen) if len(seen) >= limit else -1
    return [i for i in failed_ids if i not in before and i > floor]


def read_alerts(path: Path) -> list[dict[str, Any]]:
    """Every alert in the file, oldest first (for tests, the CLI and people with ``jq``)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
