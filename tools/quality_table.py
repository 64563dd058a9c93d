"""Write docs/quality_gates.md: how the blur thresholds were calibrated, and the gates' verdicts on test inputs.

Two tables, both measured when this runs:

1. **Calibration.** The median :func:`detect.quality.blur_effect` of 256 x 256 px windows (those with texture) of
   generated scenes at 3 cm/px and of the project's real drone frames resampled to 3 cm (their GSD is the
   approximate one in ``../shared/data/real/negatives/README.md``), sharp and blurred by a Gaussian of known
   sigma in model pixels. This is where ``BLUR_WARN`` and ``BLUR_REFUSE`` come from.
2. **Verdicts.** :func:`detect.pipeline.check_input` with the shipped model (3 cm/px, 512 px tiles) on inputs made
   from one generated scene (clean, blurred, over- and under-exposed, 5x too coarse, almost all nodata) and on
   the real GeoTIFFs in ``../shared/data/real/`` and its ``negatives/``, plus the real frames written as
   GeoTIFFs at their approximate GSD (so their blur and exposure are measured as an orthomosaic's would be).

Run from the repository root (2-4 minutes on a shared 2-core CPU; renders three 1536 px scenes in a temp folder)::

    .venv/bin/python tools/quality_table.py                       # writes docs/quality_gates.md
    .venv/bin/python tools/quality_table.py --shared ../shared    # where the real files are (the default)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datasets.synthetic import render_scene  # noqa: E402
from detect.pipeline import RunOptions, check_input  # noqa: E402
from detect.quality import (  # noqa: E402
    BLUR_REFUSE,
    BLUR_WARN,
    BLUR_WINDOW_BLURRED,
    FLAT_STD,
    blur_effect,
    luminance,
)
from models.checkpoint import load_checkpoint  # noqa: E402

OUT = ROOT / "docs" / "quality_gates.md"
SIGMAS = (0, 0.75, 1.5, 2, 3, 4, 6)
# Real frames with their approximate GSD (negatives/README.md): nadir or near-nadir, 1.5-3 cm.
FRAMES = {
    "brighton_beach_mn_park_DJI_0021.JPG": 0.0175,
    "brighton_beach_mn_park_DJI_0030.JPG": 0.0175,
    "garfield_oh_park_IMG_161122_163234_0000_RGB.JPG": 0.03,
    "garfield_oh_park_IMG_161122_165115_0170_RGB.JPG": 0.03,
    "lewis_oh_meadow_img_4074.jpg": 0.025,
    "lewis_oh_meadow_img_4116.jpg": 0.025,
    "decatur_ar_farm_fisheye_FHD0411.JPG": 0.0125,
}
MODEL_GSD = 0.03
HEADER = (
    "| input | made how | verdict | reasons | GSD cm (x model) | blur (windows) | blurred | clipped white "
    "| clipped black | mean luma | nodata |\n" + "|---" * 11 + "|"
)


def _windows(gray: np.ndarray, side: int = 256) -> list[np.ndarray]:
    h, w = gray.shape
    wins = [
        gray[r : r + side, c : c + side] for r in range(0, h - side + 1, side) for c in range(0, w - side + 1, side)
    ]
    return [g for g in wins if g.std() >= FLAT_STD]


def _median_blur(rgb_hwc: np.ndarray, sigma: float) -> float:
    img = rgb_hwc.astype(np.float32)
    if sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return float(np.median([blur_effect(g) for g in _windows(luminance(img.transpose(2, 0, 1)))]))


def _write(path: Path, rgb: np.ndarray, alpha: np.ndarray, gsd: float, crs: str = "EPSG:32650") -> Path:
    """An RGBA GeoTIFF (``rgb`` ``[3, H, W]``) north-up at ``gsd`` metres."""
    profile = dict(driver="GTiff", height=rgb.shape[1], width=rgb.shape[2], count=4, dtype="uint8", crs=crs)
    profile.update(transform=Affine(gsd, 0, 500000.0, 0, -gsd, 4000000.0), photometric="RGB", alpha="YES")
    profile.update(tiled=True, compress="deflate")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.concatenate([rgb, alpha[None]]))
    return path


def _blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(rgb.transpose(1, 2, 0), (0, 0), sigma).transpose(2, 0, 1).copy()


def _gain(rgb: np.ndarray, k: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * k, 0, 255).astype(np.uint8)


def made_inputs(tmp: Path) -> list[tuple[str, str, Path]]:
    """``(name, how it was made, path)`` of the inputs made from one generated scene."""
    scene = render_scene(tmp, "scene", 7, size=1536, gsd_m=MODEL_GSD)
    with rasterio.open(scene["image"]) as ds:
        rgb, alpha = ds.read([1, 2, 3]), ds.read(4)
    coarse_rgb = cv2.resize(rgb.transpose(1, 2, 0), None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA)
    coarse_alpha = cv2.resize(alpha, None, fx=0.2, fy=0.2, interpolation=cv2.INTER_NEAREST)
    sparse = np.zeros_like(alpha)
    sparse[:100, :100] = alpha[:100, :100]  # 0.4 % of the raster: a wrong extent
    made = [
        ("clean", "generated scene, 1536 px at 3 cm/px", rgb, alpha, MODEL_GSD),
        ("blurred s1.5", "Gaussian blur, sigma 1.5 px (4.5 cm)", _blur(rgb, 1.5), alpha, MODEL_GSD),
        ("blurred s2.5", "Gaussian blur, sigma 2.5 px", _blur(rgb, 2.5), alpha, MODEL_GSD),
        ("blurred s4", "Gaussian blur, sigma 4 px (12 cm)", _blur(rgb, 4), alpha, MODEL_GSD),
        ("bright x1.4", "gain 1.4, clipped at 255", _gain(rgb, 1.4), alpha, MODEL_GSD),
        ("over-exposed x3", "gain 3, clipped at 255", _gain(rgb, 3.0), alpha, MODEL_GSD),
        ("dark x0.3", "gain 0.3", _gain(rgb, 0.3), alpha, MODEL_GSD),
        (
            "coarse 15 cm",
            "resampled to 15 cm/px (5x the model's GSD)",
            coarse_rgb.transpose(2, 0, 1),
            coarse_alpha,
            0.15,
        ),
        ("mostly nodata", "alpha 0 outside a 100 x 100 px corner", rgb, sparse, MODEL_GSD),
    ]
    return [(n, how, _write(tmp / f"{i}.tif", r, a, g)) for i, (n, how, r, a, g) in enumerate(made)]


def real_inputs(shared: Path, tmp: Path) -> list[tuple[str, str, Path]]:
    """The real GeoTIFFs, and the real frames as GeoTIFFs at their approximate GSD."""
    real = shared / "data" / "real"
    out = [
        (p.name, "real orthophoto (GeoTIFF as published)", p)
        for p in sorted(real.glob("*.tif"))
        if "multispectral" not in p.name
    ]
    out += [(p.name, "real aerial GeoTIFF (negatives)", p) for p in sorted((real / "negatives").glob("*.tif"))]
    for name, gsd in FRAMES.items():
        img = cv2.imread(str(real / "negatives" / name))[:, :, ::-1].transpose(2, 0, 1).copy()
        path = _write(tmp / f"frame_{len(out)}.tif", img, np.full(img.shape[1:], 255, np.uint8), gsd)
        out.append((name, f"real drone frame as a GeoTIFF at its approximate {gsd * 100:g} cm/px", path))
    return out


def calibration_rows(tmp: Path, shared: Path) -> list[str]:
    rows = []
    for i in range(2):
        scene = render_scene(tmp / "cal", f"cal{i}", 100 + i, size=1536, gsd_m=MODEL_GSD)
        with rasterio.open(scene["image"]) as ds:
            rgb = ds.read([1, 2, 3]).transpose(1, 2, 0)
        rows.append(
            f"| generated scene {i + 1} (seed {100 + i}), 3 cm | "
            + " | ".join(f"{_median_blur(rgb, s):.2f}" for s in SIGMAS)
            + " |"
        )
    with rasterio.open(ROOT / "samples" / "demo_ortho.tif") as ds:
        rgb = ds.read([1, 2, 3]).transpose(1, 2, 0)
    rows.append("| samples/demo_ortho.tif, 3 cm | " + " | ".join(f"{_median_blur(rgb, s):.2f}" for s in SIGMAS) + " |")
    for name, gsd in FRAMES.items():
        img = cv2.imread(str(shared / "data" / "real" / "negatives" / name))[:, :, ::-1]
        k = gsd / MODEL_GSD
        img = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        rows.append(
            f"| {name} (~{gsd * 100:g} cm, resampled to 3) | "
            + " | ".join(f"{_median_blur(img, s):.2f}" for s in SIGMAS)
            + " |"
        )
    return rows


def verdict_rows(inputs: list[tuple[str, str, Path]]) -> list[str]:
    _, spec = load_checkpoint(None)
    rows = []
    for name, how, path in inputs:
        q = check_input(path, RunOptions(out_dir=Path("unused")), spec).quality
        blur = "n/a" if q.blur_median is None else f"{q.blur_median:.2f}"
        reasons = "; ".join(q.reasons) or "-"
        rows.append(
            f"| {name} | {how} | **{q.verdict}** | {reasons} | {q.gsd_m * 100:.3g} ({q.gsd_ratio:.2g}x) "
            f"| {blur} ({q.blur_windows}) | {q.blurred_share:.0%} | {q.clipped_white_share:.1%} | "
            f"{q.clipped_black_share:.1%} | {q.mean_luminance:.0f} | {q.nodata_share:.1%} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared folder (real data)")
    parser.add_argument("--out", type=Path, default=OUT, help="the Markdown file to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cal = calibration_rows(tmp, args.shared)
        verdicts = verdict_rows(made_inputs(tmp) + real_inputs(args.shared, tmp))
    text = f"""# Quality gates: calibration and verdicts

