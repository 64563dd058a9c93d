"""One input, end to end: probability raster, plots, and every output file.

:func:`detect_plots` is the one path from an orthomosaic and a model to plots (and, if asked, the probability
raster): ``infer.py`` (through :func:`run_one`), validation and hard-negative mining all call it.
``infer.py`` parses the command line and calls :func:`find_inputs`, :func:`prepare` and :func:`run_one`; the
same calls serve scripts and notebooks. All checks a user can fail (unreadable or ungeoreferenced rasters,
outputs that already exist, clashing names) happen in :func:`prepare`, before any inference, so a batch never
stops halfway through because of a problem that was visible at the start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from torch import nn
from tqdm import tqdm

from core.errors import InputError
from core.files import file_sha256
from detect.export import (
    ALL_FORMATS,
    SUMMARY,
    ExportContext,
    check_outputs,
    output_paths,
    software_versions,
    write_outputs,
    write_summary,
)
from detect.inputs import check_free_space, check_out_dir, finished_before, output_stems, prob_raster_bytes
from detect.judge import OperatingPoint, judge_plots, resolve_operating_point
from detect.predict import (
    MAX_GSD_RATIO,
    MIN_GSD_RATIO,
    PredictResult,
    check_gsd,
    check_model_spec,
    check_tiling,
    footprint_tiles,
    gsd_ratio,
    measure_tile_seconds,
    model_grid,
    predict_raster,
)
from detect.progress import progress_path
from detect.quality import QualityReport, assess_quality
from detect.raster import RasterInfo, check_has_pixels, check_readable, inspect_raster, open_raster
from detect.rasterout import work_path
from detect.vectorize import DetectedPlot, Sweep, VectorizeResult, VectorParams, vectorize, vectorize_sweep
from models.checkpoint import ModelSpec, load_checkpoint
from models.plotnet import JudgeSpec
from models.runtime import for_inference, runtime_name

__all__ = [
    "RASTER_SUFFIXES",
    "Detection",
    "InputCheck",
    "ModelRequest",
    "RunOptions",
    "RunResult",
    "check_input",
    "detect_plots",
    "duration_text",
    "enforce_quality",
    "estimate_record",
    "find_inputs",
    "finished_inputs",
    "gdal_cache_bytes",
    "load_inference_model",
    "prepare",
    "resume_parameters",
    "run_one",
    "run_record",
    "runtime_entry",
    "warm_up",
]

# Raster files picked up from a folder; anything else GDAL reads can still be named directly.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
_OWN_OUTPUT_SUFFIXES = (".prob.tif",)  # our own outputs, skipped if the output folder is inside an input folder
# Bounds of the GDAL block cache during a run (see gdal_cache_bytes): 64 MB keeps small rasters fast, 1 GB is
# GDAL's own default on a ~20 GB station and covers two rows of 512 px tiles of an RGBA mosaic 131000 px
# (3.9 km at 3 cm/px) wide; wider ones re-decode a band of blocks per row of tiles, a small cost.
_CACHE_MIN_BYTES = 64 << 20
_CACHE_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class RunOptions:
    """Settings for a run, one per command-line flag.

    Attributes:
        out_dir: Output folder (created if missing).
        threshold: Threshold given by hand (``--threshold``): of the plot score for a two-stage model, of the
            pixel probability for a one-stage one; ``None`` takes the ``sensitivity`` operating point.
        sensitivity: ``high`` (recall first), ``balanced`` (best F1) or ``low`` (precision first): the operating
            point chosen on the model's validation (see :func:`detect.judge.resolve_operating_point`).
        min_area_m2: Smallest plot kept, in square metres.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: Tiles per forward pass.
        tile: Tile size in model pixels; ``None`` takes the model's.
        overlap: Tile overlap in model pixels; ``None`` takes an eighth of the tile.
        tta: Test-time augmentation (four passes).
        formats: Outputs to write (see :data:`detect.export.ALL_FORMATS`); the summary is always written.
        overwrite: Replace existing outputs.
        progress: Show progress bars.
        allow_gsd_mismatch: Run on rasters much coarser than the model (see
            :func:`detect.predict.check_gsd`) instead of refusing them.
        bands: 1-based band numbers of red, green and blue (``--bands``); ``None`` picks them.
        resume: Inputs an earlier run finished with the same model and parameters are skipped (see
            :func:`resume_parameters`), and outputs of unfinished ones are replaced.
        force: Run inputs the quality gates refuse (:mod:`detect.quality`; a GSD out of range too); the summary
            says so.
    """

    out_dir: Path
    threshold: float | None = None
    sensitivity: str = "balanced"
    min_area_m2: float = 1.0
    device: str = "auto"
    batch_size: int = 8
    tile: int | None = None
    overlap: int | None = None
    tta: bool = False
    formats: tuple[str, ...] = ALL_FORMATS
    overwrite: bool = False
    progress: bool = True
    allow_gsd_mismatch: bool = False
    bands: tuple[int, int, int] | None = None
    resume: bool = False
    force: bool = False


@dataclass(frozen=True)
class ModelRequest:
    """Which network to run and how (``--weights``, ``--runtime``, ``--channels-last``, ``--tile``, ``--onnx``).

    Hashable and small, so that a cluster worker can be sent one and key its cached model on it.

    Attributes:
        weights: Checkpoint path; ``None`` for the shipped model.
        runtime: ``torch`` or ``onnxruntime``.
        channels_last: Run the torch network in channels-last memory format.
        tile: Tile size asked (``--tile``); ``None`` takes the model's.
        onnx: With ``onnxruntime``: a file from ``python -m models.export_onnx``; ``None`` exports in memory.
    """

    weights: str | None = None
    runtime: str = "torch"
    channels_last: bool = False
    tile: int | None = None
    onnx: Path | None = None


def load_inference_model(request: ModelRequest, device: torch.device) -> tuple[nn.Module, ModelSpec]:
    """The checkpoint's network, wrapped for the runtime asked (see :func:`models.runtime.for_inference`).

    Raises:
        InputError: If the runtime and device, or ``onnx`` and the runtime, do not go together, or ``onnx`` is
            missing.
    """
    model, spec = load_checkpoint(request.weights, map_location=device)
    if request.runtime != "torch" and device.type != "cpu":
        raise InputError(f"--runtime {request.runtime} runs on the CPU only: use --device cpu, or --runtime torch")
    if request.onnx is not None and request.runtime != "onnxruntime":
        raise InputError(f"--onnx {request.onnx}: only used with --runtime onnxruntime; add it or drop --onnx")
    if request.onnx is not None and not request.onnx.is_file():
        raise InputError(f"--onnx {request.onnx}: no such file; write it with python -m models.export_onnx")
    model = for_inference(
        model,
        runtime=request.runtime,
        channels_last=request.channels_last,
        tile=request.tile or spec.tile_size,
        in_channels=len(spec.bands),
        onnx_path=request.onnx,
    )
    return model, spec


@dataclass
class InputCheck:
    """An input measured before the run: its quality verdict and the tiles the run will predict.

    Attributes:
        path: The input raster.
        quality: The quality gates' measures and verdict (:func:`detect.quality.assess_quality`).
        tiles: Tiles holding footprint at the run's tile size and overlap (what the run predicts).
    """

    path: Path
    quality: QualityReport
    tiles: int


@dataclass
class RunResult:
    """What one input produced.

    Attributes:
        input: The input raster.
        outputs: Output file per format (``summary`` included).
        plot_count: Plots found.
        flagged_area_m2: Their summed geodesic area.
        summary: The record written to ``STEM.summary.json``.
        plots: The plots written, geometries in the raster's CRS (``summary["raster"]["crs"]``).
    """

    input: Path
    outputs: dict[str, Path]
    plot_count: int
    flagged_area_m2: float
    summary: dict[str, Any] = field(default_factory=dict)
    plots: list[DetectedPlot] = field(default_factory=list)

    def line(self) -> str:
        """The one-line report for the console."""
        summary = self.outputs["summary"]
        stem = summary.name.removesuffix(".summary.json")
        named = f" as {stem}.*" if stem != self.input.stem else ""  # renamed to avoid a clash (output_stems)
        return (
            f"{self.input.name}: {self.plot_count} plot(s), {self.flagged_area_m2:.1f} m2 flagged "
            f"-> {summary.parent}{named}"
        )


@dataclass
class Detection:
    """Plots found in one orthomosaic by :func:`detect_plots`, and how.

    Attributes:
        prediction: The prediction run (model grid, tiles, device, timings). Its ``prob_path`` no longer exists
            when the probability raster was temporary.
        vector: The plots at the parameters' threshold, with vectorising counts and timings; None for a sweep.
        sweep: The plots at each threshold of a sweep; None when one threshold was asked.
        prob_path: The probability raster, when it was asked for; None when it was temporary (now deleted).
        vectorize_s: Seconds spent vectorising.
    """

    prediction: PredictResult
    vector: VectorizeResult | None
    sweep: Sweep | None
    prob_path: Path | None
    vectorize_s: float

    @property
    def result(self) -> VectorizeResult:
        """The vectorising result at the parameters' threshold (one-threshold runs only)."""
        if self.vector is None:
            raise ValueError("a threshold sweep has plots per threshold: use .sweep.plots")
        return self.vector

    @property
    def plots(self) -> list[DetectedPlot]:
        """The plots at the parameters' threshold (one-threshold runs only)."""
        return self.result.plots


