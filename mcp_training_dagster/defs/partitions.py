"""One dynamic partition per export file: the file name is the partition key."""

import dagster as dg

EXPORT_FILES = "export_files"
export_files = dg.DynamicPartitionsDefinition(name=EXPORT_FILES)
