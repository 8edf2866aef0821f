"""The ``mcp-training`` command group; each command lives in the module of its subject."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train WiFi anomaly-detection models from MCP log exports (Dagster assets)."""
