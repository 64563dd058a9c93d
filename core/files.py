"""Files written whole or not at all, and their digests.

Every output and run file is written under a temporary name next to its final one and renamed into place
when complete (:func:`os.replace` is atomic on one file system), so a reader, a crash or a kill never leaves
half a file where a good one was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["file_sha256", "write_aside"]


@contextlib.contextmanager
def write_aside(path: str | Path) -> Iterator[Path]:
    """Yield ``path.tmp`` to write to; rename it to ``path`` on success, delete it on failure.

    A stale ``path.tmp`` from an earlier killed run is removed first. The parent folder must exist.

    Example:
        >>> with write_aside(out / "metrics.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text(text)
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks (orthomosaics can be many gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
