"""The common base of the public aerial data set readers: tiles, windowed reads, resampling, validity.

A public data set is a folder laid out exactly as its publisher ships it (never downloaded here; the user points
to where it lies). Its reader lists **tiles** (one image file with its label files) per split and reads any
**window** of a tile, resampled to any output size, as three aligned arrays (:class:`TileRead`):

- ``image``: ``uint8 [C, h, w]`` (bilinear), 0 where the tile has no imagery (outside the file, or masked out);
- ``valid``: ``bool [h, w]``: real imagery inside the annotated area (nearest neighbour). For poppy training
  every valid pixel is a poppy-free negative from a real farm, and every invalid one is ignored (255);
- ``classes``: ``uint8 [h, w]`` land-cover class ids ``0..K-1`` in the reader's ``classes`` order, 255 (the
  loss's ignore index) where there is no label, no data, or the label is ambiguous (nearest neighbour).

Windows are ``rasterio.windows.Window`` in the tile's source pixels and may be fractional or reach past the
tile's edges (the outside is padded: no imagery, not valid, ignored), exactly like
:func:`detect.raster.read_window`. Everything is read with rasterio (GDAL's PNG, JPEG and GTiff drivers), so a
window is decoded and resampled by GDAL in one step and the image and its masks share one pixel grid.

Every reader states its ground sample distance (GSD), so :mod:`datasets.public.chips` can resample chips to the
model's GSD, and its licence (several public sets are for non-commercial research only).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from core.errors import InputError
from datasets.labels import IGNORE
from detect.tiling import window_placement

__all__ = [
    "IGNORE",
    "SPLITS",
    "PublicDataset",
    "PublicTile",
    "TileRead",
    "class_lut",
    "open_tile_file",
    "read_image",
    "read_layer",
]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PublicTile:
    """One tile of a public data set: an image file and its label files.

    Attributes:
        key: Stable identifier, ``split/name`` (e.g. ``train/1AD76MIZQ_1021-2339-1533-2851``).
        split: ``train``, ``val`` or ``test``.
        group: Tiles of one group (a field, an orthophoto, a scene) are held out together, so validation never
            sees the neighbours of a training tile.
        gsd_m: Ground size of one source pixel in metres.
        height: Rows of the tile (as published; the reader measures the file when it reads).
        width: Columns of the tile.
        files: ``(role, path)`` pairs, e.g. ``("rgb", ".../images/rgb/X.jpg")``; the first is the image.
        rgb_bands: 1-based red, green, blue band indexes of the image file.
    """

    key: str
    split: str
    group: str
    gsd_m: float
    height: int
    width: int
    files: tuple[tuple[str, str], ...]
    rgb_bands: tuple[int, int, int] = (1, 2, 3)

    def file(self, role: str) -> str:
        """The path of the file with ``role``."""
        for r, path in self.files:
            if r == role:
                return path
        raise KeyError(f"tile {self.key} has no {role!r} file")

    @property
    def area_m2(self) -> float:
        """Ground area of the tile in square metres (for sampling tiles in proportion to their area)."""
        return self.height * self.width * self.gsd_m**2


@dataclass
class TileRead:
    """A window of a tile, resampled; see the module docstring for the meaning of each array."""

    image: np.ndarray
    valid: np.ndarray
    classes: np.ndarray | None


def class_lut(mapping: dict[int, int]) -> np.ndarray:
    """A 256-entry lookup table from stored mask values to class ids; every value not in ``mapping`` -> 255.

    Unknown values become "ignore" rather than an error: one stray value in one mask of tens of thousands must
    not stop a pretraining run, and ignoring it cannot teach the network anything wrong.
    """
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for stored, cls in mapping.items():
        lut[stored] = cls
    return lut


def open_tile_file(path: str | Path) -> rasterio.io.DatasetReader:
    """Open a tile's file (PNG, JPEG or GeoTIFF) with rasterio.

    PNG and JPEG tiles carry no georeferencing; rasterio's warning about it is expected and silenced.

    Raises:
        InputError: If the file is missing or GDAL cannot read it.
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file; the data set folder is incomplete (re-extract the archive)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(f"{path}: not an image GDAL can read ({exc}); re-extract the data set archive") from exc


