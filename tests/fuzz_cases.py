"""Mutated GeoTIFF and GeoJSON bytes for fuzzing the input checks (tests/test_fuzz.py, bench/fuzz_inputs.py).

A mutation is drawn from a seeded generator, so every case can be rebuilt from its seed: flipped bytes,
overwritten runs, a cut-off end, a duplicated or deleted chunk. Mutations land anywhere, headers and tags
included, which is where a reader meets offsets and sizes it must not trust.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["labelled_folder", "mutate", "seed_geojson"]


def mutate(data: bytes, seed: int) -> bytes:
    """One to four random mutations of ``data`` (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(0, 5))
        n = len(buf)
        if n == 0:
            break
        at = int(rng.integers(0, n))
        if kind == 0:  # flip a few bits
            for i in rng.integers(0, n, size=int(rng.integers(1, 9))):
                buf[int(i)] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # overwrite a run with random bytes (a corrupt sector)
            run = int(rng.integers(1, 64))
            buf[at : at + run] = rng.bytes(min(run, n - at))
        elif kind == 2:  # cut off the end (an interrupted copy)
            del buf[at:]
        elif kind == 3:  # repeat a chunk (a bad merge)
            run = int(rng.integers(1, 256))
            buf[at:at] = buf[at : at + run]
        else:  # extreme values in a 4-byte word (sizes and offsets)
            buf[at : at + 4] = bytes(rng.choice([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f"]))
    return bytes(buf)


def seed_geojson() -> bytes:
    """A small, valid label file in UTM 50N over the catalogue's default raster (tests/bad_input_cases.py)."""
    x0, y0 = 500000.3, 3999998.9
    polys = [
        [[x0, y0], [x0 + 0.9, y0], [x0 + 0.9, y0 + 0.7], [x0, y0 + 0.7], [x0, y0]],
        [[x0 + 1.0, y0 + 0.1], [x0 + 1.3, y0 + 0.1], [x0 + 1.2, y0 + 0.5], [x0 + 1.0, y0 + 0.1]],
    ]
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32650"}},
        "features": [
            {
                "type": "Feature",
                "properties": {"stage": "flowering"},
                "geometry": {"type": "Polygon", "coordinates": [p]},
            }
            for p in polys
        ],
    }
    return json.dumps(doc).encode()


def labelled_folder(folder: Path, seed: int) -> Path:
    """``folder`` with ``site.tif`` and a mutated ``site.geojson`` (label file ``seed``); returns the folder."""
    from tests.bad_input_cases import write_tif  # imported here: bench/ imports this module before sys.path is set

    folder.mkdir()
    write_tif(folder / "site.tif")
    (folder / "site.geojson").write_bytes(mutate(seed_geojson(), seed))
    return folder
