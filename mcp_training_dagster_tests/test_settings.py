"""Settings: shipped YAML vs defaults, environment overrides, paths, and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

import mcp_training_dagster
from mcp_training_dagster.settings import (
    ConfigError,
    ModelConfig,
    SensorConfig,
    TrainingConfig,
    load_settings,
)

REPO_CONFIG = Path(mcp_training_dagster.__file__).resolve().parents[1] / "config"
NOWHERE = Path("/nonexistent")


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(**kw) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(**kw)
    return str(info.value)


# ------------------------------------------------------------------------ shipped files
def test_shipped_config_files_exist() -> None:
    assert (REPO_CONFIG / "model_config.yaml").is_file()
    assert (REPO_CONFIG / "training_config.yaml").is_file()


def test_shipped_model_config_equals_defaults() -> None:
    shipped = load_settings(REPO_CONFIG, env={})
    defaults = load_settings(NOWHERE, env={})
    assert shipped.model == defaults.model == ModelConfig()
    assert shipped.sources == (str(REPO_CONFIG / "model_config.yaml"), str(REPO_CONFIG / "training_config.yaml"))
    assert defaults.sources == ()


def test_shipped_training_config_equals_defaults_except_paths() -> None:
    shipped = load_settings(REPO_CONFIG, env={}).training
    defaults = TrainingConfig()
    paths = {"data_dir", "landing_dir", "models_dir", "dagster_home", "asset_storage"}
    exclude = {**{p: True for p in paths}, "alerts": {"file": True}}  # alerts.file defaults under data_dir too
    assert shipped.model_dump(exclude=exclude) == defaults.model_dump(exclude=exclude)
    assert shipped.alerts.file == shipped.data_dir / "alerts" / "alerts.jsonl"
    assert shipped.sensor == SensorConfig()
    # relative paths in the YAML are relative to the project root, not to the cwd
    root = REPO_CONFIG.parent
    assert shipped.data_dir == (root / "data").resolve()
    assert shipped.landing_dir == shipped.data_dir / "exports"
    assert shipped.models_dir == shipped.data_dir / "models"
    assert shipped.dagster_home == shipped.data_dir / "dagster_home"
    assert shipped.asset_storage == str(shipped.data_dir / "assets")


def test_documented_defaults() -> None:
    m = ModelConfig()
    assert m.detector.kind == "isolation_forest"
    assert m.detector.contamination == 0.02
    assert m.windows.length_minutes == 5
    assert m.windows.entities == ("device", "station", "interface")
    assert m.windows.burst_seconds == 10
    assert m.training.min_training_windows == 20
    t = TrainingConfig()
    assert t.service_timezone == "UTC"
    assert t.training_horizon_days == 30
    assert t.sensor.file_patterns == ("*.json", "*.zip")


# ---------------------------------------------------------------------------- overrides
def test_env_overrides_applied_and_yaml_parsed(tmp_path: Path) -> None:
    s = load_settings(
        NOWHERE,
        env={
            "MCP_MODEL_DETECTOR__KIND": "local_outlier_factor",
            "MCP_TRAINING_SENSOR__INTERVAL_SECONDS": "5",
            "MCP_MODEL_WINDOWS__ENTITIES": "[device, station]",
            "MCP_MODEL_DETECTOR__CONTAMINATION": "0.05",
            "MCP_TRAINING_SERVICE_TIMEZONE": "Europe/Berlin",
            "UNRELATED": "ignored",
        },
    )
    assert s.model.detector.kind == "local_outlier_factor"
    assert s.training.sensor.interval_seconds == 5
    assert isinstance(s.training.sensor.interval_seconds, int)
    assert s.model.windows.entities == ("device", "station")
    assert s.model.detector.contamination == 0.05
    assert s.training.service_timezone == "Europe/Berlin"
    assert "MCP_MODEL_DETECTOR__KIND" in s.sources
    assert "UNRELATED" not in s.sources


def test_env_overrides_win_over_yaml(tmp_path: Path) -> None:
    write(tmp_path / "config", "model_config.yaml", "detector:\n  kind: isolation_forest\n  contamination: 0.1\n")
    s = load_settings(tmp_path / "config", env={"MCP_MODEL_DETECTOR__KIND": "local_outlier_factor"})
    assert s.model.detector.kind == "local_outlier_factor"
    assert s.model.detector.contamination == 0.1  # the rest of the YAML block is kept (deep merge)


def test_data_dir_moves_everything(tmp_path: Path) -> None:
    root = tmp_path / "data root"
    s = load_settings(NOWHERE, env={"MCP_TRAINING_DATA_DIR": str(root)})
    assert s.training.data_dir == root
    assert s.landing_dir == root / "exports"
    assert s.models_dir == root / "models"
    assert s.training.dagster_home == root / "dagster_home"
    assert s.asset_storage == str(root / "assets")


def test_data_dir_env_over_shipped_yaml(tmp_path: Path) -> None:
    s = load_settings(REPO_CONFIG, env={"MCP_TRAINING_DATA_DIR": str(tmp_path)})
    assert s.landing_dir == tmp_path / "exports"
    assert s.models_dir == tmp_path / "models"


def test_explicit_landing_dir_wins(tmp_path: Path) -> None:
    s = load_settings(
        NOWHERE,
        env={"MCP_TRAINING_DATA_DIR": str(tmp_path / "data"), "MCP_TRAINING_LANDING_DIR": str(tmp_path / "inbox")},
    )
    assert s.landing_dir == tmp_path / "inbox"
    assert s.models_dir == tmp_path / "data" / "models"


def test_landing_dir_in_yaml_relative_to_project_root(tmp_path: Path) -> None:
    write(tmp_path / "config", "training_config.yaml", "data_dir: ./rt\nlanding_dir: ./drop\n")
    s = load_settings(tmp_path / "config", env={})
    assert s.training.data_dir == (tmp_path / "rt").resolve()
    assert s.landing_dir == (tmp_path / "drop").resolve()
    assert s.models_dir == (tmp_path / "rt" / "models").resolve()


def test_data_dir_fixture_env(data_dir: Path) -> None:
    """The conftest data_dir fixture sets MCP_TRAINING_DATA_DIR in os.environ; load_settings reads it."""
    s = load_settings(NOWHERE)
    assert s.landing_dir == data_dir / "exports"
    assert s.landing_dir.is_dir()


def test_object_store_asset_storage_kept(tmp_path: Path) -> None:
    write(tmp_path / "config", "training_config.yaml", "asset_storage: s3://bucket/prefix\n")
    s = load_settings(tmp_path / "config", env={})
    assert s.asset_storage == "s3://bucket/prefix"


def test_empty_yaml_files_mean_defaults(tmp_path: Path) -> None:
    write(tmp_path / "config", "model_config.yaml", "# nothing\n")
    write(tmp_path / "config", "training_config.yaml", "")
    s = load_settings(tmp_path / "config", env={})
    assert s.model == ModelConfig()
    assert s.training.sensor == SensorConfig()


# ------------------------------------------------------------------------------- errors
def test_bad_value_in_file_names_file_field_and_allowed(tmp_path: Path) -> None:
    path = write(tmp_path / "config", "model_config.yaml", "detector:\n  kind: foo\n")
    msg = config_error(config_directory=tmp_path / "config", env={})
    assert str(path) in msg
    assert "detector.kind" in msg
    assert "isolation_forest" in msg and "local_outlier_factor" in msg
    assert "foo" in msg


def test_out_of_range_value_in_training_file(tmp_path: Path) -> None:
    path = write(tmp_path / "config", "training_config.yaml", "sensor:\n  interval_seconds: 0\n")
    msg = config_error(config_directory=tmp_path / "config", env={})
    assert str(path) in msg
    assert "sensor.interval_seconds" in msg
    assert "greater than or equal to 1" in msg


def test_bad_env_var_names_the_variable(tmp_path: Path) -> None:
    msg = config_error(config_directory=NOWHERE, env={"MCP_MODEL_DETECTOR__KIND": "foo"})
    assert "$MCP_MODEL_DETECTOR__KIND" in msg
    assert "detector.kind" in msg
    assert "isolation_forest" in msg
    msg = config_error(config_directory=NOWHERE, env={"MCP_TRAINING_SENSOR__INTERVAL_SECONDS": "often"})
    assert "$MCP_TRAINING_SENSOR__INTERVAL_SECONDS" in msg
    assert "sensor.interval_seconds" in msg


def test_bad_env_var_for_union_field_names_the_variable() -> None:
    # max_samples is ``int | "auto"``: the error must still point at the variable that set it
    msg = config_error(config_directory=NOWHERE, env={"MCP_MODEL_DETECTOR__ISOLATION_FOREST__MAX_SAMPLES": "lots"})
    assert "$MCP_MODEL_DETECTOR__ISOLATION_FOREST__MAX_SAMPLES" in msg
    assert "detector.isolation_forest.max_samples" in msg
    assert "model_config.yaml" not in msg


def test_unknown_key_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "config", "model_config.yaml", "detector:\n  contamnation: 0.1\n")
    msg = config_error(config_directory=tmp_path / "config", env={})
    assert str(path) in msg
    assert "detector.contamnation" in msg
    assert "not permitted" in msg
    msg = config_error(config_directory=NOWHERE, env={"MCP_TRAINING_SENSOR__INTERVAL_SECOND": "5"})
    assert "$MCP_TRAINING_SENSOR__INTERVAL_SECOND" in msg


def test_invalid_yaml_rejected_with_file_name(tmp_path: Path) -> None:
    path = write(tmp_path / "config", "training_config.yaml", "sensor:\n  interval_seconds: [5\n")
    msg = config_error(config_directory=tmp_path / "config", env={})
    assert str(path) in msg
    assert "not valid YAML" in msg


def test_yaml_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "config", "model_config.yaml", "- detector\n- windows\n")
    msg = config_error(config_directory=tmp_path / "config", env={})
    assert str(path) in msg
    assert "mapping" in msg


def test_unknown_time_zone_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "config", "training_config.yaml", "service_timezone: Mars/Olympus_Mons\n")
    msg = config_error(config_directory=tmp_path / "config", env={})
    assert str(path) in msg
    assert "service_timezone" in msg
    assert "Mars/Olympus_Mons" in msg
    msg = config_error(config_directory=NOWHERE, env={"MCP_TRAINING_SERVICE_TIMEZONE": "CEST+2"})
    assert "$MCP_TRAINING_SERVICE_TIMEZONE" in msg


def test_duplicate_entities_rejected() -> None:
    msg = config_error(config_directory=NOWHERE, env={"MCP_MODEL_WINDOWS__ENTITIES": "[device, device]"})
    assert "windows.entities" in msg
    assert "unique" in msg


def test_settings_are_frozen() -> None:
    s = load_settings(NOWHERE, env={})
    with pytest.raises(Exception):
        s.model.detector.kind = "local_outlier_factor"  # type: ignore[misc]
