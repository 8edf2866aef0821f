"""Typed settings: ``config/*.yaml`` merged with environment overrides, validated once.

Two files, two concerns: ``model_config.yaml`` says *what* is learnt (detector, windows, events,
evaluation gates) and ``training_config.yaml`` says *where and when* (folders, horizon, sensor
cadence, quarantine limits, executor). Every field can be overridden from the environment:

* training fields: ``MCP_TRAINING_<FIELD>``, nested with ``__``  (``MCP_TRAINING_SENSOR__INTERVAL_SECONDS=5``)
* model fields:    ``MCP_MODEL_<FIELD>``, nested with ``__``     (``MCP_MODEL_DETECTOR__KIND=local_outlier_factor``)

Values are parsed as YAML scalars/lists, so ``5``, ``true`` and ``[a, b]`` mean what they say.
A bad value fails at load with the file (or variable), the dotted field and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcp_training_dagster.serving.feature_catalog import WindowSpec

CONFIG_DIR_ENV = "MCP_TRAINING_CONFIG_DIR"
DATA_DIR_ENV = "MCP_TRAINING_DATA_DIR"
TRAINING_ENV_PREFIX = "MCP_TRAINING_"
MODEL_ENV_PREFIX = "MCP_MODEL_"
MODEL_CONFIG_FILE = "model_config.yaml"
TRAINING_CONFIG_FILE = "training_config.yaml"

# The repository's own config folder (present in a source checkout / editable install).
_REPO_CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who has to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- model config
class IsolationForestParams(_Strict):
    n_estimators: int = Field(300, ge=10, le=5000)
    max_samples: int | Literal["auto"] = 1024
    max_features: float = Field(1.0, gt=0.0, le=1.0)


class LocalOutlierFactorParams(_Strict):
    n_neighbors: int = Field(35, ge=2, le=1000)
    metric: Literal["euclidean", "manhattan", "minkowski", "chebyshev"] = "euclidean"
    max_fit_windows: int = Field(
        100_000,
        ge=1_000,
        description="at most this many windows fitted (a seeded uniform sample, training_info.fit_sample): LOF's "
        "neighbour search costs its fitted windows times the windows it scores, so a fleet's 1M-window fit took 22 min",
    )


DetectorKind = Literal["isolation_forest", "local_outlier_factor"]


class DetectorConfig(_Strict):
    kind: DetectorKind = "isolation_forest"
    candidates: tuple[DetectorKind, ...] = Field(
        ("isolation_forest", "local_outlier_factor"),
        description="detectors fitted and compared on the evaluation; the best PR-AUC is kept (kind wins ties)",
    )
    selection_margin: float = Field(
        0.02, ge=0, le=1, description="PR-AUC by which another candidate must beat `kind` to replace it"
    )
    contamination: float = Field(
        0.02, gt=0.0, lt=0.5, description="expected anomalous fraction; sets the calibrated threshold"
    )
    random_state: int = 42
    isolation_forest: IsolationForestParams = IsolationForestParams()
    local_outlier_factor: LocalOutlierFactorParams = LocalOutlierFactorParams()


class WindowConfig(_Strict):
    length_minutes: int = Field(5, ge=1, le=1440)
    entities: tuple[Literal["device", "station", "interface"], ...] = ("device", "station", "interface")
    burst_seconds: int = Field(10, ge=1, le=3600)
    silence_cap_hours: float = Field(24.0, gt=0)

    @field_validator("entities")
    @classmethod
    def _non_empty_unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one entity is required")
        if len(set(v)) != len(v):
            raise ValueError("entities must be unique")
        return v

    def spec(self) -> WindowSpec:
        """The serving core's window spec for this configuration: what every window is built with."""
        return WindowSpec(
            length_minutes=self.length_minutes,
            entities=tuple(self.entities),
            burst_seconds=self.burst_seconds,
            silence_cap_hours=self.silence_cap_hours,
        )


class EventConfig(_Strict):
    extra_wifi_processes: tuple[str, ...] = ()


