"""The flight summary: one page and one GeoPackage for a batch of orthomosaics (``infer.py`` with several inputs).

A survey flight is often exported as several orthomosaics (one per battery, per field block, per day). After a
batch, ``OUT/flight.report.html`` lists every input in one table: its quality verdict (:mod:`detect.quality`)
with the reasons, whether it ran, its plots and flagged area, the measured time beside the estimate, and a link
to its own field report (``STEM.report.html``). It is self-contained like that report (inline style, no script,
no network): a small map of the flight drawn on the page shows each input's footprint and its plots.
``OUT/flight.gpkg`` holds every input's plots in one layer ``plots`` (with an ``input`` column) and each input's
footprint in a layer ``footprints``, all in EPSG:4326 (orthomosaics of one flight may come in different CRSs;
reprojected with pyproj).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyproj
import shapely
import shapely.geometry

from core.files import write_aside
from detect.export import check_outputs, score_kind, write_flight_gpkg
from detect.pictures import encode_jpeg
from detect.raster import footprint_outline, inspect_raster, open_raster
from detect.report import page_head
from detect.vectorize import DetectedPlot

__all__ = [
    "FLIGHT_GPKG",
    "FLIGHT_REPORT",
    "FlightEntry",
    "check_flight_outputs",
    "flight_entries",
    "flight_paths",
    "write_flight_summary",
]

FLIGHT_REPORT = "flight.report.html"
FLIGHT_GPKG = "flight.gpkg"
_MAP_SIDE = 900  # px, the longer side of the flight map
_COLOURS = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167)]


@dataclass
class FlightEntry:
    """One input of the batch, as the flight summary shows it.

    Attributes:
        path: The input raster.
        stem: Its output name (``STEM.*``).
        status: ``done`` (run now), ``finished earlier`` (``--resume`` skipped it), ``refused`` (quality gates)
            or ``failed``.
        message: Why it was refused or failed (empty otherwise).
        summary: Its ``STEM.summary.json`` record, when it has one.
        quality: Its quality block, when it was measured (from the summary, else from the check).
        plots: The plots this run found (raster CRS); None to read them from ``STEM.geojson``.
    """

    path: Path
    stem: str
    status: str
    message: str = ""
    summary: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None
    plots: list[DetectedPlot] | None = field(default=None, repr=False)


def flight_entries(
    inputs: Sequence[Path],
    stems: Mapping[Path, str],
    out_dir: str | Path,
    done: Sequence[Path],
    checks: Mapping[Path, Any],
    results: Mapping[Path, Any],
    failed: Sequence[tuple[Path, str, int]],
) -> list[FlightEntry]:
    """One :class:`FlightEntry` per input of a batch, in the batch's order.

    Args:
        inputs: Every input of the batch.
        stems: Output name per input.
        out_dir: The output folder (summaries of inputs finished earlier are read from it).
        done: Inputs an earlier run finished (``--resume``).
        checks: :class:`detect.pipeline.InputCheck` per input measured by this run.
        results: :class:`detect.pipeline.RunResult` per input run now.
        failed: ``(path, message, exit code)`` per failed or refused input.
    """
    why = {p: m for p, m, _ in failed}
    entries = []
    for path in inputs:
        stem = stems[path]
        check = checks.get(path)
        quality = check.quality.to_dict() if check is not None else None
        if path in results:
            r = results[path]
            entries.append(FlightEntry(path, stem, "done", "", r.summary, r.summary.get("quality"), r.plots))
        elif path in done:
            summary = _read_summary(Path(out_dir) / f"{stem}.summary.json")
            entries.append(FlightEntry(path, stem, "finished earlier", "", summary, (summary or {}).get("quality")))
        else:
            message = why.get(path, "not run").removeprefix(f"{path}: ")
            if "refused by the quality gates" in message:  # the reasons are in the quality column
                status, message = "refused", "not run (--force runs it)"
            else:
                status = "failed"
            entries.append(FlightEntry(path, stem, status, message, None, quality))
    return entries


def _read_summary(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def flight_paths(out_dir: str | Path, formats: Sequence[str] = ("report", "gpkg")) -> dict[str, Path]:
    """The flight summary's files in ``out_dir``: the page with ``report`` in ``formats``, the GeoPackage with
    ``gpkg`` (the per-input formats chosen with ``--formats`` choose the flight's too)."""
    names = {"report": FLIGHT_REPORT, "gpkg": FLIGHT_GPKG}
    return {k: Path(out_dir) / v for k, v in names.items() if k in formats}


def check_flight_outputs(out_dir: str | Path, formats: Sequence[str], overwrite: bool) -> None:
    """Refuse, before any work, a batch whose flight summary would replace one without ``overwrite``.

    Raises:
        InputError: Naming the file and the flag.
    """
    check_outputs(flight_paths(out_dir, formats).values(), overwrite)


def _to_lonlat(geom: shapely.Geometry, crs: Any) -> shapely.Geometry:
    """``geom`` from ``crs`` to EPSG:4326 longitude/latitude, through pyproj."""
    transformer = pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(str(crs)), "EPSG:4326", always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))


