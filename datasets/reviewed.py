"""Analysts' verdicts as training labels: ``infer.py``'s plots, reviewed in QGIS, turned into masks.

After a survey, analysts open ``STEM.gpkg`` (or ``STEM.geojson``) in QGIS and give each plot a verdict in a text
field ``review``, and draw the plots the model missed as new features of the same layer. This module reads such a
*reviewed output* and says what every pixel teaches:

============================================  =================================================================
feature                                       mask
============================================  =================================================================
``review`` = ``confirmed`` or ``added``       1 (poppy)
``review`` = ``rejected``                     0 (a hard negative: chips are centred on it, see ``rejected``)
``review`` empty, drawn by the analyst        1: a missed plot (it has no ``plot_id``: infer.py did not write it)
``review`` empty, written by infer.py         255 (ignored): nobody looked at it, it may be poppy or not
============================================  =================================================================

The rest of the orthomosaic is what the analyst says (``unreviewed_as``):

- ``ignore``: only the reviewed plots and :data:`REVIEW_MARGIN_M` metres around them teach (their surroundings are
  background); everything else is 255. For a review that only went through the detections.
- ``negative``: everything else is background (0), as when the analyst scanned the whole orthomosaic and drew
  every plot the model missed.

Unreviewed detections, grown by :data:`UNREVIEWED_MARGIN_M` (an outline is a little off), are 255 in both modes,
unless a reviewed plot covers them. Verdicts are read case-insensitively and stripped (``Confirmed `` is
``confirmed``); any other value stops the run with the feature and the fix.

All of it is expressed in the terms the rest of training already uses: the positives are a
:class:`datasets.labels.LabelSet` and where the mask teaches is an area of interest (AOI, outside it 255), so
chips (:class:`datasets.chips.ChipSource`), mining and validation (:mod:`training.evaluate`) treat a reviewed
scene exactly as a labelled one with an AOI.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyogrio
import pyogrio.raw
import shapely
from affine import Affine
from shapely.geometry.base import BaseGeometry

from core.errors import InputError
from datasets.labels import LABEL_SUFFIXES, LabelSet, _polygonal_part, _siblings, read_labels

__all__ = [
    "ALLOWED_REVIEWS",
    "REVIEW_FIELD",
    "REVIEW_MARGIN_M",
    "UNREVIEWED_AS",
    "UNREVIEWED_MARGIN_M",
    "Reviewed",
    "find_reviewed_file",
    "read_reviewed",
    "units_per_metre",
    "verdict",
]

log = logging.getLogger(__name__)

REVIEW_FIELD = "review"
ALLOWED_REVIEWS = ("confirmed", "rejected", "added", "")  # "" (or NULL): not reviewed, or drawn by the analyst
POSITIVE_REVIEWS = ("confirmed", "added")
UNREVIEWED_AS = ("ignore", "negative")
# Around each reviewed plot, this much ground teaches with --unreviewed-as ignore: the analyst looked at the plot
# and what is next to it (a chip of 256 px at 3 cm is 7.7 m, so 5 m gives every plot chip a labelled context).
REVIEW_MARGIN_M = 5.0
# An unreviewed detection's outline is about a pixel off and its fuzzy edge may be poppy too: its ignored area
# reaches this far beyond it.
UNREVIEWED_MARGIN_M = 0.5
_ID_FIELD = "plot_id"  # infer.py writes it; a feature without one was drawn by the analyst


@dataclass(frozen=True)
class Reviewed:
    """A reviewed output read onto a raster: what is poppy, what is a hard negative, where the mask teaches.

    Attributes:
        positives: Confirmed, added and analyst-drawn plots (mask 1), in the raster's CRS.
        rejected: Rejected plots (mask 0): hard negatives to centre chips on.
        aoi: Where the mask teaches (outside it 255): one (multi)polygon, clipped to the raster.
        counts: Features per verdict: ``confirmed``, ``added`` (drawn or marked added), ``rejected``,
            ``unreviewed``.
    """

    positives: LabelSet
    rejected: list[BaseGeometry]
    aoi: LabelSet
    counts: dict[str, int]

    def line(self) -> str:
        """One line for the log: the counts."""
        c = self.counts
        return (
            f"{self.positives.path}: {c.get('confirmed', 0)} confirmed, {c.get('added', 0)} added, "
            f"{c.get('rejected', 0)} rejected, {c.get('unreviewed', 0)} unreviewed plots"
        )


def units_per_metre(transform: Affine, gsd_m: tuple[float, float]) -> float:
    """CRS units per ground metre of a raster, the larger of its two axes, so a buffer reaches at least as far as
    asked (in a geographic CRS a degree of longitude is shorter than one of latitude).

    Args:
        transform: The raster's affine transform.
        gsd_m: Its ground sample distance in metres, ``(row/y, col/x)``.
    """
    row_gsd, col_gsd = gsd_m
    return max(math.hypot(transform.a, transform.d) / col_gsd, math.hypot(transform.b, transform.e) / row_gsd)


def verdict(value: Any, has_id: bool, where: str) -> str:
    """The verdict of one feature: ``confirmed``, ``added``, ``rejected`` or ``unreviewed``.

    Args:
        value: Its ``review`` attribute (None, NaN or blank: not reviewed).
        has_id: Whether it carries infer.py's ``plot_id`` (False: the analyst drew it, a missed plot).
        where: The file and feature, for the message.

    Raises:
        InputError: For a value that is not one of :data:`ALLOWED_REVIEWS`, naming it and the fix.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = ""
    elif isinstance(value, str):
        text = value.strip().lower()
    else:
        text = None  # a number or a date in the review field: not a verdict
    if text is None or text not in ALLOWED_REVIEWS:
        raise InputError(
            f"{where}: review {value!r} is not a verdict; set it to confirmed, rejected or added, or leave it empty "
            "(not reviewed), then save the layer again"
        )
    if text == "":
        return "unreviewed" if has_id else "added"
    return text