def _check_uint8(ds: rasterio.io.DatasetReader, bands: Sequence[int]) -> None:
    for b in bands:
        if ds.dtypes[b - 1] != "uint8":
            raise InputError(
                f"{ds.name}: band {b} is {ds.dtypes[b - 1]}; the published data sets are 8-bit, so this file was "
                "altered; re-extract it from the original archive"
            )


def read_image(
    path: str | Path, bands: Sequence[int], window: Window, out_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Read bands of an image file in a window, resampled bilinearly to ``out_shape``.

    Returns:
        ``(data, present)``: ``uint8 [len(bands), h, w]``, 0 where there is no imagery, and ``bool [h, w]``,
        True inside the file and its GDAL dataset mask (alpha band, nodata, internal mask; all True for JPEG
        and PNG without alpha).

    Raises:
        InputError: If the file is missing, unreadable, lacks a band or is not 8-bit.
    """
    out_h, out_w = out_shape
    data = np.zeros((len(bands), out_h, out_w), dtype=np.uint8)
    present = np.zeros((out_h, out_w), dtype=bool)
    with open_tile_file(path) as ds:
        if max(bands) > ds.count:
            raise InputError(f"{path}: has {ds.count} band(s), expected at least {max(bands)}; re-extract it")
        _check_uint8(ds, bands)
        placed = window_placement(ds.height, ds.width, window, out_h, out_w)
        if placed is None:
            return data, present
        src, (rows, cols) = placed
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        block = ds.read(list(bands), window=src, out_shape=(len(bands), *shape), resampling=Resampling.bilinear)
        mask = ds.dataset_mask(window=src, out_shape=shape, resampling=Resampling.nearest) > 0
    data[:, rows, cols] = np.where(mask, block, 0)
    present[rows, cols] = mask
    return data, present


def read_layer(path: str | Path, window: Window, out_shape: tuple[int, int], fill: int = 0) -> np.ndarray:
    """Read band 1 of a mask file (labels, boundary, validity) in a window, nearest neighbour.

    Nearest neighbour keeps class ids exact when a 10 cm mask is read for a 3 cm model (3.33x upsampling) and
    when a finer mask is read for a coarser model.

    Returns:
        ``uint8 [h, w]``, ``fill`` outside the file.
    """
    out_h, out_w = out_shape
    out = np.full((out_h, out_w), fill, dtype=np.uint8)
    with open_tile_file(path) as ds:
        _check_uint8(ds, [1])
        placed = window_placement(ds.height, ds.width, window, out_h, out_w)
        if placed is None:
            return out
        src, (rows, cols) = placed
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        out[rows, cols] = ds.read(1, window=src, out_shape=shape, resampling=Resampling.nearest)
    return out


class PublicDataset(ABC):
    """A public aerial data set on local disk, in its publisher's layout.

    Subclasses set the class attributes and implement :meth:`splits`, :meth:`tiles` and :meth:`read`.

    Attributes:
        name: Registry name used on the command line (``NAME:PATH``).
        title: Human-readable name and version.
        licence: The licence the publisher states (read it before using a model trained on the data).
        source: Where the publisher describes the data set.
        nominal_gsd_m: The published ground sample distance in metres, or None when each file carries its own.
        group_kind: What a tile group is, in words (``fields``, ``orthophotos``, ``scenes``), for messages.
        classes: Class names, index = class id in :attr:`TileRead.classes`; empty when the copy on disk has no
            labels (still fine for negatives).
        poppy_class: Class id that is opium poppy (synthetic scenes only): never a negative.
        root: The folder given.
        gsd_override: A GSD the user gave to replace the published one (e.g. ``agriculture-vision@0.15``).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    source: ClassVar[str] = ""
    nominal_gsd_m: ClassVar[float | None] = None
    group_kind: ClassVar[str] = "tiles"

    def __init__(self, root: str | Path, *, gsd_m: float | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.name}:{root}: no such folder; give the folder {self.title} was extracted to")
        if gsd_m is not None and not 0.001 <= gsd_m <= 10.0:
            raise InputError(f"{self.name}@{gsd_m}: the ground resolution must be in metres per pixel, e.g. 0.1")
        self.gsd_override = gsd_m
        self.classes: tuple[str, ...] = ()
        self.poppy_class: int | None = None
        self._shapes: dict[str, tuple[int, int]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    @property
    def gsd_m(self) -> float | None:
        """The GSD used for every tile (the override, else the published one; None when per file)."""
        return self.gsd_override if self.gsd_override is not None else self.nominal_gsd_m

    @abstractmethod
    def splits(self) -> dict[str, bool]:
        """The splits present on disk, each with whether it carries labels (``{"train": True, "test": False}``)."""

    @abstractmethod
    def tiles(self, split: str) -> list[PublicTile]:
        """Every tile of one split, sorted by key.

        Raises:
            InputError: If the split is not on disk or a tile lacks one of its files.
        """

    @abstractmethod
    def read(self, tile: PublicTile, window: Window, out_shape: tuple[int, int], *, classes: bool = True) -> TileRead:
        """Read a window of a tile resampled to ``out_shape`` (``classes=False`` skips the label files)."""

    def labelled_splits(self) -> list[str]:
        """Splits with labels, in ``train, val, test`` order."""
        return [s for s in SPLITS if self.splits().get(s)]

    def negative_splits(self) -> list[str]:
        """Splits whose validity is known, so their valid pixels can serve as poppy-free negatives.

        Every split by default: negatives need no land-cover labels, only the footprint. Readers whose no-data
        is stored in the label mask (LoveDA) restrict this to labelled splits.
        """
        return [s for s in SPLITS if s in self.splits()]

    def negative_tiles(self) -> list[PublicTile]:
        """Every tile usable as poppy-free negatives."""
        tiles = [t for s in self.negative_splits() for t in self.tiles(s)]
        if not tiles:
            raise InputError(f"{self.name}:{self.root}: no tiles found for negatives")
        return tiles

    def tile_shape(self, tile: PublicTile) -> tuple[int, int]:
        """``(height, width)`` of the tile's image file, measured once per process."""
        shape = self._shapes.get(tile.key)
        if shape is None:
            with open_tile_file(tile.files[0][1]) as ds:
                shape = (ds.height, ds.width)
            self._shapes[tile.key] = shape
        return shape

    def fingerprint(self, tiles: Sequence[PublicTile]) -> str:
        """SHA-256 over the tiles' image file names and sizes: changes when files are added, removed or replaced.

        Only names and sizes (no content) are hashed: a data set of 50 000 tiles is fingerprinted in seconds.
        """
        h = hashlib.sha256(f"{self.name}\0{self.gsd_m}\0".encode())
        for t in sorted(tiles, key=lambda t: t.key):
            path = t.files[0][1]
            h.update(f"{t.key}\0{os.path.getsize(path)}\0".encode())
        return h.hexdigest()

    def describe(self) -> str:
        """One line: title, folder, splits, classes, GSD and licence."""
        splits = ", ".join(f"{s}{'' if lab else ' (unlabelled)'}" for s, lab in self.splits().items())
        gsd = f"{self.gsd_m * 100:g} cm/px" if self.gsd_m is not None else "GSD per file"
        classes = f"{len(self.classes)} classes" if self.classes else "no labels"
        return f"{self.title} at {self.root}: {splits}; {classes}; {gsd}; licence: {self.licence}"