def _entry_plots(entry: FlightEntry, out_dir: Path) -> list[tuple[shapely.Geometry, dict[str, Any]]]:
    """The entry's plots in lon/lat with the flight layer's attributes."""
    model = ((entry.summary or {}).get("model") or {}).get("name", "")
    rows: list[tuple[shapely.Geometry, dict[str, Any]]] = []
    if entry.plots is not None and entry.summary is not None:
        crs = entry.summary["raster"]["crs"]
        for p in entry.plots:
            attrs = {"input": entry.path.name, "plot_id": p.plot_id, "score": round(p.score, 4)}
            attrs.update(score_kind=score_kind(p), area_m2=round(p.area_m2, 2), model=model)
            attrs.update(centroid_lat=round(p.centroid_lat, 7), centroid_lon=round(p.centroid_lon, 7))
            rows.append((_to_lonlat(p.geometry, crs), attrs))
        return rows
    geojson = out_dir / f"{entry.stem}.geojson"
    if entry.summary is None or not geojson.is_file():
        return rows
    for feat in json.loads(geojson.read_text(encoding="utf-8")).get("features", []):
        props = feat.get("properties") or {}
        attrs = {k: props.get(k) for k in ("plot_id", "score", "score_kind", "area_m2", "centroid_lat", "centroid_lon")}
        rows.append((shapely.geometry.shape(feat["geometry"]), {"input": entry.path.name, **attrs, "model": model}))
    return rows


def _footprint(entry: FlightEntry) -> shapely.Geometry | None:
    """The entry's valid footprint in lon/lat, or None when its raster cannot be read."""
    try:
        with open_raster(entry.path) as ds:
            info = inspect_raster(ds)
            return _to_lonlat(footprint_outline(ds, info), info.crs)
    except Exception:  # a refused or failed input may be unreadable: it just has no outline on the map
        return None


