"""Sliding-window prediction over a whole orthomosaic, streamed to a probability raster.

The orthomosaic is read tile by tile, resampled on the fly to the model's ground sample distance (GSD): a tile
of ``tile x tile`` model pixels covers ``tile * model_gsd / source_gsd`` source pixels, read with
``read_window(..., out_shape=(tile, tile))``. The model grid shares the input's CRS; its transform is the
input's transform scaled by the source-pixels-per-model-pixel factor, so the probability raster overlays the
orthomosaic exactly.

Tiles wholly outside the valid footprint (judged on a coarse, decimated read of the mask) are skipped. A
reader thread fills a small queue of batches while the model runs, so disk I/O and decoding overlap compute.
Overlapping tile predictions are blended with :func:`detect.tiling.blend_weights` in row *strips*: the
accumulator is one row of tiles high and the raster wide, and rows are written out as soon as no later tile
can touch them. Memory is therefore ``O(tile x width)``, never the size of the orthomosaic.

:func:`predict_raster` is the one entry point, used by ``infer.py`` and by training's validation on whole
orthomosaics.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.windows import Window
from torch import nn
from tqdm import tqdm

from core.errors import InputError
from detect.progress import progress_path, read_progress, write_progress
from detect.raster import RasterInfo, inspect_raster, open_raster, read_footprint, read_window
from detect.rasterout import ProbRasterWriter, work_path
from detect.tiling import (
    blend_weights,
    model_grid_shape,
    model_to_source_window,
    resume_start,
    tile_starts,
    window_touches_footprint,
)
from models.checkpoint import ModelSpec, normalise, poppy_probability

__all__ = [
    "MAX_GSD_RATIO",
    "ModelGrid",
    "PredictResult",
    "autocast_context",
    "check_gsd",
    "check_model_spec",
    "check_tiling",
    "coarse_footprint",
    "footprint_tiles",
    "gsd_ratio",
    "measure_tile_seconds",
    "model_grid",
    "predict_batch",
    "predict_raster",
    "resolve_device",
]

SNAP_SCALE = 0.01  # a source GSD within 1 % of the model's is read as is: resampling by 1.005 only blurs
MIN_TILE = 32  # below this a tile holds too little context for the network to judge a plot
# A source more than 3x coarser than the model is upsampled 9x+ in area: the network then sees blurred blobs
# where it learned leaves and flowers (a 10 cm flower is ~3 px at 3 cm/px, well under one pixel at 10 cm/px),
# so its scores mean little. Up to 3x it still sees canopy colour and texture, which is what carries detection
# above ~3 cm/px (poppy-facts.md, "Imaging"). Finer sources are only downsampled and are always fine.
MAX_GSD_RATIO = 3.0
# A source 20x finer than the model (1.5 mm/px against 3 cm/px) is finer than any drone survey flies: almost
# always a CRS in the wrong units (feet read as metres is 3x; millimetres or a local grid much more). It would
# also read 400 source pixels per model pixel. Refused like a too-coarse one, for the same flag to override.
MIN_GSD_RATIO = 1 / 20
FOOTPRINT_MAX_SIDE = 2048  # longest side of the coarse footprint read; bounds its cost on huge rasters
_QUEUE_BATCHES = 3  # batches read ahead: enough to hide I/O jitter, small enough to bound memory
# Warm-up of the run-time estimate: one batch untimed (thread pools, CUDA context and kernels, the allocator all
# start on the first call), then this many timed. Two batches of single tiles on a CPU cost ~0.5 s with the
# shipped model, against minutes for a flight.
WARMUP_TIMED_BATCHES = 2


@dataclass(frozen=True)
class ModelGrid:
    """The input raster's extent on a grid at the model's GSD.

    Attributes:
        height: Rows in model pixels.
        width: Columns in model pixels.
        crs: The input's CRS.
        transform: Model pixel to CRS coordinates: ``source_transform * Affine.scale(sx, sy)``.
        scale: Source pixels per model pixel ``(rows, cols)``.
        gsd_m: Ground size of a model pixel in metres ``(row, col)``.
    """

    height: int
    width: int
    crs: CRS
    transform: Affine
    scale: tuple[float, float]
    gsd_m: tuple[float, float]


@dataclass
class PredictResult:
    """What :func:`predict_raster` produced.

    Attributes:
        prob_path: The probability GeoTIFF (``uint8``, see :mod:`detect.rasterout`) at the model's GSD.
        grid: Its grid (size, CRS, transform, GSD).
        tile: Tile size used, in model pixels.
        overlap: Overlap used, in model pixels.
        tiles_total: Tiles in the full grid.
        tiles_run: Tiles passed through the model in this call.
        tiles_skipped: Tiles skipped as wholly outside the footprint.
        tiles_resumed: Tiles not run again because an interrupted earlier call had finished their rows.
        resumed_from_row: Model rows taken from that earlier call (0 when it started from the top).
        device: Device the model ran on.
        tta: Whether test-time augmentation was used.
        timings: Seconds per stage: ``footprint``, ``read`` (reader thread), ``model``, ``blend_write``,
            ``total``.
    """

    prob_path: Path
    grid: ModelGrid
    tile: int
    overlap: int
    tiles_total: int
    tiles_run: int
    tiles_skipped: int
    device: str
    tta: bool
    timings: dict[str, float] = field(default_factory=dict)
    tiles_resumed: int = 0
    resumed_from_row: int = 0


def resolve_device(name: str | torch.device) -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a device that exists here.

    Raises:
        InputError: If CUDA is asked for but not available, or the name is unknown.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
        return torch.device(name)
    raise InputError(f"--device {name}: unknown device; use auto, cpu or cuda")


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (bfloat16 where supported, else float16); a no-op context on CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def model_grid(info: RasterInfo, model_gsd_m: float) -> ModelGrid:
    """The model-GSD grid over a raster.

    Args:
        info: The raster's description.
        model_gsd_m: The model's GSD in metres per pixel.

    Returns:
        The grid. Each axis is scaled by ``model_gsd / source_gsd`` (the source GSD is geodesic, so degrees
        and Web Mercator rasters are resampled to true ground size); a factor within 1 % of 1 is snapped to 1.
    """
    if not model_gsd_m > 0:
        raise InputError(f"model GSD {model_gsd_m} m is not positive; the checkpoint is damaged")
    scale = []
    for g in info.gsd_m:
        s = model_gsd_m / g
        scale.append(1.0 if abs(s - 1.0) < SNAP_SCALE else s)
    sy, sx = scale
    height, width = model_grid_shape(info.height, info.width, (sy, sx))
    transform = info.transform * Affine.scale(sx, sy)
    gsd = (info.gsd_m[0] * sy, info.gsd_m[1] * sx)
    return ModelGrid(height, width, info.crs, transform, (sy, sx), gsd)


def gsd_ratio(info: RasterInfo, model_gsd_m: float) -> float:
    """How many times coarser the raster's pixels are than the model's (coarser axis; < 1 means finer)."""
    return max(info.gsd_m) / model_gsd_m


def check_gsd(
    info: RasterInfo, model_gsd_m: float, *, allow: bool = False, max_ratio: float = MAX_GSD_RATIO
) -> str | None:
    """Refuse a raster much coarser than the model, rather than upsample it silently.

    Args:
        info: The raster's description.
        model_gsd_m: The model's GSD in metres per pixel.
        allow: Run anyway (``--allow-gsd-mismatch``): the problem is returned as a warning instead.
        max_ratio: Largest accepted ``source GSD / model GSD``.

    Returns:
        ``None`` when the GSD is fine; with ``allow``, a one-line warning to show the user.

    Raises:
        InputError: If the raster is more than ``max_ratio`` times coarser than the model and ``allow`` is
            False; the message names both GSDs and the fix.
    """
    ratio = gsd_ratio(info, model_gsd_m)
    if min(info.gsd_m) / model_gsd_m < MIN_GSD_RATIO:
        fine = model_gsd_m / min(info.gsd_m)
        text = (
            f"{info.path}: ground sample distance {min(info.gsd_m) * 1000:.3g} mm/px is {fine:.0f}x finer than the "
            f"model's {model_gsd_m * 100:.3g} cm/px, finer than any drone survey"
        )
        if allow:
            return text + "; running anyway as asked (--allow-gsd-mismatch): this is slow"
        raise InputError(
            text + ": check the CRS and its units (gdalinfo), or resample it to the model's GSD "
            f"(gdalwarp -tr {model_gsd_m:g} {model_gsd_m:g}); --allow-gsd-mismatch runs it anyway"
        )
    if ratio <= max_ratio:
        return None
    src_cm, model_cm = max(info.gsd_m) * 100, model_gsd_m * 100
    if allow:
        return (
            f"{info.path}: ground sample distance {src_cm:.3g} cm/px is {ratio:.1f}x coarser than the model's "
            f"{model_cm:.3g} cm/px; upsampling it {ratio:.1f}x as asked (--allow-gsd-mismatch): expect missed and "
            "false plots"
        )
    raise InputError(
        f"{info.path}: ground sample distance {src_cm:.3g} cm/px is {ratio:.1f}x coarser than the model's "
        f"{model_cm:.3g} cm/px (at most {max_ratio:g}x): plants would be guessed from blurred, upsampled pixels; "
        f"use an orthomosaic exported at {model_cm * max_ratio:.3g} cm/px or finer (fly lower or export at full "
        "resolution), or pass --allow-gsd-mismatch to run anyway"
    )


def coarse_footprint(
    ds: rasterio.io.DatasetReader, info: RasterInfo, grid: ModelGrid, cell: int
) -> tuple[np.ndarray, tuple[float, float]]:
    """A coarse, conservative valid-footprint mask from one decimated read.

    GDAL serves the decimated read from overviews when the file has them, so the full-resolution mask is never
    loaded. A nearest-neighbour sample can miss valid areas narrower than a cell, so the mask is dilated by one
    cell: a tile is skipped only when it is clearly outside.

    Args:
        ds: The open raster.
        info: Its description.
        grid: Its model grid.
        cell: Requested cell size in model pixels (grown if the mask would exceed ``FOOTPRINT_MAX_SIDE``).

    Returns:
        ``(mask, (cy, cx))``: boolean mask and the model pixels per cell along rows and columns.
    """
    cell = max(cell, math.ceil(max(grid.height, grid.width) / FOOTPRINT_MAX_SIDE))
    fh, fw = math.ceil(grid.height / cell), math.ceil(grid.width / cell)
    src = model_to_source_window(Window(0, 0, fw * cell, fh * cell), grid.scale)
    # The mask alone, no colour: 0.9 s instead of 3.5 s on a 10000 x 10000 RGBA GeoTIFF without overviews.
    try:
        valid = read_footprint(ds, info, src, (fh, fw))
    except RasterioIOError as exc:
        raise _read_error(info, src, exc) from exc
    kernel = np.ones((3, 3), dtype=np.uint8)
    dilated = cv2.dilate(valid.astype(np.uint8), kernel) > 0
    return dilated, (float(cell), float(cell))


# Test-time augmentation: (forward, inverse) pairs on [B, C, H, W] tensors. Flips and a quarter turn: the
# canopy has no preferred orientation, so averaging them cancels part of the network's orientation bias.
_TTA: list[tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = [
    (lambda x: x, lambda y: y),
    (lambda x: torch.flip(x, dims=[3]), lambda y: torch.flip(y, dims=[3])),
    (lambda x: torch.flip(x, dims=[2]), lambda y: torch.flip(y, dims=[2])),
    (lambda x: torch.rot90(x, 1, dims=[2, 3]), lambda y: torch.rot90(y, -1, dims=[2, 3])),
]


def predict_batch(
    model: nn.Module, rgb: np.ndarray, spec: ModelSpec, device: torch.device, *, tta: bool = False
) -> np.ndarray:
    """Poppy probabilities for a batch of tiles.

    Args:
        model: The network, on ``device``, in eval mode.
        rgb: ``uint8`` array ``[B, 3, H, W]``.
        spec: The model's spec (normalisation, classes).
        device: Where to run.
        tta: Average over flips and a quarter turn (4 passes).

    Returns:
        ``float32`` array ``[B, H, W]`` in [0, 1].
    """
    return _probabilities(model, rgb, spec, device, tta=tta)


def _probabilities(
    model: nn.Module, rgb: np.ndarray, spec: ModelSpec, device: torch.device, *, tta: bool = False
) -> np.ndarray:
    """:func:`predict_batch`'s work; the warm-up (:func:`measure_tile_seconds`) calls it directly, so that code
    wrapping :func:`predict_batch` (tests that interrupt a run after N batches) counts the run's batches only."""
    x = torch.from_numpy(rgb)
    if device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    x = normalise(x.float().div_(255.0), spec)
    passes = _TTA if tta else _TTA[:1]
    with torch.inference_mode(), autocast_context(device):
        # Average probabilities, not logits: a confident pass should not drown the others.
        prob = torch.stack([inv(poppy_probability(model(fwd(x)), spec).unsqueeze(1)) for fwd, inv in passes])
        prob = prob.mean(dim=0)[:, 0]
    return prob.float().cpu().numpy()


