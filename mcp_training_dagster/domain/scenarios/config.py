"""Scenario names, label/episode columns and units; what to generate (``ScenarioConfig``) and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ANOMALY_SCENARIOS: tuple[str, ...] = (
    "deauth_flood",
    "auth_bruteforce",
    "reconnect_loop",
    "mac_flood",
    "radio_fault",
    "silence",
)
BENIGN_SCENARIOS: tuple[str, ...] = ("reboot_wave", "mistyped_passphrase", "iot_gtk_deauth", "boot_dfs")
NORMAL = "normal"
SCENARIO_NAMES: tuple[str, ...] = (NORMAL, *ANOMALY_SCENARIOS, *BENIGN_SCENARIOS)
_SCEN = {name: i for i, name in enumerate(SCENARIO_NAMES)}

LABEL_COLUMNS: tuple[str, ...] = ("id", "is_anomaly", "scenario")
EPISODE_COLUMNS: tuple[str, ...] = ("scenario", "is_anomaly", "device", "entity_kind", "entity", "start", "end")
_LEVELS: tuple[str, ...] = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY = 86_400
_HOUR = 3_600


# --------------------------------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------------------------------
class ScenarioConfig(BaseModel):
    """What to generate. Validated so a typo in a scenario name fails loudly instead of silently."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Ranges are field constraints: pydantic names the field, the limit and the value given.
    seed: int = Field(0, ge=0)  # numpy seed sequences take non-negative integers
    start: datetime = datetime(2025, 6, 1)  # naive, the service's wall-clock time (whole seconds)
    days: float = Field(7.0, ge=0.1, le=400)
    n_devices: int = Field(3, ge=1, le=500)
    # inclusive range (lo, hi), drawn per device; each within 1..250 and lo <= hi
    stations_per_device: tuple[Annotated[int, Field(ge=1, le=250)], Annotated[int, Field(ge=1, le=250)]] = (8, 30)
    episodes_per_scenario: int = Field(3, ge=0)  # per anomaly scenario, over the whole dataset
    benign_per_scenario: int = Field(3, ge=0)  # per benign lookalike
    scenarios: tuple[str, ...] = ANOMALY_SCENARIOS
    benign: tuple[str, ...] = BENIGN_SCENARIOS
    first_id: int = Field(1, ge=0)

    @field_validator("start")
    @classmethod
    def _naive(cls, v: datetime) -> datetime:
        if v.tzinfo is not None:
            raise ValueError("start must be naive (the service's wall-clock time)")
        return v.replace(microsecond=0)

    @field_validator("stations_per_device")
    @classmethod
    def _stations(cls, v: tuple[int, int]) -> tuple[int, int]:
        lo, hi = v
        if lo > hi:
            raise ValueError("stations_per_device must be (lo, hi) with 1 <= lo <= hi <= 250")
        return v

    @model_validator(mode="after")
    def _names(self) -> ScenarioConfig:
        for field_name, allowed in (("scenarios", ANOMALY_SCENARIOS), ("benign", BENIGN_SCENARIOS)):
            names = getattr(self, field_name)
            unknown = [n for n in names if n not in allowed]
            if unknown:
                raise ValueError(f"unknown {field_name} {unknown}; choose from {list(allowed)}")
            if len(set(names)) != len(names):
                raise ValueError(f"{field_name} lists a scenario twice: {list(names)}")
        return self


@dataclass
class GeneratedData:
    """Export records plus their ground truth."""

    records: list[dict]  # export records, 13 keys each in the service's order, newest first
    labels: pd.DataFrame  # LABEL_COLUMNS: one row per record
    episodes: pd.DataFrame  # EPISODE_COLUMNS: one row per injected episode
    config: ScenarioConfig
    # extras for tests and reports: the simulated devices, and each record's intended event type/station
    devices: pd.DataFrame = field(default_factory=pd.DataFrame)
    intended_events: pd.DataFrame = field(default_factory=pd.DataFrame)  # id, event_type, station_mac
