"""What the model's materialisation shows in the UI: score figure with the threshold, metrics as numbers
(plotted by Dagster over versions), the exports it was trained on linked to their partitions."""

import base64

from mcp_training_dagster_tests.conftest import HOSTAPD_1824, copy_sample
from mcp_training_dagster_tests.defs.conftest import materializations, md, run_ingest


def test_model_materialisation_has_figure_metrics_and_linked_exports(defs, instance, landing):
    copy_sample(HOSTAPD_1824.name, landing)
    assert run_ingest(defs, instance, HOSTAPD_1824.name).success
    result = defs.resolve_job_def("train_job").execute_in_process(instance=instance)
    assert result.success
    model = md(materializations(result, "anomaly_model")[0])

    figure = model["score_distribution"]
    assert "threshold" in figure and f"{model['threshold']:.4f}" in figure
    png = base64.b64decode(figure.split("data:image/png;base64,", 1)[1].split(")", 1)[0])
    assert png.startswith(b"\x89PNG") and len(png) < 10_000, "a small PNG inside the Markdown"

    for metric in ("threshold", "training_flag_rate", "n_windows", "eval_pr_auc", "eval_roc_auc"):
        assert isinstance(model[metric], (int, float)), metric

    link = f"/assets/validated_records?view=partitions&partition={HOSTAPD_1824.name}"
    assert f"[{HOSTAPD_1824.name}](http://127.0.0.1:3000{link})" in model["trained_on"]
    assert link in md(materializations(result, "model_metadata")[0])["trained_on"]
