#!/usr/bin/env python3
"""Minimal example: verify this package, load it and score an export file.  python inference_example.py EXPORT.json"""

import os
import sys

# score_export.py is loaded from its file, and takes this folder off sys.path until it has verified
# every file (a planted json.py or joblib.py beside it would otherwise shadow the real module).
here = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
sys.dont_write_bytecode = True  # keep the hash-checked folder exactly as packaged

import importlib.util  # noqa: E402

spec = importlib.util.spec_from_file_location("score_export", os.path.join(here, "score_export.py"))
score_export = importlib.util.module_from_spec(spec)
sys.modules["score_export"] = score_export
spec.loader.exec_module(score_export)
load_package, score_file = score_export.load_package, score_export.score_file  # verifies every file first

pkg = load_package()
table = score_file(sys.argv[1])  # one row per window, most anomalous first
# score = -model.score_samples(X): HIGHER = MORE anomalous; anomalous when score > threshold.
print(f"model {pkg['metadata']['model_info']['version']}, threshold {pkg['threshold']:.6g}")
print(f"{int(table['is_anomaly'].sum())} anomalous of {len(table)} windows")
print(table[table["is_anomaly"]].head(10).to_string(index=False))