Made by `.venv/bin/python tools/quality_table.py` (every number below is measured when it runs; the gates are
`detect/quality.py`, explained in the README's *Quality gates*).

## Blur: where the thresholds come from

Median `blur_effect` (Crete-Roffet's no-reference blur, 0 sharp to 1 blurred) of the 256 x 256 px windows with
texture (luminance standard deviation >= {FLAT_STD:g}), at the model's 3 cm/px, sharp (sigma 0) and after a Gaussian
blur of sigma model pixels. Real frames: the project's drone frames in `../shared/data/real/negatives/`,
resampled from their approximate GSD to 3 cm.

| image | {" | ".join(f"sigma {s:g}" for s in SIGMAS)} |
|---|{"---|" * len(SIGMAS)}
{chr(10).join(cal)}

The thresholds in `detect/quality.py`: **warn** when the median is at or above **{BLUR_WARN}** (above every
sharp image; most images blurred by sigma 1.5, about the blur of an export 3x coarser than the model upsampled,
which is where single flowers go, are over it); **refuse** at or above **{BLUR_REFUSE}** (sigma 3-4, 9-12 cm at
3 cm/px: only field-scale patches remain; more than twice the blurriest sharp image). A single window counts as
blurred at or above {BLUR_WINDOW_BLURRED} (over every sharp window seen), and a quarter of the windows so
blurred warns even when the median does not (a blurred strip of a flight). A false refusal blocks a police
run, so the refusal sits far from any usable image; `--force` overrides it.

## Verdicts

`check_input` with the shipped model (`models/weights/poppy_default.pt`, 3 cm/px, 512 px tiles). Made inputs:
one generated scene (seed 7, 1536 px at 3 cm/px) changed as said. Real: the GeoTIFFs as published, and the
drone frames written as GeoTIFFs at their approximate GSD (not orthorectified: only blur and exposure mean
something there). Blur: median (windows measured); blurred: share of windows at or above
{BLUR_WINDOW_BLURRED}; clipped: share of valid pixels with every band >= 250 (white) or <= 5 (black).

{HEADER}
{chr(10).join(verdicts)}
"""
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
