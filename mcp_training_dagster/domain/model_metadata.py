"""What is written about a trained model: ``metadata.json`` in the inference contract's shape
(:func:`metadata_document`) and the model card's paragraph on how verdicts are drawn (:func:`calibration_card`).

Built from a complete :class:`~mcp_training_dagster.domain.training.TrainedModel` only; nothing is added later.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mcp_training_dagster.domain.results import BASIC_METRICS
from mcp_training_dagster.domain.training import TrainedModel
from mcp_training_dagster.serving.features import FEATURE_DOCS, WindowSpec


def calibration_card(model: TrainedModel) -> str:
    """The model card's paragraph on how verdicts are drawn: method, budget and expected alarm rate per kind."""
    c = model.calibration
    if not c:
        return ""
    joining = any("continue_threshold" in v for v in c["thresholds"].values())
    rows = "\n".join(
        f"| {k} | {v['active_windows']} | {v['budget_per_router_day']} | {v['p']:.4%} | {v['expected_alarms_per_router_day']} |"
        + (f" {v.get('continue_budget_per_router_day', '-')} |" if joining else "")
        for k, v in c["thresholds"].items()
    )
    head = "| kind | active windows | budget (alarms / router-day) | exceedance p | expected alarms / router-day |"
    if joining:
        head = (
            head.replace("budget (alarms", "budget (alarms raised")
            + " continuation budget (windows joining a raised alarm) |"
        )
    return (
        "**Verdicts** (`metadata.json` `inference_config.calibration`): " + c["description"] + ". The window "
        "verdicts are `calibrated score > 0`; `predict()` is the detector's own verdict at the threshold above "
        f"(device windows). Over {c['router_days']} router-days of training data:\n\n"
        f"{head}\n|{'---|' * head.count(' |')}\n{rows}\n\n"
    )


def metadata_document(
    model: TrainedModel,
    *,
    export_files: list[str],
    spec: WindowSpec,
    service_timezone: str,
    extra_wifi_processes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """metadata.json in the inference contract's shape, whole (the one builder: nothing is added to it later).
    ``basic_metrics`` come from the evaluation (held-out data with known labels, source named beside them),
    never from the training scores."""
    ev = model.evaluation
    by_kind = ev.by_kind if ev is not None else None
    basic = ev.overall.figures(BASIC_METRICS) if ev is not None else {}
    basic["threshold_value"] = model.threshold  # the deployed model's threshold, in its stated convention
    return {
        "model_info": {
            "version": f"model_{model.version}",
            "training_id": model.version,
            "created_at": model.trained_at,
            "model_type": type(model.pipeline.named_steps["detector"]).__name__,
            "model_name": "WiFiAnomalyWindows",
            "name": f"WiFi window anomaly detector {model.version}",
            "description": "Window-level WiFi anomaly detector (device, station and interface windows) trained on router log exports",
            "training_source": "export_data",
            "export_files": export_files,
        },
        "training_info": {
            "training_samples": model.n_windows,
            "n_samples": model.n_windows,
            "windows_by_kind": model.windows_by_kind,
            "feature_names": list(model.feature_names),
            "feature_descriptions": {k: FEATURE_DOCS[k] for k in model.feature_names},
            "feature_count": len(model.feature_names),
            "window_minutes": model.window_minutes,
            "model_parameters": model.detector.model_dump(mode="json"),
            "training_duration": model.training_seconds,
            "data_start": model.data_start,
            "data_end": model.data_end,
            "library_versions": model.library_versions,
            "input_fingerprint": model.input_fingerprint,
            "devices": list(model.devices),
            **({"fit_sample": model.fit_sample} if model.fit_sample else {}),
        },
        "evaluation_info": {
            "basic_metrics": basic,
            "source": ev.data.source if ev is not None else "none",
            "evaluation_data": ev.data.as_dict() if ev is not None else None,
            "by_kind": {k: m.as_dict() for k, m in by_kind.items()} if by_kind is not None else None,
            "recall_by_scenario": ev.recall_by_scenario if ev is not None else None,
            "benign_flag_rate": ev.benign_flag_rate if ev is not None else None,
            "note": "figures of the same configuration fitted before the time split, on held-out data it never saw",
            "selection": model.selection.as_dict() if model.selection is not None else None,
            "diagnostics": model.diagnostics,
            "feature_importance": {},
        },
        "inference_config": {
            "input": "export_records",
            "threshold": model.threshold,
            "score_convention": model.score_convention,
            "score_definition": model.score_definition,
            "predict": "pipeline.predict(X) == -1 exactly when score > threshold (the detector's own score, "
            "the device-window threshold); the window verdicts are the calibrated ones below"
            if model.calibration
            else "pipeline.predict(X) == -1 exactly when score > threshold",
            "calibration": model.calibration,
            "verdict": "calibrated score > 0 (scoring.score_table: per-kind tail thresholds, device context fused "
            "into station/interface windows, silence rule)"
            if model.calibration
            else "score > threshold",
            "feature_names": list(model.feature_names),
            "window_spec": asdict(spec),
            "service_timezone": service_timezone,
            "extra_wifi_processes": list(extra_wifi_processes),
        },
        "deployment_info": {"status": "available", "deployed_at": None, "deployed_by": None},
    }
