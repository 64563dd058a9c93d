"""Hard-negative mining (training/mining.py) with a colour-rule 'model' that fires exactly on red squares."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import shapely
import torch
from affine import Affine
from rasterio.crs import CRS
from torch import nn

from core.errors import InputError
from datasets.chips import ChipDataset, ChipSource
from detect.raster import window_ground_size
from models.checkpoint import ModelSpec
from tests.conftest import write_geotiff, write_polygons
from training.mining import MiningResult, mine_hard_negatives

N = 160  # pixels a side
GSD = 0.03  # 4.8 m x 4.8 m
UTM = ("EPSG:32650", Affine(GSD, 0, 500000.0, 0, -GSD, 4400000.0))
# Geographic at 40 N, with pixels about 3 cm on the ground each way (111 km per degree of latitude).
LONLAT = ("EPSG:4326", Affine(GSD / 85_390.0, 0, 116.0, 0, -GSD / 111_035.0, 40.0))

# Pixel boxes (row0, row1, col0, col1): the label, a red square half on it, a red square away from it.
LABEL = (10, 40, 10, 40)
ON_LABEL = (20, 40, 20, 70)
AWAY = (90, 120, 90, 130)  # 30 x 40 px = 1.08 m^2


class RedRule(nn.Module):
    """Logit about +20 on the red squares, -10 on the grey ground: a 'model' that fires exactly there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (x[:, 0:1] - x[:, 1:2]) - 10.0


SPEC = ModelSpec(arch="fastunet", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), gsd_m=GSD, tile_size=64)


def pixel_box(transform: Affine, box: tuple[int, int, int, int]) -> shapely.Polygon:
    r0, r1, c0, c1 = box
    (x0, x1), (y0, y1) = zip(transform * (c0, r0), transform * (c1, r1), strict=True)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def scene(tmp_path: Path, grid=UTM, red=(ON_LABEL, AWAY), aoi_cols: int | None = None) -> ChipSource:
    """A grey orthomosaic with red squares, one label polygon and optionally an AOI of its first columns."""
    crs, transform = grid
    rgb = np.full((3, N, N), 90, dtype=np.uint8)
    for r0, r1, c0, c1 in red:
        rgb[:, r0:r1, c0:c1] = np.array([230, 20, 20], dtype=np.uint8)[:, None, None]
    tif = tmp_path / "site.tif"
    write_geotiff(tif, rgb, crs=crs, transform=transform)
    write_polygons(tmp_path / "site.geojson", [pixel_box(transform, LABEL)], crs)
    if aoi_cols is not None:
        write_polygons(tmp_path / "site.aoi.geojson", [pixel_box(transform, (0, N, 0, aoi_cols))], crs)
    return ChipSource(tif)


def px_m2(grid=UTM) -> float:
    gy, gx = window_ground_size(CRS.from_user_input(grid[0]), grid[1], N / 2, N / 2)
    return gy * gx


@pytest.mark.parametrize("grid", [UTM, LONLAT], ids=["utm", "lonlat"])
@pytest.mark.parametrize(
    ("buffer_m", "min_area_m2", "max_per_source", "widths_px"),
    [
        # The square on the label keeps what lies beyond the label's right edge (col 40) plus the buffer.
        (0.2, 0.2, 200, [40, 70 - 40 - 0.2 / GSD]),  # 1.08 m^2 away, 0.42 m^2 trimmed
        (0.5, 0.2, 200, [40, 70 - 40 - 0.5 / GSD]),  # a wider buffer trims more: 0.24 m^2
        (0.5, 0.5, 200, [40]),  # the default minimum area drops the trimmed piece
        (0.2, 0.2, 1, [40]),  # only the largest piece is kept
        (1.5, 0.01, 200, [40]),  # the square on the label lies wholly inside the buffer: nothing of it is left
    ],
)
def test_hard_negatives_are_the_model_plots_off_the_labels(
    tmp_path, grid, buffer_m, min_area_m2, max_per_source, widths_px
):
    source = scene(tmp_path, grid)
    mined = mine_hard_negatives(
        RedRule(),
        SPEC,
        [source],
        label_buffer_m=buffer_m,
        min_area_m2=min_area_m2,
        max_per_source=max_per_source,
    )
    (geoms,) = mined
    rows = [30, 20]  # the away square is 30 rows high, the one on the label 20
    expected = [rows[k] * w * px_m2(grid) for k, w in enumerate(widths_px)]
    assert mined.sources[0].areas_m2 == pytest.approx(expected, rel=0.1)  # largest first
    assert len(geoms) == len(expected)
    away = pixel_box(grid[1], AWAY)
    assert shapely.intersection(geoms[0], away).area / shapely.union(geoms[0], away).area > 0.9
    # Nothing of a hard negative lies on the label or within (nearly) the buffer around it; in lon/lat a buffer of
    # b metres is b or more metres each way.
    label = pixel_box(grid[1], LABEL)
    near = shapely.buffer(label, 0.95 * buffer_m / GSD * abs(grid[1].a))
    assert all(shapely.intersection(g, near).area < 1e-3 * g.area for g in geoms)
    assert mined.sources[0].plots == 2