def _flight_map(
    footprints: Sequence[tuple[shapely.Geometry, dict[str, Any]]],
    plots: Sequence[tuple[shapely.Geometry, dict[str, Any]]],
) -> bytes | None:
    """A JPEG map of the flight: footprints outlined in one colour per input, plots filled red, north up."""
    geoms = [g for g, _ in footprints if not g.is_empty] + [g for g, _ in plots]
    if not geoms:
        return None
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    kx = math.cos(math.radians((y0 + y1) / 2))  # equirectangular at the flight's latitude: true shapes locally
    w, h = max((x1 - x0) * kx, 1e-9), max(y1 - y0, 1e-9)
    s = (_MAP_SIDE - 40) / max(w, h)
    img = np.full((int(h * s) + 40, int(w * s) + 40, 3), 245, np.uint8)

    def px(g: shapely.Geometry) -> list[np.ndarray]:
        rings = []
        for part in shapely.get_parts(g):
            if isinstance(part, shapely.Polygon):
                xy = np.asarray(part.exterior.coords)
                rings.append(
                    np.column_stack([20 + (xy[:, 0] - x0) * kx * s, 20 + (y1 - xy[:, 1]) * s]).astype(np.int32)
                )
        return rings

    names = sorted({a["input"] for _, a in footprints})
    for g, a in footprints:
        colour = _COLOURS[names.index(a["input"]) % len(_COLOURS)][::-1]  # BGR, as OpenCV draws
        rings = px(g)
        cv2.polylines(img, rings, True, colour, 3, cv2.LINE_AA)
        x, y = np.concatenate(rings).min(axis=0) if rings else (20, 20)
        # Inputs far apart are a few pixels each on a shared map: the name says which is which (kept on the map).
        (tw, _), _ = cv2.getTextSize(a["input"], cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        at = (int(min(x, img.shape[1] - tw - 4)), max(14, int(y) - 6))
        cv2.putText(img, a["input"], at, cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    for g, _ in plots:
        cv2.fillPoly(img, px(g), (40, 40, 220))
        for ring in px(g):  # plots of a few m2 are under a pixel here: a dot so they show
            cv2.circle(img, tuple(int(v) for v in ring.mean(axis=0)), 3, (40, 40, 220), -1)
    return encode_jpeg(img, 85)


def _fmt_s(value: Any) -> str:
    return "" if value is None else f"{float(value):.0f} s"


def _row(entry: FlightEntry, out_dir: Path, count: int, area: float) -> str:
    e = html.escape
    q = entry.quality or {}
    verdict = q.get("verdict", "not measured")
    if q.get("forced"):
        verdict += " (forced)"
    reasons = "; ".join(q.get("reasons") or [])
    report = out_dir / f"{entry.stem}.report.html"
    name = e(entry.path.name)
    link = f'<a href="{e(report.name)}">{name}</a>' if report.is_file() and entry.summary else name
    timings = (entry.summary or {}).get("timings_s") or {}
    estimate = ((entry.summary or {}).get("estimate") or {}).get("predict_s")
    status = e(entry.status) + (f': <span class="muted">{e(entry.message)}</span>' if entry.message else "")
    cells = [
        link,
        f"<b>{e(verdict)}</b>" + (f'<br><span class="muted">{e(reasons)}</span>' if reasons else ""),
        status,
        str(count) if entry.summary else "",
        f"{area:.1f}" if entry.summary else "",
        f"{q['valid_area_m2'] / 1e4:.2f}" if "valid_area_m2" in q else "",
        f"{q['gsd_m'] * 100:.2f}" if "gsd_m" in q else "",
        f"{_fmt_s(timings.get('predict'))} / {_fmt_s(estimate)}" if timings else "",
    ]
    left = (0, 1, 2)  # text columns; numbers stay right-aligned as in the field report
    return (
        "<tr>"
        + "".join(f'<td class="l">{c}</td>' if i in left else f"<td>{c}</td>" for i, c in enumerate(cells))
        + "</tr>"
    )


def write_flight_summary(
    out_dir: str | Path,
    entries: Sequence[FlightEntry],
    *,
    formats: Sequence[str] = ("report", "gpkg"),
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``flight.report.html`` and ``flight.gpkg`` for a batch (see the module docstring).

    Args:
        out_dir: The batch's output folder.
        entries: Every input of the batch, in order.
        formats: The run's ``--formats``: the page is written with ``report``, the GeoPackage with ``gpkg``.
        overwrite: Replace existing flight files.

    Returns:
        The paths written (``report``, ``gpkg``, as chosen).
    """
    out_dir = Path(out_dir)
    paths = flight_paths(out_dir, formats)
    if not paths:
        return paths
    plots: list[tuple[shapely.Geometry, dict[str, Any]]] = []
    footprints: list[tuple[shapely.Geometry, dict[str, Any]]] = []
    rows = []
    total_plots, total_area = 0, 0.0
    for entry in entries:
        mine = _entry_plots(entry, out_dir)
        plots += mine
        count = (
            len(mine) if entry.plots is not None else int(((entry.summary or {}).get("plots") or {}).get("count", 0))
        )
        area = float(((entry.summary or {}).get("plots") or {}).get("flagged_area_m2", 0.0))
        total_plots, total_area = total_plots + count, total_area + area
        outline = _footprint(entry)
        if outline is not None and not outline.is_empty:
            attrs = {"input": entry.path.name, "verdict": (entry.quality or {}).get("verdict", "")}
            attrs.update(status=entry.status, plots=count, flagged_area_m2=round(area, 2))
            footprints.append((outline, attrs))
        rows.append(_row(entry, out_dir, count, area))
    if "gpkg" in paths:
        write_flight_gpkg(paths["gpkg"], plots, footprints, overwrite=overwrite)
    if "report" not in paths:
        return paths

    e = html.escape
    n_run = sum(en.status in ("done", "finished earlier") for en in entries)
    title = f"Flight summary: {len(entries)} orthomosaics"
    picture = _flight_map(footprints, plots)
    out = page_head(title, "th.l,td.l{text-align:left}")
    out += [
        f"<p>{n_run} of {len(entries)} run; {total_plots} plot(s), {total_area:.1f} m² flagged in all. "
        + (
            f"All plots and footprints in one file: <code>{e(FLIGHT_GPKG)}</code> (EPSG:4326)."
            if "gpkg" in paths
            else ""
        )
        + "</p>",
        '<p class="warn">Every plot is a suspicion to check on the ground or on the imagery, not a finding. An '
        "input marked <b>warn</b> ran, but its quality may hide plots; one <b>refused</b> was not run.</p>",
        "<h2>Orthomosaics</h2>",
        '<table><thead><tr><th>Orthomosaic</th><th class="l">Quality</th><th class="l">Status</th><th>Plots</th>'
        "<th>Flagged (m²)</th><th>Valid area (ha)</th><th>GSD (cm)</th><th>Model stage: time / estimate</th></tr>"
        "</thead><tbody>",
        *rows,
        "</tbody></table>",
    ]
    if picture is not None:
        out += [
            "<h2>Map</h2>",
            f'<img class="overview" src="data:image/jpeg;base64,{base64.b64encode(picture).decode("ascii")}" '
            'alt="Map of the flight: footprints and plots">',
            '<p class="muted">North up. Each orthomosaic\'s footprint outlined in its own colour; plots in red.</p>',
        ]
    out.append(f'<p class="muted">{e(str(out_dir.resolve()))}</p></body></html>')
    with write_aside(paths["report"]) as tmp:
        tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
    return paths
