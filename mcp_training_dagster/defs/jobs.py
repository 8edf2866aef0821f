"""Jobs: per-file ingest (what the sensor launches) and training (what the CLI runs)."""

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest") | dg.AssetSelection.assets("export_windows", "export_anomalies"),
    description="Read, validate and window one export file (one partition), and the production model's verdict on it.",
)

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.groups("training", "evaluation")
    | dg.AssetSelection.assets("training_windows", "model_package"),
    description="Training windows from every validated export, evaluation data, model selection and training, "
    "evaluation gates, then the registered (and, when the gates pass, promoted) package.",
)