class EvaluationConfig(_Strict):
    min_f1: float = Field(0.5, ge=0, le=1)
    min_roc_auc: float = Field(0.6, ge=0, le=1)
    max_regression: float = Field(
        0.02, ge=0, le=1, description="PR-AUC a new model may lose against production on the same evaluation data"
    )
    split_fraction: float = Field(0.8, gt=0.1, lt=1.0, description="time split: candidates are fitted before it")
    injection_seed: int = 7
    injected_episodes_per_scenario: int = Field(
        2, ge=1, le=50, description="injected episodes of each anomaly scenario: at least this many"
    )
    injected_episodes_per_router_day: float = Field(
        0.1,
        ge=0,
        le=5,
        description="injected episodes of each anomaly scenario per held-out router-day (the evaluation's stated "
        "prevalence; F1 and PR-AUC are figures at it)",
    )
    max_held_out_router_days: float | None = Field(
        300.0,
        gt=0,
        description="above this, a seeded sample of the held-out routers evaluates (bounded cost, same prevalence); "
        "null: every router",
    )
    stability_seeds: int = Field(3, ge=1, le=10)


class AgentVariantConfig(_Strict):
    contamination: float = Field(0.02, gt=0.0, lt=0.5)


EntityKind = Literal["device", "station", "interface"]
_DEFAULT_ALARM_BUDGET: dict[EntityKind, float] = {"device": 0.5, "station": 0.5, "interface": 0.25}
_DEFAULT_CONTINUE_BUDGET: dict[EntityKind, float] = {"device": 2.0, "station": 2.0, "interface": 1.0}


class AlarmConfig(_Strict):
    """How verdicts are drawn (README "Model"): a false-alarm budget instead of a contamination guess."""

    budget_per_router_day: dict[EntityKind, float] = Field(
        default_factory=lambda: _DEFAULT_ALARM_BUDGET.copy(),
        description="alarms per router-day each entity kind may raise on normal traffic (tail-model threshold for raising one)",
    )
    continue_budget_per_router_day: dict[EntityKind, float] = Field(
        default_factory=lambda: _DEFAULT_CONTINUE_BUDGET.copy(),
        description="windows that join an alarm their router raised: above this looser budget's threshold (hysteresis: "
        "an episode's rise and tail are judged given the alarm); a kind's value <= its start budget = off",
    )
    fusion: Literal["max", "mean", "none"] = Field(
        "max", description="station/interface windows: combine their score with their device window's (score level)"
    )
    max_alarm_fraction: float = Field(
        0.02,
        gt=0.0,
        lt=0.5,
        description="ceiling: never more than this share of a kind's active windows (sparse routers)",
    )
    ensemble: Literal["mean", "none"] = Field(
        "mean", description="average the detector's robust z with the rarity component's (per-family tail probability)"
    )
    magnitude: Literal["device", "none"] = Field(
        "device",
        description="device windows: add the doublings of their largest event-family count above the router's own usual most (its 95th percentile, shrunk to the fleet's)",
    )
    silence_factor: float = Field(
        1.5, gt=1.0, description="a device is silent when its gap exceeds this x its longest gap of the 24 h before"
    )
    tail_quantile: float = Field(
        0.8, gt=0.5, lt=0.95, description="the tail is matched between this quantile and the 95 % one (active windows)"
    )


class TrainingGates(_Strict):
    min_training_windows: int = Field(20, ge=2)


class ModelConfig(_Strict):
    detector: DetectorConfig = DetectorConfig()
    windows: WindowConfig = WindowConfig()
    events: EventConfig = EventConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    training: TrainingGates = TrainingGates()
    agent_variant: AgentVariantConfig = AgentVariantConfig()
    alarms: AlarmConfig = AlarmConfig()


# ------------------------------------------------------------------------ training config
class SensorConfig(_Strict):
    interval_seconds: int = Field(1, ge=1, le=86400)
    settled_after_seconds: float | None = Field(
        2.0, ge=0, description="a file unmodified for this long is complete on the first tick (None: wait a tick)"
    )
    # Per tick Dagster writes each new partition's planned materialisations and checks (~0.1 s each on SQLite under
    # load, 6 per file) and creates each run: 15 files made a 12 s tick at load 6 (README: fleet landing).
    max_files_per_tick: int = Field(10, ge=1, le=10000)
    files_per_run: int = Field(
        10, ge=1, le=1000, description="new files of one tick ingested together in one run (1: a run per file)"
    )
    max_bytes_per_run: int = Field(
        256_000_000, ge=1, description="a batch's files together at most this large (a larger file runs alone)"
    )
    max_bytes_hashed_per_tick: int = Field(2_000_000_000, ge=1)
    file_patterns: tuple[str, ...] = ("*.json", "*.zip")
    ignore_patterns: tuple[str, ...] = ("*.part", "*.tmp", "*.partial", "*.crdownload", ".*", "~*")


