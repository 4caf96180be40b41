"""Write and read run directories: a tidy table plus the run's config and host (JSON).

Layout of ``results/hpcprof/<run-id>/``::

    measurements.parquet | measurements.csv   one row per app x precision x rep x metric
    config.json                               RunConfig, schema version, backend used
    host.json                                 HostInfo

Parquet is used when pyarrow imports, CSV otherwise. Every file is written to a temporary
file in the same directory and moved into place with ``os.replace``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from hpcprof.errors import StoreError
from hpcprof.results.records import SCHEMA_VERSION, HostInfo, Measurement
from precision.common.files import atomic_write, atomic_write_text

COLUMNS = (
    "run_id",
    "schema_version",
    "app",
    "precision",
    "size",
    "preset",
    "repetition",
    "status",
    "returncode",
    "metric",
    "value",
    "unit",
    "backend",
    "sample_status",
    "region",
    "coverage",
    "process",
    "stderr_tail",
    "node",
)


def new_run_id() -> str:
    """Sortable, unique run id: ``YYYYmmdd-HHMMSS-xxxx``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def to_frame(measurements: Iterable[Measurement], run_id: str) -> pd.DataFrame:
    """Tidy table of the measurements; missing values are NaN, never 0."""
    rows: list[dict[str, Any]] = []
    for m in measurements:
        for s in m.samples:
            rows.append(
                {
                    "run_id": run_id,
                    "schema_version": m.schema_version,
                    "app": m.app,
                    "precision": m.precision.value,
                    "size": m.size,
                    "preset": m.preset,
                    "repetition": m.repetition,
                    "status": m.status.value,
                    "returncode": m.returncode,
                    "metric": s.metric.value,
                    "value": float("nan") if s.value is None else s.value,
                    "unit": s.unit,
                    "backend": s.backend,
                    "sample_status": s.status.value,
                    "region": s.region,
                    "coverage": s.coverage,
                    "process": s.process,
                    "stderr_tail": m.stderr_tail,
                    "node": m.node,
                }
            )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["value"] = frame["value"].astype("float64")
    frame["size"] = frame["size"].astype("Int64")
    frame["returncode"] = frame["returncode"].astype("Int64")
    frame["coverage"] = frame["coverage"].astype("float64")
    frame["process"] = frame["process"].astype("string")
    return frame


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Atomically write a text file."""
    atomic_write_text(path, text)


def _parquet_ok() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def write_frame(directory: Path, frame: pd.DataFrame) -> Path:
    """Write the tidy table (Parquet if pyarrow imports, else CSV); returns its path."""
    if _parquet_ok():
        path = directory / "measurements.parquet"
        atomic_write(path, lambda p: frame.to_parquet(p, index=False))
    else:
        path = directory / "measurements.csv"
        atomic_write(path, lambda p: frame.to_csv(p, index=False))
    return path


def write_run(
    out_dir: Path,
    run_id: str,
    measurements: Iterable[Measurement],
    config: dict[str, Any],
    host: HostInfo,
) -> Path:
    """Create ``out_dir/run_id`` with the table, config.json and host.json; returns it."""
    directory = out_dir / run_id
    directory.mkdir(parents=True, exist_ok=False)
    write_json(
        directory / "config.json", {**config, "run_id": run_id, "schema_version": SCHEMA_VERSION}
    )
    write_json(directory / "host.json", asdict(host))
    write_frame(directory, to_frame(measurements, run_id))
    return directory


def read_run(directory: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The tidy table and the config of a run directory.

    Raises:
        StoreError: the directory has no measurements table or config.
    """
    if not directory.is_dir():
        raise StoreError(f"{directory}: not a run directory")
    parquet, csv = directory / "measurements.parquet", directory / "measurements.csv"
    if parquet.exists():
        frame = pd.read_parquet(parquet)
    elif csv.exists():
        frame = pd.read_csv(csv, keep_default_na=True)
    else:
        raise StoreError(f"{directory}: no measurements.parquet or measurements.csv")
    if "process" not in frame.columns:  # runs written before per-process rows existed
        frame["process"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"{directory}: config.json unreadable: {exc}") from exc
    return frame, config
