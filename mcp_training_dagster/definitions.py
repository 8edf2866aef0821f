"""The code location: everything in ``defs/``, autoloaded, finished with one ``Settings`` object.

``[tool.dagster]``, ``[tool.dg.project]`` and ``workspace.yaml`` all point here. ``build_definitions(settings)``
is the programmatic door (tests, the CLI): the same autoload, with other settings (defs/location.py).
"""

import warnings
from pathlib import Path

import dagster as dg
from mcp_training_dagster import defs as defs_folder
from mcp_training_dagster.defs.location import apply_settings, loading_with
from mcp_training_dagster.settings import Settings, get_settings

# Also right for a non-editable install (no pyproject.toml above site-packages), unlike load_from_defs_folder.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or get_settings()
    with loading_with(settings), warnings.catch_warnings():
        # Dagster's own beta/preview notices (component loading, map_asset_specs) would reach every CLI's stderr.
        warnings.simplefilter("ignore", (dg.BetaWarning, dg.PreviewWarning))
        loaded = dg.ComponentTree.from_module(defs_module=defs_folder, project_root=PROJECT_ROOT).build_defs()
        return apply_settings(loaded, settings)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
