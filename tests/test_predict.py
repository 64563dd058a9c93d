"""Sliding-window prediction (detect/predict.py) with a tiny deterministic colour-rule model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from torch import nn

from core.errors import InputError
from detect.predict import check_gsd, gsd_ratio, model_grid, predict_raster, resolve_device
from detect.raster import RasterInfo, inspect_raster, open_raster
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
    assert (prob[~inside] == 1).all()  # probability 0 is stored as 1: 0 is nodata
    assert res.tiles_total == 16 and res.tiles_run == 16 and res.tiles_skipped == 0
    assert profile["tiled"] and profile["blockxsize"] == 256 and profile["compress"] == "deflate"
    assert profile["nodata"] == 0
    with rasterio.open(res.prob_path) as ds:
        # GIS software decodes raw * scale + offset: 1 -> 0.0, 255 -> 1.0
        assert ds.scales[0] * 255 + ds.offsets[0] == pytest.approx(1.0)
        assert ds.scales[0] * 1 + ds.offsets[0] == pytest.approx(0.0)
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
    assert (prob[outside] < 16).all()


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
    assert (prob == 128).all()  # 1 + 0.5 * 254, the same in overlaps and single-tile areas
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
    assert (prob[40:152] == 0).all()  # red but outside the footprint: nodata
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


# --- refusing rasters far coarser than the model (infer.py --allow-gsd-mismatch) -------------------------------


def info_with_gsd(gsd_m: tuple[float, float], path: str = "site.tif") -> RasterInfo:
    return RasterInfo(
        path=path,
        height=10,
        width=10,
        count=3,
        dtype="uint8",
        crs=rasterio.crs.CRS.from_string(CRS_UTM),
        transform=Affine(gsd_m[1], 0, 500000.0, 0, -gsd_m[0], 4000000.0),
        gsd_m=gsd_m,
        rgb_bands=(1, 2, 3),
        alpha_band=None,
        nodata=None,
    )


@pytest.mark.parametrize(
    ("gsd_m", "model_gsd", "refused"),
    [
        ((0.03, 0.03), 0.03, False),  # the model's own GSD
        ((0.01, 0.01), 0.03, False),  # finer: only downsampled
        ((0.09, 0.09), 0.03, False),  # exactly 3x: the limit is inclusive
        ((0.0901, 0.0901), 0.03, True),  # just past 3x
        ((0.03, 0.12), 0.03, True),  # the coarser axis counts (4x across)
        ((0.5, 0.5), 0.03, True),  # the real ODM sample: 16.7x
        ((0.5, 0.5), 0.2, False),  # a coarse model accepts it (2.5x)
    ],
)
def test_check_gsd_table(gsd_m: tuple[float, float], model_gsd: float, refused: bool) -> None:
    info = info_with_gsd(gsd_m)
    assert gsd_ratio(info, model_gsd) == pytest.approx(max(gsd_m) / model_gsd)
    if refused:
        with pytest.raises(InputError, match=r"--allow-gsd-mismatch"):
            check_gsd(info, model_gsd)
        assert check_gsd(info, model_gsd, allow=True) is not None  # a warning instead
    else:
        assert check_gsd(info, model_gsd) is None
        assert check_gsd(info, model_gsd, allow=True) is None


def test_check_gsd_message_names_both_gsds_and_the_fix() -> None:
    info = info_with_gsd((0.5, 0.5), path="odm.tif")
    with pytest.raises(InputError) as err:
        check_gsd(info, 0.03)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("odm.tif: ground sample distance 50 cm/px is 16.7x coarser than the model's 3 cm/px")
    assert "9 cm/px or finer" in msg and "--allow-gsd-mismatch" in msg
    warning = check_gsd(info, 0.03, allow=True)
    assert warning is not None and "16.7x" in warning and "\n" not in warning


def tiny_checkpoint(path: Path) -> Path:
    """A small fastunet with random weights at 3 cm/px, saved like train.py saves one."""
    from models import build_model
    from models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    args = {"base_channels": 8, "depth": 2}
    model = build_model("fastunet", in_channels=3, num_classes=1, **args)
    save_checkpoint(path, model, ModelSpec(arch="fastunet", arch_args=args, gsd_m=0.03, tile_size=64, name="tiny"))
    return path


def test_prepare_refuses_or_warns_on_coarse_raster(tmp_path: Path) -> None:
    from detect.pipeline import RunOptions, prepare

    src = write_scene(tmp_path / "coarse.tif", 8, 8, 0.2, None)  # 20 cm/px against a 3 cm/px model
    with pytest.raises(InputError, match=r"coarse.tif: ground sample distance 20 cm/px is 6.7x coarser"):
        prepare([src], RunOptions(out_dir=tmp_path / "out"), spec_for(0.03))
    prepare([src], RunOptions(out_dir=tmp_path / "out"))  # without a spec there is nothing to compare with
    warnings: list[str] = []
    plans = prepare(
        [src], RunOptions(out_dir=tmp_path / "out", allow_gsd_mismatch=True), spec_for(0.03), warn=warnings.append
    )
    assert list(plans) == [src]
    assert len(warnings) == 1 and "6.7x coarser" in warnings[0]


def test_infer_refuses_coarse_raster_then_runs_when_allowed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from infer import main, parse_args

    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    src = write_scene(tmp_path / "coarse.tif", 8, 8, 0.2, (2, 6, 2, 6))
    out = tmp_path / "out"
    base = [str(src), "--out", str(out), "--weights", str(weights), "--quiet", "--device", "cpu", "--formats", "csv"]
    assert main(parse_args(base)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ") and "coarse.tif" in err and "--allow-gsd-mismatch" in err
    assert not out.exists() or not any(out.iterdir())  # refused before writing anything

    assert main(parse_args([*base, "--allow-gsd-mismatch"])) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: ") and "6.7x coarser" in captured.err
    summary = json.loads((out / "coarse.summary.json").read_text())
    assert summary["raster"]["gsd_ratio_to_model"] == pytest.approx(0.2 / 0.9996 / 0.03, rel=1e-3)
    assert summary["raster"]["model_grid"]["width"] == 54  # 8 px x 20 cm = 1.6 m = 53.3 model px, ceil
    if "GDAL_CACHEMAX" not in os.environ:
        assert summary["parameters"]["gdal_cachemax_mb"] == 64  # the pipeline's floor for a small raster


def test_real_odm_orthophoto_is_refused_with_a_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The real 0.5 m/px OpenDroneMap sample must not be upsampled 16x silently (needs ../shared)."""
    from infer import main, parse_args

    real = Path(__file__).resolve().parents[2] / "shared/data/real/odm_orthophoto_50cm_utm15n.tif"
    if not real.exists():
        pytest.skip("shared test data not present")
    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    code = main(parse_args([str(real), "--out", str(tmp_path / "out"), "--weights", str(weights), "--quiet"]))
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "odm_orthophoto_50cm_utm15n.tif: ground sample distance 50 cm/px is 16.7x coarser" in err
    assert "the model's 3 cm/px" in err and "--allow-gsd-mismatch" in err