def detect_plots(
    raster: rasterio.io.DatasetReader | str | Path,
    model: nn.Module,
    spec: ModelSpec,
    params: VectorParams,
    *,
    thresholds: tuple[float, ...] | None = None,
    prob_path: str | Path | None = None,
    temp_dir: str | Path | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    tta: bool = False,
    progress: bool = False,
    overwrite: bool = False,
    source: str | None = None,
    model_name: str = "",
    bands: tuple[int, int, int] | None = None,
    resume_key: dict[str, Any] | None = None,
    say: Callable[[str], None] | None = None,
    bar: tqdm | None = None,
) -> Detection:
    """Predict an orthomosaic's poppy probability and vectorise it into plots: the one raster -> plots path.

    The probability raster is streamed to disk (:func:`detect.predict.predict_raster`) and vectorised strip by
    strip (:func:`detect.vectorize.vectorize`), so nothing the size of the orthomosaic is held in memory. Unless
    ``prob_path`` names where to keep it, it is written to a uniquely named temporary file (in ``temp_dir``, on
    the same disk as the outputs if the caller wishes) and deleted once the plots are out, also on failure.

    Args:
        raster: The orthomosaic, open or as a path.
        model: The network (its train/eval mode is restored afterwards).
        spec: Its spec (GSD, normalisation, tile size).
        params: Threshold, clean-up and minimum area.
        thresholds: Vectorise at each of these thresholds instead of ``params.threshold`` (validation's sweep,
            ascending; see :func:`detect.vectorize.vectorize_sweep`).
        prob_path: Where to keep the probability raster; None for a temporary one.
        temp_dir: Folder of the temporary probability raster; None for the system's temporary folder.
        tile: Tile size in model pixels; None takes the spec's.
        overlap: Tile overlap in model pixels; None takes an eighth of the tile.
        batch_size: Tiles per forward pass.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        tta: Test-time augmentation.
        progress: Show progress bars.
        overwrite: Replace an existing ``prob_path``.
        source: Input name recorded on every plot; None takes the raster's file name.
        model_name: Model name recorded on every plot.
        bands: 1-based band numbers of red, green and blue (``--bands``); None picks them.
        resume_key: Record progress and resume an interrupted prediction into the kept ``prob_path`` (see
            :func:`detect.predict.predict_raster`); None does neither.
        say: Called with one line when a prediction is resumed or cannot be.
        bar: A batch-wide tqdm bar to advance instead of a bar of this input's own (see
            :func:`detect.predict.predict_raster`).

    Returns:
        A :class:`Detection`.

    Raises:
        InputError: If the raster cannot be used, ``prob_path`` exists without ``overwrite``, or a parameter is
            out of range.
    """
    name = Path(raster.name if isinstance(raster, rasterio.io.DatasetReader) else raster).name
    keep = prob_path is not None
    if prob_path is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(name).stem}.", suffix=".prob.tif", dir=temp_dir)
        os.close(fd)
        prob_path = Path(tmp)
    prob_path = Path(prob_path)
    try:
        pred = predict_raster(
            raster,
            model,
            spec,
            prob_path=prob_path,
            tile=tile,
            overlap=overlap,
            batch_size=batch_size,
            device=device,
            tta=tta,
            progress=progress,
            overwrite=overwrite or not keep,  # a temporary file exists (empty) from mkstemp
            bands=bands,
            resume_key=resume_key if keep else None,
            say=say,
            bar=bar,
        )
        t0 = time.perf_counter()
        source = name if source is None else source
        if thresholds is None:
            vec, sweep = vectorize(prob_path, params, source=source, model_name=model_name), None
        else:
            vec, sweep = None, vectorize_sweep(prob_path, params, thresholds, source=source, model_name=model_name)
        vectorize_s = time.perf_counter() - t0
    finally:
        if not keep:
            prob_path.unlink(missing_ok=True)
    return Detection(pred, vec, sweep, prob_path if keep else None, vectorize_s)


