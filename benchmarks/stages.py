"""The stages; each runs in its own fresh interpreter: ``python -m benchmarks.stages --_stage S --_spec JSON``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.generator import records_for_megabytes, write_export
from benchmarks.probe import MIB, _peak_rss_mb, _Probe, _write_parquet

STAGES: tuple[str, ...] = (
    "generate",
    "parse_floor",
    "read",
    "validate",
    "read_validate",
    "write_parquet",
    "windows",
    "train",
    "end_to_end",
)


# ---------------------------------------------------------------------------------------------
# The stages (each runs in its own fresh process; ``spec`` holds the paths it reads and writes)
# ---------------------------------------------------------------------------------------------

Spec = dict[str, Any]


def _decoder() -> Any:
    """What the raw_export asset reads with (training.read_processes: config/, or MCP_TRAINING_READ_PROCESSES)."""
    from mcp_training_dagster.domain.export_split import split_decoder
    from mcp_training_dagster.settings import get_settings

    return split_decoder(get_settings().training.read_processes)


def _stage_generate(spec: Spec) -> dict[str, Any]:
    import numpy  # noqa: F401  (part of the baseline)

    probe = _Probe()
    n = spec["records"] or records_for_megabytes(spec["file_mb"], spec["seed"])
    probe.start()
    path = write_export(Path(spec["dir"]), n, spec["seed"])
    out = probe.stop()
    return {**out, "records": n, "export": str(path), "seed": spec["seed"]}


def _stage_parse_floor(spec: Spec) -> dict[str, Any]:
    """The floor ingest is judged against: the fastest of the well-kept parsers at hand (orjson, msgspec
    without a schema, stdlib json) turning the file's bytes into Python objects, nothing else. The
    line's ``seconds`` are the fastest parser's; every parser's wall and CPU seconds are in ``parsers``."""
    import gc
    import json

    import msgspec
    import orjson

    payload = Path(spec["export"]).read_bytes()  # untimed: reading the file is not parsing
    parsers: dict[str, Callable[[bytes], Any]] = {
        "orjson": orjson.loads,
        "msgspec": msgspec.json.decode,
        "json": json.loads,
    }
    runs: dict[str, dict[str, Any]] = {}
    n = 0
    for name, parse in parsers.items():
        probe = _Probe()
        probe.start()
        doc = parse(payload)
        runs[name] = probe.stop()
        n = len(doc["data"])
        del doc
        gc.collect()
    fastest = min(runs, key=lambda name: runs[name]["seconds"])
    return {
        **runs[fastest],
        "records": n,
        "parser": fastest,
        "parsers": {name: {k: r[k] for k in ("seconds", "cpu_seconds", "load_avg_1m")} for name, r in runs.items()},
        "orjson_seconds": runs["orjson"]["seconds"],
        "msgspec_seconds": runs["msgspec"]["seconds"],
        "stdlib_json_seconds": runs["json"]["seconds"],
    }


def _stage_read(spec: Spec) -> dict[str, Any]:
    from mcp_training_dagster.serving.exports import read_export

    probe = _Probe()
    probe.start()
    raw = read_export(spec["export"], decode=_decoder())
    out = probe.stop()
    _write_parquet(raw.records, Path(spec["raw"]))  # untimed: the input of `validate`
    return {**out, "records": len(raw.records)}


def _validate(raw: Any, source_file: str) -> Any:
    from mcp_training_dagster.serving.validation import validate_records

    return validate_records(raw, source_file, service_timezone="UTC", extra_wifi_processes=())


def _stage_validate(spec: Spec) -> dict[str, Any]:
    import pandas as pd

    import mcp_training_dagster.serving.validation  # noqa: F401  (part of the baseline)

    probe = _Probe()
    raw = pd.read_parquet(spec["raw"])
    probe.start()
    result = _validate(raw, Path(spec["export"]).name)
    out = probe.stop()
    _write_parquet(result.records, Path(spec["validated"]))  # untimed: input of later stages
    counts = {"valid_records": len(result.records), "quarantined": len(result.quarantine)}
    return {**out, "records": len(raw), **counts}


def _stage_read_validate(spec: Spec) -> dict[str, Any]:
    import mcp_training_dagster.serving.validation  # noqa: F401  (part of the baseline)
    from mcp_training_dagster.serving.exports import read_export

    probe = _Probe()
    probe.start()
    raw = read_export(spec["export"], decode=_decoder())
    t_read = probe.elapsed()
    result = _validate(raw.records, raw.facts.file_name)
    out = probe.stop()
    steps = {"read": t_read, "validate": out["seconds"] - t_read}
    return {**out, "records": len(raw.records), "valid_records": len(result.records), "steps": steps}


