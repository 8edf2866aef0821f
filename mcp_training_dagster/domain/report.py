"""Small helpers for what a person reads (Markdown tables, rounded figures) and for content fingerprints.

Model cards, asset metadata and CLI summaries all render through here, so a figure reads the same
everywhere: three significant decimals, ``n/a`` for a missing value, no Python reprs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def fmt(value: Any, digits: int = 3) -> str:
    """A value as a person reads it: floats rounded, None as ``n/a``, lists joined, mappings as ``k v``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}" if abs(value) >= 10**-digits or value == 0 else f"{value:.2e}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {fmt(v, digits)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple | set):
        return ", ".join(fmt(v, digits) for v in value) or "-"
    return str(value)


def markdown_table(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3
) -> str:
    """A Markdown table from a DataFrame or a list of mappings (``_none_`` when there are no rows)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if columns is not None:
        frame = frame.loc[:, list(columns)]
    if frame.empty:
        return "_none_"
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(fmt(v, digits).replace("|", "\\|") for v in row) + " |"
        for row in frame.itertuples(index=False, name=None)
    ]
    return "\n".join([head, rule, *body])


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a table (columns, dtypes and values; row order matters), linear in its size.

    Used as a Dagster data version, and to recognise a retrain whose inputs are identical to a
    registered model's."""
    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    if len(frame):
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:32]


def text_fingerprint(*parts: str) -> str:
    """A hash of several strings (config dumps, code versions, other fingerprints)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]
