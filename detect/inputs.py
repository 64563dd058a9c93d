"""Checks on where a run writes, made before any inference, so a night's batch fails at once or not at all.

An output folder that cannot be used (a path that is a file, a folder inside a file, a name the file system
refuses, a folder the user may not write to) or a disk without room for the probability raster are reported
as :class:`core.errors.InputError` naming the path and the fix, instead of a ``FileExistsError`` or
``PermissionError`` traceback halfway through. Nothing is created here: a refused run leaves no trace.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.errors import InputError

__all__ = [
    "DISK_MARGIN_BYTES",
    "check_free_space",
    "check_out_dir",
    "finished_before",
    "output_stems",
    "prob_raster_bytes",
]

# Kept free beyond our estimate: the vector outputs, the summary, and room for the rest of the system.
DISK_MARGIN_BYTES = 64 << 20


def _nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists (``/`` at worst)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _can_write_in(folder: Path) -> OSError | None:
    """Try to create (and delete) a file in ``folder``; the error if that fails.

    A real write, not ``os.access``: as root ``os.access`` says yes on a read-only mount, and network shares
    apply rules it does not see.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".poppy-write-test.", dir=folder)
    except OSError as exc:
        return exc
    os.close(fd)
    os.unlink(name)
    return None


def check_out_dir(out: str | Path) -> None:
    """Check that ``--out`` is a folder we can create and write to, creating nothing.

    Raises:
        InputError: If ``out`` is an existing file, lies below a file, has a name the file system cannot
            hold, or neither it nor its nearest existing parent folder accepts a new file.
    """
    out = Path(out)
    for part in out.parts:  # before any stat(), which fails on such names with a bare OSError
        if len(part.encode()) > 255 or "\0" in part:
            raise InputError(f"--out {part[:40]}...: the name is too long for a folder; choose a shorter --out")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder; give a folder (it is created if missing)")
    base = _nearest_existing(out)
    if not base.is_dir():
        raise InputError(
            f"--out {out}: cannot be created because {base} is a file; give a path whose parents are folders"
        )
    err = _can_write_in(base)
    if err is not None:
        why = {errno.EROFS: "is on a read-only disk", errno.ENOSPC: "is on a full disk"}.get(
            err.errno or 0, "is not writable for this user"
        )
        where = "it" if base == out.absolute() else f"its parent {base}"
        raise InputError(
            f"--out {out}: {where} {why} ({err.strerror}); choose a folder you can write to or fix its permissions"
        )


def prob_raster_bytes(height: int, width: int) -> int:
    """Worst-case size of a probability raster of ``height x width`` model pixels.

    The raster is ``uint8`` plus a 1-bit mask, with overviews (a third more). Deflate usually shrinks it
    several times, but noise in the probabilities can defeat it, so the uncompressed size is what must fit.
    """
    return int(height * width * (1 + 1 / 8) * 4 / 3) + (1 << 20)


def check_free_space(out: str | Path, need_bytes: Iterable[int] | int, *, what: str = "the outputs") -> None:
    """Refuse to start when the disk holding ``out`` lacks room for what the run will write.

    Args:
        out: The output folder (need not exist yet: its nearest existing parent is measured).
        need_bytes: Bytes the run writes (or one figure per input, summed).
        what: What needs the room, for the message.

    Raises:
        InputError: Naming the folder, the space needed and the space free.
    """
    need = need_bytes if isinstance(need_bytes, int) else sum(need_bytes)
    need += DISK_MARGIN_BYTES
    free = shutil.disk_usage(_nearest_existing(Path(out))).free
    if free < need:
        raise InputError(
            f"--out {out}: {what} need about {need / 2**20:,.0f} MB but the disk has {free / 2**20:,.0f} MB free; "
            "free some space or choose a --out on a larger disk"
        )


def output_stems(inputs: Sequence[Path]) -> dict[Path, str]:
    """Output name (stem) per input, unique within one ``--out`` folder.

    An input keeps its own stem (``site3.tif`` -> ``site3``) unless another input has the same one; then its
    parent folders are put in front, as many as it takes to tell them apart: OpenDroneMap names every
    result ``odm_orthophoto.tif``, so ``flights/north/odm_orthophoto/odm_orthophoto.tif`` and
    ``flights/south/odm_orthophoto/odm_orthophoto.tif`` become ``north_odm_orthophoto_odm_orthophoto`` and
    ``south_odm_orthophoto_odm_orthophoto``. Inputs whose names differ only in letter case are told apart
    too (case-insensitive disks would mix their outputs).

    Args:
        inputs: The input rasters, each once.

    Returns:
        Stem per input, in the order given.
    """
    paths = [Path(p) for p in inputs]
    parents = {p: [q.name for q in p.absolute().parents if q.name] for p in paths}
    depth = dict.fromkeys(paths, 0)

    def stem(p: Path) -> str:
        return "_".join([*reversed(parents[p][: depth[p]]), p.stem])

    while True:
        groups: dict[str, list[Path]] = {}
        for p in paths:
            groups.setdefault(stem(p).lower(), []).append(p)
        clashes = [g for g in groups.values() if len(g) > 1]
        grown = False
        for group in clashes:
            for p in group:
                if depth[p] < len(parents[p]):
                    depth[p] += 1
                    grown = True
        if not clashes or not grown:
            # Only identical paths can clash when no folder is left to add; find_inputs drops repeats.
            return {p: stem(p) for p in paths}


def finished_before(path: Path, outputs: Mapping[str, Path], model_sha256: str, parameters: Mapping[str, Any]) -> bool:
    """Whether an earlier run finished this input with the same model and parameters (for ``--resume``).

    The summary is written last, so its presence with every output it lists means the input was finished;
    an input interrupted before that is run again.

    Args:
        path: The input raster.
        outputs: Its output paths (``summary`` included).
        model_sha256: SHA-256 of the weights of this run.
        parameters: This run's settings, compared with the summary's ``parameters`` key by key.
    """
    summary = outputs["summary"]
    if not summary.is_file():
        return False
    try:
        record = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("input") != str(Path(path).resolve()):
        return False
    if record.get("model", {}).get("sha256") != model_sha256:
        return False
    done = record.get("parameters", {})
    if any(done.get(k) != v for k, v in parameters.items()):
        return False
    return all(p.is_file() for p in outputs.values())
