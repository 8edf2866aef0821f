"""Resources: the typed settings, and the IO managers built from them."""

from pathlib import Path
from typing import Any, Optional

import dagster as dg

from mcp_training_dagster.io_managers import JoblibIOManager, JsonIOManager, ParquetIOManager
from mcp_training_dagster.settings import Settings, get_settings, load_settings


class PipelineSettings(dg.ConfigurableResource):
    """The project's settings (config/*.yaml plus environment), shared by assets and sensors.

    Both fields are optional overrides, handy in tests and in the Launchpad; by default the
    settings come from the config folder and ``MCP_TRAINING_*`` / ``MCP_MODEL_*`` variables.
    """

    config_dir: Optional[str] = None
    data_dir: Optional[str] = None

    def get(self) -> Settings:
        if self.config_dir is None and self.data_dir is None:
            return get_settings()
        import os

        env = dict(os.environ)
        if self.data_dir is not None:
            env["MCP_TRAINING_DATA_DIR"] = self.data_dir
        return load_settings(Path(self.config_dir) if self.config_dir else None, env)


def build_resources(settings: Settings) -> dict[str, Any]:
    """IO managers whose base path is a local folder or an object-store URL, by configuration."""
    base = settings.asset_storage.rstrip("/")
    return {
        "settings": PipelineSettings(),
        "io_manager": ParquetIOManager(base_path=base),
        "model_io_manager": JoblibIOManager(base_path=base),
        "json_io_manager": JsonIOManager(base_path=base),
    }
