"""Jobs: per-file ingest (what the sensor launches) and training (what the CLI runs)."""

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest") | dg.AssetSelection.assets("export_windows"),
    description="Read, validate and window one export file (one partition).",
)

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.groups("training") | dg.AssetSelection.assets("training_windows"),
    description="Build the training windows from every validated export and train the model.",
)