@pytest.mark.parametrize(
    ("width", "gsd", "tile", "block_rows", "expected_mb"),
    [
        (10000, 0.03, 512, 512, 2 * (512 + 512) * 10000 * 4 / 2**20),  # 78 MB: two rows of tiles, RGBA
        (10000, 0.015, 512, 256, 2 * (1024 + 256) * 10000 * 4 / 2**20),  # a finer source spans more rows
        (2000, 0.03, 512, 512, 64),  # small rasters get the 64 MB floor
        (400000, 0.03, 512, 512, 1024),  # very wide ones the 1 GB ceiling
    ],
)
def test_gdal_cache_grows_with_width(
    monkeypatch: pytest.MonkeyPatch, width: int, gsd: float, tile: int, block_rows: int, expected_mb: float
) -> None:
    import dataclasses
    from types import SimpleNamespace

    from detect.pipeline import gdal_cache_bytes

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    info = dataclasses.replace(info_with_gsd((gsd, gsd)), width=width, height=10 * width, count=4)
    ds = SimpleNamespace(block_shapes=[(block_rows, 512)] * 4)
    got = gdal_cache_bytes(ds, info, spec_for(0.03), tile)
    assert got / 2**20 == pytest.approx(expected_mb, rel=1e-6)
    # the height (area) plays no part
    assert gdal_cache_bytes(ds, dataclasses.replace(info, height=width // 10), spec_for(0.03), tile) == got
    monkeypatch.setenv("GDAL_CACHEMAX", "256")
    assert gdal_cache_bytes(ds, info, spec_for(0.03), tile) is None  # the user's setting wins
