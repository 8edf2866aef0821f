"""Small PNG figures for Dagster's Markdown metadata, drawn with numpy and zlib only.

Why no plotting library: the one figure the UI needs (a histogram with a threshold line, ~3 KB) does not
justify matplotlib's ~40 MB and its import time in every run process; a PNG is a few lines of zlib.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

BAR = (70, 110, 180)
ANOMALOUS = (200, 120, 60)
LINE = (200, 30, 30)
AXIS = (90, 90, 90)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an (h, w, 3) uint8 array as a PNG (filter 0 per row, zlib level 9)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def score_histogram(
    scores: np.ndarray, threshold: float, *, bins: int = 40, width: int = 400, height: int = 140
) -> bytes:
    """Histogram of scores (log-scaled counts, so the few anomalous windows stay visible) with the threshold
    as a red vertical line; bars above the threshold in orange."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    pad = 6
    img[height - pad, pad : width - pad] = AXIS
    if scores.size == 0:
        return png_bytes(img)
    lo, hi = float(min(scores.min(), threshold)), float(max(scores.max(), threshold))
    if hi <= lo:
        hi = lo + 1e-9
    counts, edges = np.histogram(scores, bins=bins, range=(lo, hi))
    plot_w, plot_h = width - 2 * pad, height - 2 * pad
    heights = np.log1p(counts) / np.log1p(counts.max()) * (plot_h - 1)
    bar_w = plot_w / bins
    for i, bh in enumerate(heights):
        if counts[i] == 0:
            continue
        x0, x1 = pad + int(i * bar_w), pad + max(int((i + 1) * bar_w) - 1, int(i * bar_w) + 1)
        y0 = height - pad - max(int(round(bh)), 1)
        img[y0 : height - pad, x0:x1] = ANOMALOUS if edges[i] >= threshold else BAR
    tx = pad + int(round((threshold - lo) / (hi - lo) * (plot_w - 1)))
    img[pad : height - pad, max(tx - 1, 0) : tx + 1] = LINE
    return png_bytes(img)


def markdown_image(png: bytes, alt: str) -> str:
    """The PNG inline in Markdown (a data URI: the figure travels with the materialisation event)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