class QuarantineConfig(_Strict):
    max_fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="a file with more quarantined records than this is rejected"
    )


class InputLimitsConfig(_Strict):
    """What one export may be: bounded size, plausible timestamps (see serving/exports.py, validation.py)."""

    max_export_bytes: int = Field(
        1024**3,
        ge=1024,
        description="most bytes of JSON per export: a plain file's size or what a ZIP's data.json expands to "
        "(100 MB upstream upload cap x ~10 JSON compression, rounded up to 1 GiB)",
    )
    earliest_timestamp: datetime = Field(datetime(2000, 1, 1), description="records dated before this are quarantined")
    future_tolerance_hours: float = Field(
        24.0,
        ge=0,
        le=24 * 366,
        description="records dated more than this after the export's created_at (else the file's time) are quarantined",
    )


class RegistryConfig(_Strict):
    keep_versions: int = Field(
        10, ge=2, le=10000, description="newest versions kept (plus production and its predecessor)"
    )
    auto_promote: bool = Field(True, description="promote a new model when every evaluation gate passes")


class AlertsConfig(_Strict):
    """Where alerts go: always a JSON-lines file; a webhook when a URL is set (its secret is never logged)."""

    file: Path | None = Field(None, description="default <data_dir>/alerts/alerts.jsonl")
    webhook_url: str | None = Field(None, description="POST each alert as JSON here (e.g. a Slack/Teams/ntfy hook)")
    timeout_seconds: float = Field(5.0, gt=0, le=120)
    retries: int = Field(2, ge=0, le=10, description="extra attempts after the first on 5xx/429/network errors")
    webserver_base_url: str = Field("http://127.0.0.1:3000", description="prefix of the run links in alerts")


class DriftConfig(_Strict):
    """Drift of a new export against the production model's training baseline (see domain/drift.py)."""

    threshold: float = Field(0.1, gt=0, description="population stability index above which a feature has drifted")
    flag_share_threshold: float = Field(
        0.1, gt=0, le=1, description="absolute change in the share of windows the production model flags"
    )
    bins: int = Field(10, ge=2, le=100, description="quantile bins of the baseline per feature")
    min_windows: int = Field(10, ge=1, description="fewer windows with records than this: too few to judge")


class FreshnessConfig(_Strict):
    """Freshness windows shown in the UI (Dagster FreshnessPolicy) and alerted on when they fail."""

    ingest_quiet_hours: float = Field(
        24.0, ge=1 / 60, description="no export ingested for this long: the exporter or the log service stopped"
    )
    verdicts_max_lag_hours: float = Field(
        1.0, ge=0, description="an export's verdicts still by a replaced model this long after a promotion (alerted)"
    )


Deployment = Literal["local", "distributed"]


