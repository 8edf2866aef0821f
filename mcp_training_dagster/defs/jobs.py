"""Jobs: per-file ingest (what the sensor launches), training, and the production model's verdicts (what the CLI runs).

Selected by stage (the asset's group) and scope (the ``scope`` tag, set for every asset in ``defs/defs.yaml``:
``per_export`` for the assets partitioned by export file, ``fan_in`` for those built from all of them).
"""

import dagster as dg

PER_EXPORT = dg.AssetSelection.tag("scope", "per_export")
INGEST = dg.AssetSelection.groups("ingest", "features") & PER_EXPORT
TRAINING = dg.AssetSelection.groups("features", "training", "evaluation", "deployment") - PER_EXPORT

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=INGEST,
    description="Read, validate and window one export file (one partition). Its verdicts follow through automation.",
)

train_job = dg.define_asset_job(
    "train_job",
    selection=TRAINING,
    description="Training windows from every validated export, evaluation data, model selection and training, "
    "evaluation gates, then the registered (and, when the gates pass, promoted) package and the production model.",
)

# One file landing on an idle system: its ingest and the retraining it makes due in ONE run (one process launch,
# no wait for the automation sensor's tick), the same assets the automation's training run materialises
# (drift_baseline included). export_file_sensor launches it only when the retraining policy's guards hold
# (defs/sensors.py: one file, nothing ingesting or training); otherwise ingest_job, and automation trains.
file_to_model_job = dg.define_asset_job(
    "file_to_model_job",
    selection=INGEST | TRAINING | dg.AssetSelection.assets("drift_baseline"),
    description="One new export file ingested, then training windows, model selection and training, evaluation "
    "gates, the registered (and promoted) package, the production model and its drift baseline, in one run.",
)

production_job = dg.define_asset_job(
    "production_job",
    selection=dg.AssetSelection.assets("production_model"),
    description="Record the registry's production model (after a promotion or rollback outside a training run).",
)

verdicts_job = dg.define_asset_job(
    "verdicts_job",
    selection=dg.AssetSelection.groups("deployment") & PER_EXPORT,
    description="The production model's verdicts and incidents on one export (one partition).",
)
