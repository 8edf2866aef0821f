"""The alert writer: one JSON line per alert always, a webhook POST when configured, secrets never logged."""

import logging
import socket

from mcp_training_dagster.domain.alerts import (
    Alert,
    AlertWriter,
    new_check_failures,
    read_alerts,
    redact_url,
    run_url,
)
from mcp_training_dagster_tests.webhook import webhook_receiver


def _alert(what: str = "run of ingest_job for a.json failed in raw_export: truncated JSON") -> Alert:
    return Alert(
        kind="run_failure",
        severity="error",
        what=what,
        asset="raw_export",
        partition="a.json",
        run_id="abc",
        run_url=run_url("http://127.0.0.1:3000/", "abc"),
    )


def test_file_only_when_no_webhook(tmp_path):
    writer = AlertWriter(tmp_path / "alerts" / "alerts.jsonl")
    delivery = writer.write(_alert())
    writer.write(_alert("second"))
    assert delivery.written and delivery.posted is None
    lines = read_alerts(tmp_path / "alerts" / "alerts.jsonl")
    assert [a["what"] for a in lines][1] == "second"
    first = lines[0]
    assert {"time", "kind", "severity", "what", "asset", "partition", "run_id", "run_url", "details"} <= set(first)
    assert first["run_url"] == "http://127.0.0.1:3000/runs/abc"


def test_webhook_receives_the_same_object(tmp_path):
    with webhook_receiver() as hook:
        delivery = AlertWriter(tmp_path / "a.jsonl", hook.url).write(_alert())
    assert delivery.posted and delivery.attempts == 1
    assert hook.alerts == read_alerts(tmp_path / "a.jsonl")


def test_retries_server_errors_then_gives_up_bounded_and_never_logs_the_secret(tmp_path, caplog):
    sleeps: list[float] = []
    with webhook_receiver(statuses=[503, 500]) as hook:
        ok = AlertWriter(tmp_path / "a.jsonl", hook.url, retries=2, sleep=sleeps.append).write(_alert())
    assert ok.posted and ok.attempts == 3 and sleeps == [0.5, 1.0]

    with webhook_receiver(statuses=[500] * 10) as hook, caplog.at_level(logging.DEBUG):
        failed = AlertWriter(tmp_path / "b.jsonl", hook.url, retries=2, sleep=lambda s: None).write(_alert())
    assert failed.written and failed.posted is False and failed.attempts == 3 and len(hook.requests) == 3
    assert "SECRET-TOKEN" not in caplog.text and "127.0.0.1" in caplog.text
    assert read_alerts(tmp_path / "b.jsonl"), "the file has the alert even when the webhook is down"


def test_client_errors_are_not_retried_and_unreachable_hooks_time_out(tmp_path):
    with webhook_receiver(statuses=[404]) as hook:
        d = AlertWriter(tmp_path / "a.jsonl", hook.url, retries=3, sleep=lambda s: None).write(_alert())
    assert d.posted is False and d.attempts == 1 and d.error == "HTTP 404"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = AlertWriter(
        tmp_path / "a.jsonl",
        f"http://127.0.0.1:{port}/x?token=s3cret",
        timeout_seconds=1,
        retries=1,
        sleep=lambda s: None,
    ).write(_alert())
    assert d.posted is False and d.attempts == 2


def test_redaction_keeps_where_and_drops_the_secret():
    assert redact_url("https://user:pw@hooks.slack.com/services/T0/B1/XYZ?x=1") == "https://hooks.slack.com/…"
    assert redact_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"


def test_new_check_failures_start_from_now_and_see_a_late_failure_below_the_newest_id():
    assert new_check_failures(None, [7, 5, 3], limit=50) == [], "first tick: the past is not replayed"
    assert new_check_failures([3, 5, 7], [9, 7, 5, 3], limit=50) == [9]
    # Planned as 6 before 7 and 9 were planned, failed after them: a high-water mark (9) would hide it.
    assert new_check_failures([3, 5, 7, 9], [9, 7, 6, 5, 3], limit=50) == [6]
    assert new_check_failures([3, 5], [5, 3], limit=50) == [], "each failure alerts once"
    # A full window: what is below it was seen long ago (or is older than the sensor).
    assert new_check_failures([5, 6, 7], [8, 7, 6], limit=3) == [8]
    assert new_check_failures([5, 6, 7], [8, 7, 4], limit=3) == [8]
    assert new_check_failures(4, [6, 5, 4, 3], limit=50) == [6, 5], "the older cursor (a high-water id) still works"
