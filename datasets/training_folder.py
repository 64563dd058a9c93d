"""Checks on a folder of labelled orthomosaics before training starts, so a bad pair stops the run at once.

``train.py`` calls :func:`check_training_folder` for ``--data`` and ``--val-data`` before the first epoch: a
label file that cannot be used (empty, unreadable, without a CRS, points or lines only, off its raster) is
reported in one line naming it, and orthomosaics without labels are named instead of skipped silently.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import InputError
from datasets.labels import check_overlap, find_label_files, read_labels
from detect.raster import inspect_raster, open_raster

__all__ = ["check_training_folder"]


def check_training_folder(folder: str | Path, flag: str = "--data") -> list[str]:
    """Check a folder of labelled orthomosaics before training starts; returns warnings to show.

    Every ``NAME.tif`` (not our own ``.prob.tif`` or ``.landcover.tif``) is either paired with a label file
    (see :func:`datasets.labels.find_label_files`) or reported by name as not used. Each pair is read as
    training will read it: the raster is inspected, the labels reprojected onto it and checked against its
    extent, so a label file with no CRS, points or lines only, or polygons somewhere else stops the run now,
    in one line, rather than after the first epoch. An empty FeatureCollection is a poppy-free scene and fine.

    Args:
        folder: The folder (``--data`` or ``--val-data``).
        flag: The flag it came from, for messages.

    Returns:
        One-line warnings about rasters without labels (what the labels reader repaired or dropped it logs
        itself).

    Raises:
        InputError: Naming the file at fault and the fix.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{flag} {folder}: no such folder; give the folder holding NAME.tif + NAME.geojson pairs")
    own = (".prob.tif", ".landcover.tif")
    rasters = sorted(
        p
        for p in root.iterdir()
        if p.is_file() and p.suffix.lower() in (".tif", ".tiff") and not p.name.lower().endswith(own)
    )
    unlabelled = [r.name for r in rasters if find_label_files(r)[0] is None]
    notes = []
    if unlabelled:
        names = ", ".join(unlabelled[:10]) + (f" and {len(unlabelled) - 10} more" if len(unlabelled) > 10 else "")
        notes.append(
            f"{flag} {folder}: {len(unlabelled)} orthomosaic(s) without a label file are not used: {names}; "
            "save their poppy polygons as NAME.geojson next to them (an empty FeatureCollection for a "
            "poppy-free scene)"
        )
    labelled = [r for r in rasters if r.name not in unlabelled]
    if not labelled:
        raise InputError(
            f"{flag} {folder}: no orthomosaic with labels"
            + (f" (no label file for {', '.join(unlabelled[:5])})" if unlabelled else "")
            + "; put NAME.tif next to NAME.geojson (or .gpkg/.shp)"
        )
    for raster in labelled:
        labels_path, _ = find_label_files(raster)
        if labels_path is None:  # filtered above
            continue
        if labels_path.stat().st_size == 0:
            raise InputError(
                f"{labels_path}: is empty (0 bytes); save the poppy polygons again from QGIS (an empty "
                "FeatureCollection for a poppy-free scene)"
            )
        with open_raster(raster) as ds:
            info = inspect_raster(ds)
            bounds = ds.bounds
        labels = read_labels(labels_path, info.crs)
        if len(labels) == 0 and any("non-polygon" in w for w in labels.warnings):
            raise InputError(
                f"{labels_path}: holds points or lines but no polygon; draw each poppy plot as a polygon "
                "around its plants (QGIS: a Polygon layer) and save again"
            )
        check_overlap(labels, bounds, raster)  # read_labels and check_overlap log their own warnings
    return notes
