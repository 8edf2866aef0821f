"""Fixtures for the Dagster-level tests: real definitions, real resources and a throwaway instance.

Everything points into the test's tmp folder: the ``data_dir`` fixture (parent conftest) sets
``MCP_TRAINING_DATA_DIR`` *before* the settings, definitions and resources are built here.
"""

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange
from mcp_training_dagster.definitions import build_definitions
from mcp_training_dagster.defs.partitions import export_files
from mcp_training_dagster.defs.resources import build_resources
from mcp_training_dagster.settings import Settings, get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    s = get_settings()
    # The whole point of the fixture: nothing may be written outside the tmp data root.
    assert s.landing_dir == data_dir / "exports"
    assert s.asset_storage.startswith(str(data_dir))
    return s


@pytest.fixture
def defs(settings: Settings) -> dg.Definitions:
    return build_definitions(settings)


@pytest.fixture
def resources(settings: Settings) -> dict:
    return build_resources(settings)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def assets_dir(settings: Settings) -> Path:
    return Path(settings.asset_storage)


def run_ingest(
    defs: dg.Definitions, instance: dg.DagsterInstance, name: str, *, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    """What the daemon does for one sensor request: register the partition, run ingest_job for it."""
    if not instance.has_dynamic_partition(export_files.name, name):
        instance.add_dynamic_partitions(export_files.name, [name])
    return defs.resolve_job_def("ingest_job").execute_in_process(
        instance=instance, partition_key=name, raise_on_error=raise_on_error
    )


class Ticks:
    """The automation sensor's successive evaluations (as ``retrain_automation_sensor`` evaluates the policy, once
    per tick) on one instance: the cursor is carried from tick to tick, and each tick reports what it requested
    of the watched assets."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, watched: Sequence[dg.AssetKey]) -> None:
        self.defs, self.instance, self.watched = defs, instance, list(watched)
        self.cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor

    def _tick(self) -> dg.EvaluateAutomationConditionsResult:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return result

    def requested(self) -> dict[str, int]:
        """One tick: watched asset -> how many runs of it were requested."""
        result = self._tick()
        return {k.to_user_string(): result.get_num_requested(k) for k in self.watched}

    def requested_partitions(self) -> dict[str, list[str]]:
        """One tick: watched asset -> the partitions requested (only the assets requested at all)."""
        result = self._tick()
        return {
            k.to_user_string(): sorted(result.get_requested_partitions(k))
            for k in self.watched
            if result.get_num_requested(k)
        }


def materializations(result: dg.ExecuteInProcessResult, asset: str) -> list[dg.AssetMaterialization]:
    return [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
        if e.step_materialization_data.materialization.asset_key == dg.AssetKey(asset)
    ]


def md(materialization: dg.AssetMaterialization) -> dict:
    """Metadata as plain values."""
    return {k: v.value for k, v in materialization.metadata.items()}


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Everything a person reads about the failed steps: error message and Failure description."""
    parts = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.error is not None:
            parts.append(data.error.to_string())
        if data.user_failure_data is not None and data.user_failure_data.description:
            parts.append(data.user_failure_data.description)
    return "\n".join(parts)


def report_freshness_failed(instance: dg.DagsterInstance, asset: str) -> None:
    """``asset``'s FreshnessPolicy turns FAIL (from PASS), recorded as Dagster's FreshnessDaemon records it."""
    instance.report_runless_asset_event(
        FreshnessStateChange(
            key=dg.AssetKey(asset),
            previous_state=FreshnessState.PASS,
            new_state=FreshnessState.FAIL,
            state_change_timestamp=time.time(),
        )
    )