def _stage_write_parquet(spec: Spec) -> dict[str, Any]:
    import pandas as pd

    probe = _Probe()
    records = pd.read_parquet(spec["validated"])
    probe.start()
    _write_parquet(records, Path(spec["dir"]) / "written.parquet")
    out = probe.stop()
    size = (Path(spec["dir"]) / "written.parquet").stat().st_size / MIB
    return {**out, "records": len(records), "parquet_mb": size}


def _stage_windows(spec: Spec) -> dict[str, Any]:
    import pandas as pd

    from mcp_training_dagster.serving.features import WindowSpec, build_windows

    probe = _Probe()
    records = pd.read_parquet(spec["validated"])
    probe.start()
    windows = build_windows(records, WindowSpec())
    out = probe.stop()
    _write_parquet(windows, Path(spec["windows"]))  # untimed: input of `train`
    return {**out, "records": len(records), "windows": len(windows)}


def _stage_train(spec: Spec) -> dict[str, Any]:
    import pandas as pd

    from mcp_training_dagster.domain.training import train_model
    from mcp_training_dagster.settings import DetectorConfig

    probe = _Probe()
    windows = pd.read_parquet(spec["windows"])
    total = len(windows)
    cap = spec["train_cap"]
    if cap and total > cap:
        windows = windows.sample(n=cap, random_state=spec["seed"]).sort_values("window_start", kind="stable")
    probe.start()
    model = train_model(windows, DetectorConfig(), window_minutes=5)
    out = probe.stop()
    return {
        **out,
        "records": spec["n_records"],
        "windows": len(windows),
        "windows_total": total,
        "subsampled": len(windows) < total,
        "windows_per_s": round(len(windows) / out["seconds"]),
        "fit_seconds": model.training_seconds,
    }


def _stage_end_to_end(spec: Spec) -> dict[str, Any]:
    import pandas as pd

    import mcp_training_dagster.serving.validation  # noqa: F401  (part of the baseline)
    from mcp_training_dagster.serving.exports import read_export
    from mcp_training_dagster.serving.features import WindowSpec, build_windows

    folder = Path(spec["dir"])
    probe = _Probe()
    probe.start()
    marks = [probe.elapsed()]
    raw = read_export(spec["export"], decode=_decoder())
    n = len(raw.records)
    marks.append(probe.elapsed())
    result = _validate(raw.records, raw.facts.file_name)
    del raw
    marks.append(probe.elapsed())
    _write_parquet(result.records, folder / "validated_records.parquet")
    _write_parquet(result.quarantine, folder / "quarantined_records.parquet")
    del result
    marks.append(probe.elapsed())
    peak_to_parquet = _peak_rss_mb()
    records = pd.read_parquet(folder / "validated_records.parquet")
    marks.append(probe.elapsed())
    windows = build_windows(records, WindowSpec())
    out = probe.stop()
    marks.append(out["seconds"])
    names = ("read", "validate", "write_parquet", "read_parquet", "windows")
    steps = {name: b - a for name, a, b in zip(names, marks, marks[1:])}
    return {
        **out,
        "records": n,
        "valid_records": len(records),
        "windows": len(windows),
        "steps": steps,
        "peak_rss_to_parquet_mb": peak_to_parquet,
    }


_STAGE_FUNCS: dict[str, Callable[[Spec], dict[str, Any]]] = {
    "generate": _stage_generate,
    "parse_floor": _stage_parse_floor,
    "read": _stage_read,
    "validate": _stage_validate,
    "read_validate": _stage_read_validate,
    "write_parquet": _stage_write_parquet,
    "windows": _stage_windows,
    "train": _stage_train,
    "end_to_end": _stage_end_to_end,
}


def _run_stage_here(stage: str, spec_json: str) -> None:
    """Entry point of a stage process: run it, write its JSON result to ``spec["result"]``."""
    spec = json.loads(spec_json)
    result = _STAGE_FUNCS[stage](spec)
    Path(spec["result"]).write_text(json.dumps(result))


def _stage_parser() -> argparse.ArgumentParser:
    """The hidden interface of a stage process (started by ``benchmarks.run._run_stage``)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--_stage", choices=STAGES, required=True)
    p.add_argument("--_spec", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    hidden = _stage_parser().parse_args(sys.argv[1:] if argv is None else argv)
    _run_stage_here(hidden._stage, hidden._spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