class TrainingConfig(_Strict):
    deployment: Deployment = Field(
        "local",
        description="local: folders under data_dir, SQLite instance, in-process steps; distributed: landing, "
        "assets and models under object_store, Postgres instance, Celery steps (see config/distributed.env)",
    )
    object_store: str | None = Field(
        None, description="distributed only: s3://bucket/prefix holding exports/, assets/ and models/"
    )
    celery_broker: str = "redis://127.0.0.1:6379/0"
    celery_backend: str = "redis://127.0.0.1:6379/1"
    data_dir: Path = Path("data")
    landing_dir: Path | None = None
    asset_storage: str | None = None
    models_dir: Path | None = None
    dagster_home: Path | None = None
    training_horizon_days: float = Field(30.0, gt=0)
    service_timezone: str = "UTC"
    executor: Literal["in_process", "multiprocess", "celery"] | None = None  # default by deployment
    max_concurrent_steps: int = Field(2, ge=1, le=64)
    run_niceness: int = Field(
        10,
        ge=0,
        le=19,
        description="a run lowers its own CPU priority to this niceness (never raises it), so the daemon's sensor ticks, "
        "the code server and the UI stay responsive while a retrain takes every core; 0: unchanged (POSIX)",
    )
    read_processes: int = Field(
        2,
        ge=1,
        le=64,
        description="cores that decode one large export (16 MiB of JSON or more): its records are split at record "
        "boundaries and the later parts decoded in forked processes, same table as on one core (Linux; 1: one core)",
    )
    verdicts_per_run: int = Field(
        10,
        ge=1,
        le=1000,
        description="exports re-scored in one verdict run when several are due at once (a promotion re-scores every "
        "export: Dagster's backfill of export_anomalies and export_drift, a partition range per run; 1: a run each)",
    )
    model_max_age_hours: float = Field(168.0, gt=0.02)
    sensor: SensorConfig = SensorConfig()
    quarantine: QuarantineConfig = QuarantineConfig()
    input_limits: InputLimitsConfig = InputLimitsConfig()
    registry: RegistryConfig = RegistryConfig()
    alerts: AlertsConfig = AlertsConfig()
    drift: DriftConfig = DriftConfig()
    freshness: FreshnessConfig = FreshnessConfig()

    @field_validator("service_timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r} (e.g. 'UTC', 'Europe/Berlin')") from exc
        return v

    @model_validator(mode="after")
    def _fill_paths(self) -> "TrainingConfig":
        # Each folder defaults to a child of data_dir; frozen model, so set through __dict__.
        if self.deployment == "distributed":
            store = (self.object_store or "").rstrip("/")
            if "://" not in store:
                raise ValueError(
                    "deployment 'distributed' needs object_store, an object-store URL such as s3://bucket/prefix "
                    f"(got {self.object_store!r})"
                )
            self.__dict__["object_store"] = store
            if self.asset_storage is None:
                self.__dict__["asset_storage"] = f"{store}/assets"
        if self.executor is None:
            self.__dict__["executor"] = "celery" if self.deployment == "distributed" else "in_process"
        root = self.data_dir
        defaults = {
            "landing_dir": root / "exports",
            "models_dir": root / "models",
            "dagster_home": root / "dagster_home",
        }
        for name, default in defaults.items():
            if getattr(self, name) is None:
                self.__dict__[name] = default
        if self.asset_storage is None:
            self.__dict__["asset_storage"] = str(root / "assets")
        if self.alerts.file is None:
            self.__dict__["alerts"] = self.alerts.model_copy(update={"file": root / "alerts" / "alerts.jsonl"})
        return self


class Settings(_Strict):
    model: ModelConfig
    training: TrainingConfig
    sources: tuple[str, ...] = ()
    # What these settings were loaded from (the config folder and the MCP_* variables, paths resolved), so
    # another process, e.g. a run worker, rebuilds exactly these settings: see PipelineSettings (defs/resources.py).
    config_dir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @property
    def landing_dir(self) -> Path:
        assert self.training.landing_dir is not None
        return self.training.landing_dir

    @property
    def models_dir(self) -> Path:
        assert self.training.models_dir is not None
        return self.training.models_dir

    @property
    def asset_storage(self) -> str:
        assert self.training.asset_storage is not None
        return self.training.asset_storage

    @property
    def landing_location(self) -> str:
        """Where exports land: the local landing folder, or ``<object_store>/exports`` when distributed."""
        if self.training.deployment == "distributed":
            return f"{self.training.object_store}/exports"
        return str(self.landing_dir)

    @property
    def models_location(self) -> str:
        """Where packages and the production pointer live: ``models_dir``, or ``<object_store>/models``."""
        if self.training.deployment == "distributed":
            return f"{self.training.object_store}/models"
        return str(self.models_dir)


