"""Resources: the typed settings, and the IO managers built from them.

``build_resources(settings)`` is the only place resources are made, so every asset, check and sensor of
one code location sees the settings that location was built with (``build_definitions(settings)``).
"""

import os
from typing import Any, Optional

import dagster as dg

from mcp_training_dagster.io_managers import JoblibIOManager, JsonIOManager, ParquetIOManager
from mcp_training_dagster.settings import DATA_DIR_ENV, Settings, settings_from


FROM_ENVIRONMENT = "<read from the environment>"
_SECRET_HINTS = ("WEBHOOK", "BROKER", "BACKEND", "PASSWORD", "SECRET", "TOKEN", "CREDENTIAL")


def is_secret(variable: str) -> bool:
    """A variable whose value may hold a credential (URLs of webhooks and brokers carry them)."""
    return any(hint in variable.upper() for hint in _SECRET_HINTS)


class PipelineSettings(dg.ConfigurableResource):
    """The project's settings (config/*.yaml plus ``MCP_TRAINING_*`` / ``MCP_MODEL_*`` overrides).

    The resource carries what the settings were loaded from (config folder and variables), not the values:
    a run worker in another process rebuilds the very same settings, and the Launchpad shows and may
    override them (``data_dir`` moves the whole data root, handy in tests too).
    """

    config_dir: Optional[str] = None
    env: dict[str, str] = {}
    data_dir: Optional[str] = None

    @classmethod
    def of(cls, settings: Settings) -> "PipelineSettings":
        # A secret (a webhook URL's token, a broker's password) is not copied into the resource's config, which
        # Dagster shows in the Launchpad and stores in every run's snapshot: it is read from the run's own
        # environment instead, as dg.EnvVar would.
        env = {k: (FROM_ENVIRONMENT if is_secret(k) else v) for k, v in settings.env.items()}
        return cls(config_dir=settings.config_dir, env=env)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # In a run (not when a sensor of the code server builds its resources): batch work yields the CPU to
        # the control plane, so a tick is not slowed by a retrain that takes every core.
        if context.dagster_run is not None:
            lower_cpu_priority(self.get().training.run_niceness)

    def get(self) -> Settings:
        env = {k: v for k, v in self.env.items() if v != FROM_ENVIRONMENT}
        env.update({k: os.environ[k] for k, v in self.env.items() if v == FROM_ENVIRONMENT and k in os.environ})
        if self.data_dir is not None:
            env[DATA_DIR_ENV] = self.data_dir
        return settings_from(self.config_dir, env)


def lower_cpu_priority(niceness: int) -> int:
    """Raise this process's niceness to ``niceness`` (never lower it: that needs privileges); the niceness now."""
    if not hasattr(os, "nice"):
        return 0
    current = os.nice(0)
    return os.nice(niceness - current) if niceness > current else current


def build_resources(settings: Settings) -> dict[str, Any]:
    """The settings resource, and IO managers whose base path is a local folder or an object-store URL."""
    base = settings.asset_storage.rstrip("/")
    return {
        "settings": PipelineSettings.of(settings),
        "io_manager": ParquetIOManager(base_path=base),
        "model_io_manager": JoblibIOManager(base_path=base),
        "json_io_manager": JsonIOManager(base_path=base),
    }