def _review_fields(path: Path) -> list[str]:
    """The attribute names of a vector file's first layer (empty when it cannot be read: the reader says why)."""
    try:
        return [str(f) for f in pyogrio.read_info(path)["fields"]]
    except Exception:  # pyogrio's DataSourceError and friends; read_labels reports them with the fix
        return []


def _edited(path: Path) -> bool:
    """Whether an analyst has worked on a plots file: some ``review`` is set, or some feature has no ``plot_id``."""
    fields = {f.lower(): f for f in _review_fields(path)}
    if REVIEW_FIELD not in fields:
        return False
    wanted = [fields[REVIEW_FIELD], *([fields[_ID_FIELD]] if _ID_FIELD in fields else [])]
    try:
        meta, _, _, data = pyogrio.raw.read(path, columns=wanted, read_geometry=False)
    except Exception:  # unreadable: read_labels reports it with the fix once the file is chosen
        return False
    columns = dict(zip((str(f) for f in meta["fields"]), data, strict=True))  # in the file's order, not ours
    reviews = columns[fields[REVIEW_FIELD]]
    ids = columns[fields[_ID_FIELD]] if _ID_FIELD in fields else [None] * len(reviews)
    blank = ("", "nan", "none")
    return any(str(r).strip().lower() not in blank for r in reviews if r is not None) or any(
        i is None or str(i).strip() == "" for i in ids
    )


def find_reviewed_file(raster_path: str | Path) -> Path | None:
    """The reviewed output next to a raster: ``NAME.gpkg``, ``NAME.geojson`` or ``NAME.shp``.

    ``infer.py`` writes both ``STEM.gpkg`` and ``STEM.geojson``, each with an empty ``review`` field, and the
    analyst edits one of them: the one with a verdict set or a plot drawn is taken. When neither is edited yet the
    GeoPackage is (:func:`read_reviewed` then says nothing is reviewed); with a single candidate it is taken
    whatever its fields (:func:`read_reviewed` says what is missing).

    Returns:
        The file, or None when there is no candidate.

    Raises:
        InputError: When several candidates are edited, or several exist and none has a ``review`` field.
    """
    candidates = _siblings(raster_path, LABEL_SUFFIXES)
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    edited = [c for c in candidates if _edited(c)]
    if len(edited) == 1:
        return edited[0]
    if edited:
        raise InputError(
            f"{raster_path}: several files hold review verdicts ({', '.join(c.name for c in edited)}); keep the one "
            "the analyst edited (move the others away)"
        )
    with_field = [c for c in candidates if REVIEW_FIELD in (f.lower() for f in _review_fields(c))]
    if with_field:
        # The GeoPackage first: it is in the raster's own CRS (the GeoJSON is WGS84, rounded to about 1 cm).
        return min(with_field, key=lambda c: c.suffix.lower() != ".gpkg")
    raise InputError(
        f"{raster_path}: none of {', '.join(c.name for c in candidates)} has a review field; add a text field "
        "named review in QGIS (Layer Properties > Fields), set it per plot (confirmed, rejected, added) and save; "
        "or keep only one file"
    )


