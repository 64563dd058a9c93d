"""Training chips: balanced, deterministic samples of orthomosaics and their label masks at the model's GSD.

A chip is ``S x S`` pixels at the model's ground sample distance (GSD), whatever the source's: a window of
``S * target_gsd / source_gsd`` source pixels is read and resampled to ``S x S`` (through
:func:`detect.raster.read_window`, the same reader inference uses), and the label polygons are rasterised
straight onto the chip's own pixel grid, so the mask stays sharp instead of being resampled.

Sampling is balanced: a fraction of the chips is centred on label polygons (a random point inside a randomly
chosen polygon, then shifted by a random offset so that plots do not always sit in the middle), the rest falls
uniformly at random on the raster (or inside its area of interest), rejecting chips that are mostly outside the
valid footprint. Sources are drawn in proportion to their ground area, so a large orthomosaic is not drowned
by many small ones.

Optionally a further fraction is centred on *hard negatives*: regions the current model calls poppy where the
labels say there is none (bare soil, vegetable beds, weedy field edges), mined by
:func:`training.mining.mine_hard_negatives` and handed over with :meth:`ChipDataset.set_hard_negatives`. Random
chips see such rare textures seldom; centring chips on them is what teaches the model to stop flagging them.

Item ``i`` of epoch ``e`` is drawn from ``np.random.default_rng((seed, e, i))``: the same seed gives the same
chips in any process and any order, which is what makes ``DataLoader(num_workers > 0)`` runs reproducible.
Rasters are opened lazily in whichever process reads them (never pickled open).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
import torch
from affine import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry.base import BaseGeometry
from torch.utils.data import Dataset

from core.errors import InputError
from datasets.labelled import LabelledScene
from datasets.labels import (
    IGNORE,
    LANDCOVER_SUFFIX,
    LabelSet,
    check_overlap,
    find_aoi_file,
    find_label_files,
    rasterize_window,
)
from datasets.reviewed import find_reviewed_file, read_label_sets, units_per_metre
from detect.raster import RasterInfo, inspect_raster, open_raster, read_band, read_window

__all__ = ["Chip", "ChipDataset", "ChipSource", "EpochChips", "Transform"]

log = logging.getLogger(__name__)

Transform = Callable[[torch.Tensor, torch.Tensor, np.random.Generator], tuple[torch.Tensor, torch.Tensor]]

# Chips read from a source much coarser than the model are blurry upsamplings: worth a warning, not an error.
_UPSAMPLE_WARN = 1.5


def _random_point_in(
    geom: BaseGeometry, rng: np.random.Generator, batch: int = 64, rounds: int = 8
) -> tuple[float, float]:
    """A uniformly random point inside a polygon, by rejection from its bounding box.

    Rejection keeps the draw uniform over the polygon's area; thin slivers that defeat it for ``rounds``
    batches fall back to a point guaranteed inside (``representative_point``).
    """
    minx, miny, maxx, maxy = geom.bounds
    for _ in range(rounds):
        xs = rng.uniform(minx, maxx, batch)
        ys = rng.uniform(miny, maxy, batch)
        inside = shapely.contains_xy(geom, xs, ys)
        if inside.any():
            k = int(np.argmax(inside))
            return float(xs[k]), float(ys[k])
    p = geom.representative_point()
    return float(p.x), float(p.y)


@dataclass(frozen=True)
class Chip:
    """One training chip and how it was drawn.

    Attributes:
        image: ``float32 [3, S, S]`` in [0, 1]; 0 where the source has no data.
        mask: ``int64 [S, S]``: 0 background, 1 poppy, 255 ignore (nodata, outside the AOI).
        source: Index of the source in the dataset.
        kind: How its centre was chosen: ``"positive"`` (on a label polygon), ``"hard"`` (on a hard negative),
            ``"rejected"`` (on a plot an analyst rejected) or ``"random"``.
        window: The window read, in source pixels (fractional).
        gsd_m: Ground size of one chip pixel in metres (the model's GSD, times the scale jitter).
        tries: How many windows were read before one was accepted (random chips only).
        usable_fraction: Share of the mask that is not 255.
    """

    image: torch.Tensor
    mask: torch.Tensor
    source: int
    kind: str
    window: Window
    gsd_m: float
    tries: int
    usable_fraction: float

    @property
    def positive(self) -> bool:
        """True if the chip was centred on a label polygon."""
        return self.kind == "positive"


class ChipSource:
    """One orthomosaic with its label polygons and optional area of interest, ready to cut chips from.

    The raster is inspected once here and reopened lazily in each process that reads from it (DataLoader
    workers fork or spawn copies of this object; an open GDAL handle must not cross that boundary).

    Args:
        raster_path: The orthomosaic (GeoTIFF).
        labels_path: Poppy polygons; None looks for ``NAME.geojson|.gpkg|.shp`` next to the raster.
        aoi_path: Where labelling is complete; None looks for ``NAME.aoi.geojson`` next to the raster (and
            uses the whole raster when there is none).
        layer: Layer of a multi-layer labels file.
        unreviewed_as: None for ordinary labels; ``ignore`` or ``negative`` when the labels are a reviewed
            ``infer.py`` output (:func:`datasets.reviewed.read_reviewed`): then its confirmed and added plots are
            the positives, its rejected plots :attr:`rejected_geoms`, and the reviewed ground the AOI.

    Raises:
        InputError: If the raster is missing or not georeferenced, no labels file is found, or the labels or
            the AOI miss the raster.
    """

    def __init__(
        self,
        raster_path: str | Path,
        labels_path: str | Path | None = None,
        aoi_path: str | Path | None = None,
        *,
        layer: str | int | None = None,
        unreviewed_as: str | None = None,
    ) -> None:
        self.path = str(raster_path)
        with open_raster(raster_path) as ds:
            self.info: RasterInfo = inspect_raster(ds)
            bounds = tuple(ds.bounds)
        if labels_path is None:
            labels_path = find_label_files(raster_path)[0] if unreviewed_as is None else find_reviewed_file(raster_path)
        if labels_path is None:
            stem = Path(raster_path).with_suffix("")
            raise InputError(
                f"{raster_path}: no labels found; save the poppy polygons next to it as {stem.name}.geojson, "
                f"{stem.name}.gpkg or {stem.name}.shp (an empty file if it has no poppy), or pass the labels path"
            )
        if aoi_path is None:
            aoi_path = find_aoi_file(raster_path)
        self.labels_path = str(labels_path)
        self.aoi_path = str(aoi_path) if aoi_path is not None else None

        self.unreviewed_as = unreviewed_as
        per_metre = units_per_metre(self.info.transform, self.info.gsd_m)
        self.labels: LabelSet
        self.aoi: LabelSet | None
        self.labels, self.aoi, rejected = read_label_sets(
            labels_path, aoi_path, self.info.crs, bounds, per_metre=per_metre, unreviewed_as=unreviewed_as, layer=layer
        )
        check_overlap(self.labels, bounds, raster_path)
        raster_box = shapely.box(*bounds)
        region: BaseGeometry = raster_box
        if self.aoi is not None:
            check_overlap(self.aoi, bounds, raster_path, what="area-of-interest polygons")
            region = shapely.intersection(shapely.union_all(self.aoi.geometries), raster_box)
        self.warnings: list[str] = self.labels.warnings + (self.aoi.warnings if self.aoi is not None else [])
        # Where chips may be centred: the raster, inside the AOI when there is one.
        self.region: BaseGeometry = region

        # Where positive chips are centred: the labelled plots, clipped to the raster and to the AOI (a point
        # outside either would give a chip whose centre is ignored).
        clipped = [shapely.intersection(g, region) for g in self.labels.geometries]
        self.positive_geoms: list[BaseGeometry] = [g for g in clipped if not g.is_empty and g.area > 0]
        # Where random chips are centred: the AOI's parts weighted by area; None means the whole raster.
        self.region_parts: list[BaseGeometry] | None = None
        self.region_weights: np.ndarray | None = None
        if self.aoi is not None:
            parts = [p for p in shapely.get_parts(region) if p.geom_type == "Polygon" and p.area > 0]
            if not parts:
                raise InputError(f"{self.aoi.path}: the area of interest does not overlap the raster {raster_path}")
            areas = np.array([p.area for p in parts])
            self.region_parts, self.region_weights = parts, areas / areas.sum()
        for g in [*self.positive_geoms, *(self.region_parts or [])]:
            shapely.prepare(g)  # contains_xy on prepared geometries is much faster
        # Where hard-negative chips are centred (see set_hard_negatives): none until the model has been mined.
        self.hard_geoms: list[BaseGeometry] = []
        # Where rejected chips are centred: plots an analyst rejected (a reviewed output), clipped as positives.
        clipped = [shapely.intersection(g, region) for g in rejected]
        self.rejected_geoms: list[BaseGeometry] = [g for g in clipped if not g.is_empty and g.area > 0]
        for g in self.rejected_geoms:
            shapely.prepare(g)
        # Ground area in m^2 for weighting sources: CRS area -> source pixels -> metres via the measured GSD.
        t = self.info.transform
        pixels = region.area / abs(t.a * t.e)
        self.area_m2 = float(pixels * self.info.gsd_m[0] * self.info.gsd_m[1])

        # The generator's per-pixel land cover on the same grid, when present: targets of an auxiliary head.
        landcover = Path(raster_path).with_name(Path(raster_path).stem + LANDCOVER_SUFFIX)
        self.landcover_path: str | None = str(landcover) if landcover.is_file() else None

        self._ds: rasterio.io.DatasetReader | None = None
        self._lc_ds: rasterio.io.DatasetReader | None = None
        self._pid: int | None = None

    @classmethod
    def from_scene(cls, scene: LabelledScene) -> ChipSource:
        """The chip source of a labelled scene (its raster, labels and area of interest).

        Raises:
            InputError: As the constructor.
        """
        return cls(scene.raster, scene.labels, scene.aoi, unreviewed_as=scene.unreviewed_as)

    def __repr__(self) -> str:
        return (
            f"ChipSource({self.path!r}, labels={len(self.labels)} polygons, aoi={self.aoi_path is not None}, "
            f"gsd={self.info.mean_gsd_m * 100:.2f} cm, area={self.area_m2:.0f} m2)"
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_ds"] = None  # never pickle an open dataset: each worker reopens its own
        state["_lc_ds"] = None
        state["_pid"] = None
        return state

    def dataset(self) -> rasterio.io.DatasetReader:
        """The open raster for this process (reopened after a fork, where the parent's handle is not ours)."""
        pid = os.getpid()
        if self._ds is None or self._pid != pid:
            self._ds = open_raster(self.path)
            self._lc_ds = None
            self._pid = pid
        return self._ds

    def read_landcover(self, window: Window, size: int) -> np.ndarray:
        """The land-cover classes of a chip window, nearest neighbour, ``uint8 [size, size]``; 255 where unknown
        (outside the raster, or a source without a ``NAME.landcover.tif``)."""
        if self.landcover_path is None:
            return np.full((size, size), IGNORE, dtype=np.uint8)
        self.dataset()  # (re)opens per process, which also drops a land-cover handle from another process
        if self._lc_ds is None:
            self._lc_ds = open_raster(self.landcover_path)
        return read_band(self._lc_ds, 1, window, out_shape=(size, size), fill=IGNORE).astype(np.uint8)

    def close(self) -> None:
        """Close this process's handle (it reopens on the next read)."""
        if self._pid == os.getpid():
            for ds in (self._ds, self._lc_ds):
                if ds is not None:
                    ds.close()
        self._ds = None
        self._lc_ds = None
        self._pid = None

    def chip_window(self, row: float, col: float, size: int, gsd_m: float) -> Window:
        """The source window, centred at fractional pixel ``(row, col)``, that covers ``size`` chip pixels of
        ``gsd_m`` metres on each side."""
        height = size * gsd_m / self.info.gsd_m[0]
        width = size * gsd_m / self.info.gsd_m[1]
        return Window(col_off=col - width / 2, row_off=row - height / 2, width=width, height=height)

    def read_chip(self, window: Window, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Read a window resampled to ``size x size`` and its mask on the same grid.

        Returns:
            ``(rgb, mask)``: ``uint8 [3, size, size]`` (0 where invalid) and ``uint8 [size, size]`` with 0/1/255,
            255 where the source has no data or lies outside the AOI.
        """
        rgb, valid = read_window(self.dataset(), self.info, window, out_shape=(size, size))
        # The chip's own grid: the window's transform with pixels stretched to the chip's GSD.
        chip_transform = window_transform(window, self.info.transform) @ Affine.scale(
            float(window.width) / size, float(window.height) / size
        )
        mask = rasterize_window(self.labels, chip_transform, (size, size), aoi=self.aoi)
        mask[~valid] = IGNORE
        return rgb, mask

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Fractional ``(row, col)`` of a point in the raster's CRS."""
        col, row = ~self.info.transform @ (x, y)
        return float(row), float(col)

    def random_centre(self, rng: np.random.Generator, size: int, gsd_m: float) -> tuple[float, float]:
        """A random chip centre ``(row, col)`` over the AOI, or over the raster so the chip fits inside it."""
        if self.region_parts is not None:
            part = self.region_parts[int(rng.choice(len(self.region_parts), p=self.region_weights))]
            return self.to_pixel(*_random_point_in(part, rng))
        win = self.chip_window(0.0, 0.0, size, gsd_m)
        h, w = float(win.height), float(win.width)
        # Draw the top-left corner so the whole chip lies on the raster (when it fits at all).
        row = rng.uniform(0.0, self.info.height - h) + h / 2 if self.info.height > h else self.info.height / 2
        col = rng.uniform(0.0, self.info.width - w) + w / 2 if self.info.width > w else self.info.width / 2
        return float(row), float(col)

    def _centre_on(
        self, geoms: Sequence[BaseGeometry], rng: np.random.Generator, size: int, gsd_m: float, jitter: float
    ) -> tuple[float, float]:
        """A random point inside one of ``geoms`` (each equally likely), shifted by up to ``jitter`` half-chips."""
        geom = geoms[int(rng.integers(len(geoms)))]
        row, col = self.to_pixel(*_random_point_in(geom, rng))
        win = self.chip_window(row, col, size, gsd_m)
        row += rng.uniform(-jitter, jitter) * float(win.height) / 2
        col += rng.uniform(-jitter, jitter) * float(win.width) / 2
        return row, col

    def positive_centre(self, rng: np.random.Generator, size: int, gsd_m: float, jitter: float) -> tuple[float, float]:
        """A chip centre on a random label polygon: a random point inside it, shifted by up to ``jitter``
        half-chips in each direction (so the point stays inside the chip for ``jitter < 1``).

        Polygons are drawn uniformly, not by area, so a 2 m^2 courtyard plot gets as many chips as a large
        field: small hidden plots are the ones that matter.
        """
        return self._centre_on(self.positive_geoms, rng, size, gsd_m, jitter)

    def set_hard_negatives(self, geoms: Sequence[BaseGeometry]) -> None:
        """Replace the hard negatives: polygons in the raster's CRS (as ``positive_geoms``) where the model
        fires but the labels say no poppy.

        They are clipped to the raster and the AOI (a centre outside either gives a chip whose middle is
        ignored); pieces with no area left are dropped. An empty sequence clears them.
        """
        clipped = [shapely.intersection(g, self.region) for g in geoms]
        self.hard_geoms = [g for g in clipped if not g.is_empty and g.area > 0]
        for g in self.hard_geoms:
            shapely.prepare(g)

    def rejected_centre(self, rng: np.random.Generator, size: int, gsd_m: float, jitter: float) -> tuple[float, float]:
        """A chip centre on a random plot an analyst rejected, drawn as :meth:`hard_centre` draws.

        Raises:
            ValueError: If the source has no rejected plot (a programming error: the dataset checks first).
        """
        if not self.rejected_geoms:
            raise ValueError(f"{self.path}: no rejected plot to centre a chip on")
        return self._centre_on(self.rejected_geoms, rng, size, gsd_m, jitter)

    def hard_centre(self, rng: np.random.Generator, size: int, gsd_m: float, jitter: float) -> tuple[float, float]:
        """A chip centre on a random hard negative, drawn as :meth:`positive_centre` draws on label polygons
        (uniform over polygons, not by area: a small confusable patch is as worth seeing as a large one).

        Raises:
            ValueError: If no hard negative is set (a programming error: the dataset checks first).
        """
        if not self.hard_geoms:
            raise ValueError(f"{self.path}: no hard negatives set; call set_hard_negatives first")
        return self._centre_on(self.hard_geoms, rng, size, gsd_m, jitter)


class EpochChips(Dataset):
    """A dataset of ``chips_per_epoch`` chips drawn afresh each epoch: item ``i`` of epoch ``e`` is a pure function
    of ``(seed, e, i)``. Subclasses set ``chips_per_epoch`` and call ``super().__init__()``.

    The epoch lives in shared memory, so ``set_epoch`` reaches persistent DataLoader workers too.
    """

    chips_per_epoch: int

    def __init__(self) -> None:
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return self.chips_per_epoch

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose chips are drawn; call before iterating."""
        self._epoch.fill_(int(epoch))

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.chips_per_epoch:
            raise IndexError(f"chip index {index} out of range for {self.chips_per_epoch} chips per epoch")


class ChipDataset(EpochChips):
    """Balanced chips from one or many :class:`ChipSource`; items are ``(image, mask)`` tensors.

    Args:
        sources: The orthomosaics to sample.
        target_gsd_m: The model's GSD in metres per pixel; every chip is resampled to it.
        chip_size: Chip side ``S`` in model pixels.
        chips_per_epoch: ``len(dataset)``.
        positive_fraction: Share of chips centred on label polygons; the rest are random (or hard).
        scale_jitter: Chips are read at ``target_gsd_m * U(1 - j, 1 + j)``, so the model sees a range of GSDs.
        centre_jitter: Positive and hard chips are shifted by up to this many half-chips from the chosen point.
        min_usable_fraction: Random chips with less than this share of labelled, valid pixels are redrawn.
        max_tries: Redraws before a random chip is accepted anyway (counted and logged).
        seed: Base seed; item ``i`` of epoch ``e`` uses ``default_rng((seed, e, i))``.
        transform: ``(image, mask, rng) -> (image, mask)`` applied after reading (see ``datasets.transforms``).
        hard_fraction: Share of chips centred on hard negatives (see :meth:`set_hard_negatives`), taken from
            the random share: ``positive_fraction + hard_fraction`` must not exceed 1. While no source has any
            hard negative these chips are random chips, so the positive share stays as set.
        landcover: Masks are ``[2, S, S]``: the poppy mask and each pixel's land-cover class (255 where the source
            has none, or the poppy mask is ignored), for an auxiliary land-cover head.
        rejected_fraction: Share of chips centred on plots analysts rejected (:attr:`ChipSource.rejected_geoms`,
            from reviewed outputs), also taken from the random share; while no source has one they are random.

    Raises:
        InputError: On an empty source list or a setting out of range.
    """

    def __init__(
        self,
        sources: ChipSource | Sequence[ChipSource],
        *,
        target_gsd_m: float,
        chip_size: int = 256,
        chips_per_epoch: int = 1000,
        positive_fraction: float = 0.5,
        scale_jitter: float = 0.0,
        centre_jitter: float = 0.5,
        min_usable_fraction: float = 0.5,
        max_tries: int = 20,
        seed: int = 0,
        transform: Transform | None = None,
        hard_fraction: float = 0.0,
        landcover: bool = False,
        rejected_fraction: float = 0.0,
    ) -> None:
        self.sources = [sources] if isinstance(sources, ChipSource) else list(sources)
        if not self.sources:
            raise InputError("no training rasters given; pass at least one orthomosaic with labels")
        checks = [
            (target_gsd_m > 0, f"target_gsd_m={target_gsd_m}: must be > 0 (metres per pixel, e.g. 0.03)"),
            (chip_size >= 8, f"chip_size={chip_size}: must be at least 8 pixels (e.g. 256)"),
            (chips_per_epoch >= 1, f"chips_per_epoch={chips_per_epoch}: must be at least 1"),
            (0.0 <= positive_fraction <= 1.0, f"positive_fraction={positive_fraction}: must be in [0, 1]"),
            (0.0 <= hard_fraction <= 1.0, f"hard_fraction={hard_fraction}: must be in [0, 1] (e.g. 0.2)"),
            (0.0 <= rejected_fraction <= 1.0, f"rejected_fraction={rejected_fraction}: must be in [0, 1] (e.g. 0.25)"),
            (
                positive_fraction + hard_fraction + rejected_fraction <= 1.0 + 1e-9,
                f"positive_fraction={positive_fraction} + hard_fraction={hard_fraction}"
                + (f" + rejected_fraction={rejected_fraction}" if rejected_fraction else "")
                + ": must not exceed 1 (hard-negative and rejected chips are taken from the random share)",
            ),
            (0.0 <= scale_jitter < 1.0, f"scale_jitter={scale_jitter}: must be in [0, 1) (e.g. 0.25 for +-25 %)"),
            (0.0 <= centre_jitter < 1.0, f"centre_jitter={centre_jitter}: must be in [0, 1) half-chips"),
            (0.0 <= min_usable_fraction <= 1.0, f"min_usable_fraction={min_usable_fraction}: must be in [0, 1]"),
            (max_tries >= 1, f"max_tries={max_tries}: must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        self.target_gsd_m = float(target_gsd_m)
        self.chip_size = int(chip_size)
        self.chips_per_epoch = int(chips_per_epoch)
        self.positive_fraction = float(positive_fraction)
        self.hard_fraction = float(hard_fraction)
        self.rejected_fraction = float(rejected_fraction)
        self.scale_jitter = float(scale_jitter)
        self.centre_jitter = float(centre_jitter)
        self.min_usable_fraction = float(min_usable_fraction)
        self.max_tries = int(max_tries)
        self.seed = int(seed)
        self.transform = transform
        self.landcover = bool(landcover)
        super().__init__()
        self._gave_up = 0

        self.warnings: list[str] = [w for s in self.sources for w in s.warnings]
        for s in self.sources:
            ratio = s.info.mean_gsd_m / self.target_gsd_m
            if ratio > _UPSAMPLE_WARN:
                note = (
                    f"{s.path}: GSD {s.info.mean_gsd_m * 100:.1f} cm is {ratio:.1f}x coarser than the model's "
                    f"{self.target_gsd_m * 100:.1f} cm; its chips are blurry upsamplings"
                )
                log.warning(note)
                self.warnings.append(note)
        areas = np.array([s.area_m2 for s in self.sources], dtype=float)
        self._all_weights = areas / areas.sum()
        labelled = np.array([len(s.positive_geoms) > 0 for s in self.sources])
        self._pos_weights = np.where(labelled, areas, 0.0)
        if self._pos_weights.sum() > 0:
            self._pos_weights /= self._pos_weights.sum()
        elif self.positive_fraction > 0:
            note = "no label polygon falls on any training raster: every chip will be a random (negative) chip"
            log.warning(note)
            self.warnings.append(note)
            self.positive_fraction = 0.0
        # Sources weighted by their number of hard negatives; None while no source has any (see get_chip).
        self._hard_weights: np.ndarray | None = None
        self._refresh_hard_weights()
        # Sources weighted by their number of rejected plots; None when no source has any.
        rejected = np.array([len(s.rejected_geoms) for s in self.sources], dtype=float)
        self._rejected_weights = rejected / rejected.sum() if rejected.sum() > 0 else None

    def _refresh_hard_weights(self) -> None:
        counts = np.array([len(s.hard_geoms) for s in self.sources], dtype=float)
        self._hard_weights = counts / counts.sum() if counts.sum() > 0 else None

    def set_hard_negatives(self, per_source: Sequence[Sequence[BaseGeometry]]) -> None:
        """Replace every source's hard negatives (polygons in that raster's CRS; an empty list for none).

        Call in the main process before the epoch's ``DataLoader`` is iterated: workers that start afterwards
        get a copy of the dataset with them. Persistent workers (``persistent_workers=True``) keep the copy they
        started with, so they would not see a later call; :func:`training.loop.epoch_loader` builds
        non-persistent loaders, one per epoch.

        Raises:
            InputError: If the number of lists differs from the number of sources.
        """
        if len(per_source) != len(self.sources):
            raise InputError(
                f"{len(per_source)} lists of hard negatives for {len(self.sources)} training rasters: give one list "
                "per raster, in the dataset's order (an empty list where there is none)"
            )
        for source, geoms in zip(self.sources, per_source, strict=True):
            source.set_hard_negatives(geoms)
        self._refresh_hard_weights()

    @property
    def hard_count(self) -> int:
        """Hard negatives over all sources."""
        return sum(len(s.hard_geoms) for s in self.sources)

    def get_chip(self, index: int) -> Chip:
        """Draw item ``index`` of the current epoch, with the record of how it was drawn."""
        self._check_index(index)
        rng = np.random.default_rng((self.seed, self.epoch, int(index)))
        # One draw picks the kind: [0, p) positive, [p, p + h) hard, [p + h, p + h + r) rejected, the rest random.
        # Hard and rejected chips take their share from the random band, so with their fractions 0 (or nothing to
        # centre on) every draw, and so every chip, is exactly what it was before they existed: runs and resumes
        # stay reproducible.
        u = rng.random()
        p, h = self.positive_fraction, self.hard_fraction
        if u < p:
            kind, weights = "positive", self._pos_weights
        elif u < p + h and self._hard_weights is not None:
            kind, weights = "hard", self._hard_weights
        elif p + h <= u < p + h + self.rejected_fraction and self._rejected_weights is not None:
            kind, weights = "rejected", self._rejected_weights
        else:
            kind, weights = "random", self._all_weights
        src_index = int(rng.choice(len(self.sources), p=weights))
        source = self.sources[src_index]
        gsd = self.target_gsd_m
        if self.scale_jitter > 0:
            gsd *= float(rng.uniform(1.0 - self.scale_jitter, 1.0 + self.scale_jitter))
        size = self.chip_size

        if kind != "random":
            # Centred on a polygon, as positive chips always were: one read, no rejection (mined hard negatives
            # lie where the model saw valid pixels).
            centre = {"positive": source.positive_centre, "hard": source.hard_centre}.get(kind, source.rejected_centre)
            row, col = centre(rng, size, gsd, self.centre_jitter)
            window = source.chip_window(row, col, size, gsd)
            rgb, mask = source.read_chip(window, size)
            tries, usable = 1, float(np.mean(mask != IGNORE))
        else:
            best = None
            for tries in range(1, self.max_tries + 1):  # noqa: B007 (tries is reported)
                row, col = source.random_centre(rng, size, gsd)
                window = source.chip_window(row, col, size, gsd)
                rgb, mask = source.read_chip(window, size)
                usable = float(np.mean(mask != IGNORE))
                if best is None or usable > best[3]:
                    best = (window, rgb, mask, usable)
                if usable >= self.min_usable_fraction:
                    break
            else:
                self._gave_up += 1
                if self._gave_up == 1 or self._gave_up % 100 == 0:
                    log.warning(
                        "%s: %d random chip(s) in this process found no window at least %.0f %% valid and labelled "
                        "in %d tries; used the best one. Is the footprint or the AOI tiny?",
                        source.path,
                        self._gave_up,
                        self.min_usable_fraction * 100,
                        self.max_tries,
                    )
            window, rgb, mask, usable = best  # type: ignore[misc]

        image = torch.from_numpy(rgb).float().div_(255.0)
        target = torch.from_numpy(mask.astype(np.int64))
        if self.landcover:
            classes = source.read_landcover(window, size)
            classes[mask == IGNORE] = IGNORE
            target = torch.stack([target, torch.from_numpy(classes.astype(np.int64))])
        if self.transform is not None:
            image, target = self.transform(image, target, rng)
        return Chip(image, target, src_index, kind, window, gsd, tries, usable)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        chip = self.get_chip(index)
        return chip.image, chip.mask

    @property
    def gave_up(self) -> int:
        """Random chips accepted below ``min_usable_fraction`` in this process."""
        return self._gave_up
