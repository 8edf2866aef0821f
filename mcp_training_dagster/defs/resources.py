"""Resources: the typed settings, and the IO managers built from them.

``build_resources(settings)`` is the only place resources are made, so every asset, check and sensor of
one code location sees the settings that location was built with (``build_definitions(settings)``).
"""

from typing import Any, Optional

import dagster as dg

from mcp_training_dagster.io_managers import JoblibIOManager, JsonIOManager, ParquetIOManager
from mcp_training_dagster.settings import DATA_DIR_ENV, Settings, settings_from


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
        return cls(config_dir=settings.config_dir, env=dict(settings.env))

    def get(self) -> Settings:
        env = dict(self.env)
        if self.data_dir is not None:
            env[DATA_DIR_ENV] = self.data_dir
        return settings_from(self.config_dir, env)


def build_resources(settings: Settings) -> dict[str, Any]:
    """The settings resource, and IO managers whose base path is a local folder or an object-store URL."""
    base = settings.asset_storage.rstrip("/")
    return {
        "settings": PipelineSettings.of(settings),
        "io_manager": ParquetIOManager(base_path=base),
        "model_io_manager": JoblibIOManager(base_path=base),
        "json_io_manager": JsonIOManager(base_path=base),
    }