def test_aoi_limits_the_hard_negatives(tmp_path):
    # The AOI ends at column 110, halfway across the away square: only its inside half is a hard negative
    # (outside the AOI no one has looked for poppy, so "no label" does not mean "no poppy").
    source = scene(tmp_path, aoi_cols=110)
    mined = mine_hard_negatives(RedRule(), SPEC, [source], label_buffer_m=0.2, min_area_m2=0.2)
    assert mined.sources[0].areas_m2 == pytest.approx([30 * 20 * GSD**2, 20 * (30 - 0.2 / GSD) * GSD**2], rel=0.1)
    assert all(g.bounds[2] <= pixel_box(UTM[1], (0, N, 0, 110)).bounds[2] + 1e-6 for g in mined[0])


def test_a_model_without_false_alarms_mines_nothing(tmp_path, caplog):
    source = scene(tmp_path, red=[LABEL])  # red only on the label: every plot is true
    with caplog.at_level(logging.INFO, logger="training.mining"):
        mined = mine_hard_negatives(RedRule(), SPEC, [source, source], work_dir=tmp_path / "mine")
    assert list(mined) == [[], []]
    assert (mined.hard_count, mined.area_m2) == (0, 0.0)
    assert "mined 0 hard negatives, 0.0 m2" in caplog.text
    # work_dir keeps the probability rasters, one per source even when two share a name.
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["000_site.prob.tif", "001_site.prob.tif"]


def test_mined_chips_land_on_the_false_alarm_and_the_record_round_trips(tmp_path):
    source = scene(tmp_path)
    mined = mine_hard_negatives(RedRule(), SPEC, [source], label_buffer_m=0.5, min_area_m2=0.5)
    assert mined.line().startswith("mined 1 hard negatives, 1.1 m2 at threshold 0.50 in ")
    again = MiningResult.from_dict(json.loads(json.dumps(mined.to_dict())))
    assert again == mined  # exact: polygons travel as WKB
    ds = ChipDataset(
        source, target_gsd_m=GSD, chip_size=32, chips_per_epoch=60, positive_fraction=0.2, hard_fraction=0.5
    )
    ds.set_hard_negatives(again)
    hard = [c for c in (ds.get_chip(i) for i in range(len(ds))) if c.kind == "hard"]
    assert len(hard) > 15
    # Centred within the jitter (a quarter chip: 8 px each way) of the away square, which fills their middle.
    r0, r1, c0, c1 = AWAY
    for c in hard:
        row = float(c.window.row_off) + float(c.window.height) / 2
        col = float(c.window.col_off) + float(c.window.width) / 2
        assert r0 - 8.5 <= row <= r1 + 8.5 and c0 - 8.5 <= col <= c1 + 8.5
        assert float(c.image[0].max()) > 0.8  # the false alarm is in the chip


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"label_buffer_m": -1.0}, r"label_buffer_m=-1\.0: must be 0 or more metres"),
        ({"max_per_source": 0}, r"max_per_source=0: must be at least 1"),
        ({"threshold": 1.5}, r"--threshold 1\.5: must be between 0 and 1"),
        ({"min_area_m2": -1.0}, r"--min-area-m2 -1\.0: must be 0 or more"),
    ],
)
def test_bad_settings_are_refused(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        mine_hard_negatives(RedRule(), SPEC, [scene(tmp_path)], **kwargs)
