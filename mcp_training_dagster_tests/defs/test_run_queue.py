"""The run queue as the shipped instance configs set it up, run by Dagster's own queue daemon: which of the queued
runs start. Runs are tagged as the sensors tag them (the verdict and retrain automation sensors' run tags, the
landing sensor's ingest tags); the launcher is Dagster's test launcher, so nothing but the queue's decision is
exercised. The user-visible failure this guards against: a 1,500-file fleet's new model waited 8+ minutes in the
queue behind ~100 verdict runs scoring the exports with the model it was about to replace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test, create_test_daemon_workspace_context
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from mcp_training_dagster.defs.sensors import INGEST_TAGS, RANGE_END, RANGE_START

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(params=["dagster.yaml", "dagster.distributed.yaml"])
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A throwaway instance with the shipped file's run coordinator and concurrency settings."""
    shipped = yaml.safe_load((CONFIG / request.param).read_text())
    overrides = {key: shipped[key] for key in ("run_coordinator", "concurrency")}
    overrides["run_launcher"] = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=overrides) as inst:
        yield inst


def _sensor_tags(defs: dg.Definitions, name: str) -> dict[str, str]:
    sensor = defs.resolve_sensor_def(name)
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    return dict(sensor.run_tags or {})


# Where a queued run says it comes from (the queue requires one; the test launcher never loads it).
ORIGIN = RemoteJobOrigin(
    RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("mcp_training_dagster.definitions"), "__repository__"),
    "__ASSET_JOB",
)


def _queue(instance: dg.DagsterInstance, tags: dict[str, str], n: int = 1) -> list[str]:
    return [
        create_run_for_test(
            instance, job_name="__ASSET_JOB", status=dg.DagsterRunStatus.QUEUED, tags=tags, remote_job_origin=ORIGIN
        ).run_id
        for _ in range(n)
    ]


def _started(instance: dg.DagsterInstance) -> set[str]:
    """One iteration of Dagster's run queue daemon: the runs it launches."""
    with create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as context:
        list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(context))
    return {run.run_id for run in instance.run_launcher.queue()}  # type: ignore[attr-defined]


def _range(k: int) -> dict[str, str]:
    return {RANGE_START: f"router{k:03d}_day00.json", RANGE_END: f"router{k:03d}_day09.json"}


def _lane_limit(instance: dg.DagsterInstance) -> int:
    """How many per-export runs the shipped file lets run at once (all but the slots kept for trainings)."""
    queue = instance.get_concurrency_config().run_queue_config
    assert queue is not None
    (limit,) = [rule["limit"] for rule in queue.tag_concurrency_limits if rule["key"] == "mcp/lane"]
    assert limit < queue.max_concurrent_runs  # a slot is always left for a training
    return int(limit)


def test_a_training_starts_although_many_verdict_ranges_were_queued_before_it(defs, instance) -> None:
    verdicts = _sensor_tags(defs, "verdict_automation_sensor")
    ranges = [_queue(instance, {**verdicts, **_range(k)})[0] for k in range(8)]
    training = _queue(instance, _sensor_tags(defs, "retrain_automation_sensor"))[0]
    assert _started(instance) == {training, *ranges[: _lane_limit(instance)]}


def test_a_new_export_and_a_training_go_before_verdicts(defs, instance) -> None:
    verdicts = _sensor_tags(defs, "verdict_automation_sensor")
    ranges = [_queue(instance, {**verdicts, **_range(k)})[0] for k in range(8)]
    ingest = _queue(instance, {**INGEST_TAGS, **_range(99)})[0]
    training = _queue(instance, _sensor_tags(defs, "retrain_automation_sensor"))[0]
    # one machine: the one per-export slot goes to the new export, the other to the training
    assert _started(instance) == {training, *[ingest, *ranges][: _lane_limit(instance)]}
