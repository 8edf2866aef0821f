#!/usr/bin/env python3
"""Minimal example: verify this package, load it and score one 5-value window vector, as the agent does."""

import os
import sys

# Nothing is imported from this (not yet verified) folder: Python put it first on sys.path, where a
# planted joblib.py would shadow the real one. os and sys are built into the interpreter.
here = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
sys.dont_write_bytecode = True  # keep the hash-checked folder exactly as packaged

import importlib.util  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

spec = importlib.util.spec_from_file_location("validate_model", os.path.join(here, "validate_model.py"))
validate_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validate_model)
if problems := validate_model.verify_hashes(here):  # never joblib.load a file that fails its hash
    sys.exit("\n".join(problems))

import joblib  # noqa: E402  (verified first; and never from this folder)
import numpy as np  # noqa: E402

here = Path(here)
cfg = json.loads((here / "metadata.json").read_text())["inference_config"]
model = joblib.load(here / "model.joblib")
# [log_count, error_count, warning_count, unique_program_count, unique_host_count], unscaled
x = np.array([[40.0, 3.0, 1.0, 0.0, 0.0]])
score = -model.score_samples(x)[0]  # HIGHER = MORE anomalous
print(f"predict={model.predict(x)[0]} score={score:.4f} anomalous={score > cfg['threshold']}")
