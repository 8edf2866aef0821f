"""One dynamic partition per export file: the file name is the partition key."""

import dagster as dg

export_files = dg.DynamicPartitionsDefinition(name="export_files")
