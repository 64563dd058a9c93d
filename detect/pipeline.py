"""One input, end to end: probability raster, plots, and every output file.

``infer.py`` parses the command line and calls :func:`find_inputs`, :func:`prepare` and :func:`run_one`; the
same calls serve scripts and notebooks. All checks a user can fail (unreadable or ungeoreferenced rasters,
outputs that already exist, clashing names) happen in :func:`prepare`, before any inference, so a batch never
stops halfway through because of a problem that was visible at the start.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detect.errors import InputError
from detect.export import (
    ALL_FORMATS,
    check_outputs,
    output_paths,
    software_versions,
    write_csv,
    write_geojson,
    write_gpkg,
    write_kml,
    write_preview,
    write_summary,
)
from detect.predict import predict_raster
from detect.raster import inspect_raster, open_raster
from detect.vectorize import VectorParams, vectorize
from models.checkpoint import ModelSpec, file_sha256

__all__ = ["RASTER_SUFFIXES", "RunOptions", "RunResult", "find_inputs", "prepare", "run_one"]

# Raster files picked up from a folder; anything else GDAL reads can still be named directly.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
_OWN_OUTPUT_SUFFIXES = (".prob.tif",)  # our own outputs, skipped if the output folder is inside an input folder


@dataclass(frozen=True)
class RunOptions:
    """Settings for a run, one per command-line flag.

    Attributes:
        out_dir: Output folder (created if missing).
        threshold: Probability threshold; ``None`` takes the model's own (chosen on validation).
        min_area_m2: Smallest plot kept, in square metres.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: Tiles per forward pass.
        tile: Tile size in model pixels; ``None`` takes the model's.
        overlap: Tile overlap in model pixels; ``None`` takes an eighth of the tile.
        tta: Test-time augmentation (four passes).
        formats: Outputs to write (see :data:`detect.export.ALL_FORMATS`); the summary is always written.
        overwrite: Replace existing outputs.
        progress: Show progress bars.
    """

    out_dir: Path
    threshold: float | None = None
    min_area_m2: float = 1.0
    device: str = "auto"
    batch_size: int = 8
    tile: int | None = None
    overlap: int | None = None
    tta: bool = False
    formats: tuple[str, ...] = ALL_FORMATS
    overwrite: bool = False
    progress: bool = True


@dataclass
class RunResult:
    """What one input produced.

    Attributes:
        input: The input raster.
        outputs: Output file per format (``summary`` included).
        plot_count: Plots found.
        flagged_area_m2: Their summed geodesic area.
        summary: The record written to ``STEM.summary.json``.
    """

    input: Path
    outputs: dict[str, Path]
    plot_count: int
    flagged_area_m2: float
    summary: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """The one-line report for the console."""
        return (
            f"{self.input.name}: {self.plot_count} plot(s), {self.flagged_area_m2:.1f} m2 flagged "
            f"-> {self.outputs['summary'].parent}"
        )


def find_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand the INPUT arguments: files as given, folders to the rasters directly inside them (sorted).

    Raises:
        InputError: If a path does not exist or a folder holds no raster.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            rasters = sorted(
                f
                for f in p.iterdir()
                if f.is_file()
                and f.suffix.lower() in RASTER_SUFFIXES
                and not f.name.lower().endswith(_OWN_OUTPUT_SUFFIXES)
            )
            if not rasters:
                raise InputError(f"{p}: folder holds no raster ({', '.join(RASTER_SUFFIXES)}); give a GeoTIFF or VRT")
            found.extend(rasters)
        elif p.exists():
            found.append(p)
        else:
            raise InputError(f"{p}: no such file or folder; check the path")
    return found


def prepare(inputs: Sequence[Path], options: RunOptions) -> dict[Path, dict[str, Path]]:
    """Check every input and output before any inference.

    Opens and inspects each raster (georeferencing, bands, pixel type), refuses two inputs with the same name
    (their outputs would collide) and existing outputs without ``overwrite``.

    Returns:
        Output paths per input.

    Raises:
        InputError: Naming the file at fault and the fix.
    """
    plans: dict[Path, dict[str, Path]] = {}
    stems: dict[str, Path] = {}
    for path in inputs:
        with open_raster(path) as ds:
            inspect_raster(ds)
        stem = path.stem
        if stem in stems:
            raise InputError(
                f"{path} and {stems[stem]} would write the same outputs ({stem}.*); rename one or run them "
                "with different --out folders"
            )
        stems[stem] = path
        paths = output_paths(options.out_dir, stem, options.formats)
        check_outputs(paths.values(), options.overwrite)
        plans[path] = paths
    return plans


def run_one(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec,
    options: RunOptions,
    *,
    weights_path: str | Path | None = None,
    paths: dict[str, Path] | None = None,
) -> RunResult:
    """Detect plots in one orthomosaic and write its outputs.

    Args:
        path: The orthomosaic.
        model: The network (from :func:`models.checkpoint.load_checkpoint`).
        spec: Its spec.
        options: Run settings.
        weights_path: The weights file, recorded in the summary.
        paths: Output paths from :func:`prepare`; computed (and checked) here when ``None``.

    Returns:
        A :class:`RunResult`.
    """
    t_start = time.perf_counter()
    path = Path(path)
    if paths is None:
        paths = prepare([path], options)[path]
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threshold = spec.threshold if options.threshold is None else options.threshold
    params = VectorParams(threshold=threshold, min_area_m2=options.min_area_m2)
    params.check()  # before the long part
    timings: dict[str, float] = {}

    keep_prob = "prob" in options.formats
    if keep_prob:
        prob_path = paths["prob"]
    else:
        # Next to the outputs (same disk, which has room for them), deleted once the plots are out.
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".prob.tif", dir=out_dir)
        os.close(fd)
        prob_path = Path(name)
    try:
        with open_raster(path) as ds:
            info = inspect_raster(ds)
            pred = predict_raster(
                ds,
                model,
                spec,
                prob_path=prob_path,
                tile=options.tile,
                overlap=options.overlap,
                batch_size=options.batch_size,
                device=options.device,
                tta=options.tta,
                progress=options.progress,
                overwrite=options.overwrite or not keep_prob,
            )
            timings["predict"] = pred.timings["total"]

            t0 = time.perf_counter()
            vec = vectorize(prob_path, params, source=path.name, model_name=spec.name)
            timings["vectorize"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            plots = vec.plots
            ow = options.overwrite
            if "geojson" in options.formats:
                write_geojson(paths["geojson"], plots, overwrite=ow)
            if "gpkg" in options.formats:
                write_gpkg(paths["gpkg"], plots, info.crs, overwrite=ow)
            if "kml" in options.formats:
                write_kml(paths["kml"], plots, title=f"Poppy plots: {path.name}", overwrite=ow)
            if "csv" in options.formats:
                write_csv(paths["csv"], plots, overwrite=ow)
            if "preview" in options.formats:
                write_preview(paths["preview"], ds, info, plots, overwrite=ow)
            timings["export"] = time.perf_counter() - t0
    finally:
        if not keep_prob:
            prob_path.unlink(missing_ok=True)

    t0 = time.perf_counter()
    input_sha = file_sha256(path)  # reads the whole file: timed on its own
    timings["hash_input"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    record: dict[str, Any] = {
        "input": str(path.resolve()),
        "input_sha256": input_sha,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": spec.name,
            "arch": spec.arch,
            "sha256": spec.sha256,
            "weights": str(Path(weights_path).resolve()) if weights_path is not None else None,
            "gsd_m": spec.gsd_m,
            "default_threshold": spec.threshold,
        },
        "parameters": {
            **params.to_dict(),
            "tile": pred.tile,
            "overlap": pred.overlap,
            "batch_size": options.batch_size,
            "tta": options.tta,
            "device": pred.device,
            "formats": list(options.formats),
        },
        "raster": {
            "crs": info.crs.to_string(),
            "width": info.width,
            "height": info.height,
            "gsd_m": list(info.gsd_m),
            "model_grid": {"width": pred.grid.width, "height": pred.grid.height, "gsd_m": list(pred.grid.gsd_m)},
        },
        "tiles": {"total": pred.tiles_total, "run": pred.tiles_run, "skipped": pred.tiles_skipped},
        "plots": {
            "count": len(vec.plots),
            "flagged_area_m2": round(vec.total_area_m2, 2),
            "pieces_before_merge": vec.pieces,
            "dropped_below_min_area": vec.dropped_small,
        },
        "timings_s": {
            **{k: round(v, 3) for k, v in timings.items()},
            "predict_detail": {k: round(v, 3) for k, v in pred.timings.items()},
            "vectorize_detail": {k: round(v, 3) for k, v in vec.timings.items()},
        },
        "outputs": {k: v.name for k, v in paths.items()},
        "software": software_versions(),
        "cuda": torch.cuda.get_device_name(torch.device(pred.device)) if pred.device.startswith("cuda") else None,
    }
    write_summary(paths["summary"], record, overwrite=options.overwrite)
    return RunResult(path, paths, len(vec.plots), vec.total_area_m2, record)
