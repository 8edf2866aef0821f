"""Reading the label and episode side files beside an export (``<export>.labels.csv``, ``.episodes.csv``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mcp_training_dagster.domain.scenarios.config import EPISODE_COLUMNS, NORMAL


def _side_path(export_path: Path, suffix: str) -> Path:
    export_path = Path(export_path)
    return export_path.with_name(export_path.name + suffix)


def _read_side_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: file is empty (expected a header {','.join(required)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: line 1: missing column(s) {missing}; found {list(df.columns)}")
    return df


_TRUE = {"1", "true", "yes", "t", "y"}
_FALSE = {"0", "false", "no", "f", "n"}


def _parse_bool(path: Path, values: pd.Series, column: str) -> np.ndarray:
    low = values.str.strip().str.lower()
    bad = ~low.isin(_TRUE | _FALSE)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}: line {i + 2}: {column} must be 0/1 or true/false, got {values.iloc[i]!r}")
    return low.isin(_TRUE).to_numpy()


def read_labels(export_path: Path) -> pd.DataFrame | None:
    """Labels beside an export (``<export>.labels.csv``: id,is_anomaly[,scenario]), or None if there are
    none. Without a scenario column, scenario is "anomaly"/"normal". Raises ValueError naming the file
    and line of bad content."""
    path = _side_path(Path(export_path), ".labels.csv")
    if not path.exists():
        return None
    df = _read_side_csv(path, ("id", "is_anomaly"))
    ids = pd.to_numeric(df["id"].str.strip(), errors="coerce")
    bad = ids.isna() | (ids != np.floor(ids))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}: line {i + 2}: id must be an integer, got {df['id'].iloc[i]!r}")
    ids = ids.astype(np.int64)
    dup = ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(f"{path}: line {i + 2}: id {int(ids.iloc[i])} is labelled twice")
    flags = _parse_bool(path, df["is_anomaly"], "is_anomaly")
    if "scenario" in df.columns:
        scen = df["scenario"].str.strip()
        empty = scen == ""
        scen = scen.where(~empty, pd.Series(np.where(flags, "anomaly", NORMAL), index=scen.index))
    else:
        scen = pd.Series(np.where(flags, "anomaly", NORMAL))
    return pd.DataFrame(
        {"id": ids.to_numpy(), "is_anomaly": flags, "scenario": pd.Series(scen.to_numpy(), dtype="str")}
    )


def read_episodes(export_path: Path) -> pd.DataFrame | None:
    """Episodes beside an export (``<export>.episodes.csv``), or None if there are none; ValueError
    naming the file and line of bad content."""
    path = _side_path(Path(export_path), ".episodes.csv")
    if not path.exists():
        return None
    df = _read_side_csv(path, EPISODE_COLUMNS)
    out = pd.DataFrame(
        {
            c: pd.Series(df[c].str.strip().to_numpy(), dtype="str")
            for c in ("scenario", "device", "entity_kind", "entity")
        }
    )
    out.insert(1, "is_anomaly", _parse_bool(path, df["is_anomaly"], "is_anomaly"))
    for col in ("start", "end"):
        parsed = pd.to_datetime(df[col].str.strip(), errors="coerce", format="ISO8601")
        if parsed.isna().any():
            i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise ValueError(f"{path}: line {i + 2}: {col} is not an ISO-8601 time: {df[col].iloc[i]!r}")
        if getattr(parsed.dt, "tz", None) is not None:
            raise ValueError(f"{path}: {col} must be naive (service wall-clock) times")
        out[col] = parsed.astype("datetime64[us]")
    bad = out["end"] <= out["start"]
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}: line {i + 2}: end must be after start")
    return out.loc[:, list(EPISODE_COLUMNS)]
