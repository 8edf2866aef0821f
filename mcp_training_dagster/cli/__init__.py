"""``mcp-training``: the command-line door to the same code the assets run.

``up`` prepares the data root and supervises Dagster (webserver + daemon) with the sensors on;
``evaluate`` measures the whole method on independent labelled exports; ``incidents`` groups an export's
flagged windows; ``validate`` checks export files with exactly the functions the ingest assets call; ``train`` runs
the asset graph itself in-process; ``score`` uses a registered package exactly as the inference
side would; ``models`` manages the registry; ``generate`` writes labelled scenario exports.

Modules: ``common`` (errors, settings, the data folder's lock, the data root), ``runs`` (quiet
in-process runs and what they did), ``serve`` (up), ``train``, ``data`` (validate, score, generate),
``models``.
"""

from mcp_training_dagster.cli import data, evaluate, models, serve, train  # noqa: F401  (each registers its commands)
from mcp_training_dagster.cli.app import main

__all__ = ["main"]