def find_inputs(inputs: Sequence[str | Path], failures: list[tuple[Path, InputError]] | None = None) -> list[Path]:
    """Expand the INPUT arguments: files as given, folders to the rasters directly inside them (sorted).

    Args:
        inputs: The INPUT arguments.
        failures: When given (``--keep-going``), a path that does not exist or a folder without a raster is added
            here with its error and left out, instead of raising.

    Raises:
        InputError: If a path does not exist or a folder holds no raster, and ``failures`` is None.
    """
    found: list[Path] = []
    for item in inputs:
        try:
            found.extend(_expand(Path(item)))
        except InputError as exc:
            if failures is None:
                raise
            failures.append((Path(item), exc))
    # The same file named twice (a shell glob and its folder) is run once.
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]


def _expand(p: Path) -> list[Path]:
    """One INPUT argument: a file as given, a folder to its rasters (see :func:`find_inputs`)."""
    if p.is_dir():
        rasters = sorted(
            f
            for f in p.iterdir()
            if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES and not f.name.lower().endswith(_OWN_OUTPUT_SUFFIXES)
        )
        if not rasters:
            raise InputError(f"{p}: folder holds no raster ({', '.join(RASTER_SUFFIXES)}); give a GeoTIFF or VRT")
        return rasters
    if p.exists():
        return [p]
    raise InputError(f"{p}: no such file or folder; check the path")


