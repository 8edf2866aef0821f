"""One dynamic partition per export file: the file name is the partition key."""

import dagster as dg

EXPORT_FILES = "export_files"
export_files = dg.DynamicPartitionsDefinition(name=EXPORT_FILES)


def files_in_range(instance: dg.DagsterInstance, start: str, end: str) -> list[str]:
    """The export files of a run over a partition key range (an ingest batch), in the order their partitions were
    added, which is how Dagster resolves the range of a dynamic partitions definition."""
    keys = list(instance.get_dynamic_partitions(EXPORT_FILES))
    try:
        return keys[keys.index(start) : keys.index(end) + 1]
    except ValueError:  # a partition of the range was deleted since
        return [k for k in (start, end) if k in keys]