def read_reviewed(
    path: str | Path,
    crs: Any,
    raster_bounds: Sequence[float],
    *,
    unreviewed_as: str,
    per_metre: float,
    aoi: LabelSet | None = None,
    layer: str | int | None = None,
) -> Reviewed:
    """Read a reviewed ``infer.py`` output onto a raster (see the module docstring for the rules).

    Args:
        path: The reviewed GeoPackage, GeoJSON or Shapefile.
        crs: The raster's CRS.
        raster_bounds: ``(left, bottom, right, top)`` of the raster in its CRS.
        unreviewed_as: ``ignore`` or ``negative``: what the ground away from any reviewed plot teaches.
        per_metre: CRS units per ground metre (:func:`units_per_metre`), for the margins.
        aoi: An area of interest of its own (``NAME.aoi.geojson``): outside it nothing teaches in either mode.
        layer: Layer of a multi-layer file.

    Returns:
        The positives, the rejected plots and where the mask teaches.

    Raises:
        InputError: On a file without a ``review`` field, a value that is not a verdict, an unknown
            ``unreviewed_as``, or a review that leaves nothing to learn from.
    """
    if unreviewed_as not in UNREVIEWED_AS:
        raise InputError(f"--unreviewed-as {unreviewed_as!r}: must be ignore or negative")
    features = read_labels(path, crs, layer=layer)
    fields = {k.lower(): k for p in features.properties for k in p} or {
        f.lower(): f for f in _review_fields(Path(path))
    }
    if REVIEW_FIELD not in fields:
        raise InputError(
            f"{path}: has no review field, so it is not a reviewed output; in QGIS add a text field named review "
            "(Layer Properties > Fields), set it per plot to confirmed, rejected or added (empty: not reviewed), "
            "save, and train again; or give it to --data if it holds only poppy plots"
        )
    key, id_key = fields[REVIEW_FIELD], fields.get(_ID_FIELD)
    kinds: list[str] = []
    for i, props in enumerate(features.properties):
        plot_id = props.get(id_key) if id_key is not None else None
        has_id = plot_id is not None and str(plot_id).strip() != ""
        where = f"{path}: feature {i + 1}" + (f" ({plot_id})" if has_id else "")
        kinds.append(verdict(props.get(key), has_id, where))
    counts = dict(Counter(kinds))
    geoms = features.geometries
    pick = [[g for g, k in zip(geoms, kinds, strict=True) if k in want] for want in (POSITIVE_REVIEWS, ("rejected",))]
    positives, rejected = pick
    unreviewed = [g for g, k in zip(geoms, kinds, strict=True) if k == "unreviewed"]
    reviewed = positives + rejected
    if unreviewed_as == "ignore" and not reviewed:
        raise InputError(
            f"{path}: no plot is reviewed ({counts.get('unreviewed', 0)} with an empty review), so with "
            "--unreviewed-as ignore nothing is left to learn from; set review to confirmed or rejected, draw the "
            "missed plots, or pass --unreviewed-as negative if the rest of the orthomosaic holds no poppy"
        )

    box = shapely.box(*(float(v) for v in raster_bounds))
    base = (
        box if unreviewed_as == "negative" else shapely.union_all(shapely.buffer(reviewed, REVIEW_MARGIN_M * per_metre))
    )
    if unreviewed:
        base = shapely.difference(base, shapely.union_all(shapely.buffer(unreviewed, UNREVIEWED_MARGIN_M * per_metre)))
    if reviewed:  # a verdict wins over an unreviewed neighbour's margin
        base = shapely.union(base, shapely.union_all(reviewed))
    region = shapely.intersection(base, box)
    if aoi is not None:
        region = shapely.intersection(region, shapely.union_all(aoi.geometries))
    region = _polygonal_part(shapely.make_valid(region)) if not region.is_empty else None
    if region is None or region.area <= 0:
        raise InputError(
            f"{path}: after the review nothing of the raster is left to learn from (the reviewed plots lie off it "
            "or outside its area of interest); check that the file belongs to this orthomosaic"
        )
    notes = list(features.warnings)
    result = Reviewed(
        positives=LabelSet(positives, [{} for _ in positives], features.crs, notes, str(path)),
        rejected=rejected,
        aoi=LabelSet([region], [{}], features.crs, [], f"{path} (reviewed ground)"),
        counts={k: counts.get(k, 0) for k in ("confirmed", "added", "rejected", "unreviewed")},
    )
    log.info(result.line())
    return result


def read_label_sets(
    labels_path: str | Path,
    aoi_path: str | Path | None,
    crs: Any,
    raster_bounds: Sequence[float],
    *,
    per_metre: float,
    unreviewed_as: str | None = None,
    layer: str | int | None = None,
) -> tuple[LabelSet, LabelSet | None, list[BaseGeometry]]:
    """The labels of one scene as training and validation use them: ``(poppy, area of interest, rejected)``.

    Ordinary labels (``unreviewed_as`` None): every polygon is poppy, the AOI file (if any) says where labelling
    is complete, nothing is rejected. A reviewed output: :func:`read_reviewed`, its AOI being the reviewed ground.

    Raises:
        InputError: As :func:`datasets.labels.read_labels` and :func:`read_reviewed`; an AOI file without polygons.
    """
    aoi = read_labels(aoi_path, crs) if aoi_path is not None else None
    if aoi is not None and len(aoi) == 0:
        raise InputError(
            f"{aoi_path}: the area-of-interest file holds no polygons; draw where labelling is complete, "
            "or delete the file to use the whole raster"
        )
    if unreviewed_as is None:
        return read_labels(labels_path, crs, layer=layer), aoi, []
    rev = read_reviewed(
        labels_path, crs, raster_bounds, unreviewed_as=unreviewed_as, per_metre=per_metre, aoi=aoi, layer=layer
    )
    return rev.positives, rev.aoi, rev.rejected
