"""Jobs: per-file ingest (what the sensor launches), training, and the production model's verdicts (what the CLI runs)."""

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest") | dg.AssetSelection.assets("export_windows"),
    description="Read, validate and window one export file (one partition). Its verdicts follow through automation.",
)

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.groups("training", "evaluation")
    | dg.AssetSelection.assets("training_windows", "model_package", "production_model"),
    description="Training windows from every validated export, evaluation data, model selection and training, "
    "evaluation gates, then the registered (and, when the gates pass, promoted) package and the production model.",
)

production_job = dg.define_asset_job(
    "production_job",
    selection=dg.AssetSelection.assets("production_model"),
    description="Record the registry's production model (after a promotion or rollback outside a training run).",
)

verdicts_job = dg.define_asset_job(
    "verdicts_job",
    selection=dg.AssetSelection.assets("export_anomalies", "export_incidents"),
    description="The production model's verdicts and incidents on one export (one partition).",
)