class _Strip:
    """Blending accumulator for one row of tiles; flushes rows that no later tile can touch.

    ``top`` is the first raster row the accumulator holds; rows above ``keep_before`` are already on disk from an
    earlier run (a resume) and are not written again. ``on_rows(rows_done)`` is called whenever rows were written.
    """

    def __init__(
        self,
        tile: int,
        width: int,
        writer: ProbRasterWriter,
        height: int,
        *,
        top: int = 0,
        keep_before: int = 0,
        on_rows: Callable[[int], None] | None = None,
    ) -> None:
        self.tile = tile
        self.width = width  # raster width in model pixels
        self.height = height
        self.writer = writer
        pad_w = max(width, tile)
        self.acc = np.zeros((tile, pad_w), dtype=np.float32)
        self.wsum = np.zeros((tile, pad_w), dtype=np.float32)
        self.valid = np.zeros((tile, pad_w), dtype=bool)
        self.top = top  # raster row of the accumulator's first row; rows above it are written
        self.keep_before = keep_before
        self.on_rows = on_rows

    def add(self, row_off: int, col_off: int, prob: np.ndarray, valid: np.ndarray, weights: np.ndarray) -> None:
        self.advance(row_off)
        r = row_off - self.top
        t = self.tile
        self.acc[r : r + t, col_off : col_off + t] += prob * weights
        self.wsum[r : r + t, col_off : col_off + t] += weights
        self.valid[r : r + t, col_off : col_off + t] |= valid

    def advance(self, row: int) -> None:
        """Write out raster rows ``[top, row)``: tiles arrive in row order, so they are final."""
        row = min(row, self.height)
        if self.top >= row:
            return
        while self.top < row:
            n = min(row - self.top, self.tile)
            self._write(n)
            # Shift the unfinished rows up and clear the freed ones.
            for buf, zero in ((self.acc, 0.0), (self.wsum, 0.0), (self.valid, False)):
                buf[: self.tile - n] = buf[n:]
                buf[self.tile - n :] = zero
            self.top += n
        if self.on_rows is not None and self.top > self.keep_before:
            self.on_rows(self.top)

    def _write(self, n: int) -> None:
        skip = min(n, max(0, self.keep_before - self.top))  # rows an earlier run already wrote
        if skip == n:
            return
        w = self.width
        wsum = self.wsum[skip:n, :w]
        valid = self.valid[skip:n, :w]
        # Outside the footprint (and where no tile ran) the probability is 0 by contract.
        prob = np.divide(
            self.acc[skip:n, :w], wsum, out=np.zeros((n - skip, w), dtype=np.float32), where=valid & (wsum > 0)
        )
        self.writer.write(prob, row_off=self.top + skip, valid=valid)


