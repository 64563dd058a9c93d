"""The field report: ``STEM.report.html``, one self-contained page per input for people without GIS.

Police networks are often air-gapped and field teams open files on phones, so the page needs nothing but itself:
pictures are inlined as ``data:`` URIs (JPEG, base64), the style sheet is inline, there is no script and no
external reference. The only links that leave the page are the map links of each plot (``geo:LAT,LON``, which
Android hands to the installed map app, and OpenStreetMap and Google Maps URLs for a browser with a network).

The page holds, in order: what ran and how to read a score (the run's operating point and its precision and
recall on validation); an overview of the orthomosaic with the plots outlined and labelled by ``plot_id``; a
table of every plot sorted by score (highest first); and a card per plot with an image chip (the plot outlined,
:func:`detect.pictures.render_chip`), its score, area, position and map links. Cards are capped at
``max_chips`` (the highest-scoring plots) so a run with thousands of false alarms still gives a page a phone
opens; the page says when it was capped. Every string from outside the code (file names, model names, notes)
is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rasterio

from core.files import write_aside
from detect.pictures import encode_jpeg, render_chip, render_preview
from detect.raster import RasterInfo
from detect.vectorize import DetectedPlot

__all__ = [
    "PAGE_CSS",
    "REPORT_MAX_CHIPS",
    "REPORT_OVERVIEW_SIDE",
    "build_report",
    "map_links",
    "page_head",
    "write_report",
]

REPORT_MAX_CHIPS = 150  # ~10 KB a chip as base64 JPEG: at most ~2 MB of chips, which a phone still opens quickly
REPORT_OVERVIEW_SIDE = 1400  # the overview's longer side in px: plot outlines visible, a few hundred KB
_CHIP_QUALITY = 80
_OVERVIEW_QUALITY = 82

PAGE_CSS = """
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:12px;color:#1b1b1b;background:#fff}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em;border-bottom:1px solid #ccc}
.warn{background:#fff4d6;border-left:4px solid #e0a000;padding:6px 10px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:.4em 0}dt{color:#555}dd{margin:0}
img.overview{max-width:100%;height:auto;border:1px solid #999}
table{border-collapse:collapse;width:100%;font-size:.95em}th,td{padding:3px 6px;border-bottom:1px solid #ddd;
text-align:right}th:first-child,td:first-child,td.links{text-align:left}thead th{background:#eee;position:sticky;top:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:10px}
.card{border:1px solid #ccc;border-radius:6px;padding:8px;break-inside:avoid}
.card img{display:block;width:200px;height:200px;margin:0 auto 4px;image-rendering:auto}
.card h3{margin:0 0 4px;font-size:1.05em}.score{font-weight:600}
a{color:#0645ad}.muted{color:#666;font-size:.9em}
@media print{.cards{grid-template-columns:repeat(3,1fr)}a{color:inherit}}
"""


def _e(value: object) -> str:
    """HTML-escaped text of any value (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def page_head(title: str, extra_css: str = "") -> list[str]:
    """The start of a self-contained page (up to its ``<h1>``): inline style, no script, no network."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network even by accident: the page may only use what is inside it (data: images, inline style).
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">",
        f"<title>{_e(title)}</title><style>{PAGE_CSS}{extra_css}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]


def map_links(lat: float, lon: float) -> dict[str, str]:
    """Links that open a position in a map app: ``geo`` (RFC 5870, phones), ``osm`` and ``google`` (browsers)."""
    la, lo = f"{lat:.7f}", f"{lon:.7f}"
    return {
        "geo": f"geo:{la},{lo}",
        "osm": f"https://www.openstreetmap.org/?mlat={la}&mlon={lo}#map=19/{la}/{lo}",
        "google": f"https://www.google.com/maps/search/?api=1&query={la},{lo}",
    }


def _links_html(p: DetectedPlot) -> str:
    links = map_links(p.centroid_lat, p.centroid_lon)
    return (
        f'<a href="{_e(links["geo"])}">map app</a> · <a href="{_e(links["osm"])}">OpenStreetMap</a> · '
        f'<a href="{_e(links["google"])}">Google Maps</a>'
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "unknown" if value is None else f"{value:.{digits}f}"


def _run_section(record: Mapping[str, Any], plots: Sequence[DetectedPlot], source_name: str) -> list[str]:
    model = record.get("model") or {}
    point = record.get("operating_point") or {}
    area = sum(p.area_m2 for p in plots)
    rows = [
        ("Orthomosaic", source_name),
        ("Created (UTC)", record.get("created_utc", "")),
        ("Model", f"{model.get('name', '')} ({model.get('stages', 1)}-stage)"),
        ("Plots", f"{len(plots)}, {area:.1f} m² in all"),
    ]
    if point:
        rows.append(
            (
                "Operating point",
                f"sensitivity {point.get('sensitivity')}, threshold {_fmt(point.get('threshold'))} "
                f"on the {point.get('applies_to')}; on the model's validation scenes: "
                f"precision {_fmt(point.get('precision'))}, recall {_fmt(point.get('recall'))}",
            )
        )
        if point.get("note"):
            rows.append(("How it was chosen", point["note"]))
    rows.append(("Score", record.get("score", "")))
    quality = record.get("quality") or {}
    if quality:  # the quality gates' verdict: a warning here means plots may have been missed
        verdict = quality.get("verdict", "") + (" (run anyway: --force)" if quality.get("forced") else "")
        rows.append(("Input quality", "; ".join([verdict, *quality.get("reasons", [])])))
    out = ["<h2>This run</h2>", "<dl>"]
    out += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows]
    out.append("</dl>")
    out.append(
        '<p class="warn">Every plot here is a suspicion to check on the ground or on the imagery, not a finding. '
        "Precision says what share of flagged plots were poppy on the model's validation scenes; recall, what "
        "share of poppy plots it flagged there. Real flights may differ.</p>"
    )
    return out


def build_report(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    plots: Sequence[DetectedPlot],
    record: Mapping[str, Any],
    *,
    source_name: str,
    max_chips: int = REPORT_MAX_CHIPS,
    overview_side: int = REPORT_OVERVIEW_SIDE,
) -> str:
    """The report page as a string (see the module docstring).

    Args:
        ds: The orthomosaic, open (the overview and chips are read from it by windows).
        info: Its inspection record.
        plots: The plots, geometries in the raster's CRS.
        record: The run record (``STEM.summary.json``): model, operating point and what the score means.
        source_name: The orthomosaic's file name, shown as the title.
        max_chips: Cards (with image chips) for at most this many plots, the highest-scoring ones.
        overview_side: The overview's longer side in pixels.

    Returns:
        The HTML document.
    """
    ranked = sorted(plots, key=lambda p: (-p.score, p.plot_id))
    title = f"Suspected poppy plots: {source_name}"
    out = page_head(title)
    out += _run_section(record, plots, source_name)

    overview = encode_jpeg(render_preview(ds, info, plots, max_side=overview_side), _OVERVIEW_QUALITY)
    out += [
        "<h2>Overview</h2>",
        f'<img class="overview" src="{_data_uri(overview)}" alt="{_e(f"Overview of {source_name}")}">',
        '<p class="muted">Plots outlined in yellow, labelled by plot ID; grey is outside the orthomosaic.</p>',
    ]

    out.append(f"<h2>Plots by score ({len(ranked)})</h2>")
    if ranked:
        out.append(
            "<table><thead><tr><th>Plot</th><th>Score</th><th>Area (m²)</th><th>Latitude</th><th>Longitude</th>"
            '<th class="links">Open in</th></tr></thead><tbody>'
        )
        carded = {p.plot_id for p in ranked[:max_chips]}
        for p in ranked:
            name = f'<a href="#{_e(p.plot_id)}">{_e(p.plot_id)}</a>' if p.plot_id in carded else _e(p.plot_id)
            out.append(
                f"<tr><td>{name}</td><td>{p.score:.2f}</td><td>{p.area_m2:.1f}</td><td>{p.centroid_lat:.6f}</td>"
                f'<td>{p.centroid_lon:.6f}</td><td class="links">{_links_html(p)}</td></tr>'
            )
        out.append("</tbody></table>")
    else:
        out.append("<p>No plot was found in this orthomosaic at this operating point.</p>")

    if ranked:
        shown = ranked[:max_chips]
        out.append("<h2>Plot images</h2>")
        if len(ranked) > len(shown):
            out.append(
                f'<p class="warn">Images of the {len(shown)} highest-scoring plots of {len(ranked)}, to keep this '
                "page small; the others are in the table above (and in the chips folder, when it was written).</p>"
            )
        out.append('<div class="cards">')
        for p in shown:
            chip = _data_uri(encode_jpeg(render_chip(ds, info, p), _CHIP_QUALITY))
            out.append(
                f'<div class="card" id="{_e(p.plot_id)}"><h3>{_e(p.plot_id)}</h3>'
                f'<img src="{chip}" alt="{_e(f"Plot {p.plot_id}, outlined")}" width="200" height="200">'
                f'<div><span class="score">score {p.score:.2f}</span> · {p.area_m2:.1f} m²</div>'
                f"<div>{p.centroid_lat:.6f}, {p.centroid_lon:.6f}</div><div>{_links_html(p)}</div></div>"
            )
        out.append("</div>")
    out.append(f'<p class="muted">{_e(record.get("input", source_name))}</p></body></html>')
    return "\n".join(out) + "\n"


def write_report(
    path: Path,
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    plots: Sequence[DetectedPlot],
    record: Mapping[str, Any],
    *,
    source_name: str,
    max_chips: int = REPORT_MAX_CHIPS,
) -> Path:
    """Write :func:`build_report`'s page to ``path`` (aside, then renamed). The caller checks for an existing file."""
    page = build_report(ds, info, plots, record, source_name=source_name, max_chips=max_chips)
    with write_aside(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
