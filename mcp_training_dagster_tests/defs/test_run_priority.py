"""Runs yield the CPU to the control plane (training.run_niceness): a run's process lowers its priority,
a sensor evaluated by the code server does not. Each case runs in a fresh interpreter, since niceness is
inherited and can never be raised back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "nice"), reason="POSIX niceness")

_PROBE = """
import os, sys
import dagster as dg
from mcp_training_dagster.defs.resources import PipelineSettings

@dg.asset
def niceness_in_run(settings: PipelineSettings) -> int:
    return os.nice(0)

@dg.sensor(target=[niceness_in_run])
def niceness_in_sensor(context, settings: PipelineSettings):
    print("sensor", os.nice(0))
    return dg.SkipReason("probe")

env = {"MCP_TRAINING_RUN_NICENESS": sys.argv[1]}
resources = {"settings": PipelineSettings(env=env)}
print("before", os.nice(0))
defs = dg.Definitions(assets=[niceness_in_run], sensors=[niceness_in_sensor], resources=resources)
sensor = defs.resolve_sensor_def("niceness_in_sensor")
with dg.instance_for_test() as instance:
    sensor(dg.build_sensor_context(instance=instance, resources=resources))
    result = dg.materialize([niceness_in_run], resources=resources, instance=instance)
    print("run", result.output_for_node("niceness_in_run"))
print("after", os.nice(0))
"""


def _niceness(run_niceness: int) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(run_niceness)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {k: int(v) for k, v in (line.split() for line in done.stdout.splitlines() if line.strip())}


def test_a_run_lowers_its_priority_and_a_sensor_does_not() -> None:
    seen = _niceness(10)
    start = seen["before"]
    assert seen["sensor"] == start, "a sensor (the code server's process) must keep its priority"
    assert seen["run"] == max(start, 10)
    assert seen["after"] == max(start, 10)


def test_zero_leaves_the_priority_alone() -> None:
    seen = _niceness(0)
    assert seen["run"] == seen["before"] == seen["after"]