def finished_inputs(inputs: Sequence[Path], stems: dict[Path, str], options: RunOptions, spec: ModelSpec) -> list[Path]:
    """The inputs an earlier run into ``options.out_dir`` finished with this model and settings (``--resume``).

    See :func:`detect.inputs.finished_before`; ``stems`` from :func:`detect.inputs.output_stems`.
    """
    wanted = resume_parameters(options, spec)
    return [
        p
        for p in inputs
        if finished_before(p, output_paths(options.out_dir, stems[p], options.formats), spec.sha256, wanted)
    ]


def resume_parameters(options: RunOptions, spec: ModelSpec) -> dict[str, Any]:
    """The settings that must match for ``--resume`` to take an earlier input's outputs as this run's.

    Batch size and device change only speed, so they may differ; everything that changes the plots may not.
    """
    tile = spec.tile_size if options.tile is None else options.tile
    return {
        "threshold_asked": options.threshold,  # --threshold as given; None: the --sensitivity operating point
        "sensitivity": options.sensitivity,
        "min_area_m2": options.min_area_m2,
        "tile": tile,
        "overlap": tile // 8 if options.overlap is None else options.overlap,
        "tta": options.tta,
        "formats": list(options.formats),
        "bands": list(options.bands) if options.bands is not None else None,
    }


def prepare(
    inputs: Sequence[Path],
    options: RunOptions,
    spec: ModelSpec | None = None,
    *,
    warn: Callable[[str], None] | None = None,
    stems: dict[Path, str] | None = None,
) -> dict[Path, dict[str, Path]]:
    """Check every input and output before any inference.

    Checks the output folder (usable, room on its disk), then opens and inspects each raster
    (georeferencing, bands, pixel type, readable to its end, a footprint), refuses rasters far coarser or
    finer than the model (when ``spec`` is given; see :func:`detect.predict.check_gsd`) and existing
    outputs without ``overwrite`` (or ``resume``).

    Args:
        inputs: The rasters, from :func:`find_inputs`.
        options: Run settings.
        spec: The model's spec, for the GSD check; ``None`` skips it.
        warn: Called with a one-line message for each raster accepted despite a GSD mismatch
            (``options.allow_gsd_mismatch``) and for each raster not stored as 8-bit (how it is scaled).
        stems: Output name per input (see :func:`detect.inputs.output_stems`); computed from ``inputs`` when
            ``None``. Pass the whole batch's when preparing inputs one at a time.

    Returns:
        Output paths per input.

    Raises:
        InputError: Naming the file at fault and the fix.
    """
    check_out_dir(options.out_dir)
    if spec is not None:  # flags first: they fail the same way for every input
        check_model_spec(spec)
        check_tiling(spec, options.tile, options.overlap, options.batch_size)
        VectorParams(threshold=spec.threshold, min_area_m2=options.min_area_m2).check()
        if options.threshold is not None and not 0.0 <= options.threshold <= 1.0:
            # Only the range here: with a judge it applies to plot scores, where 0 and 1 are allowed too.
            raise InputError(f"--threshold {options.threshold}: must be between 0 and 1 (e.g. 0.5)")
    plans: dict[Path, dict[str, Path]] = {}
    stems = output_stems(inputs) if stems is None else stems
    prob_bytes: list[int] = []
    work_bytes: list[int] = []
    for path in inputs:
        with open_raster(path) as ds:
            info = inspect_raster(ds, options.bands)
            check_readable(ds, info)
            check_has_pixels(ds, info)
        if info.dtype != "uint8" and warn is not None:
            warn(f"{path}: {info.value_scaling}")  # the user should know how their colours were read
        if spec is not None:
            grid = model_grid(info, spec.gsd_m)
            prob_bytes.append(prob_raster_bytes(grid.height, grid.width))
            work_bytes.append(grid.height * grid.width)
            message = check_gsd(info, spec.gsd_m, allow=options.allow_gsd_mismatch or options.force)
            if message is not None and warn is not None:
                warn(message)
        paths = output_paths(options.out_dir, stems[path], options.formats)
        # --resume replaces what an unfinished run left (no summary yet), never another run's finished results.
        check_outputs(paths.values(), options.overwrite or (options.resume and not paths["summary"].exists()))
        plans[path] = paths
    if prob_bytes:
        # Kept probability rasters add up; a temporary one (no 'prob' in --formats) is deleted after each input,
        # and so is the work file each is made from (a byte a pixel: see detect.rasterout).
        need = sum(prob_bytes) if "prob" in options.formats else max(prob_bytes)
        need += max(work_bytes)
        check_free_space(options.out_dir, need, what="the probability rasters")
    return plans


