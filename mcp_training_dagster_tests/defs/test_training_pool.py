"""Two training runs never fit at once: the "training" concurrency pool with the shipped instance config's limit.

The landing sensor's file_to_model_job and an automation training run can be created in the same second (each
guard saw no other run). The fitting steps (anomaly_model, agent_model) share Dagster's pool "training", and the
shipped ``config/dagster.yaml`` limits every pool to one step: a second run's fitting step waits for the slot.
Real definitions, a real temp instance configured with the shipped ``concurrency`` block, a real run in a thread;
the other training run holds the slot as a run executing anomaly_model holds it (Dagster's own claim call).
"""

import threading
import time
from pathlib import Path

import pytest
import yaml

import dagster as dg
from mcp_training_dagster.defs.assets.training import TRAINING_POOL
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import run_ingest

REPO_ROOT = Path(__file__).resolve().parents[2]
FITTING = {"anomaly_model", "agent_model"}


def shipped_concurrency(name: str) -> dict:
    return yaml.safe_load((REPO_ROOT / "config" / name).read_text())["concurrency"]


@pytest.mark.parametrize("name", ["dagster.yaml", "dagster.distributed.yaml"])
def test_the_shipped_instances_allow_one_fitting_step_at_a_time(name):
    assert shipped_concurrency(name)["pools"]["default_limit"] == 1


def test_the_fitting_steps_are_in_the_training_pool(defs):
    job = defs.resolve_job_def("file_to_model_job")
    pools = {node.name: node.definition.pool for node in job.graph.node_dict.values()}
    assert {name for name, pool in pools.items() if pool == TRAINING_POOL} == FITTING
    assert defs.resolve_job_def("train_job").graph.node_named("anomaly_model").definition.pool == TRAINING_POOL


def _step_starts(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return {r.event_log_entry.step_key: r.event_log_entry.timestamp for r in records}


@pytest.mark.slow
def test_a_second_training_run_waits_for_the_first_to_finish_fitting(defs, landing):
    with dg.instance_for_test(overrides={"concurrency": shipped_concurrency("dagster.yaml")}) as instance:
        for sample in (HOSTAPD_1824, SYSTEM_35):
            copy_sample(sample.name, landing)
            run_ingest(defs, instance, sample.name)
        # The pool's limit as Dagster sets it on first use (from concurrency.pools.default_limit): one slot.
        instance.event_log_storage.initialize_concurrency_limit_to_default(TRAINING_POOL)
        assert instance.event_log_storage.get_concurrency_info(TRAINING_POOL).slot_count == 1
        # The other training run is executing anomaly_model: it holds that slot.
        assert instance.event_log_storage.claim_concurrency_slot(TRAINING_POOL, "other-run", "anomaly_model").is_claimed

        result: dict[str, dg.ExecuteInProcessResult] = {}
        worker = threading.Thread(
            target=lambda: result.update(run=defs.resolve_job_def("train_job").execute_in_process(instance=instance))
        )
        worker.start()
        deadline = time.monotonic() + 120
        while not (waiting := instance.event_log_storage.get_concurrency_info(TRAINING_POOL).pending_run_ids):
            assert worker.is_alive() and time.monotonic() < deadline, "the training run never asked for the slot"
            time.sleep(0.2)
        (run_id,) = waiting  # queued behind the other run's claim, not given a slot
        time.sleep(3)  # several claim attempts (the first retries come after 1 s): all refused
        assert not FITTING & set(_step_starts(instance, run_id)), "fitted while the other run held the slot"
        assert instance.event_log_storage.get_concurrency_info(TRAINING_POOL).active_run_ids == {"other-run"}

        freed_at = time.time()
        instance.event_log_storage.free_concurrency_slot_for_step("other-run", "anomaly_model")
        worker.join(timeout=300)
        assert not worker.is_alive()
        run = result["run"]
        assert run.success and run.run_id == run_id
        starts = _step_starts(instance, run.run_id)
        assert FITTING <= set(starts) and min(starts[k] for k in FITTING) >= freed_at
        assert not instance.event_log_storage.get_concurrency_info(TRAINING_POOL).claimed_slots  # all given back
