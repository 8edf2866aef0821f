"""mcp_training_dagster: WiFi-router log exports in, versioned anomaly-detection models out (Dagster assets)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mcp-training-dagster")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
