"""Hard-negative mining: where the current model calls poppy on a training orthomosaic but the labels say none.

Random training chips seldom land on the rare textures a model confuses with poppy (large speckled bare-soil
patches, vegetable beds, weedy field edges), so it keeps flagging them. Mining finds them: each training
orthomosaic is predicted whole and vectorised at the threshold through the inference path
(:func:`detect.pipeline.detect_plots`, as ``infer.py`` and validation do). From every plot the label polygons,
grown by a margin, are cut away (a plot's fuzzy edge is not a hard negative), and what remains inside the area
of interest (AOI) is kept when large enough: at most ``max_per_source`` pieces per raster, the largest first.

The pieces go to :meth:`datasets.chips.ChipDataset.set_hard_negatives`, which centres a share of the chips on
them. On a police team's own flights this is what makes fine-tuning work: the false alarms on their local crops
are found without anyone drawing them.

Areas are ground square metres: each plot's geodesic area (:attr:`detect.vectorize.DetectedPlot.area_m2`) shared
among its pieces in proportion to their area in the raster's CRS, whose scale does not change across a plot.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
import torch
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from torch import nn

from core.errors import InputError
from datasets.chips import ChipSource
from datasets.reviewed import units_per_metre
from detect.pipeline import detect_plots
from detect.vectorize import DetectedPlot, VectorParams
from models.checkpoint import ModelSpec

__all__ = ["MinedSource", "MiningResult", "hard_pieces", "mine_hard_negatives"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MinedSource:
    """The hard negatives of one training orthomosaic.

    Attributes:
        path: The orthomosaic.
        geoms: Hard-negative polygons in its CRS, largest first.
        areas_m2: Their ground areas in square metres, in the same order.
        plots: Plots the model found on the raster at the threshold (true ones and those outside the AOI
            included).
        left_out: Pieces large enough but beyond ``max_per_source`` (the smallest ones).
        seconds: Time spent predicting and vectorising this raster.
    """

    path: str
    geoms: list[BaseGeometry]
    areas_m2: list[float]
    plots: int = 0
    left_out: int = 0
    seconds: float = 0.0

    @property
    def area_m2(self) -> float:
        """Summed ground area of the hard negatives."""
        return float(sum(self.areas_m2))


@dataclass(frozen=True)
class MiningResult(Sequence[list[BaseGeometry]]):
    """Hard negatives of every training orthomosaic: a sequence of one polygon list per source, in the sources'
    order (what :meth:`datasets.chips.ChipDataset.set_hard_negatives` takes), with counts for the log.

    Attributes:
        sources: Per-source results.
        threshold: The probability threshold the model's plots were cut at.
    """

    sources: list[MinedSource]
    threshold: float
    seconds: float = field(default=0.0, compare=False)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> list[BaseGeometry]:  # type: ignore[override]
        """The hard negatives of source ``index`` (an integer index; slices are not supported)."""
        return self.sources[index].geoms

    def __iter__(self) -> Iterator[list[BaseGeometry]]:
        return (s.geoms for s in self.sources)

    @property
    def hard_count(self) -> int:
        """Hard negatives over all sources."""
        return sum(len(s.geoms) for s in self.sources)

    @property
    def area_m2(self) -> float:
        """Their summed ground area in square metres."""
        return float(sum(s.area_m2 for s in self.sources))

    def line(self) -> str:
        """One line for the training log: totals, then each raster's count and area."""
        each = ", ".join(f"{Path(s.path).name} {len(s.geoms)} / {s.area_m2:.1f} m2" for s in self.sources)
        return (
            f"mined {self.hard_count} hard negatives, {self.area_m2:.1f} m2 at threshold {self.threshold:.2f} "
            f"in {self.seconds:.0f} s ({each})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record; polygons as hex WKB, which round-trips exactly (a resumed run then draws the very
        same chips)."""
        return {
            "threshold": self.threshold,
            "seconds": self.seconds,
            "sources": [
                {**dataclasses.asdict(s), "geoms": [shapely.to_wkb(g, hex=True) for g in s.geoms]} for s in self.sources
            ],
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> MiningResult:
        """The result :meth:`to_dict` recorded."""
        sources = [MinedSource(**{**s, "geoms": [shapely.from_wkb(g) for g in s["geoms"]]}) for s in record["sources"]]
        return cls(sources=sources, threshold=float(record["threshold"]), seconds=float(record.get("seconds", 0.0)))


def hard_pieces(
    plots: Sequence[DetectedPlot],
    source: ChipSource,
    *,
    min_area_m2: float,
    label_buffer_m: float,
) -> list[tuple[Polygon, float]]:
    """The parts of predicted plots off the labels (grown by ``label_buffer_m``) and inside the source's AOI.

    Args:
        plots: Plots vectorised from the source's probability raster (geometries in its CRS).
        source: The training orthomosaic, with its labels and optional AOI.
        min_area_m2: Smallest piece kept, in ground square metres.
        label_buffer_m: Margin around every label polygon that is not a hard negative, in metres.

    Returns:
        ``(polygon, ground area in m^2)`` for every piece kept, in plot order.
    """
    labels = [g for g in source.labels.geometries if not g.is_empty]
    grown = (
        shapely.buffer(labels, label_buffer_m * units_per_metre(source.info.transform, source.info.gsd_m))
        if labels
        else []
    )
    tree = shapely.STRtree(grown) if labels else None
    region = source.region if source.aoi is not None else None
    out: list[tuple[Polygon, float]] = []
    for plot in plots:
        geom: BaseGeometry = plot.geometry
        if geom.area <= 0:
            continue
        if region is not None:
            geom = shapely.intersection(geom, region)
        if tree is not None and not geom.is_empty:
            near = tree.query(geom, predicate="intersects")
            if len(near):
                geom = shapely.difference(geom, shapely.union_all([grown[int(i)] for i in near]))
        # The CRS scale is constant across one plot: its geodesic area shares out in proportion to CRS area.
        m2_per_unit = plot.area_m2 / plot.geometry.area
        for part in shapely.get_parts(geom):
            if isinstance(part, Polygon) and part.area * m2_per_unit >= min_area_m2:
                out.append((part, float(part.area * m2_per_unit)))
    return out


def mine_hard_negatives(
    model: nn.Module,
    spec: ModelSpec,
    sources: Sequence[ChipSource],
    *,
    threshold: float = 0.5,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    tile: int | None = None,
    min_area_m2: float = 0.5,
    label_buffer_m: float = 0.5,
    max_per_source: int = 200,
    work_dir: str | Path | None = None,
    params: VectorParams | None = None,
    progress: bool = False,
) -> MiningResult:
    """Find where the model calls poppy on training orthomosaics off their labels.

    Args:
        model: The network being trained (its train/eval mode is restored afterwards).
        spec: Its spec (GSD, normalisation, tile size).
        sources: The training orthomosaics, as the chip dataset holds them.
        threshold: Probability at which a pixel is poppy: the model's current operating threshold, or 0.5.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: Tiles per forward pass.
        tile: Tile size in model pixels; None takes the spec's.
        min_area_m2: Smallest hard negative kept, in ground square metres (after the labels are cut away).
        label_buffer_m: Margin around every label polygon, in metres, that is not a hard negative: a plot's
            edge predicted a little wide is an outline error, not a confusable texture.
        max_per_source: Most hard negatives kept per raster, the largest first.
        work_dir: Where probability rasters are kept (``NNN_NAME.prob.tif``, replaced each call); None uses a
            temporary folder, each raster deleted once vectorised.
        params: Other vectorising settings (clean-up radii; the same as validation's by default);
            ``threshold`` and ``min_area_m2`` override theirs.
        progress: Show progress bars.

    Returns:
        One list of polygons per source (see :class:`MiningResult`); the summary is logged at INFO.

    Raises:
        InputError: For a setting out of range, an unreadable raster or a model that is not an RGB poppy detector.
    """
    if not label_buffer_m >= 0.0:
        raise InputError(f"label_buffer_m={label_buffer_m}: must be 0 or more metres (e.g. 0.5)")
    if max_per_source < 1:
        raise InputError(f"max_per_source={max_per_source}: must be at least 1 (e.g. 200)")
    params = dataclasses.replace(params or VectorParams(), threshold=threshold, min_area_m2=min_area_m2)
    params.check()
    t_start = time.perf_counter()
    mined: list[MinedSource] = []
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    for i, source in enumerate(sources):
        t0 = time.perf_counter()
        plots = detect_plots(
            source.path,
            model,
            spec,
            params,
            # Numbered: two training folders can hold the same file name. Without a work_dir, a temporary raster
            # deleted once vectorised: one probability raster on disk at a time, orthomosaics are large.
            prob_path=Path(work_dir) / f"{i:03d}_{Path(source.path).stem}.prob.tif" if work_dir is not None else None,
            tile=tile,
            batch_size=batch_size,
            device=device,
            progress=progress,
            overwrite=True,
        ).plots
        pieces = hard_pieces(plots, source, min_area_m2=min_area_m2, label_buffer_m=label_buffer_m)
        # Largest first; ties by position, so the order (and the chips drawn from it) is reproducible.
        pieces.sort(key=lambda p: (-p[1], -p[0].centroid.y, p[0].centroid.x))
        kept = pieces[:max_per_source]
        mined.append(
            MinedSource(
                path=source.path,
                geoms=[g for g, _ in kept],
                areas_m2=[a for _, a in kept],
                plots=len(plots),
                left_out=len(pieces) - len(kept),
                seconds=time.perf_counter() - t0,
            )
        )
    result = MiningResult(mined, threshold=float(threshold), seconds=time.perf_counter() - t_start)
    log.info(result.line())
    return result
