"""Quality gates: is an orthomosaic fit for the model, measured before any inference.

A flight can be unusable for reasons the pipeline would never notice: shot out of focus or with motion blur,
exposed for the sky so the fields are white, exported with the wrong extent so almost nothing is imagery, or at a
ground resolution where single plants do not show. The model would run for an hour and return nothing, or
noise, and an analyst would take "no plot found" for "no poppy here". So each input is measured first, and gets
a short verdict: ``ok``, ``warn`` (runs, with reasons printed and stored) or ``refuse`` (not run unless
``--force``).

Everything is measured on samples, never on the whole raster:

- **Nodata and exposure** on one decimated read of the colour and the footprint (GDAL serves it from overviews
  when the file has them), at most :data:`OVERVIEW_SIDE` pixels a side: the share of the raster outside the
  valid footprint; inside it, the share of clipped-white and clipped-black pixels and the mean luminance.
- **Blur** on up to :data:`BLUR_WINDOWS` windows of :data:`BLUR_WINDOW` x :data:`BLUR_WINDOW` model pixels,
  read at the model's ground sample distance (GSD) exactly as the model sees them, spread evenly over the
  tiles that hold footprint. Each window gets the no-reference blur measure of Crete-Roffet et al. (2007,
  :func:`blur_effect`): the share of the image's edge contrast that survives a further strong blur. It is a
  ratio, so it does not depend on the window's size, brightness or contrast, only on how sharp its edges are.
  Calibration (docs/quality_gates.md): on generated scenes at 3 cm/px and real drone frames resampled to 3 cm
  it reads 0.18-0.31 sharp, 0.31-0.50 blurred by a Gaussian of sigma 1.5 model pixels and 0.73-0.81 at sigma
  4. Windows with too little texture to judge (water, bare concrete: luminance standard deviation under
  :data:`FLAT_STD`) are left out.
- **GSD** against the model's, with :func:`detect.predict.check_gsd`'s limits (the same numbers refuse here and
  there).

What refuses and what only warns is chosen so that a false refusal, which blocks a police run, needs an input
that is clearly unusable: almost no valid pixel, the GSD far out of range, blur far past the point where
flowers merge (sigma 3-4 model pixels, twice the blur of a 3x coarser export), or most of the ground clipped to
white or black. Everything milder warns. Thresholds are module constants with the reason beside each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from detect.raster import RasterInfo, read_window
from detect.tiling import model_to_source_window

__all__ = [
    "BLUR_REFUSE",
    "BLUR_WARN",
    "QualityReport",
    "assess_quality",
    "blur_effect",
    "exposure",
    "judge",
    "luminance",
    "sample_windows",
]

OVERVIEW_SIDE = 1024  # longest side of the decimated read for nodata and exposure: ~1 M samples, fast from overviews
BLUR_WINDOW = 256  # model px per blur window: 7.7 m at 3 cm/px, several plants and field edges
BLUR_WINDOWS = 24  # windows sampled: a blurred strip covering a quarter of a flight shows in ~6 of them
BLUR_H = 11  # re-blur width of blur_effect, in px (Crete-Roffet's value): wider than any real edge's blur
FLAT_STD = 4.0  # luminance std (8-bit) under which a window has too little texture to judge its sharpness
CLIP_HIGH = 250  # every band at or above: clipped white (JPEG ringing keeps saturated areas a little under 255)
CLIP_LOW = 5  # every band at or below: clipped black

# Blur (median of the windows' blur_effect), measured in docs/quality_gates.md: sharp generated scenes and real
# drone frames resampled to 3 cm read 0.18-0.31; blurred by a Gaussian of sigma 1.5 model px (about the blur of
# an export 3x coarser than the model, upsampled: the GSD limit) 0.31-0.50; sigma 3 0.60-0.71; sigma 4 0.73-0.81.
# Warn from just above the blurriest sharp image (most sigma-1.5 images are over it: single flowers are going).
# Refuse from sigma 3-4 (9-12 cm at 3 cm/px: only field-scale patches are left, the model cannot work), more
# than twice the blurriest sharp image.
BLUR_WARN = 0.33
BLUR_REFUSE = 0.70
# One window alone varies with what it shows (a smooth field of bare soil reads blurrier than a village): sharp
# windows reached 0.32, so a window counts as blurred from 0.45 (most windows of sigma-3 scenes are over it), and
# a quarter of the windows so blurred warns: a blurred part of the flight (a gust, a strip).
BLUR_WINDOW_BLURRED = 0.45
BLURRED_SHARE_WARN = 0.25
# Exposure (shares of valid pixels). White poppy flowers saturate first, so a few per cent clipped already loses
# plots; most of the ground clipped leaves nothing to see.
CLIPPED_WARN = 0.05
DARK_WARN = 0.10  # also black borders without a mask or nodata value: worth a look either way
# Refused: most of the ground white (nothing of plants is left: measured mean luminance 254 at 77 % clipped);
# black only when almost all of it is, because black borders without a mask or nodata value count as ground here.
CLIPPED_WHITE_REFUSE = 0.60
CLIPPED_BLACK_REFUSE = 0.95
LUMA_LOW_WARN = 45.0  # mean luminance (8-bit) under this: under-exposed, shadows carry no detail
LUMA_HIGH_WARN = 200.0  # over this: over-exposed, flowers and bright leaves wash out
# Nodata (share of the raster outside the valid footprint). Irregular flight footprints leave 20-60 % empty;
# almost all empty is a wrong extent or a failed export.
NODATA_WARN = 0.90
NODATA_REFUSE = 0.99
GSD_WARN_RATIO = 1.5  # coarser than this (and within the refusal limit): upsampled, small plants may be missed


@dataclass
class QualityReport:
    """Measured quality of one input, and the verdict.

    Attributes:
        verdict: ``ok``, ``warn`` or ``refuse``.
        reasons: One short phrase per problem found (empty when ``ok``).
        forced: True when a refused input was run anyway (``--force``).
        gsd_m: The input's ground sample distance, metres per pixel (coarser axis).
        model_gsd_m: The model's.
        gsd_ratio: ``gsd_m / model_gsd_m`` (< 1: finer than the model).
        bands: Band count, RGB band numbers, alpha band, data type and how values were brought to 8 bits.
        nodata_share: Share of the raster outside the valid footprint.
        valid_area_m2: Ground area of the valid footprint (approximate: share times raster area).
        clipped_white_share: Share of valid pixels with every band at or above :data:`CLIP_HIGH`.
        clipped_black_share: Share of valid pixels with every band at or below :data:`CLIP_LOW`.
        mean_luminance: Mean luminance (Rec. 601, 8-bit) of valid pixels.
        blur_median: Median :func:`blur_effect` of the sampled windows (None when none had texture).
        blur_windows: Windows measured for blur.
        blurred_share: Share of those at or over :data:`BLUR_WINDOW_BLURRED`.
        flat_windows: Windows left out for lack of texture.
        sample: How the numbers were sampled.
    """

    verdict: str = "ok"
    reasons: list[str] = field(default_factory=list)
    forced: bool = False
    gsd_m: float = 0.0
    model_gsd_m: float = 0.0
    gsd_ratio: float = 1.0
    bands: dict[str, Any] = field(default_factory=dict)
    nodata_share: float = 0.0
    valid_area_m2: float = 0.0
    clipped_white_share: float = 0.0
    clipped_black_share: float = 0.0
    mean_luminance: float = 0.0
    blur_median: float | None = None
    blur_windows: int = 0
    blurred_share: float = 0.0
    flat_windows: int = 0
    sample: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The summary's ``quality`` block (numbers rounded for reading)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = round(v, 4)
        return d

    def line(self, name: str) -> str:
        """One console line: ``site.tif: quality warn: 31 % of windows blurred ...``."""
        what = f"; {'; '.join(self.reasons)}" if self.reasons else ""
        numbers = (
            f"GSD {self.gsd_m * 100:.3g} cm/px ({self.gsd_ratio:.2g}x the model's), "
            f"blur {'n/a' if self.blur_median is None else f'{self.blur_median:.2f}'}, "
            f"clipped {self.clipped_white_share:.0%} white / {self.clipped_black_share:.0%} black, "
            f"nodata {self.nodata_share:.0%}"
        )
        forced = " (run anyway: --force)" if self.forced else ""
        return f"{name}: quality {self.verdict}{forced}{what} [{numbers}]"


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of a ``[3, H, W]`` (or ``[3, N]``) 8-bit array, as float32 in 0-255."""
    r, g, b = (rgb[i].astype(np.float32) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def blur_effect(gray: np.ndarray, h_size: int = BLUR_H) -> float:
    """No-reference blur of a grey image, 0 (sharp) to 1 (blurred): Crete-Roffet et al. (2007).

    The image is blurred again by a box of ``h_size`` pixels along each axis; the measure is the share of the
    absolute neighbour differences (edge contrast) that this re-blur does NOT remove. A sharp image loses most
    of its edge contrast to the re-blur, a blurred one has little left to lose. The larger of the two axes is
    returned, so motion blur along one axis counts fully. Ratios of sums: independent of the image's size,
    brightness and contrast.

    Args:
        gray: ``[H, W]`` array, at least 2 x 2 pixels.
        h_size: Width of the re-blur in pixels.

    Returns:
        The measure; 1.0 for an image without any contrast.
    """
    img = gray.astype(np.float64)
    worst, judged = 0.0, False
    for axis in (0, 1):
        ksize = (h_size, 1) if axis == 1 else (1, h_size)  # cv2 takes (width, height): blur along the axis
        blurred = cv2.blur(img, ksize, borderType=cv2.BORDER_REFLECT)
        d_sharp = np.abs(np.diff(img, axis=axis))
        d_blur = np.abs(np.diff(blurred, axis=axis))
        total = float(d_sharp.sum())
        if total <= 0:
            continue  # no contrast along this axis (a straight edge along it): nothing to judge there
        lost = float(np.maximum(0.0, d_sharp - d_blur).sum())
        worst = max(worst, (total - lost) / total)
        judged = True
    return worst if judged else 1.0


def exposure(rgb: np.ndarray) -> tuple[float, float, float]:
    """Clipped-white share, clipped-black share and mean luminance of ``[3, N]`` 8-bit valid pixels.

    Returns ``(0, 0, 0)`` for no pixel.
    """
    if rgb.shape[-1] == 0:
        return 0.0, 0.0, 0.0
    white = float(np.all(rgb >= CLIP_HIGH, axis=0).mean())
    black = float(np.all(rgb <= CLIP_LOW, axis=0).mean())
    return white, black, float(luminance(rgb).mean())


def judge(
    report: QualityReport, *, max_gsd_ratio: float, min_gsd_ratio: float, allow_gsd: bool = False
) -> QualityReport:
    """Fill in ``report.verdict`` and ``report.reasons`` from its numbers (see the module docstring).

    Args:
        report: Measured numbers.
        max_gsd_ratio: Coarsest accepted ``gsd_ratio`` (:data:`detect.predict.MAX_GSD_RATIO`).
        min_gsd_ratio: Finest accepted ``gsd_ratio`` (:data:`detect.predict.MIN_GSD_RATIO`).
        allow_gsd: A GSD out of range only warns (``--allow-gsd-mismatch``).

    Returns:
        The same report.
    """
    refuse: list[str] = []
    warn: list[str] = []
    r = report
    model_cm = r.model_gsd_m * 100
    gsd_out = refuse if not allow_gsd else warn
    allowed = " (--allow-gsd-mismatch)" if allow_gsd else ""
    if r.gsd_ratio > max_gsd_ratio:
        gsd_out.append(
            f"GSD {r.gsd_m * 100:.3g} cm/px is {r.gsd_ratio:.1f}x coarser than the model's "
            f"{model_cm:.3g} cm/px{allowed}"
        )
    elif r.gsd_ratio < min_gsd_ratio:
        gsd_out.append(f"GSD {r.gsd_m * 1000:.3g} mm/px is {1 / r.gsd_ratio:.0f}x finer than the model's{allowed}")
    elif r.gsd_ratio > GSD_WARN_RATIO:
        warn.append(
            f"GSD {r.gsd_m * 100:.3g} cm/px is {r.gsd_ratio:.1f}x coarser than the model's: small plants may be missed"
        )
    if r.nodata_share >= NODATA_REFUSE:
        refuse.append(f"{r.nodata_share:.1%} of the raster is nodata")
    elif r.nodata_share >= NODATA_WARN:
        warn.append(f"{r.nodata_share:.0%} of the raster is nodata")
    if r.blur_median is not None:
        if r.blur_median >= BLUR_REFUSE:
            refuse.append(f"blurred (blur {r.blur_median:.2f}, refused from {BLUR_REFUSE})")
        elif r.blur_median >= BLUR_WARN or r.blurred_share >= BLURRED_SHARE_WARN:
            warn.append(f"blurred in {r.blurred_share:.0%} of sampled windows (median blur {r.blur_median:.2f})")
    elif r.blur_windows == 0 and r.flat_windows > 0:
        warn.append("too little texture to measure sharpness")
    if r.clipped_white_share >= CLIPPED_WHITE_REFUSE:
        refuse.append(f"over-exposed: {r.clipped_white_share:.0%} of the ground clipped to white")
    elif r.clipped_white_share >= CLIPPED_WARN or r.mean_luminance > LUMA_HIGH_WARN:
        warn.append(
            f"over-exposed: {r.clipped_white_share:.0%} clipped to white, mean luminance {r.mean_luminance:.0f}"
        )
    if r.clipped_black_share >= CLIPPED_BLACK_REFUSE:
        refuse.append(f"under-exposed: {r.clipped_black_share:.0%} of the ground clipped to black")
    elif r.clipped_black_share >= DARK_WARN:
        warn.append(
            f"dark: {r.clipped_black_share:.0%} clipped to black (black borders without a mask or nodata value?), "
            f"mean luminance {r.mean_luminance:.0f}"
        )
    elif r.mean_luminance < LUMA_LOW_WARN:
        warn.append(f"under-exposed: mean luminance {r.mean_luminance:.0f}")
    stretch = r.bands.get("value_scaling", "")
    if "stretched" in stretch:
        warn.append("colours guessed from a percentile stretch of non-8-bit data")
    r.reasons = refuse + warn
    r.verdict = "refuse" if refuse else "warn" if warn else "ok"
    return r


def sample_windows(tiles: Sequence[tuple[int, int]], tile: int, count: int = BLUR_WINDOWS) -> list[Window]:
    """Up to ``count`` blur windows (model pixels) spread evenly over the tiles holding footprint.

    Each tile offers the windows of :data:`BLUR_WINDOW` px that fit in it side by side (up to 2 x 2, centred),
    so a small input still gives enough windows for a median, and a long flight is sampled end to end.

    Args:
        tiles: ``(row_off, col_off)`` of the tiles holding footprint, in model pixels, rows first.
        tile: Tile size in model pixels.
        count: Most windows to return.

    Returns:
        Windows of ``min(tile, BLUR_WINDOW)`` model pixels a side, in the order of ``tiles``.
    """
    side = min(tile, BLUR_WINDOW)
    k = min(2, tile // side)
    pad = (tile - k * side) // 2
    offsets = [(pad + i * side, pad + j * side) for i in range(k) for j in range(k)]
    candidates = [(r + dr, c + dc) for r, c in tiles for dr, dc in offsets]
    n = min(count, len(candidates))
    # Evenly spaced indexes (the middle of each of n equal runs).
    picks = sorted({int((i + 0.5) * len(candidates) / n) for i in range(n)})
    return [Window(col_off=candidates[i][1], row_off=candidates[i][0], width=side, height=side) for i in picks]


def assess_quality(
    ds: rasterio.io.DatasetReader,
    info: RasterInfo,
    *,
    model_gsd_m: float,
    scale: tuple[float, float],
    tiles: Sequence[tuple[int, int]],
    tile: int,
    max_gsd_ratio: float,
    min_gsd_ratio: float,
    allow_gsd: bool = False,
) -> QualityReport:
    """Measure an input and judge it (see the module docstring), reading only samples.

    Args:
        ds: The open raster.
        info: Its description (:func:`detect.raster.inspect_raster`).
        model_gsd_m: The model's GSD in metres per pixel.
        scale: Source pixels per model pixel ``(rows, cols)`` (the model grid's ``scale``).
        tiles: Tiles holding footprint, ``(row_off, col_off)`` in model pixels.
        tile: Tile size in model pixels.
        max_gsd_ratio: Coarsest accepted GSD ratio.
        min_gsd_ratio: Finest accepted GSD ratio.
        allow_gsd: A GSD out of range only warns (``--allow-gsd-mismatch``).

    Returns:
        The measured and judged :class:`QualityReport`.
    """
    gsd = max(info.gsd_m)
    report = QualityReport(gsd_m=gsd, model_gsd_m=model_gsd_m, gsd_ratio=gsd / model_gsd_m)
    report.bands = {
        "count": info.count,
        "rgb": list(info.rgb_bands),
        "alpha": info.alpha_band,
        "dtype": info.dtype,
        "nodata": info.nodata,
        "value_scaling": info.value_scaling,
    }
    # One decimated read of colour and footprint, nearest neighbour: real pixel values, not averages, so
    # clipping shows as it is.
    k = min(1.0, OVERVIEW_SIDE / max(info.height, info.width))
    shape = (max(1, round(info.height * k)), max(1, round(info.width * k)))
    rgb, valid = read_window(ds, info, Window(0, 0, info.width, info.height), shape, Resampling.nearest)
    report.nodata_share = 1.0 - float(valid.mean())
    report.valid_area_m2 = (1.0 - report.nodata_share) * info.height * info.width * info.gsd_m[0] * info.gsd_m[1]
    white, black, luma = exposure(rgb[:, valid])
    report.clipped_white_share, report.clipped_black_share, report.mean_luminance = white, black, luma

    blurs: list[float] = []
    windows = sample_windows(tiles, tile)
    for w in windows:
        src = model_to_source_window(w, scale)
        win_rgb, win_valid = read_window(ds, info, src, (int(w.height), int(w.width)))
        if win_valid.mean() < 0.9:  # footprint edges: the border itself is the sharpest edge there
            continue
        gray = luminance(win_rgb)
        if float(gray[win_valid].std()) < FLAT_STD:
            report.flat_windows += 1
            continue
        blurs.append(blur_effect(gray))
    report.blur_windows = len(blurs)
    if blurs:
        report.blur_median = float(np.median(blurs))
        report.blurred_share = float(np.mean([b >= BLUR_WINDOW_BLURRED for b in blurs]))
    report.sample = {
        "overview_px": [shape[1], shape[0]],
        "blur_window_model_px": min(tile, BLUR_WINDOW),
        "blur_windows_sampled": len(windows),
    }
    return judge(report, max_gsd_ratio=max_gsd_ratio, min_gsd_ratio=min_gsd_ratio, allow_gsd=allow_gsd)
