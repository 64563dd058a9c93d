"""QGIS style files (``.qml``) for the plots layer and the probability raster.

QGIS applies ``NAME.qml`` to a layer loaded from ``NAME.EXT`` by itself, so ``STEM.qml`` styles both
``STEM.geojson`` and ``STEM.gpkg`` and ``STEM.prob.qml`` styles ``STEM.prob.tif``:

- plots: filled polygons coloured by ``score`` in four classes (yellow to dark red), outlined, labelled with
  ``plot_id`` at the centroid over a white halo, every label drawn even where labels overlap (a missed label is a
  missed plot);
- probability: a single-band pseudocolour ramp on the decoded probability 0-1 (the raster's scale and offset
  make it 0-1, see :mod:`detect.rasterout`), transparent below 0.1 so the orthomosaic shows through, through
  yellow and orange to red at 1.

Symbol properties are written as ``<prop k= v=>`` elements, which every QGIS 3 release reads (newer ones write
``<Option>`` maps but still read these). The files are built with :mod:`xml.etree.ElementTree`, so every value
is escaped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from core.files import write_aside

__all__ = ["PROB_RAMP", "SCORE_CLASSES", "plots_qml", "prob_qml", "write_qml"]

_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
_VERSION = "3.28.0-Firenze"  # the LTR these were written against; QGIS reads styles of older and newer versions

# (lower, upper, RGB) on the plot score; from yellow (worth a look) to dark red (most likely poppy)
SCORE_CLASSES: tuple[tuple[float, float, tuple[int, int, int]], ...] = (
    (0.0, 0.25, (255, 237, 111)),
    (0.25, 0.5, (253, 174, 97)),
    (0.5, 0.75, (240, 59, 32)),
    (0.75, 1.0, (165, 0, 38)),
)
# (probability, RGB, alpha) stops of the interpolated ramp for the probability raster
PROB_RAMP: tuple[tuple[float, tuple[int, int, int], int], ...] = (
    (0.0, (255, 255, 178), 0),
    (0.1, (255, 255, 178), 0),
    (0.3, (254, 204, 92), 150),
    (0.5, (253, 141, 60), 190),
    (0.7, (240, 59, 32), 220),
    (1.0, (189, 0, 38), 240),
)


def _rgba(rgb: tuple[int, int, int], alpha: int = 255) -> str:
    return f"{rgb[0]},{rgb[1]},{rgb[2]},{alpha}"


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _to_text(root: ET.Element) -> str:
    ET.indent(root)
    return _DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def _fill_symbol(parent: ET.Element, name: str, rgb: tuple[int, int, int]) -> None:
    sym = ET.SubElement(parent, "symbol", type="fill", name=name, alpha="1", clip_to_extent="1", force_rhr="0")
    layer = ET.SubElement(sym, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
    for k, v in (
        ("color", _rgba(rgb, 90)),  # a light fill: the crop under it must stay visible
        ("style", "solid"),
        ("outline_color", _rgba(rgb)),
        ("outline_style", "solid"),
        ("outline_width", "0.6"),
        ("outline_width_unit", "MM"),
        ("joinstyle", "bevel"),
    ):
        ET.SubElement(layer, "prop", k=k, v=v)


def plots_qml() -> str:
    """The style of the plots layer: colour by ``score`` (:data:`SCORE_CLASSES`), labels by ``plot_id``."""
    root = ET.Element("qgis", version=_VERSION, styleCategories="Symbology|Labeling", labelsEnabled="1")
    renderer = ET.SubElement(
        root,
        "renderer-v2",
        type="graduatedSymbol",
        attr="score",
        graduatedMethod="GraduatedColor",
        symbollevels="0",
        enableorderby="0",
        forceraster="0",
    )
    ranges = ET.SubElement(renderer, "ranges")
    symbols = ET.SubElement(renderer, "symbols")
    for i, (lo, hi, rgb) in enumerate(SCORE_CLASSES):
        ET.SubElement(
            ranges, "range", lower=f"{lo:.6f}", upper=f"{hi:.6f}", symbol=str(i), label=f"score {lo:.2f} - {hi:.2f}",
            render="true",
        )  # fmt: skip
        _fill_symbol(symbols, str(i), rgb)
    ET.SubElement(renderer, "mode", name="manual")
    labeling = ET.SubElement(root, "labeling", type="simple")
    settings = ET.SubElement(labeling, "settings", calloutType="simple")
    style = ET.SubElement(
        settings,
        "text-style",
        fieldName="plot_id",
        isExpression="0",
        fontSize="9",
        fontSizeUnit="Point",
        fontWeight="75",
        textColor="0,0,0,255",
        textOpacity="1",
    )
    ET.SubElement(
        style, "text-buffer", bufferDraw="1", bufferSize="1", bufferSizeUnits="MM", bufferColor="255,255,255,255",
        bufferOpacity="1", bufferNoFill="1",
    )  # fmt: skip
    # placement 1 = over the centroid; centroidInside keeps the label on a ring-shaped plot, not in its hole
    ET.SubElement(settings, "placement", placement="1", centroidInside="1", centroidWhole="0", priority="5")
    ET.SubElement(settings, "rendering", displayAll="1", obstacle="1", drawLabels="1", scaleVisibility="0")
    ET.SubElement(root, "layerGeometryType").text = "2"  # polygons
    return _to_text(root)


def prob_qml() -> str:
    """The style of the probability raster: a pseudocolour ramp over 0-1 (:data:`PROB_RAMP`)."""
    root = ET.Element("qgis", version=_VERSION, styleCategories="Symbology")
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(
        pipe,
        "rasterrenderer",
        type="singlebandpseudocolor",
        band="1",
        opacity="1",
        alphaBand="-1",
        classificationMin="0",
        classificationMax="1",
        nodataColor="",
    )
    ET.SubElement(renderer, "rasterTransparency")
    origin = ET.SubElement(renderer, "minMaxOrigin")
    ET.SubElement(origin, "limits").text = "None"  # fixed 0-1: never stretched to the raster's own range
    ET.SubElement(origin, "extent").text = "WholeRaster"
    shader = ET.SubElement(ET.SubElement(renderer, "rastershader"), "colorrampshader")
    shader.attrib.update(
        colorRampType="INTERPOLATED", classificationMode="1", clip="0", minimumValue="0", maximumValue="1"
    )
    for value, rgb, alpha in PROB_RAMP:
        ET.SubElement(shader, "item", value=f"{value:g}", label=f"{value:.1f}", color=_hex(rgb), alpha=str(alpha))
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    return _to_text(root)


def write_qml(path: Path, text: str) -> Path:
    """Write a style (:func:`plots_qml` or :func:`prob_qml`) to ``path``, aside then renamed; the caller checks
    for an existing file."""
    with write_aside(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
