"""Whether a candidate may replace production: the quality gates and a like-for-like comparison.

Like with like: the candidate's figures are those of its configuration fitted *before* the time
split and scored on the held-out period; production is scored on exactly the same held-out
windows. The refit-on-everything model is never the one compared: it has seen the held-out
period's traffic, so for an unsupervised detector its figure there is not an estimate of anything.
Production was fitted on older data; when its training data reaches into the held-out period the
comparison says so (``production_saw_held_out``) rather than pretending it did not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mcp_training_dagster.serving.calibration import calibrated_scores
from mcp_training_dagster.domain.evaluation import EvaluationSet
from mcp_training_dagster.domain.package_check import load_package
from mcp_training_dagster.domain.packaging import LoadedPackage, PackageError
from mcp_training_dagster.domain.object_registry import open_registry
from mcp_training_dagster.domain.registry import RegistryError
from mcp_training_dagster.domain.results import Evaluation, binary_metrics, meets_quality_gates, not_worse_than
from mcp_training_dagster.serving.scoring import anomaly_scores, feature_matrix, score_table

# A gate passed by less than this (absolute, in the metric's units) is flagged as "barely passing".
BARELY_MARGIN = 0.05


@dataclass(frozen=True)
class ProductionModel:
    """The registry's production package, loaded and verified: the one serving object every caller uses."""

    version: str
    package: LoadedPackage

    @property
    def config(self) -> dict[str, Any]:
        return self.package.metadata.get("inference_config", {})

    @property
    def calibration(self) -> dict[str, Any] | None:
        """Per-kind calibration riding on the estimator (``calibration_``), or None for a raw-threshold model."""
        return getattr(self.package.pipeline, "calibration_", None)

    @property
    def threshold(self) -> float:
        """The threshold on :meth:`scores`: 0 for a calibrated model (anomalous when the score is above it)."""
        return 0.0 if self.calibration is not None else float(self.config["threshold"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.config.get("feature_names", []))

    @property
    def data_end(self) -> str | None:
        return self.package.metadata.get("training_info", {}).get("data_end")

    def unseen(self, windows: pd.DataFrame) -> np.ndarray:
        """Windows this model was not fitted on: after its training data ends, or of a device it never saw
        (older packages do not list their devices: then time alone decides)."""
        mask = np.ones(len(windows), dtype=bool)
        if self.data_end:
            mask = (windows["window_start"] > pd.Timestamp(self.data_end)).to_numpy()
        devices = self.package.metadata.get("training_info", {}).get("devices")
        if devices:
            mask = mask | ~windows["device"].astype("str").isin(devices).to_numpy()
        return mask

    def takes_windows_of(self, windows: pd.DataFrame) -> bool:
        return self.config.get("input") == "export_records" and all(n in windows.columns for n in self.feature_names)

    def scores(self, windows: pd.DataFrame) -> Any:
        """The scores its verdicts are drawn from: calibrated when the model carries a calibration."""
        raw = anomaly_scores(self.package.pipeline, feature_matrix(windows, self.feature_names))
        return raw if self.calibration is None else calibrated_scores(windows, raw, self.calibration)

    def score_table(self, windows: pd.DataFrame) -> pd.DataFrame:
        return score_table(
            windows,
            self.package.pipeline,
            float(self.config["threshold"]),
            self.feature_names,
            calibration=self.calibration,
        )


def load_production(location: str | Path, version: str | None = None) -> ProductionModel | None:
    """The production model (or ``version``) of the registry at ``location`` (a folder or an object-store
    prefix), verified against its manifest; None before the first promotion.

    Raises :class:`RegistryError` when the pointer or the package is unusable (one line naming it)."""
    registry = open_registry(str(location))
    chosen = version or registry.production()
    if chosen is None:
        return None
    try:
        return ProductionModel(chosen, load_package(registry.path(chosen)))
    except (PackageError, OSError) as exc:
        raise RegistryError(f"model {chosen}: {exc}") from None


@dataclass(frozen=True)
class Gate:
    """One promotion gate: what was compared, with the figures, and whether it passed."""

    name: str
    passed: bool
    compared: str  # in words: which figures of which model on which data
    figures: dict[str, Any] = field(default_factory=dict)
    margin: float | None = None  # how far above the limit (None when there is no limit to compare with)

    @property
    def barely(self) -> bool:
        return self.passed and self.margin is not None and self.margin < BARELY_MARGIN

    @property
    def summary(self) -> str:
        """One line with the figures that decided the gate (what a person reads in the terminal and the alert):
        e.g. "candidate PR-AUC 0.612 vs production V 0.741 on 1,234 held-out windows neither was fitted on
        (40 anomalous); allowed regression 0.020". Without figures (nothing to compare), what was compared."""
        f = self.figures
        if self.name == "meets_quality_gates" and f.get("f1_score") is not None:
            auc = "n/a (one class)" if f.get("roc_auc") is None else f"{f['roc_auc']:.3f}"
            line = (
                f"candidate fitted before the split: F1 {f['f1_score']:.3f} (min {f['min_f1']:.3f}), "
                f"ROC-AUC {auc} (min {f['min_roc_auc']:.3f})"
            )
            if f.get("windows_evaluated") is not None:
                line += f" on {f['windows_evaluated']:,} held-out windows ({f['anomalous_evaluated']:,} anomalous)"
            return line
        if self.name == "not_worse_than_production" and f.get("production_pr_auc") is not None:
            cand = "n/a" if f.get("candidate_pr_auc") is None else f"{f['candidate_pr_auc']:.3f}"
            return (
                f"candidate PR-AUC {cand} vs production {f['production_version']} {f['production_pr_auc']:.3f} "
                f"on {f['windows_compared']:,} held-out windows neither was fitted on ({f['anomalous_compared']:,} "
                f"anomalous); allowed regression {f['max_regression']:.3f}"
            )
        if self.name == "meets_quality_gates":
            return f"no held-out figures for the candidate; {self.compared}"
        return self.compared


@dataclass(frozen=True)
class PromotionDecision:
    gates: tuple[Gate, ...]
    production_version: str | None

    @property
    def deployment_ready(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failed(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]

    @property
    def warnings(self) -> list[str]:
        return [f"{g.name} passes by only {g.margin:.3f} ({g.summary})" for g in self.gates if g.barely]

    def gate(self, name: str) -> Gate:
        return next(g for g in self.gates if g.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "production_version": self.production_version,
            "deployment_ready": self.deployment_ready,
            "gates": [asdict(g) | {"barely": g.barely} for g in self.gates],
            "warnings": self.warnings,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PromotionDecision:
        """Back from :meth:`as_dict` (the JSON that model_evaluation stores)."""
        fields = ("name", "passed", "compared", "figures", "margin")
        gates = tuple(Gate(**{k: g[k] for k in fields if k in g}) for g in doc.get("gates", []))
        return cls(gates, doc.get("production_version"))


def decide(
    candidate_eval: Evaluation | None,
    candidate_scores: np.ndarray | None,
    data: EvaluationSet,
    production: ProductionModel | None,
    *,
    min_f1: float,
    min_roc_auc: float,
    max_regression: float,
) -> PromotionDecision:
    """Both gates, from held-out figures only (see the module docstring).

    ``candidate_scores`` are the pre-split fit's scores on ``data.windows`` (row-aligned). Production is
    compared on the held-out windows it was not fitted on either; when those hold no anomalous (or no
    normal) window there is nothing fair to compare on, and the gate says so instead of guessing."""
    overall = candidate_eval.overall if candidate_eval is not None else None
    f1 = overall.f1_score if overall is not None else None
    auc = overall.roc_auc if overall is not None else None
    quality = Gate(
        "meets_quality_gates",
        meets_quality_gates(overall, min_f1, min_roc_auc),
        "candidate fitted before the split, on the held-out period",
        {
            "f1_score": f1,
            "roc_auc": auc,
            "min_f1": min_f1,
            "min_roc_auc": min_roc_auc,
            "windows_evaluated": overall.n_windows if overall is not None else None,
            "anomalous_evaluated": overall.n_anomalous if overall is not None else None,
        },
        None if f1 is None or auc is None else min(f1 - min_f1, auc - min_roc_auc),
    )
    figures: dict[str, Any] = {
        "production_version": production.version if production else None,
        "max_regression": max_regression,
    }
    cand_pr = prod_pr = None
    if production is None:
        compared = "no production model yet: nothing to compare with"
    elif not len(data.windows) or candidate_scores is None:
        compared = "no held-out windows: nothing to compare on"
    elif not production.takes_windows_of(data.windows):
        compared = (
            f"production {production.version} takes other features: not comparable, not held against the candidate"
        )
    else:
        mask = production.unseen(data.windows)
        y = data.labels["is_anomaly"].to_numpy(dtype=bool)[mask]
        figures |= {
            "windows_compared": int(mask.sum()),
            "anomalous_compared": int(y.sum()),
            "production_data_end": production.data_end,
        }
        if 0 < y.sum() < len(y):
            cand = binary_metrics(y, np.asarray(candidate_scores)[mask], np.inf)
            prod = binary_metrics(y, production.scores(data.windows[mask]), production.threshold)
            cand_pr, prod_pr = cand.pr_auc, prod.pr_auc
            figures |= {"candidate_pr_auc": cand_pr, "production_pr_auc": prod_pr, "production_f1": prod.f1_score}
            compared = (
                f"PR-AUC of the candidate fitted before {data.split_time} and of production {production.version} "
                f"on the {int(mask.sum())} held-out windows neither was fitted on ({int(y.sum())} anomalous, "
                f"{data.source})"
            )
        else:
            compared = (
                f"production {production.version} was fitted on every held-out window with a known anomaly: "
                "nothing fair to compare on, not held against the candidate"
            )
    not_worse = Gate(
        "not_worse_than_production",
        not_worse_than(cand_pr, prod_pr, max_regression),
        compared,
        figures,
        None if prod_pr is None else (cand_pr or 0.0) - (prod_pr - max_regression),
    )
    return PromotionDecision((quality, not_worse), production.version if production else None)