# ------------------------------------------------------------------------------- loading
def config_dir() -> Path | None:
    """Where the YAML lives: ``$MCP_TRAINING_CONFIG_DIR``, else the repository's ``config/``."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return _REPO_CONFIG_DIR if _REPO_CONFIG_DIR.is_dir() else None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _env_overrides(prefix: str, env: Mapping[str, str], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``PREFIX_A__B=v`` -> ``{"a": {"b": v}}`` with YAML-parsed values."""
    out: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(prefix) or key in skip:
            continue
        parts = [p.lower() for p in key[len(prefix) :].split("__") if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"${key}: conflicts with another variable setting {part!r} to a scalar")
        node[parts[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _field_path(loc: tuple) -> list[str]:
    """Pydantic appends union branches (``int``, ``literal['auto']``) to the location; keep only
    the real field names so the message names the field and its environment variable."""
    out: list[str] = []
    for part in loc:
        p = str(part)
        if not p.isidentifier() or p in ("int", "str", "float", "bool") or "[" in p:
            break
        out.append(p)
    return out or [str(p) for p in loc]


def _explain(exc: ValidationError, source: str, env_prefix: str, env_keys: set[str]) -> ConfigError:
    lines: list[str] = []
    for err in exc.errors():
        loc = _field_path(err["loc"])
        dotted = ".".join(loc)
        env_name = env_prefix + "__".join(p.upper() for p in loc)
        where = f"${env_name}" if env_name in env_keys else source
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        line = f"{where}: {dotted}: {err['msg']}{got}"
        if line not in lines:
            lines.append(line)
    return ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def _resolve_relative(cfg: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in a YAML file are relative to the project root, not to the caller's cwd."""
    out = dict(cfg)
    for key in ("data_dir", "landing_dir", "models_dir", "dagster_home", "asset_storage"):
        value = out.get(key)
        if isinstance(value, str) and value and "://" not in value and not Path(value).is_absolute():
            out[key] = str((base / value).resolve())
    return out


def load_settings(config_directory: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate both config files plus environment overrides."""
    env = os.environ if env is None else env
    cdir = config_directory if config_directory is not None else config_dir()
    model_raw: dict[str, Any] = {}
    training_raw: dict[str, Any] = {}
    sources: list[str] = []
    if cdir is not None:
        model_path, training_path = cdir / MODEL_CONFIG_FILE, cdir / TRAINING_CONFIG_FILE
        model_raw = _read_yaml(model_path)
        training_raw = _resolve_relative(_read_yaml(training_path), cdir.parent)
        sources += [str(p) for p in (model_path, training_path) if p.exists()]
    else:
        model_path, training_path = Path(MODEL_CONFIG_FILE), Path(TRAINING_CONFIG_FILE)

    model_env = _env_overrides(MODEL_ENV_PREFIX, env)
    training_env = _env_overrides(TRAINING_ENV_PREFIX, env, skip=(CONFIG_DIR_ENV,))
    used = {
        k: v for k, v in env.items() if k.startswith((MODEL_ENV_PREFIX, TRAINING_ENV_PREFIX)) and k != CONFIG_DIR_ENV
    }
    for key in ("data_dir", "landing_dir", "models_dir", "dagster_home"):
        if isinstance(training_env.get(key), str):
            training_env[key] = str(Path(training_env[key]).expanduser().resolve())
            used[TRAINING_ENV_PREFIX + key.upper()] = training_env[key]  # a process elsewhere resolves the same
    env_keys = {k for k in env if k.startswith((MODEL_ENV_PREFIX, TRAINING_ENV_PREFIX))}
    sources += sorted(env_keys - {CONFIG_DIR_ENV})

    try:
        model = ModelConfig.model_validate(_deep_merge(model_raw, model_env))
    except ValidationError as exc:
        raise _explain(exc, str(model_path), MODEL_ENV_PREFIX, env_keys) from None
    try:
        training = TrainingConfig.model_validate(_deep_merge(training_raw, training_env))
    except ValidationError as exc:
        raise _explain(exc, str(training_path), TRAINING_ENV_PREFIX, env_keys) from None
    return Settings(
        model=model,
        training=training,
        sources=tuple(sources),
        config_dir=str(cdir.resolve()) if cdir is not None else None,
        env=dict(sorted(used.items())),
    )


@lru_cache(maxsize=8)
def _cached(config_directory: str | None, env_items: tuple[tuple[str, str], ...]) -> Settings:
    return load_settings(Path(config_directory) if config_directory else None, dict(env_items))


def settings_from(config_directory: str | None, env: Mapping[str, str]) -> Settings:
    """Settings loaded from this config folder and these variables only (``Settings.config_dir``/``env``),
    cached per process: how a resource rebuilds the settings its code location was built with."""
    return _cached(config_directory, tuple(sorted(env.items())))


def get_settings() -> Settings:
    """Settings for this process, reloaded whenever the relevant environment changes."""
    env_items = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("MCP_TRAINING_", "MCP_MODEL_"))))
    cdir = config_dir()
    return _cached(str(cdir) if cdir else None, env_items)
