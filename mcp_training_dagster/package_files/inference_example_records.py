#!/usr/bin/env python3
"""Minimal example: verify this package, load it and score an export file.  python inference_example.py EXPORT.json"""
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the hash-checked folder exactly as packaged
sys.path.insert(0, str(Path(__file__).resolve().parent))
from score_export import load_package, score_file  # noqa: E402  (verifies every file's SHA-256 first)

pkg = load_package()
table = score_file(sys.argv[1])  # one row per window, most anomalous first
# score = -model.score_samples(X): HIGHER = MORE anomalous; anomalous when score > threshold.
print(f"model {pkg['metadata']['model_info']['version']}, threshold {pkg['threshold']:.6g}")
print(f"{int(table['is_anomaly'].sum())} anomalous of {len(table)} windows")
print(table[table["is_anomaly"]].head(10).to_string(index=False))
