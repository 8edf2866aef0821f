#!/usr/bin/env python3
"""Minimal example: verify this package, load it and score one 5-value window vector, as the agent does."""
import json
import sys
from pathlib import Path

import joblib
import numpy as np

here = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # keep the hash-checked folder exactly as packaged
sys.path.insert(0, str(here))
from validate_model import verify_hashes  # noqa: E402

if problems := verify_hashes(here):  # never joblib.load a file that fails its hash
    sys.exit("\n".join(problems))
cfg = json.loads((here / "metadata.json").read_text())["inference_config"]
model = joblib.load(here / "model.joblib")
# [log_count, error_count, warning_count, unique_program_count, unique_host_count], unscaled
x = np.array([[40.0, 3.0, 1.0, 0.0, 0.0]])
score = -model.score_samples(x)[0]  # HIGHER = MORE anomalous
print(f"predict={model.predict(x)[0]} score={score:.4f} anomalous={score > cfg['threshold']}")
