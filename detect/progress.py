"""Resume records: how far an interrupted input's probability raster got, and with what it was made.

:func:`detect.predict.predict_raster` writes the probability raster row of tiles by row of tiles. After each
batch of rows is final and durable in the writer's work file, it records ``rows_done`` in a small JSON file
beside it, together with everything that decides the probabilities (input and model SHA-256, tile, overlap,
batch size, device, test-time augmentation, bands, grid, the tiles to run, software versions). A later run with
the same record continues from there; any difference starts over, and :func:`read_progress` says which.
Records are written aside and renamed, so a kill leaves the old record or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["progress_path", "read_progress", "write_progress"]

FORMAT_VERSION = 1  # bump when the work file or the record changes meaning


def progress_path(prob_path: str | Path) -> Path:
    """The resume record of a probability raster: ``STEM.prob.tif`` -> ``STEM.prob.progress.json``."""
    prob_path = Path(prob_path)
    return prob_path.with_name(prob_path.name.removesuffix(".tif") + ".progress.json")


def write_progress(path: Path, key: Mapping[str, Any], rows_done: int, tiles_done: int) -> None:
    """Record that raster rows ``[0, rows_done)`` are final and durable (``tiles_done`` tiles had run)."""
    record = {"format_version": FORMAT_VERSION, "key": dict(key), "rows_done": rows_done, "tiles_done": tiles_done}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:21] + "..."


def read_progress(path: Path, key: Mapping[str, Any], work: Path, work_bytes: int) -> tuple[int, str | None]:
    """How many rows an earlier run finished with exactly this key, and why not when it cannot be used.

    Args:
        path: The record (see :func:`progress_path`).
        key: This run's settings; every entry must equal the record's (compared as JSON).
        work: The work file the rows are in.
        work_bytes: Its expected size.

    Returns:
        ``(rows_done, reason)``: ``(0, None)`` when there is no record, ``(0, why)`` when there is one that
        cannot be used (``why`` is one line), else ``(rows, None)``.
    """
    if not path.is_file():
        return 0, None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        old_key, rows = record["key"], int(record["rows_done"])
        version = record.get("format_version")
    except (OSError, ValueError, KeyError, TypeError):
        return 0, f"its resume record {path.name} is unreadable"
    if version != FORMAT_VERSION:
        return 0, f"its resume record is of format {version}, this version writes {FORMAT_VERSION}"
    # JSON round trip: tuples and lists, ints and floats compare as they were stored.
    now = json.loads(json.dumps(dict(key)))
    for name, value in now.items():
        if old_key.get(name) != value:
            return 0, f"the {name.replace('_', ' ')} differs ({_short(old_key.get(name))} then, {_short(value)} now)"
    if not work.is_file() or work.stat().st_size != work_bytes:
        return 0, f"its work file {work.name} is missing or of the wrong size"
    return max(0, rows), None
