from mcp_training_dagster.cli import main

main()
