"""The score histogram is a real, small PNG with the threshold drawn on it."""

import base64
import struct
import zlib

import numpy as np

from mcp_training_dagster.domain.plots import LINE, markdown_image, score_histogram


def _decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    idat = png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8]
    raw = zlib.decompress(idat)
    rows = [raw[y * (3 * w + 1) + 1 : (y + 1) * (3 * w + 1)] for y in range(h)]
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(h, w, 3)


def test_histogram_is_a_small_png_with_a_red_threshold_line():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.4, 0.05, 2000), rng.normal(0.7, 0.02, 40)])
    png = score_histogram(scores, threshold=0.6)
    assert len(png) < 8_000
    img = _decode(png)
    assert img.shape == (140, 400, 3)
    red_columns = np.where((img == LINE).all(axis=2).sum(axis=0) > 100)[0]
    x = (0.6 - scores.min()) / (scores.max() - scores.min()) * (400 - 12) + 6
    assert red_columns.size and abs(red_columns.mean() - x) < 4, "the line sits at the threshold"
    md = markdown_image(png, "scores")
    assert md.startswith("![scores](data:image/png;base64,") and base64.b64decode(md.split(",", 1)[1][:-1]) == png


def test_empty_scores_still_draw():
    assert _decode(score_histogram(np.zeros(0), 0.5)).shape == (140, 400, 3)