def _read(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    window: Window,
    out_shape: tuple[int, int],
    resampling: Resampling = Resampling.bilinear,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_window`, with GDAL read failures turned into an error that names the file and place."""
    try:
        return read_window(ds, info, window, out_shape=out_shape, resampling=resampling)
    except RasterioIOError as exc:
        raise _read_error(info, window, exc) from exc


def _read_error(info: RasterInfo, window: Window, exc: Exception) -> InputError:
    # A truncated copy or a corrupt block: say where, so the user can check the file.
    return InputError(
        f"{info.path}: reading source pixels at row {window.row_off:.0f}, column {window.col_off:.0f} "
        f"failed ({exc}); the file may be truncated or damaged: copy or export it again"
    )


def _tile_batches(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    grid: ModelGrid,
    tiles: list[tuple[int, int]],
    tile: int,
    batch_size: int,
) -> Iterator[tuple[list[tuple[int, int]], np.ndarray, np.ndarray]]:
    """Read tiles (row_off, col_off in model pixels) in order, ``batch_size`` at a time."""
    for i in range(0, len(tiles), batch_size):
        chunk = tiles[i : i + batch_size]
        rgb = np.empty((len(chunk), 3, tile, tile), dtype=np.uint8)
        valid = np.empty((len(chunk), tile, tile), dtype=bool)
        for k, (r, c) in enumerate(chunk):
            src = model_to_source_window(Window(col_off=c, row_off=r, width=tile, height=tile), grid.scale)
            rgb[k], valid[k] = _read(ds, info, src, (tile, tile))
        yield chunk, rgb, valid


class _ReadAhead:
    """Runs an iterator in a thread, handing items over through a bounded queue."""

    _DONE = object()

    def __init__(self, it: Iterator, maxsize: int) -> None:
        self._it = it
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._run, name="poppy-read-ahead", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(self._it)
                except StopIteration:
                    break
                self.busy_s += time.perf_counter() - t0
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it with its traceback
            self._put(exc)

    def __iter__(self) -> Iterator:
        while True:
            item = self._q.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def check_tiling(spec: ModelSpec, tile: int | None, overlap: int | None, batch_size: int) -> tuple[int, int]:
    """Resolve and check ``--tile``, ``--overlap`` and ``--batch-size`` (before any work starts).

    Returns:
        ``(tile, overlap)`` in model pixels, defaults filled in from the model.

    Raises:
        InputError: Naming the flag and its allowed range.
    """
    tile = int(spec.tile_size if tile is None else tile)
    if tile < MIN_TILE:
        raise InputError(f"--tile {tile}: too small; use at least {MIN_TILE} model pixels (e.g. 512)")
    overlap = tile // 8 if overlap is None else int(overlap)
    if not 0 <= overlap <= tile // 2:
        raise InputError(f"--overlap {overlap}: must be between 0 and half the tile ({tile // 2})")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    return tile, overlap


def check_model_spec(spec: ModelSpec) -> None:
    """Refuse a checkpoint that is not an RGB poppy detector (other bands, a land-cover pretraining model).

    Raises:
        InputError: Saying what the model expects and what to use instead.
    """
    if tuple(spec.bands) != ("red", "green", "blue"):
        raise InputError(
            f"the model expects bands {', '.join(spec.bands)}; this tool reads red, green and blue only: "
            "use an RGB model"
        )
    if "poppy" not in spec.classes:
        raise InputError(f"the model's classes {spec.classes} have no 'poppy'; use a poppy detector checkpoint")


def footprint_tiles(
    ds: rasterio.io.DatasetReader, info: RasterInfo, grid: ModelGrid, tile: int, overlap: int
) -> tuple[list[tuple[int, int]], int]:
    """The tiles ``(row_off, col_off)`` that touch the valid footprint, rows first, and how many tiles in all.

    These are the tiles :func:`predict_raster` runs (the quality gates sample them, the run-time estimate counts
    them). Judged on a coarse, dilated footprint (:func:`coarse_footprint`): one decimated mask read.
    """
    footprint, cell = coarse_footprint(ds, info, grid, cell=max(8, tile // 4))
    rows = tile_starts(grid.height, tile, overlap)
    cols = tile_starts(grid.width, tile, overlap)
    tiles = [
        (r, c)
        for r in rows
        for c in cols
        if window_touches_footprint(Window(col_off=c, row_off=r, width=tile, height=tile), footprint, cell)
    ]
    return tiles, len(rows) * len(cols)


def measure_tile_seconds(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    grid: ModelGrid,
    tiles: list[tuple[int, int]],
    model: nn.Module,
    spec: ModelSpec,
    *,
    tile: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    tta: bool = False,
    timed_batches: int = WARMUP_TIMED_BATCHES,
) -> tuple[float, int]:
    """Seconds per tile of prediction on this machine, measured on a few real tiles through the real model.

    Tiles from the middle of ``tiles`` (the footprint's inside, not its ragged edge) are read and predicted
    batch by batch as :func:`predict_raster` does; the first batch is not timed (start-up costs), the next
    ``timed_batches`` are, reading and the model separately. :func:`predict_raster` reads in a thread while the
    model runs: on a GPU a tile costs about the slower of the two, on a CPU (shared cores) their sum. Blending
    and writing are not included (a few per cent of the model's time on the CPU). Nothing is written and the
    model's mode is restored.

    Args:
        ds: The open raster.
        info: Its description.
        grid: Its model grid.
        tiles: Its tiles holding footprint (:func:`footprint_tiles`).
        model: The network.
        spec: Its spec.
        tile: Tile size in model pixels.
        batch_size: Tiles per forward pass, as the run will use.
        device: Where the run will go.
        tta: Test-time augmentation, as the run will use.
        timed_batches: Batches timed after the untimed first one.

    Returns:
        ``(seconds_per_tile, tiles_timed)``; ``(0.0, 0)`` when there is no tile. With a single batch of tiles
        that batch is timed, start-up included (an overestimate).
    """
    if not tiles:
        return 0.0, 0
    dev = resolve_device(device)
    n = batch_size * (1 + timed_batches)
    mid = max(0, len(tiles) // 2 - n // 2)
    sample = tiles[mid : mid + n]
    was_training = model.training
    model.to(dev).eval()
    read_s = model_s = 0.0
    timed = 0
    try:
        batches = _tile_batches(ds, info, grid, sample, tile, batch_size)
        for i in itertools.count():
            t0 = time.perf_counter()
            item = next(batches, None)
            if item is None:
                break
            chunk, rgb, _ = item
            t1 = time.perf_counter()
            _probabilities(model, rgb, spec, dev, tta=tta)
            t2 = time.perf_counter()
            if i == 0 and len(sample) > batch_size:
                continue  # start-up, not the steady rate
            read_s += t1 - t0
            model_s += t2 - t1
            timed += len(chunk)
    finally:
        model.train(was_training)
    # On a GPU the reader thread works while the GPU computes: a tile costs the slower of the two. On a CPU the
    # reader and torch's threads share the same cores, so their times add up.
    busy = max(read_s, model_s) if dev.type == "cuda" else read_s + model_s
    return busy / max(timed, 1), timed


def _stream_tiles(
    reader: Iterable[tuple[list[tuple[int, int]], np.ndarray, np.ndarray]],
    model: nn.Module,
    spec: ModelSpec,
    dev: torch.device,
    tta: bool,
    strip: _Strip,
    weights: np.ndarray,
    height: int,
    bar: tqdm,
    done: list[int],
) -> tuple[float, float]:
    """Predict every batch the reader yields and blend it into the strip writer; flush the last strip.

    ``done[0]`` counts the tiles run (from where the run started), for the resume record.

    Returns:
        Seconds in the model and seconds blending and writing.
    """
    t_model = t_write = 0.0
    for chunk, rgb, valid in reader:
        t0 = time.perf_counter()
        prob = predict_batch(model, rgb, spec, dev, tta=tta)
        t1 = time.perf_counter()
        for (r, c), p, v in zip(chunk, prob, valid, strict=True):
            strip.add(r, c, p, v, weights)
            done[0] += 1
        t_write += time.perf_counter() - t1
        t_model += t1 - t0
        bar.update(len(chunk))
    t1 = time.perf_counter()
    strip.advance(height)
    t_write += time.perf_counter() - t1
    return t_model, t_write


def predict_raster(
    ds_or_path: rasterio.io.DatasetReader | str | Path,
    model: nn.Module,
    spec: ModelSpec,
    *,
    prob_path: str | Path | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    tta: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    bands: tuple[int, int, int] | None = None,
    resume_key: Mapping[str, Any] | None = None,
    say: Callable[[str], None] | None = None,
    bar: tqdm | None = None,
) -> PredictResult:
    """Predict poppy probability over a whole orthomosaic and stream it to a GeoTIFF.

    With ``resume_key`` the call can be interrupted (also by SIGKILL) and continued: after each row of tiles is
    final and durable it is recorded in ``STEM.prob.progress.json`` beside ``prob_path`` (see
    :mod:`detect.progress`); a later call with an equal key (and the same tile, overlap, batch size, device,
    test-time augmentation, bands and software) runs only the tiles from the last recorded row on, rounded back to
    a whole batch, and writes the same bytes as one uninterrupted call. The record and the work file
    ``prob_path.work`` are then left for the caller to delete.

    Args:
        ds_or_path: An open raster (from :func:`detect.raster.open_raster`) or a path to one.
        model: The network (moved to ``device``; put in eval mode for the call, its mode restored after).
        spec: The model's spec: GSD, normalisation, classes, default tile size.
        prob_path: Where to write the probability raster; ``None`` writes a new file in the system temporary
            folder (the caller deletes it).
        tile: Tile size in model pixels; ``None`` takes ``spec.tile_size``.
        overlap: Overlap between tiles in model pixels; ``None`` takes ``tile // 8``.
        batch_size: Tiles per forward pass.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a :class:`torch.device`.
        tta: Test-time augmentation (flips and a quarter turn, averaged); four times slower.
        progress: Show a tqdm progress bar (tiles/s, time left).
        overwrite: Replace an existing ``prob_path``.
        bands: 1-based band numbers of red, green and blue (``--bands``); ``None`` picks them.
        resume_key: What identifies this prediction beyond the arguments (e.g. input and model SHA-256); None
            neither records progress nor resumes.
        say: Called with one line when an earlier call is resumed, or when its record cannot be used and why.
        bar: A progress bar over a whole batch of inputs to advance, instead of one of this call's own; it is
            left open, its ``total`` reduced by the tiles a resumed call need not run.

    Returns:
        A :class:`PredictResult`.

    Raises:
        InputError: For an unreadable raster, an existing output without ``overwrite``, a model that is not an
            RGB poppy detector, or tile/overlap/batch values out of range.
    """
    t_start = time.perf_counter()
    check_model_spec(spec)
    tile, overlap = check_tiling(spec, tile, overlap, batch_size)
    dev = resolve_device(device)

    own = not isinstance(ds_or_path, rasterio.io.DatasetReader)
    ds = open_raster(ds_or_path) if own else ds_or_path
    was_training = model.training
    try:
        info = inspect_raster(ds, bands)
        grid = model_grid(info, spec.gsd_m)
        if prob_path is None:
            fd, name = tempfile.mkstemp(prefix=Path(info.path).stem + ".", suffix=".prob.tif")
            os.close(fd)
            prob_path, overwrite = Path(name), True
        prob_path = Path(prob_path)

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        tiles, tiles_total = footprint_tiles(ds, info, grid, tile, overlap)
        timings["footprint"] = time.perf_counter() - t0
        weights = blend_weights(tile, overlap)
        model.to(dev).eval()

        start, rows_done, on_rows = 0, 0, None
        if resume_key is not None:
            key = {
                **resume_key,
                "tile": tile,
                "overlap": overlap,
                "batch_size": batch_size,
                "device": str(dev),
                "tta": tta,
                "bands": list(info.rgb_bands),
                "grid": [grid.height, grid.width, *grid.transform[:6]],
                "tiles": hashlib.sha256(np.asarray(tiles, dtype=np.int64).tobytes()).hexdigest(),
                "software": {"torch": torch.__version__, "numpy": np.__version__, "gdal": rasterio.__gdal_version__},
            }
            record = progress_path(prob_path)
            rows_done, why = read_progress(record, key, work_path(prob_path), grid.height * grid.width)
            start = resume_start([r for r, _ in tiles], rows_done, tile, batch_size, grid.height)
            name = info.path  # as given: flights are often all named odm_orthophoto.tif
            if why is not None and say is not None:
                say(f"{name}: starting over, not resuming: {why}")
            elif rows_done and say is not None:
                say(
                    f"{name}: resuming from model row {rows_done} of {grid.height} "
                    f"({start} of {len(tiles)} tiles done by an earlier run)"
                )
            if not rows_done:  # a record must never describe a work file that is started afresh below
                record.unlink(missing_ok=True)

            def on_rows(rows: int, _key: dict = key, _record: Path = record) -> None:
                writer.sync()
                write_progress(_record, _key, rows, strip_tiles[0])

        todo = tiles[start:]
        strip_tiles = [start]  # tiles run so far, for the record

        with ProbRasterWriter(
            prob_path,
            height=grid.height,
            width=grid.width,
            crs=grid.crs,
            transform=grid.transform,
            overwrite=overwrite,
            resumable=resume_key is not None,
            reuse_work=rows_done > 0,
        ) as writer:
            top = todo[0][0] if todo else rows_done
            strip = _Strip(tile, grid.width, writer, grid.height, top=top, keep_before=rows_done, on_rows=on_rows)
            reader = _ReadAhead(_tile_batches(ds, info, grid, todo, tile, batch_size), maxsize=_QUEUE_BATCHES)
            own_bar = bar is None
            if bar is None:
                bar = tqdm(
                    total=len(todo),
                    unit="tile",
                    desc=Path(info.path).name,
                    disable=not progress,
                    leave=False,
                    dynamic_ncols=True,
                )
            else:
                bar.set_description(Path(info.path).name, refresh=False)
                if start and bar.total is not None:
                    bar.total -= start  # not run again: counting them as done would inflate the rate
                    bar.refresh()
            try:
                t_model, t_write = _stream_tiles(
                    reader, model, spec, dev, tta, strip, weights, grid.height, bar, strip_tiles
                )
            finally:
                if own_bar:
                    bar.close()
                reader.close()
            t1 = time.perf_counter()
        t_write += time.perf_counter() - t1  # making the GeoTIFF (overviews included) and renaming it
        timings.update(read=reader.busy_s, model=t_model, blend_write=t_write)
        timings["total"] = time.perf_counter() - t_start
        return PredictResult(
            prob_path=prob_path,
            grid=grid,
            tile=tile,
            overlap=overlap,
            tiles_total=tiles_total,
            tiles_run=len(todo),
            tiles_skipped=tiles_total - len(tiles),
            device=str(dev),
            tta=tta,
            timings=timings,
            tiles_resumed=start,
            resumed_from_row=rows_done,
        )
    finally:
        model.train(was_training)
        if own:
            ds.close()
