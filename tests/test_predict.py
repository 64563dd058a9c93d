"""Sliding-window prediction (detect/predict.py) with a tiny deterministic colour-rule model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from torch import nn

from detect.errors import InputError
from detect.predict import model_grid, predict_raster, resolve_device
from detect.raster import inspect_raster, open_raster
from models.checkpoint import ModelSpec

CRS_UTM = "EPSG:32650"
GREEN = (40, 150, 40)
RED = (220, 30, 30)


class RedRule(nn.Module):
    """Logit +30 where red is high and green low, -10 on grey/green: a 'model' with a known answer."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(40.0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * (x[:, 0:1] - x[:, 1:2]) - 10.0


class Constant(nn.Module):
    """Logit 0 everywhere: probability 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, :1])


def spec_for(gsd_m: float = 0.03, tile: int = 32) -> ModelSpec:
    # mean 0 / std 1 so the rule sees colour values in [0, 1]
    return ModelSpec(
        arch="fastunet", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), gsd_m=gsd_m, tile_size=tile, name="red-rule"
    )


def write_scene(
    path: Path,
    height: int,
    width: int,
    gsd: float,
    square: tuple[int, int, int, int] | None,
    alpha: np.ndarray | None = None,
    crs: str = CRS_UTM,
) -> Path:
    """A green field with a red square ``(row0, row1, col0, col1)``; optional alpha band."""
    rgb = np.empty((3, height, width), dtype=np.uint8)
    for b in range(3):
        rgb[b] = GREEN[b]
    if square is not None:
        r0, r1, c0, c1 = square
        for b in range(3):
            rgb[b, r0:r1, c0:c1] = RED[b]
    bands = [*rgb, alpha] if alpha is not None else list(rgb)
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": len(bands),
        "dtype": "uint8",
        "crs": crs,
        "transform": Affine(gsd, 0, 500000.0, 0, -gsd, 4000000.0),
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.stack(bands))
        if alpha is not None:
            ds.colorinterp = [
                rasterio.enums.ColorInterp.red,
                rasterio.enums.ColorInterp.green,
                rasterio.enums.ColorInterp.blue,
                rasterio.enums.ColorInterp.alpha,
            ]
    return path


def read_prob(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile, np.ndarray]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile, ds.dataset_mask()


def test_red_square_at_model_gsd(tmp_path: Path) -> None:
    src = write_scene(tmp_path / "a.tif", 96, 96, 0.03, (30, 60, 40, 70))
    res = predict_raster(
        src, RedRule(), spec_for(), prob_path=tmp_path / "a.prob.tif", tile=32, overlap=8, batch_size=4, progress=False
    )
    prob, profile, _ = read_prob(res.prob_path)
    with rasterio.open(src) as ds:
        assert profile["crs"] == ds.crs
        assert profile["transform"] == ds.transform
    assert prob.shape == (96, 96) and prob.dtype == np.uint8
    assert (prob[30:60, 40:70] == 255).all()
    inside = np.zeros_like(prob, dtype=bool)
    inside[30:60, 40:70] = True
    assert (prob[~inside] == 0).all()
    assert res.tiles_total == 16 and res.tiles_run == 16 and res.tiles_skipped == 0
    assert profile["tiled"] and profile["blockxsize"] == 256 and profile["compress"] == "deflate"
    assert profile.get("nodata") is None  # 0 is a valid probability
    assert not (tmp_path / "a.prob.tif.tmp").exists()


@pytest.mark.parametrize(
    ("src_gsd", "size", "square"),
    [
        # source twice as fine as the model: 192 px at 1.5 cm -> 96 model px at 3 cm
        (0.015, 192, (60, 120, 80, 140)),
        # source twice as coarse: 48 px at 6 cm -> 96 model px
        (0.06, 48, (15, 30, 20, 35)),
    ],
)
def test_resampled_to_model_gsd(tmp_path: Path, src_gsd: float, size: int, square: tuple) -> None:
    src = write_scene(tmp_path / "b.tif", size, size, src_gsd, square)
    res = predict_raster(
        src, RedRule(), spec_for(0.03), prob_path=tmp_path / "b.prob.tif", tile=32, overlap=8, progress=False
    )
    prob, profile, _ = read_prob(res.prob_path)
    sy, sx = res.grid.scale
    # the GSD is geodesic: UTM's scale factor (0.9996 on the central meridian) makes the ratio 1.9992, not 2
    assert sy == pytest.approx(0.03 / src_gsd, rel=1e-3) and sx == pytest.approx(0.03 / src_gsd, rel=1e-3)
    with rasterio.open(src) as ds:
        assert profile["transform"] == ds.transform * Affine.scale(sx, sy)
        assert profile["transform"].a == pytest.approx(0.03, rel=1e-3)
        # the same ground point lands on the same place in both grids
        assert profile["transform"] * (0, 0) == ds.transform * (0, 0)
    assert prob.shape == (res.grid.height, res.grid.width)
    assert prob.shape in ((96, 96), (97, 97))  # ceil covers the whole raster, possibly with a sliver pixel
    assert res.grid.gsd_m == pytest.approx((0.03, 0.03), rel=1e-3)
    # the square is model rows 30-60, cols 40-70; allow one blurred pixel at its edges
    assert (prob[31:59, 41:69] > 240).all()
    outside = np.ones_like(prob, dtype=bool)
    outside[29:61, 39:71] = False
    assert (prob[outside] < 15).all()


def test_constant_prediction_has_no_seams(tmp_path: Path) -> None:
    src = write_scene(tmp_path / "c.tif", 100, 77, 0.03, None)
    res = predict_raster(
        src,
        Constant(),
        spec_for(),
        prob_path=tmp_path / "c.prob.tif",
        tile=32,
        overlap=12,
        batch_size=3,
        progress=False,
    )
    prob, _, mask = read_prob(res.prob_path)
    assert (prob == 128).all()  # 0.5 * 255 rounded, the same in overlaps and single-tile areas
    assert (mask == 255).all()


def test_tiles_outside_footprint_are_skipped_and_zero(tmp_path: Path) -> None:
    # valid only in the top 40 and bottom 40 rows of 192: whole rows of tiles in between are skipped
    alpha = np.zeros((192, 64), dtype=np.uint8)
    alpha[:40] = 255
    alpha[152:] = 255
    src = write_scene(tmp_path / "d.tif", 192, 64, 0.03, (0, 192, 0, 64), alpha=alpha)
    res = predict_raster(
        src, RedRule(), spec_for(), prob_path=tmp_path / "d.prob.tif", tile=32, overlap=0, progress=False
    )
    prob, _, mask = read_prob(res.prob_path)
    assert res.tiles_total == 12
    assert res.tiles_skipped == 4  # tile rows at 64 and 96 lie more than a footprint cell from valid pixels
    assert res.tiles_run == 8
    assert (prob[:40] == 255).all() and (prob[152:] == 255).all()
    assert (prob[40:152] == 0).all()  # red but outside the footprint: probability 0
    assert (mask[:40] == 255).all() and (mask[40:152] == 0).all()


def test_tta_matches_plain_for_an_orientation_free_rule(tmp_path: Path) -> None:
    src = write_scene(tmp_path / "e.tif", 64, 64, 0.03, (10, 30, 5, 50))
    a = predict_raster(src, RedRule(), spec_for(), prob_path=tmp_path / "a.tif", tile=32, progress=False)
    b = predict_raster(src, RedRule(), spec_for(), prob_path=tmp_path / "b.tif", tile=32, tta=True, progress=False)
    assert b.tta
    np.testing.assert_array_equal(read_prob(a.prob_path)[0], read_prob(b.prob_path)[0])


def test_open_dataset_and_mode_restored(tmp_path: Path) -> None:
    src = write_scene(tmp_path / "f.tif", 40, 40, 0.03, (0, 20, 0, 20))
    model = RedRule().train()
    with open_raster(src) as ds:
        res = predict_raster(ds, model, spec_for(), prob_path=None, tile=32, progress=False)
        assert not ds.closed  # the caller's dataset stays open
    assert model.training  # training mode restored for the caller (training's validation)
    assert res.prob_path.exists()
    assert read_prob(res.prob_path)[0][:20, :20].min() == 255
    res.prob_path.unlink()


def test_epsg4326_grid_is_metric(tmp_path: Path) -> None:
    # 0.03 m at latitude ~36 deg: about 2.7e-7 deg of latitude, 3.3e-7 deg of longitude
    path = tmp_path / "g.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=50,
        width=50,
        count=3,
        dtype="uint8",
        crs="EPSG:4326",
        transform=Affine(3.3e-7, 0, 117.0, 0, -2.7e-7, 36.0),
    ) as ds:
        ds.write(np.full((3, 50, 50), 100, dtype=np.uint8))
    with open_raster(path) as ds:
        info = inspect_raster(ds)
        grid = model_grid(info, 0.06)
    assert grid.gsd_m == pytest.approx((0.06, 0.06), rel=1e-6)
    assert grid.scale[0] == pytest.approx(0.06 / info.gsd_m[0])
    assert grid.scale[1] == pytest.approx(0.06 / info.gsd_m[1])
    assert grid.scale[0] != pytest.approx(grid.scale[1], rel=1e-3)  # degrees are not square on the ground


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile": 8}, r"--tile 8: too small"),
        ({"tile": 64, "overlap": 40}, r"--overlap 40: must be between 0 and half the tile \(32\)"),
        ({"batch_size": 0}, r"--batch-size 0"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    src = write_scene(tmp_path / "h.tif", 40, 40, 0.03, None)
    with pytest.raises(InputError, match=match):
        predict_raster(src, RedRule(), spec_for(), prob_path=tmp_path / "h.prob.tif", progress=False, **kwargs)


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    src = write_scene(tmp_path / "i.tif", 40, 40, 0.03, None)
    out = tmp_path / "i.prob.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match=r"i.prob.tif already exists; pass --overwrite"):
        predict_raster(src, RedRule(), spec_for(), prob_path=out, tile=32, progress=False)
    assert out.read_bytes() == b"keep me"
    predict_raster(src, RedRule(), spec_for(), prob_path=out, tile=32, progress=False, overwrite=True)
    assert read_prob(out)[0].shape == (40, 40)


def test_non_rgb_model_refused(tmp_path: Path) -> None:
    src = write_scene(tmp_path / "j.tif", 40, 40, 0.03, None)
    spec = ModelSpec(arch="fastunet", bands=("red", "green", "blue", "nir"), mean=(0,) * 4, std=(1,) * 4)
    with pytest.raises(InputError, match=r"expects bands red, green, blue, nir"):
        predict_raster(src, RedRule(), spec, prob_path=tmp_path / "j.prob.tif", progress=False)


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(InputError, match=r"--device tpu: unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match=r"--device cuda: CUDA is not available"):
            resolve_device("cuda")


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    rng = np.random.default_rng(0)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=512,
        width=512,
        count=3,
        dtype="uint8",
        crs=CRS_UTM,
        transform=Affine(0.03, 0, 500000.0, 0, -0.03, 4000000.0),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    ) as ds:
        ds.write(rng.integers(0, 255, (3, 512, 512), dtype=np.uint8))
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)  # an interrupted copy
    out = tmp_path / "cut.prob.tif"
    with pytest.raises(InputError, match=r"cut.tif: reading source pixels .* may be truncated or damaged"):
        predict_raster(path, RedRule(), spec_for(tile=64), prob_path=out, progress=False)
    assert not out.exists() and not (tmp_path / "cut.prob.tif.tmp").exists()