def check_input(path: str | Path, options: RunOptions, spec: ModelSpec) -> InputCheck:
    """Measure an input's quality and count the tiles its run will predict, reading samples only.

    See :mod:`detect.quality`; the verdict is not enforced here (:func:`enforce_quality` does that).

    Raises:
        InputError: If the raster cannot be used at all (as :func:`prepare` says).
    """
    path = Path(path)
    tile, overlap = check_tiling(spec, options.tile, options.overlap, options.batch_size)
    with open_raster(path) as ds, contextlib.ExitStack() as stack:
        info = inspect_raster(ds, options.bands)
        _bound_gdal_cache(stack, ds, info, spec, options.tile)
        grid = model_grid(info, spec.gsd_m)
        tiles, _ = footprint_tiles(ds, info, grid, tile, overlap)
        report = assess_quality(
            ds,
            info,
            model_gsd_m=spec.gsd_m,
            scale=grid.scale,
            tiles=tiles,
            tile=tile,
            max_gsd_ratio=MAX_GSD_RATIO,
            min_gsd_ratio=MIN_GSD_RATIO,
            allow_gsd=options.allow_gsd_mismatch,
        )
    report.forced = report.verdict == "refuse" and options.force
    return InputCheck(path, report, len(tiles))


def enforce_quality(check: InputCheck) -> None:
    """Refuse to run an input the quality gates refused, unless ``--force`` (then ``quality.forced`` is set).

    Raises:
        InputError: Naming the input, each reason, and the way out.
    """
    q = check.quality
    if q.verdict == "refuse" and not q.forced:
        raise InputError(
            f"{check.path}: refused by the quality gates: {'; '.join(q.reasons)}; check the orthomosaic (or its "
            "export), or pass --force to run it anyway"
        )


def warm_up(path: str | Path, model: nn.Module, spec: ModelSpec, options: RunOptions) -> tuple[float, int]:
    """Seconds per tile of prediction on this machine, from a few tiles of ``path`` through ``model``.

    See :func:`detect.predict.measure_tile_seconds`; times the tiles holding footprint gives the estimate.

    Returns:
        ``(seconds_per_tile, tiles_timed)``.
    """
    tile, overlap = check_tiling(spec, options.tile, options.overlap, options.batch_size)
    with open_raster(path) as ds, contextlib.ExitStack() as stack:
        info = inspect_raster(ds, options.bands)
        _bound_gdal_cache(stack, ds, info, spec, options.tile)
        grid = model_grid(info, spec.gsd_m)
        tiles, _ = footprint_tiles(ds, info, grid, tile, overlap)
        return measure_tile_seconds(
            ds,
            info,
            grid,
            tiles,
            model,
            spec,
            tile=tile,
            batch_size=options.batch_size,
            device=options.device,
            tta=options.tta,
        )


def estimate_record(tiles: int, seconds_per_tile: float, tiles_timed: int) -> dict[str, Any]:
    """The summary's ``estimate`` block: the predicted seconds of the model stage and how they were found."""
    return {
        "predict_s": round(tiles * seconds_per_tile, 2),
        "tiles": tiles,
        "seconds_per_tile": round(seconds_per_tile, 5),
        "warmup_tiles_timed": tiles_timed,
        "covers": "the model stage (timings_s.predict): reading and predicting the tiles that hold footprint",
    }


