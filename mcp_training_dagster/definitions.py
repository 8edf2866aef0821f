"""The code location: assets by stage, checks, sensors, jobs, resources and the executor.

Everything environment-specific (storage paths or URLs, executor, intervals) comes from settings,
so the same definitions run locally and on a distributed deployment.
"""

import dagster as dg
from mcp_training_dagster.defs.alerts import alert_on_checks_and_freshness, alert_on_run_failure
from mcp_training_dagster.defs.assets import deployment, drift, evaluation, features, incidents, ingest, training
from mcp_training_dagster.defs.jobs import ingest_job, production_job, train_job, verdicts_job
from mcp_training_dagster.defs.resources import build_resources
from mcp_training_dagster.defs.sensors import export_file_sensor, retrain_automation_sensor
from mcp_training_dagster.settings import Settings, get_settings


STAGES = [ingest, features, training, evaluation, deployment, incidents, drift]


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    if settings.training.executor == "celery":
        # Steps become Celery tasks on any machine running `dagster-celery worker` with the same broker
        # (config/celery_worker.yaml); imported lazily so the local deployment does not need the extra.
        from dagster_celery import celery_executor

        return celery_executor.configured(
            {"broker": settings.training.celery_broker, "backend": settings.training.celery_backend}
        )
    if settings.training.executor == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": settings.training.max_concurrent_steps})
    # Steps here are seconds long and importing the stack costs ~3 s per process on 2 cores.
    return dg.in_process_executor


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or get_settings()
    return dg.Definitions(
        assets=dg.load_assets_from_modules(STAGES),
        asset_checks=dg.load_asset_checks_from_modules(STAGES),
        jobs=[ingest_job, train_job, production_job, verdicts_job],
        sensors=[export_file_sensor, retrain_automation_sensor, alert_on_run_failure, alert_on_checks_and_freshness],
        resources=build_resources(settings),
        executor=executor_for(settings),
    )


defs = build_definitions()
