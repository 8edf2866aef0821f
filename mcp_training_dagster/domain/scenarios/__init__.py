"""Labelled scenario generator: realistic router syslog in the upstream export format, with ground truth.

Why: real exports carry no labels, so precision and recall can only be measured on data whose
anomalies we know. This module simulates WiFi routers (ASUS/Broadcom ``hostapd`` + ``wlceventd`` and
OpenWrt ``hostapd`` phrasings), calibrated on the real ASUS export shipped in ``sample_exports``, and
injects attack episodes and benign lookalikes, labelling every record.

Design rules
- Normal traffic is modelled per station (IoT devices always on, phones following a home/away day with
  power-save churn, laptops/TVs in blocks, occasional visitors), so counts, diurnal shape, the hourly
  device-wide group rekey burst and the connect/disconnect line groups look like the real file.
- Attacks differ from normal traffic in the *rates and combinations* of events, never in a wording of
  their own: every phrasing (and reason code) an attack uses also occurs, rarely, in normal or benign
  traffic. Wording, reason codes and intensity vary per episode and per device.
- Every template is classified by the project's event catalog to the event type it is meant to be
  (tested), and the station MAC is the first MAC of each line, as validation expects.
- Reproducible: ``numpy.random.default_rng`` streams derived from the seed (no global random state, no
  wall clock), so the same config gives byte-identical records. The stations and sessions of a device
  do not depend on which episodes are configured (separate streams).

Episodes never overlap on one device, avoid the first day (history for detectors) and are spread over
the period by stratified sampling. Records produced by an episode are labelled with its scenario; normal
records of other stations during an episode stay ``normal``. Silence episodes have no records (only an
episode row); a station episode replaces that station's own normal records inside its window.

``inject_episodes`` writes the same anomaly episodes, with the same builders and templates, into a
held-out period of a REAL validated stream: on a simulated twin of each real device (its device key,
host name, interfaces, vendor wording and known stations), returning the new records with their
labels, the episodes, and the ids of real records a silence (or a reconnect loop) takes away.

Modules (one per section): ``config`` (names, columns, ``ScenarioConfig``, ``GeneratedData``),
``templates`` (wording and codes), ``world`` (devices, stations, vendor phrasings, normal traffic),
``episodes`` (planning, scheduling, the episode builders), ``generation`` (``generate``, writing an
export and its side files), ``injection`` (``inject_episodes``) and ``labels`` (reading the side files).
This package re-exports the names used elsewhere in the project; import anything else from its module.
"""

from __future__ import annotations

from mcp_training_dagster.domain.scenarios.config import (
    ANOMALY_SCENARIOS,
    EPISODE_COLUMNS,
    LABEL_COLUMNS,
    NORMAL,
    SCENARIO_NAMES,
    GeneratedData,
    ScenarioConfig,
)
from mcp_training_dagster.domain.scenarios.generation import export_document, generate, write_export
from mcp_training_dagster.domain.scenarios.injection import Injection, inject_episodes
from mcp_training_dagster.domain.scenarios.labels import read_episodes, read_labels
from mcp_training_dagster.domain.scenarios.templates import TEMPLATE_CODES, TEMPLATES, render, template_fields

# The tests check that attack phrasings are a subset of normal ones through these (private) pools.
from mcp_training_dagster.domain.scenarios.world import (  # noqa: F401  (re-exported for the tests)
    _ASUS_ATTACK_DISC,
    _ASUS_LEAVE,
    _ASUS_LEAVE_PLAIN,
    _LOCAL_DEAUTH,
    _OPENWRT_ATTACK_DISC,
    _OPENWRT_LEAVE,
)

__all__ = [
    "ANOMALY_SCENARIOS",
    "EPISODE_COLUMNS",
    "LABEL_COLUMNS",
    "NORMAL",
    "SCENARIO_NAMES",
    "TEMPLATES",
    "TEMPLATE_CODES",
    "GeneratedData",
    "Injection",
    "ScenarioConfig",
    "export_document",
    "generate",
    "inject_episodes",
    "read_episodes",
    "read_labels",
    "render",
    "template_fields",
    "write_export",
]
