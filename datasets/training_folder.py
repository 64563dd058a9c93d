"""Checks on a folder of labelled orthomosaics before training starts, so a bad pair stops the run at once.

``train.py`` calls :func:`check_training_folder` for ``--data`` and ``--val-data`` before the first epoch: a
label file that cannot be used (empty, unreadable, without a CRS, points or lines only, off its raster) is
reported in one line naming it, and orthomosaics without labels are named instead of skipped silently.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import InputError
from datasets.labels import check_overlap, find_aoi_file, find_label_files, read_labels
from datasets.reviewed import find_reviewed_file, read_label_sets, units_per_metre
from detect.raster import inspect_raster, open_raster

__all__ = ["check_training_folder"]


def check_training_folder(folder: str | Path, flag: str = "--data", *, unreviewed_as: str | None = None) -> list[str]:
    """Check a folder of labelled orthomosaics before training starts; returns warnings to show.

    Every ``NAME.tif`` (not our own ``.prob.tif`` or ``.landcover.tif``) is either paired with a label file
    (see :func:`datasets.labels.find_label_files`) or reported by name as not used. Each pair is read as
    training will read it: the raster is inspected, the labels reprojected onto it and checked against its
    extent, so a label file with no CRS, points or lines only, or polygons somewhere else stops the run now,
    in one line, rather than after the first epoch. An empty FeatureCollection is a poppy-free scene and fine.

    A ``--reviewed`` folder (``unreviewed_as`` set) holds reviewed ``infer.py`` outputs: each is read with the
    verdict rules (:func:`datasets.reviewed.read_reviewed`), so a file without a ``review`` field or a value that
    is not a verdict stops the run here too.

    Args:
        folder: The folder (``--data``, ``--val-data`` or ``--reviewed``).
        flag: The flag it came from, for messages.
        unreviewed_as: None for ordinary labels; ``ignore`` or ``negative`` for reviewed outputs.

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

    def labels_of(raster: Path) -> Path | None:
        return find_label_files(raster)[0] if unreviewed_as is None else find_reviewed_file(raster)

    unlabelled = [r.name for r in rasters if labels_of(r) is None]
    notes = []
    if unlabelled:
        names = ", ".join(unlabelled[:10]) + (f" and {len(unlabelled) - 10} more" if len(unlabelled) > 10 else "")
        fix = (
            "save their poppy polygons as NAME.geojson next to them (an empty FeatureCollection for a poppy-free scene)"
            if unreviewed_as is None
            else "put the reviewed NAME.gpkg (or NAME.geojson) infer.py wrote for each next to it"
        )
        notes.append(
            f"{flag} {folder}: {len(unlabelled)} orthomosaic(s) without a label file are not used: {names}; {fix}"
        )
    labelled = [r for r in rasters if r.name not in unlabelled]
    if not labelled:
        raise InputError(
            f"{flag} {folder}: no orthomosaic with labels"
            + (f" (no label file for {', '.join(unlabelled[:5])})" if unlabelled else "")
            + (
                "; put NAME.tif next to NAME.geojson (or .gpkg/.shp)"
                if unreviewed_as is None
                else "; put each orthomosaic NAME.tif next to the reviewed NAME.gpkg (or NAME.geojson) infer.py wrote"
            )
        )
    for raster in labelled:
        labels_path = labels_of(raster)
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
        if unreviewed_as is not None:
            per_metre = units_per_metre(info.transform, info.gsd_m)
            aoi_path = find_aoi_file(raster)
            labels = read_label_sets(
                labels_path, aoi_path, info.crs, bounds, per_metre=per_metre, unreviewed_as=unreviewed_as
            )[0]
        else:
            labels = read_labels(labels_path, info.crs)
        if len(labels) == 0 and any("non-polygon" in w for w in labels.warnings):
            raise InputError(
                f"{labels_path}: holds points or lines but no polygon; draw each poppy plot as a polygon "
                "around its plants (QGIS: a Polygon layer) and save again"
            )
        check_overlap(labels, bounds, raster)  # read_labels and check_overlap log their own warnings
    return notes
