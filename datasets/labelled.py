"""A labelled scene: one orthomosaic with its poppy polygons (and area of interest), the unit of training data.

This module is the one owner of the folder convention (``NAME.tif`` + ``NAME.geojson|.gpkg|.shp``, optional
``NAME.aoi.geojson`` and ``NAME.json`` sidecar with ``stage`` and ``gsd_m``), of finding the labelled scenes in a
folder, and of holding whole scenes out for validation. Chip sampling (:meth:`datasets.chips.ChipSource.from_scene`),
validation (:mod:`training.evaluate`) and mining all start from a :class:`LabelledScene`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from core.errors import InputError
from datasets.labels import find_aoi_file, find_label_files
from datasets.reviewed import find_reviewed_file

__all__ = ["RASTER_SUFFIXES", "LabelledScene", "hold_out", "scenes_from_folder"]

RASTER_SUFFIXES = (".tif", ".tiff")  # labelled orthomosaics (infer.py reads more: detect.pipeline.RASTER_SUFFIXES)

T = TypeVar("T")


@dataclass(frozen=True)
class LabelledScene:
    """One validation orthomosaic with its labels.

    Attributes:
        name: Short name for tables (the raster's stem).
        raster: The orthomosaic.
        labels: Poppy plot polygons (any format and CRS :func:`datasets.labels.read_labels` reads; an empty file
            for a poppy-free scene).
        aoi: Where labelling is complete; None for the whole raster.
        stage: Growth stage of the scene (from a ``NAME.json`` sidecar); None when not recorded.
        gsd_m: Nominal ground sample distance from the sidecar; None to measure it from the raster.
        unreviewed_as: None for ordinary labels (every polygon is poppy); ``ignore`` or ``negative`` for a
            reviewed ``infer.py`` output, read by :func:`datasets.reviewed.read_reviewed` with that rule for the
            ground nobody reviewed.
    """

    name: str
    raster: Path
    labels: Path
    aoi: Path | None = None
    stage: str | None = None
    gsd_m: float | None = None
    unreviewed_as: str | None = None

    @classmethod
    def from_raster(
        cls,
        raster: str | Path,
        labels: str | Path | None = None,
        aoi: str | Path | None = None,
        *,
        unreviewed_as: str | None = None,
    ) -> LabelledScene:
        """A scene by the folder convention: ``NAME.tif`` + ``NAME.geojson|.gpkg|.shp`` (+ ``NAME.aoi.geojson``,
        ``NAME.json`` sidecar with ``stage`` and ``gsd_m``).

        With ``unreviewed_as`` the labels are a reviewed ``infer.py`` output: of ``NAME.gpkg`` and ``NAME.geojson``
        the one with a ``review`` field (:func:`datasets.reviewed.find_reviewed_file`).

        Raises:
            InputError: If no labels file is found or the sidecar is not valid JSON.
        """
        raster = Path(raster)
        if unreviewed_as is None:
            found_labels, found_aoi = find_label_files(raster)
        else:
            found_labels, found_aoi = find_reviewed_file(raster), find_aoi_file(raster)
        labels = Path(labels) if labels is not None else found_labels
        if labels is None:
            raise InputError(
                f"{raster}: no labels found; save its poppy polygons as {raster.stem}.geojson next to it "
                "(an empty FeatureCollection for a poppy-free scene)"
            )
        aoi = Path(aoi) if aoi is not None else found_aoi
        stage, gsd = None, None
        sidecar = raster.with_suffix(".json")
        if sidecar.is_file():
            try:
                meta = json.loads(sidecar.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{sidecar}: not valid JSON ({exc}); fix or delete the sidecar") from exc
            if isinstance(meta, dict):
                stage = str(meta["stage"]) if meta.get("stage") not in (None, "") else None
                gsd = float(meta["gsd_m"]) if isinstance(meta.get("gsd_m"), int | float) else None
        return cls(
            name=raster.stem, raster=raster, labels=Path(labels), aoi=aoi, stage=stage, gsd_m=gsd,
            unreviewed_as=unreviewed_as,
        )  # fmt: skip


def scenes_from_folder(folder: str | Path, *, unreviewed_as: str | None = None) -> list[LabelledScene]:
    """Every labelled ``NAME.tif`` in a folder as a :class:`LabelledScene`, sorted by name.

    Rasters without labels are skipped (they may be waiting to be labelled). With ``unreviewed_as`` the folder
    holds reviewed ``infer.py`` outputs (see :meth:`LabelledScene.from_raster`).

    Raises:
        InputError: If the folder is missing or holds no labelled raster.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{folder}: no such folder; give the folder holding NAME.tif + NAME.geojson pairs")
    scenes = []
    for raster in sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES):
        if raster.name.lower().endswith(".prob.tif"):
            continue  # our own probability rasters, if an output folder sits inside the data folder
        labels = find_label_files(raster)[0] if unreviewed_as is None else find_reviewed_file(raster)
        if labels is not None:
            scenes.append(LabelledScene.from_raster(raster, unreviewed_as=unreviewed_as))
    if not scenes:
        raise InputError(
            f"{folder}: no orthomosaic with labels found; put NAME.tif next to NAME.geojson (or .gpkg/.shp)"
        )
    return scenes


def hold_out(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Split whole orthomosaics into training and validation, never chips of one raster into both.

    ``max(1, round(fraction * n))`` items are held out, chosen by ``seed`` (the same seed, the same split), and
    at least one is left to train on. Both lists keep the input order.

    Raises:
        InputError: With fewer than two items (nothing to hold out) or a fraction outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"--val-fraction {fraction}: must be between 0 and 1 (e.g. 0.2)")
    n = len(items)
    if n < 2:
        raise InputError(
            f"only {n} labelled orthomosaic(s): validation holds out whole orthomosaics, so give at least 2, "
            "or pass --val-data (or --synthetic-val)"
        )
    k = min(n - 1, max(1, round(fraction * n)))
    chosen = set(np.random.default_rng(seed).permutation(n)[:k].tolist())
    train = [x for i, x in enumerate(items) if i not in chosen]
    val = [x for i, x in enumerate(items) if i in chosen]
    return train, val
