"""What a person sees on a materialisation in the UI: figures and links, built here so the assets stay lean."""

from urllib.parse import quote

import numpy as np
import pandas as pd

import dagster as dg
from mcp_training_dagster.domain.plots import markdown_image, score_histogram
from mcp_training_dagster.domain.training import TrainedModel


def score_distribution(
    model: TrainedModel,
    windows: pd.DataFrame | None = None,
    *,
    scores: np.ndarray | None = None,
    sample: dict | None = None,
) -> dg.MetadataValue:
    """The training windows' scores as a histogram PNG with the threshold drawn on it (Markdown). ``scores``:
    those scores already computed (e.g. chunk by chunk), instead of scoring ``windows``; ``sample``: how they were
    drawn when they are a sample's (the model's ``diagnostics["sample"]``), said under the picture."""
    if scores is None:
        scores = model.score(windows) if windows is not None and len(windows) else np.zeros(0)
    scores = np.asarray(scores, dtype=np.float64)
    flagged = int((scores > model.threshold).sum())
    png = score_histogram(scores, model.threshold)
    return dg.MetadataValue.md(
        f"{markdown_image(png, 'score distribution of the training windows')}\n\n"
        f"Scores of {len(scores)} training windows{_of_sample(sample)} (log-scaled counts); red line: threshold "
        f"{model.threshold:.4f}; {flagged} windows above it (orange) = {flagged / max(len(scores), 1):.2%}."
    )


def _of_sample(sample: dict | None) -> str:
    if not sample or "score_distribution" not in sample.get("figures", ()):
        return ""
    return f" (of {sample['of']}: every window of {sample['routers']} of {sample['of_routers']} routers sampled, see diagnostics_sample)"


def partition_url(webserver: str, asset: str, partition: str) -> str:
    return f"{webserver.rstrip('/')}/assets/{asset}?view=partitions&partition={quote(partition, safe='')}"


def export_links(files: list[str], webserver: str) -> dg.MetadataValue:
    """The export files a model was trained on, each linked to its partition in the UI at ``webserver``."""
    rows = "\n".join(f"- [{f}]({partition_url(webserver, 'validated_records', f)})" for f in files) or "_none_"
    return dg.MetadataValue.md(f"Trained on {len(files)} export(s):\n\n{rows}")
