"""What the code location takes from settings: resources, executor, sensor intervals, freshness windows and
the model config's hash in code versions. Everything else in ``defs/`` is settings-free and autoloaded.

One ``Settings`` object flows through a load: ``build_definitions(settings)`` (definitions.py) puts it in
``loading_with`` while ``defs/`` is autoloaded, ``location()`` below builds resources, executor and sensors
from it, and ``apply_settings`` finishes the asset specs with it. Autoloaded on its own (``dg`` tools,
``dg.load_from_defs_folder``), ``defs/`` uses ``get_settings()``: the config folder and the environment.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import dagster as dg
from dagster_shared.record import replace
from mcp_training_dagster.defs.policy import MODEL_CONFIG, config_version, freshness_policies
from mcp_training_dagster.defs.resources import build_resources
from mcp_training_dagster.defs.sensors import (
    build_export_file_sensor,
    build_retrain_automation_sensor,
    build_verdict_automation_sensor,
)
from mcp_training_dagster.settings import Settings, get_settings

_LOADING: ContextVar[Settings | None] = ContextVar("mcp_training_settings", default=None)


@contextmanager
def loading_with(settings: Settings) -> Iterator[Settings]:
    """Autoload ``defs/`` with these settings (instead of the environment's)."""
    token = _LOADING.set(settings)
    try:
        yield settings
    finally:
        _LOADING.reset(token)


def settings_in_use() -> Settings:
    return _LOADING.get() or get_settings()


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


@dg.definitions
def location() -> dg.Definitions:
    """Resources, executor and the settings-timed sensors (the alert sensors are settings-free: alerts.py)."""
    settings = settings_in_use()
    return dg.Definitions(
        sensors=[
            build_export_file_sensor(settings),
            build_retrain_automation_sensor(settings),
            build_verdict_automation_sensor(settings),
        ],
        resources=build_resources(settings),
        executor=executor_for(settings),
    )


def apply_settings(defs: dg.Definitions, settings: Settings) -> dg.Definitions:
    """The asset specs' settings-dependent parts: the model config's hash in place of the ``model_config``
    marker of a code_version (policy.with_model_config), the freshness policies, and the verdicts' batches."""
    marker, version = f"+{MODEL_CONFIG}", f"+{config_version(settings)}"
    freshness = freshness_policies(settings)

    def finish(spec: dg.AssetSpec) -> dg.AssetSpec:
        changes: dict = {}
        if spec.code_version and spec.code_version.endswith(marker):
            changes["code_version"] = spec.code_version.removesuffix(marker) + version
        if spec.key in freshness:
            changes["freshness_policy"] = freshness[spec.key]
        return spec.replace_attributes(**changes) if changes else spec

    return with_verdict_batches(defs.map_asset_specs(func=finish), settings)


VERDICT_ASSETS = {dg.AssetKey("export_anomalies"), dg.AssetKey("export_drift")}


def with_verdict_batches(defs: dg.Definitions, settings: Settings) -> dg.Definitions:
    """Verdicts due for many exports at once (a promotion re-scores them all) run ``verdicts_per_run`` exports per
    run: the automation sensor hands them to Dagster as one backfill, which this policy splits into partition
    ranges. One run per export made a fleet's promotion thousands of runs, each paying a process start."""
    policy = dg.BackfillPolicy.multi_run(settings.training.verdicts_per_run)
    assets = [
        a.with_attributes(backfill_policy=policy)
        if isinstance(a, dg.AssetsDefinition) and VERDICT_ASSETS & set(a.keys)
        else a
        for a in defs.assets or []
    ]
    return replace(defs, assets=assets)
