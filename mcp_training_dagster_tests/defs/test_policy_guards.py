"""The retraining policy's two guards (defs/policy.py), seen from the daemon's side.

The runs in progress are real runs in a real temp instance, created and moved through their states as the
daemon's queued run coordinator and run launcher do (created -> QUEUED -> STARTING -> the run worker executes
it); the policy is evaluated as ``retrain_automation_sensor`` evaluates it, once per tick, with the real
sample exports:

* debounce: while a burst of exports is still being ingested (its ingest runs queued or starting) no
  training is requested; once the burst is ingested, exactly one;
* never two trainings at once: while a training run is in progress new data requests nothing; after it
  ends, one training if that run did not read the new data, none if it did (it already trained on it).
"""

import pytest

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_19, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import Ticks, run_ingest

pytestmark = pytest.mark.slow

FAN_IN = [
    dg.AssetKey(a)
    for a in ("horizon_records", "training_windows", "evaluation_dataset", "anomaly_model", "agent_model")
]
EVENT = dg.DagsterEventType


def _create(
    defs: dg.Definitions, instance: dg.DagsterInstance, job: str, partition: str | None = None
) -> dg.DagsterRun:
    """What a sensor's run request becomes in the instance: a run with its planned materialisations."""
    if partition is not None and not instance.has_dynamic_partition(export_files.name, partition):
        instance.add_dynamic_partitions(export_files.name, [partition])
    tags = {"dagster/partition": partition} if partition else {}
    # Where the daemon would load the job from (a queued run must say so): this project's code location.
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="mcp_training_dagster.definitions"))
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job)
    return instance.create_run_for_job(job_def=defs.resolve_job_def(job), tags=tags, remote_job_origin=origin)


def _report(instance: dg.DagsterInstance, run: dg.DagsterRun, event: dg.DagsterEventType) -> None:
    instance.report_dagster_event(dg.DagsterEvent(event.value, job_name=run.job_name), run_id=run.run_id)


def _launch_and_execute(defs: dg.Definitions, instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """The launcher marks the run STARTING, the run worker executes it (in process: the shipped executor)."""
    if instance.get_run_by_id(run.run_id).status != dg.DagsterRunStatus.STARTING:
        _report(instance, run, EVENT.RUN_STARTING)
    job = InMemoryJob(defs.resolve_job_def(run.job_name))
    execute_run(job, instance.get_run_by_id(run.run_id), instance)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS


def _none(requested: dict[str, int]) -> bool:
    return not any(requested.values())


def _one_training(requested: dict[str, int]) -> bool:
    return all(n == 1 for n in requested.values())


def test_a_burst_of_exports_is_one_training_once_the_burst_is_ingested(defs, instance, landing):
    ticks = Ticks(defs, instance, FAN_IN)
    for sample in (HOSTAPD_1824, SYSTEM_35, SYSTEM_19):
        copy_sample(sample.name, landing)
    # The sensor saw all three files in one tick: three ingest runs, one launched at once, two queued.
    runs = [_create(defs, instance, "ingest_job", s.name) for s in (HOSTAPD_1824, SYSTEM_35, SYSTEM_19)]
    for run in runs:
        _report(instance, run, EVENT.RUN_ENQUEUED)
    _report(instance, runs[0], EVENT.RUN_STARTING)
    assert _none(ticks.requested()), "nothing ingested yet"

    _launch_and_execute(defs, instance, runs[0])
    assert _none(ticks.requested()), "the first export is in, two are still queued"
    _launch_and_execute(defs, instance, runs[1])
    assert _none(ticks.requested()), "one still queued"
    _launch_and_execute(defs, instance, runs[2])
    assert _one_training(ticks.requested()), "the burst is ingested: one training for all of it"
    assert _none(ticks.requested()), "requested once, not again on the next tick"


def test_never_two_trainings_at_once(defs, instance, landing):
    copy_sample(HOSTAPD_1824.name, landing)
    assert run_ingest(defs, instance, HOSTAPD_1824.name).success
    ticks = Ticks(defs, instance, FAN_IN)
    ticks.requested()
    first = _create(defs, instance, "train_job")
    _launch_and_execute(defs, instance, first)
    assert _none(ticks.requested()), "trained on everything there is"

    # A training run is in progress (STARTED) when a new export is ingested: nothing is requested, tick after tick.
    running = _create(defs, instance, "train_job")
    for event in (EVENT.RUN_ENQUEUED, EVENT.RUN_STARTING, EVENT.RUN_START):
        _report(instance, running, event)
    copy_sample(SYSTEM_35.name, landing)
    assert run_ingest(defs, instance, SYSTEM_35.name).success
    assert _none(ticks.requested())
    assert _none(ticks.requested())
    # It ends without having read the new export (here its worker died): the new data gets its one training.
    _report(instance, running, EVENT.RUN_FAILURE)
    assert _one_training(ticks.requested())
    assert _none(ticks.requested()), "once"

    # A training launched (STARTING) before the next export was ingested, and executed after it: it reads that
    # export, so when it has finished nothing more is requested (the same data is not trained on twice).
    launched = _create(defs, instance, "train_job")
    _report(instance, launched, EVENT.RUN_STARTING)
    copy_sample(SYSTEM_19.name, landing)
    assert run_ingest(defs, instance, SYSTEM_19.name).success
    assert _none(ticks.requested())
    _launch_and_execute(defs, instance, launched)
    assert _none(ticks.requested()), "the run that just finished trained on it"