def duration_text(seconds: float) -> str:
    """``about 40 s``, ``about 3 min``, ``about 2 h 10 min``: an estimate's precision, not more."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min"
    h, m = divmod(round(seconds / 60), 60)
    return f"about {h} h {m} min"


def gdal_cache_bytes(
    ds: rasterio.io.DatasetReader, info: RasterInfo, spec: ModelSpec, tile: int | None = None
) -> int | None:
    """GDAL block cache for one run: enough for two rows of tiles of the source, sized by its WIDTH.

    GDAL's default cache is 5 % of physical memory (1.2 GB on a 24 GB station, 6 GB on a 128 GB server) and
    keeps every block it touches until full. Inference touches each source block about twice (tiles
    overlap) and writes each probability block once, all in row order, so with the default the cache fills
    with blocks that are never needed again, and memory grows with the raster's AREA: measured with
    ``bench/infer.py`` (batch 8, 2 threads), the peak went from 2200 MB at 2048 x 2048 px to 2850 MB at
    10000 x 10000 px. Two rows of tiles of source blocks are all the reuse there is (the overlap with the
    next row of tiles); the probability raster's blocks, once evicted, are simply written. So the cache is
    twice the source rows one row of tiles spans (plus one block row, as tiles do not align with blocks)
    times the raster's width, between 64 MB and 1 GB.

    Returns:
        Bytes, or ``None`` when the user set ``GDAL_CACHEMAX`` in the environment (their choice wins).
    """
    if "GDAL_CACHEMAX" in os.environ:
        return None
    scale_rows = model_grid(info, spec.gsd_m).scale[0]
    tile_rows = (tile or spec.tile_size) * scale_rows
    block_rows = ds.block_shapes[0][0] if ds.block_shapes else 256
    row_bytes = info.width * info.count * np.dtype(info.dtype).itemsize
    need = 2 * (tile_rows + block_rows) * row_bytes
    return int(min(max(need, _CACHE_MIN_BYTES), _CACHE_MAX_BYTES))


def _bound_gdal_cache(stack: contextlib.ExitStack, ds: Any, info: Any, spec: ModelSpec, tile: int | None) -> int | None:
    """Hold GDAL's block cache to :func:`gdal_cache_bytes` while ``stack`` is open, and return that size.

    Every pass over an input needs it, not only the prediction: the quality gates' and the footprint's decimated
    reads of a raster without overviews touch every block, and with GDAL's default cache (5 % of memory) they
    alone raised the peak to 2.2 GB on a 20,000 px scene before its first tile (``bench/infer.py``, 2026-12-08).
    """
    cache_bytes = gdal_cache_bytes(ds, info, spec, tile)
    if cache_bytes is not None:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=cache_bytes))  # bytes: rasterio sets it directly
    return cache_bytes


def run_one(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec,
    options: RunOptions,
    *,
    weights_path: str | Path | None = None,
    paths: dict[str, Path] | None = None,
    judge: tuple[nn.Module, JudgeSpec] | None = None,
    say: Callable[[str], None] | None = None,
    check: InputCheck | None = None,
    estimate: dict[str, Any] | None = None,
    bar: tqdm | None = None,
) -> RunResult:
    """Detect plots in one orthomosaic and write its outputs.

    An input interrupted during an earlier run into the same folder (killed, or Ctrl-C) continues from the last
    row of tiles that run finished, when its input, model and settings are the same (see
    :func:`detect.predict.predict_raster`); the outputs are byte for byte those of an uninterrupted run.

    Stages: :func:`detect_plots` (the first stage); with a judge, :func:`detect.judge.judge_plots` over its plots
    at full resolution; the run record (:func:`run_record`); every chosen output from the table
    :data:`detect.export.FORMATS`; the timings into the record, and the summary, last.

    Args:
        path: The orthomosaic.
        model: The network (from :func:`models.checkpoint.load_checkpoint`).
        spec: Its spec.
        options: Run settings.
        weights_path: The weights file, recorded in the summary.
        paths: Output paths from :func:`prepare`; computed (and checked) here when ``None``.
        judge: The second stage from :func:`models.checkpoint.load_judge`, or None for a one-stage model.
        say: Called with one line when the prediction is resumed, or cannot be and why.
        check: The input's quality check (:func:`check_input`), stored in the summary's ``quality`` block;
            measured here when None. A refused input is not run unless ``options.force``.
        estimate: The run-time estimate (:func:`estimate_record`), stored in the summary beside the timings.
        bar: A batch-wide tqdm bar to advance (see :func:`detect.predict.predict_raster`).

    Returns:
        A :class:`RunResult`.

    Raises:
        InputError: If the input cannot be used, or the quality gates refuse it without ``options.force``.
    """
    path = Path(path)
    if paths is None:
        paths = prepare([path], options, spec)[path]
    if check is None:
        check = check_input(path, options, spec)
    enforce_quality(check)
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Everything is written into a hidden folder inside --out and renamed into place at the very end, so a
    # failed or killed run adds nothing to --out but this folder. The next run on the input keeps only the
    # probability work file and its resume record from it (to continue where the killed run stopped).
    stem = paths["summary"].name.removesuffix(".summary.json")
    stage = out_dir / f".{stem}.partial"
    _clear_stage(stage, keep=_resume_files(stage / f"{stem}.prob.tif"))
    keep_stage = False
    try:
        staged = {k: stage / p.name for k, p in paths.items()}
        extra = {"quality": check.quality.to_dict(), "estimate": estimate}
        result = _run_staged(path, model, spec, options, weights_path, staged, judge, say, extra, bar)
        _publish(staged, paths, overwrite=options.overwrite or options.resume)
    except KeyboardInterrupt:
        keep_stage = progress_path(stage / f"{stem}.prob.tif").exists()  # Ctrl-C: the next run continues
        raise
    finally:
        if not keep_stage:
            shutil.rmtree(stage, ignore_errors=True)
    result.outputs = paths
    return result


def _resume_files(prob_path: Path) -> tuple[Path, Path]:
    """The files of an interrupted prediction into ``prob_path`` that a later run resumes from."""
    return progress_path(prob_path), work_path(prob_path)


def _clear_stage(stage: Path, keep: Sequence[Path]) -> None:
    """Empty (or make) the staging folder, keeping the files ``keep``."""
    if stage.is_dir():
        for p in stage.iterdir():
            if p not in keep:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
    elif stage.exists() or stage.is_symlink():
        stage.unlink()
    stage.mkdir(exist_ok=True)


def _publish(staged: dict[str, Path], final: dict[str, Path], *, overwrite: bool) -> None:
    """Rename finished outputs into place, the summary last (its presence means the input is done)."""
    check_outputs(final.values(), overwrite)  # again: another process may have written them meanwhile
    for key in sorted(staged, key=lambda k: k == "summary"):
        if staged[key].exists():
            if final[key].is_dir():  # a folder output (STEM.chips): os.replace cannot replace a non-empty folder
                shutil.rmtree(final[key])
            os.replace(staged[key], final[key])


def _run_staged(
    path: Path,
    model: nn.Module,
    spec: ModelSpec,
    options: RunOptions,
    weights_path: str | Path | None,
    paths: dict[str, Path],
    judge: tuple[nn.Module, JudgeSpec] | None,
    say: Callable[[str], None] | None = None,
    extra: dict[str, Any] | None = None,
    bar: tqdm | None = None,
) -> RunResult:
    """:func:`run_one`'s work, writing every output to ``paths`` (in the staging folder).

    ``extra`` holds summary blocks measured before the run (``quality``, ``estimate``).
    """
    t_start = time.perf_counter()
    point = resolve_operating_point(spec, judge[1] if judge else None, options.sensitivity, options.threshold)
    # With a judge the first stage proposes at its own recall-first threshold and the point applies to plot scores.
    threshold = spec.threshold if judge else point.threshold
    params = VectorParams(threshold=threshold, min_area_m2=options.min_area_m2)
    params.check()  # before the long part
    options = dataclasses.replace(options, overwrite=True)  # the staging folder is ours alone
    stage = paths["summary"].parent
    t0 = time.perf_counter()
    # Hashed first, because an interrupted prediction resumes only on the very same input (also the summary's).
    input_sha = file_sha256(path)  # reads the whole file: timed on its own
    hash_s = time.perf_counter() - t0

    with open_raster(path) as ds, contextlib.ExitStack() as stack:
        info = inspect_raster(ds, options.bands)
        # Again here, for callers that pass ``paths`` from a prepare() without the spec.
        check_gsd(info, spec.gsd_m, allow=options.allow_gsd_mismatch or options.force)
        cache_bytes = _bound_gdal_cache(stack, ds, info, spec, options.tile)
        det = detect_plots(
            ds,
            model,
            spec,
            params,
            # Without the prob output too, in the staging folder (same disk, which has room for it), under a fixed
            # name so that a rerun finds it; not published, and deleted with the folder.
            prob_path=paths.get("prob", stage / (paths["summary"].name.removesuffix(".summary.json") + ".prob.tif")),
            tile=options.tile,
            overlap=options.overlap,
            batch_size=options.batch_size,
            device=options.device,
            tta=options.tta,
            progress=options.progress,
            overwrite=options.overwrite,
            source=path.name,
            model_name=spec.name,
            bands=options.bands,
            resume_key={"input_sha256": input_sha, "model_sha256": spec.sha256, **runtime_entry(model)},
            say=say,
            bar=bar,
        )
        plots, judge_s = det.plots, 0.0
        if judge is not None:
            t0 = time.perf_counter()
            plots = judge_plots(ds, info, plots, judge[0], judge[1], point.threshold, device=det.prediction.device)
            judge_s = time.perf_counter() - t0
        record = run_record(
            path, input_sha, spec, weights_path, options, info, det, cache_bytes, paths,
            plots=plots, point=point, judge=judge[1] if judge else None, model=model,
        )  # fmt: skip
        record.update(extra or {})  # before the outputs: the report shows the quality verdict

        t0 = time.perf_counter()
        ctx = ExportContext(source=path, ds=ds, info=info, plots=plots, record=record, overwrite=options.overwrite)
        write_outputs(paths, options.formats, ctx)
        export_s = time.perf_counter() - t0

    timings = {
        "predict": det.prediction.timings["total"],
        "vectorize": det.vectorize_s,
        "judge": judge_s,
        "export": export_s,
        "hash_input": hash_s,
        "total": time.perf_counter() - t_start,
    }
    record["timings_s"] = {
        **{k: round(v, 3) for k, v in timings.items()},
        "predict_detail": {k: round(v, 3) for k, v in det.prediction.timings.items()},
        "vectorize_detail": {k: round(v, 3) for k, v in det.result.timings.items()},
    }
    write_summary(paths[SUMMARY.name], record, overwrite=options.overwrite)  # last: it marks a finished input
    return RunResult(path, paths, len(plots), sum(p.area_m2 for p in plots), record, list(plots))


def runtime_entry(model: nn.Module | None) -> dict[str, str]:
    """``{"runtime": ...}`` for a network wrapped by :func:`models.runtime.for_inference`, ``{}`` for plain PyTorch.

    Absent for the default, so default outputs stay byte-identical to those of earlier versions; present
    otherwise, so the summary says what ran and an interrupted run is resumed only by the same runtime (their
    probabilities differ in the last bits).
    """
    name = runtime_name(model) if model is not None else "torch"
    return {} if name == "torch" else {"runtime": name}


def run_record(
    path: Path,
    input_sha: str,
    spec: ModelSpec,
    weights_path: str | Path | None,
    options: RunOptions,
    info: RasterInfo,
    det: Detection,
    cache_bytes: int | None,
    paths: dict[str, Path],
    *,
    plots: Sequence[DetectedPlot] | None = None,
    point: OperatingPoint | None = None,
    judge: JudgeSpec | None = None,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """The run record of one input (``STEM.summary.json``): what ran on what, with which settings and result.

    Built before the outputs are written, so every writer can use it; ``timings_s`` is left empty here and
    filled in once the outputs are out. ``plots`` are the plots written (the judge's, for a two-stage model;
    the first stage's when None), ``point`` the operating point they were chosen at, ``model`` the network that
    ran (its runtime is recorded when it is not plain PyTorch).
    """
    pred, vec = det.prediction, det.result
    plots = vec.plots if plots is None else plots
    return {
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
            "stages": 2 if judge is not None else 1,
            "judge": None if judge is None else {"arch": judge.arch, "gsd_m": judge.gsd_m, "chip_px": judge.chip_px},
        },
        "operating_point": None if point is None else point.to_dict(),
        "score": (
            "the second stage's calibrated probability that the plot is poppy"
            if judge is not None
            else "the mean poppy probability of the plot's pixels (one-stage model, not calibrated)"
        ),
        "parameters": {
            **vec.params.to_dict(),
            "tile": pred.tile,
            "overlap": pred.overlap,
            "batch_size": options.batch_size,
            "tta": options.tta,
            "device": pred.device,
            "formats": list(options.formats),
            "bands": list(options.bands) if options.bands is not None else None,
            "threshold_asked": options.threshold,
            "sensitivity": options.sensitivity,
            "gdal_cachemax_mb": round(cache_bytes / 2**20) if cache_bytes is not None else "environment",
            **runtime_entry(model),
        },
        "raster": {
            "crs": info.crs.to_string(),
            "width": info.width,
            "height": info.height,
            "gsd_m": list(info.gsd_m),
            "gsd_ratio_to_model": round(gsd_ratio(info, spec.gsd_m), 3),
            "bands_rgb": list(info.rgb_bands),
            "value_range": list(info.value_range),
            "value_scaling": info.value_scaling,
            "model_grid": {"width": pred.grid.width, "height": pred.grid.height, "gsd_m": list(pred.grid.gsd_m)},
        },
        "tiles": {
            "total": pred.tiles_total,
            "run": pred.tiles_run,  # by this run: fewer when it resumed an interrupted one
            "skipped": pred.tiles_skipped,
            "resumed_from_row": pred.resumed_from_row,
            "taken_from_earlier_run": pred.tiles_resumed,
        },
        "plots": {
            "count": len(plots),
            "flagged_area_m2": round(sum(p.area_m2 for p in plots), 2),
            "proposed_by_first_stage": len(vec.plots),
            "pieces_before_merge": vec.pieces,
            "dropped_below_min_area": vec.dropped_small,
        },
        "timings_s": {},  # filled in by run_one once every output is written
        "outputs": {k: v.name for k, v in paths.items()},
        "software": software_versions(),
        "cuda": torch.cuda.get_device_name(torch.device(pred.device)) if pred.device.startswith("cuda") else None,
    }
